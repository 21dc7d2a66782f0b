"""The API on a node with ``<failover>``: it serves on the master only.

:class:`MasterGate` sits in front of the API's resource. On the elected master it passes
every request through, and answers the health URL (``GET /failover/master``) with 200.
On any other candidate (:class:`StandbyApiService` listens on the API port while the
candidate runs as a worker) every request gets 503 with a Wazuh-shaped problem that names
the current master and where its API is, and the health URL answers 503: a load balancer
checking that URL sends the API traffic to the master alone. A redirect is not used: the
API's tokens are signed by each node's own key (a client must log in on the new master
anyway), and common clients either do not follow redirects (curl without ``-L``) or drop
the ``Authorization`` header when a redirect changes the host (python-requests).

A master kept **read-only** while etcd does not answer (``read_only`` in the status)
passes GET and HEAD through, answers every other method with 503 saying why, and its
health URL answers 200 with ``"read_only": true`` (reads are served; a load balancer that
must send writes only to a writable master checks that field).

The standby's port has no credential to check (it answers every call alike), so a
connection there is admitted by its first complete request (:class:`AdmitEveryRequest`):
until then it has the API's handshake deadline and pending caps, and bare TCP connects or
silent TLS clients cannot fill the caps of admitted clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from wazuhcluster.api.certs import ensure_certificate, server_context
from wazuhcluster.api.errors import PROBLEM_CONTENT_TYPE
from wazuhcluster.api.resource import bounded_site, request_transport
from wazuhcluster.config.api_settings import ApiSettings
from wazuhcluster.util.interfaces import IReactorSSLTime
from wazuhcluster.util.limits import LimitedFactory, admit, stop_serving
from wazuhcluster.util.logs import ClusterLog

#: The health URL for load balancers: 200 on the master, 503 on every other node.
HEALTH_PATH = "/failover/master"
#: What a client is told to wait before trying again while no master is elected.
RETRY_AFTER = b"5"

#: The election as the node sees it (``IFailoverView.failover_status()``).
StatusView = Callable[[], Mapping[str, Any]]


def is_master(status: Mapping[str, Any]) -> bool:
    """Whether the node runs as a writable master and the election still names it (a
    read-only master may still see its own expiring key in etcd for a moment)."""
    return (
        status.get("role") == "master"
        and status.get("master") == status.get("node")
        and not status.get("read_only")
    )


def master_api_url(status: Mapping[str, Any], api_port: int) -> str | None:
    """The API URL of the current master: its published host, this node's API port (the
    candidates are expected to share ``<api><port>``); None when no master is known."""
    address = status.get("master_address")
    if not status.get("master") or not isinstance(address, str) or ":" not in address:
        return None
    host = address.rsplit(":", 1)[0]
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{api_port}"


def is_read_only(status: Mapping[str, Any]) -> bool:
    """Whether the node runs as a master kept read-only while etcd does not answer."""
    return status.get("role") == "master" and bool(status.get("read_only"))


def health_body(status: Mapping[str, Any]) -> dict[str, Any]:
    """The health URL's JSON: whether this node serves as master (``read_only``: reads
    only, etcd does not answer), and who the election names."""
    return {
        "master": is_master(status) or is_read_only(status),
        "read_only": is_read_only(status),
        "node": status.get("node"),
        "role": status.get("role"),
        "current_master": status.get("master"),
        "term": status.get("term"),
    }


def not_master_problem(status: Mapping[str, Any], api_port: int) -> dict[str, Any]:
    """The problem object a node that is not the master answers every API call with."""
    node, master = status.get("node"), status.get("master")
    url = master_api_url(status, api_port)
    if master is None or master == node:
        detail = f"Node {node} is not the master and no master is elected yet"
        remediation = "Retry in a few seconds, or send the request to the elected master"
    else:
        where = f" (API at {url})" if url is not None else ""
        detail = f"Node {node} is not the master: the master is {master}{where}"
        remediation = f"Send the request to the master {master}" + (
            f" at {url}" if url is not None else ""
        )
    return {
        "title": "Service Unavailable",
        "detail": detail,
        "remediation": remediation,
        "master": master,
        "master_api": url,
    }


def read_only_problem(status: Mapping[str, Any]) -> dict[str, Any]:
    """The problem object of a write sent to a master kept read-only."""
    return {
        "title": "Service Unavailable",
        "detail": (
            f"Node {status.get('node')} is the last master but etcd does not answer "
            f"({status.get('etcd')}): it serves reads only and refuses writes"
        ),
        "remediation": "Retry once etcd answers; wazuh-cluster-control -i shows the election",
        "master": None,
        "master_api": None,
    }


def _answer(request: IRequest, status: int, body: Mapping[str, Any], problem: bool) -> bytes:
    data = json.dumps(body).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(
        b"content-type", PROBLEM_CONTENT_TYPE if problem else b"application/json; charset=utf-8"
    )
    if status == 503 and body.get("master") is None:
        request.setHeader(b"retry-after", RETRY_AFTER)
    request.setHeader(b"content-length", str(len(data)).encode("ascii"))
    return data


class MasterGate(Resource):
    """Passes requests to ``inner`` on the master; answers the others (module docstring)."""

    isLeaf = True

    def __init__(self, status: StatusView, api_port: int, inner: Resource | None = None) -> None:
        super().__init__()
        self.status = status
        self.api_port = api_port
        self.inner = inner

    def render(self, request: IRequest) -> bytes | int:
        """The health URL, the inner API on the master, else the not-master problem."""
        status = self.status()
        path = urlsplit(request.uri.decode("ascii", "replace")).path.rstrip("/")
        master = is_master(status)
        if path == HEALTH_PATH:
            if request.method not in (b"GET", b"HEAD"):
                body = {"title": "Method Not Allowed", "detail": "Use GET"}
                return _answer(request, 405, body, problem=True)
            body = health_body(status)
            return _answer(request, 200 if body["master"] else 503, body, problem=False)
        if master and self.inner is not None:
            return self.inner.render(request)
        if is_read_only(status):
            if request.method in (b"GET", b"HEAD") and self.inner is not None:
                return self.inner.render(request)
            return _answer(request, 503, read_only_problem(status), problem=True)
        return _answer(request, 503, not_master_problem(status, self.api_port), problem=True)


class AdmitEveryRequest(Resource):
    """Admits the connection of every request that reaches it (it was read whole within
    the deadline), then lets ``gate`` answer: on a standby that is the credential."""

    isLeaf = True

    def __init__(self, gate: Resource) -> None:
        super().__init__()
        self.gate = gate

    def render(self, request: IRequest) -> bytes | int:
        """Admit the request's connection, then answer as ``gate`` does."""
        admit(request_transport(request))
        return self.gate.render(request)


def standby_factory(
    settings: ApiSettings, status: StatusView, clock: IReactorTime, log: ClusterLog
) -> LimitedFactory:
    """The standby's site under the API's limits, admitted by a complete request (see the
    module docstring): before it, the API's deadline and pending caps; after it, its
    admitted caps and idle timeout."""
    site = bounded_site(
        AdmitEveryRequest(MasterGate(status, settings.port)),
        min(settings.max_upload_size, 64 * 1024),
    )
    return LimitedFactory(
        site,
        clock,
        log,
        limits=settings.limits,
        admit_on="protocol",
        credential="complete request",
    )


class StandbyApiService(Service):
    """On a candidate that is not master: the API port answers with :class:`MasterGate`
    alone (the health URL says 503, every call names the master)."""

    def __init__(self, settings: ApiSettings, status: StatusView, reactor: IReactorSSLTime) -> None:
        self.settings = settings
        self.status = status
        self.reactor = reactor
        self.log = ClusterLog("Worker", "API")
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] = Deferred()
        self._factory: LimitedFactory | None = None

    def startService(self) -> None:
        """Make sure the certificate exists, then listen with TLS on the API's address."""
        super().startService()
        settings = self.settings
        ensure_certificate(settings.cert, settings.key)
        endpoint = SSL4ServerEndpoint(
            self.reactor,
            settings.port,
            server_context(settings.cert, settings.key),
            interface=settings.bind_addr,
        )
        self._factory = standby_factory(settings, self.status, self.reactor, self.log)
        endpoint.listen(self._factory).addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self.log.info(
            "Not the master: the API port {port} answers with the master's name.",
            port=getattr(port.getHost(), "port", "?"),
        )
        self.listening.callback(port)

    def _failed(self, failure: Failure) -> None:
        self.log.error(
            "The API port could not listen (standby): {error}", error=failure.getErrorMessage()
        )
        self.listening.errback(failure)

    def stopService(self) -> Deferred[None]:
        """Stop listening and close the open connections (the master's API takes the port)."""
        super().stopService()
        port, self.port = self.port, None
        return stop_serving(port, self._factory)

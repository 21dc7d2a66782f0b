"""An etcd v3 client over etcd's HTTP/JSON gateway (``/v3/...``), on treq: it never blocks.

Why the gateway: every etcd since 3.4 serves it on the client port, treq is a well-kept
Twisted HTTP client, and JSON needs no generated gRPC code nor a second event loop. What the
failover needs is small: leases, puts and gets, transactions and watches.

Every call is bounded: one answer is at most ``max_response`` bytes and arrives within
``timeout`` seconds or the call fails with :class:`EtcdTimeout`. A connection that cannot be
made (refused, no route) is tried on the next endpoint at once, since nothing was sent; any
other failure moves the client to the next endpoint for the *next* call and is raised, since
the request may have been applied (the caller decides whether a retry is safe). Calls that are
safe to repeat (keepalives and reads) are made with ``retry=True``: a timeout or a broken
connection then tries the next endpoint at once, each endpoint once per call, so one member
that hangs (connections open, no answer) costs one timeout, not the call. Those calls also
take a shorter per-attempt ``timeout`` from their caller (the election caps it at a third of
the lease TTL so that a renewal still lands in time on another member). The leader's fenced
writes are made so too: they carry the proof of whether an earlier attempt applied (see
:mod:`wazuhcluster.failover.fenced`). Each such move is logged (with a ``log``), so an
operator sees which member stopped answering.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from attrs import frozen
from twisted.internet import error as net_error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS, platformTrust
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

from wazuhcluster.failover.body import read_body
from wazuhcluster.failover.kv import (
    Compare,
    EtcdError,
    EtcdProtocolError,
    EtcdTimeout,
    EtcdUnavailable,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    RangeResult,
    TxnResult,
    encode_bytes,
    error_from_json,
    header_revision,
    prefix_end,
    range_body,
)
from wazuhcluster.failover.watch import Watch, WatchCallback
from wazuhcluster.util.interfaces import IReactorWebClient
from wazuhcluster.util.logs import ClusterLog

#: The gateway's prefix: ``/v3`` since etcd 3.4 (3.4 also serves ``/v3beta``, 3.5 only ``/v3``).
API_PREFIX = "/v3"
DEFAULT_TIMEOUT = 5.0
#: One answer at most (a range of many keys should page with ``limit``).
DEFAULT_MAX_RESPONSE = 8 * 1024 * 1024
_JSON_HEADERS = {b"Content-Type": [b"application/json"]}
#: Failures that mean the request never left: safe to try the next endpoint at once.
_NOT_SENT = (net_error.ConnectError, net_error.DNSLookupError)


class HttpRequester(Protocol):
    """What the client needs of treq: an ``HTTPClient`` (or a ``StubTreq`` in tests)."""

    def request(self, method: str, url: str, *, data: bytes, headers: Any) -> Deferred[Any]:
        """Send one request; fires with its IResponse."""


@frozen
class EtcdTls:
    """Client TLS material for https endpoints: the CA that signed etcd's certificate (None:
    the system's trust store) and this client's certificate and key (None: no client auth)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@implementer(IPolicyForHTTPS)
class _ClientTlsPolicy:
    """Verifies the server against ``ca`` and presents the client certificate, if any."""

    def __init__(self, tls: EtcdTls) -> None:
        self.trust = Certificate.loadPEM(tls.ca.read_bytes()) if tls.ca else platformTrust()
        self.own: PrivateCertificate | None = None
        if tls.cert is not None and tls.key is not None:
            self.own = PrivateCertificate.loadPEM(
                tls.cert.read_bytes() + b"\n" + tls.key.read_bytes()
            )

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """TLS options for one endpoint (its host name or IP is verified)."""
        return optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self.trust, clientCertificate=self.own
        )


def _check_endpoint(endpoint: str) -> str:
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"etcd endpoint {endpoint!r} must start with http:// or https://")
    return endpoint.rstrip("/")


class EtcdClient:
    """Talks to one etcd cluster through any of ``endpoints``."""

    def __init__(
        self,
        endpoints: Sequence[str],
        http: HttpRequester,
        clock: IReactorTime,
        timeout: float = DEFAULT_TIMEOUT,
        max_response: int = DEFAULT_MAX_RESPONSE,
        pool: HTTPConnectionPool | None = None,
        log: ClusterLog | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [_check_endpoint(endpoint) for endpoint in endpoints]
        self.http = http
        self.clock = clock
        self.timeout = timeout
        self.max_response = max_response
        self._pool = pool
        self._current = 0
        #: Where a repeatable call that moves on to the next member says so (None: silent).
        self.log = log

    @classmethod
    def connect(
        cls,
        reactor: IReactorWebClient,
        endpoints: Sequence[str],
        tls: EtcdTls | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        log: ClusterLog | None = None,
    ) -> EtcdClient:
        """A client with its own persistent connection pool (closed by :meth:`close`).

        Reads the TLS files (small, once, at start); raises OSError or an OpenSSL error when
        they cannot be read or loaded.
        """
        from treq.client import HTTPClient

        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        policy = _ClientTlsPolicy(tls or EtcdTls())
        agent = Agent(reactor, contextFactory=policy, pool=pool, connectTimeout=timeout)
        return cls(endpoints, HTTPClient(agent), reactor, timeout=timeout, pool=pool, log=log)

    @property
    def endpoint(self) -> str:
        """The endpoint the next call goes to first."""
        return self.endpoints[self._current]

    def _rotate(self, past: int | None = None) -> None:
        """Move to the next endpoint (past ``past``, unless another call already moved on)."""
        if past is None:
            past = self._current
        elif past != self._current:
            return
        self._current = (past + 1) % len(self.endpoints)

    async def close(self) -> None:
        """Close the pooled connections (open watches are stopped by their owners)."""
        if self._pool is not None:
            await self._pool.closeCachedConnections()

    # -- one request ---------------------------------------------------------------------

    async def _exchange(self, endpoint: str, path: str, data: bytes) -> Mapping[str, Any]:
        response: IResponse = await self.http.request(
            "POST", endpoint + API_PREFIX + path, data=data, headers=_JSON_HEADERS
        )
        raw = await read_body(response, self.max_response)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            if response.code != 200:
                raise EtcdError(
                    f"HTTP status {response.code} from etcd", endpoint=endpoint
                ) from None
            raise EtcdProtocolError(f"answer to {path} is not JSON", endpoint=endpoint) from None
        if not isinstance(body, dict):
            raise EtcdProtocolError(f"answer to {path} is not an object", endpoint=endpoint)
        if response.code != 200:
            raise error_from_json(body, endpoint, response.code)
        if isinstance(body.get("error"), dict):  # a streaming method's error, with status 200
            raise error_from_json(body["error"], endpoint)
        return body

    async def call(
        self,
        path: str,
        body: Mapping[str, Any],
        timeout: float | None = None,
        retry: bool = False,
    ) -> Mapping[str, Any]:
        """POST ``body`` to ``/v3{path}`` and return the decoded answer (bounded, timed).

        ``timeout`` bounds each attempt (default: the client's, and never more than it).
        With ``retry`` (only for requests safe to repeat) a timeout or a broken connection
        tries the next endpoint at once instead of failing the call.
        """
        data = json.dumps(body).encode()
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        reasons: list[str] = []
        last: EtcdError | None = None  # the last failure of a request that may have been sent
        # Each endpoint once, in order from the current one: concurrent calls move the
        # shared position too, so it is not re-read between attempts.
        start = self._current
        for step in range(len(self.endpoints)):
            index = (start + step) % len(self.endpoints)
            endpoint = self.endpoints[index]
            attempt = Deferred.fromCoroutine(self._exchange(endpoint, path, data))
            timed_out = EtcdTimeout(f"no answer to {path} within {limit:g} s", endpoint=endpoint)
            # Whatever the cancelled request failed with, a timeout is what happened.
            attempt.addTimeout(limit, self.clock, onTimeoutCancel=_replace_with(timed_out))
            try:
                return await attempt
            except _NOT_SENT as failure:
                self._rotate(index)
                reasons.append(f"{endpoint}: {failure}")
                continue
            except (EtcdTimeout, EtcdUnavailable) as failure:
                self._rotate(index)
                if not retry:
                    raise
                reasons.append(f"{endpoint}: {failure}")
                last = failure
                self._moving_on(endpoint, path, failure, step)
                continue
            except EtcdError:
                raise
            except Exception as failure:  # the connection broke mid-way (ResponseFailed...)
                self._rotate(index)
                broken = EtcdUnavailable(
                    f"request {path} failed: {failure.__class__.__name__}: {failure}",
                    endpoint=endpoint,
                )
                if not retry:
                    raise broken from None
                reasons.append(f"{endpoint}: {broken}")
                last = broken
                self._moving_on(endpoint, path, broken, step)
                continue
        if last is not None:
            if len(reasons) == 1:
                raise last
            raise EtcdUnavailable(f"no etcd endpoint answered {path}: " + "; ".join(reasons))
        raise EtcdUnavailable("no etcd endpoint reachable: " + "; ".join(reasons))

    def _moving_on(self, endpoint: str, path: str, failure: EtcdError, step: int) -> None:
        if self.log is None or step == len(self.endpoints) - 1:
            return  # the last member: the call fails, and its caller says so
        self.log.warn(
            "etcd member {endpoint} did not answer {path} ({reason}); asking the next member",
            endpoint=endpoint,
            path=path,
            reason=failure.message,
        )

    # -- leases --------------------------------------------------------------------------

    async def grant(self, ttl: int) -> Lease:
        """A new lease of ``ttl`` seconds."""
        body = await self.call("/lease/grant", {"TTL": str(ttl)})
        if body.get("error"):
            raise EtcdError(str(body["error"]), endpoint=self.endpoint)
        return Lease(_int_field(body, "ID"), _int_field(body, "TTL"))

    async def keepalive(self, lease: int, timeout: float | None = None) -> Lease:
        """Renew ``lease`` once; LeaseNotFound when it has expired or was revoked.

        A renewal is safe to repeat, so a member that does not answer within ``timeout``
        (each attempt) is passed over for the next one at once.
        """
        body = await self.call("/lease/keepalive", {"ID": str(lease)}, timeout, retry=True)
        result = body.get("result")
        if not isinstance(result, dict):
            raise EtcdProtocolError("keepalive answer without a result", endpoint=self.endpoint)
        renewed = Lease(_int_field(result, "ID") or lease, _int_field(result, "TTL"))
        if renewed.ttl <= 0:
            raise LeaseNotFound(f"lease {lease:x} has expired", 5, self.endpoint)
        return renewed

    async def time_to_live(self, lease: int) -> Lease:
        """How long ``lease`` still lives (``ttl`` -1 when it is gone)."""
        body = await self.call("/lease/timetolive", {"ID": str(lease)})
        return Lease(_int_field(body, "ID") or lease, _int_field(body, "TTL"))

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now, deleting every key bound to it; LeaseNotFound if already gone."""
        await self.call("/lease/revoke", {"ID": str(lease)})

    # -- keys ----------------------------------------------------------------------------

    async def put(self, key: bytes | str, value: bytes | str, lease: int = 0) -> int:
        """Set ``key``; returns the revision of the change."""
        body: dict[str, Any] = {"key": encode_bytes(key), "value": encode_bytes(value)}
        if lease:
            body["lease"] = str(lease)
        return header_revision(await self.call("/kv/put", body))

    async def range(
        self,
        key: bytes | str,
        range_end: bytes | str | None = None,
        limit: int = 0,
        revision: int = 0,
        timeout: float | None = None,
    ) -> RangeResult:
        """Keys in ``[key, range_end)`` (just ``key`` without ``range_end``).

        A read is safe to repeat: a member that does not answer within ``timeout`` (each
        attempt) is passed over for the next one at once.
        """
        body = range_body(key, range_end)
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        return RangeResult.from_json(await self.call("/kv/range", body, timeout, retry=True))

    async def get(self, key: bytes | str, timeout: float | None = None) -> KeyValue | None:
        """One key, or None when it does not exist."""
        return (await self.range(key, timeout=timeout)).first

    async def get_prefix(self, prefix: bytes | str, limit: int = 0) -> RangeResult:
        """Every key starting with ``prefix``."""
        return await self.range(prefix, prefix_end(prefix), limit=limit)

    async def delete(self, key: bytes | str, range_end: bytes | str | None = None) -> int:
        """Delete ``key`` (or a range); returns how many keys were deleted."""
        body = await self.call("/kv/deleterange", range_body(key, range_end))
        return _int_field(body, "deleted")

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
        timeout: float | None = None,
        retry: bool = False,
    ) -> TxnResult:
        """If every comparison holds, run ``success``, else ``failure``: atomically.

        ``retry`` only for a transaction the caller knows is safe to run twice (one that
        timed out may have been applied)."""
        body = {
            "compare": [item.to_json() for item in compare],
            "success": [op.to_json() for op in success],
            "failure": [op.to_json() for op in failure],
        }
        return TxnResult.from_json(await self.call("/kv/txn", body, timeout, retry))

    # -- watches -------------------------------------------------------------------------

    def watch(
        self,
        key: bytes | str,
        on_response: WatchCallback,
        range_end: bytes | str | None = None,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> Watch:
        """Start watching ``key`` (or a range) from ``start_revision`` (0: from now).

        ``on_response`` gets every message with events; see :class:`Watch` for how it ends.
        """
        request: dict[str, Any] = range_body(key, range_end)
        if start_revision:
            request["start_revision"] = str(start_revision)
        if prev_kv:
            request["prev_kv"] = True
        endpoint = self.endpoint
        watch = Watch(on_response, endpoint, self.clock, self.timeout, self.max_response)
        sent = self.http.request(
            "POST",
            endpoint + API_PREFIX + "/watch",
            data=json.dumps({"create_request": request}).encode(),
            headers=_JSON_HEADERS,
        )
        watch.attach(sent, on_failure=self._rotate)
        return watch


def _replace_with(error: Exception) -> Callable[[object, float], Failure]:
    """An ``onTimeoutCancel`` that turns whatever the cancelled call failed with into ``error``."""
    return lambda result, timeout: Failure(error)


def _int_field(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EtcdProtocolError(f"{name} is not an integer") from None

"""The API with ``<failover>``: it serves on the master only; every other candidate names
the master, and the health URL says 200 on the master and 503 elsewhere. Deterministic:
DummyRequest, an in-memory etcd on a Clock for the election."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from tests.test_api_fixtures import ApiHarness
from tests.test_failover_election import TTL, MemoryEtcd
from tests.test_failover_roles import Node
from tests.test_limits import RecordingLog, Transport
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.service import build_site
from wazuhcluster.api.standby import HEALTH_PATH, MasterGate, master_api_url, standby_factory
from wazuhcluster.config.api_settings import ApiSettings
from wazuhcluster.util.limits import ListenerLimits
from wazuhcluster.util.threads import run_inline

MASTER_STATUS: dict[str, Any] = {
    "node": "cand-a",
    "role": "master",
    "master": "cand-a",
    "master_address": "10.0.0.1:1516",
    "term": 7,
}
STANDBY_STATUS: dict[str, Any] = {
    **MASTER_STATUS,
    "node": "cand-b",
    "role": "worker",
}


class Inner(Resource):
    """A stand-in for the API: records the requests it is given."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def render(self, request: Any) -> bytes:
        """Answer 200 ``inner``."""
        self.seen.append(request.uri)
        return b"inner"


def call(resource: Resource, method: str, path: str) -> tuple[int, dict[str, Any], DummyRequest]:
    """Render one request; its status, JSON body and the request."""
    request = DummyRequest([])
    request.method = method.encode("ascii")
    request.uri = path.encode("ascii")
    request.content = io.BytesIO(b"")
    written = resource.render(request)
    body = written if isinstance(written, bytes) else b"".join(request.written)
    status = request.responseCode or 200
    return status, (json.loads(body) if body.startswith(b"{") else {"raw": body}), request


class MasterGateTests(SynchronousTestCase):
    """What each node answers, from the election's status."""

    def test_master_serves_the_api_and_says_200(self) -> None:
        """On the master every call reaches the API; the health URL answers 200."""
        inner = Inner()
        gate = MasterGate(lambda: MASTER_STATUS, 55000, inner)
        status, body, _ = call(gate, "GET", "/agents?limit=1")
        self.assertEqual((status, body), (200, {"raw": b"inner"}))
        self.assertEqual(inner.seen, [b"/agents?limit=1"])
        status, body, _ = call(gate, "GET", HEALTH_PATH)
        self.assertEqual(status, 200)
        self.assertEqual(
            body,
            {
                "master": True,
                "read_only": False,
                "node": "cand-a",
                "role": "master",
                "current_master": "cand-a",
                "term": 7,
            },
        )
        self.assertEqual(inner.seen, [b"/agents?limit=1"])  # the health URL is the gate's

    def test_other_candidate_names_the_master(self) -> None:
        """A candidate running as a worker answers every call with 503 and a problem that
        names the master and its API URL; the API itself is never reached."""
        inner = Inner()
        gate = MasterGate(lambda: STANDBY_STATUS, 55000, inner)
        status, body, request = call(gate, "POST", "/agents")
        self.assertEqual(status, 503)
        self.assertEqual(body["title"], "Service Unavailable")
        self.assertEqual(
            body["detail"],
            "Node cand-b is not the master: the master is cand-a (API at https://10.0.0.1:55000)",
        )
        self.assertEqual((body["master"], body["master_api"]), ("cand-a", "https://10.0.0.1:55000"))
        self.assertIn("cand-a", body["remediation"])
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"application/problem+json; charset=utf-8"],
        )
        self.assertIsNone(request.responseHeaders.getRawHeaders(b"retry-after"))
        self.assertEqual(inner.seen, [])
        status, body, _ = call(gate, "GET", HEALTH_PATH + "/")
        self.assertEqual(status, 503)
        self.assertEqual((body["master"], body["current_master"]), (False, "cand-a"))

    def test_deposed_master_refuses_before_its_services_stop(self) -> None:
        """Still running as master but the election names another node (the switch to
        worker is under way): the API is no longer reached."""
        inner = Inner()
        moved = {**MASTER_STATUS, "master": "cand-b", "master_address": "10.0.0.2:1516"}
        status, body, _ = call(MasterGate(lambda: moved, 55000, inner), "DELETE", "/agents")
        self.assertEqual(status, 503)
        self.assertEqual(body["master"], "cand-b")
        self.assertEqual(inner.seen, [])

    def test_no_master_elected(self) -> None:
        """No master yet: 503 with Retry-After, and the problem says so."""
        none = {"node": "cand-b", "role": "worker", "master": None, "master_address": None}
        status, body, request = call(MasterGate(lambda: none, 55000), "GET", "/")
        self.assertEqual(status, 503)
        self.assertIn("no master is elected yet", body["detail"])
        self.assertIsNone(body["master_api"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"retry-after"), [b"5"])

    def test_read_only_master_serves_reads(self) -> None:
        """The last master while etcd does not answer: GET reaches the API, a write gets
        503 saying why; the health URL answers 200 with read_only."""
        inner = Inner()
        status = {
            "node": "cand-a",
            "role": "master",
            "master": None,
            "master_address": None,
            "read_only": True,
            "etcd": "connection refused",
        }
        gate = MasterGate(lambda: status, 55000, inner)
        self.assertEqual(call(gate, "GET", "/agents")[0], 200)
        code, body, _ = call(gate, "POST", "/agents")
        self.assertEqual(code, 503)
        self.assertIn("etcd does not answer (connection refused)", body["detail"])
        self.assertEqual(inner.seen, [b"/agents"])
        code, body, _ = call(gate, "GET", HEALTH_PATH)
        self.assertEqual((code, body["master"], body["read_only"]), (200, True, True))
        # etcd back but still showing this node's expiring key: still read-only.
        own = {**status, "master": "cand-a", "master_address": "10.0.0.1:1516"}
        self.assertEqual(call(MasterGate(lambda: own, 55000, inner), "PUT", "/groups")[0], 503)
        worker = {**status, "role": "worker"}  # read_only means nothing on a worker
        self.assertEqual(call(MasterGate(lambda: worker, 55000, inner), "GET", "/agents")[0], 503)

    def test_health_url_is_read_only(self) -> None:
        """Only GET and HEAD on the health URL."""
        status, _, _ = call(MasterGate(lambda: MASTER_STATUS, 55000), "POST", HEALTH_PATH)
        self.assertEqual(status, 405)

    def test_master_api_url(self) -> None:
        """The master's published host with the API port; IPv6 in brackets."""
        self.assertEqual(master_api_url(MASTER_STATUS, 443), "https://10.0.0.1:443")
        v6 = {**MASTER_STATUS, "master_address": "fd00::1:1516"}
        self.assertEqual(master_api_url(v6, 55000), "https://[fd00::1]:55000")
        self.assertIsNone(master_api_url({**MASTER_STATUS, "master": None}, 55000))


class ElectionDrivenGateTests(SynchronousTestCase):
    """The gate over a real RoleSwitcher's status: it follows the election."""

    def test_health_follows_the_election(self) -> None:
        """n1 elected: its health says 200, n2's 503 naming n1; n1 stops (lease revoked):
        n2 is master, its health says 200."""
        clock = Clock()
        etcd = MemoryEtcd(clock)
        n1 = Node(etcd, clock, "n1").start(self)
        n2 = Node(etcd, clock, "n2").start(self)
        gate1 = MasterGate(n1.switcher.failover_status, 55000, Inner())
        gate2 = MasterGate(n2.switcher.failover_status, 55000, Inner())
        self.assertEqual(call(gate1, "GET", HEALTH_PATH)[0], 503)  # nobody elected yet
        clock.advance(0)
        self.assertEqual(call(gate1, "GET", HEALTH_PATH)[0], 200)
        status, body, _ = call(gate2, "GET", "/agents")
        self.assertEqual((status, body["master_api"]), (503, "https://10.0.0.1:55000"))
        n1.switcher.stopService()
        clock.advance(0)
        self.assertEqual(call(gate2, "GET", HEALTH_PATH)[0], 200)
        for _ in range(3):
            clock.advance(TTL / 3)
        self.assertEqual(call(gate1, "GET", HEALTH_PATH)[0], 503)


class BuildSiteTests(SynchronousTestCase):
    """build_site puts the gate in front of the API only when the hooks carry the election."""

    def test_gate_only_with_failover(self) -> None:
        """Without ``failover`` the site's resource is the API itself; with it, the gate,
        which passes a master's calls through to that API (a real login works)."""
        harness = ApiHarness(self)
        plain, resource = build_site(
            harness.settings, harness.node, harness.registry, harness.clock.seconds, run_inline
        )
        self.addCleanup(resource.endpoints.tokens.store.close)
        self.assertIs(plain.resource, resource)
        statuses = [MASTER_STATUS]
        site, resource = build_site(
            harness.settings,
            harness.node,
            harness.registry,
            harness.clock.seconds,
            run_inline,
            ApiHooks(failover=lambda: statuses[-1]),
        )
        self.addCleanup(resource.endpoints.tokens.store.close)
        self.assertIsInstance(site.resource, MasterGate)
        self.assertEqual(call(site.resource, "GET", HEALTH_PATH)[0], 200)
        status, body, _ = call(site.resource, "GET", "/agents")
        self.assertEqual(status, 401)  # the API's own answer: no token
        statuses.append(STANDBY_STATUS)
        self.assertEqual(call(site.resource, "GET", "/agents")[0], 503)


class StandbyLimitsTests(SynchronousTestCase):
    """The standby's API port admits a connection by its first complete request."""

    def test_bare_connects_pending_until_a_request(self) -> None:
        """Bare connects from one address, more than its admitted cap, stay pending and are
        closed at the deadline; a client from that address that sends a request is answered
        (the standby counted bare TCP as admitted: the 3rd connect was refused, and nothing
        was ever closed for silence before the idle timeout)."""
        clock = Clock()
        log = RecordingLog()
        home = Path(self.mktemp())
        settings = ApiSettings(
            enabled=True,
            bind_addr="127.0.0.1",
            port=55000,
            cert=home / "api.pem",
            key=home / "api.key",
            api_dir=home,
            limits=ListenerLimits(
                handshake_timeout=3,
                idle_timeout=60,
                max_connections=4,
                max_per_address=2,
                max_pending=20,
                max_pending_per_address=10,
            ),
        )
        factory = standby_factory(settings, lambda: STANDBY_STATUS, clock, log)
        factory.wrappedFactory.reactor = clock  # the channels' timers on the test clock
        address = IPv4Address("TCP", "10.0.0.1", 40000)

        def connect() -> tuple[Any, Transport]:
            proto = factory.buildProtocol(address)
            transport = Transport(peerAddress=address)
            proto.makeConnection(transport)
            return proto, transport

        bare = [connect() for _ in range(5)]
        honest, honest_transport = connect()
        honest.dataReceived(b"GET /agents HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"HTTP/1.1 503 ", honest_transport.value())
        self.assertIn(b"the master is cand-a", honest_transport.value())
        self.assertEqual((factory.admitted, len(factory.pending)), (1, 5))
        self.assertFalse(any(transport.aborted for _, transport in bare))
        clock.advance(3)
        self.assertTrue(all(transport.aborted for _, transport in bare))
        self.assertFalse(honest_transport.aborted)
        self.assertIn(
            "Closing connection from 10.0.0.1: no complete request within 3 s.", log.warnings
        )

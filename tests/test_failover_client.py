"""The etcd gateway client against a fake HTTP layer (treq's StubTreq): encoding, decoding,
errors, bounds, timeouts, endpoint rotation and watch streams. No network, no real time."""

from __future__ import annotations

import base64
import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wazuhcluster.failover.client import EtcdClient
from wazuhcluster.failover.kv import (
    Compare,
    EtcdError,
    EtcdProtocolError,
    EtcdTimeout,
    EtcdUnavailable,
    KeyValue,
    LeaseNotFound,
    Op,
    WatchEvent,
    WatchResponse,
    prefix_end,
)


def b64(text: str | bytes) -> str:
    """Base64 of ``text`` as the gateway writes it."""
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


HEADER = {"cluster_id": "1", "member_id": "2", "revision": "7", "raft_term": "2"}


class FakeEtcd(Resource):
    """Answers every POST from ``answers[path]``: (status, body) or a callable(request)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Any] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.held: list[Request] = []

    def render_POST(self, request: Request) -> bytes | int:
        """Record the request and answer it."""
        path = request.path.decode()
        body = json.loads(request.content.read())
        self.requests.append((path, body))
        answer = self.answers.get(path, (404, b"404 page not found"))
        if callable(answer):
            return answer(request)
        status, payload = answer
        request.setResponseCode(status)
        return payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    def hold(self, request: Request) -> int:
        """An answer that never comes (until the test writes it)."""
        self.held.append(request)
        return NOT_DONE_YET


def result_of(deferred: Deferred[Any]) -> Any:
    """The result of a Deferred that has fired (raising its failure)."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class ClientTests(SynchronousTestCase):
    """Unary calls."""

    def setUp(self) -> None:
        """A client on a fake etcd with two endpoints."""
        self.etcd = FakeEtcd()
        self.stub = StubTreq(self.etcd)
        self.clock = Clock()
        self.client = EtcdClient(
            ["http://e1:2379", "http://e2:2379/"], self.stub, self.clock, timeout=3.0
        )

    def drive(self, coroutine: Any) -> Any:
        """Drive ``coroutine`` through the stub and return its result."""
        deferred = Deferred.fromCoroutine(coroutine)
        self.stub.flush()
        return result_of(deferred)

    def test_grant_and_keepalive(self) -> None:
        """A lease is granted with its TTL as a string; a keepalive renews it; a keepalive
        answer without TTL means the lease is gone."""
        self.etcd.answers["/v3/lease/grant"] = (200, {"header": HEADER, "ID": "42", "TTL": "10"})
        lease = self.drive(self.client.grant(10))
        self.assertEqual((lease.id, lease.ttl), (42, 10))
        self.assertEqual(self.etcd.requests[-1], ("/v3/lease/grant", {"TTL": "10"}))
        self.etcd.answers["/v3/lease/keepalive"] = (
            200,
            {"result": {"header": HEADER, "ID": "42", "TTL": "10"}},
        )
        self.assertEqual(self.drive(self.client.keepalive(42)).ttl, 10)
        self.etcd.answers["/v3/lease/keepalive"] = (200, {"result": {"header": HEADER, "ID": "42"}})
        with self.assertRaises(LeaseNotFound):
            self.drive(self.client.keepalive(42))

    def test_put_and_get_encode_bytes(self) -> None:
        """Keys and values travel in base64; a get decodes the key's revisions and lease."""
        self.etcd.answers["/v3/kv/put"] = (200, {"header": HEADER})
        self.assertEqual(self.drive(self.client.put("/k", b"\xff\x00", lease=9)), 7)
        self.assertEqual(
            self.etcd.requests[-1],
            ("/v3/kv/put", {"key": b64("/k"), "value": b64(b"\xff\x00"), "lease": "9"}),
        )
        kv = {
            "key": b64("/k"),
            "value": b64("v"),
            "create_revision": "5",
            "mod_revision": "6",
            "version": "2",
            "lease": "9",
        }
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER, "kvs": [kv], "count": "1"})
        self.assertEqual(self.drive(self.client.get("/k")), KeyValue(b"/k", b"v", 5, 6, 2, 9))
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER})
        self.assertIsNone(self.drive(self.client.get("/missing")))

    def test_prefix_range(self) -> None:
        """get_prefix asks for [prefix, prefix_end(prefix))."""
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER})
        self.drive(self.client.get_prefix("/a/", limit=10))
        self.assertEqual(
            self.etcd.requests[-1][1],
            {"key": b64("/a/"), "range_end": b64("/a0"), "limit": "10"},
        )

    def test_transaction(self) -> None:
        """A txn sends its comparisons and both branches, and decodes the branch's answers."""
        kv = {"key": b64("/l"), "value": b64("n1"), "create_revision": "3", "mod_revision": "3"}
        self.etcd.answers["/v3/kv/txn"] = (
            200,
            {
                "header": HEADER,
                "responses": [
                    {"response_range": {"header": {"revision": "7"}, "kvs": [kv], "count": "1"}},
                    {"response_delete_range": {"deleted": "2"}},
                ],
            },
        )
        result = self.drive(
            self.client.txn(
                [Compare.create_revision("/l", "=", 0), Compare.value_of("/l", "!=", "x")],
                [Op.put("/l", "n2", lease=4)],
                [Op.get("/l"), Op.delete("/d/", prefix_end("/d/"))],
            )
        )
        self.assertFalse(result.succeeded)
        self.assertEqual(result.revision, 7)
        self.assertEqual(result.ranges[0].first.value, b"n1")
        self.assertEqual(result.deleted, (2,))
        _, body = self.etcd.requests[-1]
        self.assertEqual(
            body["compare"],
            [
                {"key": b64("/l"), "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
                {"key": b64("/l"), "target": "VALUE", "result": "NOT_EQUAL", "value": b64("x")},
            ],
        )
        self.assertEqual(
            body["success"], [{"request_put": {"key": b64("/l"), "value": b64("n2"), "lease": "4"}}]
        )
        self.assertEqual(body["failure"][1]["request_delete_range"]["range_end"], b64("/d0"))

    def test_errors_are_classified(self) -> None:
        """An error body becomes LeaseNotFound, EtcdUnavailable (which moves to the next
        endpoint) or a plain EtcdError naming the endpoint."""
        self.etcd.answers["/v3/kv/put"] = (
            400,
            {"error": "etcdserver: requested lease not found", "code": 5},
        )
        with self.assertRaises(LeaseNotFound):
            self.drive(self.client.put("/k", "v", lease=1))
        self.assertEqual(self.client.endpoint, "http://e1:2379")
        self.etcd.answers["/v3/kv/put"] = (
            503,
            {"error": "etcdserver: request timed out", "code": 14},
        )
        with self.assertRaises(EtcdUnavailable):
            self.drive(self.client.put("/k", "v"))
        self.assertEqual(self.client.endpoint, "http://e2:2379")
        self.etcd.answers["/v3/kv/put"] = (400, {"message": "bad key", "code": 3})
        with self.assertRaises(EtcdError) as caught:
            self.drive(self.client.put("/k", "v"))
        self.assertEqual(str(caught.exception), "bad key (http://e2:2379)")
        self.assertEqual(caught.exception.code, 3)

    def test_bad_answers(self) -> None:
        """Not JSON, the wrong shape, or too large: EtcdProtocolError."""
        self.etcd.answers["/v3/kv/range"] = (200, b"<html>")
        with self.assertRaises(EtcdProtocolError):
            self.drive(self.client.get("/k"))
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER, "kvs": [{"key": "!!"}]})
        with self.assertRaises(EtcdProtocolError):
            self.drive(self.client.get("/k"))
        self.client.max_response = 100
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER, "padding": "x" * 200})
        with self.assertRaises(EtcdProtocolError) as caught:
            self.drive(self.client.get("/k"))
        self.assertIn("larger than 100 bytes", str(caught.exception))

    def test_timeout(self) -> None:
        """A write with no answer within the timeout: EtcdTimeout (it may have been applied,
        so it is not repeated), and the next call goes elsewhere."""
        self.etcd.answers["/v3/kv/put"] = self.etcd.hold
        deferred = Deferred.fromCoroutine(self.client.put("/k", "v"))
        self.stub.flush()
        self.assertNoResult(deferred)
        self.clock.advance(3.0)
        self.failureResultOf(deferred, EtcdTimeout)
        self.assertEqual(self.client.endpoint, "http://e2:2379")
        self.assertEqual(len(self.etcd.requests), 1)

    def test_hanging_member_is_passed_over_by_repeatable_calls(self) -> None:
        """A keepalive or a read that a member leaves unanswered is sent to the next member
        as soon as its own (shorter) timeout passes, and answered there in the same call;
        when every member hangs the call fails after one timeout per member."""
        hanging = {"http://e1:2379"}
        stub = self.stub

        class Requester:
            def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
                if any(url.startswith(endpoint) for endpoint in hanging):
                    return Deferred()  # connection open, no answer
                return stub.request(method, url, **kwargs)

        client = EtcdClient(["http://e1:2379", "http://e2:2379"], Requester(), self.clock)
        self.etcd.answers["/v3/lease/keepalive"] = (
            200,
            {"result": {"header": HEADER, "ID": "42", "TTL": "10"}},
        )
        renewed = Deferred.fromCoroutine(client.keepalive(42, timeout=1.5))
        self.clock.advance(1.49)
        self.assertNoResult(renewed)
        self.clock.advance(0.01)
        self.stub.flush()
        self.assertEqual(self.successResultOf(renewed).ttl, 10)
        self.assertEqual(client.endpoint, "http://e2:2379")
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER})
        hanging = {"http://e2:2379"}
        read = Deferred.fromCoroutine(client.get("/k", timeout=2.0))
        self.clock.advance(2.0)
        self.stub.flush()
        self.assertIsNone(self.successResultOf(read))
        self.assertEqual(client.endpoint, "http://e1:2379")
        hanging = {"http://e1:2379", "http://e2:2379"}
        lost = Deferred.fromCoroutine(client.keepalive(42, timeout=1.0))
        self.clock.advance(1.0)
        self.assertNoResult(lost)
        self.clock.advance(1.0)
        self.assertIn("no etcd endpoint answered", str(self.failureResultOf(lost).value))

    def test_moving_on_is_logged(self) -> None:
        """With a log, each member passed over by a repeatable call is named in cluster.log
        with the reason; the last one is not (the call fails, its caller says why)."""
        from twisted.logger import LogEvent, formatEvent, globalLogPublisher

        from wazuhcluster.util.logs import ClusterLog

        lines: list[str] = []

        def observe(event: LogEvent) -> None:
            if event.get("cluster_task") == "Failover":
                lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        stub = self.stub

        class Requester:
            def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
                if url.startswith("http://e1:2379"):
                    return Deferred()
                return stub.request(method, url, **kwargs)

        client = EtcdClient(
            ["http://e1:2379", "http://e2:2379"],
            Requester(),
            self.clock,
            log=ClusterLog("Master m1", "Failover"),
        )
        self.etcd.answers["/v3/kv/txn"] = (200, {"header": HEADER, "succeeded": True})
        done = Deferred.fromCoroutine(client.txn([], [Op.put("/k", "v")], timeout=1.0, retry=True))
        self.clock.advance(1.0)
        self.stub.flush()
        self.assertTrue(self.successResultOf(done).succeeded)
        self.assertEqual(
            lines,
            [
                "etcd member http://e1:2379 did not answer /kv/txn (no answer to /kv/txn within "
                "1 s); asking the next member"
            ],
        )
        self.etcd.answers["/v3/kv/txn"] = (503, {"message": "etcdserver: no leader", "code": 14})
        lost = Deferred.fromCoroutine(client.txn([], [Op.put("/k", "v")], timeout=1.0, retry=True))
        self.stub.flush()
        self.clock.advance(1.0)
        self.failureResultOf(lost, EtcdUnavailable)
        self.assertEqual(len(lines), 2)
        self.assertIn("http://e2:2379 did not answer /kv/txn (etcdserver: no leader)", lines[1])

    def test_concurrent_calls_each_try_every_endpoint_in_turn(self) -> None:
        """Two calls stuck on the same member move on independently: the one that gives up
        later still tries the member right after it (not one further, skipped because the
        other call already moved the client on)."""
        hanging = ("http://e1:2379", "http://e3:2379")
        stub = self.stub

        class Requester:
            def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
                if url.startswith(hanging):
                    return Deferred()
                return stub.request(method, url, **kwargs)

        endpoints = ["http://e1:2379", "http://e2:2379", "http://e3:2379"]
        client = EtcdClient(endpoints, Requester(), self.clock)
        self.etcd.answers["/v3/lease/keepalive"] = (
            200,
            {"result": {"header": HEADER, "ID": "42", "TTL": "10"}},
        )
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER})
        renewed = Deferred.fromCoroutine(client.keepalive(42, timeout=1.0))
        read = Deferred.fromCoroutine(client.get("/k", timeout=0.5))
        self.clock.advance(0.5)
        self.stub.flush()
        self.assertIsNone(self.successResultOf(read))
        self.clock.advance(0.5)
        self.stub.flush()
        self.assertEqual(self.successResultOf(renewed).ttl, 10)
        self.assertEqual(client.endpoint, "http://e2:2379")

    def test_timeout_is_never_above_the_client_timeout(self) -> None:
        """A per-call timeout longer than the client's is cut to the client's."""
        self.etcd.answers["/v3/lease/keepalive"] = self.etcd.hold
        client = EtcdClient(["http://e1:2379"], self.stub, self.clock, timeout=3.0)
        deferred = Deferred.fromCoroutine(client.keepalive(1, timeout=60))
        self.stub.flush()
        self.clock.advance(3.0)
        self.failureResultOf(deferred, EtcdTimeout)

    def test_refused_endpoint_is_skipped(self) -> None:
        """A refused connection is retried on the next endpoint within the same call; when
        every endpoint refuses, EtcdUnavailable lists them."""
        dead: set[str] = {"http://e1:2379"}
        stub = self.stub

        class Requester:
            def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
                if any(url.startswith(endpoint) for endpoint in dead):
                    return fail(ConnectionRefusedError())
                return stub.request(method, url, **kwargs)

        client = EtcdClient(["http://e1:2379", "http://e2:2379"], Requester(), self.clock)
        self.etcd.answers["/v3/kv/put"] = (200, {"header": HEADER})
        self.assertEqual(self.drive(client.put("/k", "v")), 7)
        self.assertEqual(client.endpoint, "http://e2:2379")
        dead.add("http://e2:2379")
        with self.assertRaises(EtcdUnavailable) as caught:
            self.drive(client.put("/k", "v"))
        self.assertIn("no etcd endpoint reachable", str(caught.exception))

    def test_endpoints_are_checked(self) -> None:
        """An endpoint without http(s):// or no endpoint at all is refused at once."""
        with self.assertRaises(ValueError):
            EtcdClient(["e1:2379"], self.stub, self.clock)
        with self.assertRaises(ValueError):
            EtcdClient([], self.stub, self.clock)


def line(result: dict[str, Any]) -> bytes:
    """One line of a watch stream."""
    return json.dumps({"result": {"header": HEADER, **result}}).encode() + b"\n"


class WatchTests(SynchronousTestCase):
    """Watch streams."""

    def setUp(self) -> None:
        """A client whose watch requests are held open for the test to write to."""
        self.etcd = FakeEtcd()
        self.etcd.answers["/v3/watch"] = self.etcd.hold
        self.stub = StubTreq(self.etcd)
        self.clock = Clock()
        self.client = EtcdClient(["http://e1:2379"], self.stub, self.clock, timeout=3.0)
        self.seen: list[WatchResponse] = []

    def start(self, **kwargs: Any) -> Any:
        """Start a watch on /w/ and return it with the server side of its request."""
        watch = self.client.watch("/w/", self.seen.append, range_end="/w0", **kwargs)
        self.stub.flush()
        [request] = self.etcd.held
        return watch, request

    def test_events_then_stop(self) -> None:
        """created fires with the revision, events arrive in order, stop() ends it."""
        watch, request = self.start(start_revision=5, prev_kv=True)
        self.assertEqual(
            self.etcd.requests[-1][1],
            {
                "create_request": {
                    "key": b64("/w/"),
                    "range_end": b64("/w0"),
                    "start_revision": "5",
                    "prev_kv": True,
                }
            },
        )
        request.write(line({"created": True}))
        self.stub.flush()
        self.assertEqual(self.successResultOf(watch.created), 7)
        kv = {"key": b64("/w/1"), "value": b64("a"), "mod_revision": "8"}
        request.write(line({"events": [{"kv": kv}]}))
        request.write(line({"events": [{"type": "DELETE", "kv": kv, "prev_kv": kv}]})[:-10])
        self.stub.flush()
        self.assertEqual([e.type for r in self.seen for e in r.events], ["PUT"])
        request.write(line({"events": [{"type": "DELETE", "kv": kv, "prev_kv": kv}]})[-10:])
        self.stub.flush()
        self.assertEqual([e.type for r in self.seen for e in r.events], ["PUT", "DELETE"])
        self.assertTrue(watch.active)
        watch.stop()
        self.stub.flush()
        self.assertEqual(self.successResultOf(watch.ended).reason, "stopped")
        self.assertFalse(watch.active)

    def test_canceled_by_etcd(self) -> None:
        """A compacted start revision ends the watch with the compact revision."""
        watch, request = self.start(start_revision=2)
        request.write(line({"created": True}))
        request.write(line({"canceled": True, "compact_revision": "6"}))
        self.stub.flush()
        end = self.successResultOf(watch.ended)
        self.assertEqual(end.compact_revision, 6)
        self.assertIsNone(end.error)

    def test_not_confirmed(self) -> None:
        """No created message within the timeout: the watch ends with EtcdTimeout."""
        watch, _ = self.start()
        self.clock.advance(3.0)
        self.assertIsNone(self.successResultOf(watch.created))
        self.assertIsInstance(self.successResultOf(watch.ended).error, EtcdTimeout)

    def test_stream_cut_or_garbled(self) -> None:
        """A stream that ends is an EtcdUnavailable end; a garbled line a protocol error."""
        watch, request = self.start()
        request.write(line({"created": True}))
        request.finish()
        self.stub.flush()
        self.assertIsInstance(self.successResultOf(watch.ended).error, EtcdUnavailable)
        self.etcd.held.clear()
        watch, request = self.start()
        request.write(b"{not json\n")
        self.stub.flush()
        self.assertIsInstance(self.successResultOf(watch.ended).error, EtcdProtocolError)

    def test_line_too_long(self) -> None:
        """A line longer than the client's bound ends the watch."""
        self.client.max_response = 50
        watch, request = self.start()
        request.write(b"x" * 60)
        self.stub.flush()
        end = self.successResultOf(watch.ended)
        self.assertIsInstance(end.error, EtcdProtocolError)

    def test_error_line(self) -> None:
        """An error message in the stream ends the watch with that error."""
        watch, request = self.start()
        request.write(json.dumps({"error": {"message": "no leader", "code": 14}}).encode() + b"\n")
        self.stub.flush()
        self.assertIsInstance(self.successResultOf(watch.ended).error, EtcdUnavailable)


class KvTests(SynchronousTestCase):
    """The pure parts."""

    def test_prefix_end(self) -> None:
        """The end of a prefix range is the prefix with its last byte increased."""
        self.assertEqual(prefix_end("/a/"), b"/a0")
        self.assertEqual(prefix_end(b"a\xff"), b"b")
        self.assertEqual(prefix_end(b"\xff"), b"\0")

    def test_compare_operators(self) -> None:
        """Unknown operators are refused; lease and version comparisons name their field."""
        with self.assertRaises(ValueError):
            Compare.version("/k", "==", 1)
        self.assertEqual(Compare.lease("/k", ">", 3).to_json()["lease"], "3")
        self.assertEqual(Compare.version("/k", "<", 2).to_json()["version"], "2")
        self.assertEqual(Compare.mod_revision("/k", "=", 2).to_json()["mod_revision"], "2")

    def test_watch_event_types(self) -> None:
        """An event without a type is a PUT; an unknown type is refused."""
        event = WatchEvent.from_json({"kv": {"key": b64("k")}})
        self.assertEqual((event.type, event.kv.key, event.prev), ("PUT", b"k", None))
        with self.assertRaises(EtcdProtocolError):
            WatchEvent.from_json({"type": "EXPLODE", "kv": {}})
        with self.assertRaises(EtcdProtocolError):
            KeyValue.from_json({"create_revision": True})

"""The etcd client against a real etcd on 127.0.0.1: leases, keys, transactions, watches, TLS,
and the leader's fenced writes sent again after a lost answer (applied exactly once)."""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.helpers import short_temp_dir
from wazuhcluster.failover.client import EtcdClient, EtcdTls, HttpRequester
from wazuhcluster.failover.election import LeadershipService
from wazuhcluster.failover.kv import (
    Compare,
    EtcdUnavailable,
    LeaseNotFound,
    Op,
    TxnResult,
    WatchResponse,
)
from wazuhcluster.testing.devcluster import free_port
from wazuhcluster.testing.etcd import EtcdCluster, require_etcd
from wazuhcluster.util.logs import ClusterLog

#: Generous: a shared CI machine.
DEADLINE = 30.0


class EtcdClientRealTests(TestCase):
    """One real etcd member per test."""

    timeout = 120

    def setUp(self) -> None:
        """Start one member and a client on its endpoint."""
        require_etcd()
        self.cluster = EtcdCluster(short_temp_dir(self))
        self.addCleanup(self.cluster.stop)
        self.cluster.start()
        self.client = EtcdClient.connect(reactor, self.cluster.endpoints)
        self.addCleanup(lambda: Deferred.fromCoroutine(self.client.close()))

    async def test_put_get_delete(self) -> None:
        """A put is read back with its revisions; a delete removes it; a prefix lists keys."""
        revision = await self.client.put("/t/a", b"\x00one")
        await self.client.put("/t/b", "two")
        kv = await self.client.get("/t/a")
        assert kv is not None
        self.assertEqual((kv.key, kv.value), (b"/t/a", b"\x00one"))
        self.assertEqual(kv.create_revision, revision)
        listed = await self.client.get_prefix("/t/")
        self.assertEqual([item.key for item in listed.kvs], [b"/t/a", b"/t/b"])
        self.assertEqual(await self.client.delete("/t/a"), 1)
        self.assertIsNone(await self.client.get("/t/a"))

    async def test_lease_lifecycle(self) -> None:
        """A granted lease is kept alive and binds keys; revoking it deletes them, and a
        keepalive of the revoked lease says the lease is not found."""
        lease = await self.client.grant(5)
        self.assertEqual(lease.ttl, 5)
        self.assertEqual((await self.client.keepalive(lease.id)).ttl, 5)
        await self.client.put("/bound", "x", lease=lease.id)
        self.assertEqual((await self.client.get("/bound")).lease, lease.id)  # type: ignore[union-attr]
        await self.client.revoke(lease.id)
        self.assertIsNone(await self.client.get("/bound"))
        with self.assertRaises(LeaseNotFound):
            await self.client.keepalive(lease.id)
        with self.assertRaises(LeaseNotFound):
            await self.client.put("/again", "x", lease=lease.id)

    async def test_transaction_create_if_absent(self) -> None:
        """Create-if-absent succeeds once; the second attempt sees the first owner."""
        absent = [Compare.create_revision("/leader", "=", 0)]
        first = await self.client.txn(absent, [Op.put("/leader", "n1")], [Op.get("/leader")])
        self.assertTrue(first.succeeded)
        second = await self.client.txn(absent, [Op.put("/leader", "n2")], [Op.get("/leader")])
        self.assertFalse(second.succeeded)
        owner = second.ranges[0].first
        assert owner is not None
        self.assertEqual((owner.value, owner.create_revision), (b"n1", first.revision))
        fenced = await self.client.txn(
            [Compare.mod_revision("/leader", "=", first.revision)], [Op.put("/data", "ok")]
        )
        self.assertTrue(fenced.succeeded)

    async def test_watch_sees_put_and_delete(self) -> None:
        """A prefix watch reports a put and a delete (with the previous value), then stops."""
        seen: list[WatchResponse] = []
        done: Deferred[None] = Deferred()

        def on_response(response: WatchResponse) -> None:
            seen.append(response)
            if sum(len(r.events) for r in seen) >= 2 and not done.called:
                done.callback(None)

        watch = self.client.watch("/w/", on_response, range_end="/w0", prev_kv=True)
        self.addCleanup(watch.stop)
        created = await watch.created
        self.assertIsNotNone(created)
        await self.client.put("/w/1", "one")
        await self.client.delete("/w/1")
        await done.addTimeout(DEADLINE, reactor)
        events = [event for response in seen for event in response.events]
        self.assertEqual([e.type for e in events], ["PUT", "DELETE"])
        self.assertEqual(events[1].prev.value, b"one")  # type: ignore[union-attr]
        watch.stop()
        end = await watch.ended
        self.assertEqual(end.reason, "stopped")

    async def test_watch_of_compacted_revision_ends(self) -> None:
        """A watch from a compacted revision ends, saying where the history now starts."""
        first = await self.client.put("/c", "1")
        latest = await self.client.put("/c", "2")
        await self.client.call("/kv/compaction", {"revision": str(latest)})
        watch = self.client.watch("/c", lambda r: None, start_revision=first)
        end = await watch.ended.addTimeout(DEADLINE, reactor)
        self.assertEqual(end.compact_revision, latest)

    async def test_stopped_etcd_is_unavailable(self) -> None:
        """With etcd stopped a call fails with EtcdUnavailable, not a hang."""
        self.cluster.stop()
        with self.assertRaises(EtcdUnavailable):
            await self.client.get("/x")

    async def test_dead_endpoint_is_skipped(self) -> None:
        """A refused endpoint listed first is skipped for the live one."""
        client = EtcdClient.connect(
            reactor, [f"http://127.0.0.1:{free_port()}", *self.cluster.endpoints]
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(client.close()))
        await client.put("/k", "v")
        self.assertEqual(client.endpoint, self.cluster.endpoints[0])


class LosingRequester:
    """Passes requests to treq, except the next transaction once ``trap`` is set: it is
    kept in :attr:`kept` (URL and body) and never answered; with ``deliver`` it reaches
    etcd first (applied there, its answer lost)."""

    def __init__(self, inner: HttpRequester) -> None:
        self.inner = inner
        self.trap = False
        self.deliver = False
        self.kept: list[tuple[str, bytes]] = []

    def request(self, method: str, url: str, *, data: bytes, headers: Any) -> Deferred[Any]:
        """One request, or the trapped transaction's silence."""
        if not (self.trap and url.endswith("/kv/txn")):
            return self.inner.request(method, url, data=data, headers=headers)
        self.trap = False
        self.kept.append((url, data))
        if self.deliver:
            self.inner.request(method, url, data=data, headers=headers).addErrback(lambda _: None)
        return Deferred()


async def wait_until(condition: Any, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` on the reactor until true (fails on timeout)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, 0.05)


class FencedRetryRealTests(TestCase):
    """A leader's fenced write whose answer is lost, on a real etcd reached under two names
    (127.0.0.1 and localhost: two endpoints, one member)."""

    timeout = 120

    async def leader(self) -> tuple[LeadershipService, LosingRequester]:
        """A started, elected leader (TTL 3 s: a member has 1 s to answer) whose client's
        transactions can be trapped."""
        require_etcd()
        cluster = EtcdCluster(short_temp_dir(self))
        self.addCleanup(cluster.stop)
        cluster.start()
        [endpoint] = cluster.endpoints
        endpoints = [endpoint, endpoint.replace("127.0.0.1", "localhost")]
        client = EtcdClient.connect(reactor, endpoints)
        self.addCleanup(lambda: Deferred.fromCoroutine(client.close()))
        requester = client.http = LosingRequester(client.http)
        service = LeadershipService(
            client, "/t/leader", "n1", 3, reactor, ClusterLog("Master n1", "Failover")
        )
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        await wait_until(lambda: service.is_leader)
        return service, requester

    async def test_late_first_attempt_applies_nothing(self) -> None:
        """The first attempt never reaches etcd in time: after 1 s the write goes to the
        next endpoint and is applied; the first attempt delivered afterwards is refused by
        etcd (its marker slot moved), so the key was written once."""
        service, requester = await self.leader()
        requester.trap = True
        revision = await service.fenced_put("/t/data", "v1")
        [(_url, late)] = requester.kept
        answer = await service.client.call("/kv/txn", json.loads(late))  # type: ignore[attr-defined]
        self.assertFalse(TxnResult.from_json(answer).succeeded)
        data = await service.client.get("/t/data")
        assert data is not None
        self.assertEqual((data.value, data.version, data.mod_revision), (b"v1", 1, revision))

    async def test_lost_answer_is_not_applied_twice(self) -> None:
        """The first attempt is applied by etcd but its answer is lost: the repeat on the
        next endpoint finds the write's marker and reports the write done, not applied
        again; the next write goes straight through."""
        service, requester = await self.leader()
        requester.trap = requester.deliver = True
        revision = await service.fenced_put("/t/data", "v1")
        self.assertEqual(len(requester.kept), 1)
        data = await service.client.get("/t/data")
        assert data is not None
        self.assertEqual((data.value, data.version, data.mod_revision), (b"v1", 1, revision))
        await service.fenced_put("/t/data", "v2")
        data = await service.client.get("/t/data")
        assert data is not None
        self.assertEqual((data.value, data.version), (b"v2", 2))


class EtcdClientTlsTests(TestCase):
    """A real etcd serving https with client certificates required."""

    timeout = 120

    async def test_mutual_tls(self) -> None:
        """With the CA and a client certificate the client works over https."""
        require_etcd()
        cluster = EtcdCluster(short_temp_dir(self), tls=True)
        self.addCleanup(cluster.stop)
        cluster.start()
        material = cluster.client_material
        assert material is not None
        client = EtcdClient.connect(
            reactor, cluster.endpoints, EtcdTls(material.ca, material.cert, material.key)
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(client.close()))
        await client.put("/tls", "yes")
        self.assertEqual((await client.get("/tls")).value, b"yes")  # type: ignore[union-attr]
        lease = await client.grant(3)
        await client.revoke(lease.id)

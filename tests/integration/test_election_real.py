"""Election and fencing against a real etcd on 127.0.0.1, with a short lease TTL."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.helpers import short_temp_dir
from wazuhcluster.failover.client import EtcdClient
from wazuhcluster.failover.election import LeadershipService, NotLeader
from wazuhcluster.failover.kv import Compare, Op
from wazuhcluster.testing.devcluster import free_port
from wazuhcluster.testing.etcd import EtcdCluster, require_etcd
from wazuhcluster.util.logs import ClusterLog

TTL = 2
KEY = "/wazuhcluster/test/leader"
#: Generous: a shared CI machine.
DEADLINE = 30.0


class Candidate:
    """One LeadershipService with its own client, recording what it was told."""

    def __init__(self, name: str, endpoints: list[str], ttl: int = TTL) -> None:
        self.client = EtcdClient.connect(reactor, endpoints, timeout=1.0)
        self.service = LeadershipService(
            self.client, KEY, name, ttl, reactor, ClusterLog(f"Master {name}", "Failover")
        )
        self.events: list[tuple[str, Any]] = []
        self.service.subscribe(
            elected=lambda term: self.events.append(("elected", term)),
            lost=lambda term, reason: self.events.append(("lost", reason)),
        )

    async def stop(self) -> None:
        """Stop the service (if running) and close the client."""
        if self.service.running:
            await self.service.stopService()
        await self.client.close()


async def wait_until(condition: Any, timeout: float = DEADLINE) -> float:
    """Poll ``condition`` on the reactor until true; the seconds it took (fails on timeout)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, 0.05)
    return time.monotonic() - start


class ElectionRealTests(TestCase):
    """Candidates campaigning on one real etcd member."""

    timeout = 180

    def setUp(self) -> None:
        """Start etcd."""
        require_etcd()
        self.etcd = EtcdCluster(short_temp_dir(self))
        self.addCleanup(self.etcd.stop)
        self.etcd.start()

    def candidate(self, name: str) -> Candidate:
        """A started candidate, stopped after the test."""
        candidate = Candidate(name, self.etcd.endpoints)
        self.addCleanup(lambda: Deferred.fromCoroutine(candidate.stop()))
        candidate.service.startService()
        return candidate

    async def test_one_leader_then_takeover(self) -> None:
        """Two candidates: exactly one leads. Its lease revoked, the other takes over within
        the TTL with a higher term, and the deposed one's fenced writes fail."""
        first, second = self.candidate("n1"), self.candidate("n2")
        await wait_until(lambda: first.service.is_leader or second.service.is_leader)
        await deferLater(reactor, TTL)  # time for a second leader to appear, if it could
        leaders = [c for c in (first, second) if c.service.is_leader]
        self.assertEqual(len(leaders), 1)
        leader = leaders[0]
        other = second if leader is first else first
        self.assertEqual(other.service.leader.leader, leader.service.node_name)  # type: ignore[union-attr]
        old_term = leader.service.term
        assert old_term is not None
        revision = await leader.service.fenced_put("/wazuhcluster/test/data", "v1")
        self.assertGreater(revision, old_term)

        await leader.client.revoke(leader.service._lease)  # type: ignore[arg-type]
        with self.assertRaises(NotLeader):
            await leader.service.fenced_put("/wazuhcluster/test/data", "stale")
        self.assertFalse(leader.service.is_leader)
        self.assertEqual(len([event for event in leader.events if event[0] == "lost"]), 1)
        took = await wait_until(lambda: other.service.is_leader, timeout=TTL + 1)
        self.assertLess(took, TTL)
        self.assertGreater(other.service.term, old_term)  # type: ignore[operator]
        value = await other.client.get("/wazuhcluster/test/data")
        self.assertEqual(value.value, b"v1")  # type: ignore[union-attr]

    async def test_partitioned_leader_hands_over(self) -> None:
        """A leader cut from etcd (its endpoint now refuses) steps down by its own clock
        within the TTL; the other candidate is elected once the lease expires in etcd, and
        the cut one cannot commit."""
        first = self.candidate("n1")
        await wait_until(lambda: first.service.is_leader)
        term = first.service.term
        second = self.candidate("n2")
        await wait_until(lambda: second.service.leader is not None)
        first.client.endpoints = [f"http://127.0.0.1:{free_port()}"]
        stepped_down = await wait_until(lambda: not first.service.is_leader, timeout=TTL + 2)
        self.assertLessEqual(stepped_down, TTL + 0.5)
        took = await wait_until(lambda: second.service.is_leader, timeout=3 * TTL + 2)
        self.assertLess(stepped_down, stepped_down + took)
        self.assertGreater(second.service.term, term)  # type: ignore[operator]
        self.assertFalse(first.service.is_leader)
        with self.assertRaises(NotLeader):
            await first.service.fenced_put("/x", "stale")

    async def test_fenced_txn_with_conditions(self) -> None:
        """A fenced transaction with the caller's own comparison runs its failure branch
        when only that comparison fails."""
        leader = self.candidate("n1")
        await wait_until(lambda: leader.service.is_leader)
        created = await leader.service.fenced_txn(
            [Op.put("/agents/001", "a")], compare=[Compare.create_revision("/agents/001", "=", 0)]
        )
        self.assertTrue(created.succeeded)
        again = await leader.service.fenced_txn(
            [Op.put("/agents/001", "b")],
            compare=[Compare.create_revision("/agents/001", "=", 0)],
            failure=[Op.get("/agents/001")],
        )
        self.assertFalse(again.succeeded)
        self.assertEqual(again.ranges[0].first.value, b"a")  # type: ignore[union-attr]

    async def test_clean_stop_hands_over_at_once(self) -> None:
        """A leader that stops revokes its lease: the other is elected well within the TTL."""
        first, second = self.candidate("n1"), self.candidate("n2")
        await wait_until(lambda: first.service.is_leader or second.service.is_leader)
        leader, other = (first, second) if first.service.is_leader else (second, first)
        await wait_until(lambda: other.service.leader is not None)
        await leader.service.stopService()
        took = await wait_until(lambda: other.service.is_leader, timeout=TTL + 1)
        self.assertLess(took, TTL)
        self.assertIn(("lost", "this node is stopping"), leader.events)

    async def test_etcd_down_then_back(self) -> None:
        """etcd stopped: the leader steps down within the TTL and refuses fenced writes;
        etcd back: a leader is elected again by itself."""
        leader = self.candidate("n1")
        await wait_until(lambda: leader.service.is_leader)
        self.etcd.stop()
        took = await wait_until(lambda: not leader.service.is_leader, timeout=TTL + 2)
        self.assertLessEqual(took, TTL + 0.5)
        lost = [event for event in leader.events if event[0] == "lost"]
        self.assertEqual(len(lost), 1)
        self.assertIn("no lease renewal", lost[0][1])
        with self.assertRaises(NotLeader):
            await leader.service.fenced_put("/x", "y")
        self.etcd.start()
        await wait_until(lambda: leader.service.is_leader)
        await leader.service.fenced_put("/x", "y")

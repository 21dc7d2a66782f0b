"""The election's rules on an in-memory etcd and a task.Clock: who leads, when a leader steps
down and why, fenced writes. Deterministic: no network, no real time."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.failover.election import (
    Address,
    LeadershipService,
    NotLeader,
    Term,
    leader_since,
    leader_value,
    parse_leader_value,
)
from wazuhcluster.failover.fenced import WRITE_SLOTS, MarkerSlots
from wazuhcluster.failover.kv import (
    Compare,
    EtcdError,
    EtcdTimeout,
    EtcdUnavailable,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    RangeResult,
    TxnResult,
    WatchEvent,
    WatchResponse,
    to_bytes,
)
from wazuhcluster.util.logs import ClusterLog

KEY = "/wazuhcluster/wazuh/leader"
TTL = 9


class FakeWatch:
    """A watch the fake etcd feeds."""

    def __init__(self, key: bytes, on_response: Callable[[WatchResponse], None]) -> None:
        self.key = key
        self.on_response = on_response
        self.ended: Deferred[Any] = Deferred()

    def stop(self) -> None:
        """End it."""
        if not self.ended.called:
            self.ended.callback(None)


class MemoryEtcd:
    """Just enough of etcd for the election: leases that expire on the clock, keys, the
    transaction comparisons it uses, watches of deletions, and a switch to cut it off."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.revision = 1
        self.keys: dict[bytes, KeyValue] = {}
        self.leases: dict[int, tuple[int, float]] = {}
        self.next_lease = 100
        self.down = False
        self.watches: list[FakeWatch] = []
        self.txn_retries: list[bool] = []
        #: Faults for the next transactions, one each, in order: ``"lost-answer"`` (applied,
        #: then no answer), ``"no-answer"`` (not applied, no answer), ``"held"`` (no answer
        #: now; kept in :attr:`held` to be delivered later with :meth:`deliver`).
        self.txn_faults: list[str] = []
        self.held: list[tuple[Sequence[Compare], Sequence[Op], Sequence[Op]]] = []
        #: While set, every transaction waits for it to fire (writes in flight at once).
        self.gate: Deferred[None] | None = None

    def _expire(self) -> None:
        now = self.clock.seconds()
        for lease, (_, expiry) in list(self.leases.items()):
            if now >= expiry:
                self._drop_lease(lease)

    def _drop_lease(self, lease: int) -> None:
        self.leases.pop(lease, None)
        for key, kv in list(self.keys.items()):
            if kv.lease == lease:
                self._delete(key)

    def _delete(self, key: bytes) -> None:
        kv = self.keys.pop(key)
        self.revision += 1
        event = WatchEvent("DELETE", evolve(kv, value=b"", mod_revision=self.revision))
        for watch in list(self.watches):
            if watch.key == key and not watch.ended.called:
                watch.on_response(WatchResponse(self.revision, False, False, "", 0, (event,)))

    def _check(self) -> None:
        if self.down:
            raise EtcdUnavailable("connection refused", endpoint="http://fake")
        self._expire()

    def _put(self, key: bytes, value: bytes, lease: int) -> None:
        if lease and lease not in self.leases:
            raise LeaseNotFound("etcdserver: requested lease not found", 5)
        self.revision += 1
        old = self.keys.get(key)
        self.keys[key] = KeyValue(
            key,
            value,
            old.create_revision if old else self.revision,
            self.revision,
            (old.version if old else 0) + 1,
            lease,
        )

    async def grant(self, ttl: int) -> Lease:
        """A lease expiring ``ttl`` seconds from now."""
        self._check()
        self.next_lease += 1
        self.leases[self.next_lease] = (ttl, self.clock.seconds() + ttl)
        return Lease(self.next_lease, ttl)

    async def keepalive(self, lease: int, timeout: float | None = None) -> Lease:
        """Renew, or LeaseNotFound."""
        self._check()
        if lease not in self.leases:
            raise LeaseNotFound("lease expired", 5)
        ttl, _ = self.leases[lease]
        self.leases[lease] = (ttl, self.clock.seconds() + ttl)
        return Lease(lease, ttl)

    async def revoke(self, lease: int) -> None:
        """End a lease and its keys."""
        self._check()
        if lease not in self.leases:
            raise LeaseNotFound("lease not found", 5)
        self._drop_lease(lease)

    async def get(self, key: bytes | str, timeout: float | None = None) -> KeyValue | None:
        """One key."""
        self._check()
        return self.keys.get(to_bytes(key))

    def _holds(self, compare: Compare) -> bool:
        kv = self.keys.get(compare.key)
        actual: Any = {
            "CREATE": kv.create_revision if kv else 0,
            "MOD": kv.mod_revision if kv else 0,
            "LEASE": kv.lease if kv else 0,
            "VALUE": kv.value if kv else b"",
        }[compare.target]
        assert compare.result == "EQUAL", "the fake only compares for equality"
        return bool(actual == compare.value)

    def _apply(self, ops: Sequence[Op]) -> TxnResult:
        ranges: list[RangeResult] = []
        nested: TxnResult | None = None
        for op in ops:
            body = op.body
            if op.kind == "request_put":
                self._put(_raw(body["key"]), _raw(body["value"]), int(body.get("lease", 0)))
            elif op.kind == "request_delete_range":
                start = _raw(body["key"])
                end = _raw(body["range_end"]) if body.get("range_end") else None
                for key in [k for k in self.keys if k == start or (end and start <= k < end)]:
                    self._delete(key)
            elif op.kind == "request_range":
                kv = self.keys.get(_raw(body["key"]))
                ranges.append(RangeResult((kv,) if kv else (), int(bool(kv)), False, 0))
            elif op.kind == "request_txn":
                compare = [_compare(item) for item in body["compare"]]
                nested = self._run(
                    compare,
                    [_op(item) for item in body["success"]],
                    [_op(item) for item in body["failure"]],
                )
        return TxnResult(True, self.revision, tuple(ranges), (), nested)

    def _run(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        ok = all(self._holds(item) for item in compare)
        result = self._apply(success if ok else failure)
        return evolve(result, succeeded=ok, revision=self.revision)

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
        timeout: float | None = None,
        retry: bool = False,
    ) -> TxnResult:
        """Atomically: compare, then one branch (``retry`` recorded in ``txn_retries``),
        unless a fault in ``txn_faults`` says otherwise."""
        if self.gate is not None:
            await self.gate
        self._check()
        self.txn_retries.append(retry)
        fault = self.txn_faults.pop(0) if self.txn_faults else None
        if fault == "lost-answer":
            self._run(compare, success, failure)
        elif fault == "held":
            self.held.append((compare, success, failure))
        if fault is not None:
            raise EtcdTimeout("no answer to /kv/txn within 3 s", endpoint="http://fake")
        return self._run(compare, success, failure)

    def deliver(self) -> TxnResult:
        """Apply the oldest held transaction now (a request that reaches etcd late)."""
        return self._run(*self.held.pop(0))

    def watch(
        self,
        key: bytes | str,
        on_response: Callable[[WatchResponse], None],
        range_end: bytes | str | None = None,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> FakeWatch:
        """Watch deletions of ``key``."""
        watch = FakeWatch(to_bytes(key), on_response)
        self.watches.append(watch)
        return watch


def _raw(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def _compare(body: dict[str, Any]) -> Compare:
    target = body["target"]
    field = {"CREATE": "create_revision", "MOD": "mod_revision", "LEASE": "lease"}.get(target)
    value: Any = _raw(body["value"]) if target == "VALUE" else int(body[field])  # type: ignore[index]
    return Compare(_raw(body["key"]), target, body["result"], value)


def _op(body: dict[str, Any]) -> Op:
    [(kind, inner)] = body.items()
    return Op(kind, inner)


class MemoryEtcdCase(SynchronousTestCase):
    """Candidates on one in-memory etcd (the cluster.log lines recorded)."""

    def setUp(self) -> None:
        """An etcd, a clock, and a record of the cluster.log lines."""
        self.clock = Clock()
        self.etcd = MemoryEtcd(self.clock)
        self.lines: list[str] = []

        def observe(event: LogEvent) -> None:
            if event.get("cluster_task") == "Failover":
                from twisted.logger import formatEvent

                self.lines.append(f"[{event['cluster_tag']}] {formatEvent(event)}")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def candidate(self, name: str, start: bool = True) -> tuple[LeadershipService, list[Any]]:
        """A candidate service and the list of what it was told."""
        service = LeadershipService(
            self.etcd, KEY, name, TTL, self.clock, ClusterLog(f"Master {name}", "Failover")
        )
        events: list[Any] = []
        service.subscribe(
            elected=lambda term: events.append(("elected", term)),
            lost=lambda term, reason: events.append(("lost", term, reason)),
        )
        if start:
            service.startService()
            self.addCleanup(lambda: service.running and service.stopService())
        return service, events


class ElectionTests(MemoryEtcdCase):
    """Two candidates on one in-memory etcd."""

    def test_exactly_one_leader(self) -> None:
        """The first to campaign leads with the key's create revision as its term; the
        second follows it and knows its name and term."""
        first, first_events = self.candidate("n1")
        second, second_events = self.candidate("n2")
        self.clock.advance(0)
        self.assertTrue(first.is_leader)
        self.assertFalse(second.is_leader)
        term = self.etcd.keys[KEY.encode()].create_revision
        self.assertEqual(first_events, [("elected", term)])
        self.assertEqual(second_events, [])
        self.assertEqual(second.leader, Term("n1", term, first._lease))  # type: ignore[arg-type]
        for _ in range(10):
            self.clock.advance(TTL / 3)
        self.assertTrue(first.is_leader)
        self.assertFalse(second.is_leader)
        self.assertIn(f"[Master n1] Elected master (term {term}, lease TTL {TTL} s)", self.lines)
        self.assertIn(f"[Master n2] The master is n1 (term {term})", self.lines)

    def test_revoked_lease_hands_over_through_the_watch(self) -> None:
        """The leader's lease revoked: the follower's watch sees the key go and it campaigns
        at once; the old leader learns at its next round and steps down, saying why."""
        first, first_events = self.candidate("n1")
        second, second_events = self.candidate("n2")
        self.clock.advance(0)
        old_term = first.term
        self.etcd._drop_lease(first._lease)  # type: ignore[arg-type]
        self.clock.advance(0)
        self.assertTrue(second.is_leader)
        self.assertGreater(second.term, old_term)  # type: ignore[operator]
        self.clock.advance(TTL / 3)
        self.assertFalse(first.is_leader)
        self.assertEqual(first_events[-1], ("lost", old_term, "the lease expired"))
        self.assertIn(
            f"[Master n1] Stepped down as master (term {old_term}): the lease expired", self.lines
        )
        self.assertEqual(first.leader.leader, "n2")  # type: ignore[union-attr]

    def test_deposed_leader_cannot_commit(self) -> None:
        """A leader whose key is gone, though it has not noticed yet, has its fenced write
        refused by etcd; it steps down with that reason, and the value is not written."""
        first, events = self.candidate("n1")
        self.clock.advance(0)
        self.successResultOf(Deferred.fromCoroutine(first.fenced_put("/data", "v1")))
        term = first.term
        self.etcd._drop_lease(first._lease)  # type: ignore[arg-type]
        second, _ = self.candidate("n2")
        self.clock.advance(0)
        self.assertTrue(second.is_leader)
        self.assertTrue(first.is_leader)  # it has not noticed yet
        self.failureResultOf(Deferred.fromCoroutine(first.fenced_put("/data", "stale")), NotLeader)
        self.assertEqual(self.etcd.keys[b"/data"].value, b"v1")
        self.assertEqual(
            events[-1], ("lost", term, "a fenced write found the leader key no longer ours")
        )
        self.failureResultOf(Deferred.fromCoroutine(first.fenced_put("/data", "x")), NotLeader)

    def test_campaign_and_fenced_writes_are_repeated_elsewhere(self) -> None:
        """The campaign asks the client to repeat its transaction on the next member when
        one does not answer (safe: a lost answer is recognised by the lease), and so does a
        fenced write (safe: its marker makes it apply once)."""
        leader, _ = self.candidate("n1")
        self.clock.advance(0)
        self.assertEqual(self.etcd.txn_retries, [True])
        self.successResultOf(Deferred.fromCoroutine(leader.fenced_put("/data", "v")))
        self.assertEqual(self.etcd.txn_retries, [True, True])

    def test_follower_cannot_commit(self) -> None:
        """A node that never led has its fenced writes refused without asking etcd."""
        self.candidate("n1")
        second, _ = self.candidate("n2")
        self.clock.advance(0)
        self.failureResultOf(Deferred.fromCoroutine(second.fenced_put("/data", "x")), NotLeader)
        self.assertNotIn(b"/data", self.etcd.keys)

    def test_etcd_unreachable_steps_down_before_the_lease_expires(self) -> None:
        """etcd cut off: the leader keeps leading until its lease could have expired,
        counted from the last renewal sent; then it steps down (before etcd would let
        another win) and refuses writes; once etcd answers again it is elected again."""
        leader, events = self.candidate("n1")
        self.clock.advance(0)
        term = leader.term
        self.clock.advance(TTL / 3)  # a renewal at t=3: the lease lasts until t=12
        self.etcd.down = True
        self.clock.advance(TTL / 3)
        self.assertTrue(leader.is_leader)
        self.clock.advance(TTL - TTL / 3 - 0.01)
        self.assertTrue(leader.is_leader)
        self.clock.advance(0.01)
        self.assertFalse(leader.is_leader)
        self.assertEqual(events[-1][:2], ("lost", term))
        self.assertIn("no lease renewal for 9 s", events[-1][2])
        self.assertIn("connection refused", events[-1][2])
        self.failureResultOf(Deferred.fromCoroutine(leader.fenced_put("/d", "x")), NotLeader)
        warnings = [line for line in self.lines if line.startswith("[Master n1] etcd unreachable")]
        self.assertEqual(len(warnings), 1)
        self.etcd.down = False
        self.clock.advance(TTL / 3)  # the old key is gone once its lease expired in etcd
        self.clock.advance(TTL / 3)
        self.assertTrue(leader.is_leader)
        self.assertGreater(leader.term, term)  # type: ignore[operator]
        self.assertIn("[Master n1] etcd answers again", self.lines)

    def test_clean_stop_revokes(self) -> None:
        """A leader that stops revokes its lease: the key is gone at once, the follower
        takes over without waiting for the TTL, and the stopping node says so."""
        first, events = self.candidate("n1")
        second, _ = self.candidate("n2")
        self.clock.advance(0)
        self.successResultOf(first.stopService())
        self.assertEqual(events[-1][2], "this node is stopping")
        self.clock.advance(0)
        self.assertTrue(second.is_leader)

    def test_fenced_txn_conditions(self) -> None:
        """The caller's own comparison failing is not a lost leadership: failure ran."""
        leader, events = self.candidate("n1")
        self.clock.advance(0)
        absent = [Compare.create_revision("/a", "=", 0)]
        first = self.successResultOf(
            Deferred.fromCoroutine(leader.fenced_txn([Op.put("/a", "1")], absent))
        )
        self.assertTrue(first.succeeded)
        again = self.successResultOf(
            Deferred.fromCoroutine(leader.fenced_txn([Op.put("/a", "2")], absent, [Op.get("/a")]))
        )
        self.assertFalse(again.succeeded)
        self.assertEqual(again.ranges[0].first.value, b"1")  # type: ignore[union-attr]
        self.assertTrue(leader.is_leader)
        self.assertEqual(len(events), 1)

    def test_lost_answer_of_own_campaign(self) -> None:
        """A campaign that won but whose answer was lost is recognised at the next round
        by the key's lease being ours: same term, no second key."""
        service, events = self.candidate("n1", start=False)
        lease = self.successResultOf(Deferred.fromCoroutine(self.etcd.grant(TTL)))
        self.successResultOf(
            Deferred.fromCoroutine(self.etcd.txn([], [Op.put(KEY, "n1", lease.id)]))
        )
        service._lease = lease.id
        service._lease_deadline = TTL
        service.startService()
        self.addCleanup(service.stopService)
        self.clock.advance(0)
        self.assertTrue(service.is_leader)
        self.assertEqual(service.term, self.etcd.keys[KEY.encode()].create_revision)

    def test_follower_only(self) -> None:
        """A non-candidate never campaigns but tracks who leads."""
        follower = LeadershipService(
            self.etcd,
            KEY,
            "w1",
            TTL,
            self.clock,
            ClusterLog("Worker w1", "Failover"),
            candidate=False,
        )
        seen: list[Term | None] = []
        follower.subscribe(leader_changed=seen.append)
        follower.startService()
        self.addCleanup(follower.stopService)
        self.clock.advance(0)
        self.assertEqual(seen, [])
        self.assertNotIn(KEY.encode(), self.etcd.keys)
        self.candidate("n1")
        self.clock.advance(TTL / 3)
        self.assertEqual([term.leader for term in seen if term], ["n1"])
        self.assertFalse(follower.is_leader)

    def test_ttl_is_checked(self) -> None:
        """A TTL under 2 s is refused."""
        with self.assertRaises(ValueError):
            LeadershipService(self.etcd, KEY, "n", 1, self.clock, ClusterLog("x", "Failover"))

    def test_callback_failure_is_logged(self) -> None:
        """A callback that raises is logged; the election goes on."""
        service, _ = self.candidate("n1", start=False)
        service.subscribe(elected=lambda term: 1 / 0)
        service.startService()
        self.addCleanup(service.stopService)
        self.clock.advance(0)
        self.assertTrue(service.is_leader)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_stop_waits_for_the_revoke_of_a_resignation(self) -> None:
        """A leader that resigned and stops before etcd answered its lease revoke: the stop
        fires only once that revoke is done."""
        leader, _ = self.candidate("n1")
        self.clock.advance(0)
        self.assertTrue(leader.is_leader)
        gate: Deferred[None] = Deferred()
        revoke = self.etcd.revoke

        async def held_revoke(lease: int) -> None:
            await gate
            await revoke(lease)

        self.etcd.revoke = held_revoke  # type: ignore[method-assign]
        leader.resign("cannot serve as master")
        stopped = leader.stopService()
        self.assertNoResult(stopped)
        gate.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.etcd.leases, {})


class FencedRetryTests(MemoryEtcdCase):
    """A fenced write that gets no answer is sent again and applies exactly once."""

    def leader(self) -> tuple[LeadershipService, list[Any]]:
        """n1, elected."""
        leader, events = self.candidate("n1")
        self.clock.advance(0)
        self.assertTrue(leader.is_leader)
        return leader, events

    def put(self, leader: LeadershipService, key: str, value: str) -> Deferred[int]:
        """A fenced put, started."""
        return Deferred.fromCoroutine(leader.fenced_put(key, value))

    def markers(self) -> dict[bytes, KeyValue]:
        """The marker keys in etcd."""
        prefix = f"{KEY}-writes/".encode()
        return {key: kv for key, kv in self.etcd.keys.items() if key.startswith(prefix)}

    def test_lost_answer_found_applied(self) -> None:
        """The first attempt is applied but its answer is lost: the next attempt finds the
        write's marker and reports success without applying it again."""
        leader, events = self.leader()
        self.etcd.txn_faults = ["lost-answer"]
        written = self.put(leader, "/data", "v1")
        self.assertNoResult(written)
        self.clock.advance(leader.write_pause)
        revision = self.successResultOf(written)
        data = self.etcd.keys[b"/data"]
        self.assertEqual((data.value, data.version), (b"v1", 1))
        [marker] = self.markers().values()
        # The write's revision (the fake counts one per put: the marker is put last).
        self.assertEqual(revision, marker.mod_revision)
        self.assertEqual(revision, data.mod_revision + 1)
        self.assertTrue(leader.is_leader)
        self.assertEqual(len(events), 1)
        self.assertIn(
            f"[Master n1] A write's answer was lost; etcd holds it (applied once, at revision "
            f"{revision})",
            self.lines,
        )

    def test_lost_answer_keeps_the_branch(self) -> None:
        """A recovered write says which branch of the caller's comparison ran."""
        leader, _ = self.leader()
        absent = [Compare.create_revision("/a", "=", 0)]
        self.successResultOf(Deferred.fromCoroutine(leader.fenced_txn([Op.put("/a", "1")], absent)))
        self.etcd.txn_faults = ["lost-answer"]
        again = Deferred.fromCoroutine(leader.fenced_txn([Op.put("/a", "2")], absent))
        self.clock.advance(leader.write_pause)
        self.assertFalse(self.successResultOf(again).succeeded)
        self.assertEqual(self.etcd.keys[b"/a"].value, b"1")

    def test_unanswered_write_is_sent_again(self) -> None:
        """The first attempt never reached etcd: the write is sent again and applied once."""
        leader, _ = self.leader()
        self.etcd.txn_faults = ["no-answer"]
        written = self.put(leader, "/data", "v1")
        self.clock.advance(leader.write_pause)
        self.assertEqual(self.successResultOf(written), self.etcd.keys[b"/data"].mod_revision + 1)
        self.assertEqual(self.etcd.keys[b"/data"].version, 1)
        self.assertEqual(len([line for line in self.lines if "No etcd member answered" in line]), 1)

    def test_late_first_attempt_never_applies(self) -> None:
        """The first attempt reaches etcd only after the second one was applied: it is
        refused by etcd (its marker moved), so the write is applied once; the next write
        through the same marker goes through at once."""
        leader, _ = self.leader()
        self.etcd.txn_faults = ["held"]
        written = self.put(leader, "/data", "v1")
        self.clock.advance(leader.write_pause)
        self.successResultOf(written)
        late = self.etcd.deliver()
        self.assertFalse(late.succeeded)
        self.assertEqual(self.etcd.keys[b"/data"].version, 1)
        retries = len(self.etcd.txn_retries)
        self.successResultOf(self.put(leader, "/data", "v2"))
        self.assertEqual(len(self.etcd.txn_retries), retries + 1)
        self.assertEqual(self.etcd.keys[b"/data"].version, 2)

    def test_late_attempt_of_an_earlier_write(self) -> None:
        """A write whose attempt was still travelling when its term ended (refused to its
        caller) lands later, moving the marker slot: the next write through that slot is
        sent again against the new revision and applied once."""
        leader, _ = self.leader()
        self.successResultOf(self.put(leader, "/warm", "x"))
        self.etcd.txn_faults = ["held"]
        self.etcd.down = True
        first = self.put(leader, "/old", "1")
        self.clock.advance(TTL)  # no answer for a whole TTL: the term ends, the write refused
        self.failureResultOf(first, EtcdUnavailable)
        self.assertFalse(leader.is_leader)
        self.etcd.down = False
        self.clock.advance(TTL / 3)
        self.clock.advance(TTL / 3)
        self.assertTrue(leader.is_leader)
        # Still fenced by the old term: the late attempt does not apply.
        self.assertFalse(self.etcd.deliver().succeeded)
        self.assertNotIn(b"/old", self.etcd.keys)
        # The same marker moved by hand (as a late write of this term would): resynced.
        [(marker, kv)] = self.markers().items()
        self.etcd._put(marker, b"an.older.write+", 0)
        self.successResultOf(self.put(leader, "/new", "2"))
        self.assertEqual(self.etcd.keys[b"/new"].version, 1)
        self.assertEqual(self.markers()[marker].value[-1:], b"+")
        self.assertNotEqual(self.markers()[marker].value, b"an.older.write+")

    def test_restarted_node_finds_its_markers(self) -> None:
        """A node restarted (a new process: nothing remembered) writes through marker slots
        it left in etcd: the first write learns the slot's revision and goes through."""
        leader, _ = self.leader()
        self.successResultOf(self.put(leader, "/data", "v1"))
        self.successResultOf(leader.stopService())
        again, _ = self.leader()
        self.successResultOf(self.put(again, "/data", "v2"))
        self.assertEqual(self.etcd.keys[b"/data"].version, 2)
        self.assertEqual(len(self.markers()), 1)

    def test_marker_keeps_changing(self) -> None:
        """A marker moved before every attempt (another process writing as this node):
        the write is refused with that reason after a few attempts, never applied."""
        leader, _ = self.leader()
        marker = f"{KEY}-writes/n1/0".encode()
        original = self.etcd._run

        def meddling(*args: Any) -> TxnResult:
            self.etcd._put(marker, b"someone.else+", 0)
            return original(*args)

        self.etcd._run = meddling  # type: ignore[method-assign]
        failure = self.failureResultOf(self.put(leader, "/data", "v1"), EtcdError)
        self.assertIn("keeps changing", str(failure.value))
        self.assertNotIn(b"/data", self.etcd.keys)
        self.assertTrue(leader.is_leader)

    def test_lost_leadership_refused(self) -> None:
        """No answer, and the lease ends before the write is sent again: n2 is elected, the
        repeat finds the leader key not ours and nothing applied: refused, stepped down."""
        leader, events = self.leader()
        self.etcd.txn_faults = ["no-answer"]
        written = self.put(leader, "/data", "v1")
        self.etcd._drop_lease(leader._lease)  # type: ignore[arg-type]
        second, _ = self.candidate("n2")
        self.clock.advance(0)
        self.assertTrue(second.is_leader)
        self.clock.advance(leader.write_pause)
        self.failureResultOf(written, NotLeader)
        self.assertNotIn(b"/data", self.etcd.keys)
        self.assertEqual(events[-1][2], "a fenced write found the leader key no longer ours")

    def test_applied_before_leadership_was_lost(self) -> None:
        """Applied under our term, the answer lost, then the lease ends and n2 is elected:
        the repeat finds the marker, so the write (durable, written in our term) is
        acknowledged, and the node steps down."""
        leader, events = self.leader()
        term = leader.term
        self.etcd.txn_faults = ["lost-answer"]
        written = self.put(leader, "/data", "v1")
        self.etcd._drop_lease(leader._lease)  # type: ignore[arg-type]
        second, _ = self.candidate("n2")
        self.clock.advance(0)
        self.clock.advance(leader.write_pause)
        self.successResultOf(written)
        self.assertEqual(self.etcd.keys[b"/data"].version, 1)
        self.assertLess(self.etcd.keys[b"/data"].mod_revision, second.term)  # type: ignore[operator]
        self.assertFalse(leader.is_leader)
        self.assertEqual(
            events[-1], ("lost", term, "a fenced write found the leader key no longer ours")
        )

    def test_no_answer_until_the_term_ends(self) -> None:
        """etcd does not answer at all: the write is sent round again until the term ends,
        then refused saying it may or may not be stored; nothing applied."""
        leader, _ = self.leader()
        self.etcd.down = True
        written = self.put(leader, "/data", "v1")
        self.clock.advance(TTL / 3)
        self.assertNoResult(written)
        self.clock.advance(TTL)
        failure = self.failureResultOf(written, EtcdUnavailable)
        self.assertIn("may or may not be stored", str(failure.value))
        self.assertFalse(leader.is_leader)
        self.assertNotIn(b"/data", self.etcd.keys)

    def test_markers_are_bounded(self) -> None:
        """Writes in flight at once each hold a marker slot, those beyond the slots wait for
        one; however many writes, the node keeps at most WRITE_SLOTS marker keys."""
        leader, _ = self.leader()
        for number in range(50):
            self.successResultOf(self.put(leader, f"/seq/{number}", "x"))
        self.assertEqual(len(self.markers()), 1)
        gate: Deferred[None] = Deferred()
        self.etcd.gate = gate
        writes = [self.put(leader, f"/burst/{number}", "x") for number in range(WRITE_SLOTS + 4)]
        self.assertEqual(leader._markers.free, 0)
        self.etcd.gate = None
        gate.callback(None)
        for written in writes:
            self.successResultOf(written)
        self.assertEqual(len(self.markers()), WRITE_SLOTS)
        self.assertEqual(leader._markers.free, WRITE_SLOTS)
        for number in range(WRITE_SLOTS + 4):
            self.assertEqual(self.etcd.keys[f"/burst/{number}".encode()].version, 1)


class MarkerSlotsTests(SynchronousTestCase):
    """The pool of marker slots."""

    def test_lowest_first_and_waiters_in_order(self) -> None:
        """Slots are handed out lowest first; once all are taken, callers wait and get the
        released slots in the order they asked; a cancelled waiter is skipped."""
        slots = MarkerSlots(b"/m/", size=2)
        self.assertEqual(slots.key(1), b"/m/1")
        first = self.successResultOf(Deferred.fromCoroutine(slots.take()))
        second = self.successResultOf(Deferred.fromCoroutine(slots.take()))
        self.assertEqual((first, second), (0, 1))
        gone = Deferred.fromCoroutine(slots.take())
        waiting = Deferred.fromCoroutine(slots.take())
        gone.cancel()
        self.failureResultOf(gone)
        slots.release(1)
        self.assertEqual(self.successResultOf(waiting), 1)
        slots.release(0)
        self.assertEqual(slots.free, 1)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(slots.take())), 0)


class WiringTests(SynchronousTestCase):
    """build_leadership: from the configuration to a service."""

    def test_candidate_and_follower(self) -> None:
        """Candidates campaign, other nodes only follow; the key and TTL come from the
        settings; stopping closes the client."""
        from twisted.internet.testing import MemoryReactorClock

        from wazuhcluster.config.failover_settings import FailoverSettings
        from wazuhcluster.failover.wiring import build_leadership

        settings = FailoverSettings(
            endpoints=("http://127.0.0.1:2379",), candidates=("m1", "m2"), lease_ttl=6
        )
        reactor = MemoryReactorClock()
        log = ClusterLog("Master m1", "Main")
        candidate = build_leadership(settings, "m1", reactor, log)
        follower = build_leadership(settings, "w1", reactor, log)
        self.assertTrue(candidate.candidate)
        self.assertFalse(follower.candidate)
        self.assertEqual((candidate.key, candidate.ttl), ("/wazuhcluster/wazuh/leader", 6))
        self.assertEqual(candidate.log.task, "Failover")
        candidate.startService()
        self.successResultOf(candidate.stopService())


class LeaderAddressTests(SynchronousTestCase):
    """The leader publishes where it is reached; the others read it back."""

    def test_address_travels_in_the_leader_key(self) -> None:
        """A candidate with an address writes it with its name; a follower sees both, and
        logs where the master is."""
        clock = Clock()
        etcd = MemoryEtcd(clock)
        leader = LeadershipService(
            etcd,
            KEY,
            "n1",
            TTL,
            clock,
            ClusterLog("Master n1", "Failover"),
            address=Address("10.0.0.1", 1516),
        )
        follower = LeadershipService(
            etcd, KEY, "w1", TTL, clock, ClusterLog("Worker w1", "Failover"), candidate=False
        )
        leader.startService()
        follower.startService()
        self.addCleanup(leader.stopService)
        self.addCleanup(follower.stopService)
        clock.advance(0)
        self.assertEqual(
            json.loads(etcd.keys[KEY.encode()].value),
            {"node": "n1", "host": "10.0.0.1", "port": 1516, "since": 0.0},
        )
        self.assertEqual(follower.leader.address, Address("10.0.0.1", 1516))  # type: ignore[union-attr]
        self.assertEqual(follower.leader.leader, "n1")  # type: ignore[union-attr]
        self.assertEqual(leader.leader.address, Address("10.0.0.1", 1516))  # type: ignore[union-attr]
        self.assertEqual(follower.leader.since, 0.0)  # type: ignore[union-attr]

    def test_values_read_back(self) -> None:
        """A bare name has no address; a malformed address is dropped, the name kept; what
        is not an object of ours is taken as text."""
        self.assertEqual(parse_leader_value(b"n1"), ("n1", None))
        self.assertEqual(
            parse_leader_value(leader_value("n1", Address("::1", 9))), ("n1", Address("::1", 9))
        )
        self.assertEqual(parse_leader_value(b'{"node": "n1", "host": "a b", "port": 1}')[1], None)
        self.assertEqual(parse_leader_value(b'{"node": "n1", "host": "h", "port": 0}')[1], None)
        self.assertEqual(
            parse_leader_value(b'{"node": "n1", "host": "h", "port": true}'), ("n1", None)
        )
        self.assertEqual(parse_leader_value(b"{not json"), ("{not json", None))
        self.assertEqual(parse_leader_value(b"[1]"), ("[1]", None))
        self.assertEqual(parse_leader_value(b"x" * 5000)[1], None)
        self.assertEqual(leader_since(leader_value("n1", Address("h", 1), 12.5)), 12.5)
        for value in (b"n1", b"{", b"[]", b'{"since": true}', b'{"since": -1}', b'{"since": "1"}'):
            self.assertIsNone(leader_since(value))


class HangingMemberTests(SynchronousTestCase):
    """The real gateway client under the election, one etcd member of three hanging (its
    connections open, no answer): the lease must still be renewed in time elsewhere."""

    def setUp(self) -> None:
        """A fake gateway behind three endpoints, of which ``hanging`` never answer."""
        from treq.testing import StubTreq

        from tests.test_failover_client import HEADER, FakeEtcd, b64
        from wazuhcluster.failover.client import EtcdClient

        self.clock = Clock()
        self.etcd = FakeEtcd()
        stub = self.stub = StubTreq(self.etcd)
        self.hanging: set[str] = set()
        self.sent: list[tuple[float, str]] = []
        self.bodies: list[tuple[str, bytes]] = []
        outer = self

        class Requester:
            def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
                outer.sent.append((outer.clock.seconds(), url))
                outer.bodies.append((url, kwargs["data"]))
                if any(url.startswith(endpoint) for endpoint in outer.hanging):
                    return Deferred()
                return stub.request(method, url, **kwargs)

        self.etcd.answers["/v3/lease/grant"] = (200, {"header": HEADER, "ID": "42", "TTL": "10"})
        self.etcd.answers["/v3/lease/keepalive"] = (
            200,
            {"result": {"header": HEADER, "ID": "42", "TTL": "10"}},
        )
        self.etcd.answers["/v3/kv/txn"] = (200, {"header": HEADER, "succeeded": True})
        kv = {
            "key": b64(KEY),
            "value": b64("n1"),
            "create_revision": "7",
            "mod_revision": "7",
            "version": "1",
            "lease": "42",
        }
        self.etcd.answers["/v3/kv/range"] = (200, {"header": HEADER, "kvs": [kv], "count": "1"})
        endpoints = ["http://e1:2379", "http://e2:2379", "http://e3:2379"]
        self.client = EtcdClient(endpoints, Requester(), self.clock)  # the 5 s default timeout

    def run_for(self, seconds: float) -> None:
        """Let ``seconds`` pass in steps of 0.05 s, answering the stub's requests."""
        for _ in range(round(seconds / 0.05)):
            self.clock.advance(0.05)
            self.stub.flush()

    def test_lease_renewed_through_the_next_member(self) -> None:
        """With the default 10 s TTL, the member the leader talks to starts hanging: the
        keepalive stuck there is given up after TTL/3 and sent to the next member at once,
        which renews the lease well before the deadline; the leader never steps down."""
        service = LeadershipService(
            self.client, KEY, "n1", 10, self.clock, ClusterLog("Master n1", "Failover")
        )
        lost: list[tuple[int, str]] = []
        service.subscribe(lost=lambda term, reason: lost.append((term, reason)))
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        self.clock.advance(0)
        self.stub.flush()
        self.assertEqual(service.term, 7)
        self.hanging.add(self.client.endpoint)
        self.run_for(40)
        self.assertEqual(lost, [])
        self.assertTrue(service.is_leader)
        keepalives = [(at, url) for at, url in self.sent if url.endswith("/lease/keepalive")]
        first_hung, moved_on = keepalives[0], keepalives[1]
        self.assertTrue(first_hung[1].startswith("http://e1:2379"))
        self.assertTrue(moved_on[1].startswith("http://e2:2379"))
        self.assertLess(abs(moved_on[0] - first_hung[0] - 10 / 3), 0.06)
        self.assertTrue(all(url.startswith("http://e2:2379") for _, url in keepalives[1:]))

    def test_campaign_moves_on_from_a_hanging_member(self) -> None:
        """The campaign's transaction left unanswered by the first member is sent to the
        next one after TTL/3 (not the client's 5 s, then another TTL/3): elected then."""
        self.hanging.add("http://e1:2379/v3/kv/txn")
        service = LeadershipService(
            self.client, KEY, "n1", 10, self.clock, ClusterLog("Master n1", "Failover")
        )
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        self.clock.advance(0)
        self.stub.flush()
        self.assertIsNone(service.term)
        self.run_for(3.3)
        self.assertIsNone(service.term)
        self.run_for(0.1)
        self.assertEqual(service.term, 7)
        txns = [url for _, url in self.sent if url.endswith("/kv/txn")]
        self.assertEqual(txns, ["http://e1:2379/v3/kv/txn", "http://e2:2379/v3/kv/txn"])

    def test_fenced_write_moves_on_from_a_hanging_member(self) -> None:
        """A fenced write left unanswered by the member the leader talks to is sent, the
        same request byte for byte, to the next member after TTL/3 and acknowledged from
        there; the request is fenced on the term and on the write's marker slot."""
        service = LeadershipService(
            self.client, KEY, "n1", 10, self.clock, ClusterLog("Master n1", "Failover")
        )
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        self.clock.advance(0)
        self.stub.flush()
        self.assertEqual(service.term, 7)
        from tests.test_failover_client import HEADER

        self.etcd.answers["/v3/kv/txn"] = (
            200,
            {"header": HEADER, "succeeded": True, "responses": [{"response_txn": {}}]},
        )
        self.hanging.add("http://e1:2379/v3/kv/txn")
        written = Deferred.fromCoroutine(service.fenced_put("/data", "v"))
        self.run_for(3.2)
        self.assertNoResult(written)
        self.run_for(0.2)
        self.assertEqual(self.successResultOf(written), 7)
        [(hung, first), (answered, again)] = [
            (url, data) for url, data in self.bodies if url.endswith("/kv/txn")
        ][-2:]
        self.assertEqual((hung, answered), ("http://e1:2379/v3/kv/txn", "http://e2:2379/v3/kv/txn"))
        self.assertEqual(first, again)
        body = json.loads(again)
        targets = [(item["target"], base64.b64decode(item["key"])) for item in body["compare"]]
        self.assertEqual(
            targets,
            [
                ("CREATE", KEY.encode()),
                ("LEASE", KEY.encode()),
                ("MOD", f"{KEY}-writes/n1/0".encode()),
            ],
        )

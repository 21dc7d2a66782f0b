"""Partition with a real etcd: the master reaches etcd only through a TCP proxy that the
test cuts while the other candidate (direct to etcd) is elected. Every ``OSSEC K:`` answer
is traced back, through etcd's history, to the master and term whose fenced write made it
durable: one master per term, nothing of the old term after the new one began, and every
acknowledged agent on the new master."""

from __future__ import annotations

import threading
import time

from attrs import define, field

from tests.integration.common import DEADLINE, ClusterTestCase
from tests.integration.etcd_history import agent_records, leader_at, read_range, writer_of
from tests.integration.faultproxy import FaultProxy
from tests.integration.test_enrollment_real import enroll
from tests.integration.test_failover_real import (
    candidates_cluster,
    failover_block,
    start_candidates,
    started_etcd,
    terms,
)
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.testing.devcluster import wait_for


@define
class Answer:
    """One enrollment's outcome and when it was asked (monotonic seconds)."""

    asked: float
    result: dict[str, str]


@define
class EnrollLoop:
    """Enrolls one agent at a time through ``ports`` in a thread, recording every answer."""

    ports: list[int]
    prefix: str
    answers: list[Answer] = field(factory=list)
    _stop: threading.Event = field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start enrolling."""
        self._thread = threading.Thread(target=self._run, name="enroll-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                [result] = enroll(self.ports, 1, f"{self.prefix}{len(self.answers):04d}-")
            except AssertionError as error:  # the helper process failed: an answer too
                result = {"name": "", "error": str(error)}
            self.answers.append(Answer(asked, result))
            if "id" not in result:
                self._stop.wait(0.2)

    def stop(self) -> None:
        """Stop and wait for the enrollment in flight."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(DEADLINE * 2)

    def acknowledged(self, since: float = 0.0) -> list[Answer]:
        """The answers with a key, asked at or after ``since``."""
        return [a for a in list(self.answers) if "id" in a.result and a.asked >= since]


class PartitionHistoryRealTests(ClusterTestCase):
    """A cut-off master and its successor never both acknowledge writes in one term."""

    def test_every_acknowledgement_traced_to_one_master_per_term(self) -> None:
        """cand-a reaches etcd through a proxy, cand-b and worker1 directly. Agents enroll
        one after the other through worker1 before, during and after the cut (the proxy
        stalls and drops its connections); cand-b is elected, worker1 relinks to it. Then,
        from etcd's history: every acknowledged agent has its record in etcd with the same
        id and key; the leader key just before that record's revision names one master per
        term; records of cand-a's term were all written before cand-b's term began; every
        enrollment asked after cand-b was elected was made durable by cand-b in its term;
        every acknowledged agent is on cand-b. cand-a refuses enrollments on its own port
        while cut off, and follows cand-b once the proxy forwards again."""
        etcd = started_etcd(self)
        endpoint = etcd.endpoints[0]
        proxy = FaultProxy(etcd.members[0].client_port)
        proxy.start()
        self.addCleanup(proxy.stop)
        direct = failover_block(etcd.endpoints, ["cand-a", "cand-b"])
        proxied = failover_block([f"http://127.0.0.1:{proxy.port}"], ["cand-a", "cand-b"])
        cluster = candidates_cluster(self, lambda name: proxied if name == "cand-a" else direct)
        first, second, worker = start_candidates(self, cluster)
        [old_term] = terms(first)

        loop = EnrollLoop([cluster.node_ports("worker1")["enrollment"]], "part-")
        loop.start()
        self.addCleanup(loop.stop)
        self.assertTrue(wait_for(lambda: len(loop.acknowledged()) >= 3, DEADLINE))
        proxy.stall()
        proxy.drop()
        cut_at = time.monotonic()
        self.wait_log(first, "keep serving read-only", DEADLINE * 2)
        [refused] = enroll([cluster.node_ports("cand-a")["enrollment"]], 1, "old-direct-")
        self.assertNotIn("id", refused, refused)
        self.wait_log(second, "Master for term", DEADLINE * 2)
        elected_at = time.monotonic()
        [new_term] = terms(second)
        self.assertGreater(new_term, old_term)
        self.assertTrue(
            wait_for(lambda: len(loop.acknowledged(elected_at)) >= 3, DEADLINE * 2),
            f"worker1:\n{worker.log_text()[-3000:]}",
        )
        loop.stop()
        [refused] = enroll([cluster.node_ports("cand-a")["enrollment"]], 1, "old-late-")
        self.assertNotIn("id", refused, refused)

        acknowledged = loop.acknowledged()
        records = agent_records(endpoint)
        writers: dict[int, set[str]] = {}
        traced: dict[str, tuple[str, int, int]] = {}  # name → (master, term, revision)
        for answer in acknowledged:
            name = answer.result["name"]
            self.assertIn(name, records, f"{name} acknowledged but not in etcd")
            record, revision = records[name]
            self.assertEqual(
                (record["id"], record["key"]), (answer.result["id"], answer.result["key"])
            )
            writer = writer_of(endpoint, revision)
            self.assertIsNotNone(writer, f"{name} written at {revision} with no leader")
            assert writer is not None
            master, term = writer
            writers.setdefault(term, set()).add(master)
            traced[name] = (master, term, revision)
        self.assertEqual(
            {term: len(names) for term, names in writers.items()},
            dict.fromkeys(writers, 1),
            f"two masters wrote in one term: {writers}",
        )
        self.assertEqual(writers.get(old_term), {"cand-a"}, traced)
        self.assertEqual(writers.get(new_term), {"cand-b"}, traced)
        self.assertEqual(set(writers), {old_term, new_term}, traced)
        self.assertEqual(leader_at(endpoint, new_term), ("cand-b", new_term))
        old_revisions = [rev for _m, term, rev in traced.values() if term == old_term]
        self.assertLess(max(old_revisions), new_term, "a write of the old term after the new")
        for answer in acknowledged:
            master, term, _rev = traced[answer.result["name"]]
            if answer.asked >= elected_at:
                self.assertEqual((master, term), ("cand-b", new_term), answer)
        # Nothing cand-a answered directly is anywhere; the cut-off time saw no cand-a write.
        self.assertFalse([name for name in records if name.startswith("old-")], sorted(records))
        during = [a for a in acknowledged if cut_at <= a.asked < elected_at]
        for answer in during:
            self.assertEqual(traced[answer.result["name"]][:2], ("cand-b", new_term), answer)
        _now, [leader] = read_range(endpoint, "/wazuhcluster/wazuh/leader")
        self.assertEqual(leader.create_revision, new_term)

        keys_b = {e.name: e for e in read_client_keys(cluster.home("cand-b").client_keys)}
        for answer in acknowledged:
            entry = keys_b.get(answer.result["name"])
            self.assertIsNotNone(entry, f"{answer.result['name']} not on the new master")
            assert entry is not None
            self.assertEqual((entry.id, entry.key), (answer.result["id"], answer.result["key"]))
        ids = [answer.result["id"] for answer in acknowledged]
        self.assertEqual(len(ids), len(set(ids)), ids)

        proxy.resume()
        self.wait_log(first, "Successfully connected to master cand-b", DEADLINE * 2)
        self.assertEqual(terms(first), [old_term])
        self.assertEqual(terms(second), [new_term])
        print(
            f"\npartition: {len(acknowledged)} enrollments acknowledged through the worker "
            f"({len(old_revisions)} by cand-a in term {old_term}, "
            f"{len(acknowledged) - len(old_revisions)} by cand-b in term {new_term}); "
            f"{len(loop.answers) - len(acknowledged)} refused across the cut"
        )

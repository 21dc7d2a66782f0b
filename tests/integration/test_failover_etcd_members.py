"""Three etcd members, the raft leader among them killed: the cluster's master, its term
and its enrollments carry on (the member the clients were not necessarily talking to, and
the one etcd itself must re-elect a leader for)."""

from __future__ import annotations

import time

from tests.helpers import short_temp_dir
from tests.integration.common import ClusterTestCase
from tests.integration.etcd_history import agent_records, raft_status, read_range, writer_of
from tests.integration.test_enrollment_real import enroll
from tests.integration.test_failover_real import TTL, failover_block, terms
from wazuhcluster.testing.devcluster import LocalCluster, free_port
from wazuhcluster.testing.etcd import EtcdCluster, require_etcd


class RaftLeaderLostRealTests(ClusterTestCase):
    """etcd loses its own raft leader: nothing changes for the Wazuh cluster."""

    def test_raft_leader_killed(self) -> None:
        """Two candidates and a worker on a three-member etcd; the member that is etcd's
        raft leader is killed with SIGKILL while agents enroll back to back through the
        worker for four lease TTLs. Every enrollment is acknowledged, the leader key keeps
        its create revision (the same term) and holder, nobody steps down or turns
        read-only, and etcd's history says every record was written by cand-a in that
        term."""
        require_etcd()
        etcd = EtcdCluster(short_temp_dir(self), size=3)
        self.addCleanup(etcd.stop)
        etcd.start()
        cluster = LocalCluster(short_temp_dir(self), master="cand-a", workers=["worker1"])
        block = failover_block(etcd.endpoints, ["cand-a", "cand-b"])
        cluster.cluster_extra = lambda name, role: block
        cluster.cluster_ports["cand-b"] = free_port()
        cluster.write()
        cluster.write_node("cand-b", "master")
        first = self.start(cluster, "cand-a", "master")
        self.wait_log(first, "Master for term")
        second = self.start(cluster, "cand-b", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Successfully connected to master cand-a")
        [term] = terms(first)
        through_worker = [cluster.node_ports("worker1")["enrollment"]]
        [result] = enroll(through_worker, 1, "before-")
        self.assertIn("id", result, result)

        _me, leader_id = raft_status(etcd.endpoints[0])
        [raft_leader] = [
            member
            for member, endpoint in zip(etcd.members, etcd.endpoints, strict=True)
            if raft_status(endpoint)[0] == leader_id
        ]
        etcd.kill(raft_leader)
        survivor = next(e for m, e in zip(etcd.members, etcd.endpoints, strict=True) if m.running())
        results: list[dict[str, str]] = []
        until = time.monotonic() + 4 * TTL
        while time.monotonic() < until:
            [result] = enroll(through_worker, 1, f"during-{len(results):03d}-")
            results.append(result)
        refused = [r for r in results if "id" not in r]
        self.assertEqual(refused, [], f"killed {raft_leader.name}")
        for node in (first, second, worker):
            self.assertNotIn("Stepped down", node.log_text())
            self.assertNotIn("keep serving read-only", node.log_text())
        self.assertEqual(terms(first), [term])
        self.assertEqual(terms(second), [])
        _now, [leader] = read_range(survivor, "/wazuhcluster/wazuh/leader")
        self.assertEqual(leader.create_revision, term)
        records = agent_records(survivor)
        for result in results:
            record, revision = records[result["name"]]
            self.assertEqual((record["id"], record["key"]), (result["id"], result["key"]))
            self.assertEqual(writer_of(survivor, revision), ("cand-a", term))
        print(
            f"\netcd raft leader {raft_leader.name} killed: {len(results)} enrollments over "
            f"{4 * TTL} s all acknowledged by cand-a in term {term}"
        )

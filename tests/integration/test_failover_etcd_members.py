"""Three etcd members, one of them lost (killed, the raft leader killed, or black-holed)
while agents enroll: nothing changes for the Wazuh cluster. The master keeps its term,
every enrollment in flight is acknowledged (a fenced write that a member leaves without an
answer is sent to the next member and applied exactly once) and stored once in etcd by that
master in that term."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from tests.integration.common import DEADLINE, REPO, ClusterTestCase, registry_count
from tests.integration.etcd_history import AGENTS, raft_status, read_range, writer_of
from tests.integration.faultproxy import FaultProxy
from tests.integration.test_enrollment_real import enroll
from tests.integration.test_failover_real import (
    TTL,
    candidates_cluster,
    failover_block,
    start_candidates,
    started_etcd,
    terms,
)
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for
from wazuhcluster.testing.etcd import require_etcd

#: Agents enrolling at once through the worker while a member is lost.
BURST = 120
#: The lease TTL a cluster has by default (the tests of this module use it).
DEFAULT_TTL = 10
#: Seconds of back-to-back enrollments after a burst (the lost member stays lost).
AFTER = 8.0
#: The line the master's etcd client logs when it passes a member over for a fenced write.
MOVED_ON = "did not answer /kv/txn"


def notable(node: NodeProcess) -> str:
    """The node's log lines about the first enrollments after the kill, warnings and errors."""
    wanted = ("during-000", "during-001", "WARNING", "ERROR", "etcd")
    return "\n".join(
        line for line in node.log_text().splitlines() if any(w in line for w in wanted)
    )


def burst_during(
    test: ClusterTestCase,
    cluster: LocalCluster,
    prefix: str,
    fault: Callable[[], None],
    when: int = BURST // 4,
) -> list[dict[str, str]]:
    """:data:`BURST` agents enroll at once through worker1 (a helper process); ``fault()``
    is called once the worker holds ``when`` of their keys (at once with 0), while the rest
    are being stored. Every agent's result."""
    port = cluster.node_ports("worker1")["enrollment"]
    burst = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.enroll_many", str(port), str(BURST), prefix],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    test.addCleanup(lambda: burst.poll() is None and burst.kill())
    keys = cluster.home("worker1").client_keys

    def held() -> int:
        if not keys.exists():
            return 0
        return len([e for e in read_client_keys(keys) if e.name.startswith(prefix)])

    test.assertTrue(wait_for(lambda: held() >= when, DEADLINE, 0.02), "the burst did not start")
    fault()
    out, err = burst.communicate(timeout=DEADLINE * 3)
    test.assertEqual(burst.returncode, 0, err)
    results: list[dict[str, str]] = json.loads(out)
    return results


def assert_stored_once(
    test: ClusterTestCase,
    cluster: LocalCluster,
    master: NodeProcess,
    results: list[dict[str, str]],
    endpoint: str,
    term: int,
) -> int:
    """Every enrollment was acknowledged (none refused); each agent is on the master
    (cand-a, whose log ``master`` is) with its id and key, and in etcd (read through
    ``endpoint``) written exactly once (its key's create and mod revisions are one), by
    cand-a in ``term``; no id twice. How many fenced transactions carried them."""
    refused = [result for result in results if "id" not in result]
    test.assertEqual(refused, [], f"refused:\n{notable(master)}")
    ids = [result["id"] for result in results]
    test.assertEqual(len(ids), len(set(ids)), "an id was issued twice")
    names = {result["name"] for result in results}
    keys_path = cluster.home("cand-a").client_keys
    test.assertTrue(
        wait_for(lambda: names <= {e.name for e in read_client_keys(keys_path)}, DEADLINE),
        "an acknowledged agent is not on the master",
    )
    on_master = {e.name: e for e in read_client_keys(keys_path)}
    _now, stored = read_range(endpoint, AGENTS, prefix=True)
    in_etcd = {json.loads(kv.value)["name"]: kv for kv in stored}
    revisions = set()
    for result in results:
        entry = on_master[result["name"]]
        test.assertEqual((entry.id, entry.key), (result["id"], result["key"]))
        kv = in_etcd[result["name"]]
        record = json.loads(kv.value)
        test.assertEqual((record["id"], record["key"]), (result["id"], result["key"]))
        test.assertEqual(kv.create_revision, kv.mod_revision, f"{result['name']} written twice")
        revisions.add(kv.mod_revision)
    for revision in revisions:
        test.assertEqual(writer_of(endpoint, revision), ("cand-a", term))
    return len(revisions)


def assert_nothing_changed(
    test: ClusterTestCase, nodes: tuple[NodeProcess, NodeProcess, NodeProcess], term: int
) -> None:
    """Nobody stepped down or turned read-only; cand-a is master in ``term`` only."""
    first, second, _worker = nodes
    for node in nodes:
        test.assertNotIn("Stepped down", node.log_text())
        test.assertNotIn("keep serving read-only", node.log_text())
    test.assertEqual(terms(first), [term])
    test.assertEqual(terms(second), [])


def block_with_ttl(endpoints: list[str], ttl: int) -> str:
    """The test's ``<failover>`` block with lease TTL ``ttl``."""
    return failover_block(endpoints, ["cand-a", "cand-b"]).replace(
        f"<lease_ttl>{TTL}s</lease_ttl>", f"<lease_ttl>{ttl}s</lease_ttl>"
    )


class MemberKilledRealTests(ClusterTestCase):
    """etcd loses the member every client talks to while agents enroll."""

    def test_member_killed_during_a_burst(self) -> None:
        """Two candidates and a worker on a three-member etcd (the default lease TTL, 10 s),
        every node's first endpoint a member that is not etcd's raft leader (the test of
        the raft leader is below). :data:`BURST` agents enroll at once through the worker.
        Once a quarter of them are stored, that member is frozen (SIGSTOP) until the
        master's write to it is seen stuck, then killed (SIGKILL) with the write in flight:
        cand-a's client sends it to the next member, every enrollment is acknowledged, each
        agent is on the master and stored once in etcd by cand-a in its term, and nobody
        steps down."""
        etcd = started_etcd(self, size=3)
        _me, leader_id = raft_status(etcd.endpoints[0])
        members = list(zip(etcd.members, etcd.endpoints, strict=True))
        [(doomed, doomed_at), *others] = sorted(
            members, key=lambda pair: raft_status(pair[1])[0] == leader_id
        )
        reader = others[0][1]
        block = block_with_ttl([doomed_at] + [endpoint for _m, endpoint in others], DEFAULT_TTL)
        cluster = candidates_cluster(self, lambda name: block)
        nodes = start_candidates(self, cluster)
        first = nodes[0]
        [term] = terms(first)
        swallowed = f"etcd member {doomed_at} {MOVED_ON}"
        seen: list[tuple[int, int]] = []

        def stuck() -> bool:
            """cand-a's registry holds agents etcd does not, twice in a row 0.3 s apart with
            etcd unchanged: a write is held by the frozen member (one takes milliseconds)."""
            registered = registry_count(cluster, "burst-%")
            try:
                stored = len(read_range(reader, AGENTS, prefix=True)[1])
            except OSError:  # etcd busy electing a raft leader (503): ask again
                return False
            seen.append((registered, stored))
            return len(seen) >= 2 and seen[-1][1] == seen[-2][1] < min(seen[-2][0], registered)

        def kill_with_a_write_in_flight() -> None:
            doomed.send(signal.SIGSTOP)
            self.assertTrue(wait_for(stuck, DEADLINE, 0.3), f"no write stuck: {seen}")
            etcd.kill(doomed)

        results = burst_during(self, cluster, "burst-", kill_with_a_write_in_flight)
        transactions = assert_stored_once(self, cluster, first, results, reader, term)
        assert_nothing_changed(self, nodes, term)
        self.assertIn(swallowed, first.log_text())
        print(
            f"\netcd member {doomed.name} killed with a write in flight: {len(results)} "
            f"enrollments acknowledged in {transactions} transactions; "
            + "; ".join(
                line.split("] ", 2)[-1]
                for line in first.log_text().splitlines()
                if swallowed in line
            )
        )


class RaftLeaderLostRealTests(ClusterTestCase):
    """etcd loses its own raft leader: nothing changes for the Wazuh cluster."""

    def test_raft_leader_killed(self) -> None:
        """Two candidates and a worker on a three-member etcd, the default lease TTL (10 s:
        etcd needs one to two seconds to elect a new raft leader, during which no lease is
        renewed, so a TTL of 3 s leaves too little margin); the member that is etcd's raft
        leader is killed with SIGKILL while :data:`BURST` agents enroll at once through
        the worker, then agents enroll back to back for :data:`AFTER` seconds. Every
        enrollment is acknowledged and stored once by cand-a in its term (a write held by
        a follower while etcd elects a new raft leader is given up after TTL/3 and sent to
        the next member, where it applies once), the leader key keeps its create revision
        and holder, and nobody steps down or turns read-only."""
        etcd = started_etcd(self, size=3)
        block = block_with_ttl(etcd.endpoints, DEFAULT_TTL)
        cluster = candidates_cluster(self, lambda name: block)
        nodes = start_candidates(self, cluster)
        first, _second, worker = nodes
        [term] = terms(first)
        through_worker = [cluster.node_ports("worker1")["enrollment"]]

        _me, leader_id = raft_status(etcd.endpoints[0])
        [raft_leader] = [
            member
            for member, endpoint in zip(etcd.members, etcd.endpoints, strict=True)
            if raft_status(endpoint)[0] == leader_id
        ]
        results = burst_during(self, cluster, "burst-", lambda: etcd.kill(raft_leader))
        survivor = next(e for m, e in zip(etcd.members, etcd.endpoints, strict=True) if m.running())
        until = time.monotonic() + AFTER
        while time.monotonic() < until and "Stepped down" not in first.log_text():
            [result] = enroll(through_worker, 1, f"during-{len(results):03d}-")
            results.append(result)
        transactions = assert_stored_once(self, cluster, first, results, survivor, term)
        assert_nothing_changed(self, nodes, term)
        _now, [leader] = read_range(survivor, "/wazuhcluster/wazuh/leader")
        self.assertEqual(leader.create_revision, term)
        self.assertNotIn("could not be stored", worker.log_text() + first.log_text())
        print(
            f"\netcd raft leader {raft_leader.name} killed: {len(results)} enrollments "
            f"acknowledged in {transactions} transactions by cand-a in term {term}, "
            f"{first.log_text().count(MOVED_ON)} writes sent again to the next member"
        )


class BlackHoledMemberRealTests(ClusterTestCase):
    """One etcd member of three stops answering without closing its connections (a member
    cut off by the network): the master's client must move on before its lease runs out."""

    def test_member_black_holed_under_the_master(self) -> None:
        """The default lease TTL (10 s). cand-a reaches etcd member 0 through a proxy (its
        first endpoint, so its client talks to it) and members 1 and 2 directly; the proxy
        is made a black hole, then :data:`BURST` agents enroll at once through the worker
        (the first write is sent into the black hole) and more back to back until 1.5 TTL
        after the stall.
        etcd keeps its quorum, so nothing changes: every enrollment is acknowledged and
        stored once by cand-a in its term (the write the black hole swallowed was sent to
        the next member after TTL/3, which cand-a's log names), nobody steps down."""
        require_etcd()
        ttl = DEFAULT_TTL
        etcd = started_etcd(self, size=3)
        proxy = FaultProxy(etcd.members[0].client_port)
        proxy.start()
        self.addCleanup(proxy.stop)
        direct = block_with_ttl(etcd.endpoints, ttl)
        proxied = block_with_ttl([f"http://127.0.0.1:{proxy.port}", *etcd.endpoints[1:]], ttl)
        cluster = candidates_cluster(self, lambda name: proxied if name == "cand-a" else direct)
        nodes = start_candidates(self, cluster)
        first = nodes[0]
        [term] = terms(first)
        through_worker = [cluster.node_ports("worker1")["enrollment"]]
        [result] = enroll(through_worker, 1, "before-")
        self.assertIn("id", result, result)
        swallowed = f"etcd member http://127.0.0.1:{proxy.port} {MOVED_ON}"
        before = first.log_text().count(swallowed)

        proxy.stall()
        stalled_at = time.monotonic()
        results = burst_during(self, cluster, "burst-", lambda: None, when=0)
        self.assertGreater(first.log_text().count(swallowed), before, notable(first))
        # Past one TTL after the stall: the lease was renewed through another member.
        until = stalled_at + 1.5 * ttl
        while time.monotonic() < until and "Stepped down" not in first.log_text():
            [result] = enroll(through_worker, 1, f"during-{len(results):03d}-")
            results.append(result)
        transactions = assert_stored_once(self, cluster, first, results, etcd.endpoints[1], term)
        assert_nothing_changed(self, nodes, term)
        print(
            f"\netcd member black-holed: {len(results)} enrollments acknowledged in "
            f"{transactions} transactions, {first.log_text().count(MOVED_ON)} writes sent "
            "again to the next member"
        )

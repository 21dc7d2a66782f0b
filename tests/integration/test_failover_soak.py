"""Failover soak with real nodes and a real etcd: round after round, kill -9 of the master
while a burst of agents enrolls through a worker, then the killed candidate restarted as the
next standby. Nothing acknowledged is ever lost, no id is issued twice across all rounds,
and etcd's history shows one master per term.

Each burst is the issue's 500 enrollments at once, as agents starting together send them.
``WAZUHCLUSTER_FAILOVER_ROUNDS`` sets the rounds (default 3, under a minute; ``make
soak-failover`` runs 20). The one-round version with more checks of the take-over is
``test_failover_real.KillDuringBurstRealTests``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.common import DEADLINE, ClusterTestCase
from tests.integration.etcd_history import agent_records, writer_of
from tests.integration.test_enrollment_real import enroll
from tests.integration.test_failover_real import (
    BURST,
    KILL_AFTER,
    MANY_AGENTS_ONE_ADDRESS,
    Burst,
    candidates_cluster,
    check_retries,
    failover_block,
    kill_mid_burst,
    refusals,
    retry_refused,
    split_at_kill,
    started_etcd,
    terms,
)
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.testing.devcluster import NodeProcess, wait_for

ROUNDS = int(os.environ.get("WAZUHCLUSTER_FAILOVER_ROUNDS", "3"))


def count(node: NodeProcess, text: str) -> int:
    """How often ``text`` is in the node's cluster.log (it spans restarts)."""
    return node.log_text().count(text)


def grows(node: NodeProcess, text: str, before: int) -> Callable[[], bool]:
    """A condition: ``text`` is in the node's log more often than ``before``."""
    return lambda: count(node, text) > before


def holds(keys: Path, prefix: str, wanted: int) -> Callable[[], bool]:
    """A condition: the client.keys at ``keys`` holds ``wanted`` agents named ``prefix``…"""
    return lambda: len([e for e in read_client_keys(keys) if e.name.startswith(prefix)]) >= wanted


class FailoverSoakRealTests(ClusterTestCase):
    """Repeated kill -9 of the master during enrollment bursts."""

    def test_rounds_of_kill_during_burst(self) -> None:
        """cand-a and cand-b take turns: each round, BURST agents enroll at once through
        worker1 and the master is killed once KILL_AFTER of them got their key, the rest in
        flight (some answered before the kill, some after); the other candidate is elected,
        every agent acknowledged in the round is on it with its id and key, in etcd, and no
        id was ever given twice; the worker relinks to it, the refused agents retry and all
        get a key from it (the same one where the old master had stored it without
        answering), and the killed one is restarted and links to it as the next round's
        standby. At the end etcd's history names one
        master for each term that wrote an acknowledged agent, every acknowledged agent of
        every round is on the last master and on both nodes running as workers (worker1 and
        the standby), and the last master accepts an enrollment with a new id."""
        etcd = started_etcd(self)
        endpoint = etcd.endpoints[0]
        block = failover_block(etcd.endpoints, ["cand-a", "cand-b"])
        cluster = candidates_cluster(self, lambda name: block, auth_options=MANY_AGENTS_ONE_ADDRESS)
        nodes = {"cand-a": self.start(cluster, "cand-a", "master")}
        self.wait_log(nodes["cand-a"], "Master for term")
        nodes["cand-b"] = self.start(cluster, "cand-b", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(nodes["cand-b"], "Successfully connected to master cand-a")
        self.wait_log(worker, "Successfully connected to master cand-a")
        port = cluster.node_ports("worker1")["enrollment"]
        keys_w = cluster.home("worker1").client_keys

        master, standby = "cand-a", "cand-b"
        acknowledged: dict[str, dict[str, str]] = {}
        took: list[float] = []
        for round_number in range(ROUNDS):
            prefix = f"r{round_number:02d}-"
            elected_before = count(nodes[standby], "Master for term")
            took_over_before = count(nodes[standby], "Took over")
            linked_before = count(worker, f"Successfully connected to master {standby}")
            burst = Burst(self, port, BURST, prefix)
            killed_at = kill_mid_burst(self, burst, nodes[master], KILL_AFTER)
            killed = time.monotonic()
            # Timed while the burst goes on: the rest of it may be answered by the new master.
            self.assertTrue(
                wait_for(grows(nodes[standby], "Took over", took_over_before), DEADLINE * 2, 0.05),
                f"round {round_number}: {standby} did not take over:\n"
                f"{nodes[standby].log_text()[-3000:]}",
            )
            took.append(time.monotonic() - killed)
            self.assertGreater(count(nodes[standby], "Master for term"), elected_before)
            results = burst.results()
            self.assertEqual(len(results), BURST)
            before, after = split_at_kill(self, results, killed_at)
            ours = {r["name"]: r for r in results if "id" in r}
            new_keys = {e.name: e for e in read_client_keys(cluster.home(standby).client_keys)}
            lost = [name for name in ours if name not in new_keys]
            self.assertEqual(lost, [], f"round {round_number}: acknowledged, not on {standby}")
            for name, result in ours.items():
                self.assertEqual(
                    (new_keys[name].id, new_keys[name].key), (result["id"], result["key"])
                )
            # The refused agents retry once the worker is linked to the new master.
            self.assertTrue(
                wait_for(
                    grows(worker, f"Successfully connected to master {standby}", linked_before),
                    DEADLINE * 2,
                ),
                worker.log_text()[-3000:],
            )
            retried = retry_refused(self, port, results)
            resent = check_retries(self, retried, new_keys)
            acknowledged_first = len(ours)
            ours.update((r["name"], r) for r in retried)
            self.assertEqual(len(ours), BURST)
            ids = [r["id"] for r in acknowledged.values()] + [r["id"] for r in ours.values()]
            self.assertEqual(len(ids), len(set(ids)), f"round {round_number}: an id twice")
            acknowledged.update(ours)
            print(
                f"\nround {round_number}: {master} killed, {standby} took over in "
                f"{took[-1]:.1f} s; {acknowledged_first} of {BURST} acknowledged ({before} "
                f"before the kill, {acknowledged_first - before} after it), {after} answered "
                f"after it; refused: {refusals(results, killed_at)}; all {len(retried)} refused "
                f"acknowledged on retry ({resent} stored unanswered: key sent again)"
            )

            restarted_before = count(nodes[master], f"Successfully connected to master {standby}")
            nodes[master].start()  # the next round's standby
            self.assertTrue(
                wait_for(
                    grows(
                        nodes[master],
                        f"Successfully connected to master {standby}",
                        restarted_before,
                    ),
                    DEADLINE * 2,
                ),
                nodes[master].log_text()[-3000:],
            )
            master, standby = standby, master

        records = agent_records(endpoint)
        writers: dict[int, set[str]] = {}
        for name, result in acknowledged.items():
            record, revision = records[name]
            self.assertEqual((record["id"], record["key"]), (result["id"], result["key"]))
            writer = writer_of(endpoint, revision)
            self.assertIsNotNone(writer, f"{name} written at {revision} with no leader")
            assert writer is not None
            writers.setdefault(writer[1], set()).add(writer[0])
        self.assertTrue(all(len(names) == 1 for names in writers.values()), writers)
        # Each master's own terms, from its log, agree with etcd's writers.
        for term, (name,) in ((t, tuple(n)) for t, n in writers.items()):
            self.assertIn(term, terms(nodes[name]))
        last = {e.name: e for e in read_client_keys(cluster.home(master).client_keys)}
        self.assertEqual([n for n in acknowledged if n not in last], [])
        for keys in (keys_w, cluster.home(standby).client_keys):
            self.assertTrue(
                wait_for(
                    lambda keys=keys: set(acknowledged) <= {e.name for e in read_client_keys(keys)},
                    DEADLINE,
                ),
                f"{keys} does not hold every acknowledged agent",
            )
        tried: list[dict[str, str]] = []

        def enrolled() -> bool:
            tried.extend(enroll([port], 1, f"after-soak-{len(tried)}-"))
            return "id" in tried[-1]

        self.assertTrue(wait_for(enrolled, DEADLINE, step=0.2), tried[-3:])
        self.assertNotIn(tried[-1]["id"], {r["id"] for r in acknowledged.values()})
        print(
            f"\nfailover soak: {ROUNDS} rounds, {len(acknowledged)} agents acknowledged, none "
            f"lost; take-over after kill -9 median {sorted(took)[len(took) // 2]:.1f} s, "
            f"max {max(took):.1f} s"
        )

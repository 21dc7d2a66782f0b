"""SIGKILL of the master or a worker at seeded random points of an integrity sync, an
enrollment burst and an agent-info cycle, round after round on one cluster.

After every round: no worker file is half-written (each holds a version the master wrote)
and no ``.wcsync-`` temp file is left, the worker converges to the master's files within two
cycles of rejoining, every agent that got a key is in the registry and in every client.keys
exactly once with that key, and SQLite passes ``PRAGMA integrity_check``.

``WAZUHCLUSTER_FAULT_ROUNDS`` sets the rounds per scenario (default 4, ``make soak`` runs
more) and ``WAZUHCLUSTER_FAULT_SEED`` the schedule (default 9; the failure message names it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.common import DEADLINE, ClusterTestCase
from tests.integration.test_faults_support import (
    client_keys,
    in_sync,
    registry_agents,
    sync_difference,
    unexpected_errors,
)
from tests.integration.test_integrity_real import (
    SLACK,
    TWO_CYCLES,
    digest,
    put,
    synced_files,
    temp_files,
)
from wazuhcluster.testing.devcluster import NodeProcess, wait_for

ROUNDS = int(os.environ.get("WAZUHCLUSTER_FAULT_ROUNDS", "4"))
SEED = int(os.environ.get("WAZUHCLUSTER_FAULT_SEED", "9"))
REPO = Path(__file__).resolve().parents[2]
CONNECTED = "Successfully connected to master"
#: ERROR lines a killed peer explains.
KILL_ERRORS = (
    "Could not connect to master",
    "keep alive",
    "Connection to the other side was lost",
    "the link to the master was lost",
    "no answer to",
    "Worker node ID already exists",
    "Worker node is not connected to master",
    "not connected to the master",
)


class KillRounds(ClusterTestCase):
    """A master and one worker; a victim is chosen and killed each round."""

    def setUp(self) -> None:
        """The seeded schedule and a cluster with its nodes started."""
        self.random = random.Random(SEED)
        self.cluster = self.make_cluster(["worker1"])
        self.nodes: dict[str, NodeProcess] = {
            "master": self.start(self.cluster, "master", "master"),
            "worker1": self.start(self.cluster, "worker1", "worker"),
        }
        self.wait_joined(1)

    def where(self, round_number: int) -> str:
        """Seed and round, for failure messages."""
        return f"(seed {SEED}, round {round_number})"

    def wait_joined(self, times: int) -> None:
        """Wait until the worker has joined the master ``times`` times in its current log."""
        worker = self.nodes["worker1"]
        if not wait_for(lambda: worker.log_text().count(CONNECTED) >= times, DEADLINE, 0.1):
            self.fail(f"worker1 did not join:\n{worker.log_text()[-3000:]}")

    def kill_and_restart(self, victim: str) -> None:
        """SIGKILL ``victim``, start it again and wait until the worker has rejoined."""
        worker = self.nodes["worker1"]
        before = worker.log_text().count(CONNECTED)
        self.nodes[victim].kill(signal.SIGKILL)
        time.sleep(self.random.uniform(0, 0.5))
        node = NodeProcess(self.cluster.home(victim), "master" if victim == "master" else "worker")
        node.start()
        self.addCleanup(node.kill)
        self.nodes[victim] = node
        self.wait_joined(before + 1)

    def assert_converges(self, round_number: int) -> None:
        """The worker holds the master's files within two cycles (plus slack) of rejoining."""
        limit = TWO_CYCLES + SLACK
        if not wait_for(lambda: in_sync(self.cluster, ["worker1"]), limit, 0.1):
            self.fail(
                f"not in sync {limit:.0f} s after rejoining {self.where(round_number)}: "
                f"{sync_difference(self.cluster, 'worker1')}"
            )

    def assert_keys_consistent(self, granted: dict[str, tuple[str, str]], where: str) -> None:
        """Every granted agent (id → (name, key)) is in the registry and in the master's
        client.keys, which agree with each other; the worker's client.keys catches up."""
        master = self.cluster.home("master")
        registry = registry_agents(master)
        keys = client_keys(master)
        self.assertEqual(keys, registry, f"client.keys and registry differ {where}")
        for agent_id, entry in granted.items():
            self.assertEqual(registry.get(agent_id), entry, f"agent {agent_id} lost {where}")
        worker = self.cluster.home("worker1")
        if not wait_for(lambda: client_keys(worker) == client_keys(master), DEADLINE, 0.2):
            self.fail(f"worker client.keys differs {where}")

    def assert_logs_explained(self) -> None:
        """No ERROR line that a killed peer does not explain."""
        for name in ("master", "worker1"):
            self.assertEqual(
                unexpected_errors(self.cluster.home(name), KILL_ERRORS), [], f"{name} {SEED}"
            )


class SyncKillTests(KillRounds):
    """Kills during integrity syncs of a changing tree."""

    def test_kill_during_sync(self) -> None:
        """Each round changes, adds and deletes files (some of 1 MB) on the master and kills
        a node at a random moment of the sync: worker files are whole old or new versions,
        temp files go away, and the worker converges within two cycles."""
        master_root = self.cluster.home("master").root
        worker_root = self.cluster.home("worker1").root
        versions: dict[str, set[str]] = {}
        for round_number in range(ROUNDS):
            where = self.where(round_number)
            for _ in range(self.random.randint(3, 8)):
                rel = f"etc/shared/g{self.random.randint(0, 3)}/f{self.random.randint(0, 12)}.bin"
                size = self.random.choice([10, 4096, 1 << 20])
                put(master_root, rel, os.urandom(size))
                versions.setdefault(rel, set()).add(digest(master_root / rel))
            existing = sorted(versions)
            for rel in self.random.sample(existing, k=min(2, len(existing))):
                (master_root / rel).unlink(missing_ok=True)
            time.sleep(self.random.uniform(0, 2.5))
            victim = self.random.choice(["master", "worker1"])
            self.nodes[victim].kill(signal.SIGKILL)
            for rel, (checksum, _mode) in synced_files(worker_root).items():
                if rel in versions:
                    self.assertIn(checksum, versions[rel], f"{rel} half-written {where}")
            self.kill_and_restart_after_kill(victim)
            self.assert_converges(round_number)
            self.assertEqual(temp_files(worker_root), [], where)
        self.assert_logs_explained()

    def kill_and_restart_after_kill(self, victim: str) -> None:
        """Start the already killed ``victim`` again and wait for the worker to rejoin."""
        worker = self.nodes["worker1"]
        before = worker.log_text().count(CONNECTED)
        node = NodeProcess(self.cluster.home(victim), "master" if victim == "master" else "worker")
        node.start()
        self.addCleanup(node.kill)
        self.nodes[victim] = node
        self.wait_joined(before + 1)


def enroll_process(ports: list[int], count: int, prefix: str) -> subprocess.Popen[str]:
    """Start tests.integration.enroll_many in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.enroll_many", ",".join(map(str, ports))]
        + [str(count), prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


class EnrollmentKillTests(KillRounds):
    """Kills during bursts of enrollments through the master and the worker."""

    def test_kill_during_enrollment_burst(self) -> None:
        """Each round 40 agents enroll at once through both nodes while one node is killed:
        every agent that received a key is kept with that key in the registry and in every
        client.keys, exactly once; SQLite stays sound."""
        granted: dict[str, tuple[str, str]] = {}
        ports = [self.cluster.node_ports(n)["enrollment"] for n in ("master", "worker1")]
        for round_number in range(ROUNDS):
            where = self.where(round_number)
            burst = enroll_process(ports, 40, f"r{round_number}-")
            time.sleep(self.random.uniform(0.2, 1.5))
            victim = self.random.choice(["master", "worker1"])
            self.kill_and_restart(victim)
            out, err = burst.communicate(timeout=120)
            self.assertEqual(burst.returncode, 0, err[-2000:])
            for result in json.loads(out):
                if "id" in result:
                    granted[result["id"]] = (result["name"], result["key"])
            self.assert_keys_consistent(granted, where)
        self.assertTrue(granted, "no enrollment succeeded at all")
        self.nodes["master"].stop()
        registry_agents(self.cluster.home("master"))  # integrity_check after a clean stop
        self.assert_logs_explained()


class AgentInfoKillTests(KillRounds):
    """Kills while simulated agents report through the worker's agent-info cycle."""

    def simulate(self, count: int) -> subprocess.Popen[str]:
        """wazuh-agent-sim with ``count`` agents on the worker (enrolled through it)."""
        return self.simulate_on(
            self.cluster, "worker1", "--agents", str(count), "--name-prefix", "info-"
        )

    def statuses(self) -> dict[str, str]:
        """name → connection_status in the master's registry (read-only)."""
        path = self.cluster.home("master").var_db / "global.db"
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                rows = connection.execute("SELECT name, connection_status FROM agents").fetchall()
            finally:
                connection.close()
        except sqlite3.Error:
            return {}
        return dict(rows)

    def test_kill_during_agent_info(self) -> None:
        """Agents keep reporting while the master or the worker is killed at a random point
        of the agent-info cycle: no agent is lost or duplicated, and all are active in the
        registry again after each round."""
        count = 30
        self.simulate(count)

        def all_active() -> bool:
            found = self.statuses()
            return len(found) == count and set(found.values()) == {"active"}

        self.assertTrue(
            wait_for(all_active, DEADLINE, 0.5), f"agents never active: {self.statuses()}"
        )
        granted = registry_agents(self.cluster.home("master"))
        for round_number in range(ROUNDS):
            where = self.where(round_number)
            time.sleep(self.random.uniform(0, 2.5))
            self.kill_and_restart(self.random.choice(["master", "worker1"]))
            if not wait_for(all_active, DEADLINE, 0.5):
                self.fail(f"agents not active again {where}: {self.statuses()}")
            self.assert_keys_consistent(granted, where)
            self.assertEqual(registry_agents(self.cluster.home("master")), granted, where)
        self.assert_logs_explained()

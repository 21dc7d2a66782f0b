"""Enrollment against real nodes under faults (issue 17): an agent reports at once after
enrolling, on any worker; the master killed between committing an agent and answering it;
the enrollment rate limit."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest

from tests.integration.common import DEADLINE, ClusterTestCase
from tests.integration.test_enrollment_real import enroll, key_names
from tests.integration.test_faults_disk import CONNECTED, mount
from tests.integration.test_faults_kill import enroll_process
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for


class EnrollmentFaultTests(ClusterTestCase):
    """A master and two workers; agents enroll and connect at once."""

    def start_cluster(self, auth_options: str = "") -> tuple[LocalCluster, list[NodeProcess]]:
        """Start a master and two workers and wait until both are connected."""
        cluster = self.make_cluster(["worker1", "worker2"])
        if auth_options:
            cluster.auth_options = auth_options
            cluster.write()
        master = self.start(cluster, "master", "master")
        workers = [self.start(cluster, name, "worker") for name in cluster.workers]
        for worker in workers:
            self.wait_log(worker, "Successfully connected to master")
        self.wait_log(master, "worker2")
        return cluster, [master, *workers]

    def enroll_then_connect(
        self, cluster: LocalCluster, enroll_on: str, connect_to: str, prefix: str, count: int
    ) -> dict[str, int]:
        """wazuh-agent-sim enrolls ``count`` agents through ``enroll_on`` and connects them to
        ``connect_to`` the moment the last key arrives (no spread); its summary."""
        simulator = self.start_simulator(
            "--enroll-port",
            str(cluster.node_ports(enroll_on)["enrollment"]),
            "--port",
            str(cluster.node_ports(connect_to)["agents"]),
            "--agents",
            str(count),
            "--name-prefix",
            prefix,
            "--spread",
            "0",
            "--keepalive",
            "1",
            "--duration",
            "4",
        )
        out, err = simulator.communicate(timeout=DEADLINE)
        self.assertEqual(simulator.returncode, 0, err)
        summary: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return summary

    def test_agents_report_at_once_after_enrolling(self) -> None:
        """30 agents enrolled through worker1 connect at once to worker2, 30 more to worker1
        itself, 30 enrolled on the master to worker2: every first connection is accepted (no
        reconnect, no "(1408): Invalid ID" anywhere). Before issue 17 the answer left before
        the key push, and 30 of 30 first attempts were refused."""
        cluster, nodes = self.start_cluster()
        runs = [
            ("worker1", "worker2", "w1w2-"),
            ("worker1", "worker1", "w1w1-"),
            ("master", "worker2", "mw2-"),
        ]
        for enroll_on, connect_to, prefix in runs:
            summary = self.enroll_then_connect(cluster, enroll_on, connect_to, prefix, 30)
            self.assertEqual(summary["enrollment_failures"], 0, summary)
            self.assertEqual(summary["ready"], 30, (prefix, summary))
            self.assertEqual(summary["connections"], 30, (prefix, summary))
            self.assertEqual(summary["disconnections"], 0, (prefix, summary))
        for node in nodes:
            self.assertNotIn("(1408)", node.log_text(), node.home.cluster_log)

    def test_master_killed_between_commit_and_answer(self) -> None:
        """worker2 is frozen (SIGSTOP), so the master, having committed an agent enrolled
        through worker1, waits for worker2's acknowledgement; the master is killed (SIGKILL)
        in that window. The agent is told "Cannot communicate with master"; once the master
        is back its retry gets the committed id and key, not "Duplicate agent name"."""
        cluster, nodes = self.start_cluster()
        master, worker1, worker2 = nodes
        assert worker2.process is not None
        worker2.process.send_signal(signal.SIGSTOP)
        try:
            pending = enroll_process([cluster.node_ports("worker1")["enrollment"]], 1, "lost-")
            # client.keys is written once the agent is committed, before the answer.
            self.assertTrue(
                wait_for(lambda: "lost-0000" in key_names(cluster, "master"), DEADLINE),
                master.log_text()[-2000:],
            )
            master.kill()
            out, _ = pending.communicate(timeout=DEADLINE)
        finally:
            worker2.process.send_signal(signal.SIGCONT)
        [first] = json.loads(out)
        self.assertIn("Cannot communicate with master", first.get("error", ""), first)
        stored = key_names(cluster, "master")
        self.assertIn("lost-0000", stored)
        nodes[0] = self.start(cluster, "master", "master")
        self.wait_log(worker1, "Successfully connected to master", DEADLINE)
        self.assertTrue(
            wait_for(lambda: "worker1" in nodes[0].log_text(), DEADLINE), nodes[0].log_text()
        )
        retried: list[dict] = []

        def retry() -> bool:
            [result] = enroll([cluster.node_ports("worker1")["enrollment"]], 1, "lost-")
            retried.append(result)
            return "id" in result

        self.assertTrue(wait_for(retry, DEADLINE), retried)
        self.assertEqual(retried[-1]["id"], stored["lost-0000"])
        keys = {e.name: e.key for e in read_client_keys(cluster.home("master").client_keys)}
        self.assertEqual(retried[-1]["key"], keys["lost-0000"])
        self.assertNotIn("Duplicate agent name", json.dumps(retried))

    def test_rate_limit_per_address(self) -> None:
        """With <max_per_ip>20, 60 enrollments from 127.0.0.1 at once: 20 granted, 40 told
        "Too many enrollment requests from 127.0.0.1"; the master logs it once."""
        cluster, nodes = self.start_cluster(
            "<rate_limit><max_per_ip>20</max_per_ip><timeframe>1h</timeframe></rate_limit>"
        )
        results = enroll([cluster.node_ports("worker1")["enrollment"]], 60, "flood-")
        granted = [r for r in results if "id" in r]
        too_many = "Too many enrollment requests from 127.0.0.1"
        refused = [r for r in results if too_many in r.get("error", "")]
        self.assertEqual((len(granted), len(refused)), (20, 40), results[:3])
        self.assertEqual(nodes[0].log_text().count("Enrollment rate limit reached"), 1)


class MasterDiskFullTests(ClusterTestCase):
    """The master's var/db is a small tmpfs that fills up (root is needed to mount it;
    without it the test is skipped with that reason)."""

    def test_enrollment_on_full_disk(self) -> None:
        """Filled to the last byte: enrollments through the worker are refused with a clear
        answer and a dated, explained ERROR on the master; the worker's link stays up; once
        space returns enrollment works again by itself, the agents refused meanwhile get keys,
        and the registry passes SQLite's integrity check."""
        cluster = self.make_cluster(["worker1"])
        var_db = cluster.home("master").var_db
        var_db.mkdir(parents=True, exist_ok=True)
        mounted = mount("-t", "tmpfs", "-o", "size=2m,mode=0770", "tmpfs", str(var_db))
        if mounted.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", str(var_db)], check=False)
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, CONNECTED)
        port = [cluster.node_ports("worker1")["enrollment"]]
        [first] = enroll(port, 1, "before-")
        self.assertIn("id", first, first)
        filler = var_db / "filler"
        with filler.open("wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        refused = enroll(port, 20, "full-")
        errors = [r.get("error", "") for r in refused]
        self.assertTrue(
            all("could not store it" in e for e in errors if "id" not in e), refused[:3]
        )
        self.assertTrue(any("could not store it" in e for e in errors), refused[:3])
        problems = [
            line for line in master.log_text().splitlines() if "Could not enroll 'full-" in line
        ]
        self.assertTrue(problems, master.log_text()[-3000:])
        self.assertRegex(problems[0], r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ERROR: .*full")
        self.assertEqual(worker.log_text().count(CONNECTED), 1, "the link was dropped")
        for line in master.log_text().splitlines():
            self.assertRegex(line, r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+: \[")
        filler.unlink()
        again = enroll(port, 20, "full-")
        self.assertEqual([r for r in again if "id" not in r], [])
        self.assertEqual(len({r["id"] for r in again}), 20)
        self.assertEqual(registry_check(var_db / "global.db"), ["ok"])
        self.assertTrue(worker.running() and master.running())


def registry_check(path: Path) -> list[str]:
    """PRAGMA integrity_check of the registry, opened read-only."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in connection.execute("PRAGMA integrity_check")]
    finally:
        connection.close()

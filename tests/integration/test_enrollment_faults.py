"""Enrollment against real nodes under faults (issue 17): an agent reports at once after
enrolling, on any worker; the master killed between committing an agent and answering it;
the enrollment rate limit; the master's var/db full.

The tests with rounds repeat their fault :data:`ROUNDS` times on the same nodes (1 in
``make test``, ``WAZUHCLUSTER_ATTACK_ROUNDS`` in ``make soak``)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest

from tests.integration.common import DEADLINE, ClusterTestCase, attack_rounds
from tests.integration.test_enrollment_real import enroll, key_names
from tests.integration.test_faults_disk import CONNECTED, EmergencyReadOnly, mount
from tests.integration.test_faults_kill import enroll_process
from tests.integration.test_faults_logs import fill
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

ROUNDS = attack_rounds()


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
        the key push, and 30 of 30 first attempts were refused. Each round, 90 new agents."""
        cluster, nodes = self.start_cluster()
        runs = [
            (enroll_on, connect_to, f"{prefix}{round_}-")
            for round_ in range(1, ROUNDS + 1)
            for enroll_on, connect_to, prefix in [
                ("worker1", "worker2", "w1w2-"),
                ("worker1", "worker1", "w1w1-"),
                ("master", "worker2", "mw2-"),
            ]
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
        is back its retry gets the committed id and key, not "Duplicate agent name". Each
        round kills the master again with a new agent."""
        cluster, nodes = self.start_cluster()
        for round_ in range(1, ROUNDS + 1):
            nodes[0] = self.kill_master_in_the_window(cluster, nodes, f"lost{round_}-")

    def kill_master_in_the_window(
        self, cluster: LocalCluster, nodes: list[NodeProcess], prefix: str
    ) -> NodeProcess:
        """One round of :meth:`test_master_killed_between_commit_and_answer` for the agent
        ``<prefix>0000``; the restarted master."""
        master, worker1, worker2 = nodes
        name = f"{prefix}0000"
        connected = worker1.log_text().count("Successfully connected to master")
        assert worker2.process is not None
        worker2.process.send_signal(signal.SIGSTOP)
        try:
            pending = enroll_process([cluster.node_ports("worker1")["enrollment"]], 1, prefix)
            # client.keys is written once the agent is committed, before the answer.
            self.assertTrue(
                wait_for(lambda: name in key_names(cluster, "master"), DEADLINE),
                master.log_text()[-2000:],
            )
            master.kill()
            out, _ = pending.communicate(timeout=DEADLINE)
        finally:
            worker2.process.send_signal(signal.SIGCONT)
        [first] = json.loads(out)
        self.assertIn("Cannot communicate with master", first.get("error", ""), first)
        stored = key_names(cluster, "master")
        self.assertIn(name, stored)
        master = self.start(cluster, "master", "master")
        self.assertTrue(
            wait_for(
                lambda: worker1.log_text().count("Successfully connected to master") > connected,
                DEADLINE,
            ),
            worker1.log_text()[-2000:],
        )
        retried: list[dict] = []

        def retry() -> bool:
            [result] = enroll([cluster.node_ports("worker1")["enrollment"]], 1, prefix)
            retried.append(result)
            return "id" in result

        self.assertTrue(wait_for(retry, DEADLINE), retried)
        self.assertEqual(retried[-1]["id"], stored[name])
        keys = {e.name: e.key for e in read_client_keys(cluster.home("master").client_keys)}
        self.assertEqual(retried[-1]["key"], keys[name])
        self.assertNotIn("Duplicate agent name", json.dumps(retried))
        return master

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


#: A cluster.log line: a date and a level first.
DATED = r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+: \["


class MasterDiskTests(ClusterTestCase):
    """The master's var/db on a small file system of its own that fills up or turns
    read-only (root is needed to mount it; without it the tests are skipped with that
    reason)."""

    def start_pair(
        self, cluster: LocalCluster
    ) -> tuple[NodeProcess, NodeProcess, list[int], dict[str, str]]:
        """Start the master and worker1, wait for the link, enroll one agent through the
        worker; the nodes, the worker's enrollment port and that agent's enrollment."""
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, CONNECTED)
        port = [cluster.node_ports("worker1")["enrollment"]]
        [first] = enroll(port, 1, "before-")
        self.assertIn("id", first, first)
        return master, worker, port, first

    def assert_refused(
        self, port: list[int], master: NodeProcess, prefix: str, why: str
    ) -> list[dict]:
        """Enroll 20 agents ``<prefix>NNNN`` through the worker: each is refused with a clear
        answer and the master logs a dated ERROR whose reason matches ``why``."""
        refused = enroll(port, 20, prefix)
        self.assertEqual([r for r in refused if "id" in r], [], "granted on a broken disk")
        self.assertTrue(
            all("could not store it" in r.get("error", "") for r in refused), refused[:3]
        )
        problems = [
            line for line in master.log_text().splitlines() if f"Could not enroll '{prefix}" in line
        ]
        self.assertTrue(problems, master.log_text()[-3000:])
        self.assertRegex(problems[0], rf"^\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d ERROR: .*{why}")
        return refused

    def assert_enrolled(self, port: list[int], prefix: str) -> dict[str, str]:
        """The 20 agents ``<prefix>NNNN`` enroll through the worker, each with its own id;
        name → id."""
        again = enroll(port, 20, prefix)
        self.assertEqual([r for r in again if "id" not in r], [])
        self.assertEqual(len({r["id"] for r in again}), 20)
        return {r["name"]: r["id"] for r in again}

    def assert_none_lost(self, cluster: LocalCluster, granted: dict[str, str]) -> None:
        """Every agent granted a key during the test is still in the master's client.keys
        with its id."""
        held = key_names(cluster, "master")
        self.assertEqual({name: held.get(name) for name in granted}, granted)

    def assert_link_kept(self, master: NodeProcess, worker: NodeProcess, joins: int = 1) -> None:
        """Both nodes run, the worker joined ``joins`` times, every cluster.log line of the
        master is dated."""
        self.assertEqual(worker.log_text().count(CONNECTED), joins, "the link was dropped")
        self.assertTrue(worker.running() and master.running())
        for line in master.log_text().splitlines():
            self.assertRegex(line, DATED)
        self.assertNotIn("Traceback", master.log_text())

    def test_enrollment_on_full_disk(self) -> None:
        """A 2 MiB tmpfs filled to the last byte: enrollments through the worker are refused
        with a clear answer and a dated, explained ERROR on the master; the worker's link
        stays up; once space returns enrollment works again by itself, the agents refused
        meanwhile get keys, and the registry passes SQLite's integrity check (each round
        fills it again)."""
        cluster = self.make_cluster(["worker1"])
        var_db = cluster.home("master").var_db
        var_db.mkdir(parents=True, exist_ok=True)
        mounted = mount("-t", "tmpfs", "-o", "size=2m,mode=0770", "tmpfs", str(var_db))
        if mounted.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", str(var_db)], check=False)
        master, worker, port, first = self.start_pair(cluster)
        granted = {first["name"]: first["id"]}
        for round_ in range(1, ROUNDS + 1):
            filler = var_db / "filler"
            fill(filler)
            self.assert_refused(port, master, f"full{round_}-", "full")
            self.assert_link_kept(master, worker)
            filler.unlink()
            granted.update(self.assert_enrolled(port, f"full{round_}-"))
            self.assertEqual(registry_check(var_db / "global.db"), ["ok"])
        self.assert_none_lost(cluster, granted)
        self.assertTrue(worker.running() and master.running())

    def test_enrollment_on_read_only_disk(self) -> None:
        """var/db turns read-only under the running master (the kernel's switch on a disk
        error; see EmergencyReadOnly for why not ``remount,ro``): enrollments through the
        worker are refused with a clear answer and a dated ERROR saying the database is read
        only; the worker's link stays up and the master keeps running. Read-only of this kind
        lasts until the file system is unmounted, so the master is stopped (it must stop
        cleanly), the disk checked and mounted again, the master started: the worker rejoins
        by itself, the refused agents enroll, the agents enrolled before are still there and
        the registry passes SQLite's integrity check (each round breaks the disk again)."""
        cluster = self.make_cluster(["worker1"])
        var_db = cluster.home("master").var_db
        var_db.mkdir(parents=True, exist_ok=True)
        disk = EmergencyReadOnly(cluster.base / "var_db.img", var_db)
        reason = disk.mount()
        if reason is not None:
            raise SkipTest(reason)
        self.addCleanup(disk.unmount)
        master, worker, port, before = self.start_pair(cluster)
        granted = {before["name"]: before["id"]}
        busy = mount("-o", "remount,ro", str(var_db))
        self.assertNotEqual(busy.returncode, 0, "remount,ro of a busy file system worked")
        for round_ in range(1, ROUNDS + 1):
            disk.fail()
            self.assert_refused(port, master, f"ro{round_}-", "Read-only file system")
            self.assert_link_kept(master, worker, joins=round_)
            process = master.process
            assert process is not None
            master.stop()
            # twistd ends a clean stop by re-raising SIGTERM on itself; SIGKILL means a hang.
            self.assertEqual(process.returncode, -signal.SIGTERM, "no clean stop")
            disk.repair()
            self.assertEqual(registry_check(var_db / "global.db"), ["ok"])
            master = self.start(cluster, "master", "master")
            self.assertTrue(
                wait_for(lambda n=round_ + 1: worker.log_text().count(CONNECTED) >= n, DEADLINE),
                worker.log_text()[-3000:],
            )
            granted.update(self.assert_enrolled(port, f"ro{round_}-"))
            self.assert_none_lost(cluster, granted)
            self.assertNotIn("Traceback", master.log_text())
        self.assertEqual(registry_check(var_db / "global.db"), ["ok"])
        self.assertTrue(worker.running() and master.running())


def registry_check(path: Path) -> list[str]:
    """PRAGMA integrity_check of the registry, opened read-only."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in connection.execute("PRAGMA integrity_check")]
    finally:
        connection.close()

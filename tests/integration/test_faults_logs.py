"""Disk faults under a worker's logs: ``logs/`` (cluster.log, alerts.json, twistd.out) is a
small tmpfs that fills up (root is needed to mount it; without it the test is skipped with
that reason).

While it is full the node keeps working: agents' events are analysed, an integrity sync
delivers a new file, the link to the master stays up. Once space returns the node resumes by
itself: cluster.log gets dated lines again (among them the WARNING counting the lines lost),
alerts.json gets new alerts, and neither file holds a broken line.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest

from tests.integration.common import (
    DEADLINE,
    ClusterTestCase,
    attack_rounds,
    control,
    node_names,
)
from tests.integration.test_analysis_real import EVENTS
from tests.integration.test_faults_disk import CONNECTED, EmergencyReadOnly, mount
from tests.integration.test_integrity_real import put
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

#: Every cluster.log line starts with a date and a level.
DATED = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+: \[")
LOST = "log lines were lost"
OUTPUTS = {"cluster.log", "alerts.json"}
#: Rounds of the read-only test (1 in ``make test``; ``WAZUHCLUSTER_ATTACK_ROUNDS`` sets it).
ROUNDS = attack_rounds()


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system refuses (ENOSPC)."""
    with path.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                handle.write(b"\0")
        except OSError:
            pass


def alert_lines(path: Path) -> list[str]:
    """The lines of alerts.json (none while it does not exist)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def intake(home: Path) -> dict[str, Any]:
    """The node's ``-i more`` analysis numbers (empty when the control socket does not
    answer)."""
    asked = control(home, "-i", "more", "--json")
    if asked.returncode != 0:
        return {}
    analysis: dict[str, Any] = json.loads(asked.stdout)["analysis"]
    return analysis


def refused_outputs(home: Path, refused: set[str]) -> set[str]:
    """Add to ``refused`` the outputs (cluster.log, alerts.json) the node now says it
    cannot write; return it."""
    outputs = intake(home).get("outputs") or {}
    refused.update(name for name, state in outputs.items() if state and state["failure"])
    return refused


def processed(home: Path) -> int:
    """Events the node's analysis has processed (-1 when the control socket does not answer)."""
    return int(intake(home).get("processed", -1))


def synced(root: Path, content: bytes) -> bool:
    """Whether the worker at ``root`` holds etc/shared/default/during.txt with ``content``."""
    during = root / "etc" / "shared" / "default" / "during.txt"
    return during.exists() and during.read_bytes() == content


class LogsTestCase(ClusterTestCase):
    """A master and worker1, with two simulated agents sending events to worker1."""

    def start_with_alerts(
        self, cluster: LocalCluster
    ) -> tuple[NodeProcess, NodeProcess, subprocess.Popen[str], Path]:
        """Start both nodes and the agents; once worker1's alerts.json holds 10 alerts,
        the master, the worker, the simulator and the path of alerts.json."""
        home = cluster.home("worker1")
        home.alerts_dir.mkdir()
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, CONNECTED)
        events = cluster.base / "events.txt"
        events.write_text(EVENTS)
        simulator = self.start_simulator(
            "--home",
            str(home.root),
            "--agents",
            "2",
            "--keepalive",
            "1",
            "--events",
            str(events),
            "--eps",
            "20",
        )
        alerts = home.alerts_dir / "alerts.json"
        self.assertTrue(wait_for(lambda: len(alert_lines(alerts)) >= 10, DEADLINE))
        return master, worker, simulator, alerts


class LogsDiskFullTests(LogsTestCase):
    """worker1's ``logs/`` is a 2 MiB tmpfs."""

    def test_logs_full_then_space_returns(self) -> None:
        """Filled to the last byte while agents send events: ``-i more`` says cluster.log and
        alerts.json cannot be written, events are still analysed, a file added on the master
        reaches the worker, the link stays up and the node runs; once the filler is removed
        cluster.log gets new dated lines with the lost-lines WARNING, alerts.json gets new
        alerts, every alerts.json line is whole JSON and every cluster.log line carries a date
        and a level."""
        cluster = self.make_cluster(["worker1"])
        home = cluster.home("worker1")
        mounted = mount("-t", "tmpfs", "-o", "size=2m,mode=0770", "tmpfs", str(home.logs))
        if mounted.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", str(home.logs)], timeout=DEADLINE)
        master, worker, simulator, alerts = self.start_with_alerts(cluster)

        log_size = home.cluster_log.stat().st_size
        filler = home.logs / "filler"
        fill(filler)
        # The last page of each file can still take a few lines after the filler took the
        # rest: wait until both writers have been refused at least once.
        refused: set[str] = set()
        self.assertTrue(
            wait_for(lambda: refused_outputs(home.root, refused) >= OUTPUTS, DEADLINE, 0.5),
            f"writes were never refused, only {sorted(refused)}",
        )
        before = processed(home.root)
        self.assertGreater(before, 0)
        # The node keeps working while nothing under logs/ can be written.
        self.assertTrue(
            wait_for(lambda: processed(home.root) >= before + 100, DEADLINE, 0.5),
            "events are no longer analysed while logs/ is full",
        )
        put(cluster.home("master").root, "etc/shared/default/during.txt", b"written while full\n")
        during = home.root / "etc" / "shared" / "default" / "during.txt"
        self.assertTrue(
            wait_for(
                lambda: during.exists() and during.read_bytes() == b"written while full\n",
                DEADLINE,
                0.2,
            ),
            "no integrity sync while logs/ is full",
        )
        self.assertEqual(node_names(cluster.home("master").root), ["master", "worker1"])
        self.assertTrue(worker.running() and master.running())

        lines_when_full = len(alert_lines(alerts))
        filler.unlink()
        self.assertTrue(
            wait_for(lambda: LOST in worker.log_text()[log_size - 1 :], DEADLINE, 0.2),
            worker.log_text()[-3000:],
        )
        self.assertTrue(
            wait_for(lambda: len(alert_lines(alerts)) >= lines_when_full + 10, DEADLINE, 0.2),
            f"no new alerts: {len(alert_lines(alerts))} lines, {lines_when_full} when full",
        )
        self.assertTrue(
            wait_for(lambda: "alerts were lost" in worker.log_text(), DEADLINE, 0.2),
            worker.log_text()[-3000:],
        )
        simulator.send_signal(signal.SIGINT)
        simulator.communicate(timeout=DEADLINE)

        [warning] = [line for line in worker.log_text().splitlines() if LOST in line][:1]
        self.assertRegex(warning, r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d WARNING: .*No space left")
        for line in alert_lines(alerts):
            self.assertIsInstance(json.loads(line), dict, line)
        for line in worker.log_text().splitlines():
            self.assertRegex(line, DATED)
        self.assertNotIn("Traceback", worker.log_text())
        self.assertNotIn("Unhandled error", worker.log_text())
        self.assertEqual(worker.log_text().count(CONNECTED), 1, "the link was dropped")
        self.assertEqual(node_names(cluster.home("master").root), ["master", "worker1"])
        self.assertTrue(worker.running() and master.running())


class LogsReadOnlyTests(LogsTestCase):
    """worker1's ``logs/`` is a small ext4 file system that turns read-only under the running
    node (see EmergencyReadOnly for why not ``remount,ro``; root is needed to mount it)."""

    def test_logs_read_only_then_repaired(self) -> None:
        """While nothing under logs/ can be written (``EROFS``): ``-i more`` says cluster.log
        and alerts.json cannot be written, events are still analysed, a file added on the
        master reaches the worker, the link stays up and both nodes run. Read-only of this
        kind lasts until the file system is unmounted, so the worker is stopped (cleanly),
        the disk checked and mounted again, the worker started: it rejoins, cluster.log gets
        dated lines again, alerts.json new alerts, and neither file holds a broken line (each
        round breaks the disk again)."""
        cluster = self.make_cluster(["worker1"])
        home = cluster.home("worker1")
        disk = EmergencyReadOnly(cluster.base / "logs.img", home.logs)
        reason = disk.mount()
        if reason is not None:
            raise SkipTest(reason)
        self.addCleanup(disk.unmount)
        master, worker, simulator, alerts = self.start_with_alerts(cluster)
        for round_ in range(1, ROUNDS + 1):
            disk.fail()
            refused: set[str] = set()
            self.assertTrue(
                wait_for(lambda r=refused: refused_outputs(home.root, r) >= OUTPUTS, DEADLINE, 0.5),
                f"round {round_}: writes were never refused, only {sorted(refused)}",
            )
            before = processed(home.root)
            self.assertTrue(
                wait_for(lambda b=before: processed(home.root) >= b + 100, DEADLINE, 0.5),
                f"round {round_}: events are no longer analysed while logs/ is read-only",
            )
            content = f"written while read-only {round_}\n".encode()
            put(cluster.home("master").root, "etc/shared/default/during.txt", content)
            self.assertTrue(
                wait_for(lambda c=content: synced(home.root, c), DEADLINE, 0.2),
                f"round {round_}: no integrity sync while logs/ is read-only",
            )
            self.assertEqual(node_names(cluster.home("master").root), ["master", "worker1"])
            self.assertTrue(worker.running() and master.running())

            process = worker.process
            assert process is not None
            worker.stop()
            # twistd ends a clean stop by re-raising SIGTERM on itself; SIGKILL means a hang.
            self.assertEqual(process.returncode, -signal.SIGTERM, "no clean stop")
            disk.repair()
            lines_before = len(alert_lines(alerts))
            log_size = home.cluster_log.stat().st_size
            worker.start()
            self.assertTrue(
                wait_for(lambda s=log_size: CONNECTED in worker.log_text()[s:], DEADLINE, 0.2),
                worker.log_text()[-3000:],
            )
            self.assertTrue(
                wait_for(lambda n=lines_before: len(alert_lines(alerts)) >= n + 10, DEADLINE, 0.2),
                f"round {round_}: no new alerts after the repair",
            )
            for line in alert_lines(alerts):
                self.assertIsInstance(json.loads(line), dict, line)
            for line in worker.log_text().splitlines():
                self.assertRegex(line, DATED)
        simulator.send_signal(signal.SIGINT)
        simulator.communicate(timeout=DEADLINE)
        self.assertNotIn("Traceback", worker.log_text())
        self.assertEqual(node_names(cluster.home("master").root), ["master", "worker1"])
        self.assertTrue(worker.running() and master.running())

"""The integrity sync over the cluster link, master and worker features in memory (iosim)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, capturedLogs, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import InMemoryCluster
from tests.test_integrity import write_tree
from tests.test_integrity_sync import refuse_rmtree
from wazuhcluster.config.home import Home
from wazuhcluster.integrity.compare import compare
from wazuhcluster.integrity.pack import iter_pack
from wazuhcluster.integrity.records import SMALL_FILE
from wazuhcluster.integrity.scan import scan_tree
from wazuhcluster.integrity.table import TEMP_PREFIX, is_excluded_name, item_for
from wazuhcluster.master.integrity import MasterIntegrity
from wazuhcluster.util.tasks import CallOnStop
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire import integrity as wire
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.worker.integrity import WorkerIntegrity
from wazuhcluster.worker.link import MasterLink


def tree(home: Home) -> dict[str, tuple[bytes, int]]:
    """Every synced-looking file under ``home``'s etc and var/multigroups: content and mode."""
    found = {}
    for top in ("etc", "var/multigroups"):
        for root, _dirs, files in os.walk(home.root / top):
            for name in files:
                path = Path(root, name)
                if name == "wazuh-manager.conf" or "certs" in path.parts:
                    continue
                found[str(path.relative_to(home.root))] = (
                    path.read_bytes(),
                    stat.S_IMODE(path.stat().st_mode),
                )
    return found


class IntegritySyncTests(SynchronousTestCase):
    """Files created, changed or deleted on the master end up the same on the workers."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())
        self.master = MasterIntegrity(
            self.cluster.master_home.root, self.cluster.master, run_in_thread=run_inline
        )
        self.cluster.master.features.add(self.master)
        self.master.task.startService()
        self.addCleanup(self.master.task.stopService)
        self.workers: dict[str, WorkerIntegrity] = {}
        self.ruleset_changes: list[str] = []

    def write(self, relpath: str, data: bytes | str, home: Home | None = None) -> None:
        """Write a file under a home (the master's by default)."""
        path = (home or self.cluster.master_home).root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    def join(self, name: str) -> WorkerIntegrity:
        """Connect worker ``name`` with its integrity feature and let it settle."""

        def features(link: MasterLink, home: Home) -> list[LinkFeature]:
            feature = WorkerIntegrity(home.root, link, run_in_thread=run_inline)
            feature.on_ruleset_changed.append(lambda: self.ruleset_changes.append(name))
            self.workers[name] = feature
            return [feature]

        link = self.cluster.add_worker(name, features=features)
        self.cluster.connect(link)
        self.cluster.settle()
        return self.workers[name]

    def master_files(self) -> dict[str, tuple[bytes, int]]:
        """The master's synced files, with the modes a worker must have."""
        modes = {"etc/client.keys": 0o640}
        return {
            p: (c, modes.get(p, 0o660))
            for p, (c, _m) in tree(self.cluster.master_home).items()
            if item_for(p) is not None and not is_excluded_name(p.rpartition("/")[2])
        }

    def cycle(self) -> None:
        """Let the master rescan and every worker run one integrity cycle."""
        self.master.task.run_now()
        for worker in self.workers.values():
            worker.task.run_now()
        self.cluster.settle()

    def test_stop_cancels_the_check_asked_for_the_next_turn(self) -> None:
        """Joining asks for a check at the next reactor turn; a stop before that turn
        cancels it, so no check runs after the node stopped."""
        link = self.cluster.add_worker("worker1")
        feature = WorkerIntegrity(Path(self.mktemp()), link, run_in_thread=run_inline)
        before = len(self.cluster.reactor.getDelayedCalls())
        feature.link_up(link)
        feature.link_up(link)  # asked twice: still one check
        self.assertEqual(len(self.cluster.reactor.getDelayedCalls()), 1 + before)
        for service in feature.services():
            if isinstance(service, CallOnStop):
                service.stopService()
        self.cluster.reactor.advance(0)
        self.assertEqual(feature.task.runs, 0)

    def test_initial_sync_copies_everything(self) -> None:
        """A new worker receives every synced file with the table's modes."""
        self.write("etc/client.keys", "001 a1 any " + "a" * 64 + "\n")
        self.write("etc/shared/default/agent.conf", "<agent_config/>\n")
        self.write("etc/shared/g1/sub/file.txt", b"\x00binary\xff" * 1000)
        self.write("etc/rules/local_rules.xml", "<group/>")
        self.write("etc/wazuh-manager.conf.bak~", "never synced")
        self.master.task.run_now()
        worker = self.join("worker1")
        self.assertEqual(
            tree(
                self.cluster.master_home.__class__(self.cluster.master_home.root.parent / "worker1")
            ),
            self.master_files(),
        )
        self.assertEqual(worker.status.syncs, 1)
        self.assertEqual(self.ruleset_changes, ["worker1"])

    def test_changes_propagate_and_worker_edits_are_undone(self) -> None:
        """Creations, updates and deletions on the master, and edits on a worker, converge."""
        self.write("etc/shared/default/agent.conf", "v1")
        self.write("etc/shared/g1/agent.conf", "g1")
        self.master.task.run_now()
        self.join("worker1")
        self.join("worker2")
        worker_home = self.cluster.worker_home("worker1")
        self.write("etc/shared/default/agent.conf", "v2")
        (self.cluster.master_home.shared / "g1" / "agent.conf").unlink()
        (self.cluster.master_home.shared / "g1").rmdir()
        self.write("etc/shared/default/agent.conf", "tampered", home=worker_home)
        self.write("etc/shared/default/extra.conf", "worker only", home=worker_home)
        self.cycle()
        for name in ("worker1", "worker2"):
            other = self.cluster.worker_home(name)
            self.assertEqual(tree(other), self.master_files(), name)
            self.assertFalse((other.shared / "g1").exists(), "empty group dir left behind")

    def test_in_sync_check_sends_no_table(self) -> None:
        """When nothing changed the check is one digest and the answer, no stream."""
        self.write("etc/shared/default/agent.conf", "v1")
        self.master.task.run_now()
        worker = self.join("worker1")
        syncs = worker.status.syncs
        link = self.cluster.master.workers.get("worker1")
        assert link is not None
        sent = self.master.state(link).bytes_sent
        self.cycle()
        self.assertEqual(worker.status.syncs, syncs)
        self.assertEqual(self.master.state(link).bytes_sent, sent)
        self.assertIsNotNone(worker.status.last_check_end)

    def test_file_changed_while_sent_comes_next_cycle(self) -> None:
        """A file that changes on the master between its scan and its sending is left for the
        next cycle: logged as such, not as an error, and the worker converges after it."""
        self.write("etc/shared/default/agent.conf", "v1")
        self.master.task.run_now()
        self.write("etc/shared/default/agent.conf", "v2, written after the scan")
        logged = EventLoggingObserver()
        globalLogPublisher.addObserver(logged)
        self.addCleanup(globalLogPublisher.removeObserver, logged)
        worker = self.join("worker1")
        self.assertIsNone(worker.status.last_error)
        self.assertEqual([e for e in logged if e["log_level"] >= LogLevel.warn], [])
        resent = [e for e in logged if "the next cycle sends them again" in e["log_format"]]
        self.assertEqual(len(resent), 1)
        self.assertEqual(resent[0]["paths"], "etc/shared/default/agent.conf")
        worker_home = self.cluster.worker_home("worker1")
        self.assertFalse((worker_home.shared / "default" / "agent.conf").exists())
        self.cycle()
        self.assertEqual(tree(worker_home), self.master_files())

    def test_large_file_changed_while_sent_is_info(self) -> None:
        """A large file (read while streamed, so only the worker sees its checksum no longer
        match) that changes on the master after the scan is logged at INFO as coming with the
        next sync, not as an ERROR; the next cycle brings it."""
        self.write("etc/client.keys", b"a" * (SMALL_FILE + 1))
        self.master.task.run_now()
        self.write("etc/client.keys", b"b" * (SMALL_FILE + 1))
        logged = EventLoggingObserver()
        globalLogPublisher.addObserver(logged)
        self.addCleanup(globalLogPublisher.removeObserver, logged)
        worker = self.join("worker1")
        self.assertIsNone(worker.status.last_error)
        self.assertEqual([e for e in logged if e["log_level"] >= LogLevel.warn], [])
        resent = [e for e in logged if "the next cycle sends them again" in e["log_format"]]
        self.assertEqual(
            [(e["log_level"], e["paths"]) for e in resent], [(LogLevel.info, "etc/client.keys")]
        )
        worker_home = self.cluster.worker_home("worker1")
        self.assertFalse((worker_home.root / "etc" / "client.keys").exists())
        self.cycle()
        self.assertEqual(tree(worker_home), self.master_files())

    def test_real_failure_stays_error(self) -> None:
        """A file the worker refuses to place (its directory is a symlink there) is still an
        ERROR naming the file, and the sync's status keeps the failure."""
        self.write("etc/shared/default/agent.conf", "v1")
        self.master.task.run_now()
        shared = self.cluster.worker_home("w1").shared
        shared.mkdir(parents=True)
        (shared / "default").symlink_to(self.mktemp())
        logged = EventLoggingObserver()
        globalLogPublisher.addObserver(logged)
        self.addCleanup(globalLogPublisher.removeObserver, logged)
        worker = self.join("w1")
        errors = [e for e in logged if e["log_format"].startswith("Could not apply")]
        self.assertEqual(
            [(e["log_level"], e["path"]) for e in errors],
            [(LogLevel.error, "etc/shared/default/agent.conf")],
        )
        self.assertEqual(worker.status.last_error, "1 files failed")

    def test_stop_cancels_a_sync_in_flight(self) -> None:
        """When the node stops, a files stream still on its way to a worker is cancelled: the
        stop does not wait for it, nothing is logged as an error, and the worker applies
        nothing of it."""
        self.write("etc/shared/default/agent.conf", "v1")
        self.master.task.run_now()
        worker = self.join("worker1")
        self.write("etc/shared/default/agent.conf", "v2")
        self.master.task.run_now()
        worker.task.run_now()
        for _ in range(100):  # one exchange at a time, until the files stream has started
            if self.master.background.pending:
                break
            for pump in self.cluster.pumps:
                pump.pump()
            self.cluster.reactor.advance(0)
        self.assertEqual(self.master.background.pending, ["Integrity sync of worker1"])
        with capturedLogs() as events:
            self.successResultOf(self.master.background.stopService())
            self.cluster.settle()
        self.assertEqual(self.master.background.pending, [])
        self.assertEqual([e for e in events if e.get("log_failure") is not None], [])
        self.assertEqual(worker.status.syncs, 1)
        path = self.cluster.worker_home("worker1").shared / "default" / "agent.conf"
        self.assertEqual(path.read_text(), "v1")
        link = next(iter(self.cluster.master.workers))
        self.assertFalse(self.master.state(link).syncing)
        self.assertEqual(self.master.state(link).last_error, "cancelled: the node is stopping")

    def test_master_change_is_announced(self) -> None:
        """A master rescan that finds a change makes workers check at once, not next cycle."""
        self.master.task.run_now()
        worker = self.join("worker1")
        self.write("etc/lists/bad-ips", "1.2.3.4:\n")
        self.master.task.run_now()  # only the master rescans; the worker is told
        self.cluster.settle()
        worker_home = self.cluster.worker_home("worker1")
        self.assertEqual((worker_home.etc / "lists" / "bad-ips").read_text(), "1.2.3.4:\n")
        self.assertEqual(worker.status.syncs, 1)

    def test_ruleset_hook_only_for_ruleset_files(self) -> None:
        """Shared-file syncs do not fire the ruleset hook; a decoder change does."""
        self.master.task.run_now()
        self.join("worker1")
        self.ruleset_changes.clear()
        self.write("etc/shared/default/agent.conf", "v1")
        self.cycle()
        self.assertEqual(self.ruleset_changes, [])
        self.write("etc/decoders/local_decoder.xml", "<decoder name='x'/>")
        self.cycle()
        self.assertEqual(self.ruleset_changes, ["worker1"])

    def test_budget_spreads_sync_over_cycles(self) -> None:
        """With a small byte budget a large change set arrives over several cycles."""
        self.master.budget_bytes = 2500
        for index in range(6):
            self.write(f"etc/shared/big/file{index}", bytes([index]) * 1000)
        self.master.task.run_now()
        worker = self.join("worker1")
        worker_home = self.cluster.worker_home("worker1")
        self.assertLess(len(tree(worker_home)), 6)
        for _ in range(5):
            self.cycle()
        self.assertEqual(tree(worker_home), self.master_files())
        self.assertGreaterEqual(worker.status.syncs, 3)

    def test_health_reports_last_sync(self) -> None:
        """The master's health data has the worker's last check and sync with counts."""
        self.write("etc/shared/default/agent.conf", "v1")
        self.master.task.run_now()
        self.join("worker1")
        status = self.cluster.master.health()["nodes"]["worker1"]["status"]
        self.assertTrue(status["sync_integrity_free"])
        self.assertEqual(
            status["last_sync_integrity"]["total_files"], {"missing": 1, "shared": 0, "extra": 0}
        )
        self.assertIsNotNone(status["last_check_integrity"]["date_end_master"])


class UnremovedTempDirTests(SynchronousTestCase):
    """The worker reports the temp directories of a sync that could not be removed."""

    def test_aborted_stream_warns_once(self) -> None:
        """A files stream aborted after it staged a new directory whose temp directory cannot be
        removed: the worker warns of it once, in its Integrity sync log."""
        master, worker = self.mktemp(), self.mktemp()
        write_tree(master, {"etc/shared/new/agent.conf": b"new group"})
        write_tree(worker, {"etc/shared/default/agent.conf": b"default group"})
        plan = compare(scan_tree(master), scan_tree(worker))
        stream = b"".join(iter_pack(master, plan))
        link = SimpleNamespace(
            clock=Clock(),
            cluster=SimpleNamespace(node_name="w1"),
            timings=SimpleNamespace(sync_integrity=10.0),
        )
        feature = WorkerIntegrity(Path(worker), link, run_in_thread=run_inline)
        self.addCleanup(feature.syncer.shutdown)
        logged = EventLoggingObserver()
        globalLogPublisher.addObserver(logged)
        self.addCleanup(globalLogPublisher.removeObserver, logged)
        consumer = feature.stream_kinds()[wire.FILES_KIND].consumer(len(stream))
        consumer.feed(stream[:-1])
        self.patch(shutil, "rmtree", refuse_rmtree)
        consumer.abort("cancelled by the master")
        consumer.abort("again")
        warnings = [
            event
            for event in logged
            if event["log_format"].startswith("Could not remove the temp directory")
        ]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["cluster_task"], "Integrity sync")
        self.assertIn(TEMP_PREFIX, warnings[0]["path"])
        self.assertIn("Permission denied", warnings[0]["error"])

"""The integrity sync between real twistd nodes on 127.0.0.1: propagation, repair, crash safety.

The trees are compared by a walker written here, independent of the integrity package: what a
worker must hold is every regular file of the master's synced directories (minus editor/lock
names), with the same bytes and the mode the sync table prescribes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.common import DEADLINE, ClusterTestCase
from wazuhcluster.config.cluster import Timings
from wazuhcluster.master.integrity import MasterIntegrity
from wazuhcluster.testing.devcluster import FAST_TIMINGS, LocalCluster, cluster_config, wait_for
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire import integrity as wire
from wazuhcluster.worker.integrity import WorkerIntegrity

#: Synced directories (recursive) and the mode their files get on a worker.
SYNCED_DIRS = {
    "etc/shared": 0o660,
    "var/multigroups": 0o660,
    "etc/rules": 0o660,
    "etc/decoders": 0o660,
    "etc/lists": 0o660,
    "etc/sca": 0o660,
}
#: Single synced files and their mode on a worker.
SYNCED_FILES = {"etc/client.keys": 0o640, "etc/authd.pass": 0o640}
#: Directories whose subdirectories left empty by deletions are removed (as in Wazuh).
PRUNED_DIRS = ("etc/shared", "var/multigroups")
#: Names never synced.
EXCLUDED_SUFFIXES = ("~", ".tmp", ".lock", ".swp")
#: Prefix of the sync's temp files.
TEMP_PREFIX = ".wcsync-"


def _seconds(text: str) -> float:
    return float(text.rstrip("s"))


#: "Within two cycles": two rounds of the master's rescan plus the worker's check, and slack
#: for a shared two-core machine.
TWO_CYCLES = 2 * (
    _seconds(FAST_TIMINGS["sync_integrity"]) + _seconds(FAST_TIMINGS["local_integrity"])
)
SLACK = 4.0


def digest(path: Path) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def synced_files(root: Path) -> dict[str, tuple[str, int]]:
    """relative path → (content SHA-256, permission bits) of every synced regular file."""
    found: dict[str, tuple[str, int]] = {}
    candidates: list[str] = [p for p in SYNCED_FILES]
    for directory in SYNCED_DIRS:
        for dirpath, _dirs, names in os.walk(root / directory):
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            candidates.extend(f"{rel}/{name}" for name in names)
    for rel in candidates:
        path = root / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and not rel.endswith(EXCLUDED_SUFFIXES):
            found[rel] = (digest(path), stat.S_IMODE(st.st_mode))
    return found


def expected_on_worker(master_root: Path) -> dict[str, tuple[str, int]]:
    """What a worker in sync with the master holds: the master's files with the table's modes."""
    expected = {}
    for rel, (checksum, _mode) in synced_files(master_root).items():
        top = (
            rel if rel in SYNCED_FILES else next(d for d in SYNCED_DIRS if rel.startswith(d + "/"))
        )
        expected[rel] = (checksum, SYNCED_FILES.get(top) or SYNCED_DIRS[top])
    return expected


def pruned_subdirs(root: Path) -> set[str]:
    """Every subdirectory under the directories whose empty subdirectories are removed."""
    found = set()
    for directory in PRUNED_DIRS:
        for dirpath, dirs, _names in os.walk(root / directory):
            for name in dirs:
                found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def temp_files(root: Path) -> list[str]:
    """Every file under ``root`` whose name marks it as a sync temp file."""
    return [
        os.path.join(dirpath, name)
        for dirpath, _dirs, names in os.walk(root)
        for name in names
        if name.startswith(TEMP_PREFIX)
    ]


def rule(rule_id: int, word: str) -> bytes:
    """A valid local rules file with one rule."""
    return (
        f'<group name="local,">\n  <rule id="{rule_id}" level="3">\n'
        f"    <match>{word}</match>\n    <description>{word}</description>\n"
        "  </rule>\n</group>\n"
    ).encode()


def put(root: Path, rel: str, data: bytes, mode: int = 0o660) -> None:
    """Create or replace ``rel`` under ``root`` atomically (temp file outside the synced dirs,
    then rename), so the master never holds a half-written version."""
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = root / "queue" / f"staging-{os.getpid()}-{time.monotonic_ns()}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.write_bytes(data)
    staging.chmod(mode)
    os.replace(staging, target)


class IntegritySyncTests(ClusterTestCase):
    """A real master keeps two real workers' synced files identical to its own."""

    def assert_in_sync(self, cluster: LocalCluster, workers: list[str], timeout: float) -> float:
        """Wait until every worker holds exactly the master's synced files (content, table mode),
        no temp file and no subdirectory the master lacks; fail after ``timeout`` seconds with
        the difference. Return the seconds it took."""
        master = cluster.home("master").root
        started = time.monotonic()

        def matches() -> bool:
            want, dirs = expected_on_worker(master), pruned_subdirs(master)
            return all(
                synced_files(cluster.home(name).root) == want
                and pruned_subdirs(cluster.home(name).root) == dirs
                and not temp_files(cluster.home(name).root)
                for name in workers
            )

        if not wait_for(matches, timeout, step=0.05):
            want = expected_on_worker(master)
            for name in workers:
                got = synced_files(cluster.home(name).root)
                diff = {
                    rel: (want.get(rel), got.get(rel))
                    for rel in set(want) | set(got)
                    if want.get(rel) != got.get(rel)
                }
                dirs = pruned_subdirs(cluster.home(name).root) ^ pruned_subdirs(master)
                temps = temp_files(cluster.home(name).root)
                self.fail(
                    f"{name} not in sync after {timeout:.0f} s: files {diff}, dirs {dirs}, "
                    f"temp files {temps}"
                )
        return time.monotonic() - started

    def test_changes_reach_both_workers_and_worker_edits_are_undone(self) -> None:
        """Files created, changed and deleted on the master (nested group folders, client.keys,
        rules, lists, multigroups) reach both workers with the table's modes within two cycles;
        editor/lock files do not; a group folder emptied on the master disappears on the workers;
        a worker-side edit, a worker-side deletion and worker-only files are undone."""
        cluster = self.make_cluster(["worker1", "worker2"])
        m = cluster.home("master").root
        put(m, "etc/client.keys", b"001 agent1 any " + b"a" * 64 + b"\n", 0o640)
        put(m, "etc/shared/default/agent.conf", b"<agent_config></agent_config>\n", 0o644)
        put(m, "etc/shared/linux/agent.conf", b"<agent_config os='linux'/>\n")
        put(m, "etc/shared/linux/sub/deep/extra.txt", b"nested\n")
        put(m, "etc/shared/default/agent.conf.swp", b"editor swap file\n")
        put(m, "etc/shared/default/notes~", b"editor backup\n")
        put(m, "etc/rules/local_rules.xml", rule(100100, "first"))
        decoder = b"<decoder name='x'><prematch>x</prematch></decoder>\n"
        put(m, "etc/decoders/local_decoder.xml", decoder)
        put(m, "etc/lists/blocked-ips", b"10.0.0.1:\n")
        put(m, "etc/sca/custom.yml", b"policy: {id: custom}\n")
        put(m, "var/multigroups/3c4d5e6f/merged.mg", b"#default\n#linux\n")
        master = self.start(cluster, "master", "master")
        workers = [self.start(cluster, name, "worker") for name in cluster.workers]
        self.assert_in_sync(cluster, cluster.workers, DEADLINE)
        for name in cluster.workers:
            home = cluster.home(name).root
            self.assertEqual(
                stat.S_IMODE((home / "etc/shared/default/agent.conf").stat().st_mode), 0o660
            )
            self.assertEqual(stat.S_IMODE((home / "etc/client.keys").stat().st_mode), 0o640)
            self.assertFalse((home / "etc/shared/default/agent.conf.swp").exists())
            self.assertFalse((home / "etc/shared/default/notes~").exists())

        # Master-side changes: create (nested), update, delete a file and a whole group folder.
        put(m, "etc/shared/web/nested/group/agent.conf", b"<agent_config name='web'/>\n")
        put(m, "etc/client.keys", b"001 agent1 any " + b"b" * 64 + b"\n002 a2 any " + b"c" * 64)
        put(m, "etc/rules/local_rules.xml", rule(100101, "changed"))
        put(m, "etc/lists/new-list", b"evil.example:\n")
        (m / "etc/lists/blocked-ips").unlink()
        (m / "etc/shared/linux/sub/deep/extra.txt").unlink()
        (m / "etc/shared/linux/sub/deep").rmdir()
        (m / "etc/shared/linux/sub").rmdir()
        put(m, "var/multigroups/3c4d5e6f/merged.mg", b"#default\n#linux\n#web\n")
        took = self.assert_in_sync(cluster, cluster.workers, DEADLINE)
        self.assertLessEqual(took, TWO_CYCLES + SLACK, "master changes took more than two cycles")

        # Worker-side edits are undone: a changed file, a mode, a deletion, worker-only files.
        w1, w2 = cluster.home("worker1").root, cluster.home("worker2").root
        (w1 / "etc/shared/default/agent.conf").write_bytes(
            b"<agent_config>local edit</agent_config>"
        )
        (w1 / "etc/rules/local_rules.xml").unlink()
        (w2 / "etc/client.keys").chmod(0o600)
        (w2 / "etc/shared/rogue").mkdir()
        (w2 / "etc/shared/rogue/agent.conf").write_bytes(b"worker-only group\n")
        rogue = b"<decoder name='rogue'><prematch>r</prematch></decoder>\n"
        (w2 / "etc/decoders/rogue_decoder.xml").write_bytes(rogue)
        took = self.assert_in_sync(cluster, cluster.workers, DEADLINE)
        self.assertLessEqual(took, TWO_CYCLES + SLACK, "worker edits took more than two cycles")

        for node in (master, *workers):
            self.assertTrue(node.running(), node.log_text()[-2000:])
        for name, node in zip(cluster.workers, workers, strict=True):
            log = node.log_text()
            self.assertIn(f"[Worker {name}] [Integrity sync] Files to create: ", log)
            self.assertIn(f"[Worker {name}] [Integrity sync] Finished in ", log)
            errors = [
                line for line in log.splitlines() if "ERROR:" in line and "[Integrity" in line
            ]
            self.assertEqual(errors, [])

    def test_master_killed_mid_sync_leaves_old_or_new_files(self) -> None:
        """SIGKILL of the master while a 200 MB sync streams leaves every worker file either old
        or new and no temp file; after the master restarts the next cycle completes. A worker
        killed mid-sync cleans its temp files when it starts again and then catches up."""
        cluster = self.make_cluster(["worker1"])
        m, w = cluster.home("master").root, cluster.home("worker1").root
        count, size = 40, 5 * 1024 * 1024
        names = [f"etc/shared/big/f{i:02}.bin" for i in range(count)]
        for i, rel in enumerate(names):
            put(m, rel, f"old {i}\n".encode())
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.assert_in_sync(cluster, ["worker1"], DEADLINE)
        old = synced_files(m)

        blob = os.urandom(size)
        for i, rel in enumerate(names):
            put(m, rel, i.to_bytes(4, "big") + blob[4:])
        new = synced_files(m)
        self.assertTrue(
            wait_for(lambda: bool(temp_files(w)), DEADLINE, step=0.005),
            "the big sync never started",
        )
        master.kill(signal.SIGKILL)
        self.wait_log(worker, "Connection with the master lost")
        self.assertTrue(
            wait_for(lambda: not temp_files(w), DEADLINE), f"temp files left: {temp_files(w)}"
        )
        got = synced_files(w)
        for rel in names:
            self.assertIn(got[rel][0], (old[rel][0], new[rel][0]), f"{rel} is neither old nor new")
        still_old = [rel for rel in names if got[rel][0] == old[rel][0]]
        self.assertTrue(still_old, "the sync finished before the kill: nothing was interrupted")

        master = self.start(cluster, "master", "master")
        self.assert_in_sync(cluster, ["worker1"], DEADLINE)

        # Now the worker dies mid-sync: its temp files stay until it starts again.
        for i, rel in enumerate(names):
            put(m, rel, (i + 1000).to_bytes(4, "big") + blob[4:])
        self.assertTrue(
            wait_for(lambda: bool(temp_files(w)), DEADLINE, step=0.005),
            "the second big sync never started",
        )
        worker.kill(signal.SIGKILL)
        stale = temp_files(w)
        self.assertTrue(stale, "the sync finished before the kill")
        worker = self.start(cluster, "worker1", "worker")
        self.assertTrue(
            wait_for(lambda: not any(os.path.exists(path) for path in stale), DEADLINE),
            f"stale temp files kept: {stale}",
        )
        self.assert_in_sync(cluster, ["worker1"], DEADLINE)
        self.assertTrue(master.running(), master.log_text()[-2000:])


class StartupCleanupTests(ClusterTestCase):
    """A worker removes the temp files an interrupted sync left, as it starts."""

    def start_with_stale_temp_file(self) -> tuple[Path, str]:
        """Start a lone worker whose etc/shared holds a stale temp file; return the file and
        the worker's log once it is running."""
        cluster = self.make_cluster(["worker1"])
        stale = cluster.home("worker1").root / "etc/shared/default" / f"{TEMP_PREFIX}0123.tmp"
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"half a file")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Worker worker1 of cluster")
        return stale, worker.log_text()

    def test_stale_temp_file_removed_at_start(self) -> None:
        """The stale temp file is gone once the worker runs, even with no master."""
        stale, _log = self.start_with_stale_temp_file()
        self.assertFalse(stale.exists())

    def test_stale_temp_file_removal_is_logged(self) -> None:
        """The removal is logged in cluster.log."""
        _stale, log = self.start_with_stale_temp_file()
        self.assertIn("Removed 1 temp files of an interrupted sync.", log)


#: How soon a change noticed by inotify must reach a worker (it takes well under a second).
PROMPT = 6.0


class PromptSyncTests(ClusterTestCase):
    """With a long periodic scan on the master, only inotify makes a change reach a worker
    promptly: every directory of the synced tree must stay watched."""

    def start_pair(self) -> LocalCluster:
        """A master scanning only every 60 s and one worker, both running and in sync, with
        group folders g1 and g2."""
        cluster = self.make_cluster(["worker1"])
        master_home = cluster.home("master")
        slow = {**FAST_TIMINGS, "local_integrity": "60s"}
        text = cluster_config("master", "master", cluster.key, cluster.port, timings=slow)
        master_home.config_file.write_text(text)
        put(master_home.root, "etc/shared/g1/agent.conf", b"g1\n")
        put(master_home.root, "etc/shared/g2/agent.conf", b"g2\n")
        self.start(cluster, "master", "master")
        self.start(cluster, "worker1", "worker")
        self.assert_arrives(cluster, "etc/shared/g2/agent.conf", b"g2\n", DEADLINE)
        return cluster

    def assert_arrives(self, cluster: LocalCluster, rel: str, data: bytes, timeout: float) -> None:
        """Wait until worker1's ``rel`` holds ``data``; fail after ``timeout`` seconds."""
        target = cluster.home("worker1").root / rel

        def arrived() -> bool:
            try:
                return target.read_bytes() == data
            except FileNotFoundError:
                return False

        self.assertTrue(wait_for(arrived, timeout), f"{rel} not on worker1 after {timeout} s")

    def change(self, cluster: LocalCluster, rel: str, data: bytes) -> None:
        """Write ``rel`` on the master and expect it on worker1 promptly."""
        put(cluster.home("master").root, rel, data)
        self.assert_arrives(cluster, rel, data, PROMPT)

    def test_new_group_folder(self) -> None:
        """A group folder created on the master (mkdir, then a file), and then a change inside
        it, reach the worker promptly."""
        cluster = self.start_pair()
        self.change(cluster, "etc/shared/g3/agent.conf", b"g3\n")
        self.change(cluster, "etc/shared/g3/agent.conf", b"g3 changed\n")

    def test_group_folder_moved_in(self) -> None:
        """A group folder renamed into etc/shared reaches the worker promptly, and so does a
        later change inside it."""
        cluster = self.start_pair()
        master = cluster.home("master").root
        put(master, "queue/g4/agent.conf", b"g4\n")
        os.rename(master / "queue/g4", master / "etc/shared/g4")
        self.assert_arrives(cluster, "etc/shared/g4/agent.conf", b"g4\n", PROMPT)
        self.change(cluster, "etc/shared/g4/agent.conf", b"g4 changed\n")

    def test_group_folder_deleted(self) -> None:
        """After a group folder is deleted on the master, a change in another folder still
        reaches the worker promptly."""
        cluster = self.start_pair()
        master = cluster.home("master").root
        (master / "etc/shared/g2/agent.conf").unlink()
        (master / "etc/shared/g2").rmdir()
        target = cluster.home("worker1").root / "etc/shared/g2"
        self.assertTrue(wait_for(lambda: not target.exists(), PROMPT), "g2 not deleted")
        self.change(cluster, "etc/shared/g1/agent.conf", b"g1 changed\n")


class RescanRaceTests(SynchronousTestCase):
    """A change noticed while a scan or check is running is not lost until the next periodic
    one (deterministic: task.Clock, scans and answers released by hand; the races behind the
    slow outliers seen with real nodes)."""

    def test_change_during_scan_is_rescanned(self) -> None:
        """The file changes after the running scan read it and inotify reports it before that
        scan ends: a second scan follows within a second, not after local_integrity (8 s)."""
        home = Path(self.mktemp())
        put(home, "etc/shared/g1/agent.conf", b"one\n")
        clock = Clock()
        node = SimpleNamespace(clock=clock, timings=Timings(), workers=[])
        finished: list[tuple[Deferred[Any], Any]] = []

        def scan_now_answer_later(function: Any, *args: Any, **kwargs: Any) -> Deferred[Any]:
            answer: Deferred[Any] = Deferred()
            finished.append((answer, function(*args, **kwargs)))
            return answer

        feature = MasterIntegrity(home, node, run_in_thread=scan_now_answer_later)
        feature.task.run_now()
        put(home, "etc/shared/g1/agent.conf", b"two\n")
        feature.notice_change()
        clock.advance(1.0)
        for _ in range(10):  # release every scan asked for, and any that follows, within 1 s
            while finished:
                answer, result = finished.pop(0)
                answer.callback(result)
            clock.advance(0.1)
        assert feature.table is not None
        want = hashlib.blake2b(b"two\n", digest_size=32).hexdigest()
        self.assertEqual(feature.table["etc/shared/g1/agent.conf"].checksum, want)

    def test_announcement_during_worker_check_is_not_dropped(self) -> None:
        """The master announces a change while the worker's check is still waiting for its
        answer (which was decided on the master's old table): the worker checks again within
        a second instead of at its next periodic check (sync_integrity, 9 s)."""
        home = Path(self.mktemp())
        put(home, "etc/shared/g1/agent.conf", b"one\n")
        calls: list[Deferred[dict[str, Any]]] = []

        def call(command: Any, **arguments: Any) -> Deferred[dict[str, Any]]:
            calls.append(Deferred())
            return calls[-1]

        clock = Clock()
        link = SimpleNamespace(
            clock=clock,
            timings=Timings(),
            cluster=SimpleNamespace(node_name="worker1"),
            connected=True,
            call=call,
        )
        feature = WorkerIntegrity(home, link, run_in_thread=run_inline)
        feature.task.run_now()
        self.assertEqual(len(calls), 1)
        locator = feature.locator(link)
        locator.integrity_changed(digest="f" * 64)  # type: ignore[attr-defined]
        calls[0].callback({"verdict": wire.IN_SYNC})
        clock.advance(1.0)
        self.assertEqual(len(calls), 2, "the announcement was dropped")

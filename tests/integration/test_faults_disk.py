"""Disk faults on a worker: its synced directory fills up or turns read-only.

The worker's ``etc/shared`` is a 1 MiB tmpfs (root is needed to mount it; without it the
tests are skipped with that reason). The worker must report the sync error, keep its old
files whole, leave no temp file, keep its link, and catch up once space or write access
returns.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest

from tests.integration.common import DEADLINE, ClusterTestCase
from tests.integration.test_faults_support import in_sync, log_lines, sync_difference
from tests.integration.test_integrity_real import digest, put, temp_files
from wazuhcluster.testing.devcluster import LocalCluster, wait_for

CONNECTED = "Successfully connected to master"


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    """Run mount(8) with ``args``."""
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


class EmergencyReadOnly:
    """A small ext4 file system (an image on a loop device) mounted on ``path`` with
    ``errors=remount-ro``, which a test turns read-only under a running node the way the
    kernel does after a disk error.

    ``mount -o remount,ro`` cannot do that: it is refused (``mount point is busy``) while any
    process holds a file open for writing there, as a node does its registry and its logs.
    The kernel's own switch, on an ext4 error, is not refused: every write, to an open file
    too, then fails with ``EROFS``. It cannot be undone by ``remount,rw`` either: the file
    system must be unmounted (every node using it stopped), checked and mounted again.
    """

    def __init__(self, image: Path, path: Path) -> None:
        self.image, self.path = image, path
        self.device = ""

    def mount(self) -> str | None:
        """Make and mount the file system; None, or why it cannot be (the test's skip
        reason)."""
        with self.image.open("wb") as handle:
            handle.truncate(32 << 20)
        made = subprocess.run(
            ["mkfs.ext4", "-q", "-F", str(self.image)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            return f"cannot make an ext4 image: {made.stderr.strip()}"
        reason = self.attach()
        if reason is not None:
            return reason
        found = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        self.device = found.stdout.strip().rpartition("/")[2]
        if not os.access(self.trigger, os.W_OK):
            self.unmount()
            return f"cannot trigger an ext4 error: {self.trigger} is not writable"
        return None

    @property
    def trigger(self) -> Path:
        """ext4's sysfs file that raises a file-system error when written."""
        return Path("/sys/fs/ext4", self.device, "trigger_fs_error")

    def attach(self) -> str | None:
        """Mount the image on the path; None, or why it cannot be."""
        mounted = mount("-o", "loop,errors=remount-ro", str(self.image), str(self.path))
        if mounted.returncode != 0:
            return f"cannot mount an ext4 image on a loop device (needs root): {mounted.stderr}"
        return None

    def fail(self) -> None:
        """Raise an ext4 error: the kernel turns the file system read-only. What was written
        before is synced first: the error aborts the journal, so writes not yet committed
        (ext4 commits every 5 s) are lost, which is the kernel's doing, not the node's."""
        os.sync()
        self.trigger.write_text("wazuhcluster test: disk turns read-only\n")

    def repair(self) -> str:
        """Unmount, check (``e2fsck -fy``) and mount again, as an operator would once every
        node using it is stopped; e2fsck's output."""
        self.unmount(lazy=False)
        checked = subprocess.run(
            ["e2fsck", "-fy", str(self.image)], capture_output=True, text=True, check=False
        )
        reason = self.attach()
        if reason is not None:
            raise AssertionError(reason)
        return checked.stdout + checked.stderr

    def unmount(self, lazy: bool = True) -> None:
        """Unmount (the loop device goes with it)."""
        subprocess.run(
            ["umount", *(["-l"] if lazy else []), str(self.path)], check=not lazy, timeout=60
        )


class DiskFaultTests(ClusterTestCase):
    """A worker whose synced directory is a small tmpfs."""

    def setUp(self) -> None:
        """Mount a 1 MiB tmpfs on worker1's etc/shared, start both nodes, sync once."""
        self.cluster: LocalCluster = self.make_cluster(["worker1"])
        self.shared = self.cluster.home("worker1").root / "etc" / "shared"
        self.shared.mkdir(parents=True, exist_ok=True)
        mounted = mount("-t", "tmpfs", "-o", "size=1m,mode=0770", "tmpfs", str(self.shared))
        if mounted.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", str(self.shared)], check=False)
        self.master_root = self.cluster.home("master").root
        put(self.master_root, "etc/shared/default/a.txt", b"version 1\n")
        self.master = self.start(self.cluster, "master", "master")
        self.worker = self.start(self.cluster, "worker1", "worker")
        self.wait_log(self.worker, CONNECTED)
        self.wait_in_sync()
        self.a_path = self.shared / "default" / "a.txt"
        self.errors_before = len(log_lines(self.cluster.home("worker1"), "ERROR"))

    def wait_in_sync(self) -> None:
        """Wait until the worker holds the master's files."""
        if not wait_for(lambda: in_sync(self.cluster, ["worker1"]), DEADLINE, 0.2):
            self.fail(f"not in sync: {sync_difference(self.cluster, 'worker1')}")

    def new_errors(self) -> list[str]:
        """ERROR lines the worker logged since the set-up."""
        return log_lines(self.cluster.home("worker1"), "ERROR")[self.errors_before :]

    def assert_fault_handled(self, old: set[str]) -> None:
        """The worker reported the error, a.txt is a whole known version, no temp file is
        left, and the link was kept."""
        if not wait_for(lambda: bool(self.new_errors()), DEADLINE, 0.2):
            self.fail(f"no sync error reported:\n{self.worker.log_text()[-3000:]}")
        self.assertIn(digest(self.a_path), old)
        self.assertTrue(
            wait_for(lambda: not temp_files(self.shared), DEADLINE, 0.2),
            f"temp files left: {temp_files(self.shared)}",
        )
        self.assertEqual(self.worker.log_text().count(CONNECTED), 1, "the link was dropped")
        self.assertTrue(self.worker.running())

    def versions(self, *contents: bytes) -> set[str]:
        """The digests of ``contents`` as files."""
        found = set()
        for content in contents:
            probe = Path(self.cluster.base) / "probe"
            probe.write_bytes(content)
            found.add(digest(probe))
        return found

    def test_full_disk(self) -> None:
        """A 3 MiB file does not fit: the error is logged, a.txt stays whole; once the
        tmpfs grows the next cycles deliver everything."""
        put(self.master_root, "etc/shared/default/a.txt", b"version 2\n")
        put(self.master_root, "etc/shared/default/big.bin", os.urandom(3 << 20))
        self.assert_fault_handled(self.versions(b"version 1\n", b"version 2\n"))
        self.assertTrue(
            any("No space left" in line for line in self.new_errors()), self.new_errors()
        )
        resized = mount("-o", "remount,size=16m", str(self.shared))
        self.assertEqual(resized.returncode, 0, resized.stderr)
        self.wait_in_sync()
        self.assertTrue(self.master.running())

    def test_read_only_directory(self) -> None:
        """The synced directory turns read-only: the error is logged, a.txt keeps its old
        version; once writable again the next cycles deliver the change."""
        made = mount("-o", "remount,ro", str(self.shared))
        self.assertEqual(made.returncode, 0, made.stderr)
        put(self.master_root, "etc/shared/default/a.txt", b"version 3\n")
        self.assert_fault_handled(self.versions(b"version 1\n"))
        self.assertTrue(
            any("Read-only file system" in line for line in self.new_errors()), self.new_errors()
        )
        back = mount("-o", "remount,rw", str(self.shared))
        self.assertEqual(back.returncode, 0, back.stderr)
        self.wait_in_sync()
        self.assertTrue(self.master.running())

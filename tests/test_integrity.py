"""Tests for the synced-items table, path checks, the incremental scan, the digest and compare."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.integrity import scan as scan_module
from wazuhcluster.integrity.compare import Plan, compare, split_plan
from wazuhcluster.integrity.paths import PathRefused, resolve, validate_relpath
from wazuhcluster.integrity.scan import (
    FileMeta,
    ScanStats,
    as_synced,
    checksum_bytes,
    master_digest,
    scan_tree,
    table_digest,
)
from wazuhcluster.integrity.table import item_for, item_mode

# A clock far ahead of every file's mtime, so no file counts as "racy".
_FUTURE = lambda: 1 << 62  # noqa: E731


def write_tree(home: str, files: dict[str, bytes], mode: int = 0o640) -> None:
    """Create ``files`` (relpath → content) under ``home`` with ``mode``."""
    for relpath, content in files.items():
        path = os.path.join(home, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)


def meta(checksum: str = "a" * 64, size: int = 1, mode: int = 0o660) -> FileMeta:
    """A FileMeta with defaults for compare tests."""
    return FileMeta(checksum=checksum, size=size, mtime_ns=0, mode=mode)


class TableTests(SynchronousTestCase):
    """The synced-items table maps paths to items."""

    def test_items(self) -> None:
        """Each synced location maps to the right item, mode and ruleset flag."""
        self.assertEqual(item_mode("etc/client.keys"), 0o640)
        self.assertEqual(item_mode("etc/authd.pass"), 0o640)
        self.assertEqual(item_mode("etc/shared/default/agent.conf"), 0o660)
        self.assertEqual(item_mode("var/multigroups/abc/merged.mg"), 0o660)
        for path in ("etc/rules/local.xml", "etc/decoders/a/b.xml", "etc/lists/audit-keys"):
            item = item_for(path)
            assert item is not None
            self.assertTrue(item.ruleset, path)
        sca = item_for("etc/sca/custom.yml")
        assert sca is not None
        self.assertFalse(sca.ruleset)
        shared = item_for("etc/shared/x")
        assert shared is not None
        self.assertEqual(shared.directory, "etc/shared")
        self.assertTrue(shared.remove_empty_subdirs)

    def test_not_synced(self) -> None:
        """Other etc files, the manager config, excluded suffixes and nested etc files are not."""
        for path in (
            "etc/wazuh-manager.conf",
            "etc/shared/wazuh-manager.conf",
            "etc/ossec.conf",
            "etc/sub/client.keys",
            "etc/shared/a.swp",
            "etc/shared/a~",
            "etc/shared/a.tmp",
            "etc/rules/x.lock",
            "etc/shared/.wcsync-0011.tmp",
            "etc/shared",
            "var/db/global.db",
            "client.keys",
        ):
            self.assertIsNone(item_for(path), path)


class PathTests(SynchronousTestCase):
    """Relative paths from the network are refused unless they are canonical synced paths."""

    def test_refused_strings(self) -> None:
        """Every escape or malformed form is refused with a reason."""
        bad: list[object] = [
            "",
            "/etc/shared/a",
            "../etc/shared/a",
            "etc/shared/../../x",
            "etc/shared/./a",
            "etc//shared/a",
            "etc/shared/a/",
            "etc/shared/a\x00b",
            "etc/shared/a\nb",
            "etc/shared/\udcff",
            "etc/shared/" + "x" * 256,
            "etc/shared/" + "/".join(["d"] * 600) + "/f",
            "etc/passwd",
            "etc/wazuh-manager.conf",
            "etc/shared/x.swp",
            b"etc/shared/a",
            None,
        ]
        for relpath in bad:
            with self.assertRaises(PathRefused, msg=repr(relpath)) as cm:
                validate_relpath(relpath)
            self.assertTrue(cm.exception.reason)

    def test_accepted(self) -> None:
        """Canonical synced paths, including non-ASCII names and spaces, are accepted."""
        for relpath in ("etc/shared/default/agent.conf", "etc/shared/grp é/a b.txt"):
            self.assertIsNotNone(validate_relpath(relpath))

    def test_symlink_parent_refused(self) -> None:
        """A symlinked directory on the way is refused, even one pointing inside the home."""
        home = self.mktemp()
        outside = self.mktemp()
        os.makedirs(os.path.join(home, "etc/shared/real"))
        os.makedirs(outside)
        os.symlink(outside, os.path.join(home, "etc/shared/evil"))
        os.symlink(os.path.join(home, "etc/shared/real"), os.path.join(home, "etc/shared/inner"))
        for relpath in ("etc/shared/evil/agent.conf", "etc/shared/inner/agent.conf"):
            with self.assertRaises(PathRefused):
                resolve(home, relpath, create_parents=True)
        self.assertEqual(os.listdir(outside), [])

    def test_symlink_item_root_refused(self) -> None:
        """A symlink in place of the synced directory itself is refused."""
        home = self.mktemp()
        outside = self.mktemp()
        os.makedirs(os.path.join(home, "etc"))
        os.makedirs(outside)
        os.symlink(outside, os.path.join(home, "etc/shared"))
        with self.assertRaises(PathRefused):
            resolve(home, "etc/shared/a", create_parents=True)

    def test_special_target_refused(self) -> None:
        """A target that is a FIFO is refused."""
        home = self.mktemp()
        os.makedirs(os.path.join(home, "etc/shared"))
        os.mkfifo(os.path.join(home, "etc/shared/pipe"))
        with self.assertRaises(PathRefused):
            resolve(home, "etc/shared/pipe")

    def test_creates_parents(self) -> None:
        """Missing parents are created as directories under the home."""
        home = self.mktemp()
        os.makedirs(home)
        target = resolve(home, "etc/shared/g/sub/agent.conf", create_parents=True)
        self.assertEqual(target, os.path.join(home, "etc/shared/g/sub/agent.conf"))
        self.assertTrue(os.path.isdir(os.path.join(home, "etc/shared/g/sub")))

    def test_file_in_the_way(self) -> None:
        """A regular file where a directory must be is refused, unless it is being deleted."""
        home = self.mktemp()
        write_tree(home, {"etc/shared/g": b"x"})
        with self.assertRaises(PathRefused):
            resolve(home, "etc/shared/g/a", create_parents=True)
        resolve(
            home, "etc/shared/g/a", create_parents=True, clear_files=frozenset({"etc/shared/g"})
        )
        self.assertTrue(os.path.isdir(os.path.join(home, "etc/shared/g")))


class ScanTests(SynchronousTestCase):
    """Scanning a home into a file table."""

    def setUp(self) -> None:
        """A home with synced, excluded and unsynced files, a symlink and a FIFO."""
        self.home = self.mktemp()
        write_tree(
            self.home,
            {
                "etc/client.keys": b"001 a any k\n",
                "etc/wazuh-manager.conf": b"<ossec_config/>",
                "etc/internal_options.conf": b"x",
                "etc/shared/default/agent.conf": b"<agent_config/>",
                "etc/shared/default/agent.conf.swp": b"junk",
                "etc/shared/g1/sub/deep.txt": b"deep",
                "etc/rules/local_rules.xml": b"<group/>",
                "var/multigroups/abc/merged.mg": b"merged",
                "etc/shared/.wcsync-1234.tmp": b"partial",
            },
        )
        os.symlink("/etc/passwd", os.path.join(self.home, "etc/shared/link"))
        os.mkfifo(os.path.join(self.home, "etc/shared/fifo"))

    def test_scan(self) -> None:
        """Exactly the synced regular files are listed, with BLAKE2b checksum, size and mode."""
        table = scan_tree(self.home, now_ns=_FUTURE)
        self.assertEqual(
            sorted(table),
            [
                "etc/client.keys",
                "etc/rules/local_rules.xml",
                "etc/shared/default/agent.conf",
                "etc/shared/g1/sub/deep.txt",
                "var/multigroups/abc/merged.mg",
            ],
        )
        m = table["etc/shared/g1/sub/deep.txt"]
        self.assertEqual(m.checksum, checksum_bytes(b"deep"))
        self.assertEqual(m.size, 4)
        self.assertEqual(m.mode, 0o640)

    def test_incremental(self) -> None:
        """A rescan re-hashes only files whose size, mtime, inode or mode changed."""
        first = ScanStats()
        t1 = scan_tree(self.home, stats=first, now_ns=_FUTURE)
        self.assertEqual((first.hashed, first.reused), (5, 0))
        hashed: list[str] = []
        real = scan_module._hash_file

        def spy(path: str) -> tuple[str, os.stat_result, bool]:
            hashed.append(os.path.relpath(path, self.home))
            return real(path)

        self.patch(scan_module, "_hash_file", spy)
        second = ScanStats()
        t2 = scan_tree(self.home, t1, stats=second, now_ns=_FUTURE)
        self.assertEqual((second.hashed, second.reused, hashed), (0, 5, []))
        self.assertEqual(t1, t2)

        write_tree(self.home, {"etc/rules/local_rules.xml": b"<group>changed</group>"})
        os.chmod(os.path.join(self.home, "etc/client.keys"), 0o600)
        t3 = scan_tree(self.home, t2, now_ns=_FUTURE)
        self.assertEqual(sorted(hashed), ["etc/client.keys", "etc/rules/local_rules.xml"])
        self.assertEqual(t3["etc/client.keys"].mode, 0o600)
        self.assertEqual(
            t3["etc/rules/local_rules.xml"].checksum, checksum_bytes(b"<group>changed</group>")
        )

    def test_racy_not_trusted(self) -> None:
        """A file modified just before the scan is re-hashed at the next scan even if unchanged."""
        t1 = scan_tree(self.home)  # files were written just now: all racy
        stats = ScanStats()
        scan_tree(self.home, t1, stats=stats)
        self.assertEqual(stats.hashed, 5)

    def test_symlinked_item_root_not_scanned(self) -> None:
        """A synced directory that is a symlink is reported and not followed."""
        elsewhere = os.path.abspath(self.mktemp())
        write_tree(elsewhere, {"local_decoder.xml": b"<decoder/>"})
        os.symlink(elsewhere, os.path.join(self.home, "etc/decoders"))
        stats = ScanStats()
        table = scan_tree(self.home, stats=stats, now_ns=_FUTURE)
        self.assertFalse(any(p.startswith("etc/decoders/") for p in table))
        self.assertEqual(stats.errors, [("etc/decoders", "is a symlink, not scanned")])

    def test_vanished_and_deleted(self) -> None:
        """A deleted file disappears from the next table."""
        t1 = scan_tree(self.home, now_ns=_FUTURE)
        os.unlink(os.path.join(self.home, "etc/client.keys"))
        t2 = scan_tree(self.home, t1, now_ns=_FUTURE)
        self.assertNotIn("etc/client.keys", t2)
        self.assertEqual(len(t2), len(t1) - 1)

    def test_unreadable_reported(self) -> None:
        """A file that cannot be read is left out of the table and reported in the stats."""
        real = scan_module._hash_file

        def refuse(path: str) -> tuple[str, os.stat_result, bool]:
            if path.endswith("client.keys"):
                raise PermissionError(13, "Permission denied")
            return real(path)

        self.patch(scan_module, "_hash_file", refuse)
        stats = ScanStats()
        table = scan_tree(self.home, stats=stats, now_ns=_FUTURE)
        self.assertNotIn("etc/client.keys", table)
        self.assertEqual(len(table), 4)
        self.assertEqual([p for p, _ in stats.errors], ["etc/client.keys"])
        self.assertIn("Permission denied", stats.errors[0][1])


class DigestTests(SynchronousTestCase):
    """The digest of a whole table."""

    def test_order_independent_and_sensitive(self) -> None:
        """Insertion order does not matter; content, path and mode do; size and mtime do not."""
        a = {"etc/shared/a": meta("1" * 64), "etc/shared/b": meta("2" * 64)}
        b = {"etc/shared/b": meta("2" * 64), "etc/shared/a": meta("1" * 64)}
        self.assertEqual(table_digest(a), table_digest(b))
        b["etc/shared/a"] = FileMeta("1" * 64, 99, 123, 0o660)
        self.assertEqual(table_digest(a), table_digest(b))
        for changed in (
            {"etc/shared/a": meta("3" * 64), "etc/shared/b": meta("2" * 64)},
            {"etc/shared/a": meta("1" * 64), "etc/shared/b": meta("2" * 64, mode=0o600)},
            {"etc/shared/c": meta("1" * 64), "etc/shared/b": meta("2" * 64)},
            {"etc/shared/a": meta("1" * 64)},
        ):
            self.assertNotEqual(table_digest(a), table_digest(changed))

    def test_master_digest_uses_table_modes(self) -> None:
        """The master's digest ignores its own file modes: an in-sync worker has the table's."""
        master = {"etc/client.keys": meta(mode=0o600), "etc/shared/a": meta(mode=0o644)}
        worker = {"etc/client.keys": meta(mode=0o640), "etc/shared/a": meta(mode=0o660)}
        self.assertEqual(master_digest(master), table_digest(worker))
        self.assertEqual(as_synced(master), worker)


class CompareTests(SynchronousTestCase):
    """Classifying master vs worker tables."""

    def test_classes(self) -> None:
        """Missing, shared (content or mode) and extra are found; equal files are left alone."""
        master = {
            "etc/shared/same": meta("1" * 64),
            "etc/shared/new": meta("2" * 64),
            "etc/shared/changed": meta("3" * 64),
            "etc/shared/chmod": meta("4" * 64, mode=0o644),
        }
        worker = {
            "etc/shared/same": meta("1" * 64),
            "etc/shared/changed": meta("9" * 64),
            "etc/shared/chmod": meta("4" * 64, mode=0o600),
            "etc/shared/old": meta("5" * 64),
            "etc/unsynced": meta("6" * 64),
        }
        plan = compare(master, worker)
        self.assertEqual(plan.missing, ("etc/shared/new",))
        self.assertEqual(plan.shared, ("etc/shared/changed", "etc/shared/chmod"))
        self.assertEqual(plan.extra, ("etc/shared/old",))
        self.assertEqual(plan.counts, (1, 2, 1))
        self.assertEqual(
            set(plan.files), {"etc/shared/new", "etc/shared/changed", "etc/shared/chmod"}
        )
        self.assertEqual(
            plan.describe(), "Files to create: 1 | Files to update: 2 | Files to delete: 1"
        )
        self.assertTrue(compare(master, as_synced(master)).is_empty)

    def test_split_budget(self) -> None:
        """A plan is cut at the budget in path order; deletions and the first file always go."""
        files = {f"etc/shared/f{i}": meta(str(i) * 64, size=100) for i in range(5)}
        plan = Plan(missing=list(files), extra=["etc/shared/gone"], files=files)
        split = split_plan(plan, 250)
        self.assertEqual(split.now.missing, ("etc/shared/f0", "etc/shared/f1"))
        self.assertEqual(split.now.extra, ("etc/shared/gone",))
        self.assertEqual(
            split.deferred.missing, ("etc/shared/f2", "etc/shared/f3", "etc/shared/f4")
        )
        self.assertEqual(split.deferred_bytes, 300)
        tiny = split_plan(plan, 10)
        self.assertEqual(tiny.now.missing, ("etc/shared/f0",))
        capped = split_plan(plan, 10_000, max_files=3)
        self.assertEqual(len(capped.now.missing), 3)
        whole = split_plan(plan, 10_000)
        self.assertTrue(whole.deferred.is_empty)
        self.assertEqual(whole.now, plan)

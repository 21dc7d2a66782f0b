"""Tests for packing, unpacking and applying an integrity sync, end to end on temporary trees."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.test_integrity import write_tree
from wazuhcluster.integrity import apply as apply_module
from wazuhcluster.integrity import pack as pack_module
from wazuhcluster.integrity import records as records_module
from wazuhcluster.integrity import staging as staging_module
from wazuhcluster.integrity import unpack as unpack_module
from wazuhcluster.integrity.apply import ApplyResult, apply_plan, cleanup_temp_files
from wazuhcluster.integrity.compare import Plan, compare, split_plan
from wazuhcluster.integrity.pack import iter_pack, packed_size
from wazuhcluster.integrity.paths import PathRefused, validate_relpath
from wazuhcluster.integrity.records import MAX_BLOCK_LINE, MAX_LINE, PackError
from wazuhcluster.integrity.scan import (
    FileMeta,
    checksum_bytes,
    master_digest,
    scan_tree,
    table_digest,
)
from wazuhcluster.integrity.staging import Staged
from wazuhcluster.integrity.table import TEMP_PREFIX
from wazuhcluster.integrity.table_codec import decode_table, encode_table
from wazuhcluster.integrity.unpack import Received, Unpacker

_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def not_staged(staged: Staged) -> list[str]:
    """The paths of a stream that were not staged: rejected, or left for the next cycle."""
    return sorted(set(staged.rejected) | staged.resend)


def read_tree(home: str) -> dict[str, tuple[bytes, int]]:
    """Every regular file under ``home`` → (content, mode)."""
    out = {}
    for root, _dirs, files in os.walk(home):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as f:
                out[os.path.relpath(path, home)] = (f.read(), stat.S_IMODE(os.lstat(path).st_mode))
    return out


def receive(worker: str, stream: bytes, piece: int = 1000) -> Received:
    """Feed ``stream`` to an Unpacker in pieces of ``piece`` bytes and finish it."""
    unpacker = Unpacker(worker)
    for i in range(0, len(stream), piece):
        unpacker.feed(stream[i : i + piece])
    return unpacker.finish()


def refuse_rmtree(path: str, *args: object, **kwargs: object) -> None:
    """A ``shutil.rmtree`` that is never allowed to remove anything."""
    raise PermissionError(errno.EACCES, "Permission denied", path)


def sync_once(master: str, worker: str, budget: int | None = None) -> tuple[Plan, ApplyResult]:
    """One full cycle: scan both, compare, (split), pack, unpack, apply. Returns (plan, result)."""
    plan = compare(scan_tree(master), scan_tree(worker))
    if budget is not None:
        plan = split_plan(plan, budget).now
    stream = b"".join(iter_pack(master, plan, chunk_size=777))
    assert len(stream) == packed_size(plan)
    received = receive(worker, stream)
    return received.plan, apply_plan(worker, received.plan, received.staged)


def assert_staged_for(
    test: SynchronousTestCase, staged: Staged, home: str, path: str, tmp: str
) -> None:
    """``tmp`` is where the unpacker may stage ``path``: a temp file next to its target, or the
    file under its own name inside the temp directory of a new directory being staged whole."""
    for reldir, temp_dir in staged.new_dirs.items():
        if path.startswith(reldir + "/"):
            test.assertEqual(tmp, temp_dir + path[len(reldir) :])
            test.assertTrue(os.path.basename(temp_dir).startswith(TEMP_PREFIX))
            return
    test.assertEqual(os.path.dirname(tmp), os.path.dirname(os.path.join(home, path)))
    test.assertTrue(os.path.basename(tmp).startswith(TEMP_PREFIX))


def pack_bytes(header: Mapping[str, object], *records: Mapping[str, object] | bytes) -> bytes:
    """Build a hand-made sync stream."""
    out = [json.dumps(header).encode() + b"\n"]
    for rec in records:
        out.append(rec if isinstance(rec, bytes) else json.dumps(rec).encode() + b"\n")
    return b"".join(out)


def header(create: int = 0, update: int = 0, delete: int = 0, size: int = 0) -> dict[str, object]:
    """A sync stream header."""
    return {
        "v": records_module.SYNC_VERSION,
        "type": "sync",
        "create": create,
        "update": update,
        "delete": delete,
        "bytes": size,
    }


class TableCodecTests(SynchronousTestCase):
    """Serializing a file table."""

    def test_round_trip(self) -> None:
        """A table survives encode/decode (cache keys excluded)."""
        table = {
            "etc/shared/a b/é.conf": FileMeta(checksum_bytes(b"x"), 1, 5, 0o660, 77),
            "etc/client.keys": FileMeta(checksum_bytes(b""), 0, 9, 0o640, 78),
        }
        decoded = decode_table(encode_table(table))
        self.assertEqual(
            {p: (m.checksum, m.size, m.mode) for p, m in decoded.items()},
            {p: (m.checksum, m.size, m.mode) for p, m in table.items()},
        )
        self.assertEqual(decoded["etc/client.keys"].inode, 0)
        self.assertEqual(table_digest(decoded), table_digest(table))

    def test_refused(self) -> None:
        """Malformed tables are refused with a PackError."""
        good = json.dumps({"p": "etc/shared/a", "c": "a" * 64, "s": 1, "m": 0o660})
        head = json.dumps({"v": 1, "type": "table", "count": 1})
        cases = [
            b"",
            (head + "\n" + good).encode(),  # no final newline
            f"{head}\n{good}\n{good}\n".encode(),  # count mismatch
            f"{json.dumps({'v': 1, 'type': 'table', 'count': 2})}\n{good}\n{good}\n".encode(),
            f"{head}\n{good.replace('etc/shared/a', '../etc/shared/a')}\n".encode(),
            f"{head}\n{good.replace('etc/shared/a', 'etc/passwd')}\n".encode(),
            f"{head}\n{good.replace('a' * 64, 'A' * 64)}\n".encode(),
            f"{head}\n{good.replace('1,', '-1,')}\n".encode(),
            f"{head}\n{good.replace('432', '99999')}\n".encode(),
            f"{head}\n[1, 2]\n".encode(),
            f"{head}\n{{not json\n".encode(),
            f'{head}\n{{"p": "etc/shared/{"x" * MAX_LINE}"}}\n'.encode(),
            b'{"v": 2, "type": "table", "count": 0}\n',
        ]
        for data in cases:
            with self.assertRaises(PackError, msg=repr(data[:200])):
                decode_table(data)
        with self.assertRaises(PackError):
            decode_table(f"{head}\n{good}\n".encode(), max_entries=0)


class PackTests(SynchronousTestCase):
    """Producing and consuming the sync stream."""

    def setUp(self) -> None:
        """A master with a few files (one larger than a chunk and than a block's file) and an
        empty worker."""
        self.master = self.mktemp()
        self.worker = self.mktemp()
        os.makedirs(self.worker)
        self.big = os.urandom(records_module.SMALL_FILE + 1)
        write_tree(
            self.master,
            {
                "etc/client.keys": b"001 a any k\n",
                "etc/shared/default/agent.conf": b"<agent_config/>",
                "etc/shared/empty": b"",
                "etc/lists/big": self.big,
            },
        )
        self.plan = compare(scan_tree(self.master), {})

    def test_chunks_bounded(self) -> None:
        """Pieces never exceed the chunk size and add up to the announced size."""
        pieces = list(iter_pack(self.master, self.plan, chunk_size=4096))
        self.assertTrue(all(0 < len(p) <= 4096 for p in pieces))
        self.assertEqual(sum(map(len, pieces)), packed_size(self.plan))

    @given(piece=st.integers(min_value=1, max_value=70_000))
    @_SETTINGS
    def test_unpack_any_piece_size(self, piece: int) -> None:
        """Whatever the piece size, every file is staged in its target dir with the table's mode."""
        worker = self.mktemp()
        os.makedirs(worker)
        received = receive(worker, b"".join(iter_pack(self.master, self.plan)), piece)
        self.assertEqual(received.header.create, 4)
        self.assertEqual(received.staged.rejected, {})
        for rel, tmp in received.staged.files.items():
            assert_staged_for(self, received.staged, worker, rel, tmp)
            with open(tmp, "rb") as f:
                self.assertEqual(checksum_bytes(f.read()), self.plan.files[rel].checksum)
            expected = 0o640 if rel == "etc/client.keys" else 0o660
            self.assertEqual(stat.S_IMODE(os.stat(tmp).st_mode), expected)

    def test_truncated_stream(self) -> None:
        """A stream cut short is refused at finish and leaves no temp file behind."""
        stream = b"".join(iter_pack(self.master, self.plan))
        unpacker = Unpacker(self.worker)
        unpacker.feed(stream[: len(stream) // 2])
        with self.assertRaises(PackError):
            unpacker.finish()
        self.assertEqual(read_tree(self.worker), {})

    def test_changed_while_sent(self) -> None:
        """A file changed on the master after the scan is left out alone, for the next cycle
        to send again (not rejected: it is no failure); framing holds."""
        with open(os.path.join(self.master, "etc/lists/big"), "wb") as f:
            f.write(b"short now")
        received = receive(self.worker, b"".join(iter_pack(self.master, self.plan)))
        self.assertEqual(not_staged(received.staged), ["etc/lists/big"])
        self.assertEqual(received.staged.resend, {"etc/lists/big"})
        self.assertEqual(len(received.staged.files), 3)
        os.unlink(os.path.join(self.master, "etc/client.keys"))
        other = self.mktemp()
        os.makedirs(other)
        received = receive(other, b"".join(iter_pack(self.master, self.plan)))
        self.assertEqual(not_staged(received.staged), ["etc/client.keys", "etc/lists/big"])
        self.assertEqual(received.staged.rejected, {})
        result = apply_plan(other, received.plan, received.staged)
        self.assertEqual(dict(result.failed), {})
        self.assertEqual(result.resend, ("etc/client.keys", "etc/lists/big"))

    def test_caps(self) -> None:
        """Streams over the caps or inconsistent with their header are refused."""
        data = os.urandom(10)
        rec = {"t": "f", "k": "c", "p": "etc/shared/a", "s": 10, "c": checksum_bytes(data)}
        cases = {
            "too big total": (Unpacker(self.worker, max_total_bytes=5), header(1, size=10)),
            "too big file": (Unpacker(self.worker, max_file_size=5), header(1, size=10)),
            "too many files": (Unpacker(self.worker, max_files=0), header(1, size=10)),
        }
        for name, (unpacker, head) in cases.items():
            with self.assertRaises(PackError, msg=name):
                unpacker.feed(pack_bytes(head, rec, data, {"t": "end"}))
        bad_streams = {
            "more bytes than announced": pack_bytes(header(1, size=5), rec, data),
            "more files than announced": pack_bytes(header(0, 1, size=10), rec),
            "fewer at end": pack_bytes(header(2, size=20), rec, data, {"t": "end"}),
            "bad kind": pack_bytes(header(1, size=10), {**rec, "k": "x"}),
            "unknown record": pack_bytes(header(), {"t": "zzz"}),
            "after end": pack_bytes(header(), {"t": "end"}, b"x"),
            "duplicate": pack_bytes(header(0, 0, 2), *[{"t": "d", "p": "etc/shared/a"}] * 2),
            "delete after file": pack_bytes(
                header(1, 0, 1, size=10), rec, data, {"t": "d", "p": "etc/shared/b"}
            ),
            "bad header": pack_bytes({"v": 1, "type": "table"}),
            "long line": b"x" * (MAX_BLOCK_LINE + 1),
            "long record": pack_bytes(header(0, 0, 1), {"t": "d", "p": "a" * MAX_LINE}),
        }
        for name, stream in bad_streams.items():
            with self.assertRaises(PackError, msg=name):
                Unpacker(self.worker).feed(stream)
        self.assertEqual(read_tree(self.worker), {})

    def test_escapes_refused_before_writing(self) -> None:
        """No path escape in a record writes a byte anywhere, even inside the home."""
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        os.makedirs(os.path.join(self.worker, "etc/shared"))
        os.symlink(outside, os.path.join(self.worker, "etc/shared/link"))
        data = b"pwned"
        escapes = [
            "../x/etc/shared/a",
            "etc/shared/../../../x",
            os.path.join(outside, "a"),
            "/etc/shared/a",
            "etc/shared/a\x00b",
            "etc/wazuh-manager.conf",
            "etc/ossec.conf",
            "var/db/global.db",
            "etc/shared/x.swp",
            "etc/shared/" + "d/" * 600 + "f",
        ]
        for path in escapes:
            rec = {"t": "f", "k": "c", "p": path, "s": 5, "c": checksum_bytes(data)}
            with self.assertRaises(PackError, msg=path):
                Unpacker(self.worker).feed(pack_bytes(header(1, size=5), rec, data))
        # A valid name behind a planted symlink: refused for that file only.
        rec = {"t": "f", "k": "c", "p": "etc/shared/link/a", "s": 5, "c": checksum_bytes(data)}
        got = receive(self.worker, pack_bytes(header(1, size=5), rec, data, {"t": "end"}))
        self.assertIn("symlink", got.staged.rejected["etc/shared/link/a"])
        self.assertEqual(got.staged.files, {})
        result = apply_plan(self.worker, got.plan, got.staged)
        self.assertEqual(result.created, ())
        self.assertEqual(os.listdir(outside), [])
        self.assertEqual(read_tree(self.worker), {})
        # And deletions through the symlink are refused too.
        with open(os.path.join(outside, "victim"), "wb") as f:
            f.write(b"keep")
        plan = Plan(extra=["etc/shared/link/victim"])
        result = apply_plan(
            self.worker, plan, receive(self.worker, b"".join(iter_pack("", plan))).staged
        )
        self.assertIn("etc/shared/link/victim", result.failed)
        self.assertEqual(os.listdir(outside), ["victim"])


class ApplyTests(SynchronousTestCase):
    """Applying a received plan on a worker."""

    def setUp(self) -> None:
        """A master and a worker that differ in every way."""
        self.master = self.mktemp()
        self.worker = self.mktemp()
        write_tree(
            self.master,
            {
                "etc/client.keys": b"keys",
                "etc/shared/g1/agent.conf": b"new g1",
                "etc/shared/same": b"same",
                "etc/rules/local.xml": b"<rules v2/>",
                "etc/shared/was_dir": b"now a file",
                "etc/rules/was_file/inner.xml": b"<inner/>",
            },
        )
        write_tree(
            self.worker,
            {
                "etc/client.keys": b"old keys",
                "etc/shared/same": b"same",
                "etc/shared/old/deep/x": b"gone",
                "etc/rules/local.xml": b"<rules v1/>",
                "etc/rules/old/y.xml": b"gone",
                "etc/shared/was_dir/a/b": b"gone",
                "etc/rules/was_file": b"file",
                "etc/wazuh-manager.conf": b"local",
                "etc/shared/keep.swp": b"editor",
            },
            mode=0o600,
        )
        os.chmod(os.path.join(self.worker, "etc/shared/same"), 0o660)

    def test_apply(self) -> None:
        """The worker ends equal to the master; classes, modes and empty-dir removal are right."""
        plan, result = sync_once(self.master, self.worker)
        self.assertEqual(plan.counts, (3, 2, 4))
        self.assertEqual(
            result.created,
            ("etc/rules/was_file/inner.xml", "etc/shared/g1/agent.conf", "etc/shared/was_dir"),
        )
        self.assertEqual(result.updated, ("etc/client.keys", "etc/rules/local.xml"))
        self.assertEqual(len(result.deleted), 4)
        self.assertEqual(result.failed, {})
        self.assertTrue(result.ruleset_changed)
        self.assertIn("etc/shared/old", result.removed_dirs)
        self.assertIn("etc/shared/old/deep", result.removed_dirs)
        # etc/rules does not remove emptied subdirectories, like Wazuh.
        self.assertTrue(os.path.isdir(os.path.join(self.worker, "etc/rules/old")))
        tree = read_tree(self.worker)
        self.assertEqual(tree["etc/client.keys"], (b"keys", 0o640))
        self.assertEqual(tree["etc/shared/g1/agent.conf"], (b"new g1", 0o660))
        self.assertEqual(tree["etc/wazuh-manager.conf"], (b"local", 0o600))
        self.assertEqual(tree["etc/shared/keep.swp"], (b"editor", 0o600))
        self.assertEqual(
            master_digest(scan_tree(self.master)), table_digest(scan_tree(self.worker))
        )
        self.assertFalse(any(TEMP_PREFIX in p for p in tree))
        again, result2 = sync_once(self.master, self.worker)
        self.assertTrue(again.is_empty)
        self.assertFalse(result2.changed)

    def test_parent_swapped_for_symlink_before_apply(self) -> None:
        """A parent directory replaced by a symlink between the unpack and the apply is refused
        for every file below it, although apply walks each parent only once."""
        master, worker = self.mktemp(), self.mktemp()
        write_tree(master, {f"etc/shared/g1/f{i}": b"%d" % i for i in range(3)})
        write_tree(master, {"etc/shared/g2/ok": b"ok"})
        os.makedirs(os.path.join(worker, "etc"))
        plan = compare(scan_tree(master), scan_tree(worker))
        received = receive(worker, b"".join(iter_pack(master, plan)))
        g1 = os.path.join(worker, "etc/shared/g1")
        os.rename(g1, g1 + ".moved")
        os.symlink(os.path.abspath(g1 + ".moved"), g1)
        result = apply_plan(worker, received.plan, received.staged)
        self.assertEqual(result.created, ("etc/shared/g2/ok",))
        self.assertEqual(sorted(result.failed), [f"etc/shared/g1/f{i}" for i in range(3)])
        self.assertTrue(all("symlink" in why for why in result.failed.values()), result.failed)
        self.assertEqual(os.listdir(g1 + ".moved"), [])

    def test_special_file_at_target_replaced(self) -> None:
        """A FIFO or a symlink planted at a synced path on the worker is replaced by the
        master's regular file (the rename replaces the entry, never writes through it), and a
        directory holding a file there is refused."""
        master, worker = self.mktemp(), self.mktemp()
        outside = os.path.abspath(self.mktemp())
        write_tree(outside, {"victim": b"keep"})
        names = ["etc/shared/g1/fifo", "etc/shared/g1/link", "etc/shared/g1/dir"]
        write_tree(master, {name: b"master" for name in names})
        os.makedirs(worker)
        plan = compare(scan_tree(master), {})
        received = receive(worker, b"".join(iter_pack(master, plan)))
        os.mkfifo(os.path.join(worker, "etc/shared/g1/fifo"))
        os.symlink(os.path.join(outside, "victim"), os.path.join(worker, "etc/shared/g1/link"))
        write_tree(worker, {"etc/shared/g1/dir/inside": b"worker"})
        result = apply_plan(worker, received.plan, received.staged)
        self.assertEqual(result.created, ("etc/shared/g1/fifo", "etc/shared/g1/link"))
        self.assertIn("holds files", result.failed["etc/shared/g1/dir"])
        tree = read_tree(worker)
        self.assertEqual(tree["etc/shared/g1/fifo"], (b"master", 0o660))
        self.assertEqual(tree["etc/shared/g1/link"], (b"master", 0o660))
        self.assertEqual(read_tree(outside)["victim"][0], b"keep")
        self.assertFalse(any(TEMP_PREFIX in path for path in tree))

    def test_ruleset_flag(self) -> None:
        """A sync touching only shared files does not fire the ruleset flag."""
        sync_once(self.master, self.worker)
        write_tree(self.master, {"etc/shared/g1/agent.conf": b"v3"})
        _, result = sync_once(self.master, self.worker)
        self.assertEqual(result.updated, ("etc/shared/g1/agent.conf",))
        self.assertFalse(result.ruleset_changed)
        os.unlink(os.path.join(self.master, "etc/rules/local.xml"))
        _, result = sync_once(self.master, self.worker)
        self.assertEqual(result.deleted, ("etc/rules/local.xml",))
        self.assertTrue(result.ruleset_changed)

    def test_interrupted_apply(self) -> None:
        """A crash between renames leaves each file old or new; cleanup and a new cycle finish."""
        old = read_tree(self.worker)
        new = read_tree(self.master)
        plan = compare(scan_tree(self.master), scan_tree(self.worker))
        received = receive(self.worker, b"".join(iter_pack(self.master, plan)))
        calls: list[str] = []
        real = os.replace

        def crash_after_one(src: str, dst: str, **dir_fds: int) -> None:
            if calls:
                raise SystemExit("simulated crash")
            calls.append(dst)
            real(src, dst, **dir_fds)

        self.patch(apply_module, "_replace", crash_after_one)
        with self.assertRaises(SystemExit):
            apply_plan(self.worker, received.plan, received.staged)
        after = read_tree(self.worker)
        for rel, (content, _mode) in after.items():
            if os.path.basename(rel).startswith(TEMP_PREFIX):
                continue
            self.assertIn(content, {old.get(rel, (None,))[0], new.get(rel, (None,))[0]}, rel)
        self.assertTrue(any(os.path.basename(p).startswith(TEMP_PREFIX) for p in after))
        removed = cleanup_temp_files(self.worker)
        self.assertTrue(removed)
        self.assertFalse(any(TEMP_PREFIX in p for p in read_tree(self.worker)))
        self.patch(apply_module, "_replace", real)
        sync_once(self.master, self.worker)
        self.assertEqual(
            master_digest(scan_tree(self.master)), table_digest(scan_tree(self.worker))
        )

    def test_many_files_use_one_sync(self) -> None:
        """Above the threshold, one sync() replaces per-file fsyncs; the result is the same."""
        calls: list[str] = []
        self.patch(apply_module, "SYNC_ALL_THRESHOLD", 2)
        self.patch(apply_module.os, "sync", lambda: calls.append("sync"))
        real_fsync = apply_module._fsync_path

        def fsync_spy(path: str, flags: int = os.O_RDONLY) -> None:
            calls.append("dir" if flags != os.O_RDONLY else "file")
            real_fsync(path, flags)

        self.patch(apply_module, "_fsync_path", fsync_spy)
        _, result = sync_once(self.master, self.worker)
        self.assertEqual(len(result.created) + len(result.updated), 5)
        self.assertEqual(calls.count("sync"), 1)
        self.assertEqual(calls.count("file"), 0)
        self.assertGreater(calls.count("dir"), 0)
        self.assertEqual(
            master_digest(scan_tree(self.master)), table_digest(scan_tree(self.worker))
        )

    def test_cleanup_only_our_temp_files(self) -> None:
        """Cleanup removes prefixed temp files in synced dirs only, never through symlinks."""
        outside = os.path.abspath(self.mktemp())
        write_tree(outside, {f"{TEMP_PREFIX}x.tmp": b"not ours"})
        write_tree(
            self.worker,
            {
                f"etc/shared/g/{TEMP_PREFIX}a.tmp": b"",
                f"etc/{TEMP_PREFIX}b.tmp": b"",
                f"var/db/{TEMP_PREFIX}c.tmp": b"",
                "etc/shared/g/other.tmp": b"",
            },
        )
        os.symlink(outside, os.path.join(self.worker, "etc/shared/link"))
        removed = cleanup_temp_files(self.worker)
        self.assertEqual(
            sorted(removed), sorted([f"etc/shared/g/{TEMP_PREFIX}a.tmp", f"etc/{TEMP_PREFIX}b.tmp"])
        )
        self.assertTrue(os.path.exists(os.path.join(self.worker, f"var/db/{TEMP_PREFIX}c.tmp")))
        self.assertTrue(os.path.exists(os.path.join(self.worker, "etc/shared/g/other.tmp")))
        self.assertEqual(os.listdir(outside), [f"{TEMP_PREFIX}x.tmp"])

    def test_budget_spreads_over_cycles(self) -> None:
        """With a small byte budget the sync converges over several cycles, deletions first."""
        write_tree(self.master, {f"etc/shared/many/f{i:02}": bytes(100) for i in range(10)})
        cycles = 0
        while True:
            plan, result = sync_once(self.master, self.worker, budget=350)
            if plan.is_empty:
                break
            cycles += 1
            self.assertLessEqual(plan.transfer_bytes, 350)
            self.assertEqual(len(result.created) + len(result.updated), len(plan.files))
            self.assertLess(cycles, 20)
        self.assertGreaterEqual(cycles, 4)
        self.assertEqual(
            master_digest(scan_tree(self.master)), table_digest(scan_tree(self.worker))
        )


_NAMES = st.sampled_from(["a", "b", "g1", "x y", "é"])
_ROOTS = st.sampled_from(["etc/shared", "var/multigroups", "etc/rules", "etc/lists", "etc/sca"])
_RELPATHS = st.one_of(
    st.sampled_from(["etc/client.keys", "etc/authd.pass"]),
    st.builds(
        lambda root, dirs, name: "/".join([root, *dirs, name]),
        _ROOTS,
        st.lists(_NAMES, max_size=2),
        _NAMES,
    ),
)
_TREES = st.dictionaries(_RELPATHS, st.binary(max_size=300), max_size=8)


def _consistent(tree: dict[str, bytes]) -> dict[str, bytes]:
    """Drop paths that would need a file and a directory of the same name in one tree."""
    return {p: c for p, c in tree.items() if not any(q.startswith(p + "/") for q in tree)}


class PropertyTests(SynchronousTestCase):
    """Random trees converge."""

    @given(master=_TREES, worker=_TREES, modes=st.sampled_from([0o600, 0o644, 0o660]))
    @_SETTINGS
    def test_worker_equals_master(
        self, master: dict[str, bytes], worker: dict[str, bytes], modes: int
    ) -> None:
        """After one sync the worker's synced tree equals the master's, contents and modes."""
        master_home, worker_home = self.mktemp(), self.mktemp()
        os.makedirs(master_home)
        os.makedirs(worker_home)
        write_tree(master_home, _consistent(master))
        write_tree(worker_home, _consistent(worker), mode=modes)
        _, result = sync_once(master_home, worker_home)
        self.assertEqual(result.failed, {})
        master_table = scan_tree(master_home)
        worker_table = scan_tree(worker_home)
        self.assertEqual(master_digest(master_table), table_digest(worker_table))
        self.assertTrue(compare(master_table, worker_table).is_empty)
        self.assertEqual(
            {p: c for p, (c, _m) in read_tree(worker_home).items()}, _consistent(master)
        )


class InlineExecutor(Executor):
    """Runs each submitted call at once and records it (a deterministic stand-in for the
    unpacker's syncer thread)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` now; return its result (or exception) as a done Future."""
        self.calls.append((fn, args))
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:
            future.set_exception(e)
        return future


class BlockWriteTests(SynchronousTestCase):
    """How an Unpacker writes the blocks of a real stream, and asks its syncer for early
    syncs."""

    def setUp(self) -> None:
        """A master with 300 small files in 3 folders and one file too big for a block; every
        call of write_block is recorded."""
        self.master, self.worker = self.mktemp(), self.mktemp()
        os.makedirs(self.worker)
        files = {f"etc/shared/g{i % 3}/f{i:03}": os.urandom(1000 + i) for i in range(300)}
        files["etc/lists/big"] = os.urandom(records_module.SMALL_FILE + 1)
        write_tree(self.master, files)
        self.plan = compare(scan_tree(self.master), {})
        self.stream = b"".join(iter_pack(self.master, self.plan))
        self.blocks: list[tuple[str, list[Any], list[memoryview]]] = []
        real = unpack_module.write_block

        def recording(directory: str, files: list[Any], pieces: list[memoryview]) -> Any:
            self.blocks.append((directory, files, pieces))
            return real(directory, files, pieces)

        self.patch(unpack_module, "write_block", recording)

    def unpack(self, stream: bytes | None = None, syncer: Executor | None = None) -> Received:
        """Feed the stream (default: the whole plan) in 60 KiB pieces and finish."""
        unpacker = Unpacker(self.worker, syncer=syncer)
        data = self.stream if stream is None else stream
        for i in range(0, len(data), 61440):
            unpacker.feed(data[i : i + 61440])
        return unpacker.finish()

    def test_small_files_in_blocks(self) -> None:
        """Every small file is written once, in a bounded block whose files share one
        directory, with the table's mode; the big one is written as it arrives; applying
        gives the master's tree."""
        received = self.unpack()
        written = [path for _, files, _ in self.blocks for path, *_ in files]
        self.assertEqual(sorted(written), sorted(p for p in self.plan.files if "big" not in p))
        for directory, files, data in self.blocks:
            self.assertTrue(0 < len(files) <= records_module.BLOCK_FILES)
            self.assertLessEqual(sum(len(piece) for piece in data), records_module.BLOCK_BYTES)
            for path, name, *_ in files:
                assert_staged_for(self, received.staged, self.worker, path, f"{directory}/{name}")
        self.assertEqual(received.staged.rejected, {})
        self.assertEqual(len(received.staged.files), 301)
        apply_plan(self.worker, received.plan, received.staged)
        self.assertEqual(
            master_digest(scan_tree(self.master)), table_digest(scan_tree(self.worker))
        )
        self.assertEqual(
            stat.S_IMODE(os.stat(os.path.join(self.worker, "etc/shared/g0/f000")).st_mode), 0o660
        )

    def test_changed_file_never_written(self) -> None:
        """A small file whose content changed on the master since its scan is marked stale by
        the master: the worker never writes it and leaves it to the next cycle, without
        counting it as a failure."""
        with open(os.path.join(self.master, "etc/shared/g1/f001"), "wb") as f:
            f.write(b"x" * 1001)
        received = self.unpack(b"".join(iter_pack(self.master, self.plan)))
        self.assertEqual(received.staged.resend, {"etc/shared/g1/f001"})
        self.assertEqual(received.staged.rejected, {})
        result = apply_plan(self.worker, received.plan, received.staged)
        self.assertEqual(result.resend, ("etc/shared/g1/f001",))
        self.assertEqual(dict(result.failed), {})
        written = [p for _, files, _ in self.blocks for p, *_ in files]
        self.assertNotIn("etc/shared/g1/f001", written)

    def test_early_sync(self) -> None:
        """The syncer is asked for a sync() once EARLY_SYNC_BYTES were written since the last
        one (blocks and large files alike), never while one is still running."""
        self.patch(unpack_module, "EARLY_SYNC_BYTES", 100_000)
        self.patch(unpack_module.os, "sync", lambda: None)
        syncer = InlineExecutor()
        self.unpack(syncer=syncer)
        expected, since = 0, 0
        sizes = [self.plan.files["etc/lists/big"].size]  # the first in the stream
        sizes += [sum(len(piece) for piece in data) for _, _, data in self.blocks]
        for size in sizes:
            since += size
            if since >= 100_000:
                expected, since = expected + 1, 0
        self.assertGreater(expected, 1)
        self.assertEqual([fn for fn, _ in syncer.calls], [unpack_module.os.sync] * expected)

        class Busy(InlineExecutor):
            """A syncer whose sync never ends."""

            def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
                self.calls.append((fn, args))
                return Future()

        busy = Busy()
        os.makedirs(self.worker + "2")
        Unpacker(self.worker + "2", syncer=busy).feed(self.stream)
        self.assertEqual(len(busy.calls), 1)

    def test_abort_removes_what_was_written(self) -> None:
        """A stream cut short leaves no temp file, including those of finished blocks."""
        unpacker = Unpacker(self.worker)
        unpacker.feed(self.stream[: len(self.stream) * 3 // 4])
        self.assertTrue(unpacker.staged.files)  # some blocks were written already
        with self.assertRaises(PackError):
            unpacker.finish()
        self.assertEqual(read_tree(self.worker), {})

    def test_real_syncer_thread(self) -> None:
        """With a real syncer thread (early syncs running beside the writes) the worker ends
        equal to the master."""
        self.patch(unpack_module, "EARLY_SYNC_BYTES", 50_000)
        with ThreadPoolExecutor(1) as syncer:
            received = self.unpack(syncer=syncer)
        self.assertEqual(len(received.staged.files), len(self.plan.files))
        apply_plan(self.worker, received.plan, received.staged)
        self.assertEqual(
            master_digest(scan_tree(self.master)), table_digest(scan_tree(self.worker))
        )


class NewDirectoryTests(SynchronousTestCase):
    """A directory the worker does not have yet is staged whole and renamed into place once."""

    def setUp(self) -> None:
        """A master with two new groups (one with a subfolder and a large file) and a worker
        that has only the shared folder."""
        self.master, self.worker = self.mktemp(), self.mktemp()
        self.files = {
            "etc/shared/new1/agent.conf": b"one",
            "etc/shared/new1/sub/deep.conf": b"deep",
            "etc/shared/new1/large": os.urandom(records_module.SMALL_FILE + 10),
            "etc/shared/new2/agent.conf": b"two",
            "etc/shared/old/agent.conf": b"old group, new file",
        }
        write_tree(self.master, self.files)
        write_tree(self.worker, {"etc/shared/old/keep": b"worker's"})
        os.unlink(os.path.join(self.worker, "etc/shared/old/keep"))
        self.plan = compare(scan_tree(self.master), scan_tree(self.worker))
        self.received = receive(self.worker, b"".join(iter_pack(self.master, self.plan)))

    def test_staged_then_renamed_whole(self) -> None:
        """Nothing appears under the new names before the apply; the apply renames each new
        directory once (no rename per file in it) and the worker ends equal to the master."""
        staged = self.received.staged
        self.assertEqual(sorted(staged.new_dirs), ["etc/shared/new1", "etc/shared/new2"])
        self.assertFalse(os.path.exists(os.path.join(self.worker, "etc/shared/new1")))
        renames: list[str] = []
        real = apply_module._replace

        def counting(src: str, dst: str, **dir_fds: int) -> None:
            renames.append(dst)
            real(src, dst, **dir_fds)

        self.patch(apply_module, "_replace", counting)
        result = apply_plan(self.worker, self.received.plan, staged)
        self.assertEqual(renames, ["agent.conf"])  # only the file in the existing folder
        self.assertEqual(result.created, tuple(sorted(self.files)))
        self.assertEqual(result.failed, {})
        tree = read_tree(self.worker)
        self.assertEqual({p: c for p, (c, _) in tree.items()}, self.files)
        self.assertTrue(all(mode == 0o660 for _, mode in tree.values()))
        self.assertFalse(any(TEMP_PREFIX in p for p in tree))
        self.assertEqual(staged.new_dirs, {})

    def test_directory_taken_meanwhile(self) -> None:
        """If something took the new directory's name before the apply, its files fail (the
        next cycle brings them), the temp directory goes, and nothing is overwritten."""
        write_tree(self.worker, {"etc/shared/new2/local": b"appeared"})
        result = apply_plan(self.worker, self.received.plan, self.received.staged)
        self.assertIn("cannot place new directory", result.failed["etc/shared/new2/agent.conf"])
        self.assertIn("etc/shared/new1/sub/deep.conf", result.created)
        tree = read_tree(self.worker)
        self.assertEqual(tree["etc/shared/new2/local"][0], b"appeared")
        self.assertNotIn("etc/shared/new2/agent.conf", tree)
        self.assertEqual(
            [
                n
                for n in os.listdir(os.path.join(self.worker, "etc/shared"))
                if n.startswith(TEMP_PREFIX)
            ],
            [],
        )

    def test_abort_and_crash_leave_nothing(self) -> None:
        """An aborted unpack removes its temp directories; after a crash, the start-up cleanup
        does; the worker's scan never lists what is inside one."""
        self.received.staged.discard()
        self.assertEqual([p for p in read_tree(self.worker) if TEMP_PREFIX in p], [])
        again = receive(self.worker, b"".join(iter_pack(self.master, self.plan)))
        inside = again.staged.files["etc/shared/new1/sub/deep.conf"]
        self.assertTrue(os.path.exists(inside))
        self.assertNotIn("etc/shared/new1/sub/deep.conf", scan_tree(self.worker))
        self.assertFalse(any(TEMP_PREFIX in p for p in scan_tree(self.worker)))
        removed = cleanup_temp_files(self.worker)
        self.assertEqual(len([p for p in removed if p.endswith(".dir")]), 2)
        self.assertFalse(any(TEMP_PREFIX in p for p in read_tree(self.worker)))

    def test_unremovable_temp_dirs_noted(self) -> None:
        """A temp directory that cannot be removed is not lost silently: the discard notes it,
        and why, in ``staged.unremoved`` for the caller to report; one already gone is no
        failure."""
        gone = os.path.join(self.worker, "gone")
        self.assertIsNone(staging_module.remove_temp_tree(gone))
        self.patch(staging_module.shutil, "rmtree", refuse_rmtree)
        self.assertIn("Permission denied", staging_module.remove_temp_tree(gone) or "")
        staged = self.received.staged
        temp_dirs = sorted(staged.new_dirs.values())
        staged.discard()
        self.assertEqual(staged.new_dirs, {})
        self.assertEqual(sorted(staged.unremoved), temp_dirs)
        self.assertTrue(all("Permission denied" in why for why in staged.unremoved.values()))

    def test_unplaced_temp_dir_noted_by_apply(self) -> None:
        """A new directory that cannot be placed and whose temp directory cannot be removed
        either is noted in ``staged.unremoved``; the others are placed."""
        write_tree(self.worker, {"etc/shared/new2/local": b"appeared"})
        new2 = self.received.staged.new_dirs["etc/shared/new2"]
        self.patch(staging_module.shutil, "rmtree", refuse_rmtree)
        result = apply_plan(self.worker, self.received.plan, self.received.staged)
        self.assertIn("cannot place new directory", result.failed["etc/shared/new2/agent.conf"])
        self.assertIn("etc/shared/new1/agent.conf", result.created)
        self.assertEqual(list(self.received.staged.unremoved), [new2])

    def test_abort_hands_staged_to_caller(self) -> None:
        """Each abort of an unpack (asked for, or after a refused piece) hands its Staged to
        ``on_abort`` once what it staged was removed, so the temp directories left can be
        reported."""
        self.patch(staging_module.shutil, "rmtree", refuse_rmtree)
        aborted: list[Staged] = []
        unpacker = Unpacker(self.worker, on_abort=aborted.append)
        stream = b"".join(iter_pack(self.master, self.plan))
        unpacker.feed(stream[:-1])
        temp_dirs = sorted(unpacker.staged.new_dirs.values())
        self.assertEqual(len(temp_dirs), 2)
        self.assertEqual(aborted, [])
        unpacker.abort("cancelled")
        self.assertEqual(aborted, [unpacker.staged])
        self.assertEqual(sorted(unpacker.staged.unremoved), temp_dirs)
        refused = Unpacker(self.worker, on_abort=aborted.append)
        with self.assertRaises(PackError):
            refused.feed(b"not a header\n")
        self.assertEqual(aborted, [unpacker.staged, refused.staged])

    def test_temp_names_never_synced(self) -> None:
        """A path through a directory named like our temp directories is refused."""
        with self.assertRaises(PathRefused):
            validate_relpath(f"etc/shared/{TEMP_PREFIX}x.dir/agent.conf")


def block(directory: str, *files: tuple[object, ...]) -> dict[str, object]:
    """A hand-made block record of ``files`` (kind, name, size, checksum) in ``directory``."""
    return {"t": "b", "d": directory, "f": [list(f) for f in files]}


class BlockTests(SynchronousTestCase):
    """Blocks of small files: what the master sends and what the worker accepts."""

    def setUp(self) -> None:
        """An empty worker home and a content with its checksum."""
        self.worker = self.mktemp()
        os.makedirs(self.worker)
        self.data = b"hello"
        self.sum = checksum_bytes(self.data)

    def test_block_staged(self) -> None:
        """A valid block stages each file of it in its directory with the table's mode; a stale
        entry is skipped and rejected, its bytes consumed."""
        stream = pack_bytes(
            header(2, 1, size=15),
            block("etc", ("c", "client.keys", 5, self.sum), ("U", "authd.pass", 5, self.sum)),
            self.data * 2,
            block("etc/shared/g", ("c", "a b.conf", 5, self.sum)),
            self.data,
            {"t": "end"},
        )
        got = receive(self.worker, stream, piece=7)
        self.assertEqual(sorted(got.staged.files), ["etc/client.keys", "etc/shared/g/a b.conf"])
        self.assertEqual(got.staged.resend, {"etc/authd.pass"})
        self.assertNotIn("etc/authd.pass", got.staged.rejected)
        self.assertEqual(got.plan.shared, ("etc/authd.pass",))
        for path, tmp in got.staged.files.items():
            with open(tmp, "rb") as f:
                self.assertEqual(f.read(), self.data)
            self.assertEqual(
                stat.S_IMODE(os.stat(tmp).st_mode), 0o640 if "etc/c" in path else 0o660
            )

    def test_block_of_empty_files(self) -> None:
        """A block holding only empty files stages each of them, empty."""
        empty = checksum_bytes(b"")
        stream = pack_bytes(
            header(2),
            block("etc/shared/g", ("c", "a", 0, empty), ("c", "b", 0, empty)),
            {"t": "end"},
        )
        got = receive(self.worker, stream)
        self.assertEqual(sorted(got.staged.files), ["etc/shared/g/a", "etc/shared/g/b"])
        self.assertTrue(all(os.path.getsize(tmp) == 0 for tmp in got.staged.files.values()))

    def test_hostile_blocks_refused(self) -> None:
        """A block with a bad directory, name, kind, size, checksum or shape is refused before
        a byte is written."""
        good = ("c", "a", 5, self.sum)
        cases: dict[str, dict[str, object]] = {
            "escape in directory": block("etc/shared/../..", good),
            "absolute directory": block("/etc/shared", good),
            "not synced": block("var/db", good),
            "name with a slash": block("etc/shared", ("c", "x/a", 5, self.sum)),
            "dot-dot name": block("etc/shared", ("c", "..", 5, self.sum)),
            "excluded name": block("etc/shared", ("c", "a.swp", 5, self.sum)),
            "config file": block("etc", ("c", "wazuh-manager.conf", 5, self.sum)),
            "bad kind": block("etc/shared", ("x", "a", 5, self.sum)),
            "negative size": block("etc/shared", ("c", "a", -1, self.sum)),
            "size over a block file": block(
                "etc/shared", ("c", "a", records_module.SMALL_FILE + 1, self.sum)
            ),
            "bad checksum": block("etc/shared", ("c", "a", 5, "A" * 64)),
            "short entry": block("etc/shared", ("c", "a", 5)),
            "no files": block("etc/shared"),
            "too many files": block(
                "etc/shared",
                *[("c", f"f{i}", 0, self.sum) for i in range(records_module.BLOCK_FILES + 1)],
            ),
            "twice the same name": block("etc/shared", good, good),
            "files not a list": {"t": "b", "d": "etc/shared", "f": "a"},
        }
        for name, record in cases.items():
            with self.assertRaises(PackError, msg=name):
                Unpacker(self.worker).feed(
                    pack_bytes(header(300, size=1 << 20), record, self.data * 2, {"t": "end"})
                )
        self.patch(unpack_module, "BLOCK_BYTES", 9)
        with self.assertRaises(PackError, msg="over the block bytes"):
            Unpacker(self.worker).feed(
                pack_bytes(header(2, size=10), block("etc/shared", good, ("c", "b", 5, self.sum)))
            )
        self.assertEqual(read_tree(self.worker), {})

    def test_block_behind_symlink(self) -> None:
        """A block whose directory is reached through a planted symlink is rejected for every
        file of it, and nothing is written through the link."""
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        os.makedirs(os.path.join(self.worker, "etc/shared"))
        os.symlink(outside, os.path.join(self.worker, "etc/shared/link"))
        stream = pack_bytes(
            header(2, size=10),
            block("etc/shared/link", ("c", "a", 5, self.sum), ("c", "b", 5, self.sum)),
            self.data * 2,
            {"t": "end"},
        )
        got = receive(self.worker, stream)
        self.assertEqual(sorted(got.staged.rejected), ["etc/shared/link/a", "etc/shared/link/b"])
        self.assertIn("symlink", got.staged.rejected["etc/shared/link/a"])
        self.assertEqual(os.listdir(outside), [])

    def test_master_trusts_the_scanned_stat(self) -> None:
        """The master hashes a small file again only when its stat is not the one its scan
        trusted; a file changed since is marked stale in the block."""
        master = self.mktemp()
        files = {f"etc/shared/g/f{i}": os.urandom(100 + i) for i in range(5)}
        write_tree(master, files)
        an_hour_ago = os.stat(master).st_mtime - 3600
        for path in files:
            os.utime(os.path.join(master, path), (an_hour_ago, an_hour_ago))
        plan = compare(scan_tree(master), {})
        self.assertTrue(all(meta.inode for meta in plan.files.values()))
        hashed: list[int] = []

        def counting(data: bytes) -> str:
            hashed.append(len(data))
            return checksum_bytes(data)

        self.patch(pack_module, "checksum_bytes", counting)
        stream = b"".join(iter_pack(master, plan))
        self.assertEqual(hashed, [])
        self.assertEqual(receive(self.worker, stream).staged.rejected, {})
        with open(os.path.join(master, "etc/shared/g/f2"), "r+b") as f:
            f.write(b"changed")
        stream = b"".join(iter_pack(master, plan))
        self.assertEqual(hashed, [102])
        other = self.mktemp()
        os.makedirs(other)
        got = receive(other, stream)
        self.assertEqual(got.staged.resend, {"etc/shared/g/f2"})

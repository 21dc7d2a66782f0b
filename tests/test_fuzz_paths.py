"""Hypothesis fuzzing of the integrity sync's path checks and its stream unpacker.

Paths with ``..``, absolute paths, control characters, names outside the synced table and
parents that are symlinks planted in the worker's tree must be refused; a hostile sync
stream must never create a file outside the synced directories nor leave a temp file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.test_fuzz_amp import FUZZ
from wazuhcluster.integrity.paths import PathRefused, resolve, validate_relpath
from wazuhcluster.integrity.records import SYNC_VERSION, PackError
from wazuhcluster.integrity.scan import new_hasher
from wazuhcluster.integrity.table import SYNC_ITEMS, TEMP_PREFIX
from wazuhcluster.integrity.unpack import Unpacker

_COMPONENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "etc",
        "shared",
        "default",
        "client.keys",
        "rules",
        "evil",
        "link.txt",
        "passwd",
        "var",
        "multigroups",
        "x\x00y",
        "a\nb",
        "é",
        "z" * 300,
        ".wcsync-123",
        "logs",
    ]
)
HOSTILE_PATHS = (
    st.lists(_COMPONENTS, min_size=1, max_size=7).map("/".join)
    | st.lists(_COMPONENTS, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
    | st.text(max_size=80)
)
SYNCED_DIRS = tuple(item.directory for item in SYNC_ITEMS)


def _inside_synced(relpath: str) -> bool:
    return any(relpath == d or relpath.startswith(d + "/") for d in SYNCED_DIRS) or relpath in (
        "etc/client.keys",
        "etc/authd.pass",
    )


def build_stream(
    paths: list[str], deletes: list[str], content: bytes, lie: int, blocks: bool = False
) -> bytes:
    """A sync stream creating ``paths`` with ``content`` (declared ``lie`` bytes off) and
    deleting ``deletes``; each file as a record of its own, or as a block of one file in its
    directory."""
    hasher = new_hasher()
    hasher.update(content)
    size = max(len(content) + lie, 0)
    body = b""
    for path in paths:
        if blocks:
            directory, _, name = path.rpartition("/")
            files = [["c", name, size, hasher.hexdigest()]]
            record: dict[str, object] = {"t": "b", "d": directory, "f": files}
        else:
            record = {"t": "f", "k": "c", "p": path, "s": size, "c": hasher.hexdigest()}
        body += json.dumps(record).encode() + b"\n" + content
    header = {
        "v": SYNC_VERSION,
        "type": "sync",
        "create": len(paths),
        "update": 0,
        "delete": len(deletes),
        "bytes": size * len(paths),
    }
    tail = b"".join(json.dumps({"t": "d", "p": p}).encode() + b"\n" for p in deletes)
    stream = json.dumps(header).encode() + b"\n" + tail + body
    return stream + json.dumps({"t": "end"}).encode() + b"\n"


class PathFuzzTests(SynchronousTestCase):
    """validate_relpath and resolve against hostile names and planted symlinks."""

    def setUp(self) -> None:
        """A worker home with a symlinked directory and a symlinked file in etc/shared, and
        an outside directory the links point to."""
        base = Path(self.mktemp())
        self.home = base / "home"
        self.outside = base / "outside"
        self.outside.mkdir(parents=True)
        (self.home / "etc" / "shared" / "default").mkdir(parents=True)
        (self.home / "etc" / "shared" / "evil").symlink_to(self.outside)
        (self.outside / "passwd").write_text("root:x:0:0\n")
        (self.home / "etc" / "shared" / "link.txt").symlink_to(self.outside / "passwd")

    @FUZZ
    @given(relpath=HOSTILE_PATHS)
    def test_accepted_paths_stay_inside(self, relpath: str) -> None:
        """An accepted path is canonical, relative and in the synced table; resolving it
        (creating parents) never walks through a symlink or out of the home."""
        try:
            validate_relpath(relpath)
        except PathRefused as refused:
            self.assertTrue(refused.reason)
            return
        parts = relpath.split("/")
        self.assertFalse(relpath.startswith("/"))
        self.assertNotIn("..", parts)
        self.assertNotIn("", parts)
        self.assertTrue(_inside_synced(relpath), relpath)
        try:
            target = resolve(str(self.home), relpath, create_parents=True)
        except PathRefused as refused:
            self.assertTrue(refused.reason)
            return
        except OSError:
            return  # e.g. a name too long for the file system: an error, not an escape
        parent = os.path.realpath(os.path.dirname(target))
        self.assertTrue(parent.startswith(os.path.realpath(self.home) + os.sep), target)
        self.assertEqual(sorted(os.listdir(self.outside)), ["passwd"])

    def test_stream_builder_reaches_staging(self) -> None:
        """The stream the fuzz builds is valid for an honest path, in both forms, so the hostile
        cases are refused for their paths and sizes, not for the framing."""
        for blocks in (False, True):
            unpacker = Unpacker(str(self.home))
            unpacker.feed(build_stream(["etc/shared/default/ok.txt"], [], b"hello", 0, blocks))
            received = unpacker.finish()
            self.assertEqual(sorted(received.plan.missing), ["etc/shared/default/ok.txt"])
            self.assertEqual(sorted(received.staged.files), ["etc/shared/default/ok.txt"])
            unpacker.abort("test over")

    @FUZZ
    @given(
        paths=st.lists(
            HOSTILE_PATHS | st.sampled_from(["etc/shared/evil/x", "etc/shared/a"]), max_size=4
        ),
        deletes=st.lists(HOSTILE_PATHS, max_size=3),
        content=st.binary(max_size=64),
        lie=st.integers(-2, 2),
        blocks=st.booleans(),
    )
    def test_hostile_sync_stream(
        self, paths: list[str], deletes: list[str], content: bytes, lie: int, blocks: bool
    ) -> None:
        """A sync stream naming hostile paths (as file records or in blocks), with sizes that
        may lie, is refused with PackError or staged only inside synced directories; aborting
        leaves no temp file and the outside directory untouched."""
        stream = build_stream(paths, deletes, content, lie, blocks)
        unpacker = Unpacker(str(self.home))
        try:
            unpacker.feed(stream)
            received = unpacker.finish()
            for path in received.plan.missing:
                self.assertTrue(_inside_synced(path), path)
        except PackError as error:
            self.assertTrue(str(error))
        finally:
            unpacker.abort("test over")
        left = [
            os.path.join(d, n)
            for d, _s, names in os.walk(self.home)
            for n in names
            if n.startswith(TEMP_PREFIX)
        ]
        self.assertEqual(left, [])
        self.assertEqual(sorted(os.listdir(self.outside)), ["passwd"])
        self.assertEqual((self.outside / "passwd").read_text(), "root:x:0:0\n")

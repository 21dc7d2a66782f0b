"""Wire formats of the integrity sync: a file table, and the files of a plan as one byte stream.

**Table** (worker → master): JSON lines. The first line is ``{"v":1,"type":"table","count":N}``,
then one line per file ``{"p":path,"c":checksum,"s":size,"m":mode}``. Decoding checks every field,
the count, duplicates and caps (line length, entries), so a hostile table costs bounded memory.

**Sync stream** (master → worker), version 2: a header line
``{"v":2,"type":"sync","create":A,"update":B,"delete":C,"bytes":N}``, then one
``{"t":"d","p":path}`` line per deletion, then the files, then ``{"t":"end"}``. Files travel two
ways:

- *Blocks* carry small files (up to :data:`SMALL_FILE`) of one directory, at most
  :data:`BLOCK_FILES` files and :data:`BLOCK_BYTES` of content each: a line
  ``{"t":"b","d":directory,"f":[[kind,name,size,checksum],...]}`` followed by the contents, one
  after the other. The receiver checks the directory once and writes the whole block in one go,
  so a cold sync of thousands of small files costs little more per file than creating it.
- A larger file is a line ``{"t":"f","k":kind,"p":path,"s":size,"c":checksum}`` followed by
  exactly ``size`` raw bytes, read and written piece by piece as they travel.

``kind`` is ``c`` (create) or ``u`` (update). The master reads a small file whole and checks it
against its table before it goes into a block (by its stat when the scan trusted it, else by
hashing it again); one that changed or vanished since the scan keeps its declared size (cut or
padded) and its kind in upper case (``C``, ``U``): the receiver skips it and the next cycle sends
it again. A large file is checked by the receiver, which hashes it as it arrives. The bytes
themselves are protected on the way by TLS and by the stream's SHA-256 (see
``wire.stream_receiver``). Neither side ever holds more than a block or a chunk of content in
memory, and the total size is known before the first byte is sent (:func:`packed_size`).

The receiver writes each file to a temp file next to its target, renamed into place by the apply.
A directory the receiver does not have yet (a new group, or every folder of a worker that joins)
is staged whole instead: its files, under their own names, and its subdirectories go into a temp
directory beside it, which the apply renames into place at once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future
from typing import Any

from attrs import define, field, frozen
from twisted.logger import Logger

from wazuhcluster.integrity.compare import Plan
from wazuhcluster.integrity.paths import DIR_MODE, PathRefused, resolve, validate_relpath
from wazuhcluster.integrity.scan import FileMeta, FileTable, checksum_bytes, new_hasher
from wazuhcluster.integrity.table import TEMP_PREFIX, SyncItem, item_for_directory

_log = Logger()

#: Version of the table format (worker → master).
TABLE_VERSION = 1

#: Version of the sync stream format (master → worker).
SYNC_VERSION = 2

#: Longest accepted line of a table, and of a sync stream record other than a block (a 1 KiB
#: path may grow six-fold with JSON escapes).
MAX_LINE = 8192

#: Files up to this size travel in blocks; larger ones as a record of their own, in pieces.
SMALL_FILE = 256 * 1024

#: Most files in one block.
BLOCK_FILES = 256

#: Most content bytes in one block (the receiver holds a block in memory until it is written).
BLOCK_BYTES = 512 * 1024

#: Longest accepted block line: BLOCK_FILES entries of a 255-byte name, at most three times
#: longer once escaped, with size and checksum, stay well under it.
MAX_BLOCK_LINE = 512 * 1024

#: Default cap on the number of entries of a decoded table.
DEFAULT_MAX_ENTRIES = 500_000

#: Default cap on one file's size in a sync stream (Wazuh's max_zip_size is 1 GiB for everything).
DEFAULT_MAX_FILE_SIZE = 1 << 30

#: Default cap on the content bytes of one sync stream.
DEFAULT_MAX_TOTAL_BYTES = 1 << 30

#: Default size of the pieces :func:`iter_pack` yields.
DEFAULT_CHUNK_SIZE = 60 * 1024

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

_MAX_MODE = 0o7777


class PackError(ValueError):
    """A table or sync stream is malformed or over a cap; the message says why."""


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def _clip(value: object) -> str:
    """``repr(value)``, cut to a length fit for an error message."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise PackError(f"bad JSON line: {e}") from None
    if not isinstance(obj, dict):
        raise PackError("a line is not a JSON object")
    return obj


def _int_field(obj: Mapping[str, Any], key: str, maximum: int) -> int:
    value = obj.get(key)
    if type(value) is not int or not 0 <= value <= maximum:
        raise PackError(f"field {key!r} must be an integer in [0, {maximum}], got {value!r}")
    return value


def _checked_path(path: object) -> tuple[str, SyncItem]:
    """A path field, checked against the synced table, and its item."""
    try:
        item = validate_relpath(path)
    except PathRefused as e:
        raise PackError(str(e)) from None
    assert isinstance(path, str)
    return path, item


def _checksum_field(obj: Mapping[str, Any]) -> str:
    checksum = obj.get("c")
    if not isinstance(checksum, str) or not _HEX64.match(checksum):
        raise PackError(f"field 'c' must be 64 lowercase hex digits, got {checksum!r}")
    return checksum


# --- tables -------------------------------------------------------------------------------------


def encode_table(table: Mapping[str, FileMeta]) -> bytes:
    """Serialize a file table (path, checksum, size, mode; no local cache keys)."""
    parts = [_line({"v": TABLE_VERSION, "type": "table", "count": len(table)})]
    for path in sorted(table):
        meta = table[path]
        parts.append(_line({"p": path, "c": meta.checksum, "s": meta.size, "m": meta.mode}))
    return b"".join(parts)


def decode_table(data: bytes, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> FileTable:
    """Parse and validate what :func:`encode_table` produced.

    :raises PackError: on any malformed line, bad field, duplicate path, wrong count or cap.
    """
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise PackError("table does not end with a newline")
    lines.pop()
    if not lines:
        raise PackError("table is empty (no header)")
    for line in lines:
        if len(line) > MAX_LINE:
            raise PackError(f"line longer than {MAX_LINE} bytes")
    header = _parse_line(lines[0])
    if header.get("v") != TABLE_VERSION or header.get("type") != "table":
        raise PackError(f"not a version {TABLE_VERSION} table header: {header!r}")
    count = _int_field(header, "count", max_entries)
    if count != len(lines) - 1:
        raise PackError(f"header says {count} entries, found {len(lines) - 1}")
    table: FileTable = {}
    for line in lines[1:]:
        obj = _parse_line(line)
        path = _checked_path(obj.get("p"))[0]
        if path in table:
            raise PackError(f"duplicate path {path!r}")
        table[path] = FileMeta(
            checksum=_checksum_field(obj),
            size=_int_field(obj, "s", 1 << 62),
            mtime_ns=0,
            mode=_int_field(obj, "m", _MAX_MODE),
        )
    return table


# --- sync stream: sender ------------------------------------------------------------------------


def _sync_header(plan: Plan) -> bytes:
    a, b, c = plan.counts
    header = {"v": SYNC_VERSION, "type": "sync", "create": a, "update": b, "delete": c}
    return _line({**header, "bytes": plan.transfer_bytes})


#: One file of a block as the sender lays it out: kind, name in its directory, table metadata.
_BlockEntry = tuple[str, str, FileMeta]


@frozen
class _Block:
    """Small files of one directory sent together."""

    directory: str
    entries: list[_BlockEntry]

    def line(self, stale: frozenset[str] = frozenset()) -> bytes:
        """The block's record line; the files named in ``stale`` get their kind in upper case
        (the same length, so :func:`packed_size` need not know)."""
        files = [
            [kind.upper() if name in stale else kind, name, meta.size, meta.checksum]
            for kind, name, meta in self.entries
        ]
        return _line({"t": "b", "d": self.directory, "f": files})


@frozen
class _LargeFile:
    """A file sent as a record of its own, in pieces."""

    kind: str
    path: str
    meta: FileMeta

    def line(self) -> bytes:
        """The file's record line."""
        meta = self.meta
        return _line({"t": "f", "k": self.kind, "p": self.path, "s": meta.size, "c": meta.checksum})


def _layout(plan: Plan) -> Iterator[_Block | _LargeFile]:
    """The files of ``plan`` in stream order: directory by directory, the small ones in blocks."""
    kinds = {p: "c" for p in plan.missing} | {p: "u" for p in plan.shared}
    block: _Block | None = None
    block_bytes = 0
    for (directory, _, name), path in sorted((p.rpartition("/"), p) for p in kinds):
        meta = plan.files[path]
        if meta.size > SMALL_FILE:
            yield _LargeFile(kinds[path], path, meta)
            continue
        if block is not None and (
            block.directory != directory
            or len(block.entries) == BLOCK_FILES
            or block_bytes + meta.size > BLOCK_BYTES
        ):
            yield block
            block = None
        if block is None:
            block, block_bytes = _Block(directory, []), 0
        block.entries.append((kinds[path], name, meta))
        block_bytes += meta.size
    if block is not None:
        yield block


_END = _line({"t": "end"})


def packed_size(plan: Plan) -> int:
    """The exact number of bytes :func:`iter_pack` yields for ``plan``."""
    total = len(_sync_header(plan)) + len(_END)
    total += sum(len(_line({"t": "d", "p": p})) for p in plan.extra)
    for item in _layout(plan):
        if isinstance(item, _Block):
            total += len(item.line()) + sum(meta.size for _, _, meta in item.entries)
        else:
            total += len(item.line()) + item.meta.size
    return total


def iter_pack(home: str, plan: Plan, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the sync stream of ``plan`` in pieces of at most ``chunk_size`` bytes.

    A block's files are read whole and checked against the plan's checksums; a large file is read
    in pieces while the stream is consumed. Memory stays around one block plus a chunk. A file
    that vanished or changed keeps its declared size so the framing stays exact: in a block it is
    marked stale, a large one fails the receiver's checksum.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    buf = bytearray(_sync_header(plan))
    for path in plan.extra:
        buf += _line({"t": "d", "p": path})
    for item in _layout(plan):
        if isinstance(item, _Block):
            contents, stale = _read_block(home, item)
            buf += item.line(stale)
            for data in contents:
                buf += data
            yield from _full_chunks(buf, chunk_size)
            continue
        buf += item.line()
        remaining = item.meta.size
        fd = _open_source(os.path.join(home, item.path))
        try:
            while remaining:
                yield from _full_chunks(buf, chunk_size)
                want = min(remaining, chunk_size - len(buf))
                piece = _read_some(fd, want)
                if not piece:
                    # Vanished or shrunk since the scan: pad, the receiver rejects it by checksum.
                    piece = bytes(want)
                buf += piece
                remaining -= len(piece)
        finally:
            if fd is not None:
                os.close(fd)
    buf += _END
    yield from _full_chunks(buf, chunk_size)
    if buf:
        yield bytes(buf)


def _full_chunks(buf: bytearray, chunk_size: int) -> Iterator[bytes]:
    """Cut every whole chunk off the front of ``buf``."""
    while len(buf) >= chunk_size:
        with memoryview(buf) as view:
            piece = bytes(view[:chunk_size])
        del buf[:chunk_size]
        yield piece


def _read_block(home: str, block: _Block) -> tuple[list[bytes], frozenset[str]]:
    """The contents of a block's files, each exactly its declared size, and the names of those
    that no longer match the plan (vanished, resized or changed since the scan)."""
    contents: list[bytes] = []
    stale: set[str] = set()
    for _, name, meta in block.entries:
        data, as_scanned = _read_small(os.path.join(home, block.directory, name), meta)
        if (
            data is None
            or len(data) != meta.size
            or (not as_scanned and checksum_bytes(data) != meta.checksum)
        ):
            stale.add(name)
            data = (data or b"")[: meta.size].ljust(meta.size, b"\0")
        contents.append(data)
    return contents, frozenset(stale)


def _read_small(path: str, meta: FileMeta) -> tuple[bytes | None, bool]:
    """Up to ``meta.size + 1`` bytes of a file (one more than expected shows that it grew), or
    None if it cannot be read; and whether the file still has the stat the scan trusted when it
    hashed it (then its content is the hashed one, as the scan itself assumes, and needs no
    second hashing). The stat is taken after the read, so a change during the read shows."""
    fd = _open_source(path)
    if fd is None:
        return None, False
    try:
        data = os.read(fd, meta.size + 1)
        while 0 < len(data) < meta.size:
            more = os.read(fd, meta.size + 1 - len(data))
            if not more:
                break
            data += more
        st = os.fstat(fd)
    except OSError:
        return None, False
    finally:
        os.close(fd)
    scanned = (meta.inode, meta.size, meta.mtime_ns)
    return data, meta.inode != 0 and (st.st_ino, st.st_size, st.st_mtime_ns) == scanned


def _read_some(fd: int | None, want: int) -> bytes:
    """Up to ``want`` bytes of an open source file; nothing once it is gone or unreadable."""
    if fd is None:
        return b""
    try:
        return os.read(fd, want)
    except OSError:
        return b""


def _open_source(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


# --- sync stream: receiver ----------------------------------------------------------------------


@frozen
class SyncHeader:
    """The counts a sync stream announces before its records."""

    create: int
    update: int
    delete: int
    bytes: int

    def describe(self) -> str:
        """The Wazuh-style summary line."""
        return (
            f"Files to create: {self.create} | Files to update: {self.update} | "
            f"Files to delete: {self.delete}"
        )


@define
class Staged:
    """Files an :class:`Unpacker` wrote to temp files, waiting to be renamed into place.

    :ivar files: relative path → absolute path of its verified temp file (already chmod'ed).
    :ivar rejected: relative path → why it was not staged (checksum mismatch, blocked path, ...).
    :ivar cleared: paths to delete that were deleted early, because a directory had to be created
        where they stood.
    :ivar new_dirs: relative directory that does not exist yet → absolute temp directory that
        holds its files (under their own names, in ``files`` too) and subdirectories, to be
        renamed into place whole: one rename for all its files.
    """

    files: dict[str, str] = field(factory=dict)
    rejected: dict[str, str] = field(factory=dict)
    cleared: list[str] = field(factory=list)
    new_dirs: dict[str, str] = field(factory=dict)

    def new_dir_of(self, reldir: str) -> str | None:
        """The directory of ``new_dirs`` that ``reldir`` is, or lies in; None if none."""
        while reldir:
            if reldir in self.new_dirs:
                return reldir
            reldir = reldir.rpartition("/")[0]
        return None

    def discard(self) -> None:
        """Remove every temp file and temp directory still staged."""
        for tmp in self.files.values():
            _unlink_quietly(tmp)
        self.files.clear()
        for temp_dir in self.new_dirs.values():
            remove_temp_tree(temp_dir)
        self.new_dirs.clear()


def remove_temp_tree(path: str) -> None:
    """Remove a temp directory of ours and everything in it (never following a symlink); quietly
    if it is gone."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        _log.warn("Could not remove the temp directory {path}: {error}", path=path, error=e)


@frozen
class Received:
    """A complete, verified sync stream: the plan it carried and its staged files."""

    header: SyncHeader
    plan: Plan
    staged: Staged


def _missing(path: str) -> bool:
    """Whether nothing at all stands at ``path`` (not even a symlink)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    return False


def _is_real_dir(path: str) -> bool:
    """Whether ``path`` is a directory, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def temp_name() -> str:
    """A fresh temp file name, recognisable by :data:`TEMP_PREFIX` and never synced."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"


class _TempNames:
    """Temp file names for one unpack: a random prefix drawn once, then a counter (as unlikely to
    collide as :func:`temp_name`, at a fraction of its cost per file)."""

    def __init__(self) -> None:
        self._prefix = f"{TEMP_PREFIX}{secrets.token_hex(6)}-"
        self._count = 0

    def next(self) -> str:
        """The next name."""
        self._count += 1
        return f"{self._prefix}{self._count:x}.tmp"


_HEADER, _RECORD, _DATA, _BLOCK, _DONE, _CLOSED = range(6)

_MISMATCH = "checksum mismatch (changed on the master while sent?)"
_STALE = "changed on the master while being sent (the next cycle sends it again)"

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

#: The syncer is asked for a sync() after each such amount of content written (see
#: Unpacker._end_block).
EARLY_SYNC_BYTES = 8 << 20

#: One file of a received block: relative path, temp file name, mode, and where its content
#: starts and ends in the block's data.
_BlockFile = tuple[str, str, int, int, int]

#: What was done with one file of a block: relative path, temp file path, None or why it failed.
_Written = tuple[str, str, str | None]


def write_block(
    directory: str, files: list[_BlockFile], pieces: list[memoryview]
) -> list[_Written]:
    """Create and write the temp file of each file of a block in ``directory``.

    ``pieces`` are the block's data as it arrived (the offsets of ``files`` run across them, so
    the data is not copied into one buffer first). The directory is opened once (it was checked
    by ``resolve``; it must still not be a symlink) and every file is created relative to it.

    :return: (path, temp file, None) for each file written, (path, temp file, reason) for each
        that failed (its temp file removed).
    """
    try:
        dir_fd = os.open(directory, _DIR_FLAGS)
    except OSError as e:
        reason = f"cannot open directory: {e.strerror or e}"
        return [(path, f"{directory}/{tmp}", reason) for path, tmp, _, _, _ in files]
    done: list[_Written] = []
    pieces = pieces or [memoryview(b"")]  # a block of empty files only
    index = 0  # the piece holding the current file's first byte
    piece_start = 0  # its offset in the block
    try:
        for path, tmp, mode, start, end in files:
            while piece_start + len(pieces[index]) <= start and index + 1 < len(pieces):
                piece_start += len(pieces[index])
                index += 1
            piece = pieces[index]
            if end - piece_start <= len(piece):
                content = piece[start - piece_start : end - piece_start]
            else:
                content = memoryview(_gather(pieces, index, start - piece_start, end - start))
            error = _write_one(dir_fd, tmp, mode, content)
            done.append((path, f"{directory}/{tmp}", error))
    finally:
        os.close(dir_fd)
    return done


def _gather(pieces: list[memoryview], index: int, skip: int, size: int) -> bytes:
    """``size`` bytes from ``pieces``, starting ``skip`` bytes into ``pieces[index]``."""
    parts = []
    while size:
        part = pieces[index][skip : skip + size]
        parts.append(part)
        size -= len(part)
        index, skip = index + 1, 0
    return b"".join(parts)


def _write_one(dir_fd: int, name: str, mode: int, content: memoryview) -> str | None:
    """Create temp file ``name`` in ``dir_fd`` holding ``content`` with ``mode``; None, or why it
    failed (and nothing is left)."""
    try:
        fd = os.open(name, _TEMP_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError as e:
        return f"cannot create temp file: {e.strerror or e}"
    try:
        while content:
            content = content[os.write(fd, content) :]
        os.fchmod(fd, mode)
    except OSError as e:
        os.close(fd)
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        return f"cannot write temp file: {e.strerror or e}"
    os.close(fd)
    return None


class Unpacker:
    """Consume a sync stream incrementally; write each file to a temp file in its target directory.

    Call :meth:`feed` with each piece, then :meth:`finish` for the result; :meth:`abort` removes
    every temp file written so far (also done automatically when a piece is refused). Memory stays
    bounded by :data:`MAX_BLOCK_LINE` and :data:`BLOCK_BYTES` plus the piece being fed. Each block
    is written as soon as its data is complete. Blocking file I/O: feed it from a thread (the
    worker uses ``wire.stream_consumers.ThreadedConsumer``), one call at a time.

    :param syncer: if given, asked for a ``sync()`` after every :data:`EARLY_SYNC_BYTES` written,
        so the data is mostly written out before the apply's own ``sync()``; never waited for.
    """

    def __init__(
        self,
        home: str,
        *,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_files: int = DEFAULT_MAX_ENTRIES,
        syncer: Executor | None = None,
    ) -> None:
        self._home = home
        self._syncer = syncer
        self._early_sync: Future[None] | None = None
        self._unsynced = 0
        self._max_total = max_total_bytes
        self._max_file = max_file_size
        self._max_files = max_files
        self._state = _HEADER
        self._line = bytearray()
        self.header: SyncHeader | None = None
        self._deletes: list[str] = []
        self._seen: set[str] = set()
        self._known_dirs: set[str] = set()
        # Where each parent directory met by this unpack is written (see _parent_path).
        self._dir_paths: dict[str, tuple[str, str | None]] = {}
        self._clear_files: frozenset[str] | None = None
        self._temp_names = _TempNames()
        self._creates: dict[str, FileMeta] = {}
        self._updates: dict[str, FileMeta] = {}
        self._content_bytes = 0
        self.staged = Staged()
        # The large file being received.
        self._path = ""
        self._meta: FileMeta | None = None
        self._remaining = 0
        self._fd: int | None = None
        self._tmp = ""
        self._hasher = new_hasher()
        # The block being received: its directory (None if refused), the new directory it lies
        # in (see _parent_path), files and data so far.
        self._block_dir: str | None = None
        self._block_root: str | None = None
        self._block_files: list[_BlockFile] = []
        # Views of the pieces fed: the caller must not change a piece once fed.
        self._block_data: list[memoryview] = []

    def feed(self, data: bytes) -> None:
        """Consume the next piece of the stream. Views of it are kept until the block they belong
        to is written: a piece must not change once fed.

        :raises PackError: the stream is malformed or over a cap; everything staged is removed.
        """
        if self._state == _CLOSED:
            raise PackError("unpacker is closed")
        try:
            self._feed(data)
        except BaseException:
            self.abort()
            raise

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        end = len(data)
        while pos < end:
            if self._state == _DATA or self._state == _BLOCK:
                n = min(self._remaining, end - pos)
                piece = view[pos : pos + n]
                pos += n
                self._remaining -= n
                if self._state == _DATA:
                    self._write(piece)
                    if self._remaining == 0:
                        self._end_file()
                else:
                    self._block_data.append(piece)
                    if self._remaining == 0:
                        self._end_block()
                continue
            if self._state == _DONE:
                raise PackError("data after the end record")
            nl = data.find(b"\n", pos)
            stop = end if nl < 0 else nl
            if len(self._line) + (stop - pos) > MAX_BLOCK_LINE:
                raise PackError(f"record line longer than {MAX_BLOCK_LINE} bytes")
            if nl < 0:
                self._line += view[pos:stop]
                return
            if self._line:
                self._line += view[pos:stop]
                line = bytes(self._line)
                self._line.clear()
            else:
                line = data[pos:stop]
            pos = nl + 1
            self._record(line)

    def _record(self, line: bytes) -> None:
        obj = _parse_line(line)
        kind = obj.get("t")
        if kind != "b" and len(line) > MAX_LINE:
            raise PackError(f"record line longer than {MAX_LINE} bytes")
        if self._state == _HEADER:
            if obj.get("v") != SYNC_VERSION or obj.get("type") != "sync":
                raise PackError(f"not a version {SYNC_VERSION} sync header: {_clip(obj)}")
            self.header = SyncHeader(
                create=_int_field(obj, "create", self._max_files),
                update=_int_field(obj, "update", self._max_files),
                delete=_int_field(obj, "delete", self._max_files),
                bytes=_int_field(obj, "bytes", self._max_total),
            )
            if self.header.create + self.header.update > self._max_files:
                raise PackError(f"more than {self._max_files} files announced")
            self._state = _RECORD
            return
        assert self.header is not None
        if kind == "b":
            self._begin_block(obj)
        elif kind == "f":
            size = _int_field(obj, "s", self._max_file)
            self._begin_file(obj.get("k"), obj.get("p"), size, _checksum_field(obj))
        elif kind == "d":
            if self._creates or self._updates:
                raise PackError("a deletion after the first file")
            path = self._claim(obj.get("p"))[0]
            if len(self._deletes) >= self.header.delete:
                raise PackError("more deletions than announced")
            self._deletes.append(path)
        elif kind == "end":
            self._check_end()
            self._state = _DONE
        else:
            raise PackError(f"unknown record type {_clip(kind)}")

    def _claim(self, path: object) -> tuple[str, SyncItem]:
        """A path field checked against the table and against the paths already in this
        stream; its item."""
        path, item = _checked_path(path)
        if path in self._seen:
            raise PackError(f"path {path!r} appears twice")
        self._seen.add(path)
        return path, item

    def _announce(self, kind: object, path: str, meta: FileMeta) -> None:
        """Count one file against the header: ``kind`` ``c`` creates it, ``u`` updates it."""
        assert self.header is not None
        if kind == "c":
            if len(self._creates) >= self.header.create:
                raise PackError("more files to create than announced")
            self._creates[path] = meta
        elif kind == "u":
            if len(self._updates) >= self.header.update:
                raise PackError("more files to update than announced")
            self._updates[path] = meta
        else:
            raise PackError(f"file kind must be 'c' or 'u', got {_clip(kind)}")
        self._content_bytes += meta.size
        if self._content_bytes > self.header.bytes:
            raise PackError("more content than announced")

    def _begin_block(self, obj: dict[str, Any]) -> None:
        """Start receiving a block, from its record (every entry is checked first)."""
        directory, entries = obj.get("d"), obj.get("f")
        if not isinstance(directory, str) or not isinstance(entries, list):
            raise PackError("a block needs a directory 'd' and a list of files 'f'")
        if not 0 < len(entries) <= BLOCK_FILES:
            raise PackError(f"a block holds 1 to {BLOCK_FILES} files, got {len(entries)}")
        largest = min(SMALL_FILE, self._max_file)
        files: list[_BlockFile] = []
        stale: list[str] = []
        offset = 0
        for entry in entries:
            if type(entry) is not list or len(entry) != 4:
                raise PackError(
                    f"a block entry is [kind, name, size, checksum], got {_clip(entry)}"
                )
            kind, name, size, checksum = entry
            if type(name) is not str or "/" in name:
                raise PackError(f"a block entry names a file of its directory, got {_clip(name)}")
            path, item = self._claim(f"{directory}/{name}")
            if type(size) is not int or not 0 <= size <= largest:
                raise PackError(f"a block file's size must be in [0, {largest}], got {_clip(size)}")
            if type(checksum) is not str or not _HEX64.match(checksum):
                raise PackError(
                    f"a checksum must be 64 lowercase hex digits, got {_clip(checksum)}"
                )
            if kind == "C" or kind == "U":
                kind = kind.lower()
                stale.append(path)
            self._announce(kind, path, FileMeta(checksum, size, 0, item.mode))
            files.append((path, name, item.mode, offset, offset + size))
            offset += size
        if offset > BLOCK_BYTES:
            raise PackError(f"a block holds more than {BLOCK_BYTES} bytes")
        for path in stale:
            self.staged.rejected[path] = _STALE
        stale_set = set(stale)
        self._block_files = [f for f in files if f[0] not in stale_set]
        self._block_data = []
        try:
            self._block_dir, self._block_root = self._parent_path(files[0][0])
        except (PathRefused, OSError) as e:
            reason = e.reason if isinstance(e, PathRefused) else f"cannot create directory: {e}"
            for path, *_ in self._block_files:
                self.staged.rejected[path] = reason
            self._block_dir, self._block_root = None, None
        if self._block_root is None:
            # In an existing directory each file is written under a temp name, renamed later.
            self._block_files = [
                (path, self._temp_names.next(), mode, start, end)
                for path, _, mode, start, end in self._block_files
            ]
        self._remaining = offset
        self._state = _BLOCK
        if offset == 0:
            self._end_block()

    def _end_block(self) -> None:
        """A block's data is complete: write its files."""
        self._state = _RECORD
        pieces, self._block_data = self._block_data, []
        files, self._block_files = self._block_files, []
        if self._block_dir is None or not files:
            return
        for path, tmp, error in write_block(self._block_dir, files, pieces):
            if error is None:
                self.staged.files[path] = tmp
            else:
                self.staged.rejected[path] = error
        self._written(sum(len(piece) for piece in pieces))

    def _written(self, size: int) -> None:
        """Count ``size`` more bytes written; ask the syncer for a sync() every
        :data:`EARLY_SYNC_BYTES`."""
        self._unsynced += size
        if self._syncer is not None and self._unsynced >= EARLY_SYNC_BYTES:
            # Start writing the data out now, so the apply's sync() that makes it durable has
            # little left to do. Nobody waits for it (a sync() can take long on a busy disk, and
            # the sender times out a chunk unanswered for 20 s); one at a time.
            if self._early_sync is None or self._early_sync.done():
                self._unsynced = 0
                self._early_sync = self._syncer.submit(os.sync)

    def _begin_file(self, kind: object, raw_path: object, size: int, checksum: str) -> None:
        """Start receiving one large file, from the fields of its record (the caller checked the
        checksum's form and that the size is an integer)."""
        path, item = self._claim(raw_path)
        meta = FileMeta(checksum=checksum, size=size, mtime_ns=0, mode=item.mode)
        self._announce(kind, path, meta)
        self._path, self._meta, self._remaining = path, meta, size
        self._fd = None
        self._hasher = new_hasher()
        try:
            directory, new_dir = self._parent_path(path)
            name = path.rpartition("/")[2] if new_dir else self._temp_names.next()
            self._tmp = f"{directory}/{name}"
            self._fd = os.open(self._tmp, _TEMP_FLAGS, 0o600)
        except PathRefused as e:
            self.staged.rejected[path] = e.reason
        except OSError as e:
            self.staged.rejected[path] = f"cannot create temp file: {e.strerror or e}"
        self._state = _DATA
        if size == 0:
            self._end_file()

    def _parent_path(self, path: str) -> tuple[str, str | None]:
        """Where the files of ``path``'s parent directory are written, checked (and created) the
        first time this unpack meets it; the walk is not repeated for the other files in it.

        A directory that does not exist yet (below one that does) is staged whole instead: its
        files are written under their own names into a temp directory next to it, renamed into
        place in one go by the apply. Its subdirectories are made inside that temp directory.

        :return: the absolute directory, and the relative directory of ``staged.new_dirs`` it
            lies in (None for a real directory, whose files get temp names).
        :raises PathRefused: a parent is a symlink or not a directory.
        """
        parent = path.rpartition("/")[0]
        known = self._dir_paths.get(parent)
        if known is not None:
            return known
        found: tuple[str, str | None] | None = self._inside_new_dir(parent)
        if found is None:
            found = self._checked_dir(path)
        self._dir_paths[parent] = found
        return found

    def _inside_new_dir(self, parent: str) -> tuple[str, str] | None:
        """``parent`` inside a directory this unpack stages whole (created there), or None."""
        root = self.staged.new_dir_of(parent)
        if root is None:
            return None
        directory = self.staged.new_dirs[root] + parent[len(root) :]
        os.makedirs(directory, DIR_MODE, exist_ok=True)  # inside our own temp directory
        return directory, root

    def _checked_dir(self, path: str) -> tuple[str, str | None]:
        """``path``'s parent in the tree: walked (no symlink on the way), created if needed, or
        staged whole when it is the one missing directory."""
        if self._clear_files is None:
            # Deletion records all come before the first file (checked in _record).
            self._clear_files = frozenset(self._deletes)
        parent = path.rpartition("/")[0]
        absolute = os.path.join(self._home, parent)
        staged = False
        try:
            # Walk the existing parents, creating nothing; it stops at the first missing one.
            resolve(self._home, path, check_target=False, known_dirs=self._known_dirs)
        except PathRefused:
            pass  # the walk below decides (it may clear a file that is about to be deleted)
        else:
            # Only below a synced directory, where the start-up cleanup finds a leftover.
            above = parent.rpartition("/")[0]
            staged = (
                item_for_directory(above) is not None
                and _missing(absolute)
                and _is_real_dir(os.path.dirname(absolute))
            )
        if staged:
            temp_dir = f"{os.path.dirname(absolute)}/{TEMP_PREFIX}{secrets.token_hex(8)}.dir"
            os.mkdir(temp_dir, DIR_MODE)
            self.staged.new_dirs[parent] = temp_dir
            return temp_dir, parent
        # The target itself may still be a directory of files about to be deleted; apply_plan
        # checks it again. Here only the parents matter: the temp file is written next to it.
        target = resolve(
            self._home,
            path,
            create_parents=True,
            clear_files=self._clear_files,
            cleared=self.staged.cleared,
            check_target=False,
            known_dirs=self._known_dirs,
        )
        return os.path.dirname(target), None

    def _write(self, piece: memoryview) -> None:
        if self._fd is None:
            return  # refused: its bytes are skipped
        self._hasher.update(piece)
        try:
            while piece:
                written = os.write(self._fd, piece)
                piece = piece[written:]
        except OSError as e:
            self._drop_current(f"cannot write temp file: {e.strerror or e}")

    def _drop_current(self, reason: str) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _unlink_quietly(self._tmp)
        self.staged.rejected[self._path] = reason

    def _end_file(self) -> None:
        assert self._meta is not None
        self._state = _RECORD
        if self._fd is None:
            return
        if self._hasher.hexdigest() != self._meta.checksum:
            self._drop_current(_MISMATCH)
            return
        try:
            os.fchmod(self._fd, self._meta.mode)
        except OSError as e:
            self._drop_current(f"cannot chmod temp file: {e.strerror or e}")
            return
        os.close(self._fd)
        self._fd = None
        self.staged.files[self._path] = self._tmp
        self._written(self._meta.size)

    def _check_end(self) -> None:
        assert self.header is not None
        got = (len(self._creates), len(self._updates), len(self._deletes), self._content_bytes)
        want = (self.header.create, self.header.update, self.header.delete, self.header.bytes)
        if got != want:
            raise PackError(
                f"stream ended with (create, update, delete, bytes) {got}, announced {want}"
            )

    def finish(self) -> Received:
        """Return the verified result once the end record was consumed.

        :raises PackError: the stream was truncated; everything staged is removed.
        """
        if self._state != _DONE:
            self.abort()
            raise PackError("sync stream truncated before its end record")
        assert self.header is not None
        self._state = _CLOSED
        plan = Plan(
            missing=self._creates,
            shared=self._updates,
            extra=self._deletes,
            files={**self._creates, **self._updates},
        )
        return Received(header=self.header, plan=plan, staged=self.staged)

    def abort(self, reason: str = "") -> None:
        """Stop and remove every temp file written so far (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _unlink_quietly(self._tmp)
        self._block_files, self._block_data = [], []
        self.staged.discard()
        self._state = _CLOSED

"""Wire formats of the integrity sync: a file table, and the files of a plan as one byte stream.

**Table** (worker → master): JSON lines. The first line is ``{"v":1,"type":"table","count":N}``,
then one line per file ``{"p":path,"c":checksum,"s":size,"m":mode}``. Decoding checks every field,
the count, duplicates and caps (line length, entries), so a hostile table costs bounded memory.

**Sync stream** (master → worker): a header line
``{"v":1,"type":"sync","create":A,"update":B,"delete":C,"bytes":N}``, then one
``{"t":"d","p":path}`` line per deletion, then per file a line
``{"t":"f","k":"c"|"u","p":path,"s":size,"c":checksum}`` followed by exactly ``size`` raw bytes,
then ``{"t":"end"}``. The sender reads each file in pieces (:func:`iter_pack`), the receiver writes
each file as it arrives into a temp file in its target directory (:class:`Unpacker`), so neither
side ever holds more than a chunk of content in memory. The total size is known before the first
byte is sent (:func:`packed_size`). A file that changes or vanishes on the master while it is being
sent keeps its declared size (truncated or padded); the receiver sees the checksum mismatch and
rejects just that file, which the next cycle sends again.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future
from json.encoder import encode_basestring_ascii
from typing import Any

from attrs import define, field, frozen

from wazuhcluster.integrity.compare import Plan
from wazuhcluster.integrity.paths import PathRefused, resolve, validate_relpath
from wazuhcluster.integrity.scan import FileMeta, FileTable, checksum_bytes, new_hasher
from wazuhcluster.integrity.table import TEMP_PREFIX, SyncItem

FORMAT_VERSION = 1

#: Longest accepted JSON line (a 1 KiB path may grow six-fold with JSON escapes).
MAX_LINE = 8192

#: Default cap on the number of entries of a decoded table.
DEFAULT_MAX_ENTRIES = 500_000

#: Default cap on one file's size in a sync stream (Wazuh's max_zip_size is 1 GiB for everything).
DEFAULT_MAX_FILE_SIZE = 1 << 30

#: Default cap on the content bytes of one sync stream.
DEFAULT_MAX_TOTAL_BYTES = 1 << 30

#: Default size of the pieces :func:`iter_pack` yields.
DEFAULT_CHUNK_SIZE = 60 * 1024

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

#: A file record exactly as :func:`_file_record` writes it for a path of printable ASCII without
#: quote or backslash (so its JSON needs no escape): such a line is read without the JSON module.
#: Any other line, equally valid JSON, takes the general path.
_PLAIN_FILE_RECORD = re.compile(
    rb'\{"t":"f","k":"([cu])","p":"([\x20\x21\x23-\x5b\x5d-\x7e]*)",'
    rb'"s":(0|[1-9][0-9]{0,18}),"c":"([0-9a-f]{64})"\}'
)
_MAX_MODE = 0o7777


class PackError(ValueError):
    """A table or sync stream is malformed or over a cap; the message says why."""


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


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
    parts = [_line({"v": FORMAT_VERSION, "type": "table", "count": len(table)})]
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
    if header.get("v") != FORMAT_VERSION or header.get("type") != "table":
        raise PackError(f"not a version {FORMAT_VERSION} table header: {header!r}")
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
    header = {"v": FORMAT_VERSION, "type": "sync", "create": a, "update": b, "delete": c}
    return _line({**header, "bytes": plan.transfer_bytes})


def _file_record(kind: str, path: str, size: int, checksum: str) -> bytes:
    """``_line({"t": "f", "k": kind, "p": path, "s": size, "c": checksum})``, byte for byte, at a
    fraction of the cost (the path is escaped by the JSON module's own ASCII string encoder)."""
    quoted = encode_basestring_ascii(path)
    return f'{{"t":"f","k":"{kind}","p":{quoted},"s":{size},"c":"{checksum}"}}\n'.encode("ascii")


def _file_records(plan: Plan) -> Iterator[tuple[str, bytes, FileMeta]]:
    kinds = {p: "c" for p in plan.missing} | {p: "u" for p in plan.shared}
    for path in sorted(kinds):
        meta = plan.files[path]
        yield path, _file_record(kinds[path], path, meta.size, meta.checksum), meta


_END = _line({"t": "end"})


def packed_size(plan: Plan) -> int:
    """The exact number of bytes :func:`iter_pack` yields for ``plan``."""
    total = len(_sync_header(plan)) + len(_END)
    total += sum(len(_line({"t": "d", "p": p})) for p in plan.extra)
    total += sum(len(rec) + meta.size for _, rec, meta in _file_records(plan))
    return total


def iter_pack(home: str, plan: Plan, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the sync stream of ``plan`` in pieces of at most ``chunk_size`` bytes.

    Files are read from ``home`` in pieces while the stream is consumed; memory stays around two
    chunks. A file that vanished or shrank is padded with zeros, one that grew is cut at its
    declared size: framing stays exact, and the receiver rejects that file on its checksum.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    buf = bytearray(_sync_header(plan))
    for path in plan.extra:
        buf += _line({"t": "d", "p": path})
    for path, record, meta in _file_records(plan):
        buf += record
        remaining = meta.size
        fd = _open_source(os.path.join(home, path))
        try:
            while remaining:
                while len(buf) >= chunk_size:
                    yield bytes(buf[:chunk_size])
                    del buf[:chunk_size]
                want = min(remaining, chunk_size - len(buf))
                piece = os.read(fd, want) if fd is not None else b""
                if not piece:
                    # Vanished or shrunk since the scan: pad, the receiver rejects it by checksum.
                    piece = bytes(want)
                buf += piece
                remaining -= len(piece)
        finally:
            if fd is not None:
                os.close(fd)
    buf += _END
    while buf:
        yield bytes(buf[:chunk_size])
        del buf[:chunk_size]


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
    """

    files: dict[str, str] = field(factory=dict)
    rejected: dict[str, str] = field(factory=dict)
    cleared: list[str] = field(factory=list)

    def discard(self) -> None:
        """Remove every temp file still staged."""
        for tmp in self.files.values():
            _unlink_quietly(tmp)
        self.files.clear()


@frozen
class Received:
    """A complete, verified sync stream: the plan it carried and its staged files."""

    header: SyncHeader
    plan: Plan
    staged: Staged


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


_HEADER, _RECORD, _DATA, _DONE, _CLOSED = range(5)

_MISMATCH = "checksum mismatch (changed on the master while sent?)"

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

#: Files up to this size are collected in memory and written by the unpacker's writer (if it has
#: one) in batches; larger ones are written piece by piece as they arrive.
SMALL_FILE = 256 * 1024

#: A batch for the writer is sent once it holds this many bytes (or :data:`BATCH_FILES` files).
BATCH_BYTES = 512 * 1024
BATCH_FILES = 256

#: The syncer is asked for a sync() after each such amount of content handed to the writer
#: (see Unpacker._send_batch).
EARLY_SYNC_BYTES = 8 << 20

#: Batches handed to the writer and not yet written, at most (bounds the memory they hold);
#: enough to keep two writer threads busy.
MAX_BATCHES = 4

#: One small file for the writer: relative path, temp file path, mode, content.
_SmallFile = tuple[str, str, int, bytes]


def write_temp_files(batch: list[_SmallFile]) -> list[tuple[str, str, str | None]]:
    """Create and write each temp file of ``batch`` (the unpacker's writer runs this).

    :return: (path, temp file, None) for each file written, (path, temp file, reason) for each
        that failed (its temp file removed).
    """
    done: list[tuple[str, str, str | None]] = []
    for path, tmp, mode, data in batch:
        try:
            fd = os.open(tmp, _TEMP_FLAGS, 0o600)
        except OSError as e:
            done.append((path, tmp, f"cannot create temp file: {e.strerror or e}"))
            continue
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        except OSError as e:
            os.close(fd)
            _unlink_quietly(tmp)
            done.append((path, tmp, f"cannot write temp file: {e.strerror or e}"))
            continue
        os.close(fd)
        done.append((path, tmp, None))
    return done


class Unpacker:
    """Consume a sync stream incrementally; write each file to a temp file in its target directory.

    Call :meth:`feed` with each piece, then :meth:`finish` for the result; :meth:`abort` removes
    every temp file written so far (also done automatically when a piece is refused). Memory stays
    bounded by :data:`MAX_LINE` plus the piece being fed, plus with a writer about
    ``MAX_BATCHES + 1`` batches of :data:`BATCH_BYTES`. Blocking file I/O: feed it from a thread
    (the worker uses ``wire.streams.ThreadedConsumer``), one call at a time.

    :param writer: if given, small files (up to :data:`SMALL_FILE`) are verified here, collected
        in memory and created and written by ``writer`` in batches, so file creation overlaps the
        parsing and hashing of what follows; :meth:`finish` and :meth:`abort` wait for it.
    :param syncer: if given (with a writer), asked for a ``sync()`` after every
        :data:`EARLY_SYNC_BYTES` handed to the writer, so the data is mostly written out before
        the apply's own ``sync()``; never waited for.
    """

    def __init__(
        self,
        home: str,
        *,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_files: int = DEFAULT_MAX_ENTRIES,
        writer: Executor | None = None,
        syncer: Executor | None = None,
    ) -> None:
        self._home = home
        self._writer = writer
        self._syncer = syncer
        self._early_sync: Future[None] | None = None
        self._batch: list[_SmallFile] = []
        self._batch_bytes = 0
        self._writing: deque[Future[list[tuple[str, str, str | None]]]] = deque()
        # The pieces of the small file being received (None for a file written as it comes).
        self._small: list[bytes] | None = None
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
        # Absolute path of each parent directory already checked (and created) by this unpack.
        self._dir_paths: dict[str, str] = {}
        self._clear_files: frozenset[str] | None = None
        self._temp_names = _TempNames()
        self._creates: dict[str, FileMeta] = {}
        self._updates: dict[str, FileMeta] = {}
        self._content_bytes = 0
        self.staged = Staged()
        # The file being received.
        self._path = ""
        self._meta: FileMeta | None = None
        self._remaining = 0
        self._fd: int | None = None
        self._tmp = ""
        self._hasher = new_hasher()

    def feed(self, data: bytes) -> None:
        """Consume the next piece of the stream.

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
            if self._state == _DATA:
                n = min(self._remaining, end - pos)
                self._write(view[pos : pos + n])
                pos += n
                self._remaining -= n
                if self._remaining == 0:
                    self._end_file()
                continue
            if self._state == _DONE:
                raise PackError("data after the end record")
            nl = data.find(b"\n", pos)
            stop = end if nl < 0 else nl
            if len(self._line) + (stop - pos) > MAX_LINE:
                raise PackError(f"record line longer than {MAX_LINE} bytes")
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
            plain = _PLAIN_FILE_RECORD.fullmatch(line) if self._state == _RECORD else None
            if plain is None:
                self._record(_parse_line(line))
            else:
                kind, path, size, checksum = plain.groups()
                self._begin_file(kind.decode(), path.decode(), int(size), checksum.decode())

    def _record(self, obj: dict[str, Any]) -> None:
        if self._state == _HEADER:
            if obj.get("v") != FORMAT_VERSION or obj.get("type") != "sync":
                raise PackError(f"not a version {FORMAT_VERSION} sync header: {obj!r}")
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
        kind = obj.get("t")
        if kind == "d":
            if self._creates or self._updates:
                raise PackError("a deletion after the first file")
            path = self._claim(obj.get("p"))[0]
            if len(self._deletes) >= self.header.delete:
                raise PackError("more deletions than announced")
            self._deletes.append(path)
        elif kind == "f":
            size = _int_field(obj, "s", self._max_file)
            self._begin_file(obj.get("k"), obj.get("p"), size, _checksum_field(obj))
        elif kind == "end":
            self._check_end()
            self._state = _DONE
        else:
            raise PackError(f"unknown record type {kind!r}")

    def _claim(self, path: object) -> tuple[str, SyncItem]:
        """A path field checked against the table and against the paths already in this
        stream; its item."""
        path, item = _checked_path(path)
        if path in self._seen:
            raise PackError(f"path {path!r} appears twice")
        self._seen.add(path)
        return path, item

    def _begin_file(self, kind: object, raw_path: object, size: int, checksum: str) -> None:
        """Start receiving one file, from the fields of its record (the caller checked the
        checksum's form and that the size is an integer)."""
        assert self.header is not None
        path, item = self._claim(raw_path)
        if size > self._max_file:
            raise PackError(f"field 's' must be an integer in [0, {self._max_file}], got {size}")
        meta = FileMeta(checksum=checksum, size=size, mtime_ns=0, mode=item.mode)
        if kind == "c":
            if len(self._creates) >= self.header.create:
                raise PackError("more files to create than announced")
            self._creates[path] = meta
        elif kind == "u":
            if len(self._updates) >= self.header.update:
                raise PackError("more files to update than announced")
            self._updates[path] = meta
        else:
            raise PackError(f"field 'k' must be 'c' or 'u', got {kind!r}")
        self._content_bytes += size
        if self._content_bytes > self.header.bytes:
            raise PackError("more content than announced")
        self._path, self._meta, self._remaining = path, meta, size
        self._fd = None
        self._small = None
        try:
            self._tmp = self._parent_path(path) + "/" + self._temp_names.next()
            if self._writer is not None and size <= SMALL_FILE:
                self._small = []
            else:
                self._hasher = new_hasher()
                self._fd = os.open(self._tmp, _TEMP_FLAGS, 0o600)
        except PathRefused as e:
            self.staged.rejected[path] = e.reason
        except OSError as e:
            self.staged.rejected[path] = f"cannot create temp file: {e.strerror or e}"
        self._state = _DATA
        if size == 0:
            self._end_file()

    def _parent_path(self, path: str) -> str:
        """The absolute path of ``path``'s parent directory, checked (and created) the first
        time this unpack meets it; the walk is not repeated for the other files in it.

        :raises PathRefused: a parent is a symlink or not a directory.
        """
        parent = path.rpartition("/")[0]
        known = self._dir_paths.get(parent)
        if known is not None:
            return known
        if self._clear_files is None:
            # Deletion records all come before the first file (checked in _record).
            self._clear_files = frozenset(self._deletes)
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
        directory = os.path.dirname(target)
        self._dir_paths[parent] = directory
        return directory

    def _write(self, piece: memoryview) -> None:
        if self._small is not None:
            self._small.append(bytes(piece))  # hashed whole in _end_file
            return
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
        if self._small is not None:
            # One piece (the usual case) is joined without a copy.
            data, self._small = b"".join(self._small), None
            if checksum_bytes(data) != self._meta.checksum:
                self.staged.rejected[self._path] = _MISMATCH
                return
            self._batch.append((self._path, self._tmp, self._meta.mode, data))
            self._batch_bytes += len(data)
            if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_FILES:
                self._send_batch()
            return
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

    def _send_batch(self) -> None:
        """Hand the collected small files to the writer; wait for the oldest batch first if
        :data:`MAX_BATCHES` are still being written."""
        assert self._writer is not None
        if not self._batch:
            return
        while len(self._writing) >= MAX_BATCHES:
            self._collect(self._writing.popleft())
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._writing.append(self._writer.submit(write_temp_files, batch))
        self._unsynced += sum(len(f[3]) for f in batch)
        if self._syncer is not None and self._unsynced >= EARLY_SYNC_BYTES:
            # Start writing the data out now, so the apply's sync() that makes it durable has
            # little left to do. Nobody waits for it (a sync() can take long on a busy disk, and
            # the sender times out a chunk unanswered for 20 s); one at a time.
            if self._early_sync is None or self._early_sync.done():
                self._unsynced = 0
                self._early_sync = self._syncer.submit(os.sync)

    def _collect(self, future: Future[list[tuple[str, str, str | None]]]) -> None:
        """Record what one batch of the writer did."""
        for path, tmp, error in future.result():
            if error is None:
                self.staged.files[path] = tmp
            else:
                self.staged.rejected[path] = error

    def _drain(self) -> None:
        """Write what is collected and wait for the writer to finish every batch."""
        if self._writer is not None:
            self._send_batch()
        while self._writing:
            self._collect(self._writing.popleft())

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
        try:
            self._drain()
        except BaseException:
            self.abort()
            raise
        self._state = _CLOSED
        plan = Plan(
            missing=self._creates,
            shared=self._updates,
            extra=self._deletes,
            files={**self._creates, **self._updates},
        )
        return Received(header=self.header, plan=plan, staged=self.staged)

    def abort(self, reason: str = "") -> None:
        """Stop and remove every temp file written so far (idempotent); waits for the writer."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _unlink_quietly(self._tmp)
        self._batch, self._small = [], None
        while self._writing:
            future = self._writing.popleft()
            try:
                self._collect(future)
            except Exception:
                # The batch failed as a whole: remove whatever of it may have been written.
                pass
        self.staged.discard()
        self._state = _CLOSED

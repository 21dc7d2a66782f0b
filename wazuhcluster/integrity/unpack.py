"""The worker's side of a sync stream: consume it as it arrives, writing each file to a temp file.

The stream's format is described in :mod:`~wazuhcluster.integrity.records`. The
:class:`Unpacker` checks every record against the header, the synced table and the caps as it
arrives; each file goes to a temp file next to its target (:mod:`~wazuhcluster.integrity.staging`),
or into a new directory staged whole (:mod:`~wazuhcluster.integrity.targets`), and the apply
renames them into place only once the whole stream verified. It never holds more than a block
or a chunk of content in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from attrs import frozen

from wazuhcluster.integrity.compare import Plan
from wazuhcluster.integrity.paths import PathRefused
from wazuhcluster.integrity.records import (
    BLOCK_BYTES,
    BLOCK_FILES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_TOTAL_BYTES,
    HEX64,
    MAX_BLOCK_LINE,
    MAX_LINE,
    SMALL_FILE,
    SYNC_VERSION,
    PackError,
    SyncHeader,
    checked_path,
    checksum_field,
    int_field,
    parse_line,
    short_repr,
)
from wazuhcluster.integrity.scan import FileMeta, new_hasher
from wazuhcluster.integrity.staging import (
    TEMP_FLAGS,
    BlockFile,
    Staged,
    TempNames,
    unlink_quietly,
    write_block,
)
from wazuhcluster.integrity.table import SyncItem
from wazuhcluster.integrity.targets import TargetDirs


@frozen
class Received:
    """A complete, verified sync stream: the plan it carried and its staged files."""

    header: SyncHeader
    plan: Plan
    staged: Staged


_HEADER, _RECORD, _DATA, _BLOCK, _DONE, _CLOSED = range(6)

#: The syncer is asked for a sync() after each such amount of content written (see
#: Unpacker._end_block).
EARLY_SYNC_BYTES = 8 << 20


class Unpacker:
    """Consume a sync stream incrementally; write each file to a temp file in its target directory.

    Call :meth:`feed` with each piece, then :meth:`finish` for the result; :meth:`abort` removes
    every temp file written so far (also done automatically when a piece is refused). Memory stays
    bounded by :data:`MAX_BLOCK_LINE` and :data:`BLOCK_BYTES` plus the piece being fed. Each block
    is written as soon as its data is complete. Blocking file I/O: feed it from a thread (the
    worker uses ``wire.stream_consumers.ThreadedConsumer``), one call at a time.

    :param syncer: if given, asked for a ``sync()`` after every :data:`EARLY_SYNC_BYTES` written,
        so the data is mostly written out before the apply's own ``sync()``; never waited for.
    :param on_abort: if given, called with :attr:`staged` after each abort removed what was staged
        (in the aborting thread), so the caller can report ``staged.unremoved``.
    """

    def __init__(
        self,
        home: str,
        *,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_files: int = DEFAULT_MAX_ENTRIES,
        syncer: Executor | None = None,
        on_abort: Callable[[Staged], object] | None = None,
    ) -> None:
        self._syncer = syncer
        self._on_abort = on_abort
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
        self._temp_names = TempNames()
        self._creates: dict[str, FileMeta] = {}
        self._updates: dict[str, FileMeta] = {}
        self._content_bytes = 0
        self.staged = Staged()
        self._dirs = TargetDirs(home, self.staged, self._deletes)
        # The large file being received.
        self._path = ""
        self._meta: FileMeta | None = None
        self._remaining = 0
        self._fd: int | None = None
        self._tmp = ""
        self._hasher = new_hasher()
        # The block being received: its directory (None if refused), the new directory it lies
        # in (see targets.TargetDirs), files and data so far.
        self._block_dir: str | None = None
        self._block_root: str | None = None
        self._block_files: list[BlockFile] = []
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
        obj = parse_line(line)
        kind = obj.get("t")
        if kind != "b" and len(line) > MAX_LINE:
            raise PackError(f"record line longer than {MAX_LINE} bytes")
        if self._state == _HEADER:
            if obj.get("v") != SYNC_VERSION or obj.get("type") != "sync":
                raise PackError(f"not a version {SYNC_VERSION} sync header: {short_repr(obj)}")
            self.header = SyncHeader(
                create=int_field(obj, "create", self._max_files),
                update=int_field(obj, "update", self._max_files),
                delete=int_field(obj, "delete", self._max_files),
                bytes=int_field(obj, "bytes", self._max_total),
            )
            if self.header.create + self.header.update > self._max_files:
                raise PackError(f"more than {self._max_files} files announced")
            self._state = _RECORD
            return
        assert self.header is not None
        if kind == "b":
            self._begin_block(obj)
        elif kind == "f":
            size = int_field(obj, "s", self._max_file)
            self._begin_file(obj.get("k"), obj.get("p"), size, checksum_field(obj))
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
            raise PackError(f"unknown record type {short_repr(kind)}")

    def _claim(self, path: object) -> tuple[str, SyncItem]:
        """A path field checked against the table and against the paths already in this
        stream; its item."""
        path, item = checked_path(path)
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
            raise PackError(f"file kind must be 'c' or 'u', got {short_repr(kind)}")
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
        files: list[BlockFile] = []
        stale: list[str] = []
        offset = 0
        for entry in entries:
            if type(entry) is not list or len(entry) != 4:
                raise PackError(
                    f"a block entry is [kind, name, size, checksum], got {short_repr(entry)}"
                )
            kind, name, size, checksum = entry
            if type(name) is not str or "/" in name:
                raise PackError(
                    f"a block entry names a file of its directory, got {short_repr(name)}"
                )
            path, item = self._claim(f"{directory}/{name}")
            if type(size) is not int or not 0 <= size <= largest:
                raise PackError(
                    f"a block file's size must be in [0, {largest}], got {short_repr(size)}"
                )
            if type(checksum) is not str or not HEX64.match(checksum):
                raise PackError(
                    f"a checksum must be 64 lowercase hex digits, got {short_repr(checksum)}"
                )
            if kind == "C" or kind == "U":
                kind = kind.lower()
                stale.append(path)
            self._announce(kind, path, FileMeta(checksum, size, 0, item.mode))
            files.append((path, name, item.mode, offset, offset + size))
            offset += size
        if offset > BLOCK_BYTES:
            raise PackError(f"a block holds more than {BLOCK_BYTES} bytes")
        stale_set = set(stale)
        self.staged.resend |= stale_set
        self._block_files = [f for f in files if f[0] not in stale_set]
        self._block_data = []
        try:
            self._block_dir, self._block_root = self._dirs.parent_path(files[0][0])
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
            directory, new_dir = self._dirs.parent_path(path)
            name = path.rpartition("/")[2] if new_dir else self._temp_names.next()
            self._tmp = f"{directory}/{name}"
            self._fd = os.open(self._tmp, TEMP_FLAGS, 0o600)
        except PathRefused as e:
            self.staged.rejected[path] = e.reason
        except OSError as e:
            self.staged.rejected[path] = f"cannot create temp file: {e.strerror or e}"
        self._state = _DATA
        if size == 0:
            self._end_file()

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

    def _drop_current(self, reason: str | None) -> None:
        """Remove the large file being received: rejected for ``reason``, or, with None, left
        for the next cycle to send again."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            unlink_quietly(self._tmp)
        if reason is None:
            self.staged.resend.add(self._path)
        else:
            self.staged.rejected[self._path] = reason

    def _end_file(self) -> None:
        assert self._meta is not None
        self._state = _RECORD
        if self._fd is None:
            return
        if self._hasher.hexdigest() != self._meta.checksum:
            # The bytes are guarded on the way (TLS, the stream's SHA-256), so a wrong checksum
            # means the master's file changed (or vanished) between its scan and its reading: a
            # race that heals at the next cycle, like a block's stale file, not a failure.
            self._drop_current(None)
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
            unlink_quietly(self._tmp)
        self._block_files, self._block_data = [], []
        self.staged.discard()
        self._state = _CLOSED
        if self._on_abort is not None:
            self._on_abort(self.staged)

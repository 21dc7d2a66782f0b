"""The master's side of a sync stream: lay out the files of a plan and read them into the stream.

The stream's format is described in :mod:`~wazuhcluster.integrity.records`. Here the files of a
plan are put in stream order, directory by directory, the small ones grouped in blocks
(:func:`packed_size` knows the exact size before the first byte is read), and read into the
stream piece by piece (:func:`iter_pack`).

The master reads a small file whole and checks it against its table before it goes into a block
(by its stat when the scan trusted it, else by hashing it again); one that changed or vanished
since the scan keeps its declared size (cut or padded) and is marked stale. A large file is
checked by the receiver, which hashes it as it arrives. The bytes themselves are protected on the
way by TLS and by the stream's SHA-256 (see ``wire.stream_receiver``). Memory stays around one
block plus a chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from attrs import frozen

from wazuhcluster.integrity.compare import Plan
from wazuhcluster.integrity.records import (
    BLOCK_BYTES,
    BLOCK_FILES,
    SMALL_FILE,
    SYNC_VERSION,
    encode_line,
)
from wazuhcluster.integrity.scan import FileMeta, checksum_bytes

#: Default size of the pieces :func:`iter_pack` yields.
DEFAULT_CHUNK_SIZE = 60 * 1024


def _sync_header(plan: Plan) -> bytes:
    a, b, c = plan.counts
    header = {"v": SYNC_VERSION, "type": "sync", "create": a, "update": b, "delete": c}
    return encode_line({**header, "bytes": plan.transfer_bytes})


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
        return encode_line({"t": "b", "d": self.directory, "f": files})


@frozen
class _LargeFile:
    """A file sent as a record of its own, in pieces."""

    kind: str
    path: str
    meta: FileMeta

    def line(self) -> bytes:
        """The file's record line."""
        meta = self.meta
        return encode_line(
            {"t": "f", "k": self.kind, "p": self.path, "s": meta.size, "c": meta.checksum}
        )


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


_END = encode_line({"t": "end"})


def packed_size(plan: Plan) -> int:
    """The exact number of bytes :func:`iter_pack` yields for ``plan``."""
    total = len(_sync_header(plan)) + len(_END)
    total += sum(len(encode_line({"t": "d", "p": p})) for p in plan.extra)
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
    marked stale, a large one fails the receiver's checksum; either way the receiver leaves it to
    the next cycle.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    buf = bytearray(_sync_header(plan))
    for path in plan.extra:
        buf += encode_line({"t": "d", "p": path})
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

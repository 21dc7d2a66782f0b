"""Local integrity: scan a node's home into a file table, re-hashing only files whose stat changed.

Checksum choice: BLAKE2b with a 32-byte digest (``hashlib.blake2b(digest_size=32)``). Wazuh itself
has used BLAKE2b for cluster integrity since 4.4 (the docs still say MD5); it is as fast as or
faster than MD5 in CPython, is not broken, and 32 bytes keep the table compact. Comparisons between
nodes use only the checksum (and the mode the table prescribes), never mtimes, which differ between
nodes.

Everything here blocks on the file system: the caller runs it in a thread (``deferToThread``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping

from attrs import define, field, frozen

from wazuhcluster.integrity.paths import PathRefused, validate_relpath
from wazuhcluster.integrity.table import (
    SYNC_ITEMS,
    TEMP_PREFIX,
    SyncItem,
    is_excluded_name,
    item_mode,
)

#: Name of the content checksum, for logs and the wire format.
CHECKSUM_NAME = "blake2b-256"

#: Hex length of a checksum.
CHECKSUM_HEX_LEN = 64

#: A file whose mtime is this close to the scan's start may still change within the same timestamp
#: tick without its stat changing (the "racy" case git knows), so it is not trusted for the next
#: scan.
RACY_WINDOW_NS = 2_000_000_000

_READ_SIZE = 256 * 1024

_DIGEST_PREFIX = b"wazuhcluster-table-v1\n"


def new_hasher() -> hashlib.blake2b:
    """A fresh content hasher (BLAKE2b, 32-byte digest)."""
    return hashlib.blake2b(digest_size=32)


def checksum_bytes(data: bytes) -> str:
    """Checksum (hex) of an in-memory content."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


@frozen
class FileMeta:
    """What the integrity sync knows about one file.

    :ivar checksum: BLAKE2b-256 of the content, hex.
    :ivar size: size in bytes.
    :ivar mtime_ns: modification time (ns); a local cache key, never compared between nodes.
    :ivar mode: permission bits on disk (``st_mode & 0o7777``).
    :ivar inode: local cache key; 0 means "do not trust, re-hash at the next scan". Not sent on the
        wire.
    """

    checksum: str
    size: int
    mtime_ns: int
    mode: int
    inode: int = field(default=0, eq=False)


#: Relative path → metadata. Plain dicts; treat them as immutable once built.
FileTable = dict[str, FileMeta]


@define
class ScanStats:
    """Counters of one scan, for logs and tests."""

    files: int = 0
    hashed: int = 0
    reused: int = 0
    hashed_bytes: int = 0
    skipped: list[tuple[str, str]] = field(factory=list)
    errors: list[tuple[str, str]] = field(factory=list)


def _walk_item(
    home: str, item: SyncItem, stats: ScanStats
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield (relpath, entry) for each regular file of ``item``, skipping links and specials."""
    reason = _root_problem(home, item.directory)
    if reason is not None:
        if reason != "missing":
            stats.errors.append((item.directory, reason))
        return
    pending = [item.directory]
    while pending:
        reldir = pending.pop()
        try:
            with os.scandir(os.path.join(home, reldir)) as it:
                entries = list(it)
        except FileNotFoundError:
            continue
        except OSError as e:
            stats.errors.append((reldir, f"cannot list directory: {e.strerror or e}"))
            continue
        for entry in entries:
            relpath = f"{reldir}/{entry.name}"
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    # A directory a sync is still filling (see unpack.Unpacker) is not synced.
                    if item.recursive and not entry.name.startswith(TEMP_PREFIX):
                        pending.append(relpath)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue
            if is_excluded_name(entry.name) or (
                item.names is not None and entry.name not in item.names
            ):
                continue
            yield relpath, entry


def _root_problem(home: str, directory: str) -> str | None:
    """Why an item's directory cannot be scanned: "missing", a symlink on the way, or None.

    A symlinked synced directory is refused like any other symlink: workers refuse to write
    through one, so a master that followed it would ask for a sync no worker can apply.
    """
    current = home
    for part in directory.split("/"):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return "missing"
        except OSError as e:
            return f"cannot stat directory: {e.strerror or e}"
        if not stat.S_ISDIR(st.st_mode):
            return "is a symlink, not scanned" if stat.S_ISLNK(st.st_mode) else "not a directory"
    return None


def _hash_file(path: str) -> tuple[str, os.stat_result, bool]:
    """Hash one file; return (checksum, final stat, whether it stayed unchanged while read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise OSError(f"not a regular file: {path}")
        h = new_hasher()
        while True:
            block = os.read(fd, _READ_SIZE)
            if not block:
                break
            h.update(block)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    stable = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    return h.hexdigest(), after, stable


def scan_tree(
    home: str,
    previous: Mapping[str, FileMeta] | None = None,
    *,
    stats: ScanStats | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> FileTable:
    """Scan every synced item under ``home`` and return the file table.

    A file whose (size, mtime_ns, inode, mode) equals its entry in ``previous`` keeps that entry
    without being read; any other file is hashed. Files that vanish during the scan are left out;
    unreadable files and directories are left out and reported in ``stats.errors``; names that are
    not valid synced paths (bad UTF-8, control characters, too long) are reported in
    ``stats.skipped``.

    :param now_ns: clock used for the racy-timestamp guard (see :data:`RACY_WINDOW_NS`).
    """
    stats = stats if stats is not None else ScanStats()
    previous = previous or {}
    racy_after = now_ns() - RACY_WINDOW_NS
    table: FileTable = {}
    for item in SYNC_ITEMS:
        for relpath, entry in _walk_item(home, item, stats):
            old = previous.get(relpath)
            if old is None:
                # Paths already in the previous table were validated when they were added.
                try:
                    validate_relpath(relpath)
                except PathRefused as e:
                    stats.skipped.append((relpath, e.reason))
                    continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as e:
                stats.errors.append((relpath, f"cannot stat: {e.strerror or e}"))
                continue
            mode = st.st_mode & 0o7777
            if (
                old is not None
                and old.inode != 0
                and (old.size, old.mtime_ns, old.inode, old.mode)
                == (st.st_size, st.st_mtime_ns, st.st_ino, mode)
            ):
                table[relpath] = old
                stats.reused += 1
                continue
            try:
                checksum, st, stable = _hash_file(entry.path)
            except FileNotFoundError:
                continue
            except OSError as e:
                stats.errors.append((relpath, f"cannot read: {e.strerror or e}"))
                continue
            trusted = stable and st.st_mtime_ns < racy_after
            table[relpath] = FileMeta(
                checksum=checksum,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                mode=st.st_mode & 0o7777,
                inode=st.st_ino if trusted else 0,
            )
            stats.hashed += 1
            stats.hashed_bytes += st.st_size
    stats.files = len(table)
    return table


def as_synced(table: Mapping[str, FileMeta]) -> FileTable:
    """The table with every mode replaced by the mode the synced table prescribes.

    This is what a worker that is in sync with this (master) table looks like: the master's own file
    modes do not matter, the worker always gets the table's mode.
    """
    out: FileTable = {}
    for relpath, meta in table.items():
        mode = item_mode(relpath)
        out[relpath] = meta if mode is None or mode == meta.mode else _with_mode(meta, mode)
    return out


def _with_mode(meta: FileMeta, mode: int) -> FileMeta:
    return FileMeta(meta.checksum, meta.size, meta.mtime_ns, mode, meta.inode)


def table_digest(table: Mapping[str, FileMeta]) -> str:
    """A stable, order-independent SHA-256 (hex) over every (path, checksum, mode) of a table.

    Two tables have the same digest exactly when they hold the same paths with the same contents and
    modes (sizes and mtimes are left out: the checksum covers the content, mtimes differ between
    nodes). The master compares ``table_digest(as_synced(master_table))`` with the digest a worker
    sends of its own table, so an unchanged worker costs one string comparison.
    """
    lines = [f"{p}\x00{m.checksum}\x00{m.mode:o}\n" for p, m in sorted(table.items())]
    text = "".join(lines).encode("utf-8", "surrogateescape")
    return hashlib.sha256(_DIGEST_PREFIX + text).hexdigest()


def master_digest(table: Mapping[str, FileMeta]) -> str:
    """The digest an in-sync worker's table has: ``table_digest(as_synced(table))``, computed
    without building the intermediate table."""
    lines = []
    for path, meta in sorted(table.items()):
        mode = item_mode(path)
        lines.append(f"{path}\x00{meta.checksum}\x00{meta.mode if mode is None else mode:o}\n")
    text = "".join(lines).encode("utf-8", "surrogateescape")
    return hashlib.sha256(_DIGEST_PREFIX + text).hexdigest()


def scan_with_digest(
    home: str,
    previous: Mapping[str, FileMeta] | None,
    stats: ScanStats,
    digest: Callable[[Mapping[str, FileMeta]], str] = table_digest,
) -> tuple[FileTable, str]:
    """Scan ``home`` and digest the table in one call, so one thread job does both."""
    table = scan_tree(home, previous, stats=stats)
    return table, digest(table)

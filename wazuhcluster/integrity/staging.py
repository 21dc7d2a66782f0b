"""The worker's temp files and temp directories of a sync: writing, tracking and removing them.

The unpacker writes each received file to a temp file next to its target (a whole block's files
at once with :func:`write_block`), and a directory the worker does not have yet to a temp
directory beside it; :class:`Staged` keeps them until the apply renames them into place, or
removes them. Every name starts with :data:`~wazuhcluster.integrity.table.TEMP_PREFIX`, so the
scan never syncs one and the start-up cleanup finds what an interrupted sync left.
"""

from __future__ import annotations

import os
import secrets
import shutil

from attrs import define, field

from wazuhcluster.integrity.table import TEMP_PREFIX

#: How a temp file is created: new (never an existing file or a symlink), write-only.
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@define
class Staged:
    """Files an :class:`~wazuhcluster.integrity.unpack.Unpacker` wrote to temp files, waiting to
    be renamed into place.

    :ivar files: relative path → absolute path of its verified temp file (already chmod'ed).
    :ivar rejected: relative path → why it was not staged (blocked path, unwritable temp
        file, ...).
    :ivar resend: paths that changed on the master since its scan while it sent them (a small
        file the master marked stale, a large one whose checksum did not match): not staged, and
        not a failure, since the next cycle sends their new content.
    :ivar cleared: paths to delete that were deleted early, because a directory had to be created
        where they stood.
    :ivar new_dirs: relative directory that does not exist yet → absolute temp directory that
        holds its files (under their own names, in ``files`` too) and subdirectories, to be
        renamed into place whole: one rename for all its files.
    :ivar unremoved: absolute temp directory → why it could not be removed (left for the caller
        to report; the start-up cleanup tries again).
    """

    files: dict[str, str] = field(factory=dict)
    rejected: dict[str, str] = field(factory=dict)
    resend: set[str] = field(factory=set)
    cleared: list[str] = field(factory=list)
    new_dirs: dict[str, str] = field(factory=dict)
    unremoved: dict[str, str] = field(factory=dict)

    def new_dir_of(self, reldir: str) -> str | None:
        """The directory of ``new_dirs`` that ``reldir`` is, or lies in; None if none."""
        while reldir:
            if reldir in self.new_dirs:
                return reldir
            reldir = reldir.rpartition("/")[0]
        return None

    def remove_temp_dir(self, temp_dir: str) -> None:
        """Remove a temp directory of this sync; if it cannot be, note why in ``unremoved``."""
        error = remove_temp_tree(temp_dir)
        if error is not None:
            self.unremoved[temp_dir] = error

    def discard(self) -> None:
        """Remove every temp file and temp directory still staged."""
        for tmp in self.files.values():
            unlink_quietly(tmp)
        self.files.clear()
        for temp_dir in self.new_dirs.values():
            self.remove_temp_dir(temp_dir)
        self.new_dirs.clear()


def remove_temp_tree(path: str) -> str | None:
    """Remove a temp directory of ours and everything in it (never following a symlink).

    :return: None once it is gone (or was already), else why it could not be removed.
    """
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        return str(e)
    return None


def unlink_quietly(path: str) -> None:
    """Remove a file; quietly if it is gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def temp_name() -> str:
    """A fresh temp file name, recognisable by :data:`TEMP_PREFIX` and never synced."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"


class TempNames:
    """Temp file names for one unpack: a random prefix drawn once, then a counter (as unlikely to
    collide as :func:`temp_name`, at a fraction of its cost per file)."""

    def __init__(self) -> None:
        self._prefix = f"{TEMP_PREFIX}{secrets.token_hex(6)}-"
        self._count = 0

    def next(self) -> str:
        """The next name."""
        self._count += 1
        return f"{self._prefix}{self._count:x}.tmp"


#: One file of a received block: relative path, temp file name, mode, and where its content
#: starts and ends in the block's data.
BlockFile = tuple[str, str, int, int, int]

#: What was done with one file of a block: relative path, temp file path, None or why it failed.
_Written = tuple[str, str, str | None]


def write_block(directory: str, files: list[BlockFile], pieces: list[memoryview]) -> list[_Written]:
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
        fd = os.open(name, TEMP_FLAGS, 0o600, dir_fd=dir_fd)
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

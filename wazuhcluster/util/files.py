"""Writing a file so that readers see the old content or the new, never a mix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(
    path: Path, data: bytes, mode: int = 0o640, *, skip_identical: bool = False
) -> os.stat_result:
    """Write ``data`` to ``path`` with ``mode``: a temp file in the same folder, fsync, rename,
    then fsync of the folder so the rename survives a crash.

    With ``skip_identical`` an identical file (same bytes and mode) is left alone, so periodic
    rebuilds do not touch unchanged files (and the integrity scan does not re-hash them).
    Returns the stat of the file now at ``path``; for a write it is taken before the rename,
    so it describes this write even if another writer replaces the file right after.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if skip_identical:
        try:
            current = path.stat()
            if (current.st_mode & 0o7777) == mode and path.read_bytes() == data:
                return current
        except OSError:
            pass
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            written = os.fstat(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return written


def fsync_directory(folder: Path) -> None:
    """Make renames in ``folder`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

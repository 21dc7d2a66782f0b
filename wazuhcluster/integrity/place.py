"""Moving a verified temp file onto its synced path: the one rename every sync goes through.

The unpacker writes each file to a temp file in its target directory. A temp file is renamed
over its target only once its content is durable (a ``sync()`` that started after it was
written, or its own ``fsync``), so after a crash each file is either old or new. The worker's
syncer thread places files this way while the stream is still arriving
(:func:`sync_then_place`); :func:`wazuhcluster.integrity.apply.apply_plan` places the rest.

Blocking: run it in a thread.
"""

from __future__ import annotations

import os

from wazuhcluster.integrity.paths import PathRefused, resolve_for_rename

# Indirection so tests can simulate a crash between two renames.
_replace = os.replace


def place_file(home: str, path: str, tmp: str, checked_dirs: set[str]) -> tuple[str, bool]:
    """Rename the temp file ``tmp`` over synced file ``path`` under ``home``.

    :param checked_dirs: parent directories (relative) already walked by this caller, as for
        :func:`~wazuhcluster.integrity.paths.resolve_for_rename`.
    :return: the target's directory, and whether a file stood at the target before.
    :raises PathRefused: the path or the tree does not allow it, or ``tmp`` is not in the
        target's directory.
    :raises OSError: the rename failed.
    """
    target, existed = resolve_for_rename(home, path, checked_dirs)
    directory = target.rpartition("/")[0]
    if directory != tmp.rpartition("/")[0]:
        raise PathRefused(path, "staged outside its target directory")
    _replace(tmp, target)
    return directory, existed


def sync_then_place(home: str, files: list[tuple[str, str]]) -> list[tuple[str, str, bool | None]]:
    """``sync()``, then place each (path, temp file) of ``files``, all written before the call.

    A file that cannot be placed now (its target is a directory that a deletion still to come
    may empty, say) is left staged for the apply, which decides.

    :return: (path, temp file, whether a file stood at the target) for each file placed, and
        (path, temp file, None) for each left staged.
    """
    os.sync()
    checked_dirs: set[str] = set()
    done: list[tuple[str, str, bool | None]] = []
    for path, tmp in files:
        try:
            _, existed = place_file(home, path, tmp, checked_dirs)
        except (PathRefused, OSError):
            done.append((path, tmp, None))
            continue
        done.append((path, tmp, existed))
    return done

"""Path safety for the integrity sync: a relative path from the network becomes a file path under
the home only after it has been proven to stay inside a synced directory.

Two layers:

- :func:`validate_relpath` is pure string checking (no ``..``, no absolute path, no NUL, bounded
  length, valid UTF-8, a member of the synced table).
- :func:`resolve` walks the real directory tree below the home with ``lstat`` on every existing
  component, so a symlink (or any non-directory) planted on the way cannot redirect a write or a
  delete.
"""

from __future__ import annotations

import functools
import os
import re
import stat

from wazuhcluster.integrity.table import TEMP_PREFIX, SyncItem, item_for

#: Longest accepted relative path, in UTF-8 bytes (well under PATH_MAX once joined to the home).
MAX_RELPATH_BYTES = 1024

#: Longest accepted single path component, in UTF-8 bytes (NAME_MAX on Linux).
MAX_COMPONENT_BYTES = 255

#: Mode of directories the sync creates (group-writable, like Wazuh's 0o770 for created parents).
DIR_MODE = 0o770


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PathRefused(ValueError):
    """A relative path was refused; the message says why."""

    def __init__(self, relpath: object, reason: str) -> None:
        super().__init__(f"refused path {relpath!r}: {reason}")
        self.relpath = relpath
        self.reason = reason


def validate_relpath(relpath: object) -> SyncItem:
    """Check that ``relpath`` is a canonical relative path of a synced file; return its item.

    The checks of the parent directory are cached: a sync or a scan meets thousands of files in
    a few directories, so a path costs about the checks of its file name.

    :raises PathRefused: with the reason, for anything else.
    """
    if not isinstance(relpath, str):
        raise PathRefused(relpath, "not a string")
    if not relpath:
        raise PathRefused(relpath, "empty")
    if relpath[0] == "/":
        raise PathRefused(relpath, "absolute")
    parent, _, name = relpath.rpartition("/")
    problem = _component_problem(name) or (_parent_problem(parent) if parent else None)
    if problem is not None:
        raise PathRefused(relpath, problem)
    # Every component is valid UTF-8 by now; fewer than a quarter of the limit in characters
    # cannot exceed it in bytes.
    if len(relpath) > MAX_RELPATH_BYTES // 4 and len(relpath.encode()) > MAX_RELPATH_BYTES:
        raise PathRefused(relpath, f"longer than {MAX_RELPATH_BYTES} bytes")
    item = item_for(relpath)
    if item is None:
        raise PathRefused(relpath, "not in the synced table")
    return item


def _component_problem(part: str) -> str | None:
    """Why one component of a relative path is refused, or None."""
    if part in ("", ".", ".."):
        return f"component {part!r} not allowed"
    if part.startswith(TEMP_PREFIX):
        return f"names starting with {TEMP_PREFIX!r} are the sync's own temp files"
    if _CONTROL.search(part):
        return "contains NUL or a control character"
    if part.isascii():
        size = len(part)
    else:
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            return "not valid UTF-8"
    if size > MAX_COMPONENT_BYTES:
        return f"component longer than {MAX_COMPONENT_BYTES} bytes"
    return None


@functools.lru_cache(maxsize=16384)
def _parent_problem(parent: str) -> str | None:
    """Why a (non-empty, relative) parent directory is refused, or None (cached; a key is at
    most MAX_RELPATH_BYTES, so the cache stays under about 20 MB whatever the input)."""
    for part in parent.split("/"):
        problem = _component_problem(part)
        if problem is not None:
            return problem
    return None


def resolve(
    home: str,
    relpath: str,
    *,
    create_parents: bool = False,
    clear_files: frozenset[str] = frozenset(),
    cleared: list[str] | None = None,
    replace_empty_dir: bool = False,
    check_target: bool = True,
    known_dirs: set[str] | None = None,
) -> str:
    """Return the absolute path of synced file ``relpath`` under ``home``, checking the tree on the
    way.

    Every existing parent component below ``home`` must be a real directory (``lstat``: a symlink is
    refused even if it points to a directory). The final component may be missing or a regular file
    or a symlink (a rename or unlink replaces the link itself, never its target); anything else is
    refused.

    :param create_parents: create missing parent directories (mode :data:`DIR_MODE`).
    :param clear_files: relative paths of regular files that are about to be deleted anyway; if one
        of them stands where a parent directory must be created, it is removed first.
    :param cleared: receives the relative path of every file removed because of ``clear_files``.
    :param replace_empty_dir: if the target itself is a directory holding nothing but empty
        directories, remove it (a file replaces it).
    :param check_target: inspect the final component; when False only the parents are checked (the
        caller writes next to the target, not through it).
    :param known_dirs: parent directories (relative) already checked by this caller; the walk is
        skipped for them, and the parent of ``relpath`` is added after a successful walk. Only
        for a short-lived batch (one unpack), as the tree may change afterwards.
    :raises PathRefused: when the path is invalid or the tree does not allow it.
    :raises OSError: on I/O errors other than a missing component.
    """
    validate_relpath(relpath)
    parts = relpath.split("/")
    parent = relpath.rpartition("/")[0]
    if known_dirs is not None and parent in known_dirs:
        return _check_target(relpath, os.path.join(home, relpath), check_target, replace_empty_dir)
    current = home
    walked: list[str] = []
    for part in parts[:-1]:
        current = os.path.join(current, part)
        walked.append(part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create_parents:
                # Nothing exists below here, so nothing can redirect us; the caller sees ENOENT
                # later.
                return os.path.join(home, *parts)
            os.mkdir(current, DIR_MODE)
            st = os.lstat(current)
        if stat.S_ISREG(st.st_mode) and "/".join(walked) in clear_files and create_parents:
            os.unlink(current)
            if cleared is not None:
                cleared.append("/".join(walked))
            os.mkdir(current, DIR_MODE)
            st = os.lstat(current)
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise PathRefused(relpath, f"parent {'/'.join(walked)!r} is {kind}")
    if known_dirs is not None:
        known_dirs.add(parent)
    return _check_target(relpath, os.path.join(current, parts[-1]), check_target, replace_empty_dir)


def _check_target(relpath: str, target: str, check_target: bool, replace_empty_dir: bool) -> str:
    """The final-component check of :func:`resolve`."""
    if not check_target:
        return target
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return target
    if stat.S_ISDIR(st.st_mode) and replace_empty_dir:
        if not _remove_empty_tree(target):
            raise PathRefused(relpath, "target is a directory that holds files")
        return target
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise PathRefused(relpath, "target exists and is not a regular file")
    return target


def _remove_empty_tree(path: str) -> bool:
    """Remove a directory tree that holds only directories; False if anything else is inside."""
    for root, dirs, files in os.walk(path, topdown=False, followlinks=False):
        if files:
            return False
        for name in dirs:
            try:
                os.rmdir(os.path.join(root, name))  # a symlink here fails with ENOTDIR
            except OSError:
                return False
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True

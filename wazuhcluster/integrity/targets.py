"""Where the unpacker writes the files of each directory: the real one, or a staged new one.

A file's parent directory is checked (no symlink on the way) and created if needed the first time
an unpack meets it, and the answer is kept for the other files in it. A directory the worker does
not have yet (a new group, or every folder of a worker that joins), just below one it has, is
staged whole instead: its files are written under their own names, and its subdirectories made,
in a temp directory beside it, which the apply renames into place at once.
"""

from __future__ import annotations

import os
import secrets
import stat

from wazuhcluster.integrity.paths import DIR_MODE, PathRefused, resolve
from wazuhcluster.integrity.staging import Staged
from wazuhcluster.integrity.table import TEMP_PREFIX, item_for_directory


class TargetDirs:
    """The target directories of one unpack.

    :param staged: where a new directory staged whole is recorded (``new_dirs``), and the paths
        deleted early to make room for a directory (``cleared``).
    :param deletes: the paths the stream deletes; the list may still grow until the first
        directory is checked (every deletion record comes before the first file).
    """

    def __init__(self, home: str, staged: Staged, deletes: list[str]) -> None:
        self._home = home
        self._staged = staged
        self._deletes = deletes
        self._clear_files: frozenset[str] | None = None
        self._known_dirs: set[str] = set()
        # Where each parent directory met by this unpack is written (see parent_path).
        self._dir_paths: dict[str, tuple[str, str | None]] = {}

    def parent_path(self, path: str) -> tuple[str, str | None]:
        """Where the files of ``path``'s parent directory are written, checked (and created) the
        first time this unpack meets it; the walk is not repeated for the other files in it.

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
        root = self._staged.new_dir_of(parent)
        if root is None:
            return None
        directory = self._staged.new_dirs[root] + parent[len(root) :]
        os.makedirs(directory, DIR_MODE, exist_ok=True)  # inside our own temp directory
        return directory, root

    def _checked_dir(self, path: str) -> tuple[str, str | None]:
        """``path``'s parent in the tree: walked (no symlink on the way), created if needed, or
        staged whole when it is the one missing directory."""
        if self._clear_files is None:
            # Deletion records all come before the first file (checked by the unpacker).
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
            self._staged.new_dirs[parent] = temp_dir
            return temp_dir, parent
        # The target itself may still be a directory of files about to be deleted; apply_plan
        # checks it again. Here only the parents matter: the temp file is written next to it.
        target = resolve(
            self._home,
            path,
            create_parents=True,
            clear_files=self._clear_files,
            cleared=self._staged.cleared,
            check_target=False,
            known_dirs=self._known_dirs,
        )
        return os.path.dirname(target), None


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

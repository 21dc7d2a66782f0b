"""Apply a received plan on a worker: rename staged files into place, delete extras, tidy up.

Each file was written by the :class:`~wazuhcluster.integrity.unpack.Unpacker` to a temp file in its
target directory with the table's mode. Here each temp file is made durable and renamed over its
target (``os.replace``, atomic, relative to the directory opened once after its walk), so an
interrupted apply leaves every file either old or new; then the directories are fsynced so an
acknowledged sync survives a crash. Leftover temp files of an interrupted sync are recognised by
their prefix and removed by :func:`cleanup_temp_files`.

Blocking: run it in a thread.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator, Mapping

from attrs import frozen

from wazuhcluster.integrity.compare import Plan
from wazuhcluster.integrity.paths import PathRefused, resolve, validate_relpath
from wazuhcluster.integrity.staging import Staged
from wazuhcluster.integrity.table import SYNC_ITEMS, TEMP_PREFIX, item_for, item_for_directory

# Indirection so tests can simulate a crash between two renames.
_replace = os.replace

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

#: Above this many staged files, one sync() replaces the per-file fsyncs.
SYNC_ALL_THRESHOLD = 256


@frozen
class ApplyResult:
    """What an apply did.

    :ivar created: paths placed that the plan had as missing on the worker.
    :ivar updated: paths placed that the plan had as differing (content or mode replaced).
    :ivar deleted: paths removed.
    :ivar removed_dirs: empty subdirectories removed after deletions.
    :ivar failed: path → reason, for every file that could not be created, updated or deleted
        (including files the unpacker rejected).
    :ivar ruleset_changed: whether a created, updated or deleted path belongs to a ruleset item.
    :ivar resend: paths that changed on the master while it sent them; the next cycle sends them
        (not failures: a busy master file such as client.keys is often one).
    """

    created: tuple[str, ...]
    updated: tuple[str, ...]
    deleted: tuple[str, ...]
    removed_dirs: tuple[str, ...]
    failed: Mapping[str, str]
    ruleset_changed: bool
    resend: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether anything on disk changed."""
        return bool(self.created or self.updated or self.deleted or self.removed_dirs)

    def describe(self) -> str:
        """A one-line summary for the log."""
        return (
            f"created {len(self.created)}, updated {len(self.updated)}, "
            f"deleted {len(self.deleted)}, failed {len(self.failed)}"
        )


def _fsync_path(path: str, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        _fsync_path(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (FileNotFoundError, NotADirectoryError):
        pass  # removed (or replaced by a file) since: its parent is synced instead


def _remove_empty_parents(home: str, relpath: str, removed: list[str], dirty: set[str]) -> None:
    """Remove the now-empty directories between ``relpath``'s parent and its item's root."""
    item = item_for(relpath)
    if item is None or not item.remove_empty_subdirs:
        return
    reldir = relpath.rpartition("/")[0]
    while reldir != item.directory and reldir.startswith(item.directory + "/"):
        absdir = os.path.join(home, reldir)
        try:
            if not stat.S_ISDIR(os.lstat(absdir).st_mode):
                return
            os.rmdir(absdir)
        except OSError:
            return  # not empty (or gone): the directories above are not empty either
        removed.append(reldir)
        reldir = reldir.rpartition("/")[0]
        dirty.add(os.path.join(home, reldir))


def apply_plan(home: str, plan: Plan, staged: Staged, *, durable: bool = True) -> ApplyResult:
    """Delete ``plan.extra``, then move every staged file of ``plan`` into place.

    Deletions go first so a file can replace a directory that only held deleted files, and the
    other way round. Every path is checked again against the table and the tree (``resolve``).

    :param durable: make file contents durable before their rename and the touched directories
        durable afterwards: one fsync per file, or a single ``sync()`` when more than
        :data:`SYNC_ALL_THRESHOLD` files are staged (far cheaper than thousands of fsyncs).
    """
    failed: dict[str, str] = dict(staged.rejected)
    dirty_dirs: set[str] = set()
    deleted: list[str] = []
    removed_dirs: list[str] = []
    for path in plan.extra:
        if path in staged.cleared:
            deleted.append(path)
            continue
        try:
            target = resolve(home, path)
            os.unlink(target)
        except FileNotFoundError:
            continue
        except PathRefused as e:
            failed[path] = e.reason
            continue
        except OSError as e:
            failed[path] = f"cannot delete: {e.strerror or e}"
            continue
        deleted.append(path)
        dirty_dirs.add(os.path.dirname(target))
    for path in deleted:
        _remove_empty_parents(home, path, removed_dirs, dirty_dirs)

    fsync_each = durable and len(staged.files) <= SYNC_ALL_THRESHOLD
    if durable and not fsync_each:
        os.sync()
    updates = frozenset(plan.shared)
    created: list[str] = []
    updated: list[str] = []
    # New directories staged whole: one rename puts all their files in place.
    members: dict[str, list[str]] = {reldir: [] for reldir in staged.new_dirs}
    roots: dict[str, str | None] = {}  # parent directory → its new directory, if any
    for path in plan.files:
        if path in staged.files:
            parent = path.rpartition("/")[0]
            if parent not in roots:
                roots[parent] = staged.new_dir_of(parent)
            root = roots[parent]
            if root is not None:
                members[root].append(path)
    for reldir, temp_dir in sorted(staged.new_dirs.items()):
        paths = members[reldir]
        for path in paths:
            del staged.files[path]
        error = _place_new_dir(home, reldir, temp_dir, paths, fsync_each)
        if error is not None:
            staged.remove_temp_dir(temp_dir)
            failed.update(dict.fromkeys(paths, error))
            continue
        for path in paths:
            (updated if path in updates else created).append(path)
        dirty_dirs.add(os.path.dirname(os.path.join(home, reldir)))
    staged.new_dirs.clear()
    # Each parent directory is walked (lstat per component) and opened once, not once per file;
    # the renames are made relative to it, so a parent swapped for a symlink afterwards cannot
    # redirect them.
    checked_dirs: set[str] = set()
    placed = frozenset(created) | frozenset(updated)
    for paths in _by_parent(sorted(plan.files)):
        received: list[tuple[str, str]] = []
        for path in paths:
            tmp = staged.files.pop(path, None)
            if tmp is None:
                if path not in placed and path not in staged.resend:
                    failed.setdefault(path, "not received")
            else:
                received.append((path, tmp))
        if not received:
            continue
        try:
            target = resolve(home, received[0][0], check_target=False, known_dirs=checked_dirs)
            directory = target.rpartition("/")[0]
            dir_fd = os.open(directory, _DIR_FLAGS)
        except (PathRefused, OSError) as e:
            reason = e.reason if isinstance(e, PathRefused) else f"cannot rename: {e.strerror or e}"
            for path, tmp in received:
                failed[path] = reason
                _unlink_quietly(tmp)
            continue
        try:
            for path, tmp in received:
                error = _place(home, path, tmp, directory, dir_fd, fsync_each, checked_dirs)
                if error is not None:
                    failed[path] = error
                    _unlink_quietly(tmp)
                    continue
                (updated if path in updates else created).append(path)
        finally:
            os.close(dir_fd)
        dirty_dirs.add(directory)
    # Temp files staged for paths that are not in the plan are not ours to place.
    staged.discard()
    created.sort()
    updated.sort()

    if durable:
        for directory in sorted(dirty_dirs):
            _fsync_dir(directory)
    # Every touched path passed validate_relpath, so its directory's item is its own.
    touched_dirs = {p.rpartition("/")[0] for p in (*created, *updated, *deleted)}
    ruleset = any(
        (item := item_for_directory(d)) is not None and item.ruleset for d in touched_dirs
    )
    return ApplyResult(
        created=tuple(created),
        updated=tuple(updated),
        deleted=tuple(deleted),
        removed_dirs=tuple(removed_dirs),
        failed=failed,
        ruleset_changed=ruleset,
        resend=tuple(sorted(staged.resend)),
    )


def _place_new_dir(
    home: str, reldir: str, temp_dir: str, paths: list[str], fsync_each: bool
) -> str | None:
    """Rename the temp directory holding the whole of the new directory ``reldir`` (its files
    of the plan: ``paths``) into place; None, or why it could not be (something stands there
    now, a parent is not a real directory...)."""
    if not paths:
        return "nothing of the plan in it"  # every file of it was rejected: nothing to place
    target = os.path.join(home, reldir)
    try:
        # The parents above ``reldir``: real directories, no symlink on the way (the walk stops
        # at ``reldir`` itself, which should not exist yet).
        resolve(home, paths[0], check_target=False)
        if os.path.dirname(temp_dir) != os.path.dirname(target):
            raise PathRefused(reldir, "staged elsewhere")
        if fsync_each:
            for root, _dirs, names in os.walk(temp_dir):
                for name in names:
                    _fsync_path(os.path.join(root, name))
                _fsync_dir(root)
        # A rename never replaces a directory that holds anything, nor follows a symlink.
        os.rename(temp_dir, target)
    except PathRefused as e:
        return f"cannot place new directory {reldir!r}: {e.reason}"
    except OSError as e:
        return f"cannot place new directory {reldir!r}: {e.strerror or e}"
    return None


def _by_parent(paths: list[str]) -> Iterator[list[str]]:
    """``paths`` (sorted) in runs that share a parent directory."""
    run: list[str] = []
    parent = None
    for path in paths:
        here = path.rpartition("/")[0]
        if run and here != parent:
            yield run
            run = []
        parent = here
        run.append(path)
    if run:
        yield run


def _place(
    home: str,
    path: str,
    tmp: str,
    directory: str,
    dir_fd: int,
    fsync_each: bool,
    checked_dirs: set[str],
) -> str | None:
    """Rename the temp file ``tmp`` onto ``path`` in ``directory`` (open as ``dir_fd``); None, or
    why it was not placed."""
    try:
        validate_relpath(path)
        tmp_dir, _, tmp_name = tmp.rpartition("/")
        if tmp_dir != directory:
            raise PathRefused(path, "staged outside its target directory")
        if fsync_each:
            _fsync_path(tmp)
        name = path.rpartition("/")[2]
        try:
            # The rename replaces a file, a symlink (never its target) or a special file.
            _replace(tmp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except IsADirectoryError:
            # A directory stands there: only one that holds nothing but empty directories
            # (left by this sync's deletions) gives way.
            resolve(home, path, replace_empty_dir=True, known_dirs=checked_dirs)
            _replace(tmp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except PathRefused as e:
        return e.reason
    except OSError as e:
        return f"cannot rename: {e.strerror or e}"
    return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def cleanup_temp_files(home: str) -> list[str]:
    """Remove temp files and temp directories (new directories being staged whole) an
    interrupted sync left in the synced directories; return their paths.

    Only call it while no sync is being received (the unpacker's own temp files look the same).
    Symlinked directories are not followed.
    """
    removed: list[str] = []
    for item in SYNC_ITEMS:
        pending = [item.directory]
        while pending:
            reldir = pending.pop()
            try:
                with os.scandir(os.path.join(home, reldir)) as it:
                    entries = list(it)
            except OSError:
                continue
            for entry in entries:
                try:
                    ours = entry.name.startswith(TEMP_PREFIX)
                    if entry.is_dir(follow_symlinks=False):
                        if ours:
                            # A new directory that was being staged whole.
                            shutil.rmtree(entry.path)
                            removed.append(f"{reldir}/{entry.name}")
                        elif item.recursive:
                            pending.append(f"{reldir}/{entry.name}")
                    elif ours and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                        removed.append(f"{reldir}/{entry.name}")
                except OSError:
                    continue
    return removed

"""The synced-items table: which files under a node's home the master pushes to its workers.

This is our equivalent of the ``files`` section of Wazuh's ``cluster.json``. It is the one place
that knows which directories are synced, with which permissions, and whether a change there means
the ruleset must be reloaded. Every other integrity module asks this table; nothing else hard-codes
paths.

Paths handled here are *relative paths*: POSIX, relative to the node's home, using ``/`` as
separator, without ``.``/``..``/empty components (see
:func:`wazuhcluster.integrity.paths.validate_relpath`).
"""

from __future__ import annotations

import functools

from attrs import frozen

#: Prefix of every temporary file the integrity sync writes. Names with this prefix are never synced
#: and are removed by :func:`wazuhcluster.integrity.apply.cleanup_temp_files` after an interrupted
#: sync.
TEMP_PREFIX = ".wcsync-"

#: File names that are never synced, wherever they are.
EXCLUDED_NAMES = frozenset({"wazuh-manager.conf"})

#: Name suffixes that are never synced (editor backups, temp and lock files).
EXCLUDED_SUFFIXES = ("~", ".tmp", ".lock", ".swp")


@frozen
class SyncItem:
    """One synced directory.

    :ivar directory: the directory, relative to the home, without trailing slash (``etc/shared``).
    :ivar names: the only file names synced in ``directory`` itself, or ``None`` for every file.
    :ivar recursive: whether files in subdirectories are synced too.
    :ivar mode: the permission bits a synced file gets on the worker.
    :ivar remove_empty_subdirs: whether a subdirectory left empty after deletions is removed.
    :ivar ruleset: whether a change here means the analysis engine must reload its ruleset.
    """

    directory: str
    names: frozenset[str] | None
    recursive: bool
    mode: int
    remove_empty_subdirs: bool
    ruleset: bool = False


#: Every synced item. Wazuh 4.x synced rules/decoders/lists with the ruleset; 5.x dropped them, we
#: keep them.
SYNC_ITEMS: tuple[SyncItem, ...] = (
    SyncItem("etc", frozenset({"client.keys", "authd.pass"}), False, 0o640, False),
    SyncItem("etc/shared", None, True, 0o660, True),
    SyncItem("var/multigroups", None, True, 0o660, True),
    SyncItem("etc/rules", None, True, 0o660, False, ruleset=True),
    SyncItem("etc/decoders", None, True, 0o660, False, ruleset=True),
    SyncItem("etc/lists", None, True, 0o660, False, ruleset=True),
    SyncItem("etc/sca", None, True, 0o660, False),
)

# Longest directory first, so that ``etc/shared/x`` maps to ``etc/shared`` and not to ``etc``.
_BY_SPECIFICITY = tuple(sorted(SYNC_ITEMS, key=lambda i: i.directory.count("/"), reverse=True))


def is_excluded_name(name: str) -> bool:
    """Whether a file name is never synced (excluded name, excluded suffix, or one of our temp
    files)."""
    return (
        name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES) or name.startswith(TEMP_PREFIX)
    )


def item_for(relpath: str) -> SyncItem | None:
    """The item a relative file path belongs to, or ``None`` if that path is not synced.

    ``relpath`` is expected to be canonical already (see ``paths.validate_relpath``); this function
    only answers the question of membership: right directory, right depth, allowed name.
    """
    directory, _, name = relpath.rpartition("/")
    if not name or is_excluded_name(name):
        return None
    item = item_for_directory(directory)
    if item is None or (item.names is not None and name not in item.names):
        return None
    return item


@functools.lru_cache(maxsize=16384)
def item_for_directory(directory: str) -> SyncItem | None:
    """The item whose files may live directly in ``directory`` (cached: few distinct dirs; a
    table from the network cannot grow the cache past its size)."""
    for item in _BY_SPECIFICITY:
        if directory == item.directory:
            return item
        if item.recursive and directory.startswith(item.directory + "/"):
            return item
    return None


def item_mode(relpath: str) -> int | None:
    """The permission bits the table gives a relative path, or ``None`` if it is not synced."""
    item = item_for(relpath)
    return None if item is None else item.mode

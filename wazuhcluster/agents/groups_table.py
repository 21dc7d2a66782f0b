"""The agent → groups table every node keeps, and which merged.mg an agent should have.

The master's registry owns the table; workers hold a copy kept current by the agent-groups
sync (whole table for a newly connected worker, changes afterwards, and a full resend when
checksums keep disagreeing). An agent in one group gets etc/shared/<group>/merged.mg; an agent
in several gets var/multigroups/<hash>/merged.mg, as Wazuh does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agents.interfaces import IMergedFiles
from wazuhcluster.registry.groups import multigroup_hash
from wazuhcluster.registry.store import groups_table_checksum
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool

Table = dict[str, tuple[str, ...]]

_ID = re.compile(r"\d{3,8}")
_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,255}")
#: Most agents a table may hold.
MAX_AGENTS = 1_000_000
#: Seconds during which a merged.mg's last stat is trusted: every keep-alive asks for its
#: agent's file, and thousands of agents share a few files.
STAT_INTERVAL = 1.0
#: Group lists whose merged.mg path (and last stat) is kept (then it starts again from none).
MAX_PATHS = 65536


class GroupsTableError(ValueError):
    """A malformed table or change set."""


def checksum(table: Mapping[str, tuple[str, ...]]) -> str:
    """The table's checksum (the registry's own definition)."""
    return groups_table_checksum(dict(table))


def diff(old: Mapping[str, tuple[str, ...]], new: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """What changed from ``old`` to ``new``: agent id → its groups, or None when removed."""
    changes: dict[str, Any] = {a: list(g) for a, g in new.items() if old.get(a) != g}
    changes.update({a: None for a in old if a not in new})
    return changes


def validate_changes(changes: Any) -> dict[str, tuple[str, ...] | None]:
    """Check a change set from the network: ids, group names, sizes."""
    if not isinstance(changes, dict) or len(changes) > MAX_AGENTS:
        raise GroupsTableError("changes must be an object of at most a million agents")
    checked: dict[str, tuple[str, ...] | None] = {}
    for agent_id, groups in changes.items():
        if not _ID.fullmatch(agent_id):
            raise GroupsTableError(f"bad agent id {agent_id!r}")
        if groups is None:
            checked[agent_id] = None
            continue
        if (
            not isinstance(groups, list)
            or not 0 < len(groups) <= 128
            or not all(
                isinstance(g, str) and _GROUP.fullmatch(g) and g not in (".", "..") for g in groups
            )
        ):
            raise GroupsTableError(f"bad groups for agent {agent_id}")
        checked[agent_id] = tuple(groups)
    return checked


def apply_changes(table: Table, changes: Mapping[str, tuple[str, ...] | None]) -> None:
    """Apply validated changes in place."""
    for agent_id, groups in changes.items():
        if groups is None:
            table.pop(agent_id, None)
        else:
            table[agent_id] = groups


def encode_table(table: Mapping[str, tuple[str, ...]]) -> bytes:
    """The whole table as JSON (for the full send)."""
    return json.dumps({a: list(g) for a, g in table.items()}, separators=(",", ":")).encode()


def decode_table(data: bytes) -> Table:
    """Parse and validate a whole table."""
    try:
        raw = json.loads(data)
    except ValueError as error:
        raise GroupsTableError(f"not JSON: {error}") from None
    return {a: g for a, g in validate_changes(raw).items() if g is not None}


Stamp = tuple[int, int]


def file_md5(path: Path) -> tuple[Stamp, str] | None:
    """The (mtime_ns, size) stamp and MD5 of the file at ``path``, or None when it cannot be
    read. Blocks: run it in a thread."""
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            content = handle.read()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size), hashlib.md5(content, usedforsecurity=False).hexdigest()


def stat_stamp(path: Path) -> Stamp | None:
    """The (mtime_ns, size) of the file at ``path``, or None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


@implementer(IMergedFiles)
class MergedFiles:
    """Answers ``merged_for(agent_id)``: the merged.mg an agent should have and its MD5.

    The answer is needed at once (a keep-alive is handled as it arrives) but a merged.mg may
    be up to 16 MiB, so files are hashed in ``run_in_thread`` and the sums cached by stat:
    an unchanged file costs one ``stat``. While a changed file is hashed, the last known sum
    is given (as if the change had come a moment later); a file never hashed yet has none.

    Given a ``clock``, a path is stat'ed at most once per :data:`STAT_INTERVAL`: a change
    (or a file appearing or going) is seen up to that long later. Without one, every call
    stats the file.
    """

    def __init__(
        self,
        shared: Path,
        multigroups: Path,
        table: Mapping[str, tuple[str, ...]],
        *,
        run_in_thread: RunInThread = run_in_reactor_pool,
        log: ClusterLog | None = None,
        clock: IReactorTime | None = None,
    ):
        self.shared = shared
        self.multigroups = multigroups
        self.table = table
        self.run_in_thread = run_in_thread
        self.log = log or ClusterLog("Node", "Agent groups")
        self._sums: dict[str, tuple[Stamp, str]] = {}
        #: Paths being hashed now, with the stat the hash is for.
        self._hashing: dict[str, Stamp] = {}
        self.clock = clock
        #: Per path: when it was last stat'ed and its stamp then (None: not there).
        self._stats: dict[str, tuple[float, Stamp | None]] = {}
        #: Per group list: its merged.mg as a Path and as text.
        self._paths: dict[tuple[str, ...], tuple[Path, str]] = {}

    def path_for(self, groups: tuple[str, ...]) -> Path:
        """Where the merged file of ``groups`` lives."""
        if len(groups) == 1:
            return self.shared / groups[0] / "merged.mg"
        return self.multigroups / multigroup_hash(groups) / "merged.mg"

    def _stamp(self, path: Path, key: str) -> Stamp | None:
        """The file's stamp; the last one taken while it is younger than
        :data:`STAT_INTERVAL`."""
        if self.clock is None:
            return stat_stamp(path)
        now = self.clock.seconds()
        known = self._stats.get(key)
        if known is not None and 0 <= now - known[0] < STAT_INTERVAL:
            return known[1]
        stamp = stat_stamp(path)
        self._stats[key] = (now, stamp)
        return stamp

    def _md5(self, path: Path, key: str) -> str | None:
        stamp = self._stamp(path, key)
        if stamp is None:
            return None
        cached = self._sums.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if self._hashing.get(key) != stamp:
            self._rehash(path, stamp)
            cached = self._sums.get(key)  # a synchronous runner has already answered
            if cached is not None and cached[0] == stamp:
                return cached[1]
        return None if cached is None else cached[1]

    def _rehash(self, path: Path, stamp: Stamp) -> None:
        key = str(path)
        self._hashing[key] = stamp

        def hashed(found: tuple[Stamp, str] | None) -> None:
            if self._hashing.get(key) == stamp:
                del self._hashing[key]
            # The file may have changed between the stat and the read: stat it again next.
            self._stats.pop(key, None)
            if found is None:
                self._sums.pop(key, None)
            else:
                self._sums[key] = found  # the stamp of what was read, should it differ

        def failed(failure: Failure) -> None:
            if self._hashing.get(key) == stamp:
                del self._hashing[key]
            self.log.failure("Could not hash {path}", failure, path=key)

        self.run_in_thread(file_md5, path).addCallbacks(hashed, failed)

    def __call__(self, agent_id: str) -> tuple[str, str] | None:
        """(md5, path) of the agent's merged.mg, or None if unknown or not there yet."""
        groups = self.table.get(agent_id) or ("default",)
        place = self._paths.get(groups)
        if place is None:
            if len(self._paths) >= MAX_PATHS:
                self._paths.clear()
                self._stats.clear()
            path = self.path_for(groups)
            place = self._paths[groups] = (path, str(path))
        digest = self._md5(*place)
        return None if digest is None else (digest, place[1])

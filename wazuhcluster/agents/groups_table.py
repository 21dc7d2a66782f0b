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

from zope.interface import implementer

from wazuhcluster.agents.interfaces import IMergedFiles
from wazuhcluster.registry.groups import multigroup_hash
from wazuhcluster.registry.store import groups_table_checksum

Table = dict[str, tuple[str, ...]]

_ID = re.compile(r"\d{3,8}")
_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,255}")
#: Most agents a table may hold.
MAX_AGENTS = 1_000_000


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


@implementer(IMergedFiles)
class MergedFiles:
    """Answers ``merged_for(agent_id)``: the merged.mg an agent should have and its MD5."""

    def __init__(self, shared: Path, multigroups: Path, table: Mapping[str, tuple[str, ...]]):
        self.shared = shared
        self.multigroups = multigroups
        self.table = table
        self._sums: dict[str, tuple[tuple[int, int], str]] = {}

    def path_for(self, groups: tuple[str, ...]) -> Path:
        """Where the merged file of ``groups`` lives."""
        if len(groups) == 1:
            return self.shared / groups[0] / "merged.mg"
        return self.multigroups / multigroup_hash(groups) / "merged.mg"

    def _md5(self, path: Path) -> str | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        stamp = (info.st_mtime_ns, info.st_size)
        cached = self._sums.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        except OSError:
            return None
        self._sums[str(path)] = (stamp, digest)
        return digest

    def __call__(self, agent_id: str) -> tuple[str, str] | None:
        """(md5, path) of the agent's merged.mg, or None if unknown or not there yet."""
        groups = self.table.get(agent_id) or ("default",)
        path = self.path_for(groups)
        digest = self._md5(path)
        return None if digest is None else (digest, str(path))

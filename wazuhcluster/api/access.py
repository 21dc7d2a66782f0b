"""What one caller may do: their permissions applied to a call's resources.

Each authenticated :class:`~wazuhcluster.api.routes.Call` carries an :class:`Access`
built from its token's roles. Endpoints ask it, as Wazuh's framework does:

* :meth:`Access.require` for an action on nothing in particular (``agent:create``):
  refused → HTTP 403, Wazuh error 4000;
* :meth:`Access.require_one` for an action on one named thing (a group in the path);
* :meth:`Access.select` for an action on a list of things. When the caller named the
  things (an explicit list), the refused ones become ``failed_items`` with error 4000,
  and if none is allowed the whole call is a 403; when the caller named nothing (every
  thing is meant), the list is quietly narrowed to what they may see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from attrs import field, frozen

from wazuhcluster.api import rbac
from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.api.replies import add_failure

GroupAgents = Callable[[str], Iterable[str]]


def permission_denied(kind: str) -> ApiError:
    """Wazuh's 403 for an action refused on resources of ``kind``."""
    return wazuh_error(4000, f"Resource type: {kind}")


def group_members(agents: Iterable[tuple[str, Sequence[str]]]) -> GroupAgents:
    """``agent:group`` expansion over (agent id, groups) pairs; ``*`` = in any group."""
    by_group: dict[str, set[str]] = {}
    grouped: set[str] = set()
    for agent_id, groups in agents:
        for group in groups:
            by_group.setdefault(group, set()).add(agent_id)
            grouped.add(agent_id)

    def members(group: str) -> set[str]:
        return grouped if group == "*" else by_group.get(group, set())

    return members


@frozen
class Access:
    """The permissions of one caller (see module docstring); by default, nothing."""

    permissions: Mapping[str, Mapping[str, str]] = field(factory=dict)
    mode: str = "white"

    def can(self, action: str) -> bool:
        """Whether the resourceless ``action`` is allowed."""
        return rbac.resourceless_allowed(dict(self.permissions), action, self.mode)  # type: ignore[arg-type]

    def allows_every(self, action: str, kind: str) -> bool:
        """Whether ``action`` is allowed on every resource of ``kind`` (a ``kind:*`` allow,
        or black mode, with no deny after it), so a listing needs no per-item check."""
        entries = [
            (resource, effect)
            for resource, effect in self.permissions.get(action, {}).items()
            if "&" not in resource
        ]
        start = 0 if self.mode == "black" else None
        for position, (resource, effect) in enumerate(entries):
            if resource == f"{kind}:*" and effect == rbac.ALLOW:
                start = position + 1
        if start is None:
            return False
        return all(effect != rbac.DENY for _, effect in entries[start:])

    def require(self, action: str) -> None:
        """Raise 403 unless the resourceless ``action`` is allowed."""
        if not self.can(action):
            raise permission_denied("*:*")

    def allowed(
        self,
        action: str,
        kind: str,
        values: Iterable[str],
        group_agents: GroupAgents | None = None,
    ) -> set[str]:
        """The ``values`` of type ``kind`` on which ``action`` is allowed."""
        return rbac.allowed_values(
            self.permissions,  # type: ignore[arg-type]
            action,
            kind,
            values,
            group_agents,
            self.mode,
        )

    def require_one(
        self, action: str, kind: str, value: str, group_agents: GroupAgents | None = None
    ) -> None:
        """Raise 403 unless ``action`` is allowed on ``kind:value``."""
        if not self.allowed(action, kind, [value], group_agents):
            raise permission_denied(kind)

    def select(
        self,
        action: str,
        kind: str,
        values: Sequence[str],
        failed: dict[int, list[str]],
        explicit: bool,
        group_agents: GroupAgents | None = None,
    ) -> list[str]:
        """The allowed ``values``, in order (see module docstring for explicit lists)."""
        allowed = self.allowed(action, kind, values, group_agents)
        kept = [value for value in dict.fromkeys(values) if value in allowed]
        if explicit:
            refused = [value for value in dict.fromkeys(values) if value not in allowed]
            if refused and not kept:
                raise permission_denied(kind)
            for value in refused:
                add_failure(failed, 4000, value)
        return kept

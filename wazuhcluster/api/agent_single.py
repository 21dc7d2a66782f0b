"""Calls about one agent: its key (``GET /agents/{agent_id}/key``), whether it has its
groups' files (``GET /agents/{agent_id}/group/is_sync``) and leaving several groups at
once (``DELETE /agents/{agent_id}/group``); and whether the caller may uninstall agents
(``GET /agents/uninstall``).

As in Wazuh, an unknown agent or agent 000 is the failed item of a 200 for the reads; the
caller needs ``agent:read`` (or ``agent:modify_group`` and ``group:modify_assignments``)
on the agent, otherwise 403.
"""

from __future__ import annotations

from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.access import group_members
from wazuhcluster.api.agent_endpoints import encoded_key
from wazuhcluster.api.agent_listing import agent_views, normal_id
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import wazuh_error
from wazuhcluster.api.replies import Reply, add_failure, envelope
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.registry.groups import DEFAULT_GROUP
from wazuhcluster.registry.model import Agent, UnknownAgent


class AgentSingleEndpoints:
    """One agent's key, sync state and groups (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    async def _agent(self, call: Call, action: str) -> tuple[str, Agent | None, int | None]:
        """The path's agent id, its record, and the code it fails with (1703 for 000,
        1701 when unknown); 403 unless ``action`` is allowed on it."""
        agent_id = normal_id(call.path["agent_id"])
        agent = None if agent_id == "000" else await self.context.registry.get_agent(agent_id)
        groups = [(agent.id, agent.groups)] if agent is not None else []
        call.access.require_one(action, "agent:id", agent_id, group_members(groups))
        if agent_id == "000":
            return agent_id, None, 1703
        return agent_id, agent, 1701 if agent is None else None

    async def key(self, call: Call) -> Reply:
        """GET /agents/{agent_id}/key: the agent's key line in base64."""
        agent_id, agent, code = await self._agent(call, "agent:read")
        msgs = (
            "Obtained keys for all selected agents",
            "Some agent keys were not obtained",
            "No agent keys were obtained",
        )
        if agent is None:
            return Reply(envelope([], {code or 1701: [agent_id]}, *msgs))
        return Reply(envelope([{"id": agent.id, "key": encoded_key(agent)}], {}, *msgs))

    async def is_sync(self, call: Call) -> Reply:
        """GET /agents/{agent_id}/group/is_sync: whether the agent's merged.mg checksum is
        the one of its groups' files."""
        agent_id, agent, code = await self._agent(call, "agent:read")
        msgs = (
            "Sync info was returned for all selected agents",
            "Sync info was not returned for some selected agents",
            "No sync info was returned",
        )
        if agent is None:
            return Reply(envelope([], {code or 1701: [agent_id]}, *msgs))
        views = await self.context.run_in_thread(agent_views, self.context, [agent])
        synced = views[0]["group_config_status"] == "synced"
        return Reply(envelope([{"id": agent.id, "synced": synced}], {}, *msgs))

    async def leave_groups(self, call: Call) -> Reply:
        """DELETE /agents/{agent_id}/group: remove the agent from the listed groups (all
        its groups by default); an agent left in none goes back to ``default``."""
        agent_id, agent, code = await self._agent(call, "agent:modify_group")
        if code == 1703:
            raise wazuh_error(1703)
        if agent is None:
            raise wazuh_error(1701, agent_id)
        requested = call.params.get("groups_list")
        wanted = list(dict.fromkeys(requested)) if requested else list(agent.groups)
        failed: dict[int, list[str]] = {}
        kept = call.access.select(
            "group:modify_assignments", "group:id", wanted, failed, requested is not None
        )
        # Default last: an agent taken out of every group is put back in it.
        kept.sort(key=lambda group: group == DEFAULT_GROUP)
        known = {info.name for info in await self.context.registry.list_groups()}
        removed: list[str] = []
        groups = agent.groups
        for group in kept:
            if group not in known:
                add_failure(failed, 1710, group)
            elif group not in groups:
                add_failure(failed, 1734, group)
            elif groups == (DEFAULT_GROUP,):
                add_failure(failed, 1745, group)
            else:
                try:
                    groups = await self.context.registry.unassign(agent_id, group)
                except UnknownAgent:
                    raise wazuh_error(1701, agent_id) from None
                removed.append(group)
        if requested is None:
            # Wazuh leaves out what only the implicit list could fail (as for "all").
            failed = {code: ids for code, ids in failed.items() if code not in (1710, 1734, 1745)}
        msgs = (
            "Specified agent was removed from returned groups",
            "Specified agent was not removed from some groups",
            "Specified agent was not removed from any group",
        )
        return Reply(envelope(sorted(removed), failed, *msgs))

    async def uninstall_permission(self, call: Call) -> Reply:
        """GET /agents/uninstall: whether the caller may uninstall agents (``agent:uninstall``;
        an agent's uninstaller asks this before removing itself)."""
        call.access.require("agent:uninstall")
        return Reply({"message": "User has permission to uninstall agents", "error": 0})

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        agent_path: dict[str, Any] = {"agent_id": p.agent_id}
        return [
            Route(
                "GET",
                "/agents/uninstall",
                self.uninstall_permission,
                common,
                actions=("agent:uninstall",),
            ),
            Route(
                "GET",
                "/agents/{agent_id}/key",
                self.key,
                common,
                agent_path,
                actions=("agent:read",),
            ),
            Route(
                "GET",
                "/agents/{agent_id}/group/is_sync",
                self.is_sync,
                common,
                agent_path,
                actions=("agent:read",),
            ),
            Route(
                "DELETE",
                "/agents/{agent_id}/group",
                self.leave_groups,
                {**common, "groups_list": p.comma_list(p.group_name)},
                agent_path,
                actions=("agent:modify_group", "group:modify_assignments"),
            ),
        ]

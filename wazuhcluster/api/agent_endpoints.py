"""The Agents family: list, count, add and delete agents, ask them to reconnect, and
assign them to groups or remove them from groups (``/agents...``).

Every check of a call runs before its first registry write; the node hears of added and
removed agents, and of reconnection requests, through its hooks.
"""

from __future__ import annotations

import base64
from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.access import group_members
from wazuhcluster.api.agent_filter import manager_allowed, registry_filter, registry_scope
from wazuhcluster.api.agent_force import force_rules
from wazuhcluster.api.agent_listing import (
    AGENT_FILTERS,
    AGENT_STATUSES,
    active_targets,
    agent_page,
    agent_views,
    legacy_filters,
    named_agents,
    normal_id,
    older_than,
    visible_agents,
)
from wazuhcluster.api.agent_pages import plain_listing, q_filters, registry_page
from wazuhcluster.api.agent_summaries import counted_status
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import bad_request, wazuh_error
from wazuhcluster.api.hooks import maybe_await, notify
from wazuhcluster.api.query import (
    Condition,
    Expression,
    Junction,
    Listing,
    check_listing,
    parse_q,
)
from wazuhcluster.api.replies import Reply, add_failure, envelope
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.views import (
    AGENT_DATE_FIELDS,
    AGENT_FIELDS,
    AGENT_LIST_FIELDS,
)
from wazuhcluster.registry.agent_query import AgentFilter, AgentScope
from wazuhcluster.registry.agent_rows import TEXT_FIELDS
from wazuhcluster.registry.groups import DEFAULT_GROUP
from wazuhcluster.registry.model import (
    Agent,
    DuplicateId,
    DuplicateIP,
    DuplicateName,
    InvalidValue,
    UnknownAgent,
    UnknownGroup,
)
from wazuhcluster.registry.replacement import ReplacementRefused, enroll_forced


class AgentEndpoints:
    """``/agents...`` (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    async def list_agents(self, call: Call) -> Reply:
        """GET /agents."""
        params = call.params
        listing = p.listing(params)
        check_listing(listing, AGENT_FIELDS, AGENT_DATE_FIELDS, AGENT_LIST_FIELDS)
        # A caller limited to some agents has them chosen in SQL too (None: every agent).
        every = call.access.allows_every("agent:read", "agent:id")
        scope = None if every else registry_scope(call.access, "agent:read")
        if plain_listing(params, listing) and (every or scope is not None):
            filters = self._sql_only(listing)
            if filters is not None:
                manager = every or manager_allowed(call.access, "agent:read")
                where = filters[0] if filters else None
                return await self._plain_page(listing, where, scope, manager)
        # A single status narrows the registry query (statuses are canonical; names,
        # nodes and groups match without case, so they are filtered on the views only);
        # every filter is applied again on the views (cheaply), so agent 000 is filtered
        # the same way. Not with an agents_list, whose unknown ids must be told apart from
        # filtered-out ones.
        pushed: dict[str, Any] = {}
        if "agents_list" not in params:
            if scope is not None:
                pushed["scope"] = scope
            statuses = params.get("status", ())
            if len(statuses) == 1:
                pushed["status"] = statuses[0]
            if listing.q:
                # The q's equality tests that every match must pass narrow the registry
                # read too (a superset: the whole q is applied to the views after).
                expression = parse_q(
                    listing.q,
                    AGENT_FIELDS,
                    AGENT_DATE_FIELDS,
                    self.context.now(),
                    lists=AGENT_LIST_FIELDS,
                )
                where = registry_filter(expression)
                if where is not None:
                    pushed["where"] = where
                else:
                    pushed["same_text"] = required_equalities(expression)
        context = self.context
        agents = await context.registry.list_agents(**pushed)
        refused: dict[int, list[str]] = {}
        agents, kept, manager = visible_agents(
            call.access, "agent:read", agents, params.get("agents_list"), refused
        )
        if kept is not None:
            params = {**params, "agents_list": tuple(kept)}
        page, total, failed = await context.run_in_thread(
            agent_page, context, agents, params, listing, manager
        )
        for code, ids in refused.items():
            failed.setdefault(code, []).extend(ids)
        msgs = (
            "All selected agents information was returned",
            "Some agents information was not returned",
            "No agent information was returned",
        )
        return Reply(envelope(page, failed, *msgs, total))

    def _sql_only(self, listing: Listing) -> list[AgentFilter] | None:
        """The call's q as registry filters (see :func:`q_filters`)."""
        return q_filters(self.context, listing)

    async def _plain_page(
        self,
        listing: Listing,
        where: AgentFilter | None,
        scope: AgentScope | None = None,
        with_manager: bool = True,
    ) -> Reply:
        """A page read from the registry (see :func:`registry_page`)."""
        return await registry_page(self.context, listing, where, scope, with_manager)

    async def summary_status(self, call: Call) -> Reply:
        """GET /agents/summary/status: counts by connection and by group-config sync."""
        if call.access.allows_every("agent:read", "agent:id"):
            counts = await self.context.registry.run(lambda registry: registry.status_counts())
            data = await self.context.run_in_thread(self._counted_summary, counts)
            return Reply({"data": data, "error": 0})
        agents = await self.context.registry.list_agents()
        agents, _, _ = visible_agents(call.access, "agent:read", agents, None, {}, manager=False)
        data = await self.context.run_in_thread(self._summary, agents)
        return Reply({"data": data, "error": 0})

    def _counted_summary(
        self, counts: list[tuple[str, str, tuple[str, ...], int]]
    ) -> dict[str, Any]:
        """GET /agents/summary/status from the registry's counts (in a thread)."""
        return counted_status(self.context, counts)

    def _summary(self, agents: list[Agent]) -> dict[str, Any]:
        """Counts of GET /agents/summary/status (in a thread: it walks every agent)."""
        connection = {status: 0 for status in AGENT_STATUSES}
        synced = 0
        for view in agent_views(self.context, agents):
            connection[view["status"]] = connection.get(view["status"], 0) + 1
            synced += view["group_config_status"] == "synced"
        return {
            "connection": {**connection, "total": len(agents)},
            "configuration": {
                "synced": synced,
                "not_synced": len(agents) - synced,
                "total": len(agents),
            },
        }

    async def add_agent(self, call: Call) -> Reply:
        """POST /agents: register an agent; answer its id and base64 key line."""
        call.access.require("agent:create")
        fields = {"name": (str, True, 1024), "ip": (str, False, 64), "force": (dict, False, 0)}
        body = p.check_body(call.body, fields)
        return await self._register(body["name"], body.get("ip", "any"), body.get("force"))

    async def insert_agent(self, call: Call) -> Reply:
        """POST /agents/insert: register an agent with the id and key it already has."""
        call.access.require("agent:create")
        fields = {
            "name": (str, True, 1024),
            "ip": (str, False, 64),
            "id": (str, False, 8),
            "key": (str, False, 1024),
            "force": (dict, False, 0),
        }
        body = p.check_body(call.body, fields)
        agent_id = body.get("id")
        if agent_id is not None:
            if not (agent_id.isascii() and agent_id.isdigit()) or int(agent_id) == 0:
                raise bad_request(f"'{agent_id}' is not a valid agent id ('id'; not 000)")
            agent_id = normal_id(agent_id)
        key = body.get("key")
        if key is not None:
            if len(key) < 64:
                raise wazuh_error(1709)
            if len(key) > 64 or not key.isascii() or not key.isalnum():
                raise bad_request("'key' must be 64 letters or digits")
        ip = body.get("ip", "any")
        return await self._register(body["name"], ip, body.get("force"), agent_id, key)

    async def insert_quick(self, call: Call) -> Reply:
        """POST /agents/insert/quick?agent_name=...: register an agent by name only."""
        call.access.require("agent:create")
        return await self._register(call.params["agent_name"], "any", None)

    async def _register(
        self,
        name: str,
        ip: str,
        force: dict[str, Any] | None,
        agent_id: str | None = None,
        key: str | None = None,
    ) -> Reply:
        """Register one agent as Wazuh's add_agent does (force rules, name and IP checks)."""
        rules = force_rules(force) if force is not None else None
        if len(name) > 128:
            raise wazuh_error(1738)
        if name == self.context.node.config.cluster.node_name:
            raise wazuh_error(1705, name)
        replaced: tuple[str, ...] = ()
        now = self.context.now()
        try:
            if rules is None:
                agent = await self.context.registry.write(
                    lambda registry: registry.enroll(name, ip, key=key, agent_id=agent_id)
                )
            else:
                agent, replaced = await self.context.registry.write(
                    lambda registry: enroll_forced(registry, name, ip, rules, now, agent_id, key)
                )
        except ReplacementRefused as refused:
            code = 1705 if isinstance(refused.duplicate, DuplicateName) else 1706
            raise wazuh_error(code, f"{name if code == 1705 else ip}: {refused.reason}") from None
        except DuplicateName:
            raise wazuh_error(1705, name) from None
        except DuplicateIP:
            raise wazuh_error(1706, ip) from None
        except DuplicateId:
            raise wazuh_error(1708, str(agent_id)) from None
        except InvalidValue as error:
            if error.what == "IP":
                raise wazuh_error(1706, ip) from None
            raise bad_request(f"'{name[:64]}' is not a valid agent name: {error.reason}") from None
        if replaced:
            self.context.log.info(
                "Agents {ids} replaced by {name} (force) through the API",
                ids=", ".join(replaced),
                name=name,
            )
            notify(self.context.hooks.agents_removed, list(replaced))
        self.context.log.info(
            "Agent {id} ({name}) added through the API", id=agent.id, name=agent.name
        )
        notify(self.context.hooks.agents_added, [agent])
        return Reply({"data": {"id": agent.id, "key": encoded_key(agent)}, "error": 0})

    async def delete_agents(self, call: Call) -> Reply:
        """DELETE /agents: remove the listed agents that match status and older_than."""
        context = self.context
        params = call.params
        ids: tuple[str, ...] = params["agents_list"]
        statuses: tuple[str, ...] = params["status"]
        age: int = params.get("older_than", 7 * 86400)
        failed: dict[int, list[str]] = {}
        candidates = await self._chosen_agents(
            None if "all" in ids else ids, failed, call, "agent:delete"
        )
        now = context.now()
        if "all" not in statuses:
            candidates = [a for a in candidates if a.connection_status in statuses]
        candidates = [a for a in candidates if older_than(a, age, now)]
        views = await context.run_in_thread(agent_views, context, candidates)
        views = legacy_filters(views, {k: v for k, v in params.items() if k != "status"})
        if params.get("q"):
            expression = parse_q(
                params["q"], AGENT_FIELDS, AGENT_DATE_FIELDS, now, lists=AGENT_LIST_FIELDS
            )
            views = [view for view in views if expression.matches(view)]
        targets = [view["id"] for view in views]
        removed: list[str] = await context.registry.remove_agents(targets) if targets else []
        if removed:
            context.log.info("Agents {ids} deleted through the API", ids=", ".join(removed))
            notify(context.hooks.agents_removed, removed)
        msgs = (
            "All selected agents were deleted",
            "Some agents were not deleted",
            "No agents were deleted",
        )
        return Reply(envelope(sorted(removed), failed, *msgs))

    async def reconnect(self, call: Call) -> Reply:
        """PUT /agents/reconnect: ask active agents to reconnect (through the node's hook)."""
        agents = await self.context.registry.list_agents()
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("agents_list")
        chosen = active_targets(call.access, "agent:reconnect", agents, wanted, failed)
        ids = sorted(agent.id for agent in chosen)
        hook = self.context.hooks.reconnect
        if ids and hook is not None:
            await maybe_await(hook(ids))
        msgs = (
            "Force reconnect command was sent to all agents",
            "Force reconnect command was not sent to some agents",
            "Force reconnect command was not sent to any agent",
        )
        return Reply(envelope(ids, failed, *msgs))

    async def assign_group(self, call: Call) -> Reply:
        """PUT /agents/{agent_id}/group/{group_id}."""
        agent_id, group = normal_id(call.path["agent_id"]), call.path["group_id"]
        replace = bool(call.params.get("force_single_group", False))
        msgs = _assignment_messages(group, replace)
        await self._require_assignment(call, agent_id, group)
        await self.context.require_group(group)
        failed: dict[int, list[str]] = {}
        if agent_id == "000":
            add_failure(failed, 1703, agent_id)
            return Reply(envelope([], failed, *msgs))
        agent = await self.context.registry.get_agent(agent_id)
        if agent is None:
            add_failure(failed, 1701, agent_id)
        elif group in agent.groups and (not replace or agent.groups == (group,)):
            add_failure(failed, 1751, agent_id)
        else:
            try:
                await self.context.registry.assign(agent_id, group, replace)
            except UnknownAgent:
                add_failure(failed, 1701, agent_id)
            except UnknownGroup:
                raise wazuh_error(1710, group) from None
            except InvalidValue:
                add_failure(failed, 1737, agent_id)
        affected = [] if failed else [agent_id]
        return Reply(envelope(affected, failed, *msgs))

    async def _require_assignment(self, call: Call, agent_id: str, group: str) -> None:
        """403 unless the caller may change ``agent_id``'s groups and assign to ``group``."""
        agent = await self.context.registry.get_agent(agent_id)
        members = group_members([(agent.id, agent.groups)] if agent is not None else [])
        call.access.require_one("agent:modify_group", "agent:id", agent_id, members)
        call.access.require_one("group:modify_assignments", "group:id", group)

    async def _chosen_agents(
        self, wanted: tuple[str, ...] | None, failed: dict[int, list[str]], call: Call, action: str
    ) -> list[Agent]:
        """The agents of ``agents_list`` (every agent when None) the caller may use for
        ``action``; unknown ids and 000 fail."""
        agents = await self.context.registry.list_agents()
        allowed, kept, _ = visible_agents(call.access, action, agents, wanted, failed, False)
        if kept is None:
            return allowed
        return named_agents(kept, {agent.id: agent for agent in agents}, failed)

    async def assign_agents(self, call: Call) -> Reply:
        """PUT /agents/group: assign several agents (all by default) to a group."""
        group: str = call.params["group_id"]
        replace = bool(call.params.get("force_single_group", False))
        msgs = _assignment_messages(group, replace)
        call.access.require_one("group:modify_assignments", "group:id", group)
        await self.context.require_group(group)
        failed: dict[int, list[str]] = {}
        assigned: list[str] = []
        wanted = call.params.get("agents_list")
        for agent in await self._chosen_agents(wanted, failed, call, "agent:modify_group"):
            if group in agent.groups and (not replace or agent.groups == (group,)):
                add_failure(failed, 1751, agent.id)
                continue
            try:
                await self.context.registry.assign(agent.id, group, replace)
            except UnknownAgent:
                add_failure(failed, 1701, agent.id)
            except InvalidValue:
                add_failure(failed, 1737, agent.id)
            else:
                assigned.append(agent.id)
        return Reply(envelope(sorted(assigned), failed, *msgs))

    async def remove_agents_from_group(self, call: Call) -> Reply:
        """DELETE /agents/group: remove several agents (all of the group by default)."""
        group: str = call.params["group_id"]
        msgs = (
            f"All selected agents were removed from group {group}",
            f"Some agents were not removed from group {group}",
            f"No agent was removed from group {group}",
        )
        call.access.require_one("group:modify_assignments", "group:id", group)
        await self.context.require_group(group)
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("agents_list")
        chosen = await self._chosen_agents(wanted, failed, call, "agent:modify_group")
        if wanted is None:
            chosen = [agent for agent in chosen if group in agent.groups]
        removed: list[str] = []
        for agent in chosen:
            if group not in agent.groups:
                add_failure(failed, 1734, agent.id)
            elif agent.groups == (DEFAULT_GROUP,):
                add_failure(failed, 1745, agent.id)
            else:
                try:
                    await self.context.registry.unassign(agent.id, group)
                except UnknownAgent:
                    add_failure(failed, 1701, agent.id)
                else:
                    removed.append(agent.id)
        return Reply(envelope(sorted(removed), failed, *msgs))

    async def unassign_group(self, call: Call) -> Reply:
        """DELETE /agents/{agent_id}/group/{group_id}."""
        agent_id, group = normal_id(call.path["agent_id"]), call.path["group_id"]
        await self._require_assignment(call, agent_id, group)
        if agent_id == "000":
            raise wazuh_error(1703)
        agent = await self.context.registry.get_agent(agent_id)
        if agent is None:
            raise wazuh_error(1701, agent_id)
        await self.context.require_group(group)
        if group not in agent.groups:
            raise wazuh_error(1734, f"agent {agent_id} is not in group {group}")
        if agent.groups == (DEFAULT_GROUP,):
            raise wazuh_error(1745)
        groups = await self.context.registry.unassign(agent_id, group)
        message = f"Agent '{agent_id}' removed from '{group}'."
        if groups == (DEFAULT_GROUP,) and DEFAULT_GROUP not in agent.groups:
            message += " Agent reassigned to group default."
        return Reply({"message": message, "error": 0})

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        agent_path = {"agent_id": p.agent_id, "group_id": p.group_name}
        assignment = ("agent:modify_group", "group:modify_assignments")
        delete_filters = {
            **AGENT_FILTERS,
            "agents_list": p.comma_list(p.agent_id_or_all),
            "status": p.comma_list(p.choice("all", *AGENT_STATUSES)),
            "purge": p.boolean,
            "q": p.text,
        }
        return [
            Route(
                "GET",
                "/agents",
                self.list_agents,
                {**common, **p.LISTING, **AGENT_FILTERS},
                actions=("agent:read",),
            ),
            Route(
                "GET",
                "/agents/summary/status",
                self.summary_status,
                common,
                actions=("agent:read",),
            ),
            Route(
                "POST", "/agents", self.add_agent, common, body="json", actions=("agent:create",)
            ),
            Route(
                "POST",
                "/agents/insert",
                self.insert_agent,
                common,
                body="json",
                actions=("agent:create",),
            ),
            Route(
                "POST",
                "/agents/insert/quick",
                self.insert_quick,
                {**common, "agent_name": p.names},
                required=("agent_name",),
                actions=("agent:create",),
            ),
            Route(
                "DELETE",
                "/agents",
                self.delete_agents,
                {**common, **delete_filters},
                required=("agents_list", "status"),
                actions=("agent:delete",),
            ),
            Route(
                "PUT",
                "/agents/reconnect",
                self.reconnect,
                {**common, "agents_list": p.comma_list(p.agent_id)},
                actions=("agent:reconnect",),
            ),
            Route(
                "PUT",
                "/agents/group",
                self.assign_agents,
                {
                    **common,
                    "group_id": p.group_name,
                    "agents_list": p.comma_list(p.agent_id),
                    "force_single_group": p.boolean,
                },
                required=("group_id",),
                actions=assignment,
            ),
            Route(
                "DELETE",
                "/agents/group",
                self.remove_agents_from_group,
                {**common, "group_id": p.group_name, "agents_list": p.comma_list(p.agent_id)},
                required=("group_id",),
                actions=assignment,
            ),
            Route(
                "PUT",
                "/agents/{agent_id}/group/{group_id}",
                self.assign_group,
                {**common, "force_single_group": p.boolean},
                agent_path,
                actions=assignment,
            ),
            Route(
                "DELETE",
                "/agents/{agent_id}/group/{group_id}",
                self.unassign_group,
                common,
                agent_path,
                actions=assignment,
            ),
        ]


def required_equalities(expression: Expression) -> list[tuple[str, str]]:
    """The ``field=value`` tests of a q that every match must pass (the expression itself,
    or the parts of a top-level and), on fields the registry can test without case; only
    ASCII values, since SQLite ignores the case of ASCII letters alone."""
    parts = expression.parts if isinstance(expression, Junction) and expression.all_of else ()
    found = []
    for part in parts or (expression,):
        if (
            isinstance(part, Condition)
            and part.operator == "="
            and part.field in TEXT_FIELDS
            and part.value
            and part.value.isascii()
        ):
            found.append((part.field, part.value))
    return found


def encoded_key(agent: Agent) -> str:
    """The agent's key as the API gives it: its ``client.keys`` line in base64."""
    return base64.b64encode(agent.key_line().encode("utf-8")).decode("ascii")


def _assignment_messages(group: str, replace: bool) -> tuple[str, str, str]:
    """Wazuh's messages for assigning agents to ``group`` (all, some, none)."""
    suffix = " and removed from the other groups" if replace else ""
    return (
        f"All selected agents were assigned to {group}{suffix}",
        f"Some agents were not assigned to {group}{suffix}",
        f"No agents were assigned to {group}",
    )

"""How agents are listed: their views, the filter parameters, the manager's row and paging.

``GET /agents``, ``DELETE /agents``, ``GET /agents/summary/status`` and
``GET /groups/{group_id}/agents`` all turn registry records into Wazuh's agent views
(reading merged-file checksums) and filter them; these functions walk every agent, so
callers run them in a thread.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.api import params as p
from wazuhcluster.api.access import Access, group_members
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.query import Listing, apply_listing, field_value
from wazuhcluster.api.replies import add_failure
from wazuhcluster.api.views import (
    AGENT_DATE_FIELDS,
    AGENT_FIELDS,
    AGENT_LIST_FIELDS,
    agent_view,
    file_digest,
    host_os_view,
    manager_view,
    merged_path,
)
from wazuhcluster.registry.model import Agent, format_agent_id

#: The connection statuses an agent can have, in the order summaries count them.
AGENT_STATUSES = ("active", "pending", "never_connected", "disconnected")

#: The filter parameters of ``GET /agents``.
AGENT_FILTERS: dict[str, p.Parser] = {
    "agents_list": p.comma_list(p.agent_id),
    "status": p.comma_list(p.choice(*AGENT_STATUSES)),
    "older_than": p.timeframe,
    "node_name": p.names,
    "group": p.group_name,
    "name": p.names,
    "ip": p.names,
    "registerIP": p.names,
    "version": p.names,
    "manager": p.names,
    "os.platform": p.names,
    "os.name": p.names,
    "os.version": p.names,
    "group_config_status": p.choice("synced", "not synced"),
}

#: The filters that match a view field by value (``status=active``, ``os.name=...``).
_LEGACY_FIELDS = (
    "status",
    "node_name",
    "group",
    "name",
    "ip",
    "registerIP",
    "version",
    "manager",
    "os.platform",
    "os.name",
    "os.version",
    "group_config_status",
)


@functools.cache
def host_os() -> dict[str, str]:
    """This host's ``os`` view for agent 000 (read once: /etc/os-release and uname)."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    return host_os_view(release, platform.uname())


def normal_id(agent_id: str) -> str:
    """An agent id as the registry writes it (``1`` → ``001``)."""
    return format_agent_id(int(agent_id))


def older_than(agent: Agent, seconds: int, now: float) -> bool:
    """Whether ``agent`` was last seen (or registered) at least ``seconds`` ago."""
    seen = agent.last_keepalive if agent.last_keepalive is not None else agent.register_time
    return now - seen >= seconds


def _merged_sums(context: EndpointContext) -> Callable[[tuple[str, ...]], str | None]:
    cache: dict[tuple[str, ...], str | None] = {}

    def merged(groups: tuple[str, ...]) -> str | None:
        if groups not in cache:
            cache[groups] = file_digest(merged_path(context.shared, context.multigroups, groups))
        return cache[groups]

    return merged


def agent_views(context: EndpointContext, agents: list[Agent]) -> list[dict[str, Any]]:
    """The API views of ``agents`` (each merged-file checksum read once)."""
    merged = _merged_sums(context)
    return [agent_view(agent, merged) for agent in agents]


def legacy_filters(views: list[dict[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Keep the views matching the plain filter parameters (``status=active`` ...), in any
    case."""
    for name in _LEGACY_FIELDS:
        if name not in params:
            continue
        wanted = params[name]
        # Values match without case, as Wazuh's filters do.
        allowed = {str(v).lower() for v in (wanted if isinstance(wanted, tuple) else (wanted,))}

        def keep(view: dict[str, Any], field: str = name, allowed: set[str] = allowed) -> bool:
            value = field_value(view, field)
            if isinstance(value, list):
                return any(str(member).lower() in allowed for member in value)
            return value is not None and str(value).lower() in allowed

        views = [view for view in views if keep(view)]
    return views


def visible_agents(
    access: Access,
    action: str,
    agents: list[Agent],
    requested: Sequence[str] | None,
    failed: dict[int, list[str]],
    manager: bool = True,
) -> tuple[list[Agent], list[str] | None, bool]:
    """The agents ``action`` may act on, the allowed requested ids, and whether agent 000 is.

    Requested ids the caller may not use fail with 4000 (all refused: 403); without
    ``requested`` the agents are quietly narrowed (see :mod:`wazuhcluster.api.access`).
    """
    members = group_members((agent.id, agent.groups) for agent in agents)
    if requested is not None:
        wanted = [normal_id(agent_id) for agent_id in requested]
        kept = access.select(action, "agent:id", wanted, failed, True, members)
        chosen = set(kept)
        return [a for a in agents if a.id in chosen], kept, "000" in chosen
    candidates = [agent.id for agent in agents] + (["000"] if manager else [])
    chosen = access.allowed(action, "agent:id", candidates, members)
    return [a for a in agents if a.id in chosen], None, "000" in chosen


def active_targets(
    access: Access,
    action: str,
    agents: list[Agent],
    requested: Sequence[str] | None,
    failed: dict[int, list[str]],
) -> list[Agent]:
    """The active agents a command for ``action`` goes to: without ``requested`` every one
    the caller may act on; with it, the allowed ids, where 000 (the manager gets no agent
    command) fails with 1703, an unknown id with 1701 and an agent not active with 1707."""
    allowed, kept, _ = visible_agents(access, action, agents, requested, failed)
    if kept is None:
        return [agent for agent in allowed if agent.connection_status == "active"]
    chosen: list[Agent] = []
    for agent in named_agents(kept, {agent.id: agent for agent in agents}, failed):
        if agent.connection_status != "active":
            add_failure(failed, 1707, agent.id)
        else:
            chosen.append(agent)
    return chosen


def named_agents(
    ids: Sequence[str], by_id: Mapping[str, Agent], failed: dict[int, list[str]]
) -> list[Agent]:
    """The agents of ``ids`` that ``by_id`` holds, in order; 000 (the manager is not an
    agent a command goes to) fails with 1703 and an id ``by_id`` lacks with 1701."""
    chosen: list[Agent] = []
    for agent_id in ids:
        if agent_id == "000":
            add_failure(failed, 1703, agent_id)
        elif agent_id not in by_id:
            add_failure(failed, 1701, agent_id)
        else:
            chosen.append(by_id[agent_id])
    return chosen


def agent_page(
    context: EndpointContext,
    agents: list[Agent],
    params: Mapping[str, Any],
    listing: Listing,
    manager: bool = True,
) -> tuple[list[dict[str, Any]], int, dict[int, list[str]]]:
    """Views, filters and paging of GET /agents (in a thread: it walks every agent).

    ``manager`` False leaves agent 000 out (the caller may not read it).
    """
    now = context.now()
    failed: dict[int, list[str]] = {}
    keep_manager = manager
    if "agents_list" in params:
        wanted = {normal_id(agent_id) for agent_id in params["agents_list"]}
        present = {agent.id for agent in agents} | {"000"}
        for agent_id in sorted(wanted - present):
            add_failure(failed, 1701, agent_id)
        agents = [agent for agent in agents if agent.id in wanted]
        keep_manager = manager and "000" in wanted
    if "older_than" in params:
        agents = [a for a in agents if older_than(a, params["older_than"], now)]
        keep_manager = False
    views = agent_views(context, agents)
    if keep_manager:
        cluster = context.node.config.cluster
        views.insert(0, manager_view(cluster.node_name, WAZUH_VERSION, now, host_os()))
    views = legacy_filters(views, params)
    page, total = apply_listing(
        views, listing, AGENT_FIELDS, ("id",), AGENT_DATE_FIELDS, now, lists=AGENT_LIST_FIELDS
    )
    return page, total, failed

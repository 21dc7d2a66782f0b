"""Agent listings read page by page from the registry.

When a listing has no filter but ``q``, ``select`` and paging (sorted by id), and its
``q`` and the caller's rights on agents can be written as registry filters
(:mod:`wazuhcluster.api.agent_filter`), only the asked page and a count are read: no view
is built for the other agents. ``GET /agents``, ``/agents/no_group`` and
``/agents/outdated`` use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.api.agent_filter import registry_filter
from wazuhcluster.api.agent_listing import agent_views, host_os
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.query import Listing, apply_listing, parse_q
from wazuhcluster.api.replies import Reply, envelope
from wazuhcluster.api.views import (
    AGENT_DATE_FIELDS,
    AGENT_FIELDS,
    AGENT_LIST_FIELDS,
    manager_view,
)
from wazuhcluster.registry.agent_query import AgentFilter, AgentScope
from wazuhcluster.registry.model import Agent
from wazuhcluster.registry.store import Registry

#: The listing parameters that do not filter (a registry page ignores them).
NOT_FILTERS = frozenset({"pretty", "wait_for_complete", "offset", "limit", "select", "sort", "q"})
_LISTED = (
    "All selected agents information was returned",
    "Some agents information was not returned",
    "No agent information was returned",
)


def plain_listing(params: Mapping[str, Any], listing: Listing) -> bool:
    """Whether a listing asks for a page in id order (no filter but q, no search, no
    distinct, no sort other than by id ascending)."""
    return set(params) <= NOT_FILTERS and listing.sort in ((), (("id", False),))


def q_filters(context: EndpointContext, listing: Listing) -> list[AgentFilter] | None:
    """The listing's q as registry filters (none without a q, one with it), or None when
    the q tests a field the registry does not hold."""
    if not listing.q:
        return []
    expression = parse_q(
        listing.q, AGENT_FIELDS, AGENT_DATE_FIELDS, context.now(), lists=AGENT_LIST_FIELDS
    )
    where = registry_filter(expression)
    return None if where is None else [where]


async def registry_page(
    context: EndpointContext,
    listing: Listing,
    where: AgentFilter | None,
    scope: AgentScope | None = None,
    with_manager: bool = True,
) -> Reply:
    """A page of the agents in ``scope`` (None: every agent) that pass ``where``, in id
    order, agent 000 first when ``with_manager`` and it passes the listing's q: only that
    page and a count are read from the registry."""
    cluster = context.node.config.cluster
    manager = manager_view(cluster.node_name, WAZUH_VERSION, context.now(), host_os())
    keep_manager = with_manager and (
        not listing.q
        or parse_q(
            listing.q, AGENT_FIELDS, AGENT_DATE_FIELDS, context.now(), lists=AGENT_LIST_FIELDS
        ).matches(manager)
    )
    ahead = 1 if keep_manager else 0
    first = max(0, listing.offset - ahead)
    wanted = max(0, listing.limit - (ahead if listing.offset == 0 else 0))

    def read(registry: Registry) -> tuple[list[Agent], int]:
        agents = registry.list_agents(limit=wanted, offset=first, where=where, scope=scope)
        return agents, registry.count_agents(where=where, scope=scope)

    agents, count = await context.registry.run(read)
    views = await context.run_in_thread(agent_views, context, agents)
    if keep_manager and listing.offset == 0:
        views.insert(0, manager)
    shown = Listing(limit=len(views) + 1, select=listing.select)
    page, _ = apply_listing(views, shown, AGENT_FIELDS, ("id",))
    return Reply(envelope(page, {}, *_LISTED, count + ahead))

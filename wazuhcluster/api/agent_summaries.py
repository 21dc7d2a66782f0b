"""Counts and digests over the agents: ``/agents/summary``, ``/agents/summary/os``,
``/agents/stats/distinct``, ``/agents/no_group``, ``/agents/outdated`` and
``/overview/agents``.

Each reads the registry once, keeps the agents the caller may read (``agent:read``; Wazuh
narrows these quietly, it never fails an item) and walks their views in a thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import evolve

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.api import params as p
from wazuhcluster.api.agent_filter import manager_allowed, registry_scope
from wazuhcluster.api.agent_listing import (
    AGENT_STATUSES,
    agent_page,
    agent_views,
    host_os,
    visible_agents,
)
from wazuhcluster.api.agent_pages import plain_listing, q_filters, registry_page
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import wazuh_error
from wazuhcluster.api.query import Listing, apply_listing, check_listing, field_value, parse_q
from wazuhcluster.api.replies import Reply, envelope
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.views import (
    AGENT_DATE_FIELDS,
    AGENT_FIELDS,
    AGENT_LIST_FIELDS,
    file_digest,
    group_view,
    manager_view,
    merged_path,
)
from wazuhcluster.registry.agent_query import (
    SHOWN_FIELDS,
    AgentFilter,
    AgentScope,
    AllOrAny,
    InNoGroup,
    VersionOtherThan,
)
from wazuhcluster.registry.model import Agent
from wazuhcluster.registry.store import Registry

#: What Wazuh shows for a field an agent has no value for, in distinct counts.
UNKNOWN = "N/A"
_LISTED = (
    "All selected agents information was returned",
    "Some agents information was not returned",
    "No agent information was returned",
)


def counted_status(
    context: EndpointContext, counts: list[tuple[str, str, tuple[str, ...], int]]
) -> dict[str, Any]:
    """Connection and group-configuration counts from the registry's status counts (in a
    thread: it reads the merged.mg sum of each group list once)."""
    connection = dict.fromkeys(AGENT_STATUSES, 0)
    expected = {}
    synced = total = 0
    for status, merged, groups, count in counts:
        connection[status] = connection.get(status, 0) + count
        total += count
        if groups not in expected:
            expected[groups] = file_digest(merged_path(context.shared, context.multigroups, groups))
        if merged and merged == expected[groups]:
            synced += count
    return {
        "connection": {**connection, "total": total},
        "configuration": {"synced": synced, "not_synced": total - synced, "total": total},
    }


def distinct_rows(
    views: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    weights: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Each combination of ``fields`` among ``views`` once, nested as in the views, with
    ``count``, the number of views holding it (each view counting its weight, 1 when
    ``weights`` is None); in order of first appearance."""
    counts: Counter[str] = Counter()
    rows: dict[str, dict[str, Any]] = {}
    for position, view in enumerate(views):
        row: dict[str, Any] = {}
        for field in fields:
            value = field_value(view, field)
            target = row
            parts = field.split(".")
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = UNKNOWN if value is None or value == [] else value
        key = repr(sorted(_flat(row)))
        counts[key] += 1 if weights is None else weights[position]
        rows.setdefault(key, row)
    return [{**row, "count": counts[key]} for key, row in rows.items()]


_OS_FIELDS = ("os.name", "os.platform", "os.version")


def _projected(
    combinations: Sequence[tuple[tuple[Any, ...], int, int]], positions: Sequence[int]
) -> list[tuple[tuple[Any, ...], int]]:
    """The combinations of the values at ``positions``, with their summed counts, in order
    of their first agent."""
    found: dict[tuple[Any, ...], list[int]] = {}
    for values, count, first in combinations:
        key = tuple(values[position] for position in positions)
        held = found.setdefault(key, [0, first])
        held[0] += count
        held[1] = min(held[1], first)
    ordered = sorted(found.items(), key=lambda item: item[1][1])
    return [(key, count) for key, (count, _) in ordered]


def _nested(fields: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """A view holding ``values`` at the dotted ``fields`` (None: left out)."""
    view: dict[str, Any] = {}
    for field, value in zip(fields, values, strict=True):
        if value is None:
            continue
        target = view
        parts = field.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return view


def _flat(row: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for key, value in row.items():
        if isinstance(value, Mapping):
            found.extend(_flat(value, f"{prefix}{key}."))
        else:
            found.append((prefix + key, repr(value)))
    return found


class AgentSummaryEndpoints:
    """The agents' summaries and digests (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    async def _readable(
        self, call: Call, wanted: Sequence[str] | None = None, manager: bool = True
    ) -> tuple[list[Agent], bool]:
        """The agents the caller may read (of ``wanted`` when given), and whether agent 000
        is among them (when ``manager``)."""
        agents = await self.context.registry.list_agents()
        allowed, _, with_manager = visible_agents(
            call.access, "agent:read", agents, wanted, {}, manager=manager
        )
        return allowed, with_manager and manager

    def _views(self, agents: list[Agent], manager: bool) -> list[dict[str, Any]]:
        """The views of ``agents``, agent 000's first when ``manager`` (in a thread)."""
        views = agent_views(self.context, agents)
        if manager:
            cluster = self.context.node.config.cluster
            now = self.context.now()
            views.insert(0, manager_view(cluster.node_name, WAZUH_VERSION, now, host_os()))
        return views

    async def summary(self, call: Call) -> Reply:
        """GET /agents/summary: agents by status, by OS platform and by group."""
        if "agents_list" not in call.params and call.access.allows_every("agent:read", "agent:id"):
            counts = await self.context.registry.run(lambda registry: registry.field_counts())
            status = dict.fromkeys(AGENT_STATUSES, 0)
            status.update(counts["status"])
            return Reply({"data": {**counts, "status": status}, "error": 0})
        agents, _ = await self._readable(call, call.params.get("agents_list"), manager=False)

        def count() -> dict[str, Any]:
            status = dict.fromkeys(AGENT_STATUSES, 0)
            platforms: Counter[str] = Counter()
            groups: Counter[str] = Counter()
            for view in self._views(agents, False):
                status[view["status"]] = status.get(view["status"], 0) + 1
                platform = field_value(view, "os.platform")
                if platform:
                    platforms[str(platform)] += 1
                groups.update(view.get("group") or ())
            return {"status": status, "os": dict(platforms), "groups": dict(groups)}

        return Reply({"data": await self.context.run_in_thread(count), "error": 0})

    async def summary_os(self, call: Call) -> Reply:
        """GET /agents/summary/os: the OS platforms of the agents (not 000), each once."""
        if call.access.allows_every("agent:read", "agent:id"):
            counts = await self.context.registry.run(lambda registry: registry.field_counts())
            items = sorted(counts["os"])
        else:
            agents, manager = await self._readable(call, manager=False)

            def platforms() -> list[str]:
                views = self._views(agents, manager)
                found = {field_value(view, "os.platform") for view in views}
                return sorted(str(platform) for platform in found if platform)

            items = await self.context.run_in_thread(platforms)
        msgs = (
            "Showing the operative system of all specified agents",
            "Could not get the operative system of some agents",
            "Could not get the operative system of the agents",
        )
        return Reply(envelope(items, {}, *msgs))

    async def _filtered_page(
        self,
        call: Call,
        keep: Callable[[Agent], bool],
        manager: bool,
        kept: AgentFilter | None = None,
    ) -> Reply:
        """GET /agents' listing over the readable agents ``keep`` accepts (``kept``: the
        same test as a registry filter, so a plain listing is read page by page)."""
        listing = p.listing(call.params)
        check_listing(listing, AGENT_FIELDS, AGENT_DATE_FIELDS, AGENT_LIST_FIELDS)
        every = call.access.allows_every("agent:read", "agent:id")
        scope = None if every else registry_scope(call.access, "agent:read")
        if (
            kept is not None
            and plain_listing(call.params, listing)
            and (every or scope is not None)
        ):
            filters = q_filters(self.context, listing)
            if filters is not None:
                where = AllOrAny(True, (kept, *filters))
                return await registry_page(self.context, listing, where, scope, False)
        agents, with_manager = await self._readable(call, manager=manager)
        agents = [agent for agent in agents if keep(agent)]
        page, total, failed = await self.context.run_in_thread(
            agent_page, self.context, agents, {}, listing, with_manager
        )
        return Reply(envelope(page, failed, *_LISTED, total))

    async def no_group(self, call: Call) -> Reply:
        """GET /agents/no_group: agents in no group (never agent 000)."""
        return await self._filtered_page(call, lambda agent: not agent.groups, False, InNoGroup())

    async def outdated(self, call: Call) -> Reply:
        """GET /agents/outdated: agents that reported a version other than the manager's
        (agents that never reported one are not counted, as in Wazuh)."""
        current = f"Wazuh v{WAZUH_VERSION}"
        return await self._filtered_page(
            call,
            lambda agent: bool(agent.version) and agent.version != current,
            False,
            VersionOtherThan(current),
        )

    async def distinct(self, call: Call) -> Reply:
        """GET /agents/stats/distinct: each combination of ``fields`` with its count."""
        fields: tuple[str, ...] = tuple(dict.fromkeys(call.params.get("fields", ())))
        unknown = [field for field in fields if field not in AGENT_FIELDS]
        if unknown:
            raise wazuh_error(
                1724, f"allowed fields: {', '.join(AGENT_FIELDS)}; fields: {', '.join(unknown)}"
            )
        listing = p.listing(call.params)
        grouped = (*fields, "count")
        # q and search pick agents (agent fields); sort and paging order the counted rows.
        filtering = Listing(
            search=listing.search, search_negated=listing.search_negated, q=listing.q
        )
        rows_listing = Listing(listing.offset, listing.limit, sort=listing.sort)
        check_listing(filtering, AGENT_FIELDS, AGENT_DATE_FIELDS, AGENT_LIST_FIELDS)
        check_listing(rows_listing, grouped)
        every = call.access.allows_every("agent:read", "agent:id")
        scope = None if every else registry_scope(call.access, "agent:read")
        counted = fields and not listing.search and set(fields) <= SHOWN_FIELDS
        if counted and (every or scope is not None):
            filters = q_filters(self.context, filtering)
            if filters is not None:
                with_manager = every or manager_allowed(call.access, "agent:read")
                where = filters[0] if filters else None
                return await self._counted_distinct(
                    fields, filtering, rows_listing, scope, where, with_manager
                )
        agents, manager = await self._readable(call)
        now = self.context.now()

        def rows() -> tuple[list[dict[str, Any]], int]:
            views = self._views(agents, manager)
            everything = evolve(filtering, limit=len(views) + 1)
            chosen, _ = apply_listing(
                views,
                everything,
                AGENT_FIELDS,
                (),
                AGENT_DATE_FIELDS,
                now,
                lists=AGENT_LIST_FIELDS,
            )
            return apply_listing(distinct_rows(chosen, fields), rows_listing, grouped)

        page, total = await self.context.run_in_thread(rows)
        return Reply(envelope(page, {}, *_LISTED, total))

    async def _counted_distinct(
        self,
        fields: tuple[str, ...],
        filtering: Listing,
        rows_listing: Listing,
        scope: AgentScope | None,
        where: AgentFilter | None,
        with_manager: bool,
    ) -> Reply:
        """GET /agents/stats/distinct counted by the registry (fields it shows, a q it
        tests, no search), agent 000 first when ``with_manager`` and it passes the q."""
        counted = await self.context.registry.run(
            lambda registry: registry.distinct_counts(fields, scope, where)
        )
        now = self.context.now()

        def rows() -> tuple[list[dict[str, Any]], int]:
            views = [_nested(fields, values) for values, _, _ in counted]
            weights = [count for _, count, _ in counted]
            if with_manager:
                manager = self._views([], True)[0]
                if not filtering.q or parse_q(
                    filtering.q, AGENT_FIELDS, AGENT_DATE_FIELDS, now, lists=AGENT_LIST_FIELDS
                ).matches(manager):
                    views.insert(0, manager)
                    weights.insert(0, 1)
            grouped = (*fields, "count")
            return apply_listing(distinct_rows(views, fields, weights), rows_listing, grouped)

        page, total = await self.context.run_in_thread(rows)
        return Reply(envelope(page, {}, *_LISTED, total))

    async def overview(self, call: Call) -> Reply:
        """GET /overview/agents: agents by node, OS, version and status, the groups, and the
        last registered agent (what the caller may read)."""
        infos = await self.context.registry.list_groups()
        failed: dict[int, list[str]] = {}
        names = [info.name for info in infos]
        readable = set(call.access.select("group:read", "group:id", names, failed, False))
        infos = [info for info in infos if info.name in readable]
        shared = self.context.shared
        every = call.access.allows_every("agent:read", "agent:id")
        scope = None if every else registry_scope(call.access, "agent:read")
        if every or scope is not None:
            with_manager = every or manager_allowed(call.access, "agent:read")
            groups = [group_view(shared, i.name, i.agent_count) for i in infos]
            return await self._counted_overview(scope, with_manager, groups)
        agents, manager = await self._readable(call)

        def overview() -> dict[str, Any]:
            views = self._views(agents, manager)
            enrolled = [view for view in views if view["id"] != "000"]
            status = dict.fromkeys(AGENT_STATUSES, 0)
            synced = 0
            for view in enrolled:
                status[view["status"]] = status.get(view["status"], 0) + 1
                synced += view["group_config_status"] == "synced"
            last = max(enrolled, key=lambda view: (view["dateAdd"], view["id"]), default=None)
            os_fields = _OS_FIELDS
            return {
                "nodes": [
                    {"node_name": row["node_name"], "count": row["count"]}
                    for row in distinct_rows(views, ("node_name",))
                ],
                "groups": [group_view(shared, i.name, i.agent_count) for i in infos],
                "agent_os": distinct_rows(views, os_fields),
                "agent_status": {
                    "connection": {**status, "total": len(enrolled)},
                    "configuration": {
                        "synced": synced,
                        "not_synced": len(enrolled) - synced,
                        "total": len(enrolled),
                    },
                },
                "agent_version": distinct_rows(views, ("version",)),
                "last_registered_agent": [last] if last is not None else [],
            }

        return Reply({"data": await self.context.run_in_thread(overview), "error": 0})

    async def _counted_overview(
        self, scope: AgentScope | None, with_manager: bool, groups: list[dict[str, Any]]
    ) -> Reply:
        """GET /overview/agents counted by the registry over the agents of ``scope``
        (None: all), agent 000 added when ``with_manager``: no agent view is built but
        the last registered agent's and the manager's."""
        fields = (("node_name",), _OS_FIELDS, ("version",))
        every_field = ("node_name", *_OS_FIELDS, "version")

        def read(registry: Registry) -> tuple[Any, ...]:
            # One scan for the three digests: each is a projection of these combinations.
            distinct = registry.distinct_counts(every_field, scope)
            return registry.status_counts(scope), distinct, registry.last_registered(scope)

        statuses, distinct, last = await self.context.registry.run(read)

        def overview() -> dict[str, Any]:
            manager = self._views([], True)[0] if with_manager else None
            rows = []
            for names in fields:
                counted = _projected(distinct, [every_field.index(name) for name in names])
                views = [_nested(names, values) for values, _ in counted]
                weights = [count for _, count in counted]
                if manager is not None:
                    views.insert(0, manager)
                    weights.insert(0, 1)
                rows.append(distinct_rows(views, names, weights))
            nodes, agent_os, versions = rows
            newest = agent_views(self.context, [last]) if last is not None else []
            return {
                "nodes": [{"node_name": row["node_name"], "count": row["count"]} for row in nodes],
                "groups": groups,
                "agent_os": agent_os,
                "agent_status": counted_status(self.context, statuses),
                "agent_version": versions,
                "last_registered_agent": newest,
            }

        return Reply({"data": await self.context.run_in_thread(overview), "error": 0})

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        listing = {**common, **p.LISTING}
        del listing["distinct"]
        read = ("agent:read",)
        return [
            Route(
                "GET",
                "/agents/summary",
                self.summary,
                {**common, "agents_list": p.comma_list(p.agent_id)},
                actions=read,
            ),
            Route("GET", "/agents/summary/os", self.summary_os, common, actions=read),
            Route("GET", "/agents/no_group", self.no_group, listing, actions=read),
            Route("GET", "/agents/outdated", self.outdated, listing, actions=read),
            Route(
                "GET",
                "/agents/stats/distinct",
                self.distinct,
                {
                    **{k: v for k, v in listing.items() if k != "select"},
                    "fields": p.comma_list(p.names),
                },
                actions=read,
            ),
            Route(
                "GET",
                "/overview/agents",
                self.overview,
                common,
                actions=("agent:read", "group:read"),
            ),
        ]

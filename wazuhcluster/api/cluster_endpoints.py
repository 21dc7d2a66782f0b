"""The Cluster family: the cluster's status, this node, the node list, health and
whether each node's ruleset is in sync, read from the master node's view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.health import OK_VERDICT, health_items, ruleset_synced
from wazuhcluster.api.query import apply_listing
from wazuhcluster.api.replies import Reply, add_failure, envelope, same_message
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.views import NODE_FIELDS


class ClusterEndpoints:
    """``/cluster/...`` (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    async def cluster_status(self, call: Call) -> Reply:
        """GET /cluster/status."""
        call.access.require("cluster:status")
        enabled = "no" if self.context.node.config.cluster.disabled else "yes"
        return Reply({"data": {"enabled": enabled, "running": enabled}, "error": 0})

    async def local_info(self, call: Call) -> Reply:
        """GET /cluster/local/info."""
        cluster = self.context.node.config.cluster
        call.access.require_one("cluster:read", "node:id", cluster.node_name)
        item = {"node": cluster.node_name, "cluster": cluster.name, "type": cluster.node_type}
        return Reply(envelope([item], {}, *same_message("All selected information was returned")))

    async def cluster_nodes(self, call: Call) -> Reply:
        """GET /cluster/nodes."""
        listing = p.listing(call.params)
        rows, failed = _select_nodes(self.context.node.nodes(), call.params.get("nodes_list"), call)
        if "type" in call.params:
            rows = [row for row in rows if row["type"] == call.params["type"]]
        page, total = apply_listing(rows, listing, NODE_FIELDS)
        message = "All selected nodes information was returned"
        return Reply(envelope(page, failed, *same_message(message), total))

    async def healthcheck(self, call: Call) -> Reply:
        """GET /cluster/healthcheck: Wazuh's report plus the node's verdicts."""
        health = self.context.node.health()
        active = await self.context.registry.list_agents(status="active")
        counts: dict[str, int] = {}
        for agent in active:
            counts[agent.node_name] = counts.get(agent.node_name, 0) + 1
        items = health_items(health, counts)
        rows, failed = _select_nodes(
            [{"name": item["info"]["name"]} for item in items], call.params.get("nodes_list"), call
        )
        shown = {row["name"] for row in rows}
        items = [item for item in items if item["info"]["name"] in shown]
        extra = {
            "n_connected_nodes": health["n_connected_nodes"],
            "verdict": dict(health.get("verdict") or OK_VERDICT),
        }
        return Reply(
            envelope(
                items,
                failed,
                *same_message("All selected nodes healthcheck information was returned"),
                extra=extra,
            )
        )

    async def ruleset_sync(self, call: Call) -> Reply:
        """GET /cluster/ruleset/synchronization: whether each node's synced files match."""
        health = self.context.node.health()
        items = []
        for name, entry in health["nodes"].items():
            synced = entry["info"]["type"] == "master" or ruleset_synced(entry.get("status", {}))
            items.append({"name": name, "synced": synced})
        items, failed = _select_nodes(items, call.params.get("nodes_list"), call)
        message = "Nodes ruleset synchronization status was successfully read"
        return Reply(envelope(items, failed, *same_message(message)))

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        nodes = {"nodes_list": p.comma_list(p.names)}
        read = ("cluster:read",)
        return [
            Route(
                "GET", "/cluster/status", self.cluster_status, common, actions=("cluster:status",)
            ),
            Route("GET", "/cluster/local/info", self.local_info, common, actions=read),
            Route(
                "GET",
                "/cluster/nodes",
                self.cluster_nodes,
                {**common, **p.LISTING, **nodes, "type": p.choice("master", "worker")},
                actions=read,
            ),
            Route(
                "GET", "/cluster/healthcheck", self.healthcheck, {**common, **nodes}, actions=read
            ),
            Route(
                "GET",
                "/cluster/ruleset/synchronization",
                self.ruleset_sync,
                {**common, **nodes},
                actions=read,
            ),
        ]


def _select_nodes(
    rows: list[dict[str, Any]], wanted: Sequence[str] | None, call: Call
) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
    """The rows named in ``wanted`` (all when empty) the caller may read (cluster:read);
    unknown names fail with 1730."""
    failed: dict[int, list[str]] = {}
    names = list(wanted) if wanted else [row["name"] for row in rows]
    kept = set(call.access.select("cluster:read", "node:id", names, failed, bool(wanted)))
    known = {row["name"] for row in rows}
    for name in dict.fromkeys(wanted or ()):
        if name in kept and name not in known:
            add_failure(failed, 1730, name)
    return [row for row in rows if row["name"] in kept], failed

"""The configuration of the cluster and of the API as Wazuh's API shows them:
``GET /cluster/local/config`` (the master's ``<cluster>`` block), ``GET /manager/api/config``
and ``GET /cluster/api/config`` (what the API serves with).

Only the master serves the API here: a worker's item in ``/cluster/api/config`` says so
(``node_api_config: {"enabled": false}``) rather than showing settings nobody serves with.
The cluster key is never shown (``*****``, as in ``/manager/configuration``).
"""

from __future__ import annotations

from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.replies import Reply, add_failure, envelope, same_message
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.config.api_settings import ApiSettings

HIDDEN = "*****"


def api_config_view(settings: ApiSettings) -> dict[str, Any]:
    """What the API serves with, in the fields of Wazuh's api.yaml that mean the same here."""
    return {
        "host": settings.bind_addr,
        "port": settings.port,
        "max_upload_size": settings.max_upload_size,
        "experimental_features": False,
        "https": {
            "enabled": True,
            "key": str(settings.key),
            "cert": str(settings.cert),
            "use_ca": False,
        },
        "access": {
            "max_login_attempts": settings.max_login_attempts,
            "block_time": settings.block_time,
            "max_request_per_minute": settings.max_request_per_minute,
        },
    }


class ConfigEndpoints:
    """The cluster's and the API's configuration (see module docstring)."""

    def __init__(self, context: EndpointContext, settings: ApiSettings | None) -> None:
        self.context = context
        self.settings = settings

    def _api_item(self, node: str) -> dict[str, Any]:
        cluster = self.context.node.config.cluster
        if node == cluster.node_name and self.settings is not None:
            return {"node_name": node, "node_api_config": api_config_view(self.settings)}
        return {"node_name": node, "node_api_config": {"enabled": False}}

    async def local_config(self, call: Call) -> Reply:
        """GET /cluster/local/config: the master's ``<cluster>`` block (key hidden)."""
        cluster = self.context.node.config.cluster
        call.access.require_one("cluster:read", "node:id", cluster.node_name)
        item = {
            "name": cluster.name,
            "node_name": cluster.node_name,
            "node_type": cluster.node_type,
            "key": HIDDEN,
            "port": cluster.port,
            "bind_addr": cluster.bind_addr,
            "nodes": [cluster.master_address],
            "hidden": "yes" if cluster.hidden else "no",
            "disabled": cluster.disabled,
        }
        return Reply(envelope([item], {}, *same_message("All selected information was returned")))

    async def manager_api_config(self, call: Call) -> Reply:
        """GET /manager/api/config: the master's API settings (as Wazuh, on a cluster this
        needs ``cluster:read_api_config`` on the master's node: Wazuh's default policies
        grant it on ``node:id:*``)."""
        cluster = self.context.node.config.cluster
        if cluster.disabled:
            call.access.require("manager:read_api_config")
            message = "API configuration was successfully read"
        else:
            call.access.require_one("cluster:read_api_config", "node:id", cluster.node_name)
            message = "API configuration was successfully read in all specified nodes"
        return Reply(envelope([self._api_item(cluster.node_name)], {}, *same_message(message)))

    async def cluster_api_config(self, call: Call) -> Reply:
        """GET /cluster/api/config: each node's (or the listed nodes') API settings."""
        known = [row["name"] for row in self.context.node.nodes()]
        wanted = call.params.get("nodes_list")
        failed: dict[int, list[str]] = {}
        names = list(dict.fromkeys(wanted)) if wanted else known
        kept = call.access.select("cluster:read_api_config", "node:id", names, failed, bool(wanted))
        items = []
        for name in kept:
            if name in known:
                items.append(self._api_item(name))
            else:
                add_failure(failed, 1730, name)
        msgs = (
            "API configuration was successfully read in all specified nodes",
            "Not all API configurations could be read",
            "Could not read API configuration in any node",
        )
        return Reply(envelope(items, failed, *msgs))

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        return [
            Route(
                "GET",
                "/cluster/local/config",
                self.local_config,
                common,
                actions=("cluster:read",),
            ),
            Route(
                "GET",
                "/manager/api/config",
                self.manager_api_config,
                common,
                actions=("manager:read_api_config",),
            ),
            Route(
                "GET",
                "/cluster/api/config",
                self.cluster_api_config,
                {**common, "nodes_list": p.comma_list(p.names)},
                actions=("cluster:read_api_config",),
            ),
        ]

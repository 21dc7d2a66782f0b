"""How a master plugs the API in: one call that returns the service (or None when off).

``MasterService`` is expected to do, after its registry feature exists::

    api = master_api(config, self.node, self.registry, reactor, sections.api)
    if api is not None:
        api.setServiceParent(self)

The registry feature is used duck-typed (it must offer ``registry`` — the async
registry — and ``push_keys(added, removed)``), so this room imports nothing from the
master's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.service import ApiService
from wazuhcluster.config.api_settings import ApiSettings, parse_api
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.registry.model import Agent
from wazuhcluster.util.logs import ClusterLog


def registry_hooks(feature: Any, node: Any = None, log: ClusterLog | None = None) -> ApiHooks:
    """Hooks that push keys added or removed through the API to the workers at once, and
    ask agents to reconnect through the node's ``reconnect_agents`` (wherever they are
    connected) when it has one; otherwise the request is only logged."""
    log = log or ClusterLog("Master", "API")

    def added(agents: list[Agent]) -> None:
        rows = [{"id": a.id, "name": a.name, "ip": a.ip, "key": a.key} for a in agents]
        feature.push_keys(rows, [])

    def removed(agent_ids: list[str]) -> None:
        feature.push_keys([], list(agent_ids))

    def reconnect(agent_ids: list[str]) -> Deferred[None] | None:
        log.info(
            "Reconnection requested through the API for agents {ids}", ids=", ".join(agent_ids)
        )
        if node is None or getattr(node, "reconnector", None) is None:
            return None
        return ensureDeferred(_reconnect(node, agent_ids, log))

    return ApiHooks(reconnect=reconnect, agents_added=added, agents_removed=removed)


async def _reconnect(node: Any, agent_ids: list[str], log: ClusterLog) -> None:
    try:
        asked = await node.reconnect_agents(list(agent_ids), 0)
    except Exception as error:
        log.warn("Could not ask agents to reconnect: {error}", error=error)
        return
    log.info("Agents asked to reconnect, by node: {asked}", asked=asked)


def master_api(
    config: NodeConfig,
    node: Any,
    registry_feature: Any,
    reactor: Any,
    settings: ApiSettings | None = None,
    hooks: ApiHooks | None = None,
) -> ApiService | None:
    """The master's ApiService, or None when ``<api>`` is absent or disabled."""
    settings = settings or parse_api(config.section("api"), config.home)
    if not settings.enabled:
        return None
    return ApiService(
        settings, node, registry_feature, reactor, hooks or registry_hooks(registry_feature, node)
    )

"""How a master plugs the API in: one call that returns the service (or None when off).

``MasterService`` is expected to do, after its registry feature exists::

    api = master_api(config, self.node, self.registry, reactor, sections.api)
    if api is not None:
        api.setServiceParent(self)

The node and the registry feature are seen through :mod:`wazuhcluster.api.interfaces`
(``IApiNode``, ``IRegistryFeature``), so this room imports nothing from the master's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred, ensureDeferred

from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.interfaces import IApiNode, IRegistryFeature
from wazuhcluster.api.service import ApiService
from wazuhcluster.config.api_settings import ApiSettings, parse_api
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.registry.model import Agent
from wazuhcluster.util.interfaces import IReactorSSLTime
from wazuhcluster.util.logs import ClusterLog


def registry_hooks(
    feature: IRegistryFeature, node: IApiNode | None = None, log: ClusterLog | None = None
) -> ApiHooks:
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
        if node is None or node.reconnector is None:
            return None
        return ensureDeferred(_reconnect(node, agent_ids, log))

    return ApiHooks(reconnect=reconnect, agents_added=added, agents_removed=removed)


async def _reconnect(node: IApiNode, agent_ids: list[str], log: ClusterLog) -> None:
    try:
        asked = await node.reconnect_agents(list(agent_ids), 0)
    except Exception as error:
        log.warn("Could not ask agents to reconnect: {error}", error=error)
        return
    log.info("Agents asked to reconnect, by node: {asked}", asked=asked)


def master_api(
    config: NodeConfig,
    node: IApiNode,
    registry_feature: IRegistryFeature,
    reactor: IReactorSSLTime,
    settings: ApiSettings | None = None,
    hooks: ApiHooks | None = None,
    failover: Callable[[], Mapping[str, Any]] | None = None,
    security_changed: Callable[[], Awaitable[None]] | None = None,
    files_changed: Callable[[], Awaitable[None]] | None = None,
) -> ApiService | None:
    """The master's ApiService, or None when ``<api>`` is absent or disabled (``failover``:
    the election's status on a node with ``<failover>``, see :class:`ApiHooks`)."""
    settings = settings or parse_api(config.section("api"), config.home)
    if not settings.enabled:
        return None
    hooks = hooks or registry_hooks(registry_feature, node)
    if failover is not None:
        hooks = evolve(hooks, failover=failover)
    if security_changed is not None:
        hooks = evolve(hooks, security_changed=security_changed)
    if files_changed is not None:
        hooks = evolve(hooks, files_changed=files_changed)
    return ApiService(settings, node, registry_feature, reactor, hooks)

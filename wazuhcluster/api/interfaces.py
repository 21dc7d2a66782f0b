"""What the master hands its REST API: its node and its registry feature.

The API room imports nothing from the master's: these interfaces say what it uses, and
``wazuhcluster.master`` declares that its classes provide them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface

from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.registry.interfaces import IAsyncRegistry


class IRegistryFeature(Interface):
    """The master's registry feature: the running registry, and the key pushes to workers."""

    registry: IAsyncRegistry = Attribute("The running registry (async: SQLite on its thread).")

    def push_keys(added: list[dict[str, str]], removed: list[str]) -> None:
        """Tell every connected worker about new (``id``, ``name``, ``ip``, ``key`` rows) and
        removed agents, without waiting."""


class IAgentDataAsker(Interface):
    """What reaches the agent data a node keeps, wherever the agent reports."""

    async def ask(node_name: str, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to ``request`` (:mod:`wazuhcluster.api.agent_data`) from
        ``node_name`` (this node when empty)."""

    async def send_command(
        by_node: dict[str, list[str]], command: str
    ) -> tuple[list[str], dict[int, list[str]]]:
        """Send ``#!-<command>`` to agents through the node each reports to; the ids
        reached and, by Wazuh error code, those not."""


class IApiNode(Interface):
    """The master node as the API reads it."""

    config: NodeConfig = Attribute("The node's configuration.")
    clock: IReactorTime = Attribute("The reactor's clock.")
    workers: Iterable[object] = Attribute("The connected workers.")
    reconnector: object = Attribute(
        "What reaches the agents for :meth:`reconnect_agents`, or None when the node has none."
    )
    agent_data: IAgentDataAsker | None = Attribute(
        "What answers agent-data requests (``await ask(node_name, request)``, see "
        ":mod:`wazuhcluster.api.agent_data`) wherever the agent reports, or None."
    )

    def nodes() -> list[dict[str, str]]:
        """Master first, then connected workers: name, type, version, ip."""

    def health() -> dict[str, Any]:
        """Health data in the shape of Wazuh's ``get_health``."""

    async def reconnect_agents(agents: list[str], count: int) -> dict[str, list[str]]:
        """Ask agents to reconnect wherever they are connected; the ids asked, by node."""

    async def send_to_agents(message: str, agents: list[str]) -> dict[str, list[str]]:
        """Send a manager → agent message (``#!-execd ...``) to the given agents wherever
        they are connected; the ids it was sent to, by node."""

    def ingest_events(events: list[str]) -> None:
        """Queue log lines for the master's analysis as if the manager had read them
        (agent 000, location ``API-Webhook``); raises ApiError 1017 without analysis."""

    async def ask_node(node: str, question: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A node's answer about itself (``info``, ``status``, ``logs``...): the master's
        own, or a connected worker's over the cluster link, bounded in time and size.
        Raises :class:`~wazuhcluster.api.errors.ApiError` (1730 for a node not connected)."""

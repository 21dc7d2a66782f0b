"""What a role hands the control socket (``wazuhcluster.control.server``)."""

from __future__ import annotations

from typing import Any

from zope.interface import Interface


class IControlBackend(Interface):
    """Answers control requests: the master from its own state, a worker by relaying what
    only the master knows over the cluster link."""

    async def list_nodes() -> list[dict[str, str]]:
        """The cluster's nodes, master first."""

    async def local_info() -> dict[str, str]:
        """This node's identity."""

    async def manage(action: str, arguments: dict[str, Any]) -> Any:
        """Serve a management request (the master) or relay it to the master (a worker)."""

    async def cluster_health() -> dict[str, Any]:
        """The cluster's health report."""

    async def reconnect_agents(agents: list[str], count: int) -> dict[str, list[str]]:
        """Ask agents to reconnect; the ids asked, by node."""

    async def reload() -> str:
        """Reload the node's ruleset."""

    async def analysis_stats() -> dict[str, Any]:
        """This node's analysis intake numbers (with its name)."""


class IFailoverView(Interface):
    """What a node with ``<failover>`` tells the control socket about the election."""

    def failover_status() -> dict[str, Any]:
        """The master (name, address, term), the candidates, the time of the last election,
        this node's part and whether etcd answers."""

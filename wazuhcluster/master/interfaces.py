"""The master's own seams: its node as the link protocol and the features see it, and the
collaborators the node's control backend is handed once the features exist."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface

from wazuhcluster.config.cluster import NodeConfig, Timings
from wazuhcluster.master.workers import WorkerDirectory, WorkerLink
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.wire.features import FeatureSet
from wazuhcluster.wire.handshake import MasterIdentity


class IMasterNode(Interface):
    """The master's state shared by every worker link and feature."""

    config: NodeConfig = Attribute("The node's configuration.")
    clock: IReactorTime = Attribute("The reactor's clock.")
    timings: Timings = Attribute("The cluster's intervals and timeouts.")
    log: ClusterLog = Attribute("The master's main log.")
    identity: MasterIdentity = Attribute("What the handshake proves to workers.")
    features: FeatureSet[WorkerLink] = Attribute("The link features (each owns its commands).")
    workers: WorkerDirectory = Attribute("The authenticated workers.")

    def nodes() -> list[dict[str, str]]:
        """The node list, master first then workers in connection order."""

    def health() -> dict[str, Any]:
        """Health data in the shape of Wazuh's ``get_health``."""

    def worker_connected(link: WorkerLink) -> None:
        """A worker passed the handshake."""

    def worker_disconnected(link: WorkerLink) -> None:
        """An authenticated worker's link is gone."""


class IManager(Interface):
    """Serves management requests (the registry feature)."""

    async def manage(action: str, arguments: dict[str, Any]) -> Any:
        """Run a management action; bad requests become ControlError."""


class IAgentReconnector(Interface):
    """Reaches agents wherever they are connected (the agents feature)."""

    async def send_to_agents(message: str, agents: list[str]) -> dict[str, list[str]]:
        """Send ``message`` to the given agents wherever they are connected; the ids it was
        sent to, by node."""

    async def reconnect(agents: list[str], count: int) -> dict[str, list[str]]:
        """Ask the given agents, plus up to ``count`` more per node, to reconnect; the ids
        asked, by node."""

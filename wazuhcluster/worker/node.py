"""The worker role: the link to the master, the worker's tasks, the control backend."""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from wazuhcluster import WAZUH_VERSION, __version__
from wazuhcluster.agents.interfaces import IAgentChannel
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.config.sections import NodeSections
from wazuhcluster.control.commands import ControlError
from wazuhcluster.control.interfaces import IControlBackend, IFailoverView
from wazuhcluster.node.answers import NodeAnswers
from wazuhcluster.node.builder import NodeServices
from wazuhcluster.node.interfaces import IMasterFollower, IRuleset
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.restart import restart_node
from wazuhcluster.util.threads import run_in_reactor_pool
from wazuhcluster.util.tls import client_options, load_material
from wazuhcluster.wire import commands
from wazuhcluster.wire.registry import RelayManage
from wazuhcluster.worker.agent_data import WorkerAgentData
from wazuhcluster.worker.agents import WorkerAgents
from wazuhcluster.worker.integrity import WorkerIntegrity
from wazuhcluster.worker.link import MasterLink
from wazuhcluster.worker.questions import WorkerQuestions
from wazuhcluster.worker.registry import WorkerRegistry
from wazuhcluster.worker.target import MasterTarget

#: The Wazuh daemons whose work a worker does.
WORKER_DAEMONS = ("wazuh-analysisd", "wazuh-remoted", "wazuh-authd", "wazuh-clusterd")


def master_endpoint(
    config: NodeConfig, reactor: INodeReactor, host: str | None = None, port: int | None = None
) -> IStreamClientEndpoint:
    """The mutual-TLS endpoint to the master at ``host:port`` (default: the one named in
    ``<nodes><node>``); the master's certificate must name ``host``."""
    cluster = config.cluster
    host = host or cluster.master_address
    authority, own = load_material(cluster.tls.ca_cert, cluster.tls.node_cert, cluster.tls.node_key)
    plain = HostnameEndpoint(reactor, host, port or cluster.port)
    return wrapClientTLS(client_options(authority, own, host), plain)


@implementer(IControlBackend)
class WorkerNode:
    """The worker's state, shared by its link, tasks and control backend."""

    def __init__(
        self,
        config: NodeConfig,
        link: MasterLink,
        channel: IAgentChannel | None = None,
        ruleset: IRuleset | None = None,
        target: MasterTarget | None = None,
    ) -> None:
        self.config = config
        self.link = link
        self.channel = channel
        self.ruleset = ruleset
        #: Where the link dials (None: a fixed endpoint handed in by a test).
        self.target = target

    async def list_nodes(self) -> list[dict[str, str]]:
        """Control: the node list, asked of the master."""
        answer = await self.link.call(commands.GetNodes)
        nodes: list[dict[str, str]] = answer["nodes"]
        return nodes

    async def cluster_health(self) -> dict[str, Any]:
        """Control: the health report, asked of the master."""
        answer = await self.link.call(commands.GetHealth)
        health: dict[str, Any] = answer["health"]
        return health

    async def reload(self) -> str:
        """Control: reload this worker's ruleset."""
        if self.ruleset is None:
            raise ControlError("this node runs no analysis")
        await self.ruleset.reload()
        return "Ruleset reloaded."

    async def analysis_stats(self) -> dict[str, Any]:
        """Control: this worker's analysis intake numbers."""
        if self.ruleset is None:
            raise ControlError("this node runs no analysis")
        return {"node": self.config.cluster.node_name, **self.ruleset.intake()}

    async def reconnect_agents(self, agents: list[str], count: int) -> dict[str, list[str]]:
        """Control: ask agents connected to this worker to reconnect."""
        if self.channel is None:
            return {}
        return {self.config.cluster.node_name: self.channel.reconnect(agents, count)}

    async def manage(self, action: str, arguments: dict[str, Any]) -> Any:
        """Control: a management request, relayed to the master."""
        answer = await self.link.call(RelayManage, action=action, arguments=arguments)
        return answer["result"]

    async def local_info(self) -> dict[str, str]:
        """Control: this node's identity."""
        cluster = self.config.cluster
        return {
            "name": cluster.node_name,
            "type": "worker",
            "version": WAZUH_VERSION,
            "ip": cluster.master_address if self.target is None else str(self.target),
            "wazuhcluster_version": __version__,
            "cluster": cluster.name,
            "connected": "yes" if self.link.connected else "no",
        }


@implementer(IMasterFollower)
class WorkerService(MultiService):
    """Everything a worker runs, as a tree of services.

    With ``follow`` (a node with ``<failover>``) the link has no master until
    :meth:`follow_master` names one, and moves when it names another; ``failover`` then
    answers the control socket's questions about the election.
    """

    def __init__(
        self,
        config: NodeConfig,
        reactor: INodeReactor,
        sections: NodeSections,
        endpoint: IStreamClientEndpoint | None = None,
        follow: bool = False,
        failover: IFailoverView | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        cluster = config.cluster
        self.target: MasterTarget | None = None
        if endpoint is None:
            self.target = MasterTarget(
                lambda host, port: master_endpoint(config, reactor, host, port),
                None if follow else cluster.master_address,
                cluster.port,
            )
            endpoint = self.target
        self.link = MasterLink(config.cluster, endpoint, reactor)
        self.link.setName("master-link")
        self.link.setServiceParent(self)
        home = config.home
        self.shared = NodeServices(config, sections, reactor, f"Worker {config.cluster.node_name}")
        self.analysis = self.shared.analysis
        self.channel = self.shared.channel
        self.reload_actions = self.shared.reload_actions
        self.integrity = WorkerIntegrity(home.root, self.link)
        self.registry = WorkerRegistry(home.client_keys, sections.auth, self.link, reactor)
        self.integrity.on_ruleset_changed.append(self.analysis.reload)
        self.agents = WorkerAgents(self.link, self.channel, reactor)
        self.shared.serve_merged_files(self.agents.table)
        self.registry.on_keys_changed.append(self.shared.keys_delta_changed)
        self.integrity.on_files_changed.append(self.shared.files_changed)
        answers = NodeAnswers(
            config,
            run_in_reactor_pool,
            intake=self.analysis.intake,
            reload=self.analysis.reload,
            running=WORKER_DAEMONS,
            remoted=self.channel.remoted_numbers,
            ask_agent=self.channel.ask_agent,
            restart=lambda delay: restart_node(
                reactor, ClusterLog(f"Worker {config.cluster.node_name}", "Main"), delay
            ),
        )
        answers.agent_counters = self.channel.factory.agent_counters
        answers.agent_queues = self.analysis.agent_counts
        self.questions = WorkerQuestions(
            answers, ClusterLog(f"Worker {config.cluster.node_name}", "Questions")
        )
        for feature in (
            self.integrity,
            self.registry,
            self.agents,
            self.questions,
            WorkerAgentData(home.agents_state),
        ):
            self.link.features.add(feature)
            for service in feature.services():
                service.setServiceParent(self)
        self.shared.set_service_parent(self)
        self.node = WorkerNode(config, self.link, self.channel, self.analysis, self.target)
        self.shared.control_service(self.node, failover).setServiceParent(self)

    def follow_master(self, name: str, host: str, port: int) -> Deferred[None] | None:
        """Link to master ``name`` at ``host:port`` from now on, relinking at once when it
        moved, or when a master was elected where this worker is not linked (a worker with
        ``<failover>``)."""
        if self.target is None:
            raise RuntimeError("this worker dials a fixed endpoint")
        if not self.target.move(host, port):
            if self.link.connected:
                return None
            # Elected again where it was (a master that came back): dial now rather than
            # at the end of the back-off.
            self.link.log.info(
                "The master {name} was elected at {host}:{port}; linking to it now.",
                name=name,
                host=host,
                port=port,
            )
            return self.link.relink()
        self.link.log.info(
            "The master is now {name} at {host}:{port}; linking to it.",
            name=name,
            host=host,
            port=port,
        )
        return self.link.relink()

    def startService(self) -> None:
        """Log the start, then start every child."""
        cluster = self.config.cluster
        for warning in cluster.warnings:
            self.link.log.warn("{source}: {warning}", source=self.config.source, warning=warning)
        self.link.log.info(
            "Worker {name} of cluster {cluster} starting; master at {where}.",
            name=cluster.node_name,
            cluster=cluster.name,
            where=(
                f"{cluster.master_address}:{cluster.port}"
                if self.target is None
                else self.target
                if self.target.known
                else "the address the election names (etcd)"
            ),
        )
        super().startService()

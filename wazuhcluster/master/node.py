"""The master role: the 1516 listener, the directory of workers, the reaper, the control backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from OpenSSL import crypto
from twisted.application.service import MultiService
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import Factory
from zope.interface import implementer

from wazuhcluster import WAZUH_VERSION, __version__
from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.agents.interfaces import IEventSink
from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.api.interfaces import IApiNode, IRegistryFeature
from wazuhcluster.api.wiring import master_api
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.config.sections import NodeSections
from wazuhcluster.control.commands import ControlError
from wazuhcluster.control.interfaces import IControlBackend, IFailoverView
from wazuhcluster.failover.interfaces import IDurableAgents, IDurableFiles
from wazuhcluster.master.agent_data import MasterAgentData
from wazuhcluster.master.agents import MasterAgents
from wazuhcluster.master.durable_api import DurableRegistryFeature
from wazuhcluster.master.durable_files import FilePublisher
from wazuhcluster.master.durable_security import SecurityPublisher
from wazuhcluster.master.integrity import MasterIntegrity
from wazuhcluster.master.interfaces import IAgentReconnector, IManager, IMasterNode
from wazuhcluster.master.protocol import MasterProtocol, PeerNames
from wazuhcluster.master.registry import MasterRegistry
from wazuhcluster.master.watch import SyncedTreeWatcher
from wazuhcluster.master.workers import WorkerDirectory, WorkerLink
from wazuhcluster.node.answers import NodeAnswers, error_of
from wazuhcluster.node.builder import NodeServices
from wazuhcluster.node.health import Verdict, cluster_verdict, worker_verdict
from wazuhcluster.node.interfaces import IRuleset
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.limits import LimitedFactory, ListenerService
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.restart import restart_node
from wazuhcluster.util.tasks import PeriodicTask
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.util.tls import certificate_names, load_material, server_options
from wazuhcluster.wire.calls import CallTimeout, call_with_timeout
from wazuhcluster.wire.commands import PROTOCOL_VERSION
from wazuhcluster.wire.features import FeatureSet
from wazuhcluster.wire.handshake import MasterIdentity
from wazuhcluster.wire.questions import ASK_TIMEOUT, AskNode

#: The Wazuh daemons whose work a master does.
#: The location of the log lines POST /events hands to analysis (Wazuh's).
EVENTS_LOCATION = "API-Webhook"
MASTER_DAEMONS = (
    "wazuh-analysisd",
    "wazuh-remoted",
    "wazuh-authd",
    "wazuh-clusterd",
    "wazuh-db",
    "wazuh-apid",
)


def tls_peer_names(transport: ITransport | None) -> set[str] | None:
    """The names in the TLS peer certificate of ``transport`` (None without a certificate)."""
    get_certificate = getattr(transport, "getPeerCertificate", None)
    certificate = get_certificate() if get_certificate is not None else None
    if certificate is None:
        return None
    return certificate_names(crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate))


@implementer(IMasterNode, IControlBackend, IApiNode)
class MasterNode:
    """The master's state shared by every worker link and periodic task."""

    def __init__(
        self,
        config: NodeConfig,
        clock: IReactorTime,
        features: FeatureSet[WorkerLink] | None = None,
        ruleset: IRuleset | None = None,
        run_in_thread: RunInThread = run_in_reactor_pool,
        restart: Callable[[float], None] | None = None,
    ) -> None:
        """``restart(delay)`` restarts the node in place (``PUT /manager/restart``); without
        it the node answers that it cannot restart itself."""
        cluster = config.cluster
        self.features: FeatureSet[WorkerLink] = features or FeatureSet()
        self.config = config
        self.clock = clock
        self.timings = cluster.timings
        self.log = ClusterLog("Master", "Main")
        self.workers = WorkerDirectory()
        #: The feature that answers management requests (the registry), once added (it
        #: needs this node, so it comes after).
        self.manager: IManager | None = None
        #: The agents feature, which reaches agents wherever they are, once added (it needs
        #: this node too).
        self.reconnector: IAgentReconnector | None = None
        #: What asks the node an agent reports to about its stored data, once added.
        self.agent_data: MasterAgentData | None = None
        #: The analysis engine's ruleset, when this node runs analysis.
        self.ruleset = ruleset
        #: What this node answers about itself (the API's /manager/* questions).
        self.answers = NodeAnswers(
            config,
            run_in_thread,
            intake=self._intake,
            reload=self._reload_ruleset,
            running=MASTER_DAEMONS,
            restart=restart,
        )
        self.identity = MasterIdentity(
            node_name=cluster.node_name,
            cluster_name=cluster.name,
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            key=cluster.key,
        )

    def worker_connected(self, link: WorkerLink) -> None:
        """A worker passed the handshake: let every feature know."""
        self.features.link_up(link)

    def worker_disconnected(self, link: WorkerLink) -> None:
        """An authenticated worker's link is gone: let every feature know."""
        self.features.link_down(link)

    def nodes(self) -> list[dict[str, str]]:
        """The node list, master first then workers in connection order.

        ``version`` is the Wazuh version the node speaks, as Wazuh clients read it (a worker
        that passed the handshake speaks the master's protocol, so the master's); the
        package version each node announced is ``wazuhcluster_version``.
        """
        cluster = self.config.cluster
        rows = [
            {
                "name": cluster.node_name,
                "type": "master",
                "version": WAZUH_VERSION,
                "ip": cluster.master_address,
                "wazuhcluster_version": __version__,
            }
        ]
        for link in self.workers:
            rows.append(
                {
                    "name": link.name,
                    "type": "worker",
                    "version": WAZUH_VERSION,
                    "ip": link.address,
                    "wazuhcluster_version": link.version,
                }
            )
        return rows

    def health(self) -> dict[str, Any]:
        """Health data in the shape of Wazuh's ``get_health`` (times as POSIX seconds), with a
        verdict per worker and for the cluster."""
        now = self.clock.seconds()
        nodes: dict[str, Any] = {}
        verdicts: dict[str, Verdict] = {}
        for row in self.nodes():
            nodes[row["name"]] = {"info": dict(row)}
        for link in self.workers:
            status = {
                "last_keep_alive": link.last_keepalive,
                "connected_since": link.connected_at,
                **self.features.health(link),
            }
            verdicts[link.name] = worker_verdict(status, now, self.timings)
            nodes[link.name]["status"] = status
        for gone in self.workers.recent_departures(now):
            status = {"disconnected_at": gone.at}
            verdicts[gone.name] = worker_verdict(status, now, self.timings)
            nodes[gone.name] = {
                "info": {
                    "name": gone.name,
                    "type": "worker",
                    "version": WAZUH_VERSION,
                    "ip": gone.address,
                    "wazuhcluster_version": gone.version,
                },
                "status": status,
            }
        for name, verdict in verdicts.items():
            nodes[name]["verdict"] = {"state": verdict.state, "reasons": list(verdict.reasons)}
        overall = cluster_verdict(verdicts)
        return {
            "cluster": self.config.cluster.name,
            "time": now,
            "n_connected_nodes": len(self.workers),
            "nodes": nodes,
            "verdict": {"state": overall.state, "reasons": list(overall.reasons)},
        }

    def reap_silent_workers(self) -> None:
        """Drop every worker that has sent no keep-alive for longer than max_silence."""
        now = self.clock.seconds()
        log = self.log.child("Keep alive")
        for link in self.workers:
            silent = now - link.last_keepalive
            if silent > self.timings.max_silence:
                log.error(
                    "No keep alives have been received from {name} in the last {limit:.0f} "
                    "seconds ({silent:.0f} s). Disconnecting",
                    name=link.name,
                    limit=self.timings.max_silence,
                    silent=silent,
                )
                link.disconnect()

    def build_factory(self, peer_names: PeerNames = tls_peer_names) -> Factory:
        """The factory of per-worker protocols."""
        return Factory.forProtocol(lambda: MasterProtocol(self, peer_names))

    # Control backend -------------------------------------------------------------------
    async def list_nodes(self) -> list[dict[str, str]]:
        """Control: the node list."""
        return self.nodes()

    async def local_info(self) -> dict[str, str]:
        """Control: this node's identity."""
        return {**self.nodes()[0], "cluster": self.config.cluster.name}

    async def manage(self, action: str, arguments: dict[str, Any]) -> Any:
        """Control: a management request, served by the registry feature."""
        if self.manager is None:
            raise ControlError("this master has no agent registry")
        return await self.manager.manage(action, arguments)

    async def cluster_health(self) -> dict[str, Any]:
        """Control: the health report."""
        return self.health()

    async def reload(self) -> str:
        """Control: reload this node's ruleset."""
        if self.ruleset is None:
            raise ControlError("this node runs no analysis")
        await self.ruleset.reload()
        return "Ruleset reloaded."

    async def analysis_stats(self) -> dict[str, Any]:
        """Control: this node's analysis intake numbers."""
        if self.ruleset is None:
            raise ControlError("this node runs no analysis")
        return {"node": self.config.cluster.node_name, **self.ruleset.intake()}

    def _intake(self) -> dict[str, Any]:
        if self.ruleset is None:
            raise wazuh_error(1017, f"{self.config.cluster.node_name}: wazuh-analysisd")
        return self.ruleset.intake()

    async def _reload_ruleset(self) -> None:
        if self.ruleset is None:
            raise wazuh_error(1017, f"{self.config.cluster.node_name}: wazuh-analysisd")
        await self.ruleset.reload()

    async def ask_node(self, node: str, question: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """API: a node's answer about itself; a worker is asked over its link."""
        if node == self.config.cluster.node_name:
            return await self.answers.answer(question, arguments)
        link = self.workers.get(node)
        if link is None or link.protocol is None:
            raise wazuh_error(1730, node)
        try:
            result = await call_with_timeout(
                link.protocol,  # type: ignore[arg-type]
                AskNode,
                ASK_TIMEOUT,
                self.clock,
                question=question,
                arguments=arguments,
            )
        except CallTimeout:
            raise wazuh_error(3020, f"{node} did not answer within {ASK_TIMEOUT:g} s") from None
        except ApiError:
            raise
        except Exception as error:
            raise wazuh_error(3022, f"{node}: {error}") from None
        reply = result["reply"]
        if "problem" in reply:
            raise error_of(reply["problem"])
        answer: dict[str, Any] = reply["answer"]
        return answer

    def ingest_events(self, events: list[str]) -> None:
        """API: analyse log lines as the manager's own (agent 000, location API-Webhook),
        as Wazuh's POST /events does; a full queue drops them (counted)."""
        if not IEventSink.providedBy(self.ruleset):
            raise wazuh_error(1017, f"{self.config.cluster.node_name}: wazuh-analysisd")
        name = self.config.cluster.node_name
        now = float(self.clock.seconds())
        for text in events:
            self.ruleset(AgentEvent("000", name, "127.0.0.1", "1", EVENTS_LOCATION, text, now))

    async def send_to_agents(self, message: str, agents: list[str]) -> dict[str, list[str]]:
        """API: send a manager → agent message to agents wherever they are connected."""
        if self.reconnector is None:
            return {}
        return await self.reconnector.send_to_agents(message, agents)

    async def reconnect_agents(self, agents: list[str], count: int) -> dict[str, list[str]]:
        """Control: ask agents to reconnect, wherever they are connected."""
        if self.reconnector is None:
            raise ControlError("this master serves no agents")
        return await self.reconnector.reconnect(agents, count)


class MasterService(MultiService):
    """Everything a master runs, as a tree of services (``failover``: the election's view
    for the control socket, on a node with ``<failover>``)."""

    def __init__(
        self,
        config: NodeConfig,
        reactor: INodeReactor,
        sections: NodeSections,
        failover: IFailoverView | None = None,
        durable: IDurableAgents | None = None,
        durable_files: IDurableFiles | None = None,
        durable_security: IDurableFiles | None = None,
    ) -> None:
        super().__init__()
        self.durable = durable
        self.durable_files = durable_files
        self.durable_security = durable_security
        self.failover = failover
        self.shared = NodeServices(config, sections, reactor, "Master")
        self.analysis = self.shared.analysis
        self.channel = self.shared.channel
        self.reload_actions = self.shared.reload_actions
        self.node = MasterNode(
            config,
            reactor,
            ruleset=self.analysis,
            restart=lambda delay: restart_node(reactor, ClusterLog("Master", "Main"), delay),
        )
        self.node.answers.remoted = self.channel.remoted_numbers
        self.node.answers.ask_agent = self.channel.ask_agent
        self.node.answers.agent_counters = self.channel.factory.agent_counters
        self.node.answers.agent_queues = self.analysis.agent_counts
        self.sections = sections
        cluster = config.cluster
        if not cluster.disabled:
            authority, own = load_material(
                cluster.tls.ca_cert, cluster.tls.node_cert, cluster.tls.node_key
            )
            endpoint = SSL4ServerEndpoint(
                reactor,
                cluster.port,
                server_options(authority, own),
                interface=cluster.bind_addr,
            )
            # Counted per address once TLS has checked the client certificate; before that
            # only the pending caps and the handshake deadline apply, so plain TCP connects
            # from a worker's own address cannot keep it out.
            factory = LimitedFactory(
                self.node.build_factory(),
                reactor,
                self.node.log,
                limits=cluster.limits,
                admit_on="handshake",
                credential="TLS handshake with a client certificate",
            )
            self.listener = ListenerService(endpoint, factory)
            self.listener.setName("cluster-listener")
            self.listener.setServiceParent(self)
            reaper = PeriodicTask(
                "keep-alive reaper",
                cluster.timings.reaper_interval,
                self.node.reap_silent_workers,
                reactor,
                self.node.log.child("Keep alive"),
                run_at_start=False,
            )
            reaper.setServiceParent(self)
        self._add_features(config, reactor)
        self.shared.control_service(self.node, failover).setServiceParent(self)

    def _add_features(self, config: NodeConfig, reactor: INodeReactor) -> None:
        home = config.home
        integrity = MasterIntegrity(home.root, self.node)
        self.registry = MasterRegistry(
            home, self.sections.auth, self.node, reactor, durable=self.durable
        )
        self.node.manager = self.registry
        self.agents = MasterAgents(self.node, self.registry, reactor, local_channel=self.channel)
        self.node.reconnector = self.agents
        self.node.agent_data = MasterAgentData(
            config.cluster.node_name,
            self.node.workers,
            home.agents_state,
            reactor,
            locate=self._locate_agent,
            agent_nodes=self._agent_nodes,
            local_channel=self.channel,
        )
        for service in self.node.agent_data.services():
            service.setServiceParent(self)
        # Asked on the master's control socket or relayed from a worker's, like the others.
        self.registry.actions["agent_data"] = self.node.agent_data.control_page
        self.shared.serve_merged_files(self.agents.table)
        for feature in (self.registry, integrity, self.agents):
            self.node.features.add(feature)
            for service in feature.services():
                service.setServiceParent(self)
        SyncedTreeWatcher(
            home.root, integrity.notice_change, reactor, integrity.log
        ).setServiceParent(self)
        publish_files = files_changed = None
        if self.durable_files is not None:
            # Each scan publishes what changed; group writes wait for a fresh one.
            self.files = FilePublisher(
                self.durable_files, home.root, run_in_reactor_pool, integrity.log
            )
            integrity.on_table = self.files.table_scanned
            self.files.rescan = integrity.rescan_now
            publish_files = self.files.publish_now
            files_changed = self.files.publish_for_api
            self.registry.publish_files = publish_files
        self.shared.set_service_parent(self)
        self.registry.on_keys_changed.append(self.shared.key_rows_changed)
        failover = self.failover.failover_status if self.failover is not None else None
        # With <failover> the API's agent writes are stored in etcd before they are answered.
        api_registry: IRegistryFeature = self.registry
        if self.durable is not None:
            api_registry = DurableRegistryFeature(self.registry, self.durable, publish_files)
        security_changed = None
        if self.durable_security is not None:
            # API changes to users, roles and revocations are in etcd when answered.
            security_changed = SecurityPublisher(
                self.durable_security, self.sections.api.api_dir, run_in_reactor_pool, self.node.log
            ).publish
        api = master_api(
            config,
            self.node,
            api_registry,
            reactor,
            self.sections.api,
            failover=failover,
            security_changed=security_changed,
            files_changed=files_changed,
        )
        if api is not None:
            api.setServiceParent(self)

    async def _locate_agent(self, agent_id: str) -> str | None:
        """The node an agent reports to (``""`` never reported; None: no such agent)."""
        agent = await self.registry.registry.get_agent(agent_id)
        return None if agent is None else agent.node_name

    async def _agent_nodes(self) -> dict[str, str]:
        """Every agent's node, for the look for agents that moved."""
        return await self.registry.registry.agent_nodes()

    def startService(self) -> None:
        """Log the start, then start every child."""
        cluster = self.node.config.cluster
        for warning in cluster.warnings:
            self.node.log.warn(
                "{source}: {warning}", source=self.node.config.source, warning=warning
            )
        if cluster.disabled:
            self.node.log.warn("Cluster is disabled in the configuration: running standalone.")
        else:
            self.node.log.info(
                "Master {name} of cluster {cluster} listening on {addr}:{port}.",
                name=cluster.node_name,
                cluster=cluster.name,
                addr=cluster.bind_addr,
                port=cluster.port,
            )
        super().startService()

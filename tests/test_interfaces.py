"""The seams between rooms: every class a role wires in provides the interface it is
declared to provide, as zope.interface's ``verifyObject`` checks it (methods with their
arguments, attributes present)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.helpers import InMemoryCluster, write_config
from tests.test_registry_link import _SyncRegistryService
from wazuhcluster.agents.groups_table import MergedFiles
from wazuhcluster.agents.interfaces import IAgentChannel, IEventSink, IMergedFiles
from wazuhcluster.agents.service import AgentChannelService
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.api.interfaces import IApiNode, IRegistryFeature
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.auth_settings import default_auth
from wazuhcluster.config.home import Home
from wazuhcluster.config.remote_settings import AgentsSettings, RemoteSettings
from wazuhcluster.control.interfaces import IControlBackend
from wazuhcluster.master.agents import MasterAgents
from wazuhcluster.master.interfaces import IAgentReconnector, IManager, IMasterNode
from wazuhcluster.master.registry import MasterRegistry
from wazuhcluster.node.analysis_service import AnalysisService
from wazuhcluster.node.interfaces import IRuleset
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire.interfaces import IPeer
from wazuhcluster.worker.node import WorkerNode


class MasterSeamTests(SynchronousTestCase):
    """The master's node and features provide what the protocol, the control socket and the
    API are handed."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())
        home = self.cluster.master_home
        self.registry = MasterRegistry(
            home,
            default_auth(home.root),
            self.cluster.master,
            self.cluster.reactor,
            registry_service=_SyncRegistryService(home),
        )

    def test_master_node(self) -> None:
        """The master node is what its links, its control socket and its API see."""
        node = self.cluster.master
        self.assertTrue(verifyObject(IMasterNode, node))
        self.assertTrue(verifyObject(IControlBackend, node))
        self.assertTrue(verifyObject(IApiNode, node))

    def test_registry_feature(self) -> None:
        """The registry feature serves management requests and the API's registry."""
        self.assertTrue(verifyObject(IManager, self.registry))
        self.assertTrue(verifyObject(IRegistryFeature, self.registry))

    def test_agents_feature(self) -> None:
        """The agents feature reaches agents wherever they are connected."""
        agents = MasterAgents(
            self.cluster.master, self.registry, self.cluster.reactor, run_in_thread=run_inline
        )
        self.assertTrue(verifyObject(IAgentReconnector, agents))


class WorkerSeamTests(SynchronousTestCase):
    """The worker's node answers the control socket."""

    def test_worker_node(self) -> None:
        """A worker node is a control backend."""
        cluster = InMemoryCluster(self.mktemp())
        link = cluster.add_worker("worker1")
        node = WorkerNode(write_config(cluster.base, "worker1", "worker"), link)
        self.assertTrue(verifyObject(IControlBackend, node))


class NodeSeamTests(SynchronousTestCase):
    """What every node runs provides what the roles and the agent channel are handed."""

    def setUp(self) -> None:
        self.home = Home(Path(self.mktemp()))
        self.home.make_dirs()

    def test_analysis_service(self) -> None:
        """The analysis service is the channel's event sink and the node's ruleset."""
        service = AnalysisService(
            self.home,
            RulesetSettings(),
            Identity("manager", "wazuh", "worker1"),
            Clock(),  # type: ignore[arg-type]
            ClusterLog("Worker worker1", "Main"),
            run_in_thread=run_inline,
            analysis_thread=run_inline,
        )
        self.assertTrue(verifyObject(IEventSink, service))
        self.assertTrue(verifyObject(IRuleset, service))

    def test_agent_channel(self) -> None:
        """The agent channel service is the channel the roles' features use."""
        channel = AgentChannelService(
            self.home.client_keys,
            RemoteSettings(),
            AgentsSettings(),
            "w1",
            lambda event: None,  # type: ignore[arg-type]
            Clock(),  # type: ignore[arg-type]
            ClusterLog("Worker w1", "Agents"),
            run_in_thread=run_inline,
        )
        self.assertTrue(verifyObject(IAgentChannel, channel))

    def test_merged_files(self) -> None:
        """The merged-file lookup answers the sessions' ``merged_for``."""
        merged = MergedFiles(self.home.shared, self.home.root / "var" / "multigroups", {})
        self.assertTrue(verifyObject(IMergedFiles, merged))

    def test_global_reactor(self) -> None:
        """The global reactor has everything a node asks of it (it does not declare the
        combination, hence ``tentative``)."""
        self.assertTrue(verifyObject(INodeReactor, reactor, tentative=True))


class LinkSeamTests(SynchronousTestCase):
    """Both ends of a cluster link are the peer the features talk through."""

    def test_both_protocols_are_peers(self) -> None:
        """The master's protocol for a worker and the worker's protocol provide IPeer."""
        cluster = InMemoryCluster(self.mktemp())
        link = cluster.add_worker("worker1")
        cluster.connect(link)
        cluster.settle()
        on_master = cluster.master.workers.get("worker1")
        assert on_master is not None and link.protocol is not None
        self.assertTrue(verifyObject(IPeer, on_master.protocol))
        self.assertTrue(verifyObject(IPeer, link.protocol))

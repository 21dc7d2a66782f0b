"""The seams between rooms: every class a role wires in provides the interface it is
declared to provide, as zope.interface's ``verifyObject`` checks it (methods with their
arguments, attributes present)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers import InMemoryCluster, write_config
from tests.test_registry_link import _SyncRegistryService
from wazuhcluster.agents.groups_table import MergedFiles
from wazuhcluster.agents.interfaces import (
    IAgentChannel,
    IEventSink,
    IMergedFiles,
    ISealedSink,
)
from wazuhcluster.agents.service import AgentChannelService
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.api.interfaces import IAgentDataAsker, IApiNode, IRegistryFeature
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.auth_settings import default_auth
from wazuhcluster.config.home import Home
from wazuhcluster.config.remote_settings import AgentsSettings, RemoteSettings
from wazuhcluster.control.interfaces import IControlBackend
from wazuhcluster.failover.interfaces import IDurableAgents
from wazuhcluster.master.agent_data import MasterAgentData
from wazuhcluster.master.agents import MasterAgents
from wazuhcluster.master.durable_api import DurableRegistryFeature
from wazuhcluster.master.interfaces import IAgentReconnector, IManager, IMasterNode
from wazuhcluster.master.registry import MasterRegistry
from wazuhcluster.node.analysis_service import AnalysisService
from wazuhcluster.node.interfaces import IRuleset
from wazuhcluster.registry.interfaces import IAsyncRegistry
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.limits import IAdmission, LimitedFactory
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire.interfaces import IPeer
from wazuhcluster.worker.node import WorkerNode


@implementer(IDurableAgents)
class _NoEtcd:
    """Durable agents that are never asked anything (only the seams are checked)."""

    async def save(
        self,
        added: Sequence[Mapping[str, Any]],
        removed: Sequence[str],
        next_id: int | None = None,
    ) -> None:
        """Not called by these tests."""
        raise AssertionError("not expected")

    async def load(self) -> tuple[list[dict[str, Any]], int]:
        """Not called by these tests."""
        raise AssertionError("not expected")


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
        self.assertTrue(verifyObject(IAsyncRegistry, self.registry.registry))

    def test_agent_data(self) -> None:
        """What the API asks for agent data on a master reaches it wherever it reports."""
        asker = MasterAgentData(
            "master", self.cluster.master.workers, Path(self.mktemp()), Clock(), run_inline, 5.0
        )
        self.assertTrue(verifyObject(IAgentDataAsker, asker))

    def test_durable_registry_feature(self) -> None:
        """With ``<failover>`` the API's registry feature, and the durable registry it
        hands out, provide what the plain ones do."""
        feature = DurableRegistryFeature(self.registry, _NoEtcd())
        self.assertTrue(verifyObject(IRegistryFeature, feature))
        self.assertTrue(verifyObject(IAsyncRegistry, feature.registry))

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
        """The analysis service is the channel's event sink (sealed frames too) and the
        node's ruleset."""
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
        self.assertTrue(verifyObject(ISealedSink, service))
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

    def test_limited_connection(self) -> None:
        """A connection under listener limits is what a protocol admits (``limits.admit``
        adapts the transport to it)."""
        factory = LimitedFactory(
            Factory.forProtocol(Protocol),
            Clock(),
            ClusterLog("Test", "Limits"),
            admit_on="protocol",
        )
        connection = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
        connection.makeConnection(StringTransport())
        self.assertTrue(verifyObject(IAdmission, connection))

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

"""What both roles assemble the same way, built once here.

Every node runs an analysis service fed by an agent channel, answers the control socket,
reloads its ruleset on request, and updates the channel's keys after its own writes of
client.keys. The role builds :class:`NodeServices` with its reactor and log tag, then hands
its parts to its own features (the master's agents feature, the worker's link features)
and parents the services where they belong in its tree. Nothing here knows which role it
serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from twisted.application.service import IServiceCollection
from twisted.internet.defer import Deferred

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.agents.groups_table import MergedFiles
from wazuhcluster.agents.service import AgentChannelService
from wazuhcluster.analysis.state_store import forget_agents
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.config.sections import NodeSections
from wazuhcluster.control.interfaces import IControlBackend, IFailoverView
from wazuhcluster.control.server import ControlService
from wazuhcluster.node.analysis_service import AnalysisService, node_identity
from wazuhcluster.node.intake import EpsLimiter
from wazuhcluster.registry.keys import KeysDelta
from wazuhcluster.util.fatal import stop_node
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool

#: The client.keys path as a synced-file path (relative to HOME).
CLIENT_KEYS = "etc/client.keys"


class NodeServices:
    """The analysis service and the agent channel of one node, and the plumbing around
    them: reload actions, key changes, the merged-file lookup and the control socket."""

    def __init__(
        self, config: NodeConfig, sections: NodeSections, reactor: INodeReactor, tag: str
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.tag = tag
        home = config.home
        cluster = config.cluster
        self.analysis = AnalysisService(
            home,
            sections.ruleset,
            node_identity(cluster.node_name, cluster.name, cluster.hidden),
            reactor,
            ClusterLog(tag, "Main"),
            queue_size=sections.remote.queue_size,
            workers=sections.analysis.workers,
            limiter=EpsLimiter(sections.analysis.eps_maximum, sections.analysis.eps_timeframe),
            state_dir=home.agents_state,
        )
        self.channel = AgentChannelService(
            home.client_keys,
            sections.remote,
            sections.agents,
            cluster.node_name,
            self.analysis,
            reactor,
            ClusterLog(tag, "Agents"),
            manager_version=WAZUH_VERSION,
        )
        self.analysis.reply_to_agent = self.channel.factory.send_to_agent
        self.analysis.sealed_opened = self.channel.factory.sealed_opened
        #: Where blocking work runs (tests run it inline).
        self.run_in_thread: RunInThread = run_in_reactor_pool
        #: What SIGHUP runs (after the role's own log reopening): reopen alerts.json, then
        #: reload the ruleset.
        self.reload_actions: list[Callable[[], object]] = [
            self.analysis.reopen_alerts,
            self.analysis.reload,
        ]

    def serve_merged_files(self, table: Mapping[str, tuple[str, ...]]) -> None:
        """Let the channel tell each agent its group's merged.mg, from the role's agent →
        groups ``table`` (updated in place by the role's agents feature)."""
        home = self.config.home
        self.channel.sessions.merged_for = MergedFiles(
            home.shared, home.root / "var" / "multigroups", table, clock=self.reactor
        )

    def key_rows_changed(
        self, added: list[dict[str, str]], removed: list[str]
    ) -> Deferred[None] | None:
        """This node wrote client.keys: ``added`` as ``id``/``name``/``ip``/``key`` rows
        (the master's registry), ``removed`` as ids. A Deferred when the keys are usable
        only once it fires."""
        self._forget_removed(removed)
        return self.channel.apply_key_changes(
            [(row["id"], row["name"], row["ip"], row["key"]) for row in added], removed
        )

    def keys_delta_changed(self, delta: KeysDelta) -> Deferred[None] | None:
        """This node merged a push of keys into client.keys (a worker's registry). A
        Deferred when the keys are usable only once it fires."""
        self._forget_removed(delta.removed)
        return self.channel.apply_key_changes(
            [(entry.id, entry.name, entry.ip, entry.key) for entry in delta.added],
            delta.removed,
        )

    def _forget_removed(self, removed: Sequence[str]) -> None:
        """Removed agents: empty what this node kept about them (in a thread)."""
        if not removed:
            return
        self.analysis.forget_agents(removed)
        log = ClusterLog(self.tag, "Agents")
        done = self.run_in_thread(forget_agents, self.config.home.agents_state, list(removed))
        done.addErrback(
            lambda failure: log.warn(
                "Could not empty the state of removed agents: {error}",
                error=failure.getErrorMessage(),
            )
        )

    def files_changed(self, paths: set[str]) -> None:
        """A sync replaced synced files: read client.keys again when it was one of them (its
        writer was not this node's registry, so the channel has not seen the change)."""
        if CLIENT_KEYS in paths:
            self.channel.reload_keys(force=True)

    def set_service_parent(self, parent: IServiceCollection) -> None:
        """Start the analysis service, then the channel that feeds it (stopped the other way
        round, so queued events are analysed before alerts.json closes)."""
        self.analysis.setServiceParent(parent)
        self.channel.setServiceParent(parent)

    def control_service(
        self, backend: IControlBackend, failover: IFailoverView | None = None
    ) -> ControlService:
        """The control socket answered by the role's ``backend`` (and, with ``<failover>``,
        by the election's ``failover`` view); a node that cannot open it logs why and stops
        (it could not be managed)."""
        log = ClusterLog(self.tag, "Control")
        return ControlService(
            self.config.home.control_socket,
            backend,
            self.reactor,
            log,
            on_failure=lambda reason: stop_node(self.reactor, log, reason),
            limits=self.config.cluster.control_limits,
            failover=failover,
        )

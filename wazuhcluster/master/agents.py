"""The master's side of agent status: agent-info from workers, agent-groups to workers.

Agent-info: each worker streams the rows of agents whose status, OS, version, labels or
config sums changed; the master applies them in the registry, keeping per agent the newest
report from any node, so a stale row from a worker the agent has left never wins (Wazuh
#24401). Rows of agents the master does not know are counted and dropped.

Agent-groups: the "local agent-groups" task caches the registry's agent → groups table and
its checksum; a worker gets the whole table when it connects and only changes afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import define, evolve
from twisted.application.service import IService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp
from zope.interface import implementer

from wazuhcluster.agents import groups_table
from wazuhcluster.agents.control import label_pairs
from wazuhcluster.agents.info import InfoError, decode_reports
from wazuhcluster.agents.interfaces import IAgentChannel
from wazuhcluster.agents.sessions import AgentRow, RefreshRow
from wazuhcluster.api.interfaces import IRegistryFeature
from wazuhcluster.master.interfaces import IAgentReconnector, IMasterNode
from wazuhcluster.master.workers import WorkerLink
from wazuhcluster.registry.model import AgentInfoReport, AgentInfoResult
from wazuhcluster.registry.store import MAX_BATCH, Registry
from wazuhcluster.util.background import BackgroundWork
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import PeriodicTask
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire import agents as wire
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.wire.stream_consumers import BytesConsumer
from wazuhcluster.wire.stream_receiver import StreamKind


@define
class WorkerAgentsState:
    """Agent-info and agent-groups timings of one worker, for health reports."""

    info_start: float | None = None
    info_end: float | None = None
    info_rows: int = 0
    groups_start: float | None = None
    groups_end: float | None = None
    groups_count: int = 0
    full_start: float | None = None
    full_end: float | None = None
    full_count: int = 0


def report_from_row(row: AgentRow, node_name: str) -> AgentInfoReport:
    """A registry report from a row of the master's own agent channel (the same report
    :func:`~wazuhcluster.agents.info.decode_reports` gives for the row a worker sends)."""
    status = AgentInfoReport(
        agent_id=row.agent_id,
        node_name=node_name,
        status_time=row.timestamp,
        status_seq=row.seq,
        connection_status=str(row.status),
        last_keepalive=row.last_keepalive,
        disconnection_time=row.disconnection_time or 0.0,
        refresh_only=True,
    )
    if isinstance(row, RefreshRow):
        return status
    return evolve(
        status,
        refresh_only=False,
        version=row.version or "",
        os_name=row.os_name or "",
        os_version=row.os_version or "",
        os_platform=row.os_platform or "",
        os_arch=row.os_arch or "",
        os_uname=row.os_uname or "",
        os_major=row.os_major or "",
        os_minor=row.os_minor or "",
        os_build=row.os_build or "",
        os_codename=row.os_codename or "",
        labels=label_pairs(row.labels),
        config_sum=row.config_sum or "",
        merged_sum=row.merged_sum or "",
        agent_ip=row.agent_ip or "",
    )


def apply_in_batches(registry: Registry, reports: Sequence[AgentInfoReport]) -> AgentInfoResult:
    """Apply a worker's report in batches the registry accepts; the counts add up."""
    applied = stale = unknown = 0
    for start in range(0, len(reports), MAX_BATCH):
        result = registry.apply_agent_info(reports[start : start + MAX_BATCH])
        applied += result.applied
        stale += result.stale
        unknown += result.unknown
    return AgentInfoResult(applied, stale, unknown)


@implementer(IAgentReconnector)
class MasterAgents(LinkFeature[WorkerLink]):
    """Applies workers' agent-info and keeps every worker's agent-groups table current."""

    def __init__(
        self,
        node: IMasterNode,
        registry: IRegistryFeature,
        reactor: IReactorTime,
        run_in_thread: RunInThread = run_in_reactor_pool,
        local_channel: IAgentChannel | None = None,
    ) -> None:
        self.node = node
        self.registry_feature = registry
        self.clock = reactor
        self.run_in_thread = run_in_thread
        #: The agent → groups table, updated in place (the merged-file lookup reads it).
        self.table: groups_table.Table = {}
        self.checksum: str | None = None
        self._full_payload: tuple[str, bytes, int] | None = None
        self.log = ClusterLog("Master", "Local agent-groups")
        #: Agent-groups streams to workers, cancelled when the node stops.
        self.background = BackgroundWork(self.log, "agent-groups sends")
        #: The master's own agent channel (its sessions and connections).
        self.local_channel = local_channel
        self.groups_task = PeriodicTask(
            "local agent-groups",
            node.timings.local_agent_groups,
            self.refresh_groups,
            reactor,
            self.log,
        )
        self.info_task = PeriodicTask(
            "local agent-info",
            node.timings.sync_agent_info,
            self.apply_local_info,
            reactor,
            ClusterLog("Master", "Agent-info sync"),
            run_at_start=False,
        )

    def state(self, link: WorkerLink) -> WorkerAgentsState:
        """The agent-sync state the master keeps for ``link``."""
        found: WorkerAgentsState = link.state.setdefault("agents", WorkerAgentsState())
        return found

    # --- agent-groups --------------------------------------------------------------------
    async def refresh_groups(self) -> None:
        """Reload the table from the registry and send every worker the changes (possibly
        none) with the checksum, so a worker that drifted notices within a few cycles."""
        started = self.clock.seconds()
        table, checksum = await self.registry_feature.registry.agent_groups()
        first = self.checksum is None
        changes: dict[str, Any] = {}
        if checksum != self.checksum:
            changes = groups_table.diff(self.table, table)
            self.table.clear()
            self.table.update(table)
            self.checksum = checksum
        for link in self.node.workers:
            if first:  # workers that joined before the first load got an empty table
                self.send_full(link)
            else:
                self._send(link, {"mode": "changes", "changes": changes, "checksum": checksum})
        log = self.log.info if changes else self.log.debug
        log(
            "Finished in {seconds:.3f}s. {count} agents changed groups.",
            seconds=self.clock.seconds() - started,
            count=len(changes),
        )

    def _send(self, link: WorkerLink, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        count = len(payload.get("table") or payload.get("changes") or {})
        self._track_send(link, payload["mode"] == "full", data, count)

    def _track_send(self, link: WorkerLink, full: bool, data: bytes, count: int) -> None:
        self.background.track(
            self._send_groups(link, full, data, count), f"Agent-groups send to {link.name}"
        )

    async def _send_groups(self, link: WorkerLink, full: bool, data: bytes, count: int) -> None:
        state = self.state(link)
        log = ClusterLog(
            f"Worker {link.name}", "Agent-groups send full" if full else "Agent-groups send"
        )
        started = self.clock.seconds()
        try:
            await link.protocol.streams.send(wire.GROUPS_KIND, data, size=len(data))
        except CancelledError:
            raise  # the node is stopping
        except Exception as error:
            log.error("Could not send agent-groups: {error}", error=str(error) or repr(error))
            return
        if full:
            state.full_start, state.full_end, state.full_count = (
                started,
                self.clock.seconds(),
                count,
            )
        else:
            state.groups_start, state.groups_end = started, self.clock.seconds()
            state.groups_count = count
        (log.info if count or full else log.debug)(
            "Finished in {seconds:.3f}s. Updated {count} agents.",
            seconds=self.clock.seconds() - started,
            count=count,
        )

    def send_full(self, link: WorkerLink) -> None:
        """Send ``link`` the whole table (once the first refresh has run)."""
        checksum = self.checksum or groups_table.checksum(self.table)
        # Encoded once per table version: ten workers connecting together share one copy
        # (at 50,000 agents each copy was a few MB of lists and JSON held while sending).
        if self._full_payload is None or self._full_payload[0] != checksum:
            payload = {
                "mode": "full",
                "table": {a: list(g) for a, g in self.table.items()},
                "checksum": checksum,
            }
            data = json.dumps(payload, separators=(",", ":")).encode()
            self._full_payload = (checksum, data, len(self.table))
        _, data, count = self._full_payload
        self._track_send(link, True, data, count)

    def link_up(self, link: WorkerLink) -> None:
        """A newly connected worker gets the whole table."""
        self.send_full(link)

    def locator(self, link: WorkerLink) -> amp.CommandLocator:
        """Answers a worker's request for the whole table."""
        return _GroupsLocator(self, link)

    # --- agent-info ------------------------------------------------------------------------
    def stream_kinds(self) -> Mapping[str, StreamKind]:
        """Workers' agent-info reports."""
        return {wire.INFO_KIND: StreamKind(wire.MAX_INFO_BYTES, lambda size: BytesConsumer())}

    def on_stream(self, link: WorkerLink, kind: str, stream_id: str, result: object) -> object:
        """Apply a worker's agent-info report; answer with the counts."""
        assert isinstance(result, bytes)
        return Deferred.fromCoroutine(self._apply_info(link, result))

    async def _apply_info(self, link: WorkerLink, data: bytes) -> str:
        state = self.state(link)
        log = ClusterLog(f"Worker {link.name}", "Agent-info sync")
        state.info_start = started = self.clock.seconds()
        log.info("Starting.")
        try:
            reports = await self.run_in_thread(decode_reports, data, link.name)
        except InfoError as error:
            log.error("Rejected an agent-info report: {error}", error=error)
            raise
        result = await self.registry_feature.registry.run(
            lambda registry: apply_in_batches(registry, reports)
        )
        state.info_end = self.clock.seconds()
        state.info_rows = result.applied
        if result.unknown:
            log.info(
                "Ignored {count} rows of agents this master does not know.", count=result.unknown
            )
        log.info(
            "Finished in {seconds:.3f}s. Updated {count} chunks.",
            seconds=state.info_end - started,
            count=result.applied,
        )
        return json.dumps(
            {"applied": result.applied, "stale": result.stale, "unknown": result.unknown}
        )

    async def apply_local_info(self) -> None:
        """Apply the rows of agents connected to the master itself."""
        if self.local_channel is None:
            return
        sessions = self.local_channel.sessions
        rows = sessions.take_dirty()
        if not rows:
            return
        name = self.node.config.cluster.node_name
        try:
            await self.registry_feature.registry.apply_agent_info(
                [report_from_row(row, name) for row in rows]
            )
        except Exception:
            sessions.mark_all_dirty()
            raise

    async def send_to_agents(self, message: str, agents: list[str]) -> dict[str, list[str]]:
        """Send ``message`` to the given agents: through the master's own channel and every
        worker (each sends only to the agents connected there). The ids sent to, by node."""
        sent: dict[str, list[str]] = {}
        left = list(dict.fromkeys(agents))
        if self.local_channel is not None and left:
            sent[self.node.config.cluster.node_name] = self.local_channel.send_message(
                left, message
            )
            reached = set(sent[self.node.config.cluster.node_name])
            left = [agent_id for agent_id in left if agent_id not in reached]
        for link in list(self.node.workers):
            if not left:
                break
            reached_here: list[str] = []
            for start in range(0, len(left), wire.MAX_SEND_IDS):
                chunk = left[start : start + wire.MAX_SEND_IDS]
                try:
                    answer = await link.protocol.callRemote(
                        wire.SendToAgents, message=message, agents=chunk
                    )
                except Exception as error:
                    self.log.warn(
                        "Could not send a message to agents through {name}: {error}",
                        name=link.name,
                        error=error,
                    )
                    break
                wanted = set(chunk)
                reached_here.extend(str(a) for a in answer["sent"] if a in wanted)
            sent[link.name] = reached_here
            done = set(reached_here)
            left = [agent_id for agent_id in left if agent_id not in done]
        return sent

    async def reconnect(self, agents: list[str], count: int) -> dict[str, list[str]]:
        """Ask agents to reconnect: the listed ids on every node, plus ``count`` of the
        master's own agents. Returns the ids asked, by node."""
        asked: dict[str, list[str]] = {}
        if self.local_channel is not None:
            asked[self.node.config.cluster.node_name] = self.local_channel.reconnect(agents, count)
        for link in self.node.workers:
            if not agents:
                break
            try:
                answer = await link.protocol.callRemote(
                    wire.ReconnectAgents, agents=agents, count=0
                )
            except Exception as error:
                self.log.warn(
                    "Could not ask {name} to reconnect agents: {error}", name=link.name, error=error
                )
                continue
            asked[link.name] = list(answer["reconnected"])
        return asked

    def services(self) -> Iterable[IService]:
        """The local agent-groups and local agent-info tasks, and the sends to workers
        (cancelled at stop)."""
        return (self.groups_task, self.info_task, self.background)

    def health(self, link: WorkerLink) -> Mapping[str, Any]:
        """Last agent-info and agent-groups syncs of ``link``."""
        state = self.state(link)
        return {
            "last_sync_agentinfo": {
                "date_start_master": state.info_start,
                "date_end_master": state.info_end,
                "n_synced_chunks": state.info_rows,
            },
            "last_sync_agentgroup": {
                "date_start": state.groups_start,
                "date_end": state.groups_end,
                "n_synced_chunks": state.groups_count,
            },
            "last_sync_full_agentgroup": {
                "date_start": state.full_start,
                "date_end": state.full_end,
                "n_synced_chunks": state.full_count,
            },
        }


class _GroupsLocator(amp.CommandLocator):
    """RequestAgentGroups for one worker."""

    def __init__(self, feature: MasterAgents, link: WorkerLink) -> None:
        self.feature = feature
        self.link = link

    @wire.RequestAgentGroups.responder
    def request_agent_groups(self) -> dict[str, Any]:
        """Send the whole table to the worker that asked."""
        ClusterLog(f"Worker {self.link.name}", "Agent-groups send full").info(
            "The worker asked for the whole agent-groups table."
        )
        self.feature.send_full(self.link)
        return {}

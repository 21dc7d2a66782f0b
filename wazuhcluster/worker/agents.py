"""The worker's side of agent status: agent-info to the master, agent-groups from it.

Every ``sync_agent_info`` seconds the worker streams the rows of its agents whose status, OS,
version, labels or config sums changed (all of them after a reconnection). It keeps the
master's agent → groups table to know which merged.mg each agent gets; when its checksum
disagrees with the master's ``agent_groups_mismatch_limit`` times in a row, it asks for the
whole table.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp

from wazuhcluster.agents import groups_table
from wazuhcluster.agents.info import encode_rows
from wazuhcluster.agents.interfaces import IAgentChannel
from wazuhcluster.util.background import BackgroundWork
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import PeriodicTask
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire import agents as wire
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.wire.stream_consumers import BytesConsumer
from wazuhcluster.wire.stream_receiver import StreamKind
from wazuhcluster.worker.link import MasterLink


class WorkerAgents(LinkFeature[MasterLink]):
    """Reports agent status to the master and keeps the agent-groups table."""

    def __init__(
        self,
        link: MasterLink,
        channel: IAgentChannel,
        reactor: IReactorTime,
        run_in_thread: RunInThread = run_in_reactor_pool,
    ) -> None:
        self.link = link
        self.run_in_thread = run_in_thread
        self.channel = channel
        self.sessions = channel.sessions
        self.clock = reactor
        tag = f"Worker {link.cluster.node_name}"
        self.info_log = ClusterLog(tag, "Agent-info sync")
        self.groups_log = ClusterLog(tag, "Agent-groups recv")
        #: Requests for the whole table, cancelled when the node stops.
        self.background = BackgroundWork(self.groups_log, "agent-groups requests")
        #: The agent → groups table, updated in place (the merged-file lookup reads it).
        self.table: groups_table.Table = {}
        self.master_checksum: str | None = None
        #: The checksum of ``table`` as it is now (None once a change made it stale):
        #: hashing 50,000 rows costs about 50 ms, and most change sets are empty.
        self._own_checksum: str | None = None
        self.mismatches = 0
        self.last_info: dict[str, Any] = {}
        interval = link.timings.sync_agent_info
        self.info_task = PeriodicTask(
            "agent-info",
            interval,
            self.send_info,
            reactor,
            self.info_log,
            run_at_start=False,
            # Workers started together would report in the same second and queue at the
            # master; a random phase spreads their reports over the interval.
            phase=random.uniform(0, interval),
        )

    async def send_info(self) -> None:
        """Stream the changed agent rows to the master."""
        if not self.link.connected:
            return
        rows = self.sessions.take_dirty()
        if not rows:
            self.info_log.debug("No synchronization required, skipping.")
            return
        started = self.clock.seconds()
        self.info_log.info("Starting.")
        # Rows are immutable snapshots: encoding them (about 7 ms per 5,000 keep-alive
        # refreshes, 30 ms per 5,000 whole rows) can leave the reactor thread; taking them
        # cannot.
        data = await self.run_in_thread(encode_rows, rows)
        try:
            protocol = self.link.protocol
            if protocol is None:
                raise ConnectionError("the link to the master is down")
            sent = await protocol.streams.send(wire.INFO_KIND, data, size=len(data))
        except Exception as error:
            self.sessions.mark_all_dirty()  # resend everything next cycle
            self.info_log.error(
                "Error synchronizing agent info: {error}", error=str(error) or repr(error)
            )
            return
        counts = json.loads(sent.reply or "{}")
        self.last_info = {"start": started, "end": self.clock.seconds(), **counts}
        self.info_log.info(
            "Finished in {seconds:.3f}s. Updated {count} chunks.",
            seconds=self.clock.seconds() - started,
            count=counts.get("applied", 0),
        )

    def link_up(self, link: MasterLink) -> None:
        """A new master link: report every agent again."""
        self.sessions.mark_all_dirty()

    # --- agent-groups ----------------------------------------------------------------------
    def stream_kinds(self) -> Mapping[str, StreamKind]:
        """The master's agent-groups table and changes."""
        return {wire.GROUPS_KIND: StreamKind(wire.MAX_GROUPS_BYTES, lambda size: BytesConsumer())}

    def on_stream(self, link: MasterLink, kind: str, stream_id: str, result: object) -> object:
        """Apply a full table or a change set, then compare checksums."""
        assert isinstance(result, bytes)
        payload = json.loads(result)
        if not isinstance(payload, dict) or payload.get("mode") not in ("full", "changes"):
            raise groups_table.GroupsTableError("malformed agent-groups payload")
        started = self.clock.seconds()
        if payload["mode"] == "full":
            table = groups_table.decode_table(json.dumps(payload.get("table")).encode())
            self.table.clear()
            self.table.update(table)
            self._own_checksum = None
            log = ClusterLog(self.groups_log.tag, "Agent-groups recv full")
        else:
            changes = groups_table.validate_changes(payload.get("changes"))
            if changes:
                groups_table.apply_changes(self.table, changes)
                self._own_checksum = None
            log = self.groups_log
        self.master_checksum = str(payload.get("checksum"))
        self._compare(log)
        count = len(payload.get("table") or payload.get("changes") or {})
        (log.info if count or payload["mode"] == "full" else log.debug)(
            "Finished in {seconds:.3f}s. Updated {count} agents.",
            seconds=self.clock.seconds() - started,
            count=count,
        )
        return "ok"

    def _compare(self, log: ClusterLog) -> None:
        if self._own_checksum is None:
            self._own_checksum = groups_table.checksum(self.table)
        if self._own_checksum == self.master_checksum:
            if self.mismatches:
                log.debug("The checksum of both tables match. Counter reset.")
            self.mismatches = 0
            return
        self.mismatches += 1
        limit = self.link.timings.agent_groups_mismatch_limit
        log.debug(
            "Checksum comparison failed ({count}/{limit}).", count=self.mismatches, limit=limit
        )
        if self.mismatches >= limit:
            self.mismatches = 0
            log.info("Sent request to obtain all agent-groups information from the master node.")
            self.background.track(self._request_full(), "Asking for the whole agent-groups table")

    async def _request_full(self) -> None:
        await self.link.call(wire.RequestAgentGroups)

    def locator(self, link: MasterLink) -> amp.CommandLocator:
        """Answers the master's requests to reconnect agents."""
        return agent_commands_locator(self)

    def services(self) -> Iterable[IService]:
        """The agent-info task, and the requests to the master (cancelled at stop)."""
        return (self.info_task, self.background)


def agent_commands_locator(feature: WorkerAgents) -> amp.CommandLocator:
    """The responders of the master's ReconnectAgents and SendToAgents, through the agent
    channel of ``feature``."""
    return _ReconnectLocator(feature)


class _ReconnectLocator(amp.CommandLocator):
    """ReconnectAgents and SendToAgents from the master."""

    def __init__(self, feature: WorkerAgents) -> None:
        self.feature = feature

    @wire.SendToAgents.responder
    def send_to_agents(self, message: str, agents: Any) -> dict[str, Any]:
        """Send the master's message to the listed agents connected here."""
        if (
            not isinstance(agents, list)
            or len(agents) > wire.MAX_SEND_IDS
            or not all(isinstance(a, str) for a in agents)
            or len(message.encode("utf-8")) > wire.MAX_AGENT_MESSAGE
        ):
            return {"sent": []}
        return {"sent": self.feature.channel.send_message(agents, message)}

    @wire.ReconnectAgents.responder
    def reconnect_agents(self, agents: Any, count: int) -> dict[str, Any]:
        """Ask the listed agents connected here (and ``count`` more) to reconnect."""
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            return {"reconnected": []}
        return {"reconnected": self.feature.channel.reconnect(agents, count)}

"""Analysis on a node: agent events → decoders and rules → logs/alerts/alerts.json.

Events from the agent channel are queued (bounded: when full, new events are dropped and
counted per agent, never blocking the reactor) and analysed in batches, either by the pool
of analysis processes (``<analysis><workers>``, :mod:`wazuhcluster.node.analysis_pool`) or,
with ``workers`` 0, on one dedicated thread which alone owns the engine's correlation state.
Alerts and archives (``<logall>``, ``<logall_json>``) have one writer per node, on the
service's own thread, whichever mode analyses. A reload builds the new engine(s) off the
reactor and swaps them in between two batches, handing on what the queue decoders remember
per agent; a ruleset that fails to load is logged with its file, line and reason, and the old
engine keeps running. Wazuh's EPS limit (``<global><limits><eps>``) holds events in the queue
rather than analysing them.

What the queue decoders remember per agent (FIM entries, SCA results, rootcheck findings,
inventory) is kept, with a ``state_dir``, in one SQLite database per agent there (the node
uses ``HOME/var/db/agents``), written by whichever thread or process analyses the agent and
committed after every batch (in an analysis process, at most every half second);
without one, in memory. The replies the decoders owe agents
(integrity answers, SCA resend requests) go to :attr:`AnalysisService.reply_to_agent` on the
reactor.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs
from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorFromThreads, IReactorProcess, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.agents.interfaces import IEventSink, ISealedSink
from wazuhcluster.agents.sealed import SealedFrames, SealedReport
from wazuhcluster.analysis.agentstate import AgentState, MemoryState
from wazuhcluster.analysis.alert_totals import AlertTally
from wazuhcluster.analysis.alerts import AlertWriter, Identity
from wazuhcluster.analysis.archives import ArchiveWriter
from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import install_default_ruleset, load_engine
from wazuhcluster.analysis.state_store import SqliteState
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.home import Home
from wazuhcluster.node.alert_totals import TotalsKeeper, totals_folder
from wazuhcluster.node.analysis_pool import AnalysisPool, Spawner, process_spawner
from wazuhcluster.node.intake import EpsLimiter, RateWindow
from wazuhcluster.node.interfaces import IRuleset
from wazuhcluster.util.background import BackgroundWork, OnStop
from wazuhcluster.util.logs import ClusterLog, cluster_log_state
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool

T = TypeVar("T")

#: Events analysed per batch on the analysis thread.
BATCH = 2000


@define
class AnalysisStats:
    """Counters for health reports and benchmarks."""

    received: int = 0
    analysed: int = 0
    alerts: int = 0
    dropped: int = 0
    reloads: int = 0
    failed_reloads: int = 0
    failed: int = 0
    lost: int = 0
    dropped_by_agent: Counter[str] = field(factory=Counter)


def to_event(item: AgentEvent) -> Event:
    """The analysis event of an agent's event (the one place the two shapes meet)."""
    return Event(
        item.message,
        location=item.location,
        queue=item.queue,
        agent_id=item.agent_id,
        agent_name=item.name,
        agent_ip=item.registered_ip,
        timestamp=item.received,
        agent_reported_ip=item.reported_ip,
        agent_labels=item.labels,
    )


@implementer(IEventSink, ISealedSink, IRuleset)
class AnalysisService(Service):
    """Analyses agent events on one node and writes Wazuh-shaped alerts."""

    def __init__(
        self,
        home: Home,
        settings: RulesetSettings,
        identity: Identity,
        reactor: IReactorFromThreads,
        log: ClusterLog,
        queue_size: int = 131072,
        run_in_thread: RunInThread = run_in_reactor_pool,
        analysis_thread: RunInThread | None = None,
        workers: int = 0,
        limiter: EpsLimiter | None = None,
        spawn: Spawner | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.home = home
        self.settings = settings
        self.identity = identity
        self.reactor = reactor
        self.log = log.child("Analysis")
        self.queue: deque[AgentEvent] = deque()
        self.queue_size = queue_size
        self.run_in_thread = run_in_thread
        self.stats = AnalysisStats()
        #: Events received per agent and queue letter (``daemons/stats`` per agent); one
        #: small dict per agent, dropped when the agent is removed.
        self.agent_queues: dict[str, dict[str, int]] = {}
        self.engine: Engine | None = None
        self.writer: AlertWriter | None = None
        self.archives: ArchiveWriter | None = None
        self._pool: ThreadPool | None = None
        self._analysis_thread = analysis_thread
        self._batch: Deferred[None] | None = None
        self._reloading: Deferred[None] | None = None
        self._reload_again = False
        self._draining = False
        self.clock = cast(IReactorTime, reactor)
        self.workers = workers
        self.limiter = limiter or EpsLimiter(0, 1)
        self._spawn = spawn
        #: The analysis processes (None with ``workers`` 0: the analysis thread).
        self.processes: AnalysisPool | None = None
        self._ticker: LoopingCall | None = None
        self._rates = {name: RateWindow() for name in ("received", "processed", "dropped")}
        self._writes: Deferred[None] = succeed(None)
        #: The load at start (with processes: once they are up), waited for at stop.
        self.background = BackgroundWork(self.log, "analysis start")
        #: The pool's output (alerts, archives) waiting for the writer thread, in order.
        self._outputs: deque[tuple[Any, ...]] = deque()
        self._output_job: Deferred[None] | None = None
        #: Where the agents' state databases are (None: in memory).
        self.state_dir = state_dir
        #: The agents' state on the analysis thread (with ``workers`` 0).
        self.agent_state: AgentState = (
            SqliteState(state_dir) if state_dir is not None else MemoryState()
        )
        #: Sends a reply to a connected agent (the agent channel's); False when it is not.
        self.reply_to_agent: Callable[[str, str], object] | None = None
        #: What to do with what an analysis process found opening an agent's sealed
        #: frames (the agent channel's); None: sealed frames are not taken.
        self.sealed_opened: Callable[[SealedReport], object] | None = None
        #: Replies that could not be delivered (the agent had no connection here).
        self.undelivered_replies = 0
        #: The alerts written, counted for the hourly totals kept under var/stats.
        self.tally = AlertTally()
        self.totals = TotalsKeeper(
            totals_folder(home.root),
            self.tally,
            self._processed,
            self.clock,
            run_in_thread,
            self.log,
        )

    # --- lifecycle -------------------------------------------------------------------------
    def startService(self) -> None:
        """Install the default ruleset if the home has none, open alerts.json, load the engine."""
        super().startService()
        if not (self.home.root / "ruleset").exists():
            written = install_default_ruleset(str(self.home.root))
            self.log.info("Installed the default ruleset ({count} files).", count=len(written))
        self.writer = self._open_alerts(str(self.home.alerts_dir / "alerts.json"))
        self.archives = self._open_archives()
        if self._analysis_thread is None:
            self._pool = ThreadPool(1, 1, name="analysis")
            self._pool.start()
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.clock
        self._ticker.start(1.0, now=False)
        self.totals.start()
        self.background.startService()
        if self.workers > 0:
            spawn = self._spawn or process_spawner(cast(IReactorProcess, self.reactor), self.log)
            self.processes = AnalysisPool(
                self.workers,
                spawn,
                self.clock,
                self.log,
                str(self.home.root),
                self.settings,
                self.identity,
                self._write_alerts,
                self.limiter,
                self._write_archives if self.archives is not None else None,
                self._reply,
                str(self.state_dir) if self.state_dir is not None else None,
                self.tally,
                self._opened,
            )
            started = self.processes.start().addCallback(self._load_once_started)
            self.background.track(started, "Starting the analysis processes", OnStop.WAIT)
        else:
            self.background.track(self.reload(), "Loading the ruleset", OnStop.WAIT)

    def _load_once_started(self, _: object) -> Deferred[None] | None:
        """The processes said hello (or failed to start): load the ruleset in them, unless
        the service is stopping already."""
        return self.reload() if self.running else None

    def _tick(self) -> None:
        """Every second: the EPS windows, and events held back by the EPS limit."""
        now = self.clock.seconds()
        stats = self.stats
        self._rates["received"].sample(now, stats.received)
        self._rates["processed"].sample(now, self._processed())
        self._rates["dropped"].sample(now, stats.dropped)
        if self.processes is not None:
            self.processes.sample()
            self.processes.pump()
        else:
            self._kick()

    def _on_analysis_thread(self, function: Callable[..., T], *args: object) -> Deferred[T]:
        if self._analysis_thread is not None:
            return self._analysis_thread(function, *args)
        assert self._pool is not None
        return deferToThreadPool(self.reactor, self._pool, function, *args)

    def stopService(self) -> Deferred[None]:
        """Analyse what is queued, flush and close alerts.json, stop the thread."""
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._draining = True
        processes = self.processes
        if processes is not None:
            await processes.drain()
            await processes.stop()
        # The load at start: its processes have stopped (they said hello or failed to);
        # a load on the analysis thread finishes before the writers close.
        await self.background.stopService()
        while self._batch is not None or (self.queue and self.engine is not None):
            if self._batch is None:
                self._kick()
            if self._batch is not None:
                await self._batch
        await self._writes
        while self._output_job is not None:
            await self._output_job
        await self.totals.stop()
        writer, self.writer = self.writer, None
        if writer is not None:
            await self._on_analysis_thread(writer.close)
        archives, self.archives = self.archives, None
        if archives is not None:
            await self._on_analysis_thread(archives.close)
        await self._on_analysis_thread(self.agent_state.close)
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        left = self.queued()
        if left:
            self.log.warn("{count} events were not analysed (no ruleset loaded).", count=left)

    # --- events ------------------------------------------------------------------------------
    def queued(self) -> int:
        """Events waiting in the queue (all lanes)."""
        if self.processes is not None:
            return self.processes.queued
        return len(self.queue)

    def _processed(self) -> int:
        if self.processes is not None:
            return self.processes.totals().processed
        return self.stats.analysed

    def __call__(self, event: AgentEvent) -> None:
        """The agent channel's event sink: queue the event (drop it when the queue is full)."""
        self.take_event(*attrs.astuple(event, recurse=False))

    def take_event(
        self,
        agent_id: str,
        name: str,
        ip: str,
        queue: str,
        location: str,
        message: str,
        received: float,
        registered_ip: str = "any",
        reported_ip: str | None = None,
        labels: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """The event sink's fast entry (the channel's): an :class:`AgentEvent`'s fields, in
        its order, without the object; queued, or dropped when the queue is full."""
        stats = self.stats
        stats.received += 1
        by_queue = self.agent_queues.get(agent_id)
        if by_queue is None:
            by_queue = self.agent_queues[agent_id] = {}
        # A plain dict: Counter's += costs several times more in this hot path.
        by_queue[queue] = by_queue.get(queue, 0) + 1
        processes = self.processes
        if (processes.queued if processes is not None else len(self.queue)) >= self.queue_size:
            stats.dropped += 1
            stats.dropped_by_agent[agent_id] += 1
            if stats.dropped % 10000 == 1:
                self.log.warn(
                    "Analysis queue full: {count} events dropped so far.", count=stats.dropped
                )
            return
        if processes is not None:
            # The row a batch carries (the fields of an analysis Event), built here at once.
            processes.put_row(
                agent_id,
                (
                    message,
                    location,
                    queue,
                    agent_id,
                    name,
                    registered_ip,
                    received,
                    None,
                    None,
                    None,
                    None,
                    reported_ip,
                    labels,
                ),
            )
            return
        self.queue.append(
            AgentEvent(
                agent_id,
                name,
                ip,
                queue,
                location,
                message,
                received,
                registered_ip,
                reported_ip,
                labels,
            )
        )
        self._kick()

    def take_sealed(self, group: SealedFrames) -> bool:
        """An authenticated agent's frames still sealed, for its analysis process to open
        (see :mod:`~wazuhcluster.agents.sealed`): queued, each frame counted as a received
        event until the process says what it was.

        Not taken (the channel opens them and gives the events to :meth:`take_event`):
        - with fewer than two analysis processes: one process is the node's bound, with
          the reactor on another core, so the reactor keeps the opening (about a sixth of
          the cost of an event); from two on, the one reactor thread would be the bound;
        - before a ruleset is loaded in the processes;
        - with an EPS limit: control messages must not wait behind events held back;
        - when they do not fit in the queue: the events are then dropped and counted per
          agent, and the control messages still answered."""
        processes = self.processes
        count = len(group.frames)
        if (
            processes is None
            or len(processes.lanes) < 2
            or not processes.loaded
            or self.limiter.enabled
            or self.sealed_opened is None
            or processes.queued + count > self.queue_size
        ):
            return False
        self.stats.received += count
        processes.put_sealed(group)
        return True

    def _opened(self, report: SealedReport) -> None:
        """An analysis process opened sealed frames: those that were not events leave the
        received count; the events are counted per agent and queue letter; the channel
        answers the control messages."""
        self.stats.received -= report.not_events
        agent_queues = self.agent_queues
        for agent_id, counts in report.events.items():
            by_queue = agent_queues.get(agent_id)
            if by_queue is None:
                by_queue = agent_queues[agent_id] = {}
            for queue, count in counts.items():
                by_queue[queue] = by_queue.get(queue, 0) + count
        receiver = self.sealed_opened
        if receiver is not None:
            receiver(report)

    def forget_agents(self, agent_ids: Iterable[str]) -> None:
        """Drop the per-agent counts of removed agents."""
        for agent_id in agent_ids:
            self.agent_queues.pop(agent_id, None)
            self.stats.dropped_by_agent.pop(agent_id, None)

    def agent_counts(self, agent_id: str) -> tuple[dict[str, int], int]:
        """The events received from ``agent_id`` by queue letter, and how many of them
        were dropped (queue full)."""
        return dict(self.agent_queues.get(agent_id, {})), self.stats.dropped_by_agent[agent_id]

    def _write_alerts(self, data: bytes, count: int) -> None:
        """The pool's alerts (UTF-8 lines, already counted for the tally by the analysis
        processes), appended in arrival order by the one writer thread."""
        self.stats.alerts += count
        self._output(("alerts", data, count))

    def _write_archives(self, json_text: str, plain_text: str, count: int) -> None:
        """The pool's archived events, appended after their batch's alerts by the same
        writer thread."""
        self._output(("archives", json_text, plain_text, count))

    def _output(self, item: tuple[Any, ...]) -> None:
        """Queue one batch's output for the writer thread. One hand-off to the thread
        carries whatever is queued when it runs, with one flush at the end: under load the
        thread is handed work once per several batches, not once per batch."""
        self._outputs.append(item)
        if self._output_job is None:
            self._start_output()

    def _start_output(self) -> None:
        job = self._on_analysis_thread(self._write_outputs)
        self._output_job = job
        self._writes = job
        job.addErrback(self._write_failed, "output")
        job.addCallback(self._output_done)
        job.addErrback(self._hand_off_failed)

    def _output_done(self, _: object) -> None:
        """On the reactor: the thread's hand-off ended; output queued meanwhile gets the next
        one (the thread may have found the queue empty just before it was added)."""
        self._output_job = None
        if self._outputs:
            self._start_output()

    def _hand_off_failed(self, failure: Failure) -> None:
        """Starting the next hand-off failed: say so (later output starts a new one)."""
        self._output_job = None
        self.log.failure("Could not hand the analysis output to the writer thread", failure)

    def _write_outputs(self) -> None:
        """On the writer thread: write every queued batch's output, in order, then flush."""
        outputs = self._outputs
        wrote_alerts = wrote_archives = False
        while outputs:
            item = outputs.popleft()
            try:
                if item[0] == "alerts":
                    writer = self.writer
                    if writer is not None:
                        writer.write_rendered(item[1], item[2])
                        wrote_alerts = True
                else:
                    archives = self.archives
                    if archives is not None:
                        archives.write_text(item[1], item[2], item[3])
                        wrote_archives = True
            except Exception as error:  # one batch's failure must not lose the next ones
                self.reactor.callFromThread(self._write_error, item[0], repr(error))
        if wrote_alerts and self.writer is not None:
            self.writer.flush()
        if wrote_archives and self.archives is not None:
            self.archives.flush()

    def _write_error(self, what: str, error: str) -> None:
        self.log.error("Could not write the {what} of a batch: {error}", what=what, error=error)

    def _write_failed(self, failure: Failure, what: str) -> None:
        """A write of the pool's output failed: say so in cluster.log, keep writing later
        batches (never an unhandled error in a Deferred)."""
        self._write_error(what, failure.getErrorMessage())

    def _kick(self) -> None:
        if self._batch is not None or self.engine is None or not self.queue:
            return
        count = min(BATCH, len(self.queue))
        if not self._draining:
            now = self.clock.seconds()
            count = min(count, self.limiter.available(now))
            if count <= 0:
                self.limiter.waits += 1
                return  # held back by the EPS limit until the next tick
            self.limiter.take(now, count)
        batch = [self.queue.popleft() for _ in range(count)]
        done = self._on_analysis_thread(self._analyse, self.engine, batch)
        self._batch = done

        def finished(result: object) -> None:
            self._batch = None
            if isinstance(result, BaseException):
                result = Failure(result)
            if isinstance(result, Failure):
                self.log.failure("Analysis of a batch failed", result)
            self._kick()

        done.addBoth(finished)

    def _analyse(self, engine: Engine, batch: list[AgentEvent]) -> None:
        """On the analysis thread: decode, match, write the alerts of one batch."""
        writer = self.writer
        archives = self.archives
        alerts = 0
        failed = 0
        for item in batch:
            event = to_event(item)
            try:
                if archives is None:
                    alert = engine.process(event)
                else:
                    alert, archived = engine.process_archived(event)
                    if archived is not None:
                        archives.write(archived)
            except Exception as error:  # one bad event must not stop the others
                failed += 1
                self.reactor.callFromThread(
                    self.log.error,
                    "Could not analyse an event of agent {id}: {error}",
                    id=item.agent_id,
                    error=repr(error),
                )
                continue
            if alert is not None and writer is not None:
                writer.write(alert)
                alerts += 1
        if writer is not None:
            writer.flush()
        if archives is not None:
            archives.flush()
        engine.agent_state.flush()
        replies = engine.agent_state.take_replies()
        if replies:
            self.reactor.callFromThread(self._replies, replies)
        for notice in engine.take_notices():
            self.reactor.callFromThread(self.log.warn, "{notice}", notice=notice)
        self.stats.analysed += len(batch)
        self.stats.alerts += alerts
        self.stats.failed += failed

    def _replies(self, replies: list[tuple[str, str]]) -> None:
        for agent_id, message in replies:
            self._reply(agent_id, message)

    def _reply(self, agent_id: str, message: str) -> None:
        """On the reactor: a decoder's reply to an agent, through the agent channel."""
        send = self.reply_to_agent
        if send is None or not send(agent_id, message):
            self.undelivered_replies += 1

    def reopen_alerts(self) -> Deferred[None]:
        """Close and reopen alerts.json and the archives (after logrotate renamed them),
        between two batches."""
        return self._on_analysis_thread(self._reopen_writer)

    def _open_alerts(self, path: str) -> AlertWriter:
        """alerts.json, whose write failures (disk full, read-only) reach cluster.log."""
        return AlertWriter(path, report=self._writer_report, tally=self.tally)

    def _writer_report(self, level: str, message: str) -> None:
        """From the writer thread: a dated ERROR when alerts.json cannot be written, a
        WARNING counting the lost alerts once it can again."""
        emit = self.log.error if level == "error" else self.log.warn
        self.reactor.callFromThread(emit, "{text}", text=message)

    def _open_archives(self) -> ArchiveWriter | None:
        """The archives writer when ``<logall>`` or ``<logall_json>`` asks for one."""
        if not (self.settings.logall or self.settings.logall_json):
            return None
        return ArchiveWriter(
            str(self.home.archives_dir), self.settings.logall_json, self.settings.logall
        )

    def _reopen_writer(self) -> None:
        old_archives = self.archives
        if old_archives is not None:
            self.archives = self._open_archives()
            old_archives.close()
        old = self.writer
        if old is None:
            return
        self.writer = self._open_alerts(old.path)
        old.close()

    # --- reload --------------------------------------------------------------------------------
    def reload(self) -> Deferred[None]:
        """Build a new engine off the reactor and swap it in; keep the old one on failure."""
        if self._reloading is not None:
            self._reload_again = True
            return self._reloading
        reloading = ensureDeferred(self._reload())
        if not reloading.called:  # _reload clears the marker when it ends
            self._reloading = reloading
        return reloading

    async def _reload(self) -> None:
        try:
            while True:
                self._reload_again = False
                if self.processes is not None:
                    await self._reload_processes(self.processes)
                else:
                    await self._reload_engine()
                if not self._reload_again:
                    return
        finally:
            self._reloading = None

    async def _reload_engine(self) -> None:
        try:
            engine = await self.run_in_thread(
                load_engine, str(self.home.root), self.settings, self.identity
            )
        except Exception as error:
            self._reload_failed(str(error), self.engine is not None)
        else:
            # what agents told us outlives a reload
            engine.agent_state = self.agent_state
            self.engine = engine
            self._reloaded(list(getattr(engine, "warnings", ())))
            self._kick()

    async def _reload_processes(self, processes: AnalysisPool) -> None:
        had = processes.loaded
        outcome = await processes.reload()
        if outcome.no_process:
            # Starting or restarting: each process loads the ruleset on disk as it says hello.
            self.log.info(
                "No analysis process is running yet: each loads the ruleset as it starts."
            )
        elif outcome.ok:
            self._reloaded(list(outcome.warnings))
        else:
            self._reload_failed(outcome.error or "unknown error", had)

    def _reload_failed(self, error: str, had_one: bool) -> None:
        self.stats.failed_reloads += 1
        self.log.error(
            "Could not load the ruleset, keeping the {which} one: {error}",
            which="current" if had_one else "(none)",
            error=error,
        )

    def _reloaded(self, warnings: list[str]) -> None:
        self.stats.reloads += 1
        self.log.info("Ruleset loaded ({warnings} warnings).", warnings=len(warnings))
        for warning in warnings[:20]:
            self.log.warn("Ruleset: {warning}", warning=warning)

    # --- numbers -------------------------------------------------------------------------------
    def intake(self) -> dict[str, Any]:
        """The node's intake numbers, as ``wazuh-cluster-control -i more`` shows them."""
        stats = self.stats
        failed, lost = stats.failed, stats.lost
        processes: list[dict[str, Any]] = []
        if self.processes is not None:
            totals = self.processes.totals()
            failed, lost = totals.failed, totals.lost
            processes = self.processes.describe()
        processed = self._processed()
        top = stats.dropped_by_agent.most_common(10)
        writer = self.writer
        return {
            "workers": self.workers,
            "received": stats.received,
            "decoded": processed - failed,
            "processed": processed,
            "failed": failed,
            "alerts_written": stats.alerts,
            "dropped": stats.dropped,
            "lost": lost,
            "queue_length": self.queued(),
            "queue_size": self.queue_size,
            "eps_10s": self._rates["processed"].rate(10),
            "eps_1m": self._rates["processed"].rate(60),
            "received_eps_10s": self._rates["received"].rate(10),
            "received_eps_1m": self._rates["received"].rate(60),
            "eps_limit": {
                "maximum": self.limiter.maximum,
                "timeframe": self.limiter.timeframe,
                "held_back": self.limiter.waits,
            },
            "dropped_by_agent": dict(top),
            "reloads": stats.reloads,
            "failed_reloads": stats.failed_reloads,
            "processes": processes,
            "outputs": {
                "cluster.log": cluster_log_state(),
                "alerts.json": None
                if writer is None
                else {"failure": writer.failure, "lost": writer.lost},
            },
        }


def node_identity(node_name: str, cluster_name: str, hidden: bool) -> Identity:
    """Who writes alerts: this host, its cluster and node (unless the cluster is hidden)."""
    return Identity(
        manager_name=os.uname().nodename,
        cluster_name=cluster_name,
        cluster_node=node_name,
        hide_cluster=hidden,
    )

"""Analysis on a node: agent events → decoders and rules → logs/alerts/alerts.json.

Events from the agent channel are queued (bounded: when full, new events are dropped and
counted, never blocking the reactor) and analysed in batches on one dedicated thread, which
alone owns the engine's correlation state and the alert writer. A reload builds the new
engine in another thread and swaps it in between two batches; a ruleset that fails to load
is logged with its file, line and reason, and the old engine keeps running.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from attrs import define
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.agents.interfaces import IEventSink
from wazuhcluster.analysis.alerts import AlertWriter, Identity
from wazuhcluster.analysis.archives import ArchiveWriter
from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import install_default_ruleset, load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.home import Home
from wazuhcluster.node.interfaces import IRuleset
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool

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


@implementer(IEventSink, IRuleset)
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
        self.engine: Engine | None = None
        self.writer: AlertWriter | None = None
        self.archives: ArchiveWriter | None = None
        self._pool: ThreadPool | None = None
        self._analysis_thread = analysis_thread
        self._batch: Deferred[None] | None = None
        self._reloading: Deferred[None] | None = None
        self._reload_again = False

    # --- lifecycle -------------------------------------------------------------------------
    def startService(self) -> None:
        """Install the default ruleset if the home has none, open alerts.json, load the engine."""
        super().startService()
        if not (self.home.root / "ruleset").exists():
            written = install_default_ruleset(str(self.home.root))
            self.log.info("Installed the default ruleset ({count} files).", count=len(written))
        self.writer = AlertWriter(str(self.home.alerts_dir / "alerts.json"))
        self.archives = self._open_archives()
        if self._analysis_thread is None:
            self._pool = ThreadPool(1, 1, name="analysis")
            self._pool.start()
        self.reload()

    def _on_analysis_thread(self, function: Any, *args: Any) -> Deferred[Any]:
        if self._analysis_thread is not None:
            return self._analysis_thread(function, *args)
        assert self._pool is not None
        return deferToThreadPool(self.reactor, self._pool, function, *args)

    def stopService(self) -> Deferred[None]:
        """Analyse what is queued, flush and close alerts.json, stop the thread."""
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        while self._batch is not None or (self.queue and self.engine is not None):
            if self._batch is None:
                self._kick()
            if self._batch is not None:
                await self._batch
        writer, self.writer = self.writer, None
        if writer is not None:
            await self._on_analysis_thread(writer.close)
        archives, self.archives = self.archives, None
        if archives is not None:
            await self._on_analysis_thread(archives.close)
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self.queue:
            self.log.warn(
                "{count} events were not analysed (no ruleset loaded).", count=len(self.queue)
            )

    # --- events ------------------------------------------------------------------------------
    def __call__(self, event: AgentEvent) -> None:
        """The agent channel's event sink: queue the event (drop it when the queue is full)."""
        self.stats.received += 1
        if len(self.queue) >= self.queue_size:
            self.stats.dropped += 1
            if self.stats.dropped % 10000 == 1:
                self.log.warn(
                    "Analysis queue full: {count} events dropped so far.", count=self.stats.dropped
                )
            return
        self.queue.append(event)
        self._kick()

    def _kick(self) -> None:
        if self._batch is not None or self.engine is None or not self.queue:
            return
        batch = [self.queue.popleft() for _ in range(min(BATCH, len(self.queue)))]
        done = self._on_analysis_thread(self._analyse, self.engine, batch)
        self._batch = done

        def finished(result: object) -> None:
            self._batch = None
            if isinstance(result, BaseException) or hasattr(result, "getErrorMessage"):
                self.log.failure("Analysis of a batch failed", result)
            self._kick()

        done.addBoth(finished)

    def _analyse(self, engine: Engine, batch: list[AgentEvent]) -> None:
        """On the analysis thread: decode, match, write the alerts of one batch."""
        writer = self.writer
        archives = self.archives
        alerts = 0
        for item in batch:
            event = Event(
                item.message,
                location=item.location,
                queue=item.queue,
                agent_id=item.agent_id,
                agent_name=item.name,
                agent_ip=item.registered_ip,
                timestamp=item.received,
            )
            try:
                if archives is None:
                    alert = engine.process(event)
                else:
                    alert, archived = engine.process_archived(event)
                    if archived is not None:
                        archives.write(archived)
            except Exception as error:  # one bad event must not stop the others
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
        for notice in engine.take_notices():
            self.reactor.callFromThread(self.log.warn, "{notice}", notice=notice)
        self.stats.analysed += len(batch)
        self.stats.alerts += alerts

    def reopen_alerts(self) -> Deferred[None]:
        """Close and reopen alerts.json and the archives (after logrotate renamed them),
        between two batches."""
        return self._on_analysis_thread(self._reopen_writer)

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
        self.writer = AlertWriter(old.path)
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
                try:
                    engine = await self.run_in_thread(
                        load_engine, str(self.home.root), self.settings, self.identity
                    )
                except Exception as error:
                    self.stats.failed_reloads += 1
                    self.log.error(
                        "Could not load the ruleset, keeping the {which} one: {error}",
                        which="current" if self.engine is not None else "(none)",
                        error=str(error),
                    )
                else:
                    if self.engine is not None:  # what agents told us outlives a reload
                        engine.agent_state = self.engine.agent_state
                    self.engine = engine
                    self.stats.reloads += 1
                    self.log.info(
                        "Ruleset loaded ({warnings} warnings).",
                        warnings=len(getattr(engine, "warnings", ())),
                    )
                    for warning in list(getattr(engine, "warnings", ()))[:20]:
                        self.log.warn("Ruleset: {warning}", warning=warning)
                    self._kick()
                if not self._reload_again:
                    return
        finally:
            self._reloading = None


def node_identity(node_name: str, cluster_name: str, hidden: bool) -> Identity:
    """Who writes alerts: this host, its cluster and node (unless the cluster is hidden)."""
    return Identity(
        manager_name=os.uname().nodename,
        cluster_name=cluster_name,
        cluster_node=node_name,
        hide_cluster=hidden,
    )

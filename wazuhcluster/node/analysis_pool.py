"""The analysis pool: the engine in N child processes, spoken to over AMP (the parent side).

Each *lane* is one child process (:mod:`wazuhcluster.node.analysis_child`) with its own
queue. An agent's events always go to the same lane (its id modulo the number of lanes), so
frequency, ``if_matched`` and accumulator state stay whole in one process; a lane sends a
batch per AMP call (at most :data:`BATCH_EVENTS` events or about :data:`BATCH_BYTES`) once it
holds a full batch or its oldest event has waited :data:`SEND_DELAY`, and keeps at most
:data:`WINDOW` batches in flight. Events are queued as the rows a batch carries (built once,
from the agent's event, by :meth:`AnalysisPool.put_row`), or as an agent's frames still
sealed (:meth:`AnalysisPool.put_sealed`: the child opens them, and what it found comes back
to the ``opened`` callback as a :class:`~wazuhcluster.agents.sealed.SealedReport`; each
frame counts as one event in the queue). Answers come back in call order, carrying
ready alerts.json lines (and, with archives on, archives.json and archives.log lines), which
the pool hands to the node's one writer: alerts and archives keep their order per agent. The
notices a child's engine gathered (a message of an unknown queue...) come back with the
answer and are logged here, once.

A reload is two-phase: every running child loads the new ruleset beside its current engine
(:class:`Prepare`); only when all of them succeeded does the pool send every child
:class:`Commit` in one go, so every event dispatched before that moment meets the old ruleset
and every later one the new (the events queued by then are dispatched just before it, as far
as the window and the EPS limit allow). One failure aborts everywhere, and the old ruleset stays.

A child that dies loses its batches in flight (counted per lane and logged); its queued events
wait while it is started again (after a back-off when it keeps dying) and loads the ruleset.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail
from twisted.internet.error import ConnectionDone, ConnectionLost, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.protocols import amp
from twisted.python.failure import Failure

from wazuhcluster.agents.sealed import SealedFrames, SealedReport
from wazuhcluster.analysis.alert_totals import AlertTally
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Event
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.node.analysis_child import (
    CHILD_IN,
    CHILD_OUT,
    PIPE_BYTES,
    SEALED,
    Abort,
    Analyse,
    Commit,
    EventRow,
    Hello,
    Prepare,
    encode_rows,
    event_row,
    sealed_row,
    settings_to_json,
)
from wazuhcluster.node.intake import EpsLimiter, RateWindow
from wazuhcluster.util.background import BackgroundWork
from wazuhcluster.util.logs import ClusterLog

#: Events per AMP call, and the rough size (message and location bytes) of one call.
BATCH_EVENTS = 500
BATCH_BYTES = 256 * 1024
#: Batches in flight per lane (one being analysed, one waiting in the pipe).
WINDOW = 2
#: Seconds an event may wait on its lane for others to fill the batch: a lane sends once it
#: holds :data:`BATCH_EVENTS` events or its oldest unsent one has waited this long. Each
#: batch has a fixed cost in the node and in the child (an AMP call, a pipe write and a
#: wake-up each way, a hand-off to the writer thread) which, at a few events per batch, was
#: more than the analysis of its events. Below BATCH_EVENTS / SEND_DELAY events a second a
#: lane makes at most 1 / SEND_DELAY calls a second, for a delay in alerts.json no one sees.
#: 0.2 s rather than 0.05: an analysis process that sleeps between small batches starts each
#: one cold, and with a default agent's mix at 2,000 events/s (120 events per batch at
#: 0.05 s, 420 at 0.2 s) the node spent 15-20 % less CPU per event in both processes.
SEND_DELAY = 0.2
#: Back-off before starting a child again: first, growth factor, ceiling (seconds).
RESTART_FIRST = 0.5
RESTART_MAX = 30.0
#: Seconds a stopping child may take to exit before it is killed.
STOP_GRACE = 10.0


@frozen
class ReloadOutcome:
    """What a reload of the pool did."""

    ok: bool
    error: str | None = None
    warnings: tuple[str, ...] = ()
    #: No process was running to reload: each loads the ruleset from disk as it starts, so
    #: nothing failed and nothing was switched.
    no_process: bool = False


class ChildHandle(Protocol):
    """A running child as the pool sees it (a real process, or an in-memory one in tests)."""

    remote: amp.AMP
    ended: Deferred[None]

    @property
    def pid(self) -> int | None:
        """The child's process id, when it has one."""

    def stop(self) -> None:
        """Ask the child to finish (close its input)."""

    def kill(self) -> None:
        """End the child now."""


Spawner = Callable[[int], ChildHandle]


#: What the reactor reads from a child's pipe at a time (Twisted's ``fdesc.readFromFD``),
#: one read per reactor turn. A batch's answer (its alerts.json lines) is often hundreds of
#: KiB: read at that pace it took dozens of turns, and the analysis process waited for its
#: next batch meanwhile. A read that fills it is followed at once by one of up to the pipe's
#: size (:func:`ChildProcess._drain`).
TWISTED_PIPE_READ = 8192


class _PipeTransport:
    """AMP's transport to the child: writes go to the child's fd :data:`CHILD_IN`."""

    def __init__(self, process: IProcessTransport, lane: int) -> None:
        self.process = process
        self.lane = lane
        #: The child's input is closed (stopped, or the child is gone): writes are dropped.
        self.closed = False

    def write(self, data: bytes) -> None:
        """Send bytes to the child; nothing once its input is closed. As with a closed
        socket, a call sent then is failed when the child's end is seen (processEnded)."""
        if self.closed:
            return
        try:
            self.process.writeToChild(CHILD_IN, data)
        except KeyError:  # Twisted's way of saying the pipe is closed
            self.closed = True

    def writeSequence(self, data: list[bytes]) -> None:  # noqa: N802 - Twisted's name
        """Send several pieces."""
        self.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        """Close the child's input (it exits once it has answered everything)."""
        self.process.closeChildFD(CHILD_IN)

    def getPeer(self) -> str:  # noqa: N802 - Twisted's name
        """AMP logs this."""
        return f"analysis process {self.lane}"

    def getHost(self) -> str:  # noqa: N802 - Twisted's name
        """AMP logs this."""
        return f"pid {getattr(self.process, 'pid', None)}"


class ChildProcess(ProcessProtocol):
    """One real child process: AMP on fds 3/4, its stdout and stderr lines to the log."""

    def __init__(self, log: ClusterLog, lane: int) -> None:
        self.log = log
        self.lane = lane
        self.remote = amp.AMP()
        self.ended: Deferred[None] = Deferred()
        self._partial: dict[int, bytes] = {}

    @property
    def pid(self) -> int | None:
        """The child's pid (None once it has ended)."""
        return getattr(self.transport, "pid", None)

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        """Start AMP over the pipes."""
        assert self.transport is not None
        self.remote.makeConnection(_PipeTransport(self.transport, self.lane))

    def _drain(self) -> bytes:
        """What else the child has written to its AMP pipe, up to the pipe's size, read now
        (see :data:`TWISTED_PIPE_READ`); nothing when the pipe is empty or unreadable (the
        reactor's next read reports an end or an error)."""
        pipes = getattr(self.transport, "pipes", {})
        reader = pipes.get(CHILD_OUT)
        if reader is None:
            return b""
        try:
            return os.read(reader.fileno(), PIPE_BYTES)
        except OSError:
            return b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N802, N803
        """AMP on fd 4; any other output is logged line by line (bounded)."""
        if childFD == CHILD_OUT:
            if len(data) == TWISTED_PIPE_READ:
                data += self._drain()
            self.remote.dataReceived(data)
            return
        text = self._partial.pop(childFD, b"") + data
        *lines, rest = text.split(b"\n")
        if len(rest) < 4096:
            self._partial[childFD] = rest
        for line in lines:
            if line.strip():
                self.log.warn(
                    "Analysis process {lane}: {line}",
                    lane=self.lane,
                    line=line[:2000].decode("utf-8", "replace"),
                )

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        """Fail the calls in flight, then tell the pool."""
        self.remote.connectionLost(reason)
        self.ended.callback(None)

    def stop(self) -> None:
        """Close the child's input; it answers what it has and exits."""
        try:
            self.transport.closeChildFD(CHILD_IN)  # type: ignore[union-attr]
        except Exception as error:  # already gone
            self.log.debug("Closing analysis process {lane}: {error}", lane=self.lane, error=error)

    def kill(self) -> None:
        """SIGKILL the child (when it did not stop in time)."""
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except Exception as error:  # already gone
            self.log.debug("Killing analysis process {lane}: {error}", lane=self.lane, error=error)


def process_spawner(reactor: IReactorProcess, log: ClusterLog) -> Spawner:
    """Start real children: ``python -m wazuhcluster.node.analysis_child``, with the
    parent's ``sys.path`` so a source checkout works as well as an installed package."""

    def spawn(lane: int) -> ChildHandle:
        child = ChildProcess(log, lane)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(sys.path)
        executable = sys.executable
        reactor.spawnProcess(
            child,
            executable,
            [executable, "-m", "wazuhcluster.node.analysis_child"],
            env=environment,
            childFDs={0: "w", 1: "r", 2: "r", CHILD_IN: "w", CHILD_OUT: "r"},
        )
        return child

    return spawn


@define
class LaneStats:
    """What one analysis process did (kept across its restarts)."""

    processed: int = 0
    alerts: int = 0
    failed: int = 0
    lost: int = 0
    restarts: int = 0
    #: Batches (Analyse calls) sent: processed / batches is the mean batch size.
    batches: int = 0


@define(eq=False)
class Lane:
    """One child process and its queue."""

    index: int
    #: Events waiting, as the rows a batch carries (built once, when queued), and how many
    #: events they are (a row of sealed frames holds several).
    queue: deque[EventRow] = field(factory=deque)
    queued: int = 0
    handle: ChildHandle | None = None
    generation: int = 0
    connected: bool = False
    ready: bool = False
    inflight: int = 0
    inflight_events: int = 0
    #: When the oldest unsent event must leave (None: nothing queued since the last batch).
    due: float | None = None
    deaths_in_row: int = 0
    restart_call: IDelayedCall | None = None
    lost_reported: int = 0
    stats: LaneStats = field(factory=LaneStats)
    rate: RateWindow = field(factory=RateWindow)

    def describe(self) -> dict[str, Any]:
        """This lane's numbers for the control socket."""
        return {
            "lane": self.index,
            "pid": self.handle.pid if self.handle is not None else None,
            "running": self.ready,
            "queued": self.queued,
            "in_flight": self.inflight_events,
            "processed": self.stats.processed,
            "alerts": self.stats.alerts,
            "failed": self.stats.failed,
            "lost": self.stats.lost,
            "restarts": self.stats.restarts,
            "batches": self.stats.batches,
            "eps_10s": self.rate.rate(10),
            "eps_1m": self.rate.rate(60),
        }


def lane_of(agent_id: str, lanes: int) -> int:
    """The lane of an agent: its numeric id modulo ``lanes`` (a CRC of other ids)."""
    if agent_id.isdigit():
        return int(agent_id) % lanes
    return zlib.crc32(agent_id.encode("utf-8", "replace")) % lanes


class AnalysisPool:
    """N analysis processes, their queues, reloads and restarts (see the module doc)."""

    def __init__(
        self,
        lanes: int,
        spawn: Spawner,
        clock: IReactorTime,
        log: ClusterLog,
        home: str,
        settings: RulesetSettings,
        identity: Identity,
        write: Callable[[bytes, int], object],
        limiter: EpsLimiter | None = None,
        archive: Callable[[str, str, int], object] | None = None,
        reply: Callable[[str, str], object] | None = None,
        state_dir: str | None = None,
        tally: AlertTally | None = None,
        opened: Callable[[SealedReport], object] | None = None,
    ) -> None:
        self.lanes = [Lane(index) for index in range(max(1, lanes))]
        self.spawn = spawn
        self.clock = clock
        self.log = log
        self.home = home
        self.settings = settings
        self.identity = identity
        self.write = write
        self.limiter = limiter or EpsLimiter(0, 1)
        #: Where archived events go (archives.json text, archives.log text, count); None:
        #: archives are off and the children do not build them.
        self.archive = archive
        #: Where the children's replies to agents go (agent id, message).
        self.reply = reply
        #: The agents' state databases (None: each child remembers in memory).
        self.state_dir = state_dir
        #: Where the children's counts of their alerts go (the hourly totals).
        self.tally = tally
        #: Where what the children found opening sealed frames goes (the agent channel).
        self.opened = opened
        #: Events waiting on every lane (a group of sealed frames counts its frames).
        self.queued = 0
        self.draining = False
        self.closing = False
        #: True once a ruleset was committed in the processes.
        self.loaded = False
        self._started: list[Deferred[None]] = []
        self._drained: list[Deferred[None]] = []
        self._send_call: IDelayedCall | None = None
        self._send_soon = False
        #: Loads in children started after the first load, and restarts: cancelled at stop.
        self.background = BackgroundWork(log, "analysis process starts")

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Deferred[None]:
        """Start every child; fires once each said hello (or failed to start)."""
        waits = [self._spawn(lane) for lane in self.lanes]
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    def _spawn(self, lane: Lane) -> Deferred[None]:
        lane.restart_call = None
        lane.generation += 1
        generation = lane.generation
        try:
            handle = self.spawn(lane.index)
        except Exception as error:
            self.log.error(
                "Could not start analysis process {lane}: {error}", lane=lane.index, error=error
            )
            self._schedule_restart(lane)
            return fail(error)
        lane.handle = handle
        handle.ended.addBoth(lambda _: self._ended(lane, generation))
        return ensureDeferred(self._hello(lane, handle, generation))

    async def _hello(self, lane: Lane, handle: ChildHandle, generation: int) -> None:
        try:
            await handle.remote.callRemote(
                Hello,
                home=self.home,
                settings=settings_to_json(self.settings),
                identity={
                    "manager_name": self.identity.manager_name,
                    "cluster_name": self.identity.cluster_name,
                    "cluster_node": self.identity.cluster_node,
                    "hide_cluster": self.identity.hide_cluster,
                },
                lane=lane.index,
                lanes=len(self.lanes),
                archives=self.archive is not None,
                state_dir=self.state_dir,
            )
        except Exception as error:
            if lane.generation == generation and not self.closing:
                self.log.error(
                    "Analysis process {lane} did not answer: {error}", lane=lane.index, error=error
                )
            return
        if lane.generation != generation:
            return
        lane.connected = True
        if self.loaded:
            await self._prepare_one(lane, generation)

    async def _prepare_one(self, lane: Lane, generation: int) -> None:
        """A child started after the first load: load and commit on its own."""
        handle = lane.handle
        assert handle is not None
        try:
            answer = await handle.remote.callRemote(Prepare)
            if not answer["ok"]:
                self.log.error(
                    "Analysis process {lane} could not load the ruleset: {error}",
                    lane=lane.index,
                    error=answer["error"],
                )
                return
            await handle.remote.callRemote(Commit)
        except Exception as error:
            if lane.generation == generation and not self.closing:
                self.log.error(
                    "Analysis process {lane} failed to load: {error}", lane=lane.index, error=error
                )
            return
        if lane.generation == generation:
            lane.ready = True
            self._pump(lane)

    def _ended(self, lane: Lane, generation: int) -> None:
        if lane.generation != generation:
            return
        lane.connected = lane.ready = False
        lane.handle = None
        lost = lane.stats.lost - lane.lost_reported
        lane.lost_reported = lane.stats.lost
        if self.closing:
            return
        lane.deaths_in_row += 1
        lane.stats.restarts += 1
        self.log.error(
            "Analysis process {lane} ended; {lost} events in flight were lost "
            "({total} lost by this lane so far). Starting it again.",
            lane=lane.index,
            lost=lost,
            total=lane.stats.lost,
        )
        self._schedule_restart(lane)

    def _schedule_restart(self, lane: Lane) -> None:
        if self.closing or lane.restart_call is not None:
            return
        delay = 0.0
        if lane.deaths_in_row > 1:
            delay = min(RESTART_MAX, RESTART_FIRST * 2 ** (lane.deaths_in_row - 2))
        lane.restart_call = self.clock.callLater(delay, self._restart, lane)

    def _restart(self, lane: Lane) -> None:
        started = self._spawn(lane)
        # A spawn that raised is logged by _spawn, which schedules the next attempt.
        started.addErrback(lambda _: None)
        self.background.track(started, f"Restarting analysis process {lane.index}")

    def drain(self) -> Deferred[None]:
        """Fires once every queued event was analysed (the EPS limit no longer applies).

        If no ruleset was ever loaded nothing can be analysed: it fires at once and the
        events stay counted in :attr:`queued`.
        """
        self.draining = True
        waiter: Deferred[None] = Deferred()
        self._drained.append(waiter)
        for lane in self.lanes:
            self._pump(lane)
        self._check_drained()
        return waiter

    def _check_drained(self) -> None:
        if not self._drained:
            return
        busy = any(lane.inflight for lane in self.lanes)
        if busy or (self.queued and self.loaded):
            return
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            waiter.callback(None)

    async def stop(self) -> None:
        """Stop every child (after :meth:`drain`), killing those that do not exit in time."""
        self.closing = True
        self.background.cancel()
        if self._send_call is not None and self._send_call.active():
            self._send_call.cancel()
        self._send_call = None
        ends = []
        for lane in self.lanes:
            if lane.restart_call is not None and lane.restart_call.active():
                lane.restart_call.cancel()
            lane.restart_call = None
            if lane.handle is not None:
                ends.append(lane.handle.ended)
                lane.handle.stop()
        if not ends:
            return
        handles = [lane.handle for lane in self.lanes if lane.handle is not None]

        def kill() -> None:
            for handle in handles:
                handle.kill()

        killer = self.clock.callLater(STOP_GRACE, kill)
        await DeferredList(ends, consumeErrors=True)
        if killer.active():
            killer.cancel()
        await self.background.stop()

    # --- events ------------------------------------------------------------------------------
    def put(self, event: Event) -> None:
        """Queue ``event`` on its agent's lane (see :meth:`put_row`)."""
        self.put_row(event.agent_id, event_row(event))

    def put_sealed(self, group: SealedFrames) -> None:
        """Queue an agent's frames still sealed on its lane, as :meth:`put_row` does an
        event (each frame counts as one event until its process opened it)."""
        self._put(group.agent_id, sealed_row(group), len(group.frames))

    def put_row(self, agent_id: str, row: EventRow) -> None:
        """Queue the event ``row`` of ``agent_id`` on the agent's lane. It leaves with the
        batch of the lane's next :data:`BATCH_EVENTS` events, or :data:`SEND_DELAY` seconds
        after the oldest of them was queued, whichever comes first."""
        self._put(agent_id, row, 1)

    def _put(self, agent_id: str, row: EventRow, events: int) -> None:
        lanes = self.lanes
        lane = lanes[lane_of(agent_id, len(lanes))] if len(lanes) > 1 else lanes[0]
        queue = lane.queue
        if lane.due is None:
            lane.due = self.clock.seconds() + SEND_DELAY
        queue.append(row)
        self.queued += events
        lane.queued += events
        if lane.queued >= BATCH_EVENTS and not self._send_soon:
            # A full batch leaves at the end of this reactor turn.
            self._send_soon = True
            self._schedule_send(0)
        elif self._send_call is None:
            self._schedule_send(SEND_DELAY)

    def _schedule_send(self, delay: float) -> None:
        call = self._send_call
        if call is None:
            self._send_call = self.clock.callLater(delay, self._send_queued)
        elif call.getTime() > self.clock.seconds() + delay:
            call.reset(delay)

    def _send_queued(self) -> None:
        self._send_call = None
        self._send_soon = False
        self.pump()
        # Lanes holding events that are not due yet get the timer back at the earliest due
        # (a lane whose window is full sends when an answer comes, one held by the EPS limit
        # at the next tick).
        now = self.clock.seconds()
        waiting = [
            lane.due
            for lane in self.lanes
            if lane.queue and lane.due is not None and lane.due > now and lane.ready
        ]
        if waiting and self._send_call is None and not self.closing:
            self._send_call = self.clock.callLater(min(waiting) - now, self._send_queued)

    def pump(self) -> None:
        """Send what may be sent on every lane (after the EPS limit freed credits)."""
        for lane in self.lanes:
            self._pump(lane)

    def _pump(self, lane: Lane) -> None:
        while lane.ready and lane.queue and lane.inflight < WINDOW and lane.handle is not None:
            now = self.clock.seconds()
            due = lane.due
            if not self.draining and lane.queued < BATCH_EVENTS and due is not None and now < due:
                return  # not a full batch yet: the pool's timer comes back at ``due``
            allowed = BATCH_EVENTS if self.draining else self.limiter.available(now)
            if allowed <= 0:
                self.limiter.waits += 1
                return
            batch: list[EventRow] = []
            events = size = 0
            limit = min(BATCH_EVENTS, allowed)
            queue = lane.queue
            while queue and events < limit and size < BATCH_BYTES:
                row = queue.popleft()
                batch.append(row)
                if row[0] == SEALED:  # an agent's frames: as many events, their bytes
                    frames = row[-1]
                    events += len(frames)
                    size += sum(map(len, frames))
                else:
                    events += 1
                    size += len(row[0]) + len(row[1]) + 64  # message and location
            self.queued -= events
            lane.queued -= events
            if not queue:
                lane.due = None
            if not self.draining:
                self.limiter.take(now, events)
            lane.inflight += 1
            lane.inflight_events += events
            lane.stats.batches += 1
            call = lane.handle.remote.callRemote(Analyse, events=encode_rows(batch))
            call.addCallbacks(
                self._analysed,
                self._failed,
                callbackArgs=(lane, events),
                errbackArgs=(lane, events),
            )

    def _finish(self, lane: Lane, count: int) -> None:
        lane.inflight -= 1
        lane.inflight_events -= count

    def _analysed(self, answer: dict[str, Any], lane: Lane, count: int) -> None:
        self._finish(lane, count)
        lane.deaths_in_row = 0
        lane.stats.processed += answer["processed"]
        lane.stats.failed += answer["failed"]
        lane.stats.alerts += answer["alerted"]
        for error in answer["errors"]:
            self.log.error("Could not analyse an event of {error}", error=error)
        for notice in answer["notices"]:
            self.log.warn("{notice}", notice=notice)
        if answer["alerted"]:
            self.write(answer["alerts"], answer["alerted"])
        tally = answer.get("tally")
        if tally and self.tally is not None:
            self.tally.add(tally["pairs"], tally["syscheck"], tally["firewall"])
        replies = answer.get("replies")
        if replies and self.reply is not None:
            for agent_id, message in json.loads(replies):
                self.reply(agent_id, message)
        sealed = answer.get("sealed")
        if sealed and self.opened is not None:
            self.opened(SealedReport.from_json(json.loads(sealed)))
        if answer["archived"] and self.archive is not None:
            self.archive(
                answer["archive_json"].decode("utf-8"),
                answer["archive_log"].decode("utf-8"),
                answer["archived"],
            )
        self._pump(lane)
        self._check_drained()

    def _failed(self, reason: Failure, lane: Lane, count: int) -> None:
        self._finish(lane, count)
        lane.stats.lost += count
        if not reason.check(ProcessDone, ProcessTerminated, ConnectionLost, ConnectionDone):
            self.log.error(
                "Analysis process {lane} failed a batch of {count} events: {error}",
                lane=lane.index,
                count=count,
                error=reason.getErrorMessage(),
            )
        self._pump(lane)
        self._check_drained()

    # --- reload ------------------------------------------------------------------------------
    async def reload(self) -> ReloadOutcome:
        """Load the ruleset in every running child, then switch all of them at once."""
        lanes = [lane for lane in self.lanes if lane.connected and lane.handle is not None]
        if not lanes:
            return ReloadOutcome(False, "no analysis process is running", no_process=True)
        generations = {lane.index: lane.generation for lane in lanes}
        calls = [lane.handle.remote.callRemote(Prepare) for lane in lanes if lane.handle]
        results = await DeferredList(calls, consumeErrors=True)
        prepared: list[Lane] = []
        errors: list[str] = []
        warnings: tuple[str, ...] = ()
        for lane, (success, answer) in zip(lanes, results, strict=True):
            alive = lane.connected and lane.generation == generations[lane.index]
            if not success:
                if alive:
                    errors.append(f"analysis process {lane.index}: {answer.getErrorMessage()}")
                continue
            if not answer["ok"]:
                errors.append(answer["error"] or "unknown error")
            elif alive:
                prepared.append(lane)
                warnings = warnings or tuple(answer["warnings"])
        if errors:
            for lane in prepared:
                assert lane.handle is not None
                sent = lane.handle.remote.callRemote(Abort)
                sent.addErrback(self._not_taken, lane, "Abort")
            return ReloadOutcome(False, errors[0])
        # Events queued until now leave before the Commit (as far as the window and the EPS
        # limit let them), so they meet the old ruleset; every Commit leaves in this one
        # reactor turn, before any later batch.
        now = self.clock.seconds()
        for lane in prepared:
            if lane.due is not None:
                lane.due = min(lane.due, now)
            self._pump(lane)
        for lane in prepared:
            assert lane.handle is not None
            sent = lane.handle.remote.callRemote(Commit)
            sent.addErrback(self._not_taken, lane, "Commit")
            lane.ready = True
        self.loaded = True
        for lane in self.lanes:
            if lane.connected and not lane.ready and lane.handle is not None:
                self.background.track(
                    self._prepare_one(lane, lane.generation),
                    f"Loading the ruleset in analysis process {lane.index}",
                )
            self._pump(lane)
        return ReloadOutcome(True, None, warnings)

    def _not_taken(self, reason: Failure, lane: Lane, command: str) -> None:
        """A child did not take a Commit or an Abort. One that is gone (stopping, or dead:
        its restart loads the ruleset afresh) is expected; anything else is an error."""
        if reason.check(ProcessDone, ProcessTerminated, ConnectionLost, ConnectionDone):
            self.log.debug(
                "Analysis process {lane} ended before taking {command}.",
                lane=lane.index,
                command=command,
            )
            return
        self.log.error(
            "Analysis process {lane} did not take {command}: {error}",
            lane=lane.index,
            command=command,
            error=reason.getErrorMessage(),
        )

    # --- numbers -----------------------------------------------------------------------------
    def sample(self) -> None:
        """Record each lane's counter for its EPS figures (called every second)."""
        now = self.clock.seconds()
        for lane in self.lanes:
            lane.rate.sample(now, lane.stats.processed)

    def describe(self) -> list[dict[str, Any]]:
        """Every lane's numbers."""
        return [lane.describe() for lane in self.lanes]

    def totals(self) -> LaneStats:
        """The lanes' numbers added up."""
        total = LaneStats()
        for lane in self.lanes:
            total.processed += lane.stats.processed
            total.alerts += lane.stats.alerts
            total.failed += lane.stats.failed
            total.lost += lane.stats.lost
            total.restarts += lane.stats.restarts
            total.batches += lane.stats.batches
        return total

"""PeriodicTask: one LoopingCall per periodic job ("threads" in the Wazuh docs).

A run never overlaps the previous one (the loop waits for the body's Deferred), a failing
run is logged and the loop goes on, and each run is timed so health reports can say when
a task last started, ended and how long it took.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from wazuhcluster.util.logs import ClusterLog

TaskBody = Callable[[], "Awaitable[Any] | Deferred[Any] | Any"]


class PeriodicTask(Service):
    """Run ``body`` every ``interval`` seconds on ``clock`` while the service runs."""

    def __init__(
        self,
        name: str,
        interval: float,
        body: TaskBody,
        clock: IReactorTime,
        log: ClusterLog,
        run_at_start: bool = True,
        phase: float = 0.0,
    ) -> None:
        """``phase`` delays the first run (and so every later one) by that many seconds, so
        that many nodes with the same interval do not all report at the same moment."""
        self.setName(name)
        self.interval = interval
        self.body = body
        self.clock = clock
        self.log = log
        self.run_at_start = run_at_start
        self.phase = phase
        self._phase_call: IDelayedCall | None = None
        self.last_start: float | None = None
        self.last_end: float | None = None
        self.last_duration: float | None = None
        self.last_error: str | None = None
        self.runs = 0
        self._loop: LoopingCall | None = None
        self._in_flight: Deferred[None] | None = None

    @property
    def busy(self) -> bool:
        """True while a run is in progress."""
        return self._in_flight is not None

    def _run_once(self) -> Deferred[None]:
        started = self.last_start = self.clock.seconds()
        self.runs += 1

        def call() -> Any:
            result = self.body()
            if isinstance(result, Awaitable) and not isinstance(result, Deferred):
                return ensureDeferred(result)  # type: ignore[arg-type]
            return result

        done: Deferred[None] = maybeDeferred(call)

        def finished(result: object) -> None:
            self.last_end = self.clock.seconds()
            self.last_duration = self.last_end - started
            self.last_error = None
            self._in_flight = None

        def failed(failure: Failure) -> None:
            self.last_end = self.clock.seconds()
            self.last_error = failure.getErrorMessage()
            self._in_flight = None
            self.log.failure("Error in periodic task {task}", failure, task=self.name)

        done.addCallbacks(finished, failed)
        if self._in_flight is None and not done.called:
            self._in_flight = done
        return done

    def run_now(self) -> Deferred[None]:
        """Run the body at once, unless a run is already in flight (then wait for that one)."""
        if self._in_flight is not None:
            return self._in_flight
        return self._run_once()

    def startService(self) -> None:
        """Start looping (after ``phase`` seconds when one is set)."""
        super().startService()
        self._loop = LoopingCall(self._loop_body)
        self._loop.clock = self.clock
        if self.phase > 0:
            self._phase_call = self.clock.callLater(self.phase, self._start_loop, True)
        else:
            self._start_loop(self.run_at_start)

    def _start_loop(self, now: bool) -> None:
        self._phase_call = None
        if self._loop is None:
            return
        stopped = self._loop.start(self.interval, now=now)
        stopped.addErrback(lambda failure: self.log.failure("Task stopped", failure))

    def _loop_body(self) -> Deferred[None]:
        if self._in_flight is not None:
            # A run_now() call is still going: skip this tick instead of overlapping it.
            return self._in_flight
        return self._run_once()

    def stopService(self) -> Deferred[None]:
        """Stop looping; the returned Deferred fires when the run in flight (if any) ends."""
        super().stopService()
        if self._phase_call is not None and self._phase_call.active():
            self._phase_call.cancel()
        self._phase_call = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._in_flight is not None:
            waiter: Deferred[None] = Deferred()
            self._in_flight.addBoth(lambda _: waiter.callback(None))
            return waiter
        return succeed(None)


class CallOnStop(Service):
    """Runs ``on_stop()`` when the node stops (e.g. to cancel a pending delayed call)."""

    def __init__(self, on_stop: Callable[[], object]) -> None:
        self.on_stop = on_stop

    def stopService(self) -> None:
        """Run the callable."""
        super().stopService()
        self.on_stop()


class CallOnStart(Service):
    """Runs ``on_start()`` when the node starts, after the services before it (logging)."""

    def __init__(self, on_start: Callable[[], object]) -> None:
        self.on_start = on_start

    def startService(self) -> None:
        """Run the callable."""
        super().startService()
        self.on_start()

"""BackgroundWork: Deferreds started without anyone waiting for them, kept until they fire.

A feature that starts a send or a write "in the background" (a stream to a worker, a remote
call whose answer nobody needs) hands the Deferred to :meth:`BackgroundWork.track`. The
tracker keeps it until it fires, logs a failure with its reason instead of leaving it to
"Unhandled error in Deferred" at garbage collection, and, as a service, settles what is still
pending when the node stops: a send over a link that is going down is cancelled, a disk
write is waited for.
"""

from __future__ import annotations

import enum
from collections.abc import Coroutine
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.python.failure import Failure

from wazuhcluster.util.logs import ClusterLog


class OnStop(enum.Enum):
    """What the node's stop does with work still pending."""

    #: Cancel it (a send over a link that is going down).
    CANCEL = "cancel"
    #: Wait for it (a write to disk that must not be cut in half).
    WAIT = "wait"


@frozen
class Pending:
    """One piece of tracked work."""

    what: str
    on_stop: OnStop


class BackgroundWork(Service):
    """Keeps background Deferreds until they fire; cancels or waits for them at stop."""

    def __init__(self, log: ClusterLog, name: str = "background work") -> None:
        self.setName(name)
        self.log = log
        self._pending: dict[Deferred[Any], Pending] = {}
        self._stopping = False

    @property
    def pending(self) -> list[str]:
        """What is still running, in the order it started."""
        return [entry.what for entry in self._pending.values()]

    def track(
        self,
        work: Deferred[Any] | Coroutine[Any, Any, Any],
        what: str,
        on_stop: OnStop = OnStop.CANCEL,
    ) -> Deferred[None]:
        """Keep ``work`` (a Deferred, or a coroutine to run) until it fires.

        Returns a Deferred that fires with None when the work is over and never fails: a
        failure is logged here with ``what`` and its reason. Work tracked once the node is
        stopping and marked :attr:`OnStop.CANCEL` is cancelled at once.
        """
        started = work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)
        entry = Pending(what, on_stop)
        self._pending[started] = entry

        def settled(result: object) -> None:
            self._pending.pop(started, None)
            if not isinstance(result, Failure):
                return
            if result.check(CancelledError):
                self.log.debug("{what}: cancelled.", what=what)
                return
            self.log.failure("{what} failed", result, what=what)

        started.addBoth(settled)
        if self._stopping and on_stop is OnStop.CANCEL:
            started.cancel()
        return started

    def cancel(self) -> None:
        """Cancel every pending piece of work marked :attr:`OnStop.CANCEL`."""
        for work, entry in list(self._pending.items()):
            if entry.on_stop is OnStop.CANCEL:
                work.cancel()

    def wait(self) -> Deferred[None]:
        """A Deferred that fires when everything pending now has fired."""
        if not self._pending:
            return succeed(None)
        waiters: list[Deferred[None]] = []

        def release(result: object, waiter: Deferred[None]) -> object:
            waiter.callback(None)
            return result

        for work in self._pending:
            waiter: Deferred[None] = Deferred()
            work.addBoth(release, waiter)
            waiters.append(waiter)
        everything: Deferred[Any] = DeferredList(waiters)
        return everything.addCallback(lambda _: None)

    def stop(self) -> Deferred[None]:
        """Cancel what may be cancelled, then wait for the rest (and for the cancelled work
        to settle)."""
        self._stopping = True
        self.cancel()
        return self.wait()

    def startService(self) -> None:
        """Accept work normally again (after a stop)."""
        self._stopping = False
        super().startService()

    def stopService(self) -> Deferred[None]:
        """The node is stopping: :meth:`stop`."""
        super().stopService()
        return self.stop()

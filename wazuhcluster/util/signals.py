"""SIGHUP for a running node: reopen cluster.log (after logrotate) and reload what can be reloaded.

``SignalHandlers`` installs a SIGHUP handler while the node runs. The handler itself does nothing
but hand the work to the reactor with ``callFromThread`` (safe from a signal handler: it only
appends to a queue and wakes the reactor), so no callback ever runs in the middle of whatever
the reactor thread was doing when the signal arrived.

SIGTERM and SIGINT are not handled here: twistd's reactor already turns them into
``reactor.stop()``, which stops the service tree through ``stopService`` (each service finishes
or cancels its work and closes its files there). SIGUSR1 belongs to twistd too: it rotates
twistd's own ``--logfile``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from wazuhcluster.util.logs import ClusterLog

#: What ``signal.signal`` accepts and ``signal.getsignal`` returns.
_Handler = Callable[[int, FrameType | None], Any] | int | None


def _describe(callback: Callable[[], object]) -> str:
    return str(getattr(callback, "__qualname__", None) or repr(callback))


class SignalHandlers(Service):
    """Runs ``on_hup`` callbacks in the reactor thread each time the process gets SIGHUP.

    Callbacks take no argument and may return a Deferred; a failure of one is logged and does
    not stop the others. Signals that arrive before the scheduled run has happened are folded
    into that run. ``on_hup`` is a public list: services built later may append to it.
    The previous handler is put back on stop (unless someone replaced ours in the meantime).
    """

    signum = signal.SIGHUP

    def __init__(
        self,
        reactor: IReactorFromThreads,
        on_hup: Iterable[Callable[[], object]],
        log: ClusterLog | None = None,
    ) -> None:
        self.reactor = reactor
        self.on_hup: list[Callable[[], object]] = list(on_hup)
        self.log = log or ClusterLog("Cluster", "Main")
        self._previous: _Handler = None
        self._installed: Callable[[int, FrameType | None], None] | None = None
        self._pending = False

    def startService(self) -> None:
        """Install the SIGHUP handler (must run in the main thread, as twistd does)."""
        self._installed = self._on_signal
        self._previous = signal.signal(self.signum, self._installed)
        super().startService()

    def stopService(self) -> Deferred[None] | None:
        """Put the previous SIGHUP handler back."""
        result = super().stopService()
        if self._installed is not None:
            if signal.getsignal(self.signum) == self._installed:
                previous = self._previous if self._previous is not None else signal.SIG_DFL
                signal.signal(self.signum, previous)
            self._installed = None
        return result

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # In signal context: only hand over to the reactor, never run callbacks here.
        if self._pending:
            return
        self._pending = True
        self.reactor.callFromThread(self.run_callbacks)

    def run_callbacks(self) -> None:
        """Run every ``on_hup`` callback now (in the reactor thread), logging failures."""
        self._pending = False
        if not self.running:
            return
        names = []
        for callback in list(self.on_hup):
            name = _describe(callback)
            names.append(name)
            maybeDeferred(callback).addErrback(self._failed, name)
        self.log.info(
            "SIGHUP received: ran {count} reload action(s): {names}",
            count=len(names),
            names=", ".join(names) or "none",
        )

    def _failed(self, failure: Failure, name: str) -> None:
        self.log.failure("SIGHUP action {name} failed", failure, name=name)

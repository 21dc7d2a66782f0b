"""The worker's end of the cluster link: the commands the master may send to a worker."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.main import CONNECTION_DONE
from twisted.protocols import amp
from twisted.python.failure import Failure

_CLOSED = Failure(CONNECTION_DONE)


class WorkerProtocol(amp.AMP):
    """Serves the master's commands on a worker; tells the link when the connection ends."""

    def __init__(self, on_lost: Callable[[WorkerProtocol, Failure], None]) -> None:
        super().__init__()
        self.on_lost = on_lost

    def connectionLost(self, reason: Failure = _CLOSED) -> None:
        """Let the link know, so periodic tasks stop using this connection."""
        super().connectionLost(reason)
        self.on_lost(self, reason)

"""The worker's end of the cluster link: the commands the master may send to a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from twisted.internet.interfaces import IReactorTime
from twisted.internet.main import CONNECTION_DONE
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.util.nodelay import send_without_delay
from wazuhcluster.wire.features import FeatureSet, LinkT, locate_in
from wazuhcluster.wire.interfaces import IPeer
from wazuhcluster.wire.stream_endpoint import StreamEndpoint, StreamResponders

_CLOSED = Failure(CONNECTION_DONE)


@implementer(IPeer)
class WorkerProtocol(StreamResponders, amp.AMP, Generic[LinkT]):
    """Serves the master's commands on a worker; tells the link when the connection ends.

    Feature commands are answered once the link has authenticated and installed the
    features' locators.
    """

    def __init__(
        self,
        on_lost: Callable[[WorkerProtocol[LinkT], Failure], None],
        features: FeatureSet[LinkT],
        clock: IReactorTime,
        link: LinkT,
        call_timeout: float,
    ) -> None:
        super().__init__()
        self.on_lost = on_lost
        self.features = features
        self.link = link
        self.locators: list[amp.CommandLocator] = []
        self.streams = StreamEndpoint(
            self.callRemote,
            clock,
            features.stream_kinds(),
            self._stream_received,
            call_timeout=call_timeout,
        )

    def _stream_received(self, kind: str, stream_id: str, result: object) -> object:
        return self.features.owner_of(kind).on_stream(self.link, kind, stream_id, result)

    def locateResponder(self, name: bytes) -> Any:  # noqa: N802 - Twisted's name
        """Our own commands first, then the features'; a non-ASCII name is unknown."""
        if not name.isascii():
            # Twisted's locator would raise UnicodeDecodeError out of dataReceived.
            return None
        return super().locateResponder(name) or locate_in(self.locators, name)

    def connectionMade(self) -> None:
        """Send small commands at once (see :func:`send_without_delay`)."""
        super().connectionMade()
        send_without_delay(self.transport)

    def connectionLost(self, reason: Failure = _CLOSED) -> None:
        """Abort streams and let the link know, so periodic tasks stop using this connection."""
        super().connectionLost(reason)
        self.streams.connection_lost(reason.getErrorMessage())
        self.on_lost(self, reason)

"""Streams wired into one AMP connection: both directions, and the responders of the commands.

Use it from a connection:

- the protocol owns a :class:`StreamEndpoint` as ``self.streams``, mixes
  :class:`StreamResponders` into its class, and calls ``self.streams.connection_lost(reason)``
  from ``connectionLost``;
- to send, ``await self.streams.send(kind, source, size=...)`` (or the lower-level
  :func:`~wazuhcluster.wire.stream_sender.send_stream`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp
from twisted.python.failure import Failure

from wazuhcluster.wire.stream_commands import (
    MAX_PARTS,
    MORE_PARTS,
    StreamCancel,
    StreamChunk,
    StreamEnd,
    StreamOpen,
)
from wazuhcluster.wire.stream_receiver import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_STREAMS,
    IncomingStreams,
    OnComplete,
    StreamKind,
)
from wazuhcluster.wire.stream_sender import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_WINDOW,
    CallRemote,
    OutgoingStreams,
    SendResult,
    send_stream,
)


class StreamEndpoint:
    """Both directions of streams for one AMP connection.

    :param call_remote: the connection's ``callRemote``.
    :param kinds: stream kinds this side accepts.
    :param on_complete: called for each stream received and verified.
    """

    def __init__(
        self,
        call_remote: CallRemote,
        clock: IReactorTime,
        kinds: Mapping[str, StreamKind],
        on_complete: OnComplete,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        window: int = DEFAULT_WINDOW,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        self._call_remote = call_remote
        self._clock = clock
        self._window = window
        self._call_timeout = call_timeout
        self.incoming = IncomingStreams(
            clock,
            kinds,
            on_complete,
            max_streams=max_streams,
            idle_timeout=idle_timeout,
            notify_peer=self._notify_sender,
        )
        self.outgoing = OutgoingStreams()

    def _notify_sender(self, stream_id: str, reason: str) -> None:
        d: Deferred[Any] = maybeDeferred(
            self._call_remote, StreamCancel, stream_id=stream_id, reason=reason, sender=False
        )
        d.addTimeout(self._call_timeout, self._clock).addErrback(_ignore)

    def send(
        self,
        kind: str,
        source: bytes | Iterable[bytes] | AsyncIterable[bytes],
        *,
        size: int | None = None,
        end_timeout: float | None = None,
        window: int | None = None,
        parts: int | None = None,
    ) -> Deferred[SendResult]:
        """Send a stream with this endpoint's timeouts and registry (see send_stream), and its
        window unless ``window`` is given.

        Cancelling the returned Deferred cancels the stream on both sides.
        """
        return Deferred.fromCoroutine(
            send_stream(
                self._call_remote,
                kind,
                source,
                clock=self._clock,
                size=size,
                window=self._window if window is None else window,
                call_timeout=self._call_timeout,
                end_timeout=end_timeout,
                registry=self.outgoing,
                parts=parts,
            )
        )

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Abort everything in both directions (call from the protocol's connectionLost)."""
        self.incoming.connection_lost(reason)
        self.outgoing.connection_lost(reason)


class StreamResponders(amp.CommandLocator):
    """Mixin serving the stream commands from ``self.streams`` (a :class:`StreamEndpoint`).

    Put it before ``amp.AMP`` (or another CommandLocator) in the bases of a connection's class.
    """

    streams: StreamEndpoint

    @StreamOpen.responder
    def stream_open(self, kind: str, total_size: int) -> dict[str, object]:
        """Accept (or refuse) a new incoming stream; announce how many chunks a call may carry."""
        return {"stream_id": self.streams.incoming.open(kind, total_size), "parts": MAX_PARTS}

    @StreamChunk.responder
    def stream_chunk(
        self, stream_id: str, offset: int, data: bytes, **more: bytes | None
    ) -> dict[str, Any] | Deferred[dict[str, Any]]:
        """Consume the chunks of one call, in order, as one piece (answered once the consumer
        has room)."""
        parts = [more[name] for name in MORE_PARTS if more.get(name) is not None]
        if parts:
            data = b"".join([data, *parts])  # type: ignore[list-item]
        wait = self.streams.incoming.chunk(stream_id, offset, data)
        if wait is None:
            return {}
        return wait.addCallback(lambda _: {})

    @StreamEnd.responder
    async def stream_end(self, stream_id: str, sha256: str) -> dict[str, Any]:
        """Verify and finish an incoming stream; answer when it has been processed."""
        reply = await self.streams.incoming.end(stream_id, sha256)
        return {} if reply is None else {"reply": reply}

    @StreamCancel.responder
    def stream_cancel(self, stream_id: str, reason: str, sender: bool) -> dict[str, Any]:
        """The peer cancelled a stream, as its sender or as its receiver."""
        if sender:
            self.streams.incoming.cancel(stream_id, reason, by_peer=True)
        else:
            self.streams.outgoing.cancel(stream_id, reason)
        return {}


def _ignore(failure: Failure) -> None:
    return None

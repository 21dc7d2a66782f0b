"""The receiving side of streams: the kinds a connection accepts, and reassembly with its checks.

:class:`IncomingStreams` opens a stream only for a known :class:`StreamKind` within its size cap
and the connection's stream count, takes the chunks in order (a resent chunk is ignored, a gap
refused) and hands them to the stream's consumer, cancels a stream that stays idle, and at the
end checks the size and SHA-256 before it finishes the consumer and runs ``on_complete``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import NoReturn

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wazuhcluster.wire.stream_commands import (
    StreamCancelled,
    StreamError,
    StreamInvalid,
    StreamRefused,
    StreamTimeout,
    StreamUnknown,
    clip,
)
from wazuhcluster.wire.stream_consumers import StreamConsumer

#: Default time a receiver waits for the next chunk before cancelling (Wazuh: 30 s per frame).
DEFAULT_IDLE_TIMEOUT = 30.0

#: Default number of streams one connection may be receiving at once.
DEFAULT_MAX_STREAMS = 4

_log = Logger()


@frozen
class StreamKind:
    """What a receiver accepts for one stream kind.

    :ivar max_size: largest ``total_size`` accepted.
    :ivar consumer: builds the consumer of a new stream, given its declared total size.
    """

    max_size: int
    consumer: Callable[[int], StreamConsumer]


#: ``on_complete(kind, stream_id, result)``: may return a Deferred; a ``str`` result is sent back
#: to the sender as the StreamEnd reply.
OnComplete = Callable[[str, str, object], object]


@define
class _Incoming:
    stream_id: str
    kind: str
    total_size: int
    consumer: StreamConsumer
    timer: IDelayedCall | None = None
    received: int = 0
    ending: bool = False
    hasher: hashlib._Hash = field(factory=hashlib.sha256)


class IncomingStreams:
    """The streams one connection is receiving: bounded in number and size, each with a timeout.

    :param kinds: the accepted stream kinds; any other kind is refused.
    :param on_complete: called with the consumer's result once a stream has been verified.
    :param notify_peer: called as ``notify_peer(stream_id, reason)`` when this side cancels a
        stream (idle timeout, consumer error), so the sender can be told to stop.
    """

    def __init__(
        self,
        clock: IReactorTime,
        kinds: Mapping[str, StreamKind],
        on_complete: OnComplete,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        notify_peer: Callable[[str, str], None] | None = None,
    ) -> None:
        self._clock = clock
        self._kinds = dict(kinds)
        self._on_complete = on_complete
        self._max_streams = max_streams
        self._idle_timeout = idle_timeout
        self.notify_peer = notify_peer
        self._streams: dict[str, _Incoming] = {}
        # Why recently closed streams closed, so late chunks get a meaningful error.
        self._closed: OrderedDict[str, StreamError] = OrderedDict()
        self._ids = itertools.count(1)

    @property
    def active(self) -> int:
        """Number of streams being received."""
        return len(self._streams)

    def open(self, kind: str, total_size: int) -> str:
        """Accept a new stream; return its id.

        :raises StreamRefused: unknown kind, size over the kind's cap, or too many streams.
        """
        spec = self._kinds.get(kind)
        if spec is None:
            raise StreamRefused(f"unknown stream kind {kind!r}")
        if not 0 <= total_size <= spec.max_size:
            raise StreamRefused(
                f"stream of {total_size} bytes refused: {kind!r} streams are capped at "
                f"{spec.max_size} bytes"
            )
        if len(self._streams) >= self._max_streams:
            raise StreamRefused(f"already receiving {len(self._streams)} streams")
        try:
            consumer = spec.consumer(total_size)
        except Exception as e:
            raise StreamRefused(f"cannot receive {kind!r} now: {e}") from None
        stream_id = f"{kind}-{next(self._ids)}"
        stream = _Incoming(stream_id, kind, total_size, consumer)
        self._streams[stream_id] = stream
        self._arm(stream)
        return stream_id

    def _arm(self, stream: _Incoming) -> None:
        if stream.timer is not None and stream.timer.active():
            stream.timer.reset(self._idle_timeout)
        else:
            stream.timer = self._clock.callLater(self._idle_timeout, self._expire, stream)

    def _expire(self, stream: _Incoming) -> None:
        stream.timer = None
        reason = f"no data for {self._idle_timeout:g} s"
        self._close(stream, StreamTimeout(f"stream {stream.stream_id} timed out: {reason}"))
        if self.notify_peer is not None:
            self.notify_peer(stream.stream_id, f"receiver timed out: {reason}")

    def _get(self, stream_id: str) -> _Incoming:
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        closed = self._closed.get(stream_id)
        if closed is not None:
            raise type(closed)(str(closed))
        raise StreamUnknown(f"no open stream {stream_id!r}")

    def _close(self, stream: _Incoming, why: StreamError | None) -> None:
        """Forget a stream; with ``why``, abort its consumer and remember the reason."""
        self._streams.pop(stream.stream_id, None)
        if stream.timer is not None and stream.timer.active():
            stream.timer.cancel()
        stream.timer = None
        if why is not None:
            try:
                stream.consumer.abort(str(why))
            except Exception:
                _log.failure("Aborting stream {stream_id} failed", stream_id=stream.stream_id)
            self._closed[stream.stream_id] = why
            while len(self._closed) > 32:
                self._closed.popitem(last=False)

    def chunk(self, stream_id: str, offset: int, data: bytes) -> Deferred[None] | None:
        """Take the piece at ``offset``; a resent piece already received is ignored.

        :return: None, or a Deferred when the consumer holds the sender back: answer the chunk
            when it fires (it fails with StreamInvalid if the consumer refused the data).
        :raises StreamInvalid: a gap, data beyond the declared size, or the consumer refused it
            (the stream is then closed).
        """
        stream = self._get(stream_id)
        if stream.ending:
            raise StreamInvalid(f"stream {stream_id} already ended")
        if offset + len(data) <= stream.received and offset >= 0:
            return None  # a duplicate of bytes already consumed
        if offset != stream.received:
            self._fail(stream, f"chunk at offset {offset}, expected {stream.received}")
        if stream.received + len(data) > stream.total_size:
            self._fail(stream, f"data beyond the declared size of {stream.total_size} bytes")
        try:
            wait = stream.consumer.feed(data)
        except Exception as e:
            self._fail(stream, f"payload refused: {e}")
        stream.hasher.update(data)
        stream.received += len(data)
        self._arm(stream)
        if wait is None:
            return None
        return wait.addCallbacks(
            self._caught_up, self._refused_later, callbackArgs=(stream,), errbackArgs=(stream,)
        )

    def _caught_up(self, _: object, stream: _Incoming) -> None:
        if stream.stream_id in self._streams and not stream.ending:
            self._arm(stream)  # the wait for the consumer was not the sender's idleness

    def _refused_later(self, failure: Failure, stream: _Incoming) -> NoReturn:
        if stream.stream_id not in self._streams:
            closed = self._closed.get(stream.stream_id)
            raise closed if closed is not None else failure.value
        self._fail(stream, f"payload refused: {failure.value}")

    def _fail(self, stream: _Incoming, reason: str) -> NoReturn:
        error = StreamInvalid(clip(f"stream {stream.stream_id}: {reason}"))
        self._close(stream, error)
        raise error

    async def end(self, stream_id: str, sha256: str) -> str | None:
        """Verify and finish a stream, run ``on_complete``, and return its reply text.

        :raises StreamInvalid: wrong size or checksum, or finishing/processing failed.
        """
        stream = self._get(stream_id)
        if stream.ending:
            raise StreamInvalid(f"stream {stream_id} already ended")
        if stream.received != stream.total_size:
            self._fail(stream, f"ended after {stream.received} of {stream.total_size} bytes")
        if stream.hasher.hexdigest() != sha256.lower():
            self._fail(stream, "SHA-256 mismatch")
        stream.ending = True
        if stream.timer is not None and stream.timer.active():
            stream.timer.cancel()
        stream.timer = None
        try:
            result = await maybeDeferred(stream.consumer.finish)
        except Exception as e:
            self._fail(stream, f"payload refused: {e}")
        # The slot is free as soon as the bytes are in; processing may take longer.
        self._close(stream, None)
        try:
            reply = await maybeDeferred(self._on_complete, stream.kind, stream_id, result)
        except Exception as e:
            _log.failure("Processing stream {stream_id} failed", stream_id=stream_id)
            raise StreamInvalid(clip(f"stream {stream_id}: processing failed: {e}")) from None
        return clip(reply) if isinstance(reply, str) else None

    def cancel(self, stream_id: str, reason: str, *, by_peer: bool) -> None:
        """Cancel a stream being received (no error if it is unknown or already finished).

        :param by_peer: the sender asked for it; otherwise this side decided, and the sender is
            told through ``notify_peer``.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.ending:
            return
        who = "sender" if by_peer else "receiver"
        self._close(stream, StreamCancelled(clip(f"cancelled by the {who}: {reason}")))
        if not by_peer and self.notify_peer is not None:
            self.notify_peer(stream_id, reason)

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Abort every stream being received (call from the protocol's connectionLost)."""
        for stream in list(self._streams.values()):
            self._close(stream, StreamCancelled(reason))

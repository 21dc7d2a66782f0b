"""The sending side of streams: cut a payload into chunks and send them within a window.

:func:`send_stream` opens a stream, sends its chunks (several per call when the receiver allows
it) with at most ``window`` chunks unanswered, hashes them on the way, and ends the stream with
their SHA-256; the first error stops it and the receiver is told. :class:`OutgoingStreams` keeps
the streams a connection is sending, so the receiver can cancel them.
"""

from __future__ import annotations

import hashlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp
from twisted.python.failure import Failure

from wazuhcluster.wire.calls import limit_time
from wazuhcluster.wire.stream_commands import (
    CHUNK_SIZE,
    MAX_PARTS,
    MORE_PARTS,
    StreamCancel,
    StreamCancelled,
    StreamChunk,
    StreamEnd,
    StreamInvalid,
    StreamOpen,
    StreamUnknown,
    clip,
)

#: Default number of chunks in flight (unanswered).
DEFAULT_WINDOW = 4

#: Default timeout of each sender call (Wazuh's request timeout).
DEFAULT_CALL_TIMEOUT = 20.0

CallRemote = Callable[..., "Deferred[dict[str, Any]]"]


@frozen
class SendResult:
    """A stream the receiver accepted: its id, size, SHA-256 and the receiver's reply."""

    stream_id: str
    size: int
    sha256: str
    reply: str | None


@define
class _Outgoing:
    stream_id: str
    pending: set[Deferred[Any]] = field(factory=set)
    error: BaseException | None = None

    def stop(self, error: BaseException) -> None:
        """Record the first error and cancel every chunk call still in flight."""
        if self.error is None:
            self.error = error
        for d in list(self.pending):
            d.cancel()


class OutgoingStreams:
    """The streams one connection is sending, so the receiver can cancel them."""

    def __init__(self) -> None:
        self._streams: dict[str, _Outgoing] = {}

    @property
    def active(self) -> int:
        """Number of streams being sent."""
        return len(self._streams)

    def _add(self, state: _Outgoing) -> None:
        self._streams[state.stream_id] = state

    def _remove(self, state: _Outgoing) -> None:
        self._streams.pop(state.stream_id, None)

    def cancel(self, stream_id: str, reason: str) -> None:
        """The receiver cancelled ``stream_id``: stop sending it (unknown ids are ignored)."""
        state = self._streams.get(stream_id)
        if state is not None:
            state.stop(StreamCancelled(clip(f"cancelled by the receiver: {reason}")))

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Stop every stream being sent."""
        for state in list(self._streams.values()):
            state.stop(StreamCancelled(reason))


async def send_stream(
    call_remote: CallRemote,
    kind: str,
    source: bytes | Iterable[bytes] | AsyncIterable[bytes],
    *,
    clock: IReactorTime,
    size: int | None = None,
    window: int = DEFAULT_WINDOW,
    chunk_size: int = CHUNK_SIZE,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
    end_timeout: float | None = None,
    registry: OutgoingStreams | None = None,
    parts: int | None = None,
) -> SendResult:
    """Send ``source`` as one stream and return once the receiver has accepted it.

    :param call_remote: the connection's ``callRemote``.
    :param source: the payload, or an iterator or async iterator of pieces of it (pieces are
        produced only as the window allows, so a generator reading files keeps memory bounded;
        a :class:`~wazuhcluster.wire.stream_sources.ThreadedSource` reads them off the reactor
        thread). An async iterator with an
        ``aclose`` is closed when the stream stops early.
    :param size: the total size; required for an iterator, which must produce exactly that.
    :param window: most chunks in flight (unanswered) at once.
    :param parts: most chunks per StreamChunk call (default: a quarter of the window, so at
        least four calls stay in flight); never more than the receiver announced.
    :param call_timeout: timeout of StreamOpen and each StreamChunk.
    :param end_timeout: timeout of StreamEnd, which includes the receiver's processing
        (default: ``call_timeout``).
    :param registry: where the stream is registered so the receiver can cancel it.
    :raises StreamError: refused, invalid, cancelled by the receiver or timed out on its side.
    :raises twisted.internet.defer.TimeoutError: a call got no answer in time.
    :raises CancelledError: the caller cancelled; the receiver is told.
    """
    size = _declared_size(source, size)
    if window < 1 or not 0 < chunk_size <= CHUNK_SIZE:
        raise ValueError("window must be >= 1 and chunk_size in (0, CHUNK_SIZE]")
    opened = await _timed_call(
        call_remote, clock, StreamOpen, call_timeout, kind=kind, total_size=size
    )
    per_call = _parts_per_call(opened.get("parts"), window, parts)
    sender = _Sender(
        call_remote, clock, call_timeout, _Outgoing(opened["stream_id"]), size, window, per_call
    )
    if registry is not None:
        registry._add(sender.state)
    pieces = _async_pieces(source, chunk_size)
    try:
        await sender.send_pieces(pieces)
        sender.raise_if_stopped()
        return await sender.end(call_timeout if end_timeout is None else end_timeout)
    finally:
        if registry is not None:
            registry._remove(sender.state)
        await pieces.aclose()
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


def _declared_size(source: bytes | Iterable[bytes] | AsyncIterable[bytes], size: int | None) -> int:
    """The size of the stream: ``size``, which must match a payload given whole and is required
    for an iterator."""
    if isinstance(source, bytes | bytearray | memoryview):
        size = len(source) if size is None else size
        if size != len(source):
            raise ValueError(f"size {size} does not match the {len(source)}-byte payload")
    elif size is None:
        raise ValueError("size is required when the source is an iterator")
    return size


def _parts_per_call(accepted: int | None, window: int, parts: int | None) -> int:
    """Most chunks per StreamChunk call: ``parts`` (default: a quarter of the window), within
    what the receiver ``accepted`` (one when it announced nothing) and :data:`MAX_PARTS`."""
    return max(1, min(accepted or 1, MAX_PARTS, window // 4 if parts is None else parts))


def _timed_call(
    call_remote: CallRemote,
    clock: IReactorTime,
    command: type[amp.Command],
    timeout: float,
    **kwargs: Any,
) -> Deferred[Any]:
    """``call_remote(command, **kwargs)``, failing with a TimeoutError after ``timeout``."""
    d: Deferred[dict[str, Any]] = maybeDeferred(call_remote, command, **kwargs)
    return limit_time(d, timeout, clock, command.__name__)


class _Sender:
    """One open stream being sent: its chunks batched into calls within the window, hashed as
    they go, the calls in flight tracked in ``state`` so the first error stops them all."""

    def __init__(
        self,
        call_remote: CallRemote,
        clock: IReactorTime,
        call_timeout: float,
        state: _Outgoing,
        size: int,
        window: int,
        per_call: int,
    ) -> None:
        self._call_remote = call_remote
        self._clock = clock
        self._call_timeout = call_timeout
        self.state = state
        self._size = size
        self._per_call = per_call
        self._room = _Window(window)
        self._hasher = hashlib.sha256()
        self._offset = 0  # bytes sent (the offset of the next call)
        self._batch: list[bytes] = []  # chunks waiting for the next call
        self._batched = 0  # their size

    def _call(self, command: type[amp.Command], timeout: float, **kwargs: Any) -> Deferred[Any]:
        return _timed_call(self._call_remote, self._clock, command, timeout, **kwargs)

    async def send_pieces(self, pieces: AsyncIterator[bytes]) -> None:
        """Send every piece and wait for the answers. An error (the caller's cancellation too)
        stops the stream instead; the calls still in flight are waited for all the same."""
        try:
            await self._pump(pieces)
        except BaseException as e:
            self.state.stop(e)
            await self._drain()

    async def _pump(self, pieces: AsyncIterator[bytes]) -> None:
        """Take pieces as the window allows, send them in calls of up to ``per_call`` chunks,
        then wait for the last answers (unless the stream was stopped meanwhile)."""
        state, room = self.state, self._room
        async for piece in pieces:
            await room.take()
            if state.error is not None:
                break
            if self._offset + self._batched + len(piece) > self._size:
                raise ValueError(f"source produced more than the declared {self._size} bytes")
            self._batch.append(piece)
            self._batched += len(piece)
            # A full call goes at once; so does a partial one when the window is spent
            # (holding it back would only idle the link until an answer comes).
            if len(self._batch) >= self._per_call or room.free == 0:
                self._send_batch()
        if self._batch and state.error is None:
            self._send_batch()
        await self._drain()

    def _send_batch(self) -> None:
        """Send the chunks waiting as one StreamChunk call, without waiting for its answer."""
        batch = self._batch
        more = dict(zip(MORE_PARTS, batch[1:], strict=False))
        d = self._call(
            StreamChunk,
            self._call_timeout,
            stream_id=self.state.stream_id,
            offset=self._offset,
            data=batch[0],
            **more,
        )
        for part in batch:
            self._hasher.update(part)
        self._offset += self._batched
        self.state.pending.add(d)
        d.addBoth(self._chunk_done, d, len(batch))
        self._batch, self._batched = [], 0

    def _chunk_done(self, result: object, d: Deferred[Any], chunks: int) -> None:
        """A call was answered (or failed): give its chunks' room back; a failure stops the
        stream."""
        self.state.pending.discard(d)
        self._room.give_back(chunks)
        if isinstance(result, Failure):
            error = result.value
            if isinstance(error, CancelledError) and self.state.error is not None:
                return None  # our own cancellation of the window after the first error
            self.state.stop(error)
        return None

    async def _drain(self) -> None:
        """Wait until every call in flight is answered, failed or cancelled."""
        if self.state.pending:
            await DeferredList(list(self.state.pending), consumeErrors=True)

    def raise_if_stopped(self) -> None:
        """Raise what stopped the stream (a source shorter than declared too), after telling the
        receiver unless it is the one that stopped it."""
        state = self.state
        if state.error is None and self._offset != self._size:
            state.error = ValueError(f"source produced {self._offset} bytes, declared {self._size}")
        if state.error is None:
            return
        if not isinstance(state.error, StreamCancelled | StreamInvalid | StreamUnknown):
            self._call(
                StreamCancel,
                self._call_timeout,
                stream_id=state.stream_id,
                reason=clip(f"sender stopped: {state.error!r}"),
                sender=True,
            ).addErrback(_ignore)
        raise state.error

    async def end(self, timeout: float) -> SendResult:
        """Send StreamEnd with the SHA-256 of everything sent; the receiver's answer."""
        digest = self._hasher.hexdigest()
        ended = await self._call(StreamEnd, timeout, stream_id=self.state.stream_id, sha256=digest)
        return SendResult(self.state.stream_id, self._size, digest, ended.get("reply"))


@define
class _Window:
    """The chunks a sender may still put in flight; the sender waits here for room."""

    free: int
    waiter: Deferred[None] | None = None

    async def take(self) -> None:
        """Wait until a chunk may go out, and count it."""
        while self.free == 0:
            waiter: Deferred[None] = Deferred()
            self.waiter = waiter
            try:
                await waiter
            finally:
                if self.waiter is waiter:
                    self.waiter = None  # cancelled: an answer must not fire it again
        self.free -= 1

    def give_back(self, chunks: int) -> None:
        """``chunks`` were answered. The sender resumes only once all of them are counted, so
        it sees the whole room they leave (a semaphore would wake it at the first)."""
        self.free += chunks
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.callback(None)


async def _async_pieces(
    source: bytes | Iterable[bytes] | AsyncIterable[bytes], chunk_size: int
) -> AsyncGenerator[bytes, None]:
    """:func:`_pieces` for a payload, an iterator or an async iterator of pieces."""
    if not isinstance(source, AsyncIterable):
        for piece in _pieces(source, chunk_size):
            yield piece
        return
    async for block in source:
        for start in range(0, len(block), chunk_size):
            yield bytes(block[start : start + chunk_size])


def _pieces(source: bytes | Iterable[bytes], chunk_size: int) -> Iterator[bytes]:
    """Cut ``source`` into pieces of at most ``chunk_size`` bytes (small ones are not merged)."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]
        return
    for block in source:
        for start in range(0, len(block), chunk_size):
            yield bytes(block[start : start + chunk_size])


def _ignore(failure: Failure) -> None:
    return None

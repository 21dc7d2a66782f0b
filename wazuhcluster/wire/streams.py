"""Payloads larger than one AMP value (64 KiB): chunked, flow-controlled, checksummed streams.

A stream goes one way over an existing AMP connection, started by either side::

    sender                                   receiver
    StreamOpen(kind, total_size)      ──►    checks kind, size cap, stream count → stream_id
    StreamChunk(stream_id, offset, data) ──► (≤ 60 KiB each, at most ``window`` unanswered;
                                              one call may carry several, see below)
    ...
    StreamEnd(stream_id, sha256)      ──►    size and SHA-256 checked, consumer finished,
                                             on_complete(kind, stream_id, result) → reply
    StreamCancel(stream_id, reason, sender)  either side, at any time

A receiver that answers StreamOpen with ``parts`` > 1 accepts up to that many chunks in one
StreamChunk call (``data``, ``data1``, ``data2``... each one AMP value of at most 60 KiB, in
order): a sender with a wide window then makes fewer, bigger calls for the same bytes in flight
(the window still counts chunks). A receiver that does not announce it (an older node) gets one
chunk per call, and an older sender never sends more than ``data``.

Small chunks and a bounded window keep every other command (keep-alives, enrollment answers)
flowing between chunks, and bound what either side buffers. The receiver feeds each chunk to a
*consumer* as it arrives (an in-memory buffer for small payloads, a spool file, or an incremental
unpacker that writes files in place), so its memory stays bounded too. The receiver cancels a
stream that stays idle longer than its timeout; the sender times out each call.

Use it from a connection:

- the protocol owns a :class:`StreamEndpoint` as ``self.streams``, mixes
  :class:`StreamResponders` into its class, and calls ``self.streams.connection_lost(reason)``
  from ``connectionLost``;
- to send, ``await self.streams.send(kind, source, size=...)`` (or the lower-level
  :func:`send_stream`).
"""

from __future__ import annotations

import hashlib
import itertools
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import IO, Any, NoReturn, Protocol

from attrs import define, field, frozen
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from wazuhcluster.wire.calls import limit_time
from wazuhcluster.wire.commands import ClusterError, NotAuthenticated

#: Largest chunk sent in one StreamChunk (AMP values are at most 65,535 bytes).
CHUNK_SIZE = 60 * 1024

#: Default number of chunks in flight (unanswered).
DEFAULT_WINDOW = 4

#: Most chunks one StreamChunk call may carry (this receiver announces it in StreamOpen).
MAX_PARTS = 8

#: AMP names of the chunks after the first in one StreamChunk call.
_MORE_PARTS = [f"data{i}" for i in range(1, MAX_PARTS)]

#: Default timeout of each sender call (Wazuh's request timeout).
DEFAULT_CALL_TIMEOUT = 20.0

#: Default time a receiver waits for the next chunk before cancelling (Wazuh: 30 s per frame).
DEFAULT_IDLE_TIMEOUT = 30.0

#: Default number of streams one connection may be receiving at once.
DEFAULT_MAX_STREAMS = 4

#: Longest reason or reply text carried back (characters).
MAX_TEXT = 4096

_log = Logger()


# --- errors and commands ------------------------------------------------------------------------


class StreamError(ClusterError):
    """Base class of stream failures; ``str()`` is the reason."""


class StreamRefused(StreamError):
    """The receiver refused to open a stream (unknown kind, over the size cap, too many)."""


class StreamUnknown(StreamError):
    """No stream with this id is open on the receiver (finished, expired or never opened)."""


class StreamInvalid(StreamError):
    """The stream broke a rule (offset, size, checksum) or its consumer refused the data."""


class StreamCancelled(StreamError):
    """The stream was cancelled by one side; the message gives who and why."""


class StreamTimeout(StreamError):
    """The receiver gave up on a stream that stayed idle too long."""


_ERRORS: dict[type[Exception], bytes] = {
    StreamRefused: b"STREAM_REFUSED",
    StreamUnknown: b"STREAM_UNKNOWN",
    StreamInvalid: b"STREAM_INVALID",
    StreamCancelled: b"STREAM_CANCELLED",
    StreamTimeout: b"STREAM_TIMEOUT",
}
_FATAL: dict[type[Exception], bytes] = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class StreamOpen(amp.Command):
    """Sender → receiver: announce a stream of ``kind`` and ``total_size`` bytes; get its id."""

    arguments = [(b"kind", amp.Unicode()), (b"total_size", amp.Integer())]
    # ``parts``: the most chunks the receiver takes in one StreamChunk (absent from older nodes).
    response = [(b"stream_id", amp.Unicode()), (b"parts", amp.Integer(optional=True))]
    errors = _ERRORS
    fatalErrors = _FATAL


class StreamChunk(amp.Command):
    """Sender → receiver: ``data`` (≤ 60 KiB) at byte ``offset`` of the stream, followed by
    ``data1``, ``data2``... (≤ 60 KiB each) when the receiver announced ``parts`` > 1."""

    arguments = [
        (b"stream_id", amp.Unicode()),
        (b"offset", amp.Integer()),
        (b"data", amp.String()),
        *[(name.encode("ascii"), amp.String(optional=True)) for name in _MORE_PARTS],
    ]
    response = []
    errors = _ERRORS
    fatalErrors = _FATAL


class StreamEnd(amp.Command):
    """Sender → receiver: all bytes sent, with their SHA-256 (hex).

    Answered once the receiver has checked the size and checksum and processed the payload;
    ``reply`` is an optional short text from the receiver's completion callback.
    """

    arguments = [(b"stream_id", amp.Unicode()), (b"sha256", amp.Unicode())]
    response = [(b"reply", amp.Unicode(optional=True))]
    errors = _ERRORS
    fatalErrors = _FATAL


class StreamCancel(amp.Command):
    """Either side: cancel a stream.

    ``sender`` is true when the caller is the stream's sender (the responder drops what it has
    received) and false when the caller is the receiver (the responder stops sending).
    Cancelling an unknown or finished stream is not an error.
    """

    arguments = [
        (b"stream_id", amp.Unicode()),
        (b"reason", amp.Unicode()),
        (b"sender", amp.Boolean()),
    ]
    response = []
    errors = _ERRORS
    fatalErrors = _FATAL


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


# --- receiving ----------------------------------------------------------------------------------


class StreamConsumer(Protocol):
    """Where a receiver puts the bytes of one stream, in order, as they arrive."""

    def feed(self, data: bytes) -> Deferred[None] | None:
        """Take the next piece; raise (any exception, with a reason) to refuse the stream.

        May return a Deferred to hold back the sender: the chunk is answered (so the sender's
        window moves on) only when it fires; a failure refuses the stream.
        """

    def finish(self) -> object:
        """All bytes arrived and were verified; return the result for ``on_complete`` (or a
        Deferred of it)."""

    def abort(self, reason: str) -> None:
        """The stream failed or was cancelled: release everything (idempotent)."""


class BytesConsumer:
    """Collects a small payload in memory (the stream kind's size cap bounds it)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        """Keep the piece."""
        self._parts.append(data)

    def finish(self) -> bytes:
        """The whole payload."""
        data = b"".join(self._parts)
        self._parts = []
        return data

    def abort(self, reason: str) -> None:
        """Drop what was collected."""
        self._parts = []


class SpoolConsumer:
    """Spools a payload to an anonymous temp file; :meth:`finish` returns it, rewound."""

    def __init__(self, directory: str | None = None) -> None:
        self._file: IO[bytes] | None = tempfile.TemporaryFile(dir=directory)

    def feed(self, data: bytes) -> None:
        """Append the piece to the spool file."""
        assert self._file is not None
        self._file.write(data)

    def finish(self) -> IO[bytes]:
        """The spool file at offset 0; the caller closes it (it vanishes when closed)."""
        assert self._file is not None
        spool, self._file = self._file, None
        spool.flush()
        spool.seek(0)
        return spool

    def abort(self, reason: str) -> None:
        """Close (and so delete) the spool file."""
        if self._file is not None:
            self._file.close()
            self._file = None


#: Default bytes a :class:`ThreadedConsumer` holds before it holds back the sender.
DEFAULT_MAX_PENDING = 1 << 20

#: ``run_in_thread(function, *args)``: run a blocking function off the reactor thread.
RunInThread = Callable[..., "Deferred[Any]"]


class ThreadedConsumer:
    """Feeds a blocking consumer (one that writes files, say) from a thread, keeping the reactor
    thread free while the stream arrives.

    Pieces are queued and handed to ``consumer.feed`` in order, by one thread job at a time (a
    job takes every piece queued so far, so a fast sender gets big batches and few thread
    switches). When more than ``max_pending`` bytes wait, :meth:`feed` returns a Deferred that
    fires once the thread has caught up: the receiver answers that chunk only then, so the
    sender's window bounds what is held in memory to ``max_pending`` plus one window. The first
    error of the consumer refuses the stream at the next :meth:`feed` or :meth:`finish`.

    :param run_in_thread: runs a blocking function off the reactor thread (a Deferred of its
        result); jobs are never run two at a time, so the consumer needs no locking.
    """

    def __init__(
        self,
        consumer: StreamConsumer,
        run_in_thread: RunInThread,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._consumer = consumer
        self._run = run_in_thread
        self._max_pending = max_pending
        self._queue: deque[bytes] = deque()
        self._pending = 0
        self._job: Deferred[Any] | None = None
        self._error: Exception | None = None
        self._closed = False
        self._aborted = False
        self._room: list[Deferred[None]] = []
        self._idle: list[Deferred[None]] = []

    @property
    def pending(self) -> int:
        """Bytes queued or being fed by the thread."""
        return self._pending

    def feed(self, data: bytes) -> Deferred[None] | None:
        """Queue ``data`` for the thread; a Deferred when the sender must wait for room.

        :raises Exception: the consumer's error from an earlier piece.
        """
        if self._error is not None:
            raise self._error
        if self._closed:
            raise StreamError("the consumer is closed")
        self._queue.append(data)
        self._pending += len(data)
        self._next_job()
        if self._pending <= self._max_pending or self._error is not None:
            if self._error is not None:
                raise self._error
            return None
        room: Deferred[None] = Deferred()
        self._room.append(room)
        return room

    def _next_job(self) -> None:
        if self._job is not None or self._closed or self._error is not None:
            return
        if not self._queue:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
            return
        batch = list(self._queue)
        self._queue.clear()
        job: Deferred[Any] = self._run(_feed_all, self._consumer, batch)
        self._job = job
        job.addCallbacks(self._job_done, self._job_failed, callbackArgs=(batch,))

    def _job_done(self, _: object, batch: list[bytes]) -> None:
        self._job = None
        self._pending -= sum(len(piece) for piece in batch)
        if self._pending <= self._max_pending:
            room, self._room = self._room, []
            for waiter in room:
                waiter.callback(None)
        self._next_job()

    def _job_failed(self, failure: Failure) -> None:
        self._job = None
        error = failure.value
        self._error = error if isinstance(error, Exception) else StreamError(str(error))
        self._queue.clear()
        self._pending = 0
        waiters, self._room = self._room + self._idle, []
        self._idle = []
        for waiter in waiters:
            waiter.errback(self._error)

    def _drained(self) -> Deferred[None]:
        """Fires once every queued piece has been fed (at once if none is waiting)."""
        if self._error is not None:
            return fail(self._error)
        if self._job is None and not self._queue:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

    async def _finish(self) -> object:
        await self._drained()
        if self._closed:
            raise StreamError("the consumer is closed")
        self._closed = True
        # Tracked as the job in flight, so an abort meanwhile waits for it instead of running
        # the consumer's abort beside its finish in another thread.
        job: Deferred[Any] = self._run(self._consumer.finish)
        self._job = job
        try:
            result = await job
        finally:
            self._job = None
        if self._aborted:
            # The consumer's abort runs next (chained on the job) and releases the result.
            raise StreamCancelled("aborted while finishing")
        return result

    def finish(self) -> Deferred[object]:
        """Wait for the thread to feed everything, then finish the consumer in the thread."""
        return Deferred.fromCoroutine(self._finish())

    def abort(self, reason: str) -> None:
        """Drop what is queued; the consumer's own abort runs in the thread once the job in
        flight (if any) ends."""
        self._closed = True
        self._aborted = True
        self._queue.clear()
        self._pending = 0
        waiters, self._room = self._room + self._idle, []
        self._idle = []
        error = StreamCancelled(reason or "aborted")
        for waiter in waiters:
            waiter.errback(error)

        def release(_: object) -> Deferred[Any]:
            return self._run(self._consumer.abort, reason)

        job = self._job if self._job is not None else succeed(None)
        job.addBoth(release).addErrback(
            lambda failure: _log.failure("Aborting a stream's consumer failed", failure)
        )


def _feed_all(consumer: StreamConsumer, batch: list[bytes]) -> None:
    """Feed each piece to ``consumer``, in order (in a thread)."""
    for piece in batch:
        consumer.feed(piece)


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
    hasher: Any = field(factory=hashlib.sha256)


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
        error = StreamInvalid(_clip(f"stream {stream.stream_id}: {reason}"))
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
            raise StreamInvalid(_clip(f"stream {stream_id}: processing failed: {e}")) from None
        return _clip(reply) if isinstance(reply, str) else None

    def cancel(self, stream_id: str, reason: str, *, by_peer: bool) -> None:
        """Cancel a stream being received (no error if it is unknown or already finished).

        :param by_peer: the sender asked for it; otherwise this side decided, and the sender is
            told through ``notify_peer``.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.ending:
            return
        who = "sender" if by_peer else "receiver"
        self._close(stream, StreamCancelled(_clip(f"cancelled by the {who}: {reason}")))
        if not by_peer and self.notify_peer is not None:
            self.notify_peer(stream_id, reason)

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Abort every stream being received (call from the protocol's connectionLost)."""
        for stream in list(self._streams.values()):
            self._close(stream, StreamCancelled(reason))


# --- sending ------------------------------------------------------------------------------------

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
            state.stop(StreamCancelled(_clip(f"cancelled by the receiver: {reason}")))

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Stop every stream being sent."""
        for state in list(self._streams.values()):
            state.stop(StreamCancelled(reason))


class ThreadedSource:
    """The pieces of a blocking iterator (one that reads files, say), produced in a thread one
    batch ahead of the sender, so the reactor thread never waits on the disk.

    Each thread job takes pieces from ``pieces`` until it holds ``batch_bytes``; while one batch
    is being sent, the next is read. Memory stays around two batches. :meth:`aclose` waits for the
    job in flight and closes the iterator (in the thread), so a generator's ``finally`` runs.

    :param run_in_thread: runs a blocking function off the reactor thread. A lock keeps two jobs
        from running the iterator at once even when a read was cancelled and its thread still
        runs (a generator cannot be closed while it executes).
    """

    def __init__(
        self,
        pieces: Iterator[bytes],
        run_in_thread: RunInThread,
        batch_bytes: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._pieces = pieces
        self._run = run_in_thread
        self._batch_bytes = batch_bytes
        self._lock = threading.Lock()
        self._ready: deque[bytes] = deque()
        self._job: Deferred[list[bytes]] | None = None
        self._exhausted = False

    def __aiter__(self) -> ThreadedSource:
        """Itself."""
        return self

    async def __anext__(self) -> bytes:
        """The next piece, read in the thread if none is ready yet."""
        while not self._ready:
            if self._exhausted:
                raise StopAsyncIteration
            if self._job is None:
                self._start()
            assert self._job is not None
            try:
                batch = await self._job
            finally:
                self._job = None
            if not batch:
                self._exhausted = True
                continue
            self._ready.extend(batch)
            self._start()  # read the next batch while this one is sent
        return self._ready.popleft()

    def _start(self) -> None:
        self._job = self._run(_take, self._pieces, self._batch_bytes, self._lock)

    async def aclose(self) -> None:
        """Stop: wait for the read in flight, then close the iterator in the thread."""
        self._ready.clear()
        self._exhausted = True
        if self._job is not None:
            job, self._job = self._job, None
            try:
                await job
            except Exception:
                pass  # the sender is stopping anyway; the close below still runs
        close = getattr(self._pieces, "close", None)
        if close is not None:
            await self._run(_locked, close, self._lock)


def _take(pieces: Iterator[bytes], batch_bytes: int, lock: threading.Lock) -> list[bytes]:
    """Up to about ``batch_bytes`` of pieces from ``pieces`` (in a thread); empty at the end."""
    batch: list[bytes] = []
    size = 0
    with lock:
        for piece in pieces:
            batch.append(piece)
            size += len(piece)
            if size >= batch_bytes:
                break
    return batch


def _locked(function: Callable[[], object], lock: threading.Lock) -> object:
    """``function()`` holding ``lock`` (in a thread)."""
    with lock:
        return function()


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
        a :class:`ThreadedSource` reads them off the reactor thread). An async iterator with an
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
    if isinstance(source, bytes | bytearray | memoryview):
        size = len(source) if size is None else size
        if size != len(source):
            raise ValueError(f"size {size} does not match the {len(source)}-byte payload")
    elif size is None:
        raise ValueError("size is required when the source is an iterator")
    if window < 1 or not 0 < chunk_size <= CHUNK_SIZE:
        raise ValueError("window must be >= 1 and chunk_size in (0, CHUNK_SIZE]")

    def call(command: type[amp.Command], timeout: float, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[dict[str, Any]] = maybeDeferred(call_remote, command, **kwargs)
        return limit_time(d, timeout, clock, command.__name__)

    opened = await call(StreamOpen, call_timeout, kind=kind, total_size=size)
    state = _Outgoing(opened["stream_id"])
    accepted = opened.get("parts") or 1
    per_call = max(1, min(accepted, MAX_PARTS, window // 4 if parts is None else parts))
    if registry is not None:
        registry._add(state)
    room = _Window(window)
    hasher = hashlib.sha256()
    offset = 0
    pieces = _async_pieces(source, chunk_size)
    batch: list[bytes] = []
    batched = 0

    def send_batch() -> None:
        nonlocal offset, batch, batched
        more = dict(zip(_MORE_PARTS, batch[1:], strict=False))
        d = call(
            StreamChunk,
            call_timeout,
            stream_id=state.stream_id,
            offset=offset,
            data=batch[0],
            **more,
        )
        for part in batch:
            hasher.update(part)
        offset += batched
        state.pending.add(d)
        d.addBoth(_chunk_done, state, d, room, len(batch))
        batch, batched = [], 0

    try:
        try:
            async for piece in pieces:
                await room.take()
                if state.error is not None:
                    break
                if offset + batched + len(piece) > size:
                    raise ValueError(f"source produced more than the declared {size} bytes")
                batch.append(piece)
                batched += len(piece)
                # A full call goes at once; so does a partial one when the window is spent
                # (holding it back would only idle the link until an answer comes).
                if len(batch) >= per_call or room.free == 0:
                    send_batch()
            if batch and state.error is None:
                send_batch()
            if state.pending:
                await DeferredList(list(state.pending), consumeErrors=True)
        except BaseException as e:
            state.stop(e)
            if state.pending:
                await DeferredList(list(state.pending), consumeErrors=True)
        if state.error is None and offset != size:
            state.error = ValueError(f"source produced {offset} bytes, declared {size}")
        if state.error is not None:
            if not isinstance(state.error, StreamCancelled | StreamInvalid | StreamUnknown):
                # Tell the receiver, unless it is the one that stopped the stream.
                call(
                    StreamCancel,
                    call_timeout,
                    stream_id=state.stream_id,
                    reason=_clip(f"sender stopped: {state.error!r}"),
                    sender=True,
                ).addErrback(_ignore)
            raise state.error
        timeout = call_timeout if end_timeout is None else end_timeout
        ended = await call(StreamEnd, timeout, stream_id=state.stream_id, sha256=hasher.hexdigest())
        return SendResult(state.stream_id, size, hasher.hexdigest(), ended.get("reply"))
    finally:
        if registry is not None:
            registry._remove(state)
        await pieces.aclose()
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


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


def _chunk_done(
    result: object, state: _Outgoing, d: Deferred[Any], room: _Window, chunks: int
) -> None:
    state.pending.discard(d)
    room.give_back(chunks)
    if isinstance(result, Failure):
        error = result.value
        if isinstance(error, CancelledError) and state.error is not None:
            return None  # our own cancellation of the window after the first error
        state.stop(error)
    return None


# --- wiring into a connection -------------------------------------------------------------------


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
        parts = [more[name] for name in _MORE_PARTS if more.get(name) is not None]
        if parts:
            data = b"".join([data, *parts])  # type: ignore[list-item]
        wait = self.streams.incoming.chunk(stream_id, offset, data)
        if wait is None:
            return {}
        return wait.addCallback(lambda _: {})

    @StreamEnd.responder
    def stream_end(self, stream_id: str, sha256: str) -> Deferred[dict[str, Any]]:
        """Verify and finish an incoming stream; answer when it has been processed."""
        d = Deferred.fromCoroutine(self.streams.incoming.end(stream_id, sha256))
        return d.addCallback(lambda reply: {} if reply is None else {"reply": reply})

    @StreamCancel.responder
    def stream_cancel(self, stream_id: str, reason: str, sender: bool) -> dict[str, Any]:
        """The peer cancelled a stream, as its sender or as its receiver."""
        if sender:
            self.streams.incoming.cancel(stream_id, reason, by_peer=True)
        else:
            self.streams.outgoing.cancel(stream_id, reason)
        return {}

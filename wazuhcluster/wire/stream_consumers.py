"""Where a receiver puts the bytes of a stream: the consumer interface and the stock consumers.

A consumer takes the pieces of one stream in order as they arrive, then finishes (its result goes
to the receiver's ``on_complete``) or is aborted. Here: :class:`BytesConsumer` (a small payload in
memory), :class:`SpoolConsumer` (an anonymous temp file) and :class:`ThreadedConsumer`, which
feeds a blocking consumer from a thread and holds the sender back while that thread lags.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable
from typing import IO, Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from wazuhcluster.wire.stream_commands import StreamCancelled, StreamError

_log = Logger()


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

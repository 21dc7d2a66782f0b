"""A blocking source of stream pieces (one that reads files, say), read ahead in a thread.

:func:`~wazuhcluster.wire.stream_sender.send_stream` takes the pieces of a payload from an
iterator; when producing them blocks, :class:`ThreadedSource` runs that iterator off the reactor
thread, one batch ahead of the sender.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

from twisted.internet.defer import Deferred

from wazuhcluster.wire.stream_consumers import DEFAULT_MAX_PENDING, RunInThread


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

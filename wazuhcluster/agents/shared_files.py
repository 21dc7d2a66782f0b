"""Shared files (merged.mg) as the agent channel pushes them: read off the reactor thread,
bounded, cut into the chunks agents receive and each chunk deflated there once, and cached by
version so many agents asking for one file cost one read and one compression."""

from __future__ import annotations

import os
from collections import OrderedDict

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wazuhcluster.agents import secure
from wazuhcluster.agents.control import SHARED_CHUNK
from wazuhcluster.util.threads import RunInThread

#: Largest shared file (merged.mg) this node agrees to push.
MAX_SHARED_FILE = 16 * 1024 * 1024
#: Shared file contents kept in memory for the next pushes (all files together).
SHARED_CACHE_BYTES = 32 * 1024 * 1024

FileStamp = tuple[int, int, int]


@frozen
class SharedContent:
    """One version of a shared file as it is pushed: how many bytes were read and, for a
    file within the limit, its :data:`SHARED_CHUNK`-byte chunks, each with its deflated
    blocks (:func:`secure.deflate_body`)."""

    length: int
    chunks: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def size(self) -> int:
        """Bytes held: the chunks, raw and deflated."""
        return sum(len(raw) + len(deflated) for raw, deflated in self.chunks)


def deflate_chunks(data: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """Each :data:`SHARED_CHUNK`-byte chunk of ``data`` with its deflated blocks. Blocks:
    run it in a thread."""
    chunks = (data[start : start + SHARED_CHUNK] for start in range(0, len(data), SHARED_CHUNK))
    return tuple((chunk, secure.deflate_body(chunk)) for chunk in chunks)


def read_shared_file(
    path: str, limit: int, known: FileStamp | None
) -> tuple[FileStamp, bytes | None]:
    """Read at most ``limit + 1`` bytes of ``path`` with the stamp of what was read; the
    content is None when the stamp is ``known`` (the caller has it). Blocks: run it in a
    thread."""
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp == known:
            return stamp, None
        return stamp, handle.read(limit + 1)


def load_shared_file(
    path: str, limit: int, known: FileStamp | None
) -> tuple[FileStamp, SharedContent | None]:
    """:func:`read_shared_file`, with the chunks of a file within ``limit`` deflated. Blocks:
    run it in a thread."""
    stamp, data = read_shared_file(path, limit, known)
    if data is None:
        return stamp, None
    return stamp, SharedContent(len(data), deflate_chunks(data) if len(data) <= limit else ())


class SharedFileReader:
    """Reads shared files (merged.mg, up to 16 MiB) off the reactor thread, once per version.

    Contents are cached by stat up to ``cache_bytes`` in all, least recently used first out;
    agents asking for the same file while it is read wait for that one read.
    """

    def __init__(
        self, run_in_thread: RunInThread, limit: int, cache_bytes: int = SHARED_CACHE_BYTES
    ) -> None:
        self.run_in_thread = run_in_thread
        self.limit = limit
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, tuple[FileStamp, SharedContent]] = OrderedDict()
        self._cached_bytes = 0
        self._reading: dict[str, list[Deferred[SharedContent]]] = {}

    def content(self, path: str) -> Deferred[SharedContent]:
        """The file's content (``limit + 1`` bytes, and no deflated chunks, when it is larger
        than ``limit``); fails with the OSError of an unreadable file."""
        answer: Deferred[SharedContent] = Deferred()
        waiting = self._reading.get(path)
        if waiting is not None:
            waiting.append(answer)
            return answer
        self._reading[path] = [answer]
        cached = self._cache.get(path)
        read = self.run_in_thread(
            load_shared_file, path, self.limit, None if cached is None else cached[0]
        )

        def got(result: tuple[FileStamp, SharedContent | None]) -> None:
            stamp, content = result
            if content is None:
                assert cached is not None
                content = cached[1]
                if path in self._cache:
                    self._cache.move_to_end(path)
            else:
                self._store(path, stamp, content)
            for waiter in self._reading.pop(path):
                waiter.callback(content)

        def failed(failure: Failure) -> None:
            self._forget(path)
            for waiter in self._reading.pop(path, []):
                waiter.errback(failure)

        read.addCallback(got).addErrback(failed)
        return answer

    def _forget(self, path: str) -> None:
        old = self._cache.pop(path, None)
        if old is not None:
            self._cached_bytes -= old[1].size

    def _store(self, path: str, stamp: FileStamp, content: SharedContent) -> None:
        self._forget(path)
        if content.length > self.limit or content.size > self.cache_bytes:
            return
        self._cache[path] = (stamp, content)
        self._cached_bytes += content.size
        while self._cached_bytes > self.cache_bytes:
            _, (_, evicted) = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.size

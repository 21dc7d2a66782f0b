"""Reading etcd's HTTP answers with a size cap: whole bodies, or a stream of JSON lines.

Both readers are cancellable: cancelling the Deferred (a timeout, a stopped watch) closes the
connection instead of leaving it to deliver bytes nobody reads.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

from wazuhcluster.failover.kv import EtcdProtocolError


def _close(transport: ITransport | None) -> None:
    """Drop the connection a body arrives on (TransportProxyProducer.loseConnection)."""
    if transport is not None:
        lose = getattr(transport, "loseConnection", None)
        if lose is not None:
            lose()


class _Reader(Protocol):
    """Common ground: a Deferred that fires at the end and closes the connection on cancel."""

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred(lambda _: _close(self.transport))

    def fail(self, error: Exception) -> None:
        """Stop reading: close the connection and fail ``done`` with ``error``."""
        _close(self.transport)
        if not self.done.called:
            self.done.errback(error)


class BoundedBody(_Reader):
    """Collects a whole body of at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        """Keep the bytes, or give up once there are too many."""
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.fail(EtcdProtocolError(f"answer larger than {self.limit} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The body is complete (or cut)."""
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


class JsonLines(_Reader):
    """Splits a streamed body into lines of at most ``limit`` bytes, handing each to ``on_line``.

    ``done`` fires with ``b""`` when the stream ends cleanly.
    """

    def __init__(self, on_line: Callable[[bytes], None], limit: int) -> None:
        super().__init__()
        self.on_line = on_line
        self.limit = limit
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        """Hand over every complete line; refuse a line longer than the limit."""
        if self.done.called:
            return
        self.buffer += data
        while not self.done.called:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > self.limit:
                    self.fail(EtcdProtocolError(f"stream line longer than {self.limit} bytes"))
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
            if len(line) > self.limit:
                self.fail(EtcdProtocolError(f"stream line longer than {self.limit} bytes"))
                return
            if line.strip():
                try:
                    self.on_line(line)
                except Exception as error:
                    self.fail(error)
                    return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The stream ended."""
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"")
        else:
            self.done.errback(reason)


def read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    """The whole body of ``response``, failing with EtcdProtocolError past ``limit`` bytes."""
    reader = BoundedBody(limit)
    response.deliverBody(reader)
    return reader.done


def read_lines(
    response: IResponse, on_line: Callable[[bytes], None], limit: int
) -> Deferred[bytes]:
    """Stream ``response``'s lines to ``on_line``; the Deferred fires when the stream ends."""
    reader = JsonLines(on_line, limit)
    response.deliverBody(reader)
    return reader.done

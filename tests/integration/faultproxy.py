"""A small TCP proxy for the fault tests: it sits between a worker and the master and can
stall, drop or cut the connections it carries.

It runs in a thread of the test process with plain sockets and a selector (the tests are
synchronous and drive real twistd processes, so no reactor is running here)::

    proxy = FaultProxy(target_port=master_port)
    proxy.start()                 # listens on proxy.port
    proxy.stall()                 # keep sockets open, forward nothing (a black hole)
    proxy.resume()                # forward again (what was held back is sent)
    proxy.drop()                  # reset every open connection now
    proxy.cut_after(200_000)      # forward that many more bytes downstream, then reset
    proxy.stop()
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

from attrs import define, field

#: SO_LINGER with a zero timeout: close() sends a RST, like a crashed peer or a middlebox.
_RESET = struct.pack("ii", 1, 0)


@define(eq=False)
class _Pair:
    """One proxied connection: the client side and the upstream side, with pending bytes."""

    client: socket.socket
    upstream: socket.socket
    to_upstream: bytearray = field(factory=bytearray)
    to_client: bytearray = field(factory=bytearray)


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``, with faults on demand."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._commands: list[Callable[[], None]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self.stalled = False
        #: Bytes still allowed downstream (upstream → client) before every pair is reset.
        self._cut_budget: int | None = None
        #: Connections accepted so far and connections reset by a fault.
        self.accepted = 0
        self.resets = 0
        #: Bytes forwarded in each direction.
        self.up_bytes = 0
        self.down_bytes = 0

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Start forwarding in a daemon thread."""
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread.start()

    def stop(self) -> None:
        """Close everything and wait for the thread."""
        self._stop = True
        self._thread.join(10)
        for pair in list(self._pairs):
            self._close(pair, reset=False)
        self._listener.close()
        self._selector.close()

    def _call(self, command: Callable[[], None]) -> None:
        with self._lock:
            self._commands.append(command)

    def stall(self) -> None:
        """Stop forwarding in both directions; sockets stay open (a black hole)."""
        self.stalled = True

    def resume(self) -> None:
        """Forward again, including what was held back."""
        self.stalled = False

    def drop(self) -> None:
        """Reset every open connection (new ones are still accepted)."""
        self._call(self._reset_all)

    def _reset_all(self) -> None:
        for pair in list(self._pairs):
            self._close(pair, reset=True)

    def cut_after(self, budget: int) -> None:
        """Forward ``budget`` more bytes from the master to the worker, then reset every
        connection: the cut lands inside whatever message is in flight."""
        self._cut_budget = budget

    @property
    def open_connections(self) -> int:
        """How many proxied connections are open."""
        return len(self._pairs)

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        while not self._stop:
            with self._lock:
                commands, self._commands = self._commands, []
            for command in commands:
                command()
            if self.stalled:
                # Readable sockets would wake select at once: do not spin while holding back.
                time.sleep(0.05)
                continue
            for key, mask in self._selector.select(timeout=0.05):
                if key.data is None:
                    self._accept()
                    continue
                pair, source = key.data
                if mask & selectors.EVENT_READ:
                    self._read(pair, source)
                if mask & selectors.EVENT_WRITE and pair in self._pairs:
                    self._flush(pair)
            for pair in list(self._pairs):
                self._flush(pair)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        upstream = socket.socket()
        try:
            upstream.connect(("127.0.0.1", self.target_port))
        except OSError:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            client.close()
            upstream.close()
            return
        client.setblocking(False)
        upstream.setblocking(False)
        pair = _Pair(client, upstream)
        self._pairs.append(pair)
        self.accepted += 1
        self._selector.register(client, selectors.EVENT_READ, (pair, "client"))
        self._selector.register(upstream, selectors.EVENT_READ, (pair, "upstream"))

    def _read(self, pair: _Pair, source: str) -> None:
        if self.stalled:
            return
        sock = pair.client if source == "client" else pair.upstream
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(pair, reset=False)
            return
        if source == "client":
            pair.to_upstream += data
            self.up_bytes += len(data)
            return
        if self._cut_budget is not None:
            if len(data) >= self._cut_budget:
                pair.to_client += data[: self._cut_budget]
                self.down_bytes += self._cut_budget
                self._cut_budget = None
                self._flush(pair)
                for each in list(self._pairs):
                    self._close(each, reset=True)
                return
            self._cut_budget -= len(data)
        pair.to_client += data
        self.down_bytes += len(data)

    def _flush(self, pair: _Pair) -> None:
        if self.stalled:
            return
        for sock, buffer in ((pair.upstream, pair.to_upstream), (pair.client, pair.to_client)):
            while buffer:
                try:
                    sent = sock.send(buffer)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self._close(pair, reset=True)
                    return
                del buffer[:sent]

    def _close(self, pair: _Pair, reset: bool) -> None:
        if pair not in self._pairs:
            return
        self._pairs.remove(pair)
        if reset:
            self.resets += 1
        for sock in (pair.client, pair.upstream):
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            if reset:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                except OSError:
                    pass
            sock.close()

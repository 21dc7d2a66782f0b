"""Tests for chunked AMP streams between two in-memory AMP peers (iosim, task.Clock)."""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Iterator
from typing import IO, Any, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from tests.test_integrity import write_tree
from wazuhcluster.integrity.apply import apply_plan
from wazuhcluster.integrity.compare import compare
from wazuhcluster.integrity.pack import iter_pack, packed_size
from wazuhcluster.integrity.scan import master_digest, scan_tree, table_digest
from wazuhcluster.integrity.table_codec import decode_table, encode_table
from wazuhcluster.integrity.unpack import Received, Unpacker
from wazuhcluster.wire.stream_commands import (
    CHUNK_SIZE,
    MAX_PARTS,
    StreamCancelled,
    StreamChunk,
    StreamError,
    StreamInvalid,
    StreamOpen,
    StreamRefused,
    StreamTimeout,
    StreamUnknown,
)
from wazuhcluster.wire.stream_consumers import BytesConsumer, SpoolConsumer, ThreadedConsumer
from wazuhcluster.wire.stream_endpoint import StreamEndpoint, StreamResponders
from wazuhcluster.wire.stream_receiver import StreamKind
from wazuhcluster.wire.stream_sender import SendResult
from wazuhcluster.wire.stream_sources import ThreadedSource


class Ping(amp.Command):
    """A small command that must get through while a stream is in flight."""

    arguments = [(b"n", amp.Integer())]
    response = [(b"n", amp.Integer())]


class RecordingConsumer(BytesConsumer):
    """A BytesConsumer that remembers whether and why it was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted: str | None = None
        self.fed = 0

    def feed(self, data: bytes) -> None:
        """Count and keep the piece."""
        self.fed += len(data)
        super().feed(data)

    def abort(self, reason: str) -> None:
        """Remember the reason."""
        self.aborted = reason
        super().abort(reason)


class Peer(StreamResponders, amp.AMP):
    """One end of the link: accepts 'blob' (≤ 4 MiB) and 'spool' streams, answers Ping."""

    def __init__(self, clock: Clock, window: int = 4) -> None:
        super().__init__()
        self.completed: list[tuple[str, str, object]] = []
        self.consumers: list[RecordingConsumer] = []
        self.reply: object = None
        self.streams = StreamEndpoint(
            self.callRemote,
            clock,
            {
                "blob": StreamKind(4 << 20, self._new_consumer),
                "spool": StreamKind(4 << 20, lambda size: SpoolConsumer()),
            },
            self._complete,
            max_streams=2,
            idle_timeout=30.0,
            window=window,
            call_timeout=20.0,
        )

    def _new_consumer(self, size: int) -> RecordingConsumer:
        consumer = RecordingConsumer()
        self.consumers.append(consumer)
        return consumer

    def _complete(self, kind: str, stream_id: str, result: object) -> object:
        self.completed.append((kind, stream_id, result))
        return self.reply

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - Twisted's name
        """Abort every stream, then let AMP fail the outstanding calls."""
        self.streams.connection_lost()
        super().connectionLost(reason)

    @Ping.responder
    def ping(self, n: int) -> dict[str, int]:
        """Echo."""
        return {"n": n}


def _parts_of(kwargs: dict[str, Any]) -> list[bytes]:
    """The chunks one StreamChunk call carries, in order (``data``, then ``data1``...)."""
    names = ["data", *(f"data{i}" for i in range(1, MAX_PARTS))]
    return [kwargs[name] for name in names if kwargs.get(name) is not None]


class OldPeer(Peer):
    """A receiver from before multi-chunk calls: its StreamOpen answer announces no ``parts``."""

    @StreamOpen.responder
    def stream_open(self, kind: str, total_size: int) -> dict[str, object]:
        """Accept the stream without announcing ``parts``."""
        return {"stream_id": self.streams.incoming.open(kind, total_size)}


def detach(d: Deferred[Any]) -> Deferred[Any]:
    """A copy of ``d``'s result, with an errback attached at once.

    AMP appends its "Dropping connection!" handler to a call's Deferred when an error answer
    arrives, so a test must take the result over before the answer is pumped.
    """
    copy: Deferred[Any] = Deferred()
    d.addBoth(copy.callback)
    return copy


class StreamTestsBase(SynchronousTestCase):
    """Two connected peers, a shared clock, and a record of every StreamChunk call (``chunks``:
    offset and size of each chunk; ``calls``: chunks per call)."""

    window = 4
    receiver: type[Peer] = Peer

    def setUp(self) -> None:
        """Connect a client and a server peer in memory."""
        self.clock = Clock()
        self.client, self.server, self.pump = connectedServerAndClient(
            lambda: self.receiver(self.clock, self.window), lambda: Peer(self.clock, self.window)
        )
        self.chunks: list[tuple[int, int]] = []
        self.calls: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.tamper_at: int | None = None

    def call_remote(self, command: type[amp.Command], **kwargs: Any) -> Deferred[Any]:
        """The client's callRemote, recording chunk offsets and calls in flight."""
        if command is StreamChunk:
            offset = kwargs["offset"]
            for part in _parts_of(kwargs):
                self.chunks.append((offset, len(part)))
                offset += len(part)
            self.calls.append(len(_parts_of(kwargs)))
            if self.tamper_at is not None and kwargs["offset"] == self.tamper_at:
                # Flip the first byte's bits: a fixed value would match random data 1 in 256.
                kwargs["data"] = bytes([kwargs["data"][0] ^ 0xFF]) + kwargs["data"][1:]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

            def done(result: object) -> object:
                self.in_flight -= 1
                return result

            return self.client.callRemote(command, **kwargs).addBoth(done)
        return self.client.callRemote(command, **kwargs)

    def send(self, kind: str, source: Any, **kwargs: Any) -> Deferred[SendResult]:
        """Start a stream from the client with the recording callRemote."""
        from wazuhcluster.wire.stream_sender import send_stream

        kwargs.setdefault("window", self.window)
        return Deferred.fromCoroutine(
            send_stream(
                self.call_remote,
                kind,
                source,
                clock=self.clock,
                registry=self.client.streams.outgoing,
                **kwargs,
            )
        )


class TransferTests(StreamTestsBase):
    """Streams that complete."""

    def test_bytes_payload(self) -> None:
        """A payload is cut into ≤60 KiB chunks at explicit offsets and arrives whole."""
        payload = os.urandom(200_000)
        self.server.reply = "got it"
        d = self.send("blob", payload)
        self.pump.flush()
        result = self.successResultOf(d)
        self.assertEqual(result.size, len(payload))
        self.assertEqual(result.sha256, hashlib.sha256(payload).hexdigest())
        self.assertEqual(result.reply, "got it")
        self.assertEqual([c[1] for c in self.chunks], [CHUNK_SIZE] * 3 + [200_000 - 3 * CHUNK_SIZE])
        self.assertEqual([c[0] for c in self.chunks], [i * CHUNK_SIZE for i in range(4)])
        [(kind, stream_id, data)] = self.server.completed
        self.assertEqual((kind, data), ("blob", payload))
        self.assertEqual(self.server.streams.incoming.active, 0)
        self.assertEqual(self.client.streams.outgoing.active, 0)

    def test_empty_payload(self) -> None:
        """An empty payload is a valid stream with no chunk."""
        d = self.send("blob", b"")
        self.pump.flush()
        self.assertIsNone(self.successResultOf(d).reply)
        self.assertEqual(self.server.completed[0][2], b"")
        self.assertEqual(self.chunks, [])

    def test_spool_and_iterator(self) -> None:
        """An iterator source is re-chunked and spooled to a temp file on the receiver."""
        blocks = [os.urandom(n) for n in (10, 100_000, 5, 70_000)]
        d = self.send("spool", iter(blocks), size=sum(map(len, blocks)))
        self.pump.flush()
        self.successResultOf(d)
        spool = cast(IO[bytes], self.server.completed[0][2])
        with spool:
            self.assertEqual(spool.read(), b"".join(blocks))
        self.assertTrue(all(n <= CHUNK_SIZE for _, n in self.chunks))

    def test_both_directions(self) -> None:
        """The server can stream to the client on the same connection at the same time."""
        up = self.send("blob", b"u" * 150_000)
        down = self.server.streams.send("blob", b"d" * 150_000)
        self.pump.flush()
        self.successResultOf(up)
        self.successResultOf(down)
        self.assertEqual(self.server.completed[0][2], b"u" * 150_000)
        self.assertEqual(self.client.completed[0][2], b"d" * 150_000)


class FlowTests(StreamTestsBase):
    """Flow control: the window bounds calls in flight and source reads."""

    window = 3

    def test_window_bound(self) -> None:
        """Never more than ``window`` StreamChunk calls are unanswered, and the window is used."""
        d = self.send("blob", os.urandom(20 * CHUNK_SIZE))
        self.assertEqual(self.max_in_flight, 0)  # StreamOpen not answered yet
        self.pump.flush()
        self.successResultOf(d)
        self.assertEqual(len(self.chunks), 20)
        self.assertEqual(self.max_in_flight, 3)

    def test_endpoint_window_per_stream(self) -> None:
        """StreamEndpoint.send takes a window for one stream instead of the endpoint's."""
        sent: list[int] = []
        real = self.client.callRemote

        def counting(command: type[amp.Command], **kwargs: Any) -> Deferred[Any]:
            if command is StreamChunk:
                sent.extend(kwargs["offset"] for _ in _parts_of(kwargs))
            return real(command, **kwargs)

        self.client.streams._call_remote = counting
        d = self.client.streams.send("blob", os.urandom(20 * CHUNK_SIZE), window=8)
        self.pump.pump()  # StreamOpen goes out
        self.pump.pump()  # its answer comes back; the first window of chunks goes out
        self.assertEqual(len(sent), 8)
        self.pump.flush()
        self.successResultOf(d)
        self.assertEqual(len(sent), 20)

    def test_source_read_lazily(self) -> None:
        """A generator source is only pulled as the window frees up."""
        pulled = []

        def source() -> Iterator[bytes]:
            for i in range(30):
                pulled.append(i)
                yield bytes(CHUNK_SIZE)

        d = self.send("blob", source(), size=30 * CHUNK_SIZE)
        self.pump.pump()  # StreamOpen goes out
        self.pump.pump()  # its answer comes back; the first window of chunks goes out
        self.assertLessEqual(len(pulled), 3 + 1)
        self.pump.flush()
        self.successResultOf(d)
        self.assertEqual(len(pulled), 30)

    def test_small_command_during_stream(self) -> None:
        """A Ping sent after a large stream started is answered before the stream finishes."""
        stream = self.send("blob", os.urandom(4 << 20))
        self.pump.pump()
        self.pump.pump()
        ping = self.client.callRemote(Ping, n=7)
        answered_at = None
        for step in range(1000):
            self.pump.pump()
            if answered_at is None and ping.called:
                answered_at = step
                self.assertFalse(stream.called, "the stream finished before the ping")
                self.assertGreater(self.server.consumers[0].fed, 0)
                self.assertLess(self.server.consumers[0].fed, 4 << 20)
            if stream.called:
                break
        self.assertEqual(self.successResultOf(ping), {"n": 7})
        self.assertIsNotNone(answered_at)
        self.successResultOf(stream)


class MultiChunkTests(StreamTestsBase):
    """A wide window sends several chunks per StreamChunk call, as the receiver allows."""

    window = 16

    def test_four_chunks_per_call(self) -> None:
        """With a window of 16 each call carries 4 chunks in order, at most 16 chunks (4 calls)
        are unanswered, and the payload arrives whole, fed as one piece per call."""
        payload = os.urandom(37 * CHUNK_SIZE + 123)
        d = self.send("blob", payload)
        self.pump.flush()
        result = self.successResultOf(d)
        self.assertEqual(result.sha256, hashlib.sha256(payload).hexdigest())
        self.assertEqual(self.server.completed[0][2], payload)
        self.assertEqual(self.calls, [4] * 9 + [2])
        self.assertEqual([c[0] for c in self.chunks], [i * CHUNK_SIZE for i in range(38)])
        self.assertTrue(all(n <= CHUNK_SIZE for _, n in self.chunks))
        self.assertEqual(self.max_in_flight, 4)
        self.assertEqual(self.server.consumers[0].fed, len(payload))

    def test_parts_capped_by_caller(self) -> None:
        """An explicit ``parts`` sets the chunks per call (1: one chunk per call, as before)."""
        d = self.send("blob", os.urandom(10 * CHUNK_SIZE), parts=1)
        self.pump.flush()
        self.successResultOf(d)
        self.assertEqual(self.calls, [1] * 10)
        self.assertEqual(self.max_in_flight, 10)

    def test_partial_call_when_window_spent(self) -> None:
        """When the window is spent before a call is full, the chunks gathered go at once
        instead of waiting for an answer (window 6, 4 per call: calls of 4 and 2)."""
        d = self.send("blob", os.urandom(6 * CHUNK_SIZE), window=6, parts=4)
        self.pump.pump()  # StreamOpen goes out
        self.pump.pump()  # its answer comes back; the window of chunks goes out
        self.assertEqual(self.calls, [4, 2])
        self.pump.flush()
        self.successResultOf(d)

    def test_tampered_part_is_refused(self) -> None:
        """A changed byte in a multi-chunk call fails the stream's SHA-256 check."""
        self.tamper_at = 4 * CHUNK_SIZE
        d = detach(self.send("blob", os.urandom(12 * CHUNK_SIZE)))
        self.pump.flush()
        self.failureResultOf(d, StreamInvalid)
        self.assertEqual(self.server.completed, [])

    def test_cancel_while_waiting_for_room(self) -> None:
        """Cancelling a send that waits for the window stops it cleanly: the answers that come
        back afterwards free the window without error, and the receiver drops the stream."""
        d = self.send("blob", os.urandom(40 * CHUNK_SIZE))
        self.pump.pump()  # StreamOpen goes out
        self.pump.pump()  # its answer comes back; the window of chunks goes out
        self.assertEqual(sum(self.calls), 16)
        d.cancel()
        self.pump.flush()
        self.failureResultOf(d, CancelledError)
        gc.collect()  # an error left in a Deferred would be logged now
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.server.streams.incoming.active, 0)
        self.assertEqual(self.client.streams.outgoing.active, 0)


class OldReceiverTests(MultiChunkTests):
    """A receiver that announces no ``parts`` (an older node) gets one chunk per call."""

    receiver = OldPeer

    def test_four_chunks_per_call(self) -> None:
        """With a window of 16 every call still carries one chunk, 16 in flight, and the
        payload arrives whole."""
        payload = os.urandom(37 * CHUNK_SIZE + 123)
        d = self.send("blob", payload)
        self.pump.flush()
        self.successResultOf(d)
        self.assertEqual(self.server.completed[0][2], payload)
        self.assertEqual(self.calls, [1] * 38)
        self.assertEqual(self.max_in_flight, 16)

    def test_partial_call_when_window_spent(self) -> None:
        """Asking for 4 chunks per call still sends one per call to an older receiver."""
        d = self.send("blob", os.urandom(6 * CHUNK_SIZE), window=6, parts=4)
        self.pump.flush()
        self.successResultOf(d)
        self.assertEqual(self.calls, [1] * 6)


class RefusalTests(StreamTestsBase):
    """Caps, bad data and checksum failures."""

    def test_caps(self) -> None:
        """Unknown kinds, sizes over the cap and too many concurrent streams are refused."""
        for kind, size in (("nope", 1), ("blob", (4 << 20) + 1), ("blob", -1)):
            d = detach(self.client.callRemote(StreamOpen, kind=kind, total_size=size))
            self.pump.flush()
            self.failureResultOf(d, StreamRefused)
        opened = [
            detach(self.client.callRemote(StreamOpen, kind="blob", total_size=10)) for _ in range(3)
        ]
        self.pump.flush()
        self.successResultOf(opened[0])
        self.successResultOf(opened[1])
        failure = self.failureResultOf(opened[2], StreamRefused)
        self.assertIn("already receiving 2", str(failure.value))

    def test_sender_refused(self) -> None:
        """send_stream raises StreamRefused when the receiver refuses the size."""
        d = self.send("blob", iter([b"x"]), size=5 << 20)
        self.pump.flush()
        self.failureResultOf(d, StreamRefused)

    def test_checksum_mismatch(self) -> None:
        """A corrupted chunk makes StreamEnd fail; the receiver aborts and keeps nothing."""
        self.tamper_at = CHUNK_SIZE
        d = self.send("blob", os.urandom(3 * CHUNK_SIZE))
        self.pump.flush()
        failure = self.failureResultOf(d, StreamInvalid)
        self.assertIn("SHA-256 mismatch", str(failure.value))
        self.assertEqual(self.server.completed, [])
        self.assertIn("SHA-256", self.server.consumers[0].aborted or "")
        self.assertEqual(self.server.streams.incoming.active, 0)

    def test_short_source(self) -> None:
        """A source shorter than declared fails the send and the receiver drops the stream."""
        d = self.send("blob", iter([b"abc"]), size=10)
        self.pump.flush()
        failure = self.failureResultOf(d, ValueError)
        self.assertIn("declared 10", str(failure.value))
        self.assertEqual(self.server.streams.incoming.active, 0)
        self.assertIn("sender", self.server.consumers[0].aborted or "")

    def test_long_source(self) -> None:
        """A source longer than declared is stopped before the extra bytes are sent."""
        d = self.send("blob", iter([b"a" * 10, b"b" * 10]), size=15)
        self.pump.flush()
        self.failureResultOf(d, ValueError)
        self.assertEqual(self.server.consumers[0].fed, 10)
        self.assertIsNotNone(self.server.consumers[0].aborted)

    def test_offsets(self) -> None:
        """A resent chunk is ignored; a gap or data past the declared size closes the stream."""
        incoming = self.server.streams.incoming
        sid = incoming.open("blob", 10)
        incoming.chunk(sid, 0, b"abcd")
        incoming.chunk(sid, 0, b"abcd")
        incoming.chunk(sid, 2, b"cd")
        self.assertEqual(self.server.consumers[0].fed, 4)
        self.assertRaises(StreamInvalid, incoming.chunk, sid, 6, b"x")
        self.assertRaises(StreamInvalid, incoming.chunk, sid, 4, b"x")  # closed now
        sid2 = incoming.open("blob", 3)
        self.assertRaises(StreamInvalid, incoming.chunk, sid2, 0, b"abcd")
        self.assertRaises(StreamUnknown, incoming.chunk, "blob-999", 0, b"x")

    def test_consumer_refuses(self) -> None:
        """An exception from the consumer becomes StreamInvalid with its reason."""
        home = self.mktemp()
        os.makedirs(home)
        self.server.streams.incoming._kinds["sync"] = StreamKind(1 << 20, lambda n: Unpacker(home))
        d = self.send("sync", b'{"v": 1, "type": "nonsense"}\n')
        self.pump.flush()
        failure = self.failureResultOf(d, StreamInvalid)
        self.assertIn("sync header", str(failure.value))


class CancelTests(StreamTestsBase):
    """Timeouts and cancellation from either side."""

    def test_sender_call_timeout(self) -> None:
        """A chunk call unanswered for call_timeout fails the send with TimeoutError."""
        d = self.send("blob", os.urandom(5 * CHUNK_SIZE), call_timeout=5.0)
        self.pump.pump()
        self.pump.pump()  # open answered, first chunks written but never delivered
        self.clock.advance(5.1)
        self.failureResultOf(d, DeferTimeoutError)

    def test_receiver_idle_timeout(self) -> None:
        """A stream idle for longer than the receiver's timeout is dropped and the sender told."""
        d = self.client.callRemote(StreamOpen, kind="blob", total_size=100)
        self.pump.flush()
        sid = self.successResultOf(d)["stream_id"]
        self.clock.advance(29)
        late = self.client.callRemote(StreamChunk, stream_id=sid, offset=0, data=b"x")
        self.pump.flush()
        self.successResultOf(late)
        self.clock.advance(30.5)
        self.pump.flush()
        self.assertEqual(self.server.streams.incoming.active, 0)
        self.assertIn("timed out", self.server.consumers[0].aborted or "")
        later = detach(self.client.callRemote(StreamChunk, stream_id=sid, offset=1, data=b"y"))
        self.pump.flush()
        self.failureResultOf(later, StreamTimeout)

    def test_cancel_by_sender(self) -> None:
        """Cancelling the send stops it and the receiver drops what it had."""
        d = self.send("blob", os.urandom(40 * CHUNK_SIZE))
        for _ in range(4):
            self.pump.pump()
        self.assertEqual(self.server.streams.incoming.active, 1)
        d.cancel()
        self.pump.flush()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.server.streams.incoming.active, 0)
        self.assertIn("cancelled by the sender", self.server.consumers[0].aborted or "")
        self.assertLess(len(self.chunks), 40)
        self.assertEqual(self.client.streams.outgoing.active, 0)

    def test_cancel_by_receiver(self) -> None:
        """The receiver cancelling stops the sender with StreamCancelled and the reason."""
        d = self.send("blob", os.urandom(40 * CHUNK_SIZE))
        for _ in range(4):
            self.pump.pump()
        [sid] = list(self.server.streams.incoming._streams)
        self.server.streams.incoming.cancel(sid, "disk full", by_peer=False)
        self.pump.flush()
        failure = self.failureResultOf(d, StreamCancelled)
        self.assertIn("disk full", str(failure.value))
        self.assertLess(len(self.chunks), 40)
        self.assertEqual(self.client.streams.outgoing.active, 0)

    def test_connection_lost(self) -> None:
        """Losing the connection mid-stream aborts the receiver's consumer and fails the send."""
        d = self.send("blob", os.urandom(40 * CHUNK_SIZE))
        for _ in range(4):
            self.pump.pump()
        assert self.client.transport is not None
        self.client.transport.loseConnection()
        self.pump.flush()
        self.failureResultOf(d)
        self.assertEqual(self.server.streams.incoming.active, 0)
        self.assertIsNotNone(self.server.consumers[0].aborted)


class IntegritySyncTests(StreamTestsBase):
    """The integrity sync stream carried by an AMP stream into an Unpacker, then applied."""

    def test_sync_over_stream(self) -> None:
        """Files packed on one side land, verified and applied, on the other."""
        master, worker = self.mktemp(), self.mktemp()
        write_tree(
            master,
            {"etc/shared/default/agent.conf": os.urandom(150_000), "etc/client.keys": b"k"},
        )
        write_tree(worker, {"etc/shared/old": b"x"})
        plan = compare(scan_tree(master), scan_tree(worker))
        applied: list[object] = []

        def on_complete(kind: str, stream_id: str, result: object) -> str:
            assert isinstance(result, Received)
            outcome = apply_plan(worker, result.plan, result.staged)
            applied.append(outcome)
            return outcome.describe()

        self.server.streams.incoming._kinds["sync"] = StreamKind(
            1 << 30, lambda size: Unpacker(worker)
        )
        self.server.streams.incoming._on_complete = on_complete
        d = self.send("sync", iter_pack(master, plan), size=packed_size(plan))
        self.pump.flush()
        result = self.successResultOf(d)
        self.assertEqual(result.reply, "created 2, updated 0, deleted 1, failed 0")
        self.assertEqual(master_digest(scan_tree(master)), table_digest(scan_tree(worker)))

    def test_table_over_stream(self) -> None:
        """A worker's table larger than one AMP value travels as a stream and decodes equal."""
        worker = self.mktemp()
        write_tree(worker, {f"etc/shared/g{i % 7}/f{i:04}": b"%d" % i for i in range(800)})
        table = scan_tree(worker)
        encoded = encode_table(table)
        self.assertGreater(len(encoded), 65535)
        d = self.send("blob", encoded)
        self.pump.flush()
        self.successResultOf(d)
        decoded = decode_table(cast(bytes, self.server.completed[0][2]))
        self.assertEqual(table_digest(decoded), table_digest(table))


class FakeThreads:
    """A stand-in for the thread pool: jobs wait in a queue until the test runs them."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        """Queue ``function(*args)``; its Deferred fires when the test runs it."""
        d: Deferred[Any] = Deferred()
        self.jobs.append((function, args, d))
        return d

    def run_next(self) -> None:
        """Run the oldest queued job, as the pool's thread would, and fire its Deferred."""
        function, args, d = self.jobs.pop(0)
        try:
            result = function(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)

    def run_all(self) -> None:
        """Run jobs (including the ones they queue) until none is left."""
        while self.jobs:
            self.run_next()


class Refusing(RecordingConsumer):
    """Refuses any piece that contains ``bad``."""

    def feed(self, data: bytes) -> None:
        """Refuse, or count and keep."""
        if b"bad" in data:
            raise ValueError("bad piece")
        super().feed(data)


class ThreadedConsumerTests(SynchronousTestCase):
    """ThreadedConsumer: pieces fed in order by one job at a time, a bounded backlog."""

    def setUp(self) -> None:
        """An inner consumer behind a ThreadedConsumer with a 10-byte backlog."""
        self.threads = FakeThreads()
        self.inner = Refusing()
        self.consumer = ThreadedConsumer(self.inner, self.threads, max_pending=10)

    def test_in_order_one_job_at_a_time(self) -> None:
        """Pieces queued while a job runs go together in the next job, in order."""
        for piece in (b"ab", b"cd", b"ef"):
            self.assertIsNone(self.consumer.feed(piece))
        self.assertEqual(len(self.threads.jobs), 1)
        self.threads.run_next()  # feeds b"ab", then queues one job for the other two
        self.assertEqual(len(self.threads.jobs), 1)
        self.assertEqual(self.inner.fed, 2)
        self.threads.run_next()
        self.assertEqual(self.threads.jobs, [])
        self.assertEqual(self.consumer.pending, 0)
        d = self.consumer.finish()
        self.threads.run_all()
        self.assertEqual(self.successResultOf(d), b"abcdef")

    def test_holds_back_the_sender(self) -> None:
        """Past ``max_pending`` queued bytes, feed returns a Deferred that fires once the
        thread has caught up."""
        self.assertIsNone(self.consumer.feed(b"123456"))
        wait = self.consumer.feed(b"789012")
        assert wait is not None
        self.assertNoResult(wait)
        self.threads.run_next()  # the first piece: 6 bytes still pending, under the cap
        self.successResultOf(wait)

    def test_error_refuses_later_pieces(self) -> None:
        """A piece the inner consumer refuses fails the waiting feed, later feeds and finish."""
        self.consumer.feed(b"bad")
        wait = self.consumer.feed(b"0123456789")
        assert wait is not None
        self.threads.run_next()
        self.assertIsInstance(self.failureResultOf(wait).value, ValueError)
        self.assertRaises(ValueError, self.consumer.feed, b"more")
        self.assertIsInstance(self.failureResultOf(self.consumer.finish()).value, ValueError)

    def test_abort_after_the_job_in_flight(self) -> None:
        """Abort drops what is queued and runs the inner abort only after the running job."""
        self.consumer.feed(b"12")
        self.consumer.feed(b"34")
        self.consumer.abort("gone")
        self.assertIsNone(self.inner.aborted)
        self.threads.run_all()
        self.assertEqual(self.inner.aborted, "gone")
        self.assertEqual(self.inner.fed, 2)  # the queued b"34" was dropped
        self.assertRaises(StreamError, self.consumer.feed, b"x")


class OrderedConsumer(RecordingConsumer):
    """Records the order of finish and abort."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def finish(self) -> bytes:
        """Record, then finish."""
        self.events.append("finish")
        return super().finish()

    def abort(self, reason: str) -> None:
        """Record, then abort."""
        self.events.append("abort")
        super().abort(reason)


class ThreadedFinishTests(SynchronousTestCase):
    """An abort that comes while the thread is finishing the consumer."""

    def test_abort_during_finish(self) -> None:
        """The consumer's abort waits for its finish, and finish then fails, so its result
        (temp files, say) is never used after being released."""
        threads = FakeThreads()
        inner = OrderedConsumer()
        consumer = ThreadedConsumer(inner, threads)
        consumer.feed(b"data")
        threads.run_next()
        d = consumer.finish()
        self.assertEqual(len(threads.jobs), 1)  # the inner finish, in the thread
        consumer.abort("connection lost")
        self.assertEqual(len(threads.jobs), 1)  # the abort waits for it
        threads.run_all()
        self.assertEqual(inner.events, ["finish", "abort"])
        self.assertIsInstance(self.failureResultOf(d).value, StreamCancelled)


class ThreadedSourceTests(SynchronousTestCase):
    """ThreadedSource: an iterator read in thread jobs, one batch ahead of the sender."""

    def test_one_batch_ahead(self) -> None:
        """Batches of about ``batch_bytes`` are read in order; the next one while the current
        one is consumed, never more."""
        threads = FakeThreads()
        read: list[int] = []

        def pieces() -> Iterator[bytes]:
            for i in range(7):
                read.append(i)
                yield bytes([i]) * 4

        source = ThreadedSource(pieces(), threads, batch_bytes=8)
        got: list[bytes] = []

        async def drain() -> None:
            async for piece in source:
                got.append(piece)

        d = Deferred.fromCoroutine(drain())
        threads.run_next()
        self.assertEqual(read, [0, 1])
        self.assertEqual(len(threads.jobs), 1)  # the next batch is already asked for
        self.assertEqual(len(got), 2)
        threads.run_all()
        self.successResultOf(d)
        self.assertEqual(got, [bytes([i]) * 4 for i in range(7)])

    def test_aclose_closes_the_iterator(self) -> None:
        """Closing early waits for the read in flight and closes the generator in a job."""
        threads = FakeThreads()
        closed: list[bool] = []

        def pieces() -> Iterator[bytes]:
            try:
                while True:
                    yield b"x" * 4
            finally:
                closed.append(True)

        source = ThreadedSource(pieces(), threads, batch_bytes=4)
        first = Deferred.fromCoroutine(source.__anext__())
        threads.run_next()
        self.assertEqual(self.successResultOf(first), b"x" * 4)
        done = Deferred.fromCoroutine(source.aclose())
        threads.run_all()
        self.successResultOf(done)
        self.assertEqual(closed, [True])


class ThreadedStreamTests(StreamTestsBase):
    """A sync stream read by a ThreadedSource and unpacked by a ThreadedConsumer."""

    def sync_kind(self, worker: str, threads: Any, max_pending: int) -> list[Any]:
        """Register a 'sync' kind on the server; return the list of its consumers."""
        made: list[Any] = []

        def new(size: int) -> ThreadedConsumer:
            made.append(ThreadedConsumer(Unpacker(worker), threads, max_pending=max_pending))
            return made[-1]

        self.server.streams.incoming._kinds["sync"] = StreamKind(1 << 30, new)
        return made

    def test_sync_with_threads(self) -> None:
        """Files read and unpacked in thread jobs land whole; the receiver holds the sender
        back so its backlog stays under ``max_pending`` plus one window."""
        master, worker = self.mktemp(), self.mktemp()
        write_tree(master, {f"etc/shared/g{i % 3}/f{i}": os.urandom(20_000) for i in range(40)})
        os.makedirs(worker)
        plan = compare(scan_tree(master), scan_tree(worker))
        threads = FakeThreads()
        consumers = self.sync_kind(worker, threads, max_pending=100_000)
        received: list[object] = []
        self.server.streams.incoming._on_complete = lambda k, s, r: received.append(r)
        source = ThreadedSource(iter_pack(master, plan), threads, batch_bytes=200_000)
        d = self.send("sync", source, size=packed_size(plan))
        backlog = 0
        while not d.called:
            self.pump.flush()
            if consumers:
                backlog = max(backlog, consumers[0].pending)
            if threads.jobs:
                threads.run_next()
        self.successResultOf(d)
        self.assertLessEqual(backlog, 100_000 + self.window * CHUNK_SIZE)
        self.assertGreater(backlog, 0)
        [result] = received
        assert isinstance(result, Received)
        apply_plan(worker, result.plan, result.staged)
        self.assertEqual(master_digest(scan_tree(master)), table_digest(scan_tree(worker)))

    def test_refused_in_thread(self) -> None:
        """A stream the unpacker refuses in its thread fails the sender with the reason and
        leaves no temp file."""
        worker = self.mktemp()
        os.makedirs(worker)
        threads = FakeThreads()
        self.sync_kind(worker, threads, max_pending=1)
        d = detach(self.send("sync", b'{"v":1,"type":"nonsense"}\n' + bytes(200_000)))
        while not d.called:
            self.pump.flush()
            if threads.jobs:
                threads.run_next()
        threads.run_all()
        self.pump.flush()
        error = self.failureResultOf(d).value
        self.assertIsInstance(error, StreamInvalid)
        self.assertIn("sync header", str(error))
        self.assertEqual(
            [n for _, _, names in os.walk(worker) for n in names if n.startswith(".wcsync")], []
        )

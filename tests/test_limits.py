"""Tests of wazuhcluster.util.limits: per-address connection caps and idle timeouts."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from wazuhcluster.util.limits import (
    REPORT_EVERY,
    LimitedFactory,
    ListenerLimits,
    admit,
    peer_uid,
)
from wazuhcluster.util.logs import ClusterLog


class Recorder(Protocol):
    """Remembers what reached it."""

    def __init__(self) -> None:
        self.made = False
        self.data = b""
        self.lost = False

    def connectionMade(self) -> None:
        """Note the connection."""
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        """Keep the bytes."""
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Note the loss."""
        self.lost = True


class LimitedFactoryTests(SynchronousTestCase):
    """LimitedFactory counts per address, refuses the excess and closes idle connections."""

    def setUp(self) -> None:
        """A factory with a limit of two per address and a 10 s idle timeout."""
        self.clock = Clock()
        self.inner: Factory[Recorder] = Factory.forProtocol(Recorder)
        self.factory = LimitedFactory(
            self.inner, self.clock, ClusterLog("Test", "Limits"), max_per_address=2, idle_timeout=10
        )

    def connect(self, host: str) -> tuple[object, StringTransport]:
        """Open one connection from ``host``."""
        address = IPv4Address("TCP", host, 40000)
        proto = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        proto.makeConnection(transport)
        return proto, transport

    def test_excess_connection_refused_before_protocol(self) -> None:
        """The third connection from one address is aborted and its protocol never starts;
        another address is still served."""
        first, _ = self.connect("10.0.0.1")
        self.connect("10.0.0.1")
        third, transport = self.connect("10.0.0.1")
        self.assertTrue(first.wrappedProtocol.made)  # type: ignore[attr-defined]
        self.assertFalse(third.wrappedProtocol.made)  # type: ignore[attr-defined]
        self.assertTrue(transport.disconnecting or getattr(transport, "aborted", False))
        self.assertEqual(self.factory.refused, 1)
        other, _ = self.connect("10.0.0.2")
        self.assertTrue(other.wrappedProtocol.made)  # type: ignore[attr-defined]
        self.assertEqual(self.factory.counts, {"10.0.0.1": 2, "10.0.0.2": 1})

    def test_closing_frees_the_slot(self) -> None:
        """A closed connection gives its slot back; a refused one never held a slot."""
        first, _ = self.connect("10.0.0.1")
        self.connect("10.0.0.1")
        refused, _ = self.connect("10.0.0.1")
        refused.connectionLost(Failure(Exception("gone")))  # type: ignore[attr-defined]
        self.assertEqual(self.factory.counts["10.0.0.1"], 2)
        inner = first.wrappedProtocol  # type: ignore[attr-defined]
        first.connectionLost(Failure(Exception("gone")))  # type: ignore[attr-defined]
        self.assertTrue(inner.lost)
        self.assertEqual(self.factory.counts["10.0.0.1"], 1)
        again, _ = self.connect("10.0.0.1")
        self.assertTrue(again.wrappedProtocol.made)  # type: ignore[attr-defined]

    def test_idle_connection_closed(self) -> None:
        """A connection silent for the idle timeout is aborted; data keeps it open."""
        quiet, quiet_transport = self.connect("10.0.0.1")
        busy, busy_transport = self.connect("10.0.0.2")
        for _ in range(3):
            self.clock.advance(6)
            busy.dataReceived(b"x")  # type: ignore[attr-defined]
        self.assertTrue(getattr(quiet_transport, "aborted", quiet_transport.disconnecting))
        self.assertFalse(busy_transport.disconnecting)
        self.assertEqual(busy.wrappedProtocol.data, b"xxx")  # type: ignore[attr-defined]
        self.assertEqual(self.factory.idled, 1)

    def test_no_limit_when_zero(self) -> None:
        """``max_per_address=0`` accepts any number of connections."""
        factory = LimitedFactory(self.inner, self.clock, ClusterLog("Test", "Limits"))
        for _ in range(50):
            proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
            proto.makeConnection(StringTransport())
        self.assertEqual(factory.refused, 0)

    def test_bad_arguments(self) -> None:
        """Negative limits and non-positive timeouts are refused with a reason."""
        log = ClusterLog("Test", "Limits")
        self.assertRaises(
            ValueError, LimitedFactory, self.inner, self.clock, log, max_per_address=-1
        )
        self.assertRaises(ValueError, LimitedFactory, self.inner, self.clock, log, idle_timeout=0)

    def test_wrapped_attributes_reachable(self) -> None:
        """Attributes of the wrapped factory are reachable through the wrapper."""
        self.inner.marker = 7  # type: ignore[attr-defined]
        self.assertEqual(self.factory.marker, 7)


class Closer(Recorder):
    """Closes its connection on request and admits itself when told."""

    def admit_me(self) -> None:
        """Show the credential (as 1514's first valid message does)."""
        admit(self.transport)

    def close(self) -> None:
        """Close as a protocol does after its last reply."""
        assert self.transport is not None
        self.transport.loseConnection()


class Transport(StringTransport):
    """A StringTransport that remembers an abort (a real one would then lose the connection)."""

    aborted = False

    def abortConnection(self) -> None:
        """Note the abort."""
        self.aborted = True
        super().abortConnection()


class RecordingLog(ClusterLog):
    """Keeps the warnings."""

    def __init__(self) -> None:
        super().__init__("Test", "Limits")
        self.warnings: list[str] = []

    def warn(self, message: str, **fields: object) -> None:
        """Keep the formatted warning."""
        self.warnings.append(message.format(**fields))


class StagedLimitsTests(SynchronousTestCase):
    """Pending and admitted stages: deadlines, separate caps, oldest-first eviction, close."""

    def build(self, admit_on: str = "handshake", **limits: object) -> LimitedFactory:
        """A factory over :class:`Closer` with ``limits``."""
        self.clock = Clock()
        self.log = RecordingLog()
        inner: Factory[Closer] = Factory.forProtocol(Closer)
        settings = ListenerLimits(**limits)  # type: ignore[arg-type]
        return LimitedFactory(
            inner,
            self.clock,
            self.log,
            limits=settings,
            admit_on=admit_on,  # type: ignore[arg-type]
        )

    def connect(self, factory: LimitedFactory, host: str) -> tuple[Any, Transport]:
        """Open one connection from ``host``."""
        address = IPv4Address("TCP", host, 40000)
        proto = factory.buildProtocol(address)
        transport = Transport(peerAddress=address)
        proto.makeConnection(transport)
        return proto, transport

    def test_bare_connection_dropped_at_deadline(self) -> None:
        """A connection that never completes its handshake is aborted at the deadline (the
        1515 lock: bare connects were never dropped); one that completes it is kept."""
        factory = self.build(handshake_timeout=10)
        bare, bare_transport = self.connect(factory, "10.0.0.1")
        good, good_transport = self.connect(factory, "10.0.0.1")
        self.assertTrue(bare.wrappedProtocol.made)  # the protocol may start its own timers
        self.clock.advance(3)
        good.handshakeCompleted()
        self.clock.advance(7)
        self.assertTrue(bare_transport.aborted)
        self.assertFalse(good_transport.aborted)
        self.assertEqual((factory.late, factory.counts, factory.pending), (1, {"10.0.0.1": 1}, {}))
        self.assertEqual(
            self.log.warnings, ["Closing connection from 10.0.0.1: no TLS handshake within 10 s."]
        )
        inner = bare.wrappedProtocol
        bare.connectionLost(Failure(Exception("aborted")))
        self.assertTrue(inner.lost)

    def test_pending_does_not_count_against_admitted_cap(self) -> None:
        """Bare connects from a worker's own address do not use its admitted slots (1516
        counted them before TLS); the pending pool pushes out its oldest instead of refusing
        the newcomer, so the honest client that connects last still completes."""
        factory = self.build(
            handshake_timeout=10, max_per_address=2, max_pending_per_address=5, max_pending=100
        )
        flood = [self.connect(factory, "10.0.0.1") for _ in range(20)]
        honest, honest_transport = self.connect(factory, "10.0.0.1")
        honest.handshakeCompleted()
        self.assertFalse(honest_transport.aborted)
        self.assertEqual(factory.counts, {"10.0.0.1": 1})
        self.assertEqual(sum(t.aborted for _, t in flood), 16)
        self.assertEqual([t.aborted for _, t in flood[-4:]], [False] * 4)
        self.assertEqual(factory.evicted, 16)
        self.assertEqual(len(factory.pending_by_address["10.0.0.1"]), 4)

    def test_global_pending_cap_evicts_oldest(self) -> None:
        """Past the global pending cap the oldest pending connection (any address) goes."""
        factory = self.build(handshake_timeout=10, max_pending=3)
        first = self.connect(factory, "10.0.0.1")
        rest = [self.connect(factory, f"10.0.0.{n}") for n in range(2, 5)]
        self.assertTrue(first[1].aborted)
        self.assertFalse(any(t.aborted for _, t in rest))
        self.assertEqual(len(factory.pending), 3)

    def test_admitted_caps_refuse_after_handshake(self) -> None:
        """Over the admitted per-address or global cap, the admitted connection is refused
        (and its protocol hears of the loss)."""
        factory = self.build(max_per_address=1, max_connections=2)
        a, _ = self.connect(factory, "10.0.0.1")
        b, b_transport = self.connect(factory, "10.0.0.1")
        c, _ = self.connect(factory, "10.0.0.2")
        d, d_transport = self.connect(factory, "10.0.0.3")
        for proto in (a, b, c, d):
            proto.handshakeCompleted()
        self.assertTrue(b_transport.aborted and d_transport.aborted)
        self.assertEqual((factory.refused, factory.admitted), (2, 2))
        self.assertIn(
            "Too many connections from 10.0.0.3 (3 in all), rejecting.", self.log.warnings
        )
        inner = b.wrappedProtocol
        b.connectionLost(Failure(Exception("aborted")))
        self.assertTrue(inner.lost)
        self.assertEqual(factory.counts, {"10.0.0.1": 1, "10.0.0.2": 1})

    def test_protocol_admission(self) -> None:
        """With ``admit_on="protocol"`` the handshake admits nothing; the protocol's
        :func:`admit` does, and stops the deadline; :func:`admit` without limits is a no-op."""
        factory = self.build("protocol", handshake_timeout=10, idle_timeout=100)
        proto, transport = self.connect(factory, "10.0.0.1")
        proto.handshakeCompleted()
        self.assertEqual(factory.admitted, 0)
        proto.dataReceived(b"hello")
        proto.wrappedProtocol.admit_me()
        self.clock.advance(50)
        self.assertFalse(transport.aborted)
        self.assertEqual(factory.admitted, 1)
        self.clock.advance(60)
        self.assertTrue(transport.aborted)
        admit(StringTransport())

    def test_data_admission(self) -> None:
        """With ``admit_on="data"`` the first bytes admit the connection."""
        factory = self.build("data", handshake_timeout=10, max_connections=1)
        first, _ = self.connect(factory, "10.0.0.1")
        second, second_transport = self.connect(factory, "10.0.0.1")
        first.dataReceived(b"x")
        second.dataReceived(b"y")
        self.assertTrue(second_transport.aborted)
        self.assertEqual(first.wrappedProtocol.data, b"x")
        self.assertEqual(second.wrappedProtocol.data, b"")

    def test_close_that_never_completes_is_aborted(self) -> None:
        """A connection the protocol closed but the peer keeps open (no TLS close alert, no
        reading) is aborted ``close_timeout`` later."""
        factory = self.build("connect", close_timeout=5)
        proto, transport = self.connect(factory, "10.0.0.1")
        proto.wrappedProtocol.close()
        self.assertTrue(transport.disconnecting)
        self.clock.advance(4.9)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.1)
        self.assertTrue(transport.aborted)
        self.assertEqual(factory.overdue, 1)
        proto.connectionLost(Failure(Exception("aborted")))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_warnings_limited_per_address(self) -> None:
        """A flood gives one warning per address and reason every REPORT_EVERY seconds, the
        next one saying how many were left out."""
        factory = self.build(handshake_timeout=100, max_pending_per_address=1)
        for _ in range(50):
            self.connect(factory, "10.0.0.1")
        self.assertEqual(len(self.log.warnings), 1)
        self.clock.advance(REPORT_EVERY)
        self.connect(factory, "10.0.0.1")
        self.assertEqual(len(self.log.warnings), 2)
        self.assertIn("(48 more like it since the last report)", self.log.warnings[1])
        self.assertIn("before TLS handshake (2): closing the oldest", self.log.warnings[1])

    def test_limits_validated(self) -> None:
        """Negative caps, non-positive timeouts and mixing both styles are refused."""
        self.assertRaises(ValueError, ListenerLimits, max_pending=-1)
        self.assertRaises(ValueError, ListenerLimits, max_pending_per_address=-1)
        self.assertRaises(ValueError, ListenerLimits, handshake_timeout=0)
        self.assertRaises(ValueError, ListenerLimits, close_timeout=0)
        inner: Factory[Closer] = Factory.forProtocol(Closer)
        self.assertRaises(
            ValueError,
            LimitedFactory,
            inner,
            Clock(),
            RecordingLog(),
            limits=ListenerLimits(),
            max_per_address=3,
        )


class PeerUidTests(SynchronousTestCase):
    """peer_uid: the key a UNIX-socket listener counts its clients under."""

    def test_real_unix_socket(self) -> None:
        """Over a real UNIX socket pair the key is this process's uid (SO_PEERCRED)."""
        if not hasattr(socket, "SO_PEERCRED"):
            raise SkipTest("SO_PEERCRED is Linux's")
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        self.assertEqual(peer_uid(SimpleNamespace(getHandle=lambda: left)), f"uid {os.getuid()}")

    def test_unknown_without_credentials(self) -> None:
        """A transport without a socket, or a socket that is not UNIX, gives ``unknown``."""
        self.assertEqual(peer_uid(StringTransport()), "unknown")
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(tcp.close)
        self.assertEqual(peer_uid(SimpleNamespace(getHandle=lambda: tcp)), "unknown")

    def test_caps_counted_per_key(self) -> None:
        """With ``address`` a factory counts under the key it gives (not the peer's IP, the
        same for every client of a UNIX socket): uid 1000 over its cap is refused while
        uid 0 is still admitted, and the warning names the uid."""
        log = RecordingLog()
        inner: Factory[Closer] = Factory.forProtocol(Closer)
        factory = LimitedFactory(
            inner,
            Clock(),
            log,
            limits=ListenerLimits(max_per_address=2, max_connections=10),
            admit_on="data",
            address=lambda transport: transport.uid,
        )

        def connect(uid: int) -> Transport:
            transport = Transport()
            transport.uid = f"uid {uid}"  # type: ignore[attr-defined]
            proto = factory.buildProtocol(None)
            proto.makeConnection(transport)
            proto.dataReceived(b"command")
            return transport

        users = [connect(1000) for _ in range(3)]
        root = connect(0)
        self.assertEqual([t.aborted for t in users], [False, False, True])
        self.assertFalse(root.aborted)
        self.assertEqual(factory.counts, {"uid 1000": 2, "uid 0": 1})
        self.assertEqual(log.warnings, ["Too many connections from uid 1000 (3), rejecting."])


class CallTimeoutTests(SynchronousTestCase):
    """Request timeouts read clearly in logs and stay TimeoutErrors for callers."""

    def test_call_timeout_names_command_and_limit(self) -> None:
        """A call without an answer fails after the timeout with a CallTimeout that names the
        command and the limit, and is still a twisted TimeoutError."""
        from twisted.internet.defer import Deferred, TimeoutError
        from twisted.protocols import amp

        from wazuhcluster.wire.calls import CallTimeout, call_with_timeout
        from wazuhcluster.wire.commands import KeepAlive

        silent = SimpleNamespace(callRemote=lambda command, **kwargs: Deferred())

        clock = Clock()
        result = call_with_timeout(cast(amp.AMP, silent), KeepAlive, 5, clock, payload="x")
        clock.advance(5)
        failure = self.failureResultOf(result, CallTimeout)
        self.assertIsInstance(failure.value, TimeoutError)
        self.assertEqual(str(failure.value), "no answer to KeepAlive within 5 s")

    def test_other_errors_untouched(self) -> None:
        """An answer or another failure passes through unchanged."""
        from twisted.internet.defer import fail, succeed

        from wazuhcluster.wire.calls import limit_time

        clock = Clock()
        self.assertEqual(self.successResultOf(limit_time(succeed(1), 5, clock, "X")), 1)
        self.failureResultOf(limit_time(fail(ValueError("bad")), 5, clock, "X"), ValueError)


class ListenerServiceTests(SynchronousTestCase):
    """A listener that stops closes what it accepted (a node handing its role over must not
    keep serving through old connections)."""

    def test_stop_closes_accepted_connections(self) -> None:
        """Two live connections: both are closing once the service has stopped, and the
        listening port is gone."""
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.testing import MemoryReactorClock

        from wazuhcluster.util.limits import ListenerService, close_connections

        reactor = MemoryReactorClock()
        factory = LimitedFactory(
            Factory.forProtocol(Recorder), reactor, ClusterLog("Test", "Limits")
        )
        service = ListenerService(TCP4ServerEndpoint(reactor, 1516), factory)
        service.startService()
        transports = []
        for port in (40000, 40001):
            address = IPv4Address("TCP", "10.0.0.1", port)
            transport = StringTransport(peerAddress=address)
            factory.buildProtocol(address).makeConnection(transport)  # type: ignore[union-attr]
            transports.append(transport)
        self.assertFalse(any(t.disconnecting for t in transports))
        self.successResultOf(service.stopService())
        self.assertTrue(all(t.disconnecting for t in transports))
        self.assertEqual(close_connections(object()), 0)

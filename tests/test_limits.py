"""Tests of wazuhcluster.util.limits: per-address connection caps and idle timeouts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util.limits import LimitedFactory
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

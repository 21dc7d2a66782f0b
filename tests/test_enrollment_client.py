"""Tests for wazuhcluster.agents.enrollment_client and enrollment_tls (no real sockets)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents.enrollment import (
    EnrollmentError,
    EnrollmentRequest,
    EnrollmentServerFactory,
)
from wazuhcluster.agents.enrollment_client import EnrollmentClientProtocol, request_enrollment
from wazuhcluster.agents.enrollment_tls import (
    EnrollmentTlsError,
    client_tls_options,
    enrollment_endpoint,
    ensure_manager_certificate,
    server_tls_options,
)
from wazuhcluster.config.auth_settings import default_auth
from wazuhcluster.registry.keys import KeyEntry

KEY_LINE = "OSSEC K:'001 agent-1 any " + "c" * 64 + "'"


class ClientProtocolTests(SynchronousTestCase):
    """EnrollmentClientProtocol on a StringTransport."""

    def connect(
        self, line: bytes = b"OSSEC A:'agent-1'"
    ) -> tuple[EnrollmentClientProtocol, StringTransport]:
        """A connected client protocol."""
        protocol = EnrollmentClientProtocol(line)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_sends_line_and_parses_key(self) -> None:
        """The request is sent with a newline; the reply is parsed when the server closes."""
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), b"OSSEC A:'agent-1'\n")
        protocol.dataReceived(KEY_LINE[:10].encode())
        protocol.dataReceived(KEY_LINE[10:].encode())
        self.assertNoResult(protocol.result)
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(
            self.successResultOf(protocol.result), KeyEntry("001", "agent-1", "any", "c" * 64)
        )

    def test_error_reply(self) -> None:
        """An ERROR reply fails with the manager's reason."""
        protocol, _ = self.connect()
        protocol.dataReceived(b"ERROR: Invalid password. Unable to add agent")
        protocol.connectionLost(None)  # type: ignore[arg-type]
        failure = self.failureResultOf(protocol.result, EnrollmentError)
        self.assertEqual(failure.value.reason, "Invalid password")

    def test_no_reply(self) -> None:
        """A close without an answer is an error."""
        protocol, _ = self.connect()
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.failureResultOf(protocol.result, EnrollmentError)

    def test_oversized_reply(self) -> None:
        """A reply above the bound fails and aborts the connection."""
        protocol = EnrollmentClientProtocol(b"x", max_reply=10)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"y" * 11)
        self.failureResultOf(protocol.result, EnrollmentError)
        protocol.connectionLost(None)  # type: ignore[arg-type]


class RequestEnrollmentTests(SynchronousTestCase):
    """request_enrollment with a MemoryReactorClock."""

    def test_connects_with_tls_and_returns_key(self) -> None:
        """It dials host:port with TLS, sends the request, returns the parsed key."""
        reactor = MemoryReactorClock()
        result = request_enrollment(
            reactor, "manager.example", 1515, "agent-1", password="pw", groups=["web"], ip="src"
        )
        host, port, factory, context, _timeout, _bind = reactor.sslClients[0]
        self.assertEqual((host, port), ("manager.example", 1515))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"OSSEC PASS: pw OSSEC A:'agent-1' G:'web' IP:'src'\n")
        protocol.dataReceived(KEY_LINE.encode())
        protocol.connectionLost(None)
        self.assertEqual(self.successResultOf(result).id, "001")

    def test_invalid_request_fails_without_connecting(self) -> None:
        """A name the manager would refuse fails locally."""
        reactor = MemoryReactorClock()
        failure = self.failureResultOf(
            request_enrollment(reactor, "m", 1515, "bad name"), EnrollmentError
        )
        self.assertEqual(failure.value.reason, "Invalid agent name: bad name")
        self.assertEqual(reactor.sslClients, [])

    def test_timeout(self) -> None:
        """A manager that never answers fails the result with TimeoutError."""
        reactor = MemoryReactorClock()
        result = request_enrollment(reactor, "m", 1515, "agent-1", timeout=5.0)
        factory = reactor.sslClients[0][2]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        reactor.advance(5.0)
        self.failureResultOf(result, defer.TimeoutError)
        self.assertTrue(transport.disconnecting)


class ClientServerTests(SynchronousTestCase):
    """Client and server protocols talking through iosim (in memory)."""

    def test_round_trip(self) -> None:
        """The client's request reaches register and the key comes back to the client."""
        seen: list[EnrollmentRequest] = []

        def register(request: EnrollmentRequest, source: str) -> defer.Deferred[str]:
            seen.append(request)
            return succeed(KEY_LINE)

        server = EnrollmentServerFactory(register, Clock()).buildProtocol(None)
        client = EnrollmentClientProtocol(b"OSSEC A:'agent-1' V:'v4.14.7'")
        pump = iosim.connect(
            server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client)
        )
        pump.flush()
        self.assertEqual(seen, [EnrollmentRequest("agent-1", version="v4.14.7")])
        self.assertEqual(self.successResultOf(client.result).name, "agent-1")


class TlsMaterialTests(SynchronousTestCase):
    """The manager certificate and TLS options."""

    def test_certificate_created_once_and_loadable(self) -> None:
        """A self-signed cert/key is created if missing, then reused; options build."""
        home = Path(self.mktemp())
        settings = default_auth(home)
        self.assertRaises(EnrollmentTlsError, server_tls_options, settings)
        self.assertTrue(
            ensure_manager_certificate(settings.ssl_manager_cert, settings.ssl_manager_key)
        )
        self.assertFalse(
            ensure_manager_certificate(settings.ssl_manager_cert, settings.ssl_manager_key)
        )
        self.assertEqual(settings.ssl_manager_key.stat().st_mode & 0o777, 0o600)
        options = server_tls_options(settings)
        self.assertIsNotNone(options.getContext())
        endpoint = enrollment_endpoint(MemoryReactorClock(), settings)
        self.assertEqual(endpoint._port, 1515)  # type: ignore[attr-defined]
        self.assertIsNotNone(client_tls_options("manager", settings.ssl_manager_cert))

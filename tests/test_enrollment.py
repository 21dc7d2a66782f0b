"""Tests for wazuhcluster.agents.enrollment: the request parser, replies and the 1515 protocol."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents.enrollment import (
    MAX_REQUEST,
    EnrollmentError,
    EnrollmentRequest,
    EnrollmentServerFactory,
    EnrollmentServerProtocol,
    error_reply,
    key_reply,
    parse_reply,
    parse_request,
    peer_host,
    version_is_newer,
)
from wazuhcluster.registry.keys import KeyEntry

HASH = "504f2f52d0e9d5fd9a12875aa86fa588dab2a43e"


class ParseRequestTests(SynchronousTestCase):
    """parse_request on well-formed lines."""

    def test_minimal(self) -> None:
        """Only the name: every optional field is absent."""
        self.assertEqual(parse_request(b"OSSEC A:'agent-1'\n"), EnrollmentRequest("agent-1"))

    def test_every_field(self) -> None:
        """Password, version, groups, IP and key hash are all read."""
        line = f"OSSEC PASS: s3cr3t OSSEC A:'web.1' V:'v4.14.7' G:'g1,g2' IP:'10.0.0.5' K:'{HASH}'"
        self.assertEqual(
            parse_request(line.encode() + b"\r\n"),
            EnrollmentRequest("web.1", "s3cr3t", "v4.14.7", ("g1", "g2"), "10.0.0.5", HASH),
        )

    def test_password_with_spaces_and_empty(self) -> None:
        """A password may contain spaces; an empty one parses (and is refused later)."""
        self.assertEqual(parse_request("OSSEC PASS: a b c OSSEC A:'n1'").password, "a b c")
        self.assertEqual(parse_request("OSSEC PASS:  OSSEC A:'n1'").password, "")

    def test_ip_src_ipv6_and_cidr(self) -> None:
        """IP:'src', IPv6 addresses and CIDR networks are accepted."""
        self.assertEqual(parse_request("OSSEC A:'n1' IP:'src'").ip, "src")
        self.assertEqual(parse_request("OSSEC A:'n1' IP:'fd00::5'").ip, "fd00::5")
        self.assertEqual(parse_request("OSSEC A:'n1' IP:'192.168.0.10/24'").ip, "192.168.0.10/24")

    def test_groups_deduplicated(self) -> None:
        """Repeated groups are dropped, first occurrence kept."""
        self.assertEqual(parse_request("OSSEC A:'n1' G:'b,a,b'").groups, ("b", "a"))

    def test_key_hash_lowercased(self) -> None:
        """An uppercase key hash is accepted and normalized."""
        self.assertEqual(parse_request(f"OSSEC A:'n1' K:'{HASH.upper()}'").key_hash, HASH)

    def test_to_line_round_trip(self) -> None:
        """to_line produces the wire form, which parses back to the same request."""
        request = EnrollmentRequest("n1", "pw", "v4.1.0", ("g",), "src", HASH)
        self.assertEqual(
            request.to_line(), f"OSSEC PASS: pw OSSEC A:'n1' V:'v4.1.0' G:'g' IP:'src' K:'{HASH}'"
        )
        self.assertEqual(parse_request(request.to_line()), request)


class MalformedRequestTests(SynchronousTestCase):
    """Every malformed form gets its Wazuh reason."""

    def assertRefused(self, line: str | bytes, reason: str) -> None:
        """parse_request(line) raises EnrollmentError with exactly ``reason``."""
        error = self.assertRaises(EnrollmentError, parse_request, line)
        self.assertEqual(error.reason, reason, line)

    def test_invalid_request_forms(self) -> None:
        """Missing or broken A: field, trailing text, bad encoding, control characters."""
        for line in (
            "",
            "hello",
            "OSSEC A:name",
            "OSSEC A:'unterminated",
            "OSSEC PASS: pw",
            "OSSEC PASS: pwOSSEC A:'n1'",
            "OSSEC A:'n1' extra",
            "OSSEC A:'n1' G:'g' V:'v4.0.0'",
            "OSSEC A:'n1'  V:'v4'",
            b"OSSEC A:'n\xff1'",
            "OSSEC A:'n1'\x00",
            "ossec a:'n1'",
        ):
            self.assertRefused(line, "Invalid request for new agent")

    def test_invalid_names(self) -> None:
        """Names breaking OS_IsValidName are refused, echoing the name."""
        for name in ("x", ".dot", "a b", "a/b", "n" * 129, "", "ñame"):
            self.assertRefused(f"OSSEC A:'{name}'", f"Invalid agent name: {name}")

    def test_unterminated_fields(self) -> None:
        """Each optional field without its closing quote (or too long) is unterminated."""
        self.assertRefused("OSSEC A:'n1' V:'v4.1", "Unterminated version field")
        self.assertRefused("OSSEC A:'n1' V:'" + "9" * 2049 + "'", "Unterminated version field")
        self.assertRefused("OSSEC A:'n1' G:'g1", "Unterminated group field")
        self.assertRefused("OSSEC A:'n1' IP:'10.0.0.1", "Unterminated IP field")
        self.assertRefused("OSSEC A:'n1' IP:'10.0.0.1 '", "Unterminated IP field")
        self.assertRefused("OSSEC A:'n1' IP:'" + "1" * 47 + "'", "Unterminated IP field")
        self.assertRefused(f"OSSEC A:'n1' K:'{HASH}", "Unterminated key field")
        self.assertRefused(f"OSSEC A:'n1' K:'{HASH}0'", "Unterminated key field")

    def test_bad_groups(self) -> None:
        """Empty lists, empty members, bad characters and too many groups are refused."""
        self.assertRefused("OSSEC A:'n1' G:''", "Invalid group name: Empty Group")
        self.assertRefused("OSSEC A:'n1' G:'a,,b'", "Invalid group name: a,,b")
        self.assertRefused("OSSEC A:'n1' G:'ok,b@d'", "Invalid group name: b@d")
        self.assertRefused("OSSEC A:'n1' G:'..'", "Invalid group name: ..")
        many = ",".join(f"g{n}" for n in range(129))
        self.assertRefused(f"OSSEC A:'n1' G:'{many}'", "Maximum multigroup reached: Limit is 128")

    def test_bad_ip_and_key(self) -> None:
        """An IP that is not an address, and a key hash that is not 40 hex digits."""
        self.assertRefused("OSSEC A:'n1' IP:'999.0.0.1'", "Invalid IP: 999.0.0.1")
        self.assertRefused("OSSEC A:'n1' IP:'host'", "Invalid IP: host")
        self.assertRefused("OSSEC A:'n1' K:'" + "z" * 40 + "'", "Invalid key field")
        self.assertRefused("OSSEC A:'n1' K:'abc'", "Invalid key field")

    def test_oversized(self) -> None:
        """A line above authd's 68 KiB buffer is refused as too large."""
        self.assertRefused(b"OSSEC A:'n1'" + b" " * MAX_REQUEST, "Request too large")
        self.assertRefused("x" * (MAX_REQUEST + 1), "Request too large")

    @settings(max_examples=300)
    @given(st.binary(max_size=300))
    def test_fuzz_bytes_only_enrollment_error(self, data: bytes) -> None:
        """Arbitrary bytes either parse or raise EnrollmentError, nothing else."""
        try:
            parse_request(data)
        except EnrollmentError:
            pass

    @settings(max_examples=300)
    @given(
        st.lists(
            st.sampled_from(
                [
                    "OSSEC PASS: ",
                    "OSSEC A:'",
                    " V:'",
                    " G:'",
                    " IP:'",
                    " K:'",
                    "'",
                    ",",
                    "src",
                    "n1",
                    "v9.9.9",
                    "10.0.0.1",
                    HASH,
                    " ",
                    "\n",
                    "é",
                    "..",
                    "a" * 40,
                ]
            ),
            max_size=12,
        )
    )
    def test_fuzz_tokens_only_enrollment_error(self, tokens: list[str]) -> None:
        """Near-valid token soups either parse (and round-trip) or raise EnrollmentError."""
        line = "".join(tokens)
        try:
            request = parse_request(line)
        except EnrollmentError:
            return
        self.assertEqual(parse_request(request.to_line()), request)


class ReplyTests(SynchronousTestCase):
    """Reply formatting and parsing."""

    def test_key_reply(self) -> None:
        """A success reply is OSSEC K:'ID NAME IP KEY' and parses back."""
        entry = KeyEntry("001", "agent-1", "any", "f" * 64)
        reply = key_reply(entry)
        self.assertEqual(reply, f"OSSEC K:'001 agent-1 any {'f' * 64}'")
        self.assertEqual(parse_reply(reply + "\n"), entry)

    def test_error_reply(self) -> None:
        """A refusal carries Wazuh's suffix; parse_reply raises with the bare reason."""
        reply = error_reply("Duplicate agent name: a1")
        self.assertEqual(reply, "ERROR: Duplicate agent name: a1. Unable to add agent")
        self.assertEqual(
            self.assertRaises(EnrollmentError, parse_reply, reply).reason,
            "Duplicate agent name: a1",
        )

    def test_garbage_reply(self) -> None:
        """Anything else is an unexpected or malformed reply."""
        for junk in (
            "",
            "OK",
            "OSSEC K:'001 a1 any'",
            "OSSEC K:'x a1 any k'",
            "OSSEC K:'001 a/1 any k'",
        ):
            self.assertRaises(EnrollmentError, parse_reply, junk)

    def test_version_compare_ignores_patch(self) -> None:
        """Only major.minor count; unreadable versions count as 0.0."""
        self.assertFalse(version_is_newer("v4.14.9", "4.14.7"))
        self.assertFalse(version_is_newer("v4.13.0", "4.14.7"))
        self.assertTrue(version_is_newer("v4.15.0", "4.14.7"))
        self.assertTrue(version_is_newer("v5.0.0", "4.14.7"))
        self.assertFalse(version_is_newer("junk", "4.14.7"))


class Harness:
    """A protocol on a StringTransport with a controllable register callable."""

    def __init__(self, register=None, **options) -> None:  # type: ignore[no-untyped-def]
        self.clock = Clock()
        self.calls: list[tuple[EnrollmentRequest, str]] = []
        self.pending: list[Deferred[str]] = []
        self.undelivered: list[tuple[EnrollmentRequest, str]] = []
        self.factory = EnrollmentServerFactory(
            register or self.register,
            self.clock,
            undelivered=lambda request, reply: self.undelivered.append((request, reply)),
            **options,
        )
        self.transport = StringTransport(peerAddress=address.IPv4Address("TCP", "10.1.2.3", 4000))
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def register(self, request: EnrollmentRequest, source_ip: str) -> Deferred[str]:
        """Record the call and return a Deferred the test fires."""
        self.calls.append((request, source_ip))
        deferred: Deferred[str] = Deferred()
        self.pending.append(deferred)
        return deferred

    @property
    def output(self) -> bytes:
        """What the server wrote."""
        return self.transport.value()


class ServerProtocolTests(SynchronousTestCase):
    """EnrollmentServerProtocol with StringTransport and task.Clock."""

    def test_request_forwarded_and_answered(self) -> None:
        """A valid line reaches register with the peer IP; the reply is sent and closed."""
        harness = Harness()
        harness.protocol.dataReceived(b"OSSEC A:'agent")
        self.assertEqual(harness.calls, [])
        harness.protocol.dataReceived(b"-1' G:'web'\n")
        self.assertEqual(
            harness.calls, [(EnrollmentRequest("agent-1", groups=("web",)), "10.1.2.3")]
        )
        self.assertFalse(harness.transport.disconnecting)
        harness.pending[0].callback("OSSEC K:'001 agent-1 any key'")
        self.assertEqual(harness.output, b"OSSEC K:'001 agent-1 any key'")
        self.assertTrue(harness.transport.disconnecting)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_malformed_request_answered_without_register(self) -> None:
        """A parse error is answered directly; register is not called."""
        harness = Harness()
        harness.protocol.dataReceived(b"OSSEC A:'x'\n")
        self.assertEqual(harness.calls, [])
        self.assertEqual(harness.output, b"ERROR: Invalid agent name: x. Unable to add agent")
        self.assertTrue(harness.transport.disconnecting)

    def test_one_request_per_connection(self) -> None:
        """A second line on the same connection is ignored."""
        harness = Harness()
        harness.protocol.dataReceived(b"OSSEC A:'a1'\nOSSEC A:'a2'\n")
        harness.protocol.dataReceived(b"OSSEC A:'a3'\n")
        self.assertEqual([call[0].name for call in harness.calls], ["a1"])

    def test_oversized_request(self) -> None:
        """Data beyond the limit without a newline is refused as too large."""
        harness = Harness(max_request=100)
        harness.protocol.dataReceived(b"OSSEC A:'" + b"a" * 85)
        self.assertEqual(harness.output, b"")
        harness.protocol.dataReceived(b"a" * 10)
        self.assertEqual(harness.output, b"ERROR: Request too large. Unable to add agent")
        self.assertTrue(harness.transport.disconnecting)
        self.assertEqual(harness.calls, [])

    def test_oversized_line_with_newline(self) -> None:
        """A complete but oversized line is refused too."""
        harness = Harness(max_request=20)
        harness.protocol.dataReceived(b"OSSEC A:'" + b"a" * 30 + b"'\n")
        self.assertEqual(harness.output, b"ERROR: Request too large. Unable to add agent")

    def test_idle_timeout(self) -> None:
        """A client that sends no full line is answered and dropped after the timeout."""
        harness = Harness(request_timeout=5.0)
        harness.protocol.dataReceived(b"OSSEC A:'slow")
        harness.clock.advance(4.9)
        self.assertFalse(harness.transport.disconnecting)
        harness.clock.advance(0.2)
        expected = b"ERROR: Timeout waiting for the enrollment request. Unable to add agent"
        self.assertEqual(harness.output, expected)
        self.assertTrue(harness.transport.disconnecting)

    def test_decision_timeout_then_late_key_is_undelivered(self) -> None:
        """No decision in time → timeout reply; a key arriving later is reported."""
        harness = Harness(decision_timeout=3.0)
        harness.protocol.dataReceived(b"OSSEC A:'a1'\n")
        harness.clock.advance(3.0)
        self.assertIn(b"Timeout waiting for the enrollment decision", harness.output)
        harness.pending[0].callback("OSSEC K:'001 a1 any key'")
        self.assertEqual(
            harness.undelivered, [(EnrollmentRequest("a1"), "OSSEC K:'001 a1 any key'")]
        )

    def test_connection_lost_before_reply(self) -> None:
        """If the agent leaves before the key is ready, the key is reported undelivered."""
        harness = Harness()
        harness.protocol.dataReceived(b"OSSEC A:'a1'\n")
        harness.protocol.connectionLost(None)  # type: ignore[arg-type]
        harness.pending[0].callback("OSSEC K:'001 a1 any key'")
        self.assertEqual(len(harness.undelivered), 1)
        self.assertEqual(harness.output, b"")
        self.assertEqual(harness.factory.active, 0)

    def test_register_failure_is_internal_error(self) -> None:
        """An exception from register becomes an internal-error reply."""
        harness = Harness(register=lambda request, ip: fail(RuntimeError("boom")))
        harness.protocol.dataReceived(b"OSSEC A:'a1'\n")
        self.assertEqual(
            harness.output, b"ERROR: Internal manager error adding agent: a1. Unable to add agent"
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_synchronous_register(self) -> None:
        """A register that answers at once is fine too."""
        harness = Harness(register=lambda request, ip: succeed("ERROR: no. Unable to add agent"))
        harness.protocol.dataReceived(b"OSSEC A:'a1'\n")
        self.assertEqual(harness.output, b"ERROR: no. Unable to add agent")

    def test_connection_limit(self) -> None:
        """Connections beyond max_connections are aborted at once."""
        harness = Harness(max_connections=1)
        second = EnrollmentServerProtocol(harness.factory)
        transport = StringTransport()
        second.makeConnection(transport)
        self.assertTrue(transport.disconnecting)
        second.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(harness.factory.active, 1)

    def test_tcp_nodelay_requested(self) -> None:
        """The server turns Nagle off so the reply and TLS close leave at once."""

        class NoDelayTransport(StringTransport):
            no_delay: bool | None = None

            def setTcpNoDelay(self, enabled: bool) -> None:
                self.no_delay = enabled

        factory = EnrollmentServerFactory(lambda request, ip: succeed("x"), Clock())
        transport = NoDelayTransport()
        factory.buildProtocol(None).makeConnection(transport)
        self.assertIs(transport.no_delay, True)

    def test_peer_host_unmaps_ipv4(self) -> None:
        """An IPv4-mapped IPv6 peer is shown as plain IPv4."""
        self.assertEqual(peer_host(address.IPv6Address("TCP", "::ffff:10.0.0.9", 1)), "10.0.0.9")
        self.assertEqual(peer_host(address.IPv6Address("TCP", "fd00::1", 1)), "fd00::1")

"""Hypothesis fuzzing of what agents send: enrollment lines (1515) and event frames (1514).

Every input either parses or is refused with the module's own exception and a reason; the
protocols answer or close, never raise, and keep serving an honest agent afterwards. Example
counts come from the profile chosen by ``WAZUHCLUSTER_FUZZ`` (see tests.test_fuzz_amp).
"""

from __future__ import annotations

import struct
import zlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.test_fuzz_amp import FUZZ
from wazuhcluster.agents import control, secure
from wazuhcluster.agents.channel import AgentChannelFactory, AgentEvent
from wazuhcluster.agents.enrollment import (
    EnrollmentError,
    EnrollmentRequest,
    EnrollmentServerFactory,
    parse_request,
)
from wazuhcluster.agents.sessions import AgentStatus, SessionTable
from wazuhcluster.util.threads import run_inline

KEY = "ab" * 32

_PIECES = st.sampled_from(
    [
        "OSSEC A:'",
        "OSSEC PASS: ",
        "' G:'",
        "' V:'",
        "' IP:'",
        "'",
        " ",
        "\n",
        "..",
        "/",
        ",",
        "agent-1",
        "v4.14.7",
        "10.0.0.1",
        "any",
        "\x00",
        "é",
        "a" * 300,
    ]
)
#: Lines built from the grammar's own pieces (more likely to reach deep parser paths),
#: or arbitrary text.
ENROLLMENT_LINES = st.lists(_PIECES, max_size=14).map("".join) | st.text(max_size=400)


class EnrollmentLineFuzzTests(SynchronousTestCase):
    """parse_request and the 1515 protocol against arbitrary lines."""

    @FUZZ
    @given(line=ENROLLMENT_LINES)
    def test_parse_request(self, line: str) -> None:
        """A line parses into a request whose fields are bounded, or raises EnrollmentError
        with a reason; nothing else escapes."""
        try:
            request = parse_request(line)
        except EnrollmentError as error:
            self.assertTrue(str(error))
            return
        self.assertIsInstance(request, EnrollmentRequest)
        self.assertTrue(request.name)
        self.assertNotIn("\n", request.name)
        self.assertEqual(parse_request(request.to_line()), request)

    @FUZZ
    @given(data=st.binary(max_size=3000), split=st.integers(0, 3000))
    def test_server_protocol(self, data: bytes, split: int) -> None:
        """Any bytes, in two pieces, get one answer line or a clean close; the register
        callable sees only parsed requests."""
        clock = Clock()
        seen: list[EnrollmentRequest] = []

        def register(request: EnrollmentRequest, source_ip: str) -> Deferred[str]:
            seen.append(request)
            return succeed("OSSEC K:'001 agent 10.0.0.1 " + "a" * 64 + "'")

        factory = EnrollmentServerFactory(register, clock, max_request=1024)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.2.3", 4000))
        proto = factory.buildProtocol(None)
        proto.makeConnection(transport)
        proto.dataReceived(data[:split])
        proto.dataReceived(data[split:])
        clock.advance(60)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(transport.disconnecting)
        answer = transport.value()
        self.assertLessEqual(answer.count(b"\n"), 1)
        if answer:
            self.assertTrue(answer.startswith(b"OSSEC K:") or b"ERROR" in answer, answer)
        self.assertLessEqual(len(seen), 1)


class HonestAgent:
    """Builds frames as an agent would."""

    def __init__(self, entry: secure.AgentKey) -> None:
        self.entry = entry
        self.counter = secure.SendCounter()

    def frame(self, message: str) -> bytes:
        """One framed, encrypted message with the agent id prefix."""
        payload = secure.encode_payload(
            message.encode(),
            self.entry.cipher_key,
            self.counter.next(),
            secure.random16(),
            self.entry.agent_id,
        )
        return secure.frame(payload)


def _sealed_garbage(entry: secure.AgentKey, inner: bytes) -> bytes:
    """A frame that decrypts with the agent's key but carries ``inner`` after the padding."""
    compressed = zlib.compress(inner)
    pad = -(len(compressed) + 1) % 8
    body = secure.encrypt_body(b"!" * (pad + 1) + compressed, entry.cipher_key)
    return secure.frame(b"!" + entry.agent_id.encode() + b"!" + secure.AES_TOKEN + body)


def frame_streams(entry: secure.AgentKey) -> st.SearchStrategy[bytes]:
    """Byte streams an attacker might send: raw bytes, well-framed junk, headers announcing
    huge frames, frames naming the agent with garbage, and well-sealed junk messages."""
    raw = st.binary(max_size=2000)
    framed_junk = st.lists(st.binary(max_size=300).map(secure.frame), max_size=5).map(b"".join)
    huge = st.integers(0, 2**32 - 1).map(lambda n: struct.pack("<I", n) + b"x" * 16)
    named = st.binary(max_size=300).map(
        lambda b: secure.frame(b"!" + entry.agent_id.encode() + b"!" + secure.AES_TOKEN + b)
    )
    sealed = st.binary(max_size=300).map(lambda b: _sealed_garbage(entry, b))
    sealed_text = st.text(max_size=200).map(
        lambda t: _sealed_garbage(entry, secure.md5hex(t.encode()).encode() + t.encode())
    )
    return st.lists(raw | framed_junk | huge | named | sealed | sealed_text, max_size=4).map(
        b"".join
    )


class AgentFrameFuzzTests(SynchronousTestCase):
    """The 1514 protocol against arbitrary frames from a hostile connection."""

    def setUp(self) -> None:
        """One agent key, a session table and an event list."""
        self.clock = Clock()
        self.clock.advance(10_000)
        self.entry = secure.AgentKey("001", "one", "any", KEY)
        self.sessions = SessionTable(self.clock, "w1")
        self.events: list[AgentEvent] = []
        self.factory = AgentChannelFactory(
            secure.KeyStore([self.entry]),
            self.sessions,
            self.events.append,
            self.clock,
            run_in_thread=run_inline,
        )

    def connect(self, ip: str) -> tuple[object, StringTransport]:
        """A connection from ``ip``."""
        proto = self.factory.buildProtocol(IPv4Address("TCP", ip, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", ip, 40000))
        proto.makeConnection(transport)
        return proto, transport

    @FUZZ
    @given(data=st.data())
    def test_hostile_frames(self, data: st.DataObject) -> None:
        """Hostile bytes are dropped or close their own connection without an unhandled
        error, and an honest agent on another connection is still served."""
        stream = data.draw(frame_streams(self.entry))
        hostile, _ = self.connect("10.9.9.9")
        hostile.dataReceived(stream)  # type: ignore[attr-defined]
        self.assertEqual(self.flushLoggedErrors(), [])
        hostile.connectionLost(None)  # type: ignore[attr-defined]
        # A new reactor turn: the examples share one factory, whose per-turn read budget
        # the hostile bytes may have spent (the honest agent would wait for the next turn).
        self.clock.advance(0)
        honest = HonestAgent(self.entry)
        proto, transport = self.connect("10.0.0.1")
        before = len(self.events)
        proto.dataReceived(honest.frame(control.format_startup("v4.14.7")))  # type: ignore[attr-defined]
        proto.dataReceived(honest.frame("1:/var/log/syslog:hello"))  # type: ignore[attr-defined]
        self.clock.advance(0)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertNotEqual(self.sessions.status("001"), AgentStatus.NEVER_CONNECTED)
        self.assertEqual(len(self.events), before + 1)
        self.assertTrue(transport.value(), "no ack to the honest agent")
        proto.connectionLost(None)  # type: ignore[attr-defined]

    @FUZZ
    @given(pieces=st.lists(st.binary(max_size=70_000), max_size=6))
    def test_frame_decoder(self, pieces: list[bytes]) -> None:
        """The decoder returns frames no larger than its cap and buffers at most one frame
        plus a header, or raises FrameTooLarge."""
        decoder = secure.FrameDecoder(max_frame=65536)
        try:
            for piece in pieces:
                for payload in decoder.feed(piece):
                    self.assertLessEqual(len(payload), 65536)
                self.assertLessEqual(decoder.pending, 65536 + 4 + len(piece))
        except secure.FrameTooLarge as error:
            self.assertIn("exceeds", str(error))

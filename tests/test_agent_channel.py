"""Tests for wazuhcluster.agents.channel: the 1514 protocol on StringTransport, no sockets."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    FakeDatagramTransport,
    StringTransport,
)
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import HeldThreads
from wazuhcluster.agents import control, secure
from wazuhcluster.agents.channel import (
    READ_BYTES,
    AgentChannelFactory,
    AgentChannelProtocol,
    AgentEvent,
    EventCounter,
)
from wazuhcluster.agents.datagram import AgentDatagramProtocol
from wazuhcluster.agents.sessions import AgentStatus, SessionTable
from wazuhcluster.agents.shared_files import load_shared_file, read_shared_file
from wazuhcluster.util.threads import run_inline

KEY = "ab" * 32
UNAME = "Linux |h |6.1 |#1 |x86_64 [Debian GNU/Linux|debian: 12]"


class FakeAgent:
    """Builds frames as an agent would, with its own counters."""

    def __init__(self, entry: secure.AgentKey, with_id: bool = True) -> None:
        self.entry = entry
        self.with_id = with_id
        self.counter = secure.SendCounter()

    def frame(self, message: bytes | str, counter: tuple[int, int] | None = None) -> bytes:
        """One framed, encrypted message."""
        data = message.encode() if isinstance(message, str) else message
        payload = secure.encode_payload(
            data,
            self.entry.cipher_key,
            counter or self.counter.next(),
            secure.random16(),
            self.entry.agent_id if self.with_id else None,
        )
        return secure.frame(payload)

    def read(self, transport: StringTransport) -> list[bytes]:
        """Decode everything the manager wrote to this agent (and clear the transport)."""
        frames = secure.FrameDecoder().feed(transport.value())
        transport.clear()
        out = []
        for payload in frames:
            if payload == control.PONG:
                out.append(payload)
                continue
            ciphertext = secure.strip_token(payload)
            out.append(secure.open_sealed(ciphertext, self.entry.cipher_key).message)
        return out


def _keepalive(merged: str = "x") -> str:
    return control.format_keepalive(UNAME, "Wazuh v4.14.7", None, [], merged, "10.0.0.1")


class ChannelTestCase(SynchronousTestCase):
    """Common set-up: three agents, a clock, a session table and an event list."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(10_000)
        self.one = secure.AgentKey("001", "one", "any", KEY)
        self.two = secure.AgentKey("002", "two", "10.0.0.5", KEY)
        self.three = secure.AgentKey("003", "three", "any", "cd" * 32)
        self.keys = secure.KeyStore([self.one, self.two, self.three])
        self.merged: dict[str, tuple[str, str]] = {}
        self.sessions = SessionTable(self.clock, "w1", merged_for=self.merged.get)
        self.events: list[AgentEvent] = []
        self.factory = self.make_factory()
        self.logged = EventLoggingObserver()
        globalLogPublisher.addObserver(self.logged)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged)

    def make_factory(self, **kwargs: object) -> AgentChannelFactory:
        """A factory over the test's keys, sessions and event list."""
        return AgentChannelFactory(
            self.keys,
            self.sessions,
            self.events.append,
            self.clock,
            **{"run_in_thread": run_inline, **kwargs},  # type: ignore[arg-type]
        )

    def connect(
        self, ip: str = "10.0.0.1", factory: AgentChannelFactory | None = None
    ) -> tuple[AgentChannelProtocol, StringTransport]:
        """A protocol connected to a StringTransport from ``ip``."""
        proto = (factory or self.factory).buildProtocol(IPv4Address("TCP", ip, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", ip, 40000))
        proto.makeConnection(transport)
        return proto, transport

    def messages(self) -> list[str]:
        """Every log message emitted so far."""
        return [formatEvent(event) for event in self.logged]


class HandshakeTests(ChannelTestCase):
    """Startup, keep-alive, shutdown, ping and events."""

    def test_startup_ack_keepalive(self) -> None:
        """Startup is acked and makes the agent pending; a keep-alive makes it active."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.assertEqual(agent.read(transport), [control.ACK.encode()])
        self.assertEqual(self.sessions.status("001"), AgentStatus.PENDING)
        proto.dataReceived(agent.frame(_keepalive()))
        self.assertEqual(agent.read(transport), [control.ACK.encode()])
        self.assertEqual(self.sessions.status("001"), AgentStatus.ACTIVE)
        self.assertIs(self.factory.connection_for("001"), proto)
        self.assertFalse(transport.disconnecting)

    def test_version_check(self) -> None:
        """With a manager version, newer agents and startups without a version get '#!-err'."""
        factory = self.make_factory(manager_version="v4.14.7")
        agent = FakeAgent(self.one)
        proto, transport = self.connect(factory=factory)
        proto.dataReceived(agent.frame(control.format_startup("v4.15.0")))
        self.assertEqual(
            agent.read(transport),
            [b'#!-err {"message":"Agent version must be lower or equal to manager version"}'],
        )
        self.assertEqual(self.sessions.status("001"), AgentStatus.NEVER_CONNECTED)
        proto.dataReceived(agent.frame("#!-agent startup {}"))
        self.assertEqual(
            agent.read(transport), [b'#!-err {"message":"Couldn\'t retrieve version"}']
        )
        proto.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.assertEqual(agent.read(transport), [control.ACK.encode()])
        lenient = self.make_factory(manager_version="v4.14.7", allow_higher_versions=True)
        proto, transport = self.connect(factory=lenient)
        proto.dataReceived(FakeAgent(self.three).frame(control.format_startup("v5.0.0")))
        self.assertEqual(FakeAgent(self.three).read(transport), [control.ACK.encode()])

    def test_shutdown_no_ack(self) -> None:
        """A shutdown disconnects the agent and is not acknowledged."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(_keepalive()) + agent.frame(control.SHUTDOWN))
        self.assertEqual(agent.read(transport), [control.ACK.encode()])
        self.assertEqual(self.sessions.status("001"), AgentStatus.DISCONNECTED)
        [stopped] = self.events
        self.assertEqual(
            (stopped.queue, stopped.location, stopped.message),
            ("1", "wazuh-remoted", "ossec: Agent stopped: 'one->any'."),
        )

    def test_sink_fast_entry(self) -> None:
        """A sink with ``take_event`` gets each event's fields in :class:`AgentEvent`'s order
        (its ``__call__`` is never used); a plain callable still gets the object."""
        taken: list[tuple[Any, ...]] = []

        class Sink:
            def __call__(self, event: AgentEvent) -> None:
                raise AssertionError("the fast entry must be used")

            def take_event(self, *fields: Any) -> None:
                taken.append(fields)

        factory = AgentChannelFactory(
            self.keys, self.sessions, Sink(), self.clock, run_in_thread=run_inline
        )
        agent = FakeAgent(self.one)
        proto, _ = self.connect(factory=factory)
        proto.dataReceived(agent.frame(_keepalive()) + agent.frame("1:/var/log/auth.log:a: b"))
        self.assertEqual(
            [AgentEvent(*fields) for fields in taken],
            [
                AgentEvent(
                    "001",
                    "one",
                    "10.0.0.1",
                    "1",
                    "/var/log/auth.log",
                    "a: b",
                    self.clock.seconds(),
                    "any",
                    self.sessions.get("001").reported_ip,  # type: ignore[union-attr]
                    (),
                )
            ],
        )
        proto, _ = self.connect()
        proto.dataReceived(agent.frame("1:/var/log/auth.log:a: b"))
        self.assertEqual([AgentEvent(*fields) for fields in taken], self.events)

    def test_ping(self) -> None:
        """'#ping' is answered with a framed, unencrypted '#pong'."""
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"#ping"))
        self.assertEqual(transport.value(), secure.frame(b"#pong"))
        self.assertEqual(self.factory.stats.pings, 1)

    def test_events_reach_sink(self) -> None:
        """Events reach the sink with agent, queue, location, message and time."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame("1:/var/log/auth.log:sshd: fail") + agent.frame("x"))
        self.assertEqual(
            self.events,
            [
                AgentEvent(
                    "001", "one", "10.0.0.1", "1", "/var/log/auth.log", "sshd: fail", 10_000, "any"
                )
            ],
        )
        self.assertEqual(self.factory.stats.events, 1)
        self.assertIn("Malformed event from agent '001'", "\n".join(self.messages()))
        self.assertFalse(transport.disconnecting)

    def test_events_carry_keepalive_labels_and_ip(self) -> None:
        """After a keep-alive, the agent's events carry its reported IP and its labels
        (hidden ones marked, system ones left out); a changed keep-alive changes them."""
        agent = FakeAgent(self.one)
        proto, _ = self.connect()
        proto.dataReceived(agent.frame("1:a:before"))
        labels = ['"env":prod', '!"owner":me', '#"_node":x']
        keepalive = control.format_keepalive(UNAME, "Wazuh v4.14.7", None, labels, "x", "10.9.0.4")
        proto.dataReceived(agent.frame(keepalive) + agent.frame("1:a:after"))
        changed = control.format_keepalive(
            UNAME, "Wazuh v4.14.7", None, ['"env":test'], "x", "10.9.0.5"
        )
        proto.dataReceived(agent.frame(changed) + agent.frame("1:a:later"))
        seen = [(e.message, e.reported_ip, e.labels) for e in self.events]
        self.assertEqual(
            seen,
            [
                ("before", None, ()),
                ("after", "10.9.0.4", (("env", "prod"), ("!owner", "me"))),
                ("later", "10.9.0.5", (("env", "test"),)),
            ],
        )

    def test_event_counter_sink(self) -> None:
        """EventCounter only counts events, per queue."""
        counter = EventCounter()
        factory = AgentChannelFactory(
            self.keys, self.sessions, counter, self.clock, run_in_thread=run_inline
        )
        agent = FakeAgent(self.one)
        proto, _ = self.connect(factory=factory)
        proto.dataReceived(agent.frame("1:a:b") + agent.frame("1:a:c") + agent.frame("8:s:d"))
        self.assertEqual(counter.total, 3)
        self.assertEqual(counter.by_queue["1"], 2)

    def test_single_host_without_prefix(self) -> None:
        """An agent registered with one IP may omit '!id!' and is found by source IP."""
        agent = FakeAgent(self.two, with_id=False)
        proto, transport = self.connect("10.0.0.5")
        proto.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.assertEqual(agent.read(transport), [control.ACK.encode()])

    def test_ipv4_mapped_peer(self) -> None:
        """A peer seen as '::ffff:10.0.0.5' matches the agent registered with 10.0.0.5."""
        agent = FakeAgent(self.two, with_id=False)
        proto = self.factory.buildProtocol(IPv6Address("TCP", "::ffff:10.0.0.5", 40000))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.assertEqual(agent.read(transport), [control.ACK.encode()])

    def test_split_frames(self) -> None:
        """Frames split across reads are reassembled."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        data = agent.frame(control.format_startup("v4.14.7"))
        for i in range(len(data)):
            proto.dataReceived(data[i : i + 1])
        self.assertEqual(agent.read(transport), [control.ACK.encode()])


class KeepAliveCacheTests(ChannelTestCase):
    """An agent's keep-alive identical to its last one is not parsed again."""

    def setUp(self) -> None:
        super().setUp()
        self.parsed: list[str] = []
        parse = control.parse_agent_control

        def counted(text: str) -> control.AgentControl:
            self.parsed.append(text)
            return parse(text)

        self.patch(control, "parse_agent_control", counted)

    def test_identical_keepalive_reused_changed_one_parsed(self) -> None:
        """Repeats of a keep-alive are parsed once yet each one updates the session and is
        acknowledged; a changed one is parsed and seen; the cache is per agent."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        first = _keepalive("a" * 32)
        for _ in range(3):
            self.clock.advance(10)
            proto.dataReceived(agent.frame(first))
            self.assertEqual(agent.read(transport), [control.ACK.encode()])
            session = self.sessions.get("001")
            assert session is not None and session.keepalive is not None
            self.assertEqual(session.last_keepalive, self.clock.seconds())
        self.assertEqual(self.parsed, [first])
        self.assertEqual(session.keepalive.merged_sum, "a" * 32)

        changed = _keepalive("b" * 32)
        proto.dataReceived(agent.frame(changed))
        self.assertEqual(self.parsed, [first, changed])
        session = self.sessions.get("001")
        assert session is not None and session.keepalive is not None
        self.assertEqual(session.keepalive.merged_sum, "b" * 32)
        proto.dataReceived(agent.frame(first))  # only the last text is kept
        self.assertEqual(len(self.parsed), 3)

        other, other_transport = self.connect()
        FakeAgent(self.three).read(other_transport)
        other.dataReceived(FakeAgent(self.three).frame(first))
        self.assertEqual(len(self.parsed), 4)  # another agent's text is its own
        other.dataReceived(FakeAgent(self.three).frame(control.SHUTDOWN))
        self.assertEqual(len(self.parsed), 5)  # other control messages are always parsed

    def test_removed_agent_forgotten(self) -> None:
        """A removed agent's keep-alive is dropped with its key: after re-enrollment with
        the same key, its first keep-alive is parsed again."""
        agent = FakeAgent(self.one)
        proto, _ = self.connect()
        text = _keepalive()
        proto.dataReceived(agent.frame(text) + agent.frame(text))
        self.assertEqual(len(self.parsed), 1)
        for changed in (["001"], None):
            self.factory.set_keys(self.keys.updated([], ["001"]), changed)
            self.factory.set_keys(self.keys, ["001"])
            proto, _ = self.connect()
            proto.dataReceived(agent.frame(text))
            self.assertEqual(len(self.parsed), 3 if changed is None else 2)

    def test_udp_keepalives_reused(self) -> None:
        """Over UDP (a new peer per datagram) repeats are not parsed again either."""
        udp = AgentDatagramProtocol(self.factory)
        udp.makeConnection(FakeDatagramTransport())
        agent = FakeAgent(self.one)
        for _ in range(3):
            udp.datagramReceived(agent.frame(_keepalive())[4:], ("10.0.0.1", 41000))
        self.assertEqual(len(self.parsed), 1)
        self.assertEqual(self.sessions.status("001"), AgentStatus.ACTIVE)


class ReadSizeTests(ChannelTestCase):
    """Each agent connection is read in small slices, so a backlog cannot make one reactor
    turn long."""

    def test_read_size_set_through_wrappers(self) -> None:
        """The TCP transport under the connection-limit wrapper reads READ_BYTES at a time."""
        proto = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
        wrapper = ProtocolWrapper(WrappingFactory(self.factory), proto)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 40000))
        transport.bufferSize = 65536  # type: ignore[attr-defined]
        wrapper.makeConnection(transport)
        self.assertEqual(transport.bufferSize, READ_BYTES)  # type: ignore[attr-defined]
        self.assertLess(READ_BYTES, 65536)


class TurnBudgetTests(ChannelTestCase):
    """Past a reactor turn's budget, connections wait for a later turn, paused, in order."""

    def next_turn(self) -> None:
        """Run the calls due now, not those they schedule (a reactor runs those at its next
        iteration; ``Clock.advance(0)`` would run them at once)."""
        due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]
        for call in due:
            self.clock.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)

    def test_connections_past_the_budget_wait(self) -> None:
        """With a budget of one frame, each turn decodes one connection's bytes; the others
        are paused and served at the next turns, oldest first, and read again after."""
        agents = [FakeAgent(entry) for entry in (self.one, self.two, self.three)]
        frames = [
            agent.frame(f"1:/var/log/auth.log:event of {agent.entry.agent_id}") for agent in agents
        ]
        self.factory.turn_bytes = len(frames[0])
        links = [self.connect(ip) for ip in ("10.0.0.1", "10.0.0.5", "10.0.0.9")]
        for (proto, _), data in zip(links, frames, strict=True):
            proto.dataReceived(data)
        self.assertEqual([e.agent_id for e in self.events], ["001"])
        states = [transport.producerState for _, transport in links]
        self.assertEqual(states, ["producing", "paused", "paused"])
        second = agents[1].frame("1:/var/log/auth.log:second of 002")
        links[1][0].dataReceived(second)  # bytes already read stay behind the held ones
        self.next_turn()
        self.assertEqual([e.agent_id for e in self.events], ["001", "002", "002"])
        self.assertEqual(self.events[2].message, "second of 002")
        self.assertEqual(links[1][1].producerState, "producing")
        self.assertEqual(links[2][1].producerState, "paused")
        self.next_turn()
        self.assertEqual([e.agent_id for e in self.events], ["001", "002", "002", "003"])
        self.assertEqual([t.producerState for _, t in links], ["producing"] * 3)
        self.clock.advance(0)  # the count starts again; nothing is left waiting
        self.assertEqual((self.clock.getDelayedCalls(), self.factory.turn_spent), ([], 0))

    def test_count_restarts_once_half_the_budget_is_spent(self) -> None:
        """Reads below half the budget schedule nothing (no timer per small read); the read
        that reaches half schedules the count's restart at the next turn."""
        agent = FakeAgent(self.one)
        frame = agent.frame("1:/var/log/auth.log:small")
        self.factory.turn_bytes = 5 * len(frame)
        proto, transport = self.connect()
        proto.dataReceived(frame)
        proto.dataReceived(frame)
        self.assertEqual(
            (len(self.events), self.factory.turn_spent, self.clock.getDelayedCalls()),
            (2, 2 * len(frame), []),
        )
        proto.dataReceived(frame)
        [restart] = self.clock.getDelayedCalls()
        proto.dataReceived(frame + frame)
        self.assertEqual(len(self.events), 5)
        proto.dataReceived(frame)  # past the whole budget: held for the next turn
        self.assertEqual((len(self.events), transport.producerState), (5, "paused"))
        self.next_turn()
        self.assertEqual((len(self.events), transport.producerState), (6, "producing"))
        self.assertEqual(self.factory.turn_spent, len(frame))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_held_bytes_survive_a_close_and_a_stop(self) -> None:
        """Held bytes are decoded when their connection closes, or when the listener stops."""
        agent_one, agent_three = FakeAgent(self.one), FakeAgent(self.three)
        self.factory.turn_bytes = 1
        first, _ = self.connect("10.0.0.1")
        second, _ = self.connect("10.0.0.9")
        self.factory.spend(1)
        first.dataReceived(agent_one.frame("1:/var/log/auth.log:held then closed"))
        second.dataReceived(agent_three.frame("1:/var/log/auth.log:held then stopped"))
        self.assertEqual(self.events, [])
        first.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([e.message for e in self.events], ["held then closed"])
        self.factory.stopFactory()
        self.assertEqual(
            [e.message for e in self.events], ["held then closed", "held then stopped"]
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BadFrameTests(ChannelTestCase):
    """Every bad frame is dropped with Wazuh's warning, closing where remoted closes."""

    def assertClosedWith(self, transport: StringTransport, text: str) -> None:
        """The connection was closed and ``text`` was logged."""
        self.assertTrue(transport.disconnecting)
        self.assertIn(text, self.messages())

    def test_unknown_id(self) -> None:
        """An unknown ID logs (1408) with name 'unknown' and closes."""
        ghost = secure.AgentKey("099", "ghost", "any", KEY)
        proto, transport = self.connect("192.0.2.7")
        proto.dataReceived(FakeAgent(ghost).frame("1:a:b"))
        self.assertClosedWith(
            transport, "(1408): Invalid ID 099 for the source ip: '192.0.2.7' (name 'unknown')."
        )
        self.assertEqual(self.events, [])

    def test_id_from_wrong_ip(self) -> None:
        """A known ID from an IP its key does not allow logs (1408) with its name."""
        proto, transport = self.connect("10.0.0.6")
        proto.dataReceived(FakeAgent(self.two).frame("1:a:b"))
        self.assertClosedWith(
            transport, "(1408): Invalid ID 002 for the source ip: '10.0.0.6' (name 'two')."
        )

    def test_unknown_ip_without_id(self) -> None:
        """No '!id!' and an unknown source IP logs (1213) and closes."""
        proto, transport = self.connect("10.9.9.9")
        proto.dataReceived(FakeAgent(self.two, with_id=False).frame("1:a:b"))
        self.assertClosedWith(
            transport,
            "(1213): Message from '10.9.9.9' not allowed. Cannot find the ID of the agent. "
            "Source agent ID is unknown.",
        )

    def test_wrong_key(self) -> None:
        """A payload sealed with another key logs (1404) and closes."""
        impostor = secure.AgentKey("001", "one", "any", "ef" * 32)
        proto, transport = self.connect()
        proto.dataReceived(FakeAgent(impostor).frame(control.format_startup("v4.14.7")))
        self.assertTrue(transport.disconnecting)
        text = "\n".join(self.messages())
        self.assertTrue(
            "(1404): Authentication error. Wrong key or corrupt payload. "
            "Message received from agent '001' at 'any'."
            in text
            or "(2202)" in text
            or "(1406)" in text,
            text,
        )
        self.assertEqual(self.sessions.status("001"), AgentStatus.NEVER_CONNECTED)

    def test_garbage_ciphertext(self) -> None:
        """Garbage after '#AES:' logs (1404) and closes."""
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"!001!#AES:" + os.urandom(33)))
        self.assertClosedWith(
            transport,
            "(1404): Authentication error. Wrong key or corrupt payload. "
            "Message received from agent '001' at 'any'.",
        )

    def test_blowfish_agent_is_refused_clearly(self) -> None:
        """A legacy Blowfish payload (':' instead of '#AES:') says only AES is supported."""
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"!001!:" + os.urandom(24)))
        self.assertTrue(transport.disconnecting)
        text = "\n".join(self.messages())
        self.assertIn("only AES agents are supported", text)
        self.assertIn("Agent '001'", text)
        self.assertNotIn("(1404)", text)

    def test_missing_bang_padding(self) -> None:
        """A plaintext without the '!' padding logs (1404) and closes."""
        inner = b"000000000000001:0001:1:a:b"
        body = zlib.compress(hashlib.md5(inner).hexdigest().encode() + inner)
        ciphertext = secure.encrypt_body(body, self.one.cipher_key)
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"!001!#AES:" + ciphertext))
        self.assertClosedWith(
            transport,
            "(1404): Authentication error. Wrong key or corrupt payload. "
            "Message received from agent '001' at 'any'.",
        )

    def test_bad_md5(self) -> None:
        """A correct key but a wrong MD5 logs (1406) and closes."""
        inner = b"000000000000001:0001:1:a:b"
        body = b"!" + zlib.compress(b"f" * 32 + inner)
        ciphertext = secure.encrypt_body(body, self.one.cipher_key)
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"!001!#AES:" + ciphertext))
        self.assertClosedWith(
            transport, "(1406): Checksum mismatch. Message received from agent '001' at 'any'."
        )

    def test_missing_token_and_bad_prefix(self) -> None:
        """No '#AES:' or a malformed '!id!' logs (1403) and closes."""
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"!001!#XYZ:abc"))
        self.assertClosedWith(
            transport, "(1403): Incorrectly formatted message from agent '001' (host '10.0.0.1')."
        )
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"!0a1!#AES:abc"))
        self.assertClosedWith(
            transport,
            "(1403): Incorrectly formatted message from agent '(unknown)' (host '10.0.0.1').",
        )

    def test_empty_after_prefix(self) -> None:
        """'!001!' with nothing after it is dropped and closes."""
        proto, transport = self.connect()
        proto.dataReceived(secure.frame(b"!001!"))
        self.assertClosedWith(transport, "Received message is empty")

    def test_oversized_frame(self) -> None:
        """A length prefix above 64 KiB closes at once, before the body arrives."""
        proto, transport = self.connect()
        proto.dataReceived(struct.pack("<I", secure.MAX_FRAME + 1) + b"x" * 10)
        self.assertClosedWith(transport, "Too big message size from 10.0.0.1.")

    def test_replay_with_verification(self) -> None:
        """With counter verification a replayed frame logs (1407) and closes."""
        factory = self.make_factory(verify_counters=True)
        agent = FakeAgent(self.one)
        startup = agent.frame(control.format_startup("v4.14.7"))
        proto, transport = self.connect(factory=factory)
        proto.dataReceived(startup)
        proto.dataReceived(startup)
        self.assertClosedWith(transport, "(1407): Duplicated counter for 'one'.")

    def test_replay_without_verification(self) -> None:
        """Without verification (Wazuh's default) the same counters are accepted."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        frame = agent.frame("1:a:b")
        proto.dataReceived(frame + frame)
        self.assertEqual(len(self.events), 2)
        self.assertFalse(transport.disconnecting)

    def test_others_keep_working(self) -> None:
        """A bad connection does not disturb another agent's connection."""
        good, good_transport = self.connect()
        bad, bad_transport = self.connect("10.0.0.2")
        agent = FakeAgent(self.one)
        good.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        bad.dataReceived(secure.frame(b"!001!#AES:" + os.urandom(48)))
        good.dataReceived(agent.frame("1:a:after"))
        self.assertTrue(bad_transport.disconnecting)
        self.assertFalse(good_transport.disconnecting)
        self.assertEqual([e.message for e in self.events], ["after"])


class OvertakeTests(ChannelTestCase):
    """One live connection per agent, with remoted's overtake rule for idle ones."""

    def test_second_connection_refused_while_first_is_live(self) -> None:
        """A second connection within 60 s of the last message is refused."""
        agent = FakeAgent(self.one)
        first, first_transport = self.connect()
        first.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.clock.advance(30)
        second, second_transport = self.connect("10.0.0.2")
        second.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.assertTrue(second_transport.disconnecting)
        self.assertIn("Agent key already in use: agent ID '001'", self.messages())
        self.assertIs(self.factory.connection_for("001"), first)
        self.assertFalse(first_transport.disconnecting)

    def test_idle_connection_overtaken(self) -> None:
        """After 60 s of silence the new connection takes over and the old one is closed."""
        agent = FakeAgent(self.one)
        first, first_transport = self.connect()
        first.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.clock.advance(61)
        second, second_transport = self.connect("10.0.0.2")
        second.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.assertTrue(first_transport.disconnecting)
        self.assertFalse(second_transport.disconnecting)
        self.assertIs(self.factory.connection_for("001"), second)
        self.assertEqual(agent.read(second_transport), [control.ACK.encode()])
        first.connectionLost()
        self.assertIs(self.factory.connection_for("001"), second)
        self.assertEqual(self.factory.stats.overtaken, 1)

    def test_closed_connection_frees_slot(self) -> None:
        """When the owner's connection is lost, a new one is accepted at once."""
        agent = FakeAgent(self.one)
        first, _ = self.connect()
        first.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        first.connectionLost()
        self.assertIsNone(self.factory.connection_for("001"))
        second, transport = self.connect()
        second.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        self.assertEqual(agent.read(transport), [control.ACK.encode()])


class SharedPushTests(ChannelTestCase):
    """A stale merged.mg sum triggers the up file / chunks / close file sequence."""

    def test_push_sequence(self) -> None:
        """The agent receives the announcement, 900-byte chunks and the close message."""
        shared = self.mktemp()
        os.makedirs(shared)
        path = os.path.join(shared, "merged.mg")
        content = b"".join(b"line %d of the shared agent.conf\n" % i for i in range(100))
        with open(path, "wb") as handle:
            handle.write(content)
        md5 = hashlib.md5(content).hexdigest()
        self.merged["001"] = (md5, path)
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(_keepalive("0" * 32)))
        for _ in range(20):
            self.clock.advance(0)
        received = agent.read(transport)
        self.assertEqual(received[0], control.ACK.encode())
        self.assertEqual(received[1], f"#!-up file {md5} merged.mg\n".encode())
        self.assertEqual(received[-1], control.FILE_CLOSE.encode())
        chunks = received[2:-1]
        self.assertEqual([len(c) for c in chunks[:-1]], [900] * (len(chunks) - 1))
        self.assertEqual(b"".join(chunks), content)
        proto.dataReceived(agent.frame(_keepalive(md5)))
        for _ in range(5):
            self.clock.advance(0)
        self.assertEqual(agent.read(transport), [control.ACK.encode()])

    def test_missing_or_oversized_file(self) -> None:
        """An unreadable or too large file is not pushed and is logged."""
        self.merged["001"] = ("1" * 32, self.mktemp())
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(_keepalive("0" * 32)))
        self.clock.advance(0)
        self.assertEqual(agent.read(transport), [control.ACK.encode()])
        self.assertTrue(any("Unable to read shared file" in m for m in self.messages()))
        big = self.mktemp()
        with open(big, "wb") as handle:
            handle.write(b"x" * 2000)
        factory = self.make_factory(max_shared_file=1000)
        self.merged["001"] = ("1" * 32, big)
        proto, transport = self.connect(factory=factory)
        proto.dataReceived(agent.frame(_keepalive("0" * 32)))
        self.clock.advance(0)
        self.assertEqual(agent.read(transport), [control.ACK.encode()])
        self.assertTrue(any("larger than 1000 bytes" in m for m in self.messages()))

    def shared_file(self, lines: int = 100) -> tuple[str, bytes, str]:
        """A merged.mg on disk: its path, content and MD5."""
        shared = self.mktemp()
        os.makedirs(shared)
        path = os.path.join(shared, "merged.mg")
        content = b"".join(b"line %d of the shared agent.conf\n" % i for i in range(lines))
        with open(path, "wb") as handle:
            handle.write(content)
        return path, content, hashlib.md5(content).hexdigest()

    def test_file_read_in_thread_runner(self) -> None:
        """The file is read, and its chunks deflated, in the injected runner: while the read
        is held the keep-alive is answered and other agents are served; two agents wanting
        the file share one read, and a later push of the unchanged file does not read it
        again."""
        path, content, md5 = self.shared_file()
        threads = HeldThreads()
        self.factory = self.make_factory(run_in_thread=threads)
        self.merged["001"] = self.merged["002"] = (md5, path)
        one, two = FakeAgent(self.one), FakeAgent(self.two)
        proto_one, transport_one = self.connect()
        proto_two, transport_two = self.connect("10.0.0.5")
        proto_one.dataReceived(one.frame(_keepalive("0" * 32)))
        proto_two.dataReceived(two.frame(_keepalive("0" * 32)))
        self.clock.advance(0)
        self.assertEqual(one.read(transport_one), [control.ACK.encode()])
        self.assertEqual(two.read(transport_two), [control.ACK.encode()])
        self.assertEqual(threads.calls, [load_shared_file])
        compressed: list[bytes] = []
        compress = secure.compress_message
        self.patch(
            secure, "compress_message", lambda data: compressed.append(data) or compress(data)
        )
        threads.release()
        for _ in range(20):
            self.clock.advance(0)
        for agent, transport in ((one, transport_one), (two, transport_two)):
            received = agent.read(transport)
            self.assertEqual(received[0], f"#!-up file {md5} merged.mg\n".encode())
            self.assertEqual(b"".join(received[1:-1]), content)
        # The chunks were deflated once, in the read: sealing them for each agent compressed
        # only the announcements and the closes.
        self.assertGreater(len(received), 4)
        self.assertEqual(len(compressed), 4)
        proto_one.dataReceived(one.frame(_keepalive("1" * 32)))
        self.assertEqual(len(threads.jobs), 1)
        self.assertIsNone(read_shared_file(*threads.jobs[0][1])[1])  # the stamp is known
        threads.release()
        for _ in range(20):
            self.clock.advance(0)
        self.assertEqual(b"".join(one.read(transport_one)[2:-1]), content)

    def test_stop_cancels_pushes(self) -> None:
        """When the listener stops, a push in progress sends no more chunks."""
        path, _, md5 = self.shared_file(lines=2000)
        self.merged["001"] = (md5, path)
        ticks = Clock()  # one chunk per second of this clock
        one_step_per_tick = task.Cooperator(
            terminationPredicateFactory=lambda: lambda: True,
            scheduler=lambda step: ticks.callLater(1, step),
        )
        self.factory = self.make_factory(cooperator=one_step_per_tick)
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        self.factory.doStart()
        proto.dataReceived(agent.frame(_keepalive("0" * 32)))
        ticks.pump([1, 1, 1])
        self.assertEqual(self.factory.background.pending, ["Shared file push to agent 001"])
        self.factory.doStop()
        self.assertEqual(self.factory.background.pending, [])
        sent = agent.read(transport)
        self.assertEqual(len(sent), 4)  # ACK, the announcement and two chunks
        ticks.pump([1] * 100)
        self.assertEqual(agent.read(transport), [])
        self.assertNotIn(control.FILE_CLOSE.encode(), sent)
        proto.dataReceived(agent.frame(_keepalive("0" * 32)))  # the agent may be pushed again
        self.assertEqual(self.factory.background.pending, ["Shared file push to agent 001"])

    def test_remoted_counters(self) -> None:
        """Bytes read and written and the open TCP sessions are counted."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        self.assertEqual(self.factory.stats.tcp_sessions, 1)
        frame = agent.frame(_keepalive())
        proto.dataReceived(frame)
        self.assertEqual(self.factory.stats.recv_bytes, len(frame))
        written = len(transport.value())
        self.assertGreater(written, 0)
        self.assertEqual(self.factory.stats.sent_bytes, written - 4)  # the 4-byte length
        proto.connectionLost()
        proto.connectionLost()
        self.assertEqual(self.factory.stats.tcp_sessions, 0)

    def test_force_reconnect(self) -> None:
        """force_reconnect sends '#!-force_reconnect' to a connected agent only."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(_keepalive()))
        agent.read(transport)
        self.assertTrue(self.factory.force_reconnect("001"))
        self.assertFalse(self.factory.force_reconnect("003"))
        self.assertEqual(agent.read(transport), [b"#!-force_reconnect"])


class KeyReloadTests(ChannelTestCase):
    """Key stores are swapped atomically; agents that lost their key are disconnected."""

    def test_set_keys_drops_removed_agent(self) -> None:
        """Removing an agent's key closes its connection; its next frame is refused."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(_keepalive()))
        self.factory.set_keys(secure.KeyStore([self.two]))
        self.assertTrue(transport.disconnecting)
        again, again_transport = self.connect()
        again.dataReceived(agent.frame("1:a:b"))
        self.assertTrue(again_transport.disconnecting)

    def test_set_keys_checks_only_changed_ids(self) -> None:
        """With ``changed``, only the named agents are compared: a changed key disconnects
        its agent, an untouched agent stays connected."""
        one, three = FakeAgent(self.one), FakeAgent(self.three)
        proto_one, transport_one = self.connect()
        proto_one.dataReceived(one.frame(_keepalive()))
        proto_three, transport_three = self.connect("10.0.0.3")
        proto_three.dataReceived(three.frame(_keepalive()))
        rekeyed = secure.AgentKey("003", "three", "any", "ef" * 32)
        self.factory.set_keys(self.keys.updated([rekeyed], []), changed=["003"])
        self.assertTrue(transport_three.disconnecting)
        self.assertFalse(transport_one.disconnecting)
        self.assertIs(self.factory.keys.get("003"), rekeyed)


class AdmissionTests(ChannelTestCase):
    """Under the 1514 limits, only a valid encrypted message admits a connection."""

    def test_first_valid_message_admits(self) -> None:
        """Junk and a ping leave the connection pending (it is dropped at the deadline);
        an agent's first valid message admits it and stops the deadline."""
        from twisted.internet.testing import StringTransport as Plain

        from wazuhcluster.util.limits import LimitedFactory, ListenerLimits
        from wazuhcluster.util.logs import ClusterLog

        limits = ListenerLimits(handshake_timeout=10, max_pending_per_address=100)
        limited = LimitedFactory(
            self.factory, self.clock, ClusterLog("T", "A"), limits=limits, admit_on="protocol"
        )

        def connect(ip: str) -> tuple[Any, Plain]:
            proto = limited.buildProtocol(IPv4Address("TCP", ip, 1))
            transport = Plain(peerAddress=IPv4Address("TCP", ip, 1))
            proto.makeConnection(transport)
            return proto, transport

        stranger, stranger_transport = connect("10.0.0.9")
        stranger.dataReceived(secure.frame(control.PING))
        agent, agent_transport = connect("10.0.0.1")
        agent.dataReceived(FakeAgent(self.one).frame(control.format_startup("v4.14.7")))
        self.assertEqual((limited.admitted, len(limited.pending)), (1, 1))
        self.clock.advance(10)
        self.assertTrue(stranger_transport.disconnected)
        self.assertFalse(agent_transport.disconnecting)
        self.assertEqual(limited.late, 1)


class DatagramTests(ChannelTestCase):
    """The channel over UDP: one payload per datagram, answers to the sender's address."""

    def setUp(self) -> None:
        super().setUp()
        self.udp = AgentDatagramProtocol(self.factory)
        self.transport = FakeDatagramTransport()
        self.udp.makeConnection(self.transport)

    @staticmethod
    def payload(agent: FakeAgent, message: str) -> bytes:
        """One datagram: the agent's payload without the TCP length prefix."""
        return agent.frame(message)[4:]

    def replies(self, agent: FakeAgent) -> list[tuple[bytes, object]]:
        """What the manager sent, decrypted, with the address it went to (then cleared)."""
        out = []
        for data, address in self.transport.written:
            if data == control.PONG:
                out.append((data, address))
            else:
                message = secure.open_sealed(secure.strip_token(data), agent.entry.cipher_key)
                out.append((message.message, address))
        self.transport.written.clear()
        return out

    def test_startup_keepalive_event(self) -> None:
        """A UDP agent is acked at its source address, becomes active, and its events reach
        the sink, with the same counters as TCP."""
        agent = FakeAgent(self.one)
        source = ("10.0.0.1", 41000)
        self.udp.datagramReceived(self.payload(agent, control.format_startup("v4.14.7")), source)
        self.assertEqual(self.replies(agent), [(control.ACK.encode(), source)])
        self.udp.datagramReceived(self.payload(agent, _keepalive()), source)
        self.assertEqual(self.replies(agent), [(control.ACK.encode(), source)])
        self.assertEqual(self.sessions.status("001"), AgentStatus.ACTIVE)
        self.udp.datagramReceived(self.payload(agent, "1:/var/log/x:hello"), source)
        [event] = self.events
        self.assertEqual((event.agent_id, event.ip, event.message), ("001", "10.0.0.1", "hello"))
        self.assertEqual(event.reported_ip, "10.0.0.1")
        stats = self.factory.stats
        self.assertEqual((stats.datagrams, stats.frames, stats.control, stats.events), (3, 3, 2, 1))
        self.assertEqual(self.factory.connected_ids(), ["001"])

    def test_replies_follow_the_latest_address(self) -> None:
        """Manager messages go to the address of the agent's latest datagram."""
        agent = FakeAgent(self.one)
        self.udp.datagramReceived(self.payload(agent, _keepalive()), ("10.0.0.1", 41000))
        self.udp.datagramReceived(self.payload(agent, _keepalive()), ("10.0.0.9", 42000))
        self.transport.written.clear()
        self.assertTrue(self.factory.force_reconnect("001"))
        self.assertEqual(self.replies(agent), [(b"#!-force_reconnect", ("10.0.0.9", 42000))])

    def test_ping(self) -> None:
        """``#ping`` is answered with ``#pong`` to the sender, before any key lookup."""
        self.udp.datagramReceived(b"#ping", ("192.0.2.1", 5000))
        self.assertEqual(self.transport.written, [(control.PONG, ("192.0.2.1", 5000))])

    def test_garbage_dropped_and_counted(self) -> None:
        """Malformed, unknown, undecryptable, empty and oversized datagrams are dropped and
        counted; the listener goes on serving the next good one."""
        agent = FakeAgent(self.one)
        source = ("10.0.0.1", 41000)
        bad = [
            b"",
            b"garbage",
            b"!abc!#AES:xx",
            b"!999!#AES:" + b"x" * 32,
            b"!001!#AES:" + os.urandom(48),
            b"!001!",
            b"\x00" * (secure.MAX_FRAME + 1),
            self.payload(FakeAgent(secure.AgentKey("001", "one", "any", "ef" * 32)), "1:a:b"),
        ]
        for datagram in bad:
            self.udp.datagramReceived(datagram, source)
        self.assertEqual(self.factory.stats.dropped, len(bad))
        self.assertEqual(self.events, [])
        self.assertEqual(self.transport.written, [])
        self.udp.datagramReceived(self.payload(agent, "1:a:fine"), source)
        self.assertEqual([e.message for e in self.events], ["fine"])

    def test_unexpected_error_is_contained(self) -> None:
        """A failure inside the handling of one datagram is logged and counted, not raised."""
        self.patch(self.factory, "version_refusal", lambda startup: 1 / 0)
        agent = FakeAgent(self.one)
        startup = self.payload(agent, control.format_startup("v4.14.7"))
        self.udp.datagramReceived(startup, ("10.0.0.1", 1))
        self.assertEqual(self.factory.stats.dropped, 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.udp.datagramReceived(self.payload(agent, "1:a:after"), ("10.0.0.1", 1))
        self.assertEqual([e.message for e in self.events], ["after"])

    def test_udp_and_tcp_share_the_slot(self) -> None:
        """A live TCP connection keeps the agent's slot against UDP; a UDP agent's slot goes
        to its next message on either protocol; a UDP agent that times out loses it."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(_keepalive()))
        self.udp.datagramReceived(self.payload(agent, "1:a:udp"), ("10.0.0.1", 41000))
        self.assertEqual(self.factory.stats.refused, 1)
        self.assertIs(self.factory.connection_for("001"), proto)
        proto.connectionLost()
        self.udp.datagramReceived(self.payload(agent, _keepalive()), ("10.0.0.1", 41000))
        owner = self.factory.connection_for("001")
        assert owner is not None
        self.assertTrue(owner.datagram)
        self.clock.advance(self.sessions.disconnection_time + 1)
        self.assertEqual(self.factory.check_disconnections(), ["001"])
        self.assertIsNone(self.factory.connection_for("001"))

    def test_shutdown_frees_the_slot(self) -> None:
        """A UDP agent's shutdown disconnects it and frees its slot at once."""
        agent = FakeAgent(self.one)
        self.udp.datagramReceived(self.payload(agent, _keepalive()), ("10.0.0.1", 41000))
        self.udp.datagramReceived(self.payload(agent, control.SHUTDOWN), ("10.0.0.1", 41000))
        self.assertEqual(self.sessions.status("001"), AgentStatus.DISCONNECTED)
        self.assertEqual(self.factory.connected_ids(), [])

    def test_ipv4_mapped_source(self) -> None:
        """An IPv4-mapped source (an IPv6 socket) is matched against keys as IPv4."""
        agent = FakeAgent(self.two, with_id=False)
        self.udp.datagramReceived(self.payload(agent, "1:a:mapped"), ("::ffff:10.0.0.5", 1))
        [event] = self.events
        self.assertEqual((event.agent_id, event.ip), ("002", "10.0.0.5"))

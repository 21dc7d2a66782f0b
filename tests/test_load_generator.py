"""Tests for wazuhcluster.scripts.load_generator against the real agent channel, over iosim."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents import secure
from wazuhcluster.agents.channel import AgentChannelFactory, AgentEvent
from wazuhcluster.agents.sessions import AgentStatus, SessionTable
from wazuhcluster.scripts import load_generator as lg
from wazuhcluster.util.threads import run_inline

KEYS = [secure.AgentKey(f"{i:03}", f"load-{i}", "any", f"{i:02x}" * 32) for i in range(1, 21)]
LINES = [
    b"1:/var/log/auth.log:Nov 26 10:00:00 web1 sshd[1]: Failed password for root",
    b"1:/var/log/syslog:Nov 26 10:00:00 web1 CRON[2]: session opened",
]


class Harness:
    """A real channel factory and in-memory connections to it for generated agents."""

    def __init__(self, merged: dict[str, tuple[str, str]] | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.sessions = SessionTable(self.clock, "w1", merged_for=(merged or {}).get)
        self.events: list[AgentEvent] = []
        self.channel = AgentChannelFactory(
            secure.KeyStore(KEYS),
            self.sessions,
            self.events.append,
            self.clock,
            run_in_thread=run_inline,
        )
        self.pumps: list[iosim.IOPump] = []
        self.clients: list[Protocol] = []
        self.refuse = False

    def connect(self, agent: lg.LoadAgent, factory: Factory[Protocol]) -> Deferred[Any]:
        """Connect a client protocol to a new server protocol through an IOPump."""
        if self.refuse:
            return fail(ConnectionRefusedError())
        address = IPv4Address("TCP", "10.0.0.1", 40000 + len(self.pumps))
        client = factory.buildProtocol(address)
        assert client is not None
        server = self.channel.buildProtocol(address)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True, peerAddress=address),
            client,
            iosim.FakeTransport(client, False, hostAddress=address),
            greet=False,
        )
        self.pumps.append(pump)
        self.clients.append(client)
        return succeed(client)

    def pump(self) -> None:
        """Move bytes both ways until quiet (the channel's cooperative pushes included)."""
        for _ in range(100):
            self.clock.advance(0)
            moved = [pump.pump() for pump in self.pumps]
            if not any(moved):
                break

    def run(self, seconds: float, step: float = 0.01) -> None:
        """Advance time in small steps, pumping between them."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.pump()

    def generator(
        self,
        count: int = 5,
        lines: list[bytes] | None = None,
        merged: dict[str, str] | None = None,
        **options: Any,
    ) -> lg.LoadGenerator:
        """A generator of the first ``count`` keys wired to this harness."""
        agents = lg.build_agents(
            KEYS[:count], [lg.Target("127.0.0.1", 1514)], lines, merged or {}, 1000
        )
        return lg.LoadGenerator(agents, self.clock, self.connect, **options)


class ProtocolTests(SynchronousTestCase):
    """The generated agents speak the protocol the channel expects."""

    def test_handshake_and_keepalives(self) -> None:
        """Every agent's startup is acked, it becomes active, sends its started event, and
        keep-alives then arrive once per interval per agent, spread over the interval."""
        harness = Harness()
        generator = harness.generator(count=20, keepalive_interval=1.0)
        generator.start()
        harness.pump()
        self.assertEqual(generator.ready, 20)
        self.assertEqual(harness.channel.connected_agents, 20)
        self.assertTrue(
            all(harness.sessions.status(k.agent_id) == AgentStatus.ACTIVE for k in KEYS[:20])
        )
        self.assertEqual(generator.stats.keepalives_sent, 20)
        self.assertEqual(generator.stats.events_sent, 20)
        self.assertEqual(
            sorted(e.message for e in harness.events),
            sorted(f"ossec: Agent started: '{k.name}->any'." for k in KEYS[:20]),
        )
        harness.run(0.1, step=0.1)  # one slice: 20 agents / (1 s × 10 slices) = 2
        self.assertEqual(generator.stats.keepalives_sent, 22)
        harness.run(2.9, step=0.1)
        self.assertEqual(generator.stats.keepalives_sent, 80)
        self.assertEqual(generator.stats.acks_received, 100)  # startups + keep-alives
        self.assertEqual(generator.stats.undecryptable, 0)

    def test_events_at_rate_counted_exactly(self) -> None:
        """The offered rate is shared by the agents and every event sent reaches the sink."""
        harness = Harness()
        generator = harness.generator(count=5, lines=LINES, started_event=False)
        generator.start()
        harness.pump()
        generator.set_rate(500.0)
        harness.run(2.0)
        sent = generator.stats.events_sent
        self.assertTrue(990 <= sent <= 1000, sent)
        self.assertEqual(len(harness.events), sent)
        self.assertEqual(generator.stats.held_back, 0)
        by_agent = {e.agent_id for e in harness.events}
        self.assertEqual(by_agent, {k.agent_id for k in KEYS[:5]})
        self.assertEqual(
            {(e.location, e.message) for e in harness.events},
            {
                ("/var/log/auth.log", "Nov 26 10:00:00 web1 sshd[1]: Failed password for root"),
                ("/var/log/syslog", "Nov 26 10:00:00 web1 CRON[2]: session opened"),
            },
        )
        generator.set_rate(0)
        harness.run(0.5)
        self.assertEqual(generator.stats.events_sent, sent)

    def test_rate_with_count(self) -> None:
        """A rate given with a count sends exactly that many events, then falls to 0."""
        harness = Harness()
        generator = harness.generator(count=3, lines=LINES, started_event=False)
        generator.start()
        harness.pump()
        generator.set_rate(1000.0, 55)
        harness.run(0.5)
        self.assertEqual(generator.stats.events_sent, 55)
        self.assertEqual(len(harness.events), 55)
        self.assertEqual(generator.rate, 0.0)

    def test_uneven_share_rotates(self) -> None:
        """Fewer events than agents per tick: the remainder rotates over the agents."""
        harness = Harness()
        generator = harness.generator(count=4, lines=LINES, started_event=False)
        generator.start()
        harness.pump()
        for _ in range(4):
            generator.send_events(1)
        harness.pump()
        self.assertEqual(sorted(e.agent_id for e in harness.events), ["001", "002", "003", "004"])

    def test_presealed_events_used_first(self) -> None:
        """Events sealed ahead of time are sent before any is sealed live, and decrypt."""
        harness = Harness()
        generator = harness.generator(count=4, lines=LINES, started_event=False)
        self.assertEqual(generator.preseal(42), 42)
        self.assertEqual(sorted(len(a.sealed) for a in generator.agents), [10, 10, 11, 11])
        generator.start()
        harness.pump()
        generator.send_events(40)
        harness.pump()
        self.assertEqual(len(harness.events), 40)
        self.assertEqual(generator.stats.events_sealed_live, 0)
        generator.send_events(8)
        harness.pump()
        self.assertEqual(len(harness.events), 48)
        self.assertEqual(generator.stats.events_sealed_live, 6)  # 2 pre-sealed were left
        self.assertEqual(generator.summary()["presealed_left"], 0)

    def test_paused_agent_holds_back(self) -> None:
        """An agent whose transport is full sends nothing; its share is counted held back."""
        harness = Harness()
        generator = harness.generator(count=2, lines=LINES, started_event=False)
        generator.start()
        harness.pump()
        first = generator.agents[0]
        assert first.proto is not None
        first.proto.pauseProducing()
        generator.send_events(10)
        harness.pump()
        self.assertEqual(generator.stats.events_sent, 5)
        self.assertEqual(generator.stats.held_back, 5)
        self.assertEqual({e.agent_id for e in harness.events}, {"002"})
        first.proto.resumeProducing()
        generator.send_events(10)
        harness.pump()
        self.assertEqual(len(harness.events), 15)

    def test_merged_sum_held_and_pushed(self) -> None:
        """An agent starting with its group's merged.mg sum gets no push; one without it gets
        the file, checks its MD5 and reports it in the next keep-alive."""
        path = os.path.abspath(self.mktemp())
        content = b"#default\n" + b"!12 agent.conf\n<agent_config/>" * 100
        with open(path, "wb") as handle:
            handle.write(content)
        md5 = hashlib.md5(content).hexdigest()
        harness = Harness({"001": (md5, path), "002": (md5, path)})
        generator = harness.generator(count=2, merged={"001": md5}, keepalive_interval=0.2)
        generator.start()
        harness.pump()
        self.assertEqual(harness.channel.stats.pushes, 1)
        self.assertEqual(generator.stats.files_received, 1)
        self.assertEqual([a.merged_sum for a in generator.agents], [md5, md5])
        harness.run(0.5, step=0.1)
        for agent_id in ("001", "002"):
            session = harness.sessions.get(agent_id)
            assert session is not None
            self.assertEqual(session.group_config_status, "synced")
        self.assertEqual(harness.channel.stats.pushes, 1)

    def test_bad_push_counted(self) -> None:
        """A pushed file whose content does not match its MD5 is counted bad, not kept."""
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(b"content")
        harness = Harness({"001": ("f" * 32, path)})
        generator = harness.generator(count=1)
        generator.start()
        harness.pump()
        self.assertEqual(generator.stats.files_bad, 1)
        self.assertIsNone(generator.agents[0].merged_sum)

    def test_reconnects_and_stop(self) -> None:
        """A refused connection is retried; a lost one reconnects; stop sends the shutdown
        and no agent reconnects after it."""
        harness = Harness()
        harness.refuse = True
        generator = harness.generator(count=2, reconnect_delay=1.0)
        generator.start()
        harness.pump()
        self.assertEqual(generator.stats.connection_failures, 2)
        harness.refuse = False
        harness.run(1.0, step=0.5)
        self.assertEqual(generator.ready, 2)
        self.assertTrue(harness.channel.force_reconnect("001"))
        harness.pump()
        self.assertEqual(generator.ready, 1)
        self.assertEqual(generator.stats.force_reconnects, 1)
        harness.run(1.0, step=0.5)
        self.assertEqual(generator.ready, 2)
        self.assertEqual(generator.stats.connections, 3)
        generator.stop()
        harness.pump()
        self.assertEqual(harness.sessions.status("001"), AgentStatus.DISCONNECTED)
        harness.run(3.0, step=0.5)
        self.assertEqual(generator.stats.connections, 3)
        self.assertEqual(harness.channel.connected_agents, 0)


class BuildingTests(SynchronousTestCase):
    """Targets, agents and event files."""

    def test_parse_target(self) -> None:
        """HOST:PORT and HOST:PORT=FIRST-LAST are read; anything else is refused."""
        self.assertEqual(lg.parse_target("127.0.0.1:1514"), lg.Target("127.0.0.1", 1514))
        self.assertEqual(lg.parse_target("10.0.0.2:2000=5-9"), lg.Target("10.0.0.2", 2000, 5, 9))
        for bad in ("nohost", "h:p", "h:1=9-5", "h:1=3"):
            self.assertRaises(ValueError, lg.parse_target, bad)

    def test_build_agents_by_target(self) -> None:
        """Each agent goes to the first target that wants its id; ids outside every span are
        left out; each agent starts at its own offset in the lines (by id); each target's
        agents are spread through the list; limit caps the count."""
        targets = [lg.Target("a", 1, 1, 3), lg.Target("b", 2, 3, 5)]
        agents = lg.build_agents(KEYS, targets, LINES, {"002": "s" * 32}, 0)
        self.assertEqual(
            [(a.key.agent_id, a.host) for a in agents],
            [("001", "a"), ("004", "b"), ("002", "a"), ("005", "b"), ("003", "a")],
        )
        by_id = {a.key.agent_id: a for a in agents}
        self.assertEqual(
            [by_id[i].merged_sum for i in ("001", "002", "003")], [None, "s" * 32, None]
        )
        first, second = by_id["001"].events, by_id["002"].events
        assert first is not None and second is not None
        self.assertEqual(next(first), LINES[0])
        self.assertEqual(next(second), LINES[1])
        limited = lg.build_agents(KEYS, [lg.Target("a", 1)], None, {}, 0, limit=3)
        self.assertEqual(len(limited), 3)
        self.assertIsNone(limited[0].next_event())

    def test_each_target_at_an_even_pace(self) -> None:
        """However the ids are split between targets, any stretch of the list (what the
        keep-alive loop sends in one tick) holds each target's share of it: 15 agents for
        one node and 5 for another give one of the second in every four."""
        targets = [lg.Target("a", 1, 1, 15), lg.Target("b", 2, 16, 20)]
        agents = lg.build_agents(KEYS, targets, None, {}, 0)
        hosts = [agent.host for agent in agents]
        for start in range(0, 20, 4):
            self.assertEqual(hosts[start : start + 4].count("b"), 1, hosts)
        self.assertEqual(
            [a.key.agent_id for a in agents if a.host == "a"], [f"{i:03}" for i in range(1, 16)]
        )

    def test_single_host_key_has_no_id_prefix(self) -> None:
        """An agent registered with one IP sends payloads without the ``!id!`` prefix."""
        key = secure.AgentKey("007", "host", "10.0.0.1", "ab" * 32)
        agent = lg.LoadAgent(key, "h", 1)
        self.assertEqual(agent.prefix, secure.AES_TOKEN)
        frame = agent.seal(b"hello")
        opened = secure.open_sealed(secure.strip_token(frame[4:]), key.cipher_key)
        self.assertEqual(opened.message, b"hello")

    def test_event_lines(self) -> None:
        """Bare lines become syslog events; shaped lines are kept; empty files refused."""
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("plain line\n\n1:/var/log/x:shaped\n")
        self.assertEqual(
            lg.event_lines(path), [b"1:/var/log/syslog:plain line", b"1:/var/log/x:shaped"]
        )
        with open(path, "w") as handle:
            handle.write("\n")
        self.assertRaises(ValueError, lg.event_lines, path)


class ControlTests(SynchronousTestCase):
    """Commands on stdin."""

    def test_commands(self) -> None:
        """rate, preseal and stats answer with a JSON line; stop and a closed stdin stop."""
        harness = Harness()
        generator = harness.generator(count=2, lines=LINES)
        stops: list[bool] = []
        lines = lg.ControlLines(generator, lambda: stops.append(True))
        transport = StringTransport()
        lines.makeConnection(transport)
        for command in (b"rate 250 7", b"preseal 10", b"stats", b"bogus", b"rate x", b""):
            lines.lineReceived(command)
        answers = [json.loads(line) for line in transport.value().splitlines()]
        self.assertEqual(answers[0], {"rate": 250.0})
        self.assertEqual(answers[1], {"presealed": 10})
        self.assertEqual(answers[2]["agents"], 2)
        self.assertEqual(answers[2]["presealed_left"], 10)
        self.assertIn("error", answers[3])
        self.assertIn("error", answers[4])
        self.assertEqual(len(answers), 5)
        self.assertEqual(generator.rate, 250.0)
        lines.lineReceived(b"stop")
        lines.connectionLost()
        self.assertEqual(stops, [True, True])

    def test_parse_args(self) -> None:
        """Targets are parsed; a bad one or a bad number is a usage error."""
        options = lg.parse_args(["--keys", "k", "--target", "h:1=1-2", "--target", "h:2"])
        self.assertEqual(options.targets, [lg.Target("h", 1, 1, 2), lg.Target("h", 2)])
        self.assertEqual(lg.parse_args(["--keys", "k"]).targets, [lg.Target("127.0.0.1", 1514)])
        self.patch(sys, "stderr", io.StringIO())
        for bad in (["--target", "x"], ["--keepalive", "0"], ["--eps", "-1"]):
            with self.assertRaises(SystemExit):
                lg.parse_args(["--keys", "k", *bad])

"""Tests for wazuhcluster.scripts.agent_simulator against the real agent channel, over iosim."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import types
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents import control, secure
from wazuhcluster.agents.channel import AgentChannelFactory, AgentEvent
from wazuhcluster.agents.datagram import AgentDatagramProtocol
from wazuhcluster.agents.sessions import AgentStatus, SessionTable
from wazuhcluster.scripts import agent_simulator as simulator
from wazuhcluster.util.threads import run_inline

KEYS = [secure.AgentKey(f"{i:03}", f"sim-{i}", "any", f"{i:02x}" * 32) for i in range(1, 4)]


class Harness:
    """A channel factory and in-memory connections to it for simulated agents."""

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
        self.refuse = False

    def connect(self, factory: Factory[Protocol]) -> Deferred[Any]:
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
        return succeed(client)

    def pump(self) -> None:
        """Move bytes both ways until quiet (the channel's cooperative pushes included)."""
        for _ in range(50):
            self.clock.advance(0)
            moved = [pump.pump() for pump in self.pumps]
            if not any(moved) and not self.clock.getDelayedCalls():
                break

    def run(self, seconds: float, step: float = 0.1) -> None:
        """Advance time in small steps, pumping between them."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.pump()

    def agent(
        self, key: secure.AgentKey, eps: float = 0.0, keepalive: float = 10.0
    ) -> simulator.SimulatedAgent:
        """A simulated agent wired to this harness."""
        return simulator.SimulatedAgent(
            key,
            self.clock,
            self.connect,
            simulator.SimConfig(keepalive_interval=keepalive, eps=eps, reconnect_delay=2.0),
            events=simulator.generated_events(key.name),
        )


class ProtocolTests(SynchronousTestCase):
    """The simulated agent speaks the protocol the channel expects."""

    def test_handshake_and_keepalive(self) -> None:
        """Startup is acked, the agent becomes active and its start event arrives."""
        harness = Harness()
        agent = harness.agent(KEYS[0])
        agent.start()
        harness.pump()
        self.assertTrue(agent.ready)
        self.assertEqual(harness.sessions.status("001"), AgentStatus.ACTIVE)
        self.assertEqual(agent.stats.startups_sent, 1)
        self.assertEqual(agent.stats.keepalives_sent, 1)
        self.assertEqual(agent.stats.acks_received, 2)
        self.assertEqual(harness.events[0].message, "ossec: Agent started: 'sim-1->any'.")
        session = harness.sessions.get("001")
        assert session is not None and session.keepalive is not None
        self.assertEqual(session.keepalive.os.platform, "ubuntu")
        self.assertEqual(session.keepalive.version, "Wazuh v4.14.7")
        harness.run(30, step=1.0)
        self.assertEqual(agent.stats.keepalives_sent, 4)

    def test_events_at_rate(self) -> None:
        """Events go out at the configured rate and reach the sink."""
        harness = Harness()
        agent = harness.agent(KEYS[0], eps=20.0)
        agent.start()
        harness.pump()
        harness.run(2.0)
        sent = agent.stats.events_sent
        self.assertTrue(40 <= sent <= 42, sent)
        self.assertEqual(len(harness.events), sent)
        self.assertTrue(all(e.queue == "1" for e in harness.events))

    def test_shared_file_push(self) -> None:
        """A stale merged.mg is pushed, verified, and the next keep-alive reports it synced."""
        path = os.path.abspath(self.mktemp())
        content = b"<agent_config>\n" + b"  <!-- filler -->\n" * 200 + b"</agent_config>\n"
        with open(path, "wb") as handle:
            handle.write(content)
        md5 = hashlib.md5(content).hexdigest()
        harness = Harness({"001": (md5, path)})
        agent = harness.agent(KEYS[0], keepalive=5.0)
        agent.start()
        harness.pump()
        self.assertEqual(agent.stats.files_received, 1)
        self.assertEqual(agent.merged_sum, md5)
        self.assertEqual(agent.shared_files, {"merged.mg": content})
        harness.run(5.0, step=1.0)
        session = harness.sessions.get("001")
        assert session is not None
        self.assertEqual(session.group_config_status, "synced")

    def test_bad_push_detected(self) -> None:
        """A file whose content does not match the announced MD5 is counted as bad."""
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(b"content")
        harness = Harness({"001": ("f" * 32, path)})
        agent = harness.agent(KEYS[0])
        agent.start()
        harness.pump()
        self.assertEqual(agent.stats.files_bad, 1)
        self.assertIsNone(agent.merged_sum)

    def test_execd_commands_are_counted(self) -> None:
        """'#!-execd ...' (a restart or an active response) is counted, not run."""
        harness = Harness()
        agent = harness.agent(KEYS[0])
        agent.start()
        harness.pump()
        self.assertTrue(harness.channel.send_to_agent("001", '#!-execd {"command": "x"}'))
        self.assertTrue(harness.channel.send_to_agent("001", "#!-req 1 getconfig"))
        harness.pump()
        self.assertEqual(agent.stats.execd_received, 1)
        self.assertTrue(agent.ready)

    def test_requests_answered_like_a_4x_agent(self) -> None:
        """The manager's '#!-req' questions get a 4.x agent's answers, matched by counter."""
        harness = Harness()
        agent = harness.agent(KEYS[0], eps=5.0)
        agent.start()
        harness.run(1.0)
        config = harness.channel.requests.ask("001", "agent getconfig client")
        state = harness.channel.requests.ask("001", "agent getstate")
        logs = harness.channel.requests.ask("001", "logcollector getstate")
        missing = harness.channel.requests.ask("001", "auth getconfig auth")
        harness.pump()
        client = json.loads(self.successResultOf(config).removeprefix("ok "))["client"]
        self.assertEqual((client["crypto_method"], client["server"][0]["protocol"]), ("aes", "tcp"))
        data = json.loads(self.successResultOf(state))["data"]
        self.assertEqual(data["status"], "connected")
        self.assertEqual(data["msg_count"], agent.stats.events_sent)
        self.assertGreater(data["msg_count"], 0)
        files = json.loads(self.successResultOf(logs))["data"]["global"]["files"]
        self.assertEqual(files[0]["events"], agent.stats.events_sent)
        self.assertEqual(self.successResultOf(missing), "err No such file or directory")
        self.assertEqual(agent.stats.requests_answered, 4)

    def test_force_reconnect(self) -> None:
        """On '#!-force_reconnect' the agent closes, reconnects and sends a new startup."""
        harness = Harness()
        agent = harness.agent(KEYS[0])
        agent.start()
        harness.pump()
        self.assertTrue(harness.channel.force_reconnect("001"))
        harness.pump()
        self.assertEqual(agent.stats.force_reconnects, 1)
        self.assertFalse(agent.ready)
        harness.run(2.5)
        self.assertTrue(agent.ready)
        self.assertEqual(agent.stats.startups_sent, 2)
        self.assertEqual(agent.stats.connections, 2)
        self.assertIsNotNone(harness.channel.connection_for("001"))

    def test_connection_refused_retries(self) -> None:
        """A refused connection is retried after the reconnect delay."""
        harness = Harness()
        harness.refuse = True
        agent = harness.agent(KEYS[0])
        agent.start()
        harness.run(2.5)
        self.assertEqual(agent.stats.connection_failures, 2)
        harness.refuse = False
        harness.run(2.0)
        self.assertTrue(agent.ready)

    def test_stop_sends_shutdown(self) -> None:
        """Stopping sends the shutdown, the node marks the agent disconnected, no reconnect."""
        harness = Harness()
        agent = harness.agent(KEYS[0], eps=5.0)
        agent.start()
        harness.pump()
        agent.stop()
        harness.pump()
        self.assertEqual(agent.stats.shutdowns_sent, 1)
        self.assertEqual(harness.sessions.status("001"), AgentStatus.DISCONNECTED)
        harness.run(10.0, step=1.0)
        self.assertEqual(agent.stats.connections, 1)
        self.assertIsNone(harness.channel.connection_for("001"))

    def test_wrong_key_agent_never_ready(self) -> None:
        """An agent with a key the node does not know is refused and never becomes ready."""
        harness = Harness()
        impostor = secure.AgentKey("001", "sim-1", "any", "00" * 32)
        agent = harness.agent(impostor)
        agent.start()
        harness.pump()
        self.assertFalse(agent.ready)
        self.assertEqual(agent.stats.disconnections, 1)

    def test_simulator_summary(self) -> None:
        """The simulator starts all agents and sums their statistics."""
        harness = Harness()
        sim = simulator.Simulator([harness.agent(key, eps=10.0) for key in KEYS])
        sim.start(harness.clock, spread=0.3)
        harness.run(1.0)
        sim.stop()
        harness.pump()
        summary = sim.summary()
        self.assertEqual(summary["agents"], 3)
        self.assertEqual(summary["startups_sent"], 3)
        self.assertEqual(summary["shutdowns_sent"], 3)
        stopped = [e for e in harness.events if e.location == "wazuh-remoted"]
        self.assertEqual(len(stopped), 3)
        self.assertEqual(summary["events_sent"], len(harness.events) - len(stopped))
        self.assertEqual(harness.sessions.counts()[AgentStatus.DISCONNECTED], 3)


class _LoopbackPort:
    """A simulated agent's UDP socket wired in memory to the channel's UDP protocol."""

    def __init__(self, reactor: _LoopbackUDP, proto: Any, number: int) -> None:
        self.reactor = reactor
        self.proto = proto
        self.address = ("10.0.0.1", 41000 + number)
        self.node: tuple[str, int] | None = None
        self.open = True

    def connect(self, host: str, port: int) -> None:
        """Remember the node's address (a connected UDP socket)."""
        self.node = (host, port)

    def write(self, data: bytes, addr: Any = None) -> None:
        """Queue a datagram to the node."""
        self.reactor.queue.append(("up", self, data))

    def getHost(self) -> IPv4Address:  # noqa: N802 - Twisted's name
        """The agent's local address."""
        return IPv4Address("UDP", *self.address)

    def stopListening(self) -> None:  # noqa: N802 - Twisted's name
        """Close the socket."""
        self.open = False


class _LoopbackUDP:
    """listenUDP for simulated agents and the node's datagram protocol, in memory."""

    def __init__(self, harness: Harness) -> None:
        self.node = AgentDatagramProtocol(harness.channel)
        self.node.makeConnection(self)  # type: ignore[arg-type]
        self.ports: list[_LoopbackPort] = []
        self.queue: list[tuple[str, Any, bytes]] = []

    def listenUDP(self, port: int, proto: Any, interface: str = "", maxPacketSize: int = 0) -> Any:  # noqa: N802
        """A new agent socket; the protocol starts at once."""
        bound = _LoopbackPort(self, proto, len(self.ports))
        self.ports.append(bound)
        proto.makeConnection(bound)
        return bound

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """The node answers: deliver to the agent socket bound to ``addr``."""
        self.queue.append(("down", addr, data))

    def pump(self) -> None:
        """Deliver every queued datagram, both ways, until quiet."""
        while self.queue:
            way, target, data = self.queue.pop(0)
            if way == "up":  # sent before any close: the datagram has left
                self.node.datagramReceived(data, target.address)
            elif way == "down":
                for port in self.ports:
                    if port.address == target and port.open:
                        port.proto.datagramReceived(data, ("10.0.0.254", 1514))


class UdpTests(SynchronousTestCase):
    """Simulated agents over UDP (``--udp``)."""

    def test_udp_agent_handshake_events_and_shutdown(self) -> None:
        """Startup acked and keep-alives over datagrams, its events arrive with its reported
        IP, a force_reconnect opens a new socket, and stop sends the shutdown."""
        harness = Harness()
        network = _LoopbackUDP(harness)
        agent = simulator.SimulatedAgent(
            KEYS[0],
            harness.clock,
            simulator.udp_connector(network, "10.0.0.254", 1514),  # type: ignore[arg-type]
            simulator.SimConfig(keepalive_interval=10.0, eps=5.0, reconnect_delay=2.0),
            events=simulator.generated_events(KEYS[0].name),
        )
        agent.start()
        network.pump()
        self.assertTrue(agent.ready)
        self.assertEqual(harness.sessions.status("001"), AgentStatus.ACTIVE)
        for _ in range(10):
            harness.clock.advance(0.2)
            network.pump()
        self.assertGreaterEqual(len(harness.events), 8)
        self.assertEqual(harness.events[-1].reported_ip, "10.0.0.1")
        stats = harness.channel.stats
        self.assertEqual(stats.datagrams, stats.events + stats.control)
        asked = harness.channel.requests.ask("001", "com getconfig active-response")
        network.pump()
        self.assertIn('"active-response"', self.successResultOf(asked))
        self.assertEqual(agent.stats.requests_answered, 1)  # the manager's ack needs no answer
        self.assertTrue(harness.channel.force_reconnect("001"))
        network.pump()
        self.assertFalse(network.ports[0].open)
        harness.clock.advance(2.0)
        network.pump()
        self.assertTrue(agent.ready)
        self.assertEqual(agent.stats.connections, 2)
        agent.stop()
        network.pump()
        self.assertEqual(harness.sessions.status("001"), AgentStatus.DISCONNECTED)

    def test_udp_option_needs_an_address(self) -> None:
        """``--udp`` is accepted with an IP manager and refused with a host name."""
        options = simulator.parse_args(["--udp", "--manager", "127.0.0.1", "--keys", "k"])
        self.assertTrue(options.udp)
        self.patch(sys, "stderr", io.StringIO())
        self.assertRaises(
            SystemExit, simulator.parse_args, ["--udp", "--manager", "node.example", "--keys", "k"]
        )


class HelperTests(SynchronousTestCase):
    """Event sources, options and enrollment helpers."""

    def test_generated_events(self) -> None:
        """Generated events are valid '<queue>:<location>:<message>' lines, reproducible."""
        first = list(zip(range(20), simulator.generated_events("a"), strict=False))
        again = list(zip(range(20), simulator.generated_events("a"), strict=False))
        self.assertEqual(first, again)
        for _, event in first:
            self.assertEqual(control.parse_event(event).location, "/var/log/auth.log")

    def test_read_event_lines(self) -> None:
        """Plain lines are wrapped; shaped lines are kept; empty files are refused."""
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("plain log line\n\n8:syscheck:File changed\n")
        self.assertEqual(
            simulator.read_event_lines(path),
            ["1:/var/log/simulated.log:plain log line", "8:syscheck:File changed"],
        )
        self.assertRaises(ValueError, simulator.read_event_lines, path, max_bytes=5)
        empty = self.mktemp()
        open(empty, "w").close()
        self.assertRaises(ValueError, simulator.read_event_lines, empty)

    def test_parse_args(self) -> None:
        """Options are parsed and validated."""
        options = simulator.parse_args(["--agents", "5", "--eps", "100", "--keys", "k"])
        self.assertEqual((options.agents, options.eps, options.keys), (5, 100.0, "k"))
        self.assertEqual((options.port, options.enroll_port), (1514, 1515))
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.assertRaises(SystemExit, simulator.parse_args, ["--agents", "0"])
        self.assertRaises(SystemExit, simulator.parse_args, ["--keepalive", "0"])

    def test_main_bad_events_file(self) -> None:
        """A missing events file is a clear error and exit status 2."""
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.assertEqual(simulator.main(["--events", self.mktemp(), "--keys", "x"]), 2)
        self.assertIn("wazuh-agent-sim:", stderr.getvalue())

    def test_save_keys(self) -> None:
        """Saved keys load back as a client.keys file readable by the owner only."""
        path = self.mktemp()
        simulator.save_keys(path, KEYS)
        self.assertEqual(list(secure.KeyStore.load(path)), KEYS)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

    def test_key_from_enrollment(self) -> None:
        """Keys are read from tuples, strings, mappings and objects."""
        expected = secure.AgentKey("007", "n", "any", "k")
        self.assertEqual(simulator._key_from_enrollment(("007", "n", "any", "k")), expected)
        self.assertEqual(simulator._key_from_enrollment("007 n any k"), expected)
        self.assertEqual(
            simulator._key_from_enrollment({"id": "007", "name": "n", "ip": "any", "key": "k"}),
            expected,
        )
        obj = types.SimpleNamespace(agent_id="007", name="n", ip="any", key="k")
        self.assertEqual(simulator._key_from_enrollment(obj), expected)
        self.assertRaises(TypeError, simulator._key_from_enrollment, 42)

    def test_enroll_agents_with_client(self) -> None:
        """enroll_agents calls request_enrollment per name and keeps failures apart."""
        calls: list[tuple[str, dict[str, Any]]] = []

        def request_enrollment(
            reactor: object, host: str, port: int, name: str, **kwargs: Any
        ) -> Deferred[Any]:
            calls.append((name, kwargs))
            if name == "bad":
                return fail(RuntimeError("ERROR: Duplicate agent name: bad"))
            return succeed((f"{len(calls):03}", name, "any", "k" * 64))

        module = types.ModuleType(simulator.ENROLLMENT_CLIENT)
        module.request_enrollment = request_enrollment  # type: ignore[attr-defined]
        saved = sys.modules.get(simulator.ENROLLMENT_CLIENT)
        sys.modules[simulator.ENROLLMENT_CLIENT] = module
        try:
            d = simulator.enroll_agents(
                Clock(), "h", 1515, ["a", "bad", "c"], "pw", ["g1"], "v4.14.7"
            )
        finally:
            if saved is None:
                del sys.modules[simulator.ENROLLMENT_CLIENT]
            else:
                sys.modules[simulator.ENROLLMENT_CLIENT] = saved
        results = self.successResultOf(d)
        self.assertEqual(results[0], secure.AgentKey("001", "a", "any", "k" * 64))
        failure = results[1]
        assert isinstance(failure, Failure)
        self.assertIn("Duplicate", failure.getErrorMessage())
        self.assertEqual(calls[0][1], {"password": "pw", "groups": ("g1",), "version": "v4.14.7"})


class HomeOptionTests(SynchronousTestCase):
    """--home takes the ports from a local node's configuration."""

    def test_ports_from_home(self) -> None:
        """The node's <auth><port> and secure <remote><port> become the defaults."""
        from pathlib import Path

        from wazuhcluster.scripts.agent_simulator import parse_args

        home = Path(self.mktemp())
        (home / "etc").mkdir(parents=True)
        (home / "etc" / "wazuh-manager.conf").write_text(
            "<wazuh_config><auth><port>2515</port></auth>"
            "<remote><connection>secure</connection><port>2514</port></remote></wazuh_config>"
        )
        options = parse_args(["--home", str(home)])
        self.assertEqual((options.port, options.enroll_port), (2514, 2515))
        explicit = parse_args(["--home", str(home), "--port", "3000"])
        self.assertEqual(explicit.port, 3000)
        self.assertEqual(parse_args([]).port, 1514)

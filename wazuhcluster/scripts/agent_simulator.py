"""``wazuh-agent-sim``: many simulated Wazuh 4.x agents in one Twisted process.

Each simulated agent connects to a node's agent channel (TCP 1514, or UDP with ``--udp``), sends
``#!-agent startup``, waits for the ack, then sends keep-alives every ``--keepalive``
seconds and events at its share of ``--eps``. It accepts shared-file pushes (checking the
announced MD5), obeys ``#!-force_reconnect``, counts ``#!-execd`` commands (running none),
reconnects when the connection drops, and sends ``#!-agent shutdown`` when stopped. On exit
(end of ``--duration`` or SIGINT) a JSON summary of what was sent and received is printed.

Keys come from ``--keys client.keys`` or from enrolling each agent on ``--enroll-port``
(through ``wazuhcluster.agents.enrollment_client``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import ipaddress
import itertools
import json
import os
import random
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from attrs import asdict, define, field
from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from wazuhcluster.agents import control, secure
from wazuhcluster.testing.agent_answers import LOCALFILES, AgentFacts, answer_request
from wazuhcluster.util.interfaces import IReactorSSLTime, IScriptReactor

DEFAULT_VERSION = "v4.14.7"
MAX_SHARED_FILE = 16 * 1024 * 1024
MAX_EVENTS_FILE = 64 * 1024 * 1024
#: The agent gives up on a startup that is not acknowledged within this time.
HANDSHAKE_TIMEOUT = 30.0
ENROLLMENT_CLIENT = "wazuhcluster.agents.enrollment_client"

Connector = Callable[[Factory[Protocol]], "Deferred[Any]"]


def open_manager_payloads(
    payloads: Iterable[bytes], cipher_key: bytes
) -> tuple[list[control.ManagerMessage], int]:
    """The manager's messages among an agent's received frames (``#pong`` skipped), and how
    many could not be decrypted or parsed."""
    messages: list[control.ManagerMessage] = []
    bad = 0
    for payload in payloads:
        if payload == control.PONG:
            continue
        try:
            opened = secure.open_sealed(secure.strip_token(payload), cipher_key)
            messages.append(control.parse_manager_message(opened.message))
        except (secure.SecureError, control.ControlError):
            bad += 1
    return messages, bad


@define
class AgentStats:
    """What one simulated agent sent and received."""

    connections: int = 0
    connection_failures: int = 0
    disconnections: int = 0
    startups_sent: int = 0
    acks_received: int = 0
    keepalives_sent: int = 0
    events_sent: int = 0
    shutdowns_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    undecryptable: int = 0
    files_received: int = 0
    files_bad: int = 0
    force_reconnects: int = 0
    manager_errors: int = 0
    #: Active-response and restart commands (``#!-execd ...``) received; none is run.
    execd_received: int = 0
    #: Manager requests (``#!-req``) answered.
    requests_answered: int = 0

    def add(self, other: AgentStats) -> None:
        """Add another agent's counters to these."""
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@define
class SimConfig:
    """Behaviour shared by all simulated agents."""

    keepalive_interval: float = 10.0
    eps: float = 0.0
    version: str = DEFAULT_VERSION
    reconnect_delay: float = 5.0
    labels: tuple[str, ...] = ()


def uname_for(name: str) -> str:
    """A plausible Linux uname string for a simulated agent."""
    return (
        f"Linux |{name} |5.15.0-91-generic |#101-Ubuntu SMP |x86_64 "
        "[Ubuntu|ubuntu: 22.04.3 LTS (Jammy Jellyfish)]"
    )


_USERS = ("root", "admin", "deploy", "test", "oracle", "guest")
_TEMPLATES = (
    "sshd[{pid}]: Failed password for invalid user {user} from {ip} port {port} ssh2",
    "sshd[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2",
    "sudo: {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/bin/ls",
    "CRON[{pid}]: pam_unix(cron:session): session opened for user {user} by (uid=0)",
    "kernel: [UFW BLOCK] IN=eth0 OUT= SRC={ip} DST=10.0.0.1 PROTO=TCP DPT={port}",
)


def generated_events(name: str, seed: int = 0) -> Iterator[str]:
    """An endless stream of syslog-like events ``1:/var/log/auth.log:<line>``."""
    rnd = random.Random(f"{name}/{seed}")
    while True:
        line = rnd.choice(_TEMPLATES).format(
            pid=rnd.randint(100, 65000),
            user=rnd.choice(_USERS),
            ip=f"198.51.100.{rnd.randint(1, 254)}",
            port=rnd.randint(1024, 65535),
        )
        yield control.format_event("1", "/var/log/auth.log", f"Nov 26 10:00:00 {name} {line}")


def read_event_lines(
    path: str, max_bytes: int = MAX_EVENTS_FILE, location: str = "/var/log/simulated.log"
) -> list[str]:
    """Lines of an events file (bounded); each becomes an event.

    A line already shaped ``<queue>:<location>:<message>`` is sent as is; any other line is
    sent as ``1:<location>:<line>``.
    """
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path}: larger than {max_bytes} bytes")
    lines = []
    for raw in data.decode("utf-8", "replace").splitlines():
        if not raw.strip():
            continue
        line = raw[: secure.MAX_MESSAGE - 64]
        try:
            control.parse_event(line)
        except control.ControlError:
            line = control.format_event("1", location, line)
        lines.append(line)
    if not lines:
        raise ValueError(f"{path}: no events")
    return lines


class SimAgentProtocol(Protocol):
    """The agent side of one connection to the agent channel."""

    def __init__(self, agent: SimulatedAgent) -> None:
        self.agent = agent
        self.decoder = secure.FrameDecoder()

    def connectionMade(self) -> None:
        """Hand the connection to the agent, which sends its startup."""
        self.agent.connected(self)

    def dataReceived(self, data: bytes) -> None:
        """Decrypt each frame and let the agent handle it."""
        try:
            frames = self.decoder.feed(data)
        except secure.FrameTooLarge:
            self.agent.stats.undecryptable += 1
            self.close()
            return
        messages, bad = open_manager_payloads(frames, self.agent.key.cipher_key)
        self.agent.stats.undecryptable += bad
        for message in messages:
            self.agent.received(message)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the agent; it reconnects unless it is stopping."""
        self.agent.disconnected(self)

    def send(self, message: str | bytes) -> None:
        """Encrypt and send one message with the agent's key and counters."""
        if self.transport is None:
            return
        data = message.encode() if isinstance(message, str) else message
        key = self.agent.key
        payload = secure.encode_payload(
            data,
            key.cipher_key,
            self.agent.counter.next(),
            secure.random16(),
            None if key.single_host else key.agent_id,
        )
        framed = secure.frame(payload)
        self.transport.write(framed)
        self.agent.stats.bytes_sent += len(framed)

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.loseConnection()


@define
class _Receiving:
    md5: str
    name: str
    data: bytearray = field(factory=bytearray)
    too_big: bool = False


@define(eq=False)
class SimulatedAgent:
    """One simulated agent: its key, counters, connection, loops and statistics."""

    key: secure.AgentKey
    clock: IReactorTime
    connect: Connector
    config: SimConfig = field(factory=SimConfig)
    events: Iterator[str] | None = None
    stats: AgentStats = field(factory=AgentStats)
    merged_sum: str | None = None
    shared_files: dict[str, bytes] = field(factory=dict)
    proto: SimAgentProtocol | None = field(default=None, init=False)
    ready: bool = field(default=False, init=False)
    stopping: bool = field(default=False, init=False)
    counter: secure.SendCounter = field(init=False)
    _receiving: _Receiving | None = field(default=None, init=False)
    _keepalive_loop: task.LoopingCall | None = field(default=None, init=False)
    _event_loop: task.LoopingCall | None = field(default=None, init=False)
    _event_credit: float = field(default=0.0, init=False)
    _pending: IDelayedCall | None = field(default=None, init=False)
    started: float = field(default=0.0, init=False)
    last_keepalive: float = field(default=0.0, init=False)
    last_ack: float = field(default=0.0, init=False)

    def __attrs_post_init__(self) -> None:
        # A real agent keeps its counters in a file; starting the global counter at the
        # current time keeps it growing across simulator runs.
        self.counter = secure.SendCounter(int(self.clock.seconds()) & secure.MAX_GLOBAL_COUNTER)
        self.started = self.clock.seconds()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred[Any]:
        """Open a connection (again)."""
        self._pending = None
        if self.stopping:
            return succeed(None)
        factory: Factory[Protocol] = Factory.forProtocol(lambda: SimAgentProtocol(self))
        d = self.connect(factory)
        d.addErrback(self._connect_failed)
        return d

    def _connect_failed(self, failure: Failure) -> None:
        self.stats.connection_failures += 1
        self._retry_later()

    def _retry_later(self, delay: float | None = None) -> None:
        if self.stopping or self._pending is not None:
            return
        wait = self.config.reconnect_delay if delay is None else delay
        self._pending = self.clock.callLater(wait, self.start)

    def stop(self) -> None:
        """Send ``#!-agent shutdown`` if connected, stop the loops and close."""
        self.stopping = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        self._stop_loops()
        if self.proto is not None:
            if self.ready:
                self.proto.send(control.SHUTDOWN)
                self.stats.shutdowns_sent += 1
            self.proto.close()

    def _stop_loops(self) -> None:
        for loop in (self._keepalive_loop, self._event_loop):
            if loop is not None and loop.running:
                loop.stop()
        self._keepalive_loop = self._event_loop = None

    # ------------------------------------------------------------------ connection events

    def connected(self, proto: SimAgentProtocol) -> None:
        """A connection is up: send the startup and wait for the ack."""
        self.proto = proto
        self.ready = False
        self.stats.connections += 1
        proto.send(control.format_startup(self.config.version))
        self.stats.startups_sent += 1
        self._pending = self.clock.callLater(HANDSHAKE_TIMEOUT, self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        self._pending = None
        if self.proto is not None and not self.ready:
            self.proto.close()

    def disconnected(self, proto: SimAgentProtocol) -> None:
        """The connection is gone: stop the loops and reconnect unless stopping."""
        if proto is not self.proto:
            return
        self.proto = None
        self.ready = False
        self._receiving = None
        self.stats.disconnections += 1
        self._stop_loops()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        self._retry_later()

    def received(self, message: control.ManagerMessage) -> None:
        """Handle one message from the manager."""
        self.stats.messages_received += 1
        if isinstance(message, control.Ack):
            self.stats.acks_received += 1
            self.last_ack = self.clock.seconds()
            if not self.ready:
                self._handshake_done()
        elif isinstance(message, control.FileUpdate):
            self._receiving = _Receiving(message.md5, message.name)
        elif isinstance(message, control.FileChunk):
            receiving = self._receiving
            if receiving is not None:
                if len(receiving.data) + len(message.data) > MAX_SHARED_FILE:
                    receiving.too_big = True
                else:
                    receiving.data += message.data
        elif isinstance(message, control.FileClose):
            self._file_done()
        elif isinstance(message, control.ForceReconnect):
            self.stats.force_reconnects += 1
            if self.proto is not None:
                self.proto.close()
        elif isinstance(message, control.ManagerError):
            self.stats.manager_errors += 1
        elif isinstance(message, control.ManagerOther) and message.text.startswith("execd "):
            self.stats.execd_received += 1
        elif isinstance(message, control.ManagerOther) and message.text.startswith("req "):
            self._answer_request(message.text[len("req ") :])

    def _answer_request(self, text: str) -> None:
        """Answer ``<counter> <payload>`` as a 4.x agent does (a manager's ``ack`` of
        an answer needs nothing)."""
        counter, _, payload = text.partition(" ")
        if not counter or not payload or payload == "ack" or self.proto is None:
            return
        self.proto.send(
            f"{control.REQUEST_PREFIX}{counter} {answer_request(payload, self.facts())}"
        )
        self.stats.requests_answered += 1

    def facts(self) -> AgentFacts:
        """What this agent tells about itself when the manager asks."""
        transport = self.proto.transport if self.proto is not None else None
        get_peer = getattr(transport, "getPeer", None)
        peer = get_peer() if get_peer is not None else None
        stats = self.stats
        return AgentFacts(
            manager=str(getattr(peer, "host", "")),
            port=int(getattr(peer, "port", 0) or 0),
            labels=self.config.labels,
            started=self.started,
            now=self.clock.seconds(),
            last_keepalive=self.last_keepalive,
            last_ack=self.last_ack,
            events_sent=stats.events_sent,
            messages_sent=stats.events_sent + stats.keepalives_sent + stats.startups_sent,
            events_by_file={LOCALFILES[0]: (stats.events_sent, stats.bytes_sent)},
        )

    def _handshake_done(self) -> None:
        self.ready = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        assert self.proto is not None
        started = f"ossec: Agent started: '{self.key.name}->{self.key.ip}'."
        self.send_event(control.format_event("1", "wazuh-agent", started))
        self._keepalive_loop = task.LoopingCall(self.send_keepalive)
        self._keepalive_loop.clock = self.clock
        self._keepalive_loop.start(self.config.keepalive_interval, now=True)
        if self.events is not None and self.config.eps > 0:
            interval = 1.0 / self.config.eps if self.config.eps < 10 else 0.1
            self._event_loop = task.LoopingCall(self._event_tick, interval)
            self._event_loop.clock = self.clock
            self._event_loop.start(interval, now=False)

    def _file_done(self) -> None:
        receiving, self._receiving = self._receiving, None
        if receiving is None:
            return
        data = bytes(receiving.data)
        if receiving.too_big or hashlib.md5(data).hexdigest() != receiving.md5:
            self.stats.files_bad += 1
            return
        self.stats.files_received += 1
        self.shared_files[receiving.name] = data
        if receiving.name == control.SHARED_FILE:
            self.merged_sum = receiving.md5

    # ------------------------------------------------------------------ sending

    def send_keepalive(self) -> None:
        """Send one keep-alive with the current merged.mg sum."""
        if self.proto is None or not self.ready:
            return
        transport = self.proto.transport
        host = getattr(transport.getHost(), "host", None) if transport is not None else None
        text = control.format_keepalive(
            uname_for(self.key.name),
            "Wazuh " + self.config.version,
            None,
            self.config.labels,
            self.merged_sum,
            host if isinstance(host, str) else None,
        )
        self.proto.send(text)
        self.stats.keepalives_sent += 1
        self.last_keepalive = self.clock.seconds()

    def send_event(self, event: str) -> None:
        """Send one event message."""
        if self.proto is None or not self.ready:
            return
        self.proto.send(event)
        self.stats.events_sent += 1

    def _event_tick(self, interval: float) -> None:
        self._event_credit += self.config.eps * interval
        count = int(self._event_credit)
        self._event_credit -= count
        if self.events is None:
            return
        for _ in range(count):
            event = next(self.events, None)
            if event is None:
                return
            self.send_event(event)


@define
class Simulator:
    """A set of simulated agents and their combined summary."""

    agents: list[SimulatedAgent]

    def start(self, clock: IReactorTime, spread: float = 0.0) -> None:
        """Start every agent, spreading the connections over ``spread`` seconds."""
        step = spread / len(self.agents) if self.agents else 0.0
        for index, agent in enumerate(self.agents):
            if step:
                clock.callLater(step * index, agent.start)
            else:
                agent.start()

    def stop(self) -> None:
        """Stop every agent (each sends its shutdown)."""
        for agent in self.agents:
            agent.stop()

    def summary(self) -> dict[str, Any]:
        """Totals over all agents, plus how many are connected and ready."""
        totals = AgentStats()
        for agent in self.agents:
            totals.add(agent.stats)
        return {
            "agents": len(self.agents),
            "ready": sum(1 for agent in self.agents if agent.ready),
            "synced_merged": sum(1 for agent in self.agents if agent.merged_sum),
            **asdict(totals),
        }


# --------------------------------------------------------------------------- UDP


class _DatagramStream:
    """The transport a :class:`SimAgentProtocol` sees over UDP: each frame it writes
    leaves as one datagram without its length prefix (Wazuh's UDP agents send one payload
    per datagram)."""

    def __init__(self, carrier: _FramedDatagrams) -> None:
        self.carrier = carrier

    def write(self, data: bytes) -> None:
        """Send one frame's payload."""
        transport = self.carrier.transport
        if transport is not None and len(data) > 4:
            try:
                transport.write(data[4:], None)  # a connected socket: to the node
            except OSError:
                pass  # the node is not there (yet): a UDP agent just sends again later

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        """Close the agent's UDP socket."""
        self.carrier.close()

    def getHost(self) -> IAddress | None:  # noqa: N802 - Twisted's name
        """The agent's local address (its ``_agent_ip``)."""
        transport = self.carrier.transport
        return transport.getHost() if transport is not None else None


class _FramedDatagrams(DatagramProtocol):
    """One simulated UDP agent's socket, connected to the node; datagrams received are
    handed to the agent's protocol as frames."""

    def __init__(self, stream: Protocol, host: str, port: int) -> None:
        self.stream = stream
        self.host = host
        self.port = port
        self.listening: IListeningPort | None = None
        self.closed = False

    def startProtocol(self) -> None:  # noqa: N802 - Twisted's name
        """Connect the socket to the node and start the agent (its startup)."""
        assert self.transport is not None
        self.transport.connect(self.host, self.port)
        self.stream.makeConnection(cast(Any, _DatagramStream(self)))

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        """A message from the node."""
        if len(datagram) <= secure.MAX_FRAME:
            self.stream.dataReceived(secure.frame(datagram))

    def connectionRefused(self) -> None:  # noqa: N802 - Twisted's name
        """Nothing listens (ICMP): the agent keeps sending, as Wazuh's UDP agents do."""

    def close(self) -> None:
        """Stop listening; the agent sees a lost connection."""
        if self.closed:
            return
        self.closed = True
        if self.listening is not None:
            self.listening.stopListening()
        self.stream.connectionLost(Failure(ConnectionDone()))


def udp_connector(reactor: IReactorUDP, host: str, port: int) -> Connector:
    """A :data:`Connector` that serves each agent over its own UDP socket to ``host:port``
    (an IP address)."""
    family = ipaddress.ip_address(host)
    interface = "::" if family.version == 6 else "0.0.0.0"

    def connect(factory: Factory[Protocol]) -> Deferred[Any]:
        stream = factory.buildProtocol(None)
        if stream is None:
            return fail(RuntimeError("no protocol"))
        carrier = _FramedDatagrams(stream, host, port)
        try:
            carrier.listening = reactor.listenUDP(
                0, carrier, interface=interface, maxPacketSize=secure.MAX_FRAME
            )
        except OSError as error:
            return fail(error)
        return succeed(stream)

    return connect


# --------------------------------------------------------------------------- enrollment


def _key_from_enrollment(result: Any) -> secure.AgentKey:
    """Accept what ``request_enrollment`` returns: an object, a mapping, or 4 strings."""
    if isinstance(result, secure.AgentKey):
        return result
    if isinstance(result, str):
        result = result.split(" ")
    if isinstance(result, dict):
        return secure.AgentKey(
            str(result["agent_id"] if "agent_id" in result else result["id"]),
            str(result["name"]),
            str(result["ip"]),
            str(result["key"]),
        )
    if isinstance(result, tuple | list) and len(result) == 4:
        return secure.AgentKey(*(str(part) for part in result))
    fields = [getattr(result, name, None) for name in ("agent_id", "name", "ip", "key")]
    if fields[0] is None:
        fields[0] = getattr(result, "id", None)
    if all(isinstance(value, str) for value in fields):
        return secure.AgentKey(*fields)  # type: ignore[arg-type]
    raise TypeError(f"cannot read an agent key from {result!r}")


def save_keys(path: str, keys: Sequence[secure.AgentKey]) -> None:
    """Write keys as a client.keys file (owner-only), replacing it atomically."""
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(key.line() + "\n" for key in keys))
    os.replace(temporary, path)


class EnrollmentUnavailable(RuntimeError):
    """The enrollment client module is not available in this build."""


def enroll_agents(
    reactor: IReactorSSLTime,
    host: str,
    port: int,
    names: Sequence[str],
    password: str | None,
    groups: Sequence[str],
    version: str,
    concurrency: int = 20,
) -> Deferred[list[secure.AgentKey | Failure]]:
    """Enroll each name on ``host:port``; the list holds a key or a Failure per name."""
    try:
        enrollment_client = importlib.import_module(ENROLLMENT_CLIENT)
    except ImportError as error:
        raise EnrollmentUnavailable(
            "enrollment is not available (wazuhcluster.agents.enrollment_client is missing); "
            "use --keys FILE with a client.keys file instead"
        ) from error
    semaphore = DeferredSemaphore(concurrency)

    def one(name: str) -> Deferred[Any]:
        return semaphore.run(
            enrollment_client.request_enrollment,
            reactor,
            host,
            port,
            name,
            password=password,
            groups=tuple(groups),
            version=version,
        ).addCallback(_key_from_enrollment)

    results = DeferredList([one(name) for name in names], consumeErrors=True)
    return results.addCallback(lambda pairs: [value for _ok, value in pairs])


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="wazuh-agent-sim", description="Simulate Wazuh 4.x agents against a node."
    )
    parser.add_argument("--manager", default="127.0.0.1", help="node address (default %(default)s)")
    parser.add_argument(
        "--home",
        default=None,
        help="a local node's home: take --port and --enroll-port from its configuration",
    )
    parser.add_argument("--port", type=int, default=None, help="agent channel port (1514)")
    parser.add_argument("--enroll-port", type=int, default=None, help="enrollment port (1515)")
    parser.add_argument("--agents", type=int, default=1, help="number of agents")
    parser.add_argument("--name-prefix", default="sim-agent-", help="agent name prefix")
    parser.add_argument("--password", default=None, help="enrollment password")
    parser.add_argument("--groups", default="", help="comma-separated groups to enroll into")
    parser.add_argument("--keepalive", type=float, default=10.0, help="keep-alive interval (s)")
    parser.add_argument("--events", default=None, help="file of events, one per line")
    parser.add_argument("--eps", type=float, default=0.0, help="events per second, all agents")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after SEC (0: never)")
    parser.add_argument(
        "--report-every",
        type=float,
        default=0.0,
        help="also print the summary line every SEC while running (0: only at the end)",
    )
    parser.add_argument("--keys", default=None, help="client.keys file instead of enrolling")
    parser.add_argument("--save-keys", default=None, help="write enrolled keys to this file")
    parser.add_argument("--agent-version", default=DEFAULT_VERSION, help="version to report")
    parser.add_argument("--spread", type=float, default=1.0, help="spread connects over SEC")
    parser.add_argument(
        "--udp", action="store_true", help="agents report over UDP (--manager must be an IP)"
    )
    options = parser.parse_args(argv)
    _ports_from_home(parser, options)
    if options.agents < 1 or options.agents > 100_000:
        parser.error("--agents must be between 1 and 100000")
    if options.keepalive <= 0 or options.eps < 0 or options.duration < 0:
        parser.error("--keepalive must be positive; --eps and --duration not negative")
    if options.udp:
        try:
            ipaddress.ip_address(options.manager)
        except ValueError:
            parser.error("--udp needs --manager as an IP address")
    return options


def _ports_from_home(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """Fill --port and --enroll-port from a node's configuration when --home is given."""
    port, enroll_port = 1514, 1515
    if options.home:
        from wazuhcluster.config.auth_settings import parse_auth
        from wazuhcluster.config.cluster import read_xml
        from wazuhcluster.config.home import Home
        from wazuhcluster.config.remote_settings import secure_remote
        from wazuhcluster.config.xmlconfig import ConfigError, Section

        home = Home(Path(options.home))
        try:
            root = read_xml(home.config_file)
            blocks = root.findall("auth")
            auth = parse_auth(
                Section(blocks[-1] if blocks else None, str(home.config_file), "auth"), home.root
            )
            remote = secure_remote(
                [Section(b, str(home.config_file), "remote") for b in root.findall("remote")]
            )
        except ConfigError as error:
            parser.error(str(error))
        port, enroll_port = remote.port, auth.port
    if options.port is None:
        options.port = port
    if options.enroll_port is None:
        options.enroll_port = enroll_port


def _event_source(options: argparse.Namespace, index: int, name: str) -> Iterator[str]:
    if options.events:
        lines = options.event_lines
        return itertools.islice(itertools.cycle(lines), index % len(lines), None)
    return generated_events(name, index)


def _run(reactor: IScriptReactor, options: argparse.Namespace, out: TextIO) -> Deferred[None]:
    from twisted.internet.endpoints import HostnameEndpoint

    names = [f"{options.name_prefix}{i:05d}" for i in range(1, options.agents + 1)]
    if options.keys:
        store = secure.KeyStore.load(options.keys)
        keys_d: Deferred[list[Any]] = succeed(sorted(store, key=lambda k: int(k.agent_id)))
    else:
        groups = [g for g in options.groups.split(",") if g]
        keys_d = enroll_agents(
            reactor,
            options.manager,
            options.enroll_port,
            names,
            options.password,
            groups,
            options.agent_version,
        )
    config = SimConfig(
        keepalive_interval=options.keepalive,
        eps=options.eps / options.agents,
        version=options.agent_version,
    )
    done: Deferred[None] = Deferred()

    def build(results: list[Any]) -> None:
        keys = [k for k in results if isinstance(k, secure.AgentKey)][: options.agents]
        failures = [f for f in results if isinstance(f, Failure)]
        for failure in failures[:5]:
            print(f"enrollment failed: {failure.getErrorMessage()}", file=sys.stderr)
        if not keys:
            print("no agent keys available", file=sys.stderr)
            done.callback(None)
            return
        if options.save_keys and not options.keys:
            save_keys(options.save_keys, keys)
        endpoint = HostnameEndpoint(reactor, options.manager, options.port, timeout=10)
        connect = (
            udp_connector(reactor, options.manager, options.port)
            if options.udp
            else endpoint.connect
        )
        agents = [
            SimulatedAgent(
                key,
                reactor,
                connect,
                config,
                events=_event_source(options, index, key.name),
            )
            for index, key in enumerate(keys)
        ]
        simulator = Simulator(agents)
        simulator.start(reactor, options.spread)
        finished = {"done": False}

        def report() -> None:
            summary = simulator.summary()
            summary["enrollment_failures"] = len(failures)
            out.write(json.dumps(summary, sort_keys=True) + "\n")
            out.flush()

        reporting = task.LoopingCall(report)
        reporting.clock = reactor
        if options.report_every > 0:
            reporting.start(options.report_every, now=False)

        def finish() -> Deferred[None]:
            if finished["done"]:
                return succeed(None)
            finished["done"] = True
            if reporting.running:
                reporting.stop()
            simulator.stop()
            report()
            # Give the shutdown messages a moment to leave before the reactor stops.
            return task.deferLater(reactor, 0.2, lambda: None)

        reactor.addSystemEventTrigger("before", "shutdown", finish)
        if options.duration:
            reactor.callLater(options.duration, lambda: finish().addCallback(done.callback))

    def failed(failure: Failure) -> None:
        print(f"wazuh-agent-sim: {failure.getErrorMessage()}", file=sys.stderr)
        done.errback(failure)

    keys_d.addCallbacks(build, failed)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wazuh-agent-sim``; returns the exit status."""
    options = parse_args(argv)
    if options.events:
        try:
            options.event_lines = read_event_lines(options.events)
        except (OSError, ValueError) as error:
            print(f"wazuh-agent-sim: {error}", file=sys.stderr)
            return 2
    if options.keys:
        try:
            secure.KeyStore.load(options.keys)
        except secure.KeyFileError as error:
            print(f"wazuh-agent-sim: {error}", file=sys.stderr)
            return 2
    else:
        try:
            importlib.import_module(ENROLLMENT_CLIENT)
        except ImportError:
            print(
                "wazuh-agent-sim: enrollment is not available in this build; "
                "use --keys FILE with a client.keys file",
                file=sys.stderr,
            )
            return 2
    from twisted.internet import reactor as global_reactor

    # the global reactor provides every member interface but declares no combination
    reactor = cast(IScriptReactor, global_reactor)
    status = {"code": 0}

    def run() -> None:
        # Stop (and print the summary) on SIGINT and SIGTERM even when started in the
        # background, where the shell leaves SIGINT ignored and Twisted does not hook it.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: reactor.callFromThread(reactor.stop))
        d = _run(reactor, options, sys.stdout)

        def stop(result: object) -> None:
            if isinstance(result, Failure):
                status["code"] = 1
            if reactor.running:
                reactor.stop()

        d.addBoth(stop)

    reactor.callWhenRunning(run)
    reactor.run()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())

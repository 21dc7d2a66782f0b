"""``wazuh-load-gen``: thousands of agents in one process, over the real agent protocol.

A lighter sibling of ``wazuh-agent-sim`` for benchmarks: every agent has its own TCP
connection to a node's agent channel (1514), as a real agent, and speaks Wazuh 4.x's secure
protocol (AES, zlib, counters): ``#!-agent startup``, keep-alives every ``--keepalive``
seconds with the merged.mg sum it holds, events at an offered rate shared by all agents, and
the shared-file pushes and acks the node sends back. What makes it light:

- one loop for all keep-alives (a slice of agents every 0.1 s) and one for all events (the
  offered rate's credit every ``--tick`` seconds, one write per agent per tick), not timers
  per agent;
- events can be sealed ahead of time (``--preencode N``: N frames before the first is sent),
  so the sending loop only writes bytes; when they run out, events are sealed as they go.
  Pre-sealed events carry counters taken before the keep-alives sent meanwhile, which a node
  checking counters (remoted's ``verify_msg_id``, off by default) would refuse;
- a connection whose transport is full (the node reads slower than it is offered) is paused:
  its agent sends nothing until it drains, and the events it could not send are counted
  (``held_back``), as an agent's own buffer would.

Agents come from a client.keys file (``--keys``); ``--target HOST:PORT[=FIRST-LAST]``
(repeatable) sends the agents whose ids are in FIRST..LAST to one node. ``--merged-sums``
(a JSON object agent id → MD5) starts agents holding a merged.mg already, as agents that
kept theirs across a manager restart do. ``--control`` reads commands on stdin, one a line:
``rate EPS [COUNT]`` (the offered rate for all agents; with COUNT, back to 0 after that
many events), ``preseal N`` (seal N more events ahead), ``stats`` (a JSON line of counters on
stdout), ``stop``. At the end (``--duration``, ``stop``, SIGINT/SIGTERM) the final counters
are printed as one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO, cast

from attrs import asdict, define
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agents import control, secure
from wazuhcluster.scripts.agent_simulator import open_manager_payloads, read_event_lines
from wazuhcluster.util.interfaces import IScriptReactor

DEFAULT_VERSION = "v4.14.7"
#: A push larger than this is not kept (the agent reports it bad).
MAX_SHARED_FILE = 16 * 1024 * 1024
#: Keep-alives are sent in this many slices per second.
KEEPALIVE_SLICES = 10
#: An agent whose startup is not acknowledged within this time closes and retries.
HANDSHAKE_TIMEOUT = 30.0

#: Opens one connection for an agent: ``connect(agent, factory)``.
Connector = Callable[["LoadAgent", Factory[Protocol]], "Deferred[Any]"]


@define
class LoadStats:
    """What all the agents of one generator sent and received."""

    connections: int = 0
    connection_failures: int = 0
    disconnections: int = 0
    startups_sent: int = 0
    acks_received: int = 0
    keepalives_sent: int = 0
    #: Events written to a connection (the started events included).
    events_sent: int = 0
    #: Of those, sealed while sending (the pre-sealed ones had run out).
    events_sealed_live: int = 0
    #: Events offered to an agent that was paused or not connected: never sent.
    held_back: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    undecryptable: int = 0
    files_received: int = 0
    files_bad: int = 0
    force_reconnects: int = 0
    manager_errors: int = 0


def uname_for(name: str) -> str:
    """A plausible Linux uname string for a generated agent."""
    return (
        f"Linux |{name} |5.15.0-91-generic |#101-Ubuntu SMP |x86_64 "
        "[Ubuntu|ubuntu: 22.04.3 LTS (Jammy Jellyfish)]"
    )


class LoadAgent:
    """One generated agent: key, counters, the connection it holds and its pre-sealed events."""

    __slots__ = (
        "key",
        "host",
        "port",
        "prefix",
        "counter",
        "merged_sum",
        "events",
        "sealed",
        "proto",
        "ready",
        "paused",
        "receiving",
        "keepalive_cache",
        "pending",
    )

    def __init__(
        self,
        key: secure.AgentKey,
        host: str,
        port: int,
        events: Iterator[bytes] | None = None,
        merged_sum: str | None = None,
        first_counter: int = 0,
    ) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.prefix = (
            secure.AES_TOKEN
            if key.single_host
            else b"!" + key.agent_id.encode("ascii") + b"!" + secure.AES_TOKEN
        )
        self.counter = secure.SendCounter(first_counter & secure.MAX_GLOBAL_COUNTER)
        self.merged_sum = merged_sum
        self.events = events
        self.sealed: deque[bytes] = deque()
        self.proto: LoadProtocol | None = None
        self.ready = False
        self.paused = False
        self.receiving: tuple[str, str, bytearray] | None = None
        self.keepalive_cache: tuple[str | None, bytes] | None = None
        self.pending: IDelayedCall | None = None

    def seal(self, message: bytes) -> bytes:
        """One framed payload of ``message`` with this agent's key and next counter."""
        sealed = secure.seal(message, self.key.cipher_key, self.counter.next(), secure.random16())
        return secure.frame(self.prefix + sealed)

    def keepalive_text(self) -> bytes:
        """The keep-alive message, rebuilt only when the merged.mg sum changed."""
        cached = self.keepalive_cache
        if cached is None or cached[0] != self.merged_sum:
            text = control.format_keepalive(
                uname_for(self.key.name),
                "Wazuh " + DEFAULT_VERSION,
                None,
                (),
                self.merged_sum,
                None,
            ).encode()
            cached = self.keepalive_cache = (self.merged_sum, text)
        return cached[1]

    def preseal(self, count: int) -> int:
        """Seal up to ``count`` more events ahead of sending; returns how many."""
        if self.events is None:
            return 0
        done = 0
        for message in itertools.islice(self.events, count):
            self.sealed.append(self.seal(message))
            done += 1
        return done

    def next_event(self) -> bytes | None:
        """The next event frame: a pre-sealed one, else one sealed now (None: no events)."""
        if self.sealed:
            return self.sealed.popleft()
        if self.events is None:
            return None
        message = next(self.events, None)
        return None if message is None else self.seal(message)


@implementer(IPushProducer)
class LoadProtocol(Protocol):
    """The agent end of one connection: reads the node's frames, pauses with the transport."""

    def __init__(self, generator: LoadGenerator, agent: LoadAgent) -> None:
        self.generator = generator
        self.agent = agent
        self.decoder = secure.FrameDecoder()

    def connectionMade(self) -> None:
        """Follow the transport's fullness, then send the startup."""
        transport = cast(IConsumer, self.transport)
        transport.registerProducer(self, True)
        self.generator.connected(self.agent, self)

    def dataReceived(self, data: bytes) -> None:
        """Decrypt each frame from the node and hand it to the generator."""
        try:
            frames = self.decoder.feed(data)
        except secure.FrameTooLarge:
            self.generator.stats.undecryptable += 1
            self.close()
            return
        messages, bad = open_manager_payloads(frames, self.agent.key.cipher_key)
        self.generator.stats.undecryptable += bad
        for message in messages:
            self.generator.received(self.agent, message)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the generator (which reconnects the agent unless it is stopping)."""
        self.generator.disconnected(self.agent, self)

    def write(self, data: bytes) -> None:
        """Write bytes already framed and sealed."""
        if self.transport is not None:
            self.transport.write(data)
            self.generator.stats.bytes_sent += len(data)

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.loseConnection()

    # IPushProducer: the transport's buffer is full (or drained again).
    def pauseProducing(self) -> None:
        """The node is not reading fast enough: send nothing more for now."""
        self.agent.paused = True

    def resumeProducing(self) -> None:
        """The transport drained: send again."""
        self.agent.paused = False

    def stopProducing(self) -> None:
        """The connection is going away."""
        self.agent.paused = True


class LoadGenerator:
    """All the agents of one process, their keep-alive loop and their event loop."""

    def __init__(
        self,
        agents: Sequence[LoadAgent],
        clock: IReactorTime,
        connect: Connector,
        *,
        keepalive_interval: float = 10.0,
        reconnect_delay: float = 5.0,
        tick: float = 0.01,
        version: str = DEFAULT_VERSION,
        started_event: bool = True,
    ) -> None:
        self.agents = list(agents)
        self.clock = clock
        self.connect = connect
        self.keepalive_interval = keepalive_interval
        self.reconnect_delay = reconnect_delay
        self.tick = tick
        self.version = version
        self.started_event = started_event
        self.stats = LoadStats()
        self.rate = 0.0
        self.stopping = False
        self._ready_count = 0
        self._credit = 0.0
        self._until: int | None = None
        self._last_tick: float | None = None
        self._event_position = 0
        self._keepalive_position = 0
        self._loops: list[task.LoopingCall] = []
        self._startup = control.format_startup(version).encode()

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> int:
        """How many agents have a connection whose startup was acknowledged."""
        return self._ready_count

    def start(self, spread: float = 0.0) -> None:
        """Connect every agent (spread over ``spread`` seconds) and start both loops."""
        step = spread / len(self.agents) if self.agents else 0.0
        for index, agent in enumerate(self.agents):
            if step:
                agent.pending = self.clock.callLater(step * index, self._open, agent)
            else:
                self._open(agent)
        for function, interval in (
            (self._keepalive_tick, 1.0 / KEEPALIVE_SLICES),
            (self._event_tick, self.tick),
        ):
            loop = task.LoopingCall(function)
            loop.clock = self.clock
            loop.start(interval, now=False)
            self._loops.append(loop)

    def _open(self, agent: LoadAgent) -> Deferred[Any]:
        agent.pending = None
        if self.stopping:
            return succeed(None)
        factory: Factory[Protocol] = Factory.forProtocol(lambda: LoadProtocol(self, agent))
        d = self.connect(agent, factory)
        d.addErrback(self._connect_failed, agent)
        return d

    def _connect_failed(self, failure: Failure, agent: LoadAgent) -> None:
        self.stats.connection_failures += 1
        self._retry_later(agent)

    def _retry_later(self, agent: LoadAgent) -> None:
        if self.stopping or agent.pending is not None:
            return
        agent.pending = self.clock.callLater(self.reconnect_delay, self._open, agent)

    def stop(self, shutdown: bool = True) -> None:
        """Stop both loops and close every connection (after ``#!-agent shutdown`` if asked)."""
        self.stopping = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        for agent in self.agents:
            if agent.pending is not None and agent.pending.active():
                agent.pending.cancel()
            agent.pending = None
            if agent.proto is not None:
                if shutdown and agent.ready:
                    agent.proto.write(agent.seal(control.SHUTDOWN.encode()))
                agent.proto.close()

    # ------------------------------------------------------------------ connection events

    def connected(self, agent: LoadAgent, proto: LoadProtocol) -> None:
        """A connection is up: send the startup; close it if no ack comes in time."""
        agent.proto = proto
        agent.ready = False
        agent.paused = False
        self.stats.connections += 1
        proto.write(agent.seal(self._startup))
        self.stats.startups_sent += 1
        agent.pending = self.clock.callLater(HANDSHAKE_TIMEOUT, self._handshake_timeout, agent)

    def _handshake_timeout(self, agent: LoadAgent) -> None:
        agent.pending = None
        if agent.proto is not None and not agent.ready:
            agent.proto.close()

    def disconnected(self, agent: LoadAgent, proto: LoadProtocol) -> None:
        """A connection is gone: the agent reconnects later unless the generator stops."""
        if agent.proto is not proto:
            return
        agent.proto = None
        if agent.ready:
            self._ready_count -= 1
        agent.ready = False
        agent.receiving = None
        self.stats.disconnections += 1
        if agent.pending is not None and agent.pending.active():
            agent.pending.cancel()
        agent.pending = None
        self._retry_later(agent)

    def received(self, agent: LoadAgent, message: control.ManagerMessage) -> None:
        """One message from the node to ``agent``."""
        self.stats.messages_received += 1
        if isinstance(message, control.Ack):
            self.stats.acks_received += 1
            if not agent.ready and agent.proto is not None:
                self._handshake_done(agent)
        elif isinstance(message, control.FileUpdate):
            agent.receiving = (message.md5, message.name, bytearray())
        elif isinstance(message, control.FileChunk):
            if agent.receiving is not None:
                data = agent.receiving[2]
                if len(data) + len(message.data) <= MAX_SHARED_FILE:
                    data += message.data
                else:
                    agent.receiving = (agent.receiving[0], agent.receiving[1], bytearray(b"-"))
        elif isinstance(message, control.FileClose):
            self._file_done(agent)
        elif isinstance(message, control.ForceReconnect):
            self.stats.force_reconnects += 1
            if agent.proto is not None:
                agent.proto.close()
        elif isinstance(message, control.ManagerError):
            self.stats.manager_errors += 1

    def _handshake_done(self, agent: LoadAgent) -> None:
        agent.ready = True
        self._ready_count += 1
        if agent.pending is not None and agent.pending.active():
            agent.pending.cancel()
        agent.pending = None
        assert agent.proto is not None
        if self.started_event:
            started = f"ossec: Agent started: '{agent.key.name}->{agent.key.ip}'."
            text = control.format_event("1", "wazuh-agent", started).encode()
            agent.proto.write(agent.seal(text))
            self.stats.events_sent += 1
            self.stats.events_sealed_live += 1
        self.send_keepalive(agent)

    def _file_done(self, agent: LoadAgent) -> None:
        receiving, agent.receiving = agent.receiving, None
        if receiving is None:
            return
        md5, name, data = receiving
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
            self.stats.files_bad += 1
            return
        self.stats.files_received += 1
        if name == control.SHARED_FILE:
            agent.merged_sum = md5

    # ------------------------------------------------------------------ sending

    def send_keepalive(self, agent: LoadAgent) -> None:
        """Send one keep-alive for ``agent`` (when its connection is ready)."""
        if agent.proto is None or not agent.ready:
            return
        agent.proto.write(agent.seal(agent.keepalive_text()))
        self.stats.keepalives_sent += 1

    def _keepalive_tick(self) -> None:
        if not self.agents:
            return
        count = len(self.agents)
        per_tick = max(1, round(count / (self.keepalive_interval * KEEPALIVE_SLICES)))
        for _ in range(min(per_tick, count)):
            agent = self.agents[self._keepalive_position]
            self._keepalive_position = (self._keepalive_position + 1) % count
            self.send_keepalive(agent)

    def set_rate(self, rate: float, count: int | None = None) -> None:
        """Offer ``rate`` events per second in all (0 stops sending events); with ``count``,
        the rate falls to 0 once that many more events have been sent."""
        self.rate = max(0.0, rate)
        self._credit = 0.0
        self._last_tick = None
        self._until = None if count is None else self.stats.events_sent + max(0, count)

    def preseal(self, total: int) -> int:
        """Seal ``total`` events ahead of sending, shared evenly by the agents; returns how
        many were sealed."""
        with_events = [agent for agent in self.agents if agent.events is not None]
        if not with_events or total <= 0:
            return 0
        share, extra = divmod(total, len(with_events))
        return sum(
            agent.preseal(share + (1 if index < extra else 0))
            for index, agent in enumerate(with_events)
        )

    def _event_tick(self) -> None:
        now = self.clock.seconds()
        last, self._last_tick = self._last_tick, now
        if self.rate <= 0 or last is None or not self.agents:
            return
        self._credit += self.rate * max(0.0, now - last)
        count = int(self._credit)
        self._credit -= count
        if self._until is not None:
            count = min(count, self._until - self.stats.events_sent)
        if count > 0:
            self.send_events(count)
        if self._until is not None and self.stats.events_sent >= self._until:
            self.rate = 0.0
            self._until = None

    def send_events(self, count: int) -> int:
        """Send ``count`` events, one after another over the agents (one write per agent);
        an agent that is paused or not ready holds its share back. Returns how many left."""
        agents = self.agents
        total = len(agents)
        share, extra = divmod(count, total)
        position = self._event_position
        sent = 0
        stats = self.stats
        for step in range(total if share else extra):
            agent = agents[(position + step) % total]
            wanted = share + (1 if step < extra else 0)
            proto = agent.proto
            if proto is None or not agent.ready or agent.paused:
                stats.held_back += wanted
                continue
            frames = []
            for _ in range(wanted):
                live = not agent.sealed
                frame = agent.next_event()
                if frame is None:
                    break
                if live:
                    stats.events_sealed_live += 1
                frames.append(frame)
            if frames:
                proto.write(b"".join(frames))
                sent += len(frames)
            stats.held_back += wanted - len(frames)
        self._event_position = (position + extra) % total
        stats.events_sent += sent
        return sent

    def summary(self) -> dict[str, Any]:
        """The counters, how many agents there are and how many are ready and synced."""
        return {
            "agents": len(self.agents),
            "ready": self._ready_count,
            "paused": sum(1 for agent in self.agents if agent.paused and agent.proto is not None),
            "presealed_left": sum(len(agent.sealed) for agent in self.agents),
            "synced_merged": sum(1 for agent in self.agents if agent.merged_sum),
            "rate": self.rate,
            **asdict(self.stats),
        }


class ControlLines(LineOnlyReceiver):
    """Commands on stdin: ``rate EPS [COUNT]``, ``stats``, ``preseal N``, ``stop``."""

    delimiter = b"\n"

    def __init__(self, generator: LoadGenerator, stop: Callable[[], object]) -> None:
        self.generator = generator
        self.stop = stop

    def lineReceived(self, line: bytes) -> None:
        """Run one command; ``stats`` and ``preseal`` answer with one JSON line."""
        words = line.decode("ascii", "replace").split()
        if not words:
            return
        command, arguments = words[0], words[1:]
        try:
            if command == "rate" and len(arguments) in (1, 2):
                count = int(arguments[1]) if len(arguments) == 2 else None
                self.generator.set_rate(float(arguments[0]), count)
                self.answer({"rate": self.generator.rate})
            elif command == "stats":
                self.answer(self.generator.summary())
            elif command == "preseal" and len(arguments) == 1:
                self.answer({"presealed": self.generator.preseal(int(arguments[0]))})
            elif command == "stop":
                self.stop()
            else:
                self.answer({"error": f"unknown command {line.decode('ascii', 'replace')!r}"})
        except ValueError as error:
            self.answer({"error": str(error)})

    def answer(self, value: dict[str, Any]) -> None:
        """Write one JSON line."""
        if self.transport is not None:
            self.transport.write(json.dumps(value, sort_keys=True).encode() + b"\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """stdin closed: the controlling process is gone, so stop."""
        self.stop()


# --------------------------------------------------------------------------- building


@define
class Target:
    """Agents whose numeric ids are in ``first..last`` (all when None) go to ``host:port``."""

    host: str
    port: int
    first: int | None = None
    last: int | None = None

    def wants(self, agent_id: str) -> bool:
        """Whether agent ``agent_id`` connects to this target."""
        number = int(agent_id)
        return (self.first is None or number >= self.first) and (
            self.last is None or number <= self.last
        )


def parse_target(text: str) -> Target:
    """``HOST:PORT`` or ``HOST:PORT=FIRST-LAST``; raises ValueError."""
    address, _, span = text.partition("=")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"target {text!r} is not HOST:PORT[=FIRST-LAST]")
    if not span:
        return Target(host, int(port))
    first, dash, last = span.partition("-")
    if not dash or not first.isdigit() or not last.isdigit() or int(first) > int(last):
        raise ValueError(f"target {text!r}: the id span is not FIRST-LAST")
    return Target(host, int(port), int(first), int(last))


def event_lines(path: str, max_bytes: int = 64 * 1024 * 1024) -> list[bytes]:
    """Events from a file, one a line: ``<queue>:<location>:<message>`` as is, any other
    line as ``1:/var/log/syslog:<line>``."""
    return [line.encode() for line in read_event_lines(path, max_bytes, "/var/log/syslog")]


def build_agents(
    keys: Sequence[secure.AgentKey],
    targets: Sequence[Target],
    lines: Sequence[bytes] | None,
    merged_sums: dict[str, str],
    first_counter: int,
    limit: int | None = None,
) -> list[LoadAgent]:
    """One agent per key that a target wants (first target that does); each cycles through
    ``lines`` from its own offset. ``limit`` keeps the first agents in id order.

    The agents of each target are spread evenly through the list, since the keep-alive and
    event loops walk it in order: a fleet of real agents, each on its own timer, reaches
    every node at an even pace, where a list in id order would give each node all its
    agents' keep-alives in one burst per interval and none for the rest of it.
    """
    agents: list[LoadAgent] = []
    for key in sorted(keys, key=lambda k: int(k.agent_id)):
        target = next((t for t in targets if t.wants(key.agent_id)), None)
        if target is None:
            continue
        index = len(agents)
        events = None
        if lines:
            events = itertools.islice(itertools.cycle(lines), index % len(lines), None)
        agents.append(
            LoadAgent(
                key,
                target.host,
                target.port,
                events,
                merged_sums.get(key.agent_id),
                first_counter,
            )
        )
        if limit is not None and len(agents) >= limit:
            break
    return spread_by_target(agents)


def spread_by_target(agents: Sequence[LoadAgent]) -> list[LoadAgent]:
    """``agents`` reordered so each target's share sits at even intervals through the list
    (the order within a target kept)."""
    by_target: dict[tuple[str, int], list[LoadAgent]] = {}
    for agent in agents:
        by_target.setdefault((agent.host, agent.port), []).append(agent)
    placed = [
        ((index + 0.5) / len(share), order, agent)
        for order, share in enumerate(by_target.values())
        for index, agent in enumerate(share)
    ]
    placed.sort(key=lambda item: item[:2])
    return [agent for _, _, agent in placed]


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="wazuh-load-gen",
        description="Thousands of Wazuh 4.x agents in one process, over the agent protocol.",
    )
    parser.add_argument("--keys", required=True, help="client.keys file of the agents")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        help="HOST:PORT[=FIRST-LAST]: the agents with ids FIRST..LAST connect there "
        "(repeatable; default 127.0.0.1:1514 for all)",
    )
    parser.add_argument("--agents", type=int, default=None, help="use at most N agents")
    parser.add_argument("--keepalive", type=float, default=10.0, help="keep-alive interval (s)")
    parser.add_argument("--events", default=None, help="file of events, one a line")
    parser.add_argument("--eps", type=float, default=0.0, help="offered events per second, all")
    parser.add_argument("--preencode", type=int, default=0, help="seal N events before sending")
    parser.add_argument("--tick", type=float, default=0.01, help="event loop period (s)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after SEC (0: never)")
    parser.add_argument("--spread", type=float, default=1.0, help="spread connects over SEC")
    parser.add_argument("--merged-sums", default=None, help="JSON: agent id → merged.mg MD5")
    parser.add_argument("--no-started-event", action="store_true", help="no 'Agent started'")
    parser.add_argument("--control", action="store_true", help="read commands on stdin")
    options = parser.parse_args(argv)
    try:
        options.targets = [parse_target(t) for t in options.target] or [Target("127.0.0.1", 1514)]
    except ValueError as error:
        parser.error(str(error))
    if options.keepalive <= 0 or options.eps < 0 or options.duration < 0 or options.tick <= 0:
        parser.error("--keepalive and --tick must be positive; --eps and --duration not negative")
    return options


def _run(reactor: IScriptReactor, options: argparse.Namespace, out: TextIO) -> Deferred[None]:
    from twisted.internet import stdio
    from twisted.internet.endpoints import TCP4ClientEndpoint

    keys = list(secure.KeyStore.load(options.keys))
    lines = event_lines(options.events) if options.events else None
    merged: dict[str, str] = {}
    if options.merged_sums:
        with open(options.merged_sums) as handle:
            merged = {str(k): str(v) for k, v in json.load(handle).items()}
    agents = build_agents(
        keys, options.targets, lines, merged, int(reactor.seconds()), options.agents
    )

    def connect(agent: LoadAgent, factory: Factory[Protocol]) -> Deferred[Any]:
        return TCP4ClientEndpoint(reactor, agent.host, agent.port, timeout=30).connect(factory)

    generator = LoadGenerator(
        agents,
        reactor,
        connect,
        keepalive_interval=options.keepalive,
        tick=options.tick,
        started_event=not options.no_started_event,
    )
    if options.preencode:
        generator.preseal(options.preencode)
    done: Deferred[None] = Deferred()
    finished = {"done": False}

    def finish() -> Deferred[None]:
        if finished["done"]:
            return succeed(None)
        finished["done"] = True
        generator.stop()
        out.write(json.dumps(generator.summary(), sort_keys=True) + "\n")
        out.flush()
        # Give the shutdown messages a moment to leave before the reactor stops.
        return task.deferLater(reactor, 0.2, lambda: None)

    def stopped(_: object) -> None:
        if not done.called:
            done.callback(None)

    def stop() -> None:
        if not finished["done"]:
            finish().addCallback(stopped)

    if options.control:
        stdio.StandardIO(ControlLines(generator, stop), reactor=reactor)
    generator.set_rate(options.eps)
    generator.start(options.spread)
    reactor.addSystemEventTrigger("before", "shutdown", finish)
    if options.duration:
        reactor.callLater(options.duration, stop)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wazuh-load-gen``; returns the exit status."""
    options = parse_args(argv)
    try:
        secure.KeyStore.load(options.keys)
        if options.events:
            event_lines(options.events)
    except (OSError, ValueError, secure.KeyFileError) as error:
        print(f"wazuh-load-gen: {error}", file=sys.stderr)
        return 2
    from twisted.internet import reactor as global_reactor

    # the global reactor provides every member interface but declares no combination
    reactor = cast(IScriptReactor, global_reactor)

    def run() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: reactor.callFromThread(reactor.stop))
        d = _run(reactor, options, sys.stdout)
        d.addBoth(lambda _: reactor.stop() if reactor.running else None)

    reactor.callWhenRunning(run)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The agent event channel (1514, TCP and UDP): Wazuh 4.x's "secure" protocol on Twisted.

Each TCP connection reads 4-byte little-endian framed payloads (:mod:`.secure`); over UDP
each datagram is one payload, answered at its source address. Either way the channel finds the
agent's key in an injected :class:`~.secure.KeyStore`, decrypts and checks the message,
then hands control messages to the :class:`~.sessions.SessionTable` and events to the
injected event sink. Bad frames are dropped with Wazuh's warnings and the connection is
closed where remoted closes it; other connections are unaffected.

When the sink takes them (``take_sealed``: the node's analysis processes, see
:mod:`.sealed`), a TCP connection's frames after its first valid message are handed over
unopened, and what opening them found comes back through
:meth:`AgentChannelFactory.sealed_opened`; the first message of every connection is opened
here, so the key, the address and the agent's slot are checked before anything is handed
over.

One connection per agent: a second authenticated connection for the same agent is refused
(``Agent key already in use``) unless the first has been silent for longer than
``connection_overtake_time`` (60 s), in which case the new one takes over and the old one
is closed (remoted's overtake rule).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable
from typing import Any, cast

from attrs import define, field, frozen
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from wazuhcluster.agents import agent_counters as counted
from wazuhcluster.agents import control, secure
from wazuhcluster.agents.requests import RequestTable
from wazuhcluster.agents.sealed import SealedFrames, SealedOutcome, SealedReport
from wazuhcluster.agents.sessions import SessionTable, SharedPush
from wazuhcluster.agents.shared_files import MAX_SHARED_FILE, SharedContent, SharedFileReader
from wazuhcluster.util.background import BackgroundWork
from wazuhcluster.util.limits import admit, host_text
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool

DEFAULT_OVERTAKE_TIME = 60.0
#: Bytes read from one agent connection per reactor turn (Twisted's default is 64 KiB). When
#: the node reads slower than the agents send, every socket holds a backlog and one turn
#: would decode 64 KiB from each (100 agents: about 25,000 events, over a second of CPU)
#: before the reactor serves anything else (the control socket, keep-alives, the cluster);
#: 8 KiB (about 30 events) keeps those turns short and costs nothing when there is no backlog.
READ_BYTES = 8192
#: Bytes of agent data all connections together may hand to the decoder in one reactor turn.
#: With many agents each holding a backlog, :data:`READ_BYTES` alone does not bound a turn
#: (5,000 agents × 8 KiB); a connection that reads past this budget is paused and its bytes
#: wait, in arrival order, for the next turns. The count starts again at the turn after it
#: reached half the budget (a timer per turn that read anything cost more than the read of
#: one small event), so a turn decodes at most the budget and, when it holds connections
#: back, at least half of it.
TURN_BYTES = 128 * 1024


@frozen
class AgentEvent:
    """One event received from an agent, for the analysis pipeline.

    ``ip`` is the connection's source address; ``registered_ip`` is the client.keys IP
    (often ``any``), the one remoted puts in its ``[<id>] (<name>) <ip>`` tag;
    ``reported_ip`` and ``labels`` come from the agent's last keep-alive on this node (its
    own IP, and its labels as :func:`~.control.label_pairs` gives them).
    """

    agent_id: str
    name: str
    ip: str
    queue: str
    location: str
    message: str
    received: float
    registered_ip: str = "any"
    reported_ip: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


EventSink = Callable[[AgentEvent], None]
#: A sink's fast entry (``take_event``): the fields of an :class:`AgentEvent`, in its order,
#: so the channel hands an event over without building the object.
TakeEvent = Callable[
    [str, str, str, str, str, str, float, str, "str | None", "tuple[tuple[str, str], ...]"], None
]


#: A sink's entry for an authenticated agent's frames still sealed (``take_sealed``, see
#: :class:`~.interfaces.ISealedSink`); False when it does not take them now.
TakeSealed = Callable[[SealedFrames], bool]


def sealed_taker(sink: EventSink) -> TakeSealed | None:
    """The sink's ``take_sealed`` when it has one."""
    take: TakeSealed | None = getattr(sink, "take_sealed", None)
    return take


def event_taker(sink: EventSink) -> TakeEvent:
    """The sink's ``take_event`` when it has one, else a wrapper that builds the
    :class:`AgentEvent` its ``__call__`` takes."""
    take: TakeEvent | None = getattr(sink, "take_event", None)
    if take is not None:
        return take

    def build(*fields: Any) -> None:
        sink(AgentEvent(*fields))

    return build


@define
class EventCounter:
    """An event sink that only counts events (per queue character)."""

    total: int = 0
    by_queue: Counter[str] = field(factory=Counter)

    def __call__(self, event: AgentEvent) -> None:
        """Count one event."""
        self.total += 1
        self.by_queue[event.queue] += 1


@define
class ChannelStats:
    """Counters of what the channel has seen, for health reports and tests."""

    connections: int = 0
    frames: int = 0
    events: int = 0
    control: int = 0
    pings: int = 0
    dropped: int = 0
    refused: int = 0
    overtaken: int = 0
    pushes: int = 0
    sent: int = 0
    datagrams: int = 0
    #: Bytes read from agents (TCP streams and datagrams) and written to them.
    recv_bytes: int = 0
    sent_bytes: int = 0
    #: TCP connections open now.
    tcp_sessions: int = 0


def remoted_numbers(stats: ChannelStats) -> dict[str, int]:
    """``stats`` in Wazuh's remoted statistics fields (messages this node could not use,
    those from unknown keys included, are ``discarded_count``; nothing is dequeued after a
    close here)."""
    return {
        "tcp_sessions": stats.tcp_sessions,
        "evt_count": stats.events,
        "ctrl_msg_count": stats.control,
        "discarded_count": stats.dropped + stats.refused,
        "sent_bytes": stats.sent_bytes,
        "recv_bytes": stats.recv_bytes,
        "dequeued_after_close": 0,
    }


class AgentPeer:
    """What every agent message goes through, whatever carried it (a TCP connection or a
    UDP datagram): the key lookup, decryption, counters, the agent's slot, then the
    session table for control messages and the event sink for events.

    A subclass says how to answer (:meth:`write_payload`, :meth:`write_pong`) and what
    dropping a bad message does to its transport (:meth:`close`).
    """

    factory: AgentChannelFactory
    peer_ip: str
    agent: secure.AgentKey | None
    closing: bool
    #: True for a UDP agent: its slot goes to any later authenticated datagram.
    datagram: bool = False

    def write_payload(self, payload: bytes) -> None:
        """Put one encrypted payload on the wire."""
        raise NotImplementedError

    def write_pong(self) -> None:
        """Answer a ``#ping``."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop serving this peer (a TCP connection is closed)."""
        raise NotImplementedError

    def authenticated(self) -> None:
        """The peer's first valid message arrived (nothing to do for a datagram)."""

    def send(self, message: bytes) -> bool:
        """Encrypt ``message`` with this agent's key and write it; False when there is
        nothing to write to (no agent yet, or the connection is closing or gone)."""
        if self.agent is None or self.closing:
            return False
        payload = secure.AES_TOKEN + secure.seal(
            message, self.agent.cipher_key, self.factory.send_counter.next(), secure.random16()
        )
        self._sent(payload)
        return True

    def send_deflated(self, message: bytes, deflated: bytes) -> None:
        """:meth:`send` for a message deflated once for every agent it goes to."""
        if self.agent is None or self.closing:
            return
        payload = secure.AES_TOKEN + secure.seal_deflated(
            message,
            deflated,
            self.agent.cipher_key,
            self.factory.send_counter.next(),
            secure.random16(),
        )
        self._sent(payload)

    def _sent(self, payload: bytes) -> None:
        self.write_payload(payload)
        self.factory.stats.sent += 1
        self.factory.stats.sent_bytes += len(payload)

    # ------------------------------------------------------------------ frames

    def _drop(self, message: str, **fields: Any) -> None:
        self.factory.log.warn(message, **fields)
        self.factory.stats.dropped += 1
        self.close()

    def _lookup(self, payload: bytes) -> tuple[secure.AgentKey, bytes] | None:
        keys = self.factory.keys
        try:
            agent_id, rest = secure.split_agent_id(payload)
        except secure.BadFormat:
            self._drop(
                "(1403): Incorrectly formatted message from agent '(unknown)' (host '{ip}').",
                ip=self.peer_ip,
            )
            return None
        if agent_id is None:
            entry = keys.by_ip(self.peer_ip)
            if entry is None:
                self._drop(
                    "(1213): Message from '{ip}' not allowed. Cannot find the ID of the agent. "
                    "Source agent ID is unknown.",
                    ip=self.peer_ip,
                )
                return None
            return entry, rest
        entry = keys.get(agent_id)
        if entry is None or not entry.allows(self.peer_ip):
            self._drop(
                "(1408): Invalid ID {agent_id} for the source ip: '{ip}' (name '{name}').",
                agent_id=agent_id,
                ip=self.peer_ip,
                name=entry.name if entry is not None else "unknown",
            )
            return None
        return entry, rest

    def handle_payload(self, payload: bytes) -> None:
        """Authenticate, decrypt and dispatch one frame."""
        if payload.startswith(control.PING):
            self.factory.stats.pings += 1
            self.write_pong()
            return
        found = self._lookup(payload)
        if found is None:
            return
        entry, rest = found
        idle_owner = self.factory._contender(entry.agent_id, self)
        if idle_owner is False:
            self.factory.stats.refused += 1
            self._drop("Agent key already in use: agent ID '{agent_id}'", agent_id=entry.agent_id)
            return
        if not rest:
            self._drop("Received message is empty")
            return
        factory = self.factory
        try:
            global_count, local_count, message = secure.open_sealed(
                secure.strip_token(rest), entry.cipher_key
            )
            factory._counter(entry.agent_id).accept(
                global_count, local_count, factory.verify_counters
            )
        except secure.SecureError as error:
            self._log_secure_error(entry, error)
            factory.stats.dropped += 1
            self.close()
            return
        agent = self.agent
        if agent is not entry:
            if agent is not None and agent.agent_id != entry.agent_id:
                self._drop(
                    "Connection from {ip} switched from agent '{old}' to '{new}'.",
                    ip=self.peer_ip,
                    old=agent.agent_id,
                    new=entry.agent_id,
                )
                return
            if agent is None:
                self.authenticated()
            self.agent = entry
        factory._claim(entry.agent_id, self, idle_owner)
        if message.startswith(control.CONTROL_HEADER_BYTES):
            factory.agent_counters.count(entry.agent_id, counted.CONTROL)
            self.handle_control(entry, message.decode("utf-8", "replace"))
        else:
            factory.agent_counters.count(entry.agent_id, counted.EVENT)
            self.handle_event(entry, message.decode("utf-8", "replace"))

    def _log_secure_error(self, entry: secure.AgentKey, error: secure.SecureError) -> None:
        log = self.factory.log
        if isinstance(error, secure.UnsupportedCipher):
            log.error(
                "Agent '{agent_id}' at '{ip}' sent a Blowfish-encrypted message: only AES "
                "agents are supported (set <crypto_method>aes</crypto_method> in the agent's "
                "ossec.conf).",
                agent_id=entry.agent_id,
                ip=self.peer_ip,
            )
        elif isinstance(error, secure.WrongKey):
            log.warn(
                "(1404): Authentication error. Wrong key or corrupt payload. "
                "Message received from agent '{agent_id}' at '{ip}'.",
                agent_id=entry.agent_id,
                ip=entry.ip,
            )
        elif isinstance(error, secure.BadFormat):
            log.error(
                "(1403): Incorrectly formatted message from agent '{agent_id}' (host '{ip}').",
                agent_id=entry.agent_id,
                ip=self.peer_ip,
            )
        elif isinstance(error, secure.UncompressError):
            log.warn(
                "(2202): Error uncompressing string. Message received from agent "
                "'{agent_id}' at '{ip}'",
                agent_id=entry.agent_id,
                ip=entry.ip,
            )
        elif isinstance(error, secure.ChecksumMismatch):
            log.error(
                "(1406): Checksum mismatch. Message received from agent '{agent_id}' at '{ip}'.",
                agent_id=entry.agent_id,
                ip=entry.ip,
            )
        elif isinstance(error, secure.ReplayedCounter):
            log.error("(1407): Duplicated counter for '{name}'.", name=entry.name)
        else:
            log.warn(
                "Invalid message from agent '{agent_id}' at '{ip}': {reason}",
                agent_id=entry.agent_id,
                ip=self.peer_ip,
                reason=error.reason,
            )

    # ------------------------------------------------------------------ messages

    def handle_control(self, entry: secure.AgentKey, text: str) -> None:
        """Apply a control message to the session table and answer it."""
        self.factory.stats.control += 1
        sessions = self.factory.sessions
        message = self.factory.parse_control(entry.agent_id, text)
        if isinstance(message, control.Startup):
            refusal = self.factory.version_refusal(message)
            if refusal is not None:
                self.factory.log.debug(
                    "Unable to connect agent: '{agent_id}': '{reason}'",
                    agent_id=entry.agent_id,
                    reason=refusal,
                )
                self.send(control.format_error(refusal).encode())
                return
            sessions.startup(entry.agent_id, entry.name, entry.ip, self.peer_ip, message.version)
            self._ack(entry.agent_id, counted.STARTUP)
        elif isinstance(message, control.Shutdown):
            self.factory.agent_counters.count(entry.agent_id, counted.SHUTDOWN)
            sessions.shutdown(entry.agent_id, entry.name, entry.ip)
            # remoted tells analysisd, which raises Wazuh's "agent stopped" alert from it.
            stopped = f"ossec: Agent stopped: '{entry.name}->{entry.ip}'."
            self.handle_event(entry, control.format_event("1", "wazuh-remoted", stopped))
            if self.datagram:
                self.close()  # a UDP agent has no connection to lose: free its slot now
        elif isinstance(message, control.KeepAlive):
            push = sessions.keepalive(
                entry.agent_id, entry.name, entry.ip, self.peer_ip, message.data
            )
            self._ack(entry.agent_id, counted.KEEPALIVE)
            if push is not None:
                self.factory.push_shared(push)
        elif isinstance(message, control.Request):
            self.factory.agent_counters.count(entry.agent_id, counted.REQUEST)
            counter, _, answer = message.text.partition(" ")
            if self.datagram and answer != "ack":
                # Over UDP the agent resends its answer until the manager acknowledges it.
                self.send(f"{control.REQUEST_PREFIX}{counter} ack".encode())
            if not self.factory.requests.answer(entry.agent_id, message.text):
                self.factory.log.debug(
                    "Unexpected request answer from agent '{agent_id}'", agent_id=entry.agent_id
                )
        else:
            self.factory.log.warn(
                "Invalid message from agent: '{name}' ({agent_id})",
                name=entry.name,
                agent_id=entry.agent_id,
            )

    def _ack(self, agent_id: str, received: int) -> None:
        counters = self.factory.agent_counters
        counters.count(agent_id, received)
        if self.send(control.ACK.encode()):  # remoted counts the acks it sent
            counters.count(agent_id, counted.ACK)

    def handle_event(self, entry: secure.AgentKey, text: str) -> None:
        """Give an event to the sink; malformed events are dropped with a warning."""
        try:
            fields = control.parse_event(text)
        except control.ControlError as error:
            self.factory.log.warn(
                "Malformed event from agent '{agent_id}': {reason}",
                agent_id=entry.agent_id,
                reason=str(error),
            )
            self.factory.stats.dropped += 1
            return
        factory = self.factory
        factory.stats.events += 1
        session = factory.sessions.get(entry.agent_id)
        queue, location, message = fields
        try:
            factory.take_event(
                entry.agent_id,
                entry.name,
                self.peer_ip,
                queue,
                location,
                message,
                factory.clock.seconds(),
                entry.ip,
                session.reported_ip if session is not None else None,
                session.labels if session is not None else (),
            )
        except Exception:
            self.factory.log.failure(
                "Event sink failed for agent '{agent_id}'", agent_id=entry.agent_id
            )


class GonePeer(AgentPeer):
    """A connection that handed frames over sealed and closed before they were opened:
    their control messages still update the agent's session (a shutdown marks it
    disconnected), with nothing sent back."""

    def __init__(self, factory: AgentChannelFactory, peer_ip: str, agent: secure.AgentKey):
        self.factory = factory
        self.peer_ip = peer_ip
        self.agent = agent
        self.closing = True  # nothing is sent

    def write_payload(self, payload: bytes) -> None:
        """Nothing to write to."""

    def write_pong(self) -> None:
        """Nothing to write to."""

    def close(self) -> None:
        """Already closed."""


class AgentChannelProtocol(AgentPeer, Protocol):
    """One agent TCP connection: 4-byte little-endian frames."""

    factory: AgentChannelFactory

    def __init__(self, factory: AgentChannelFactory, peer_ip: str) -> None:
        self.factory = factory
        self.peer_ip = peer_ip
        self.decoder = secure.FrameDecoder(factory.max_frame)
        #: This connection's number on this node (sealed frames name their connection),
        #: and how many frames its last read held for the hand-over.
        self.number = next(factory.numbers)
        self.last_run = 0
        self.agent: secure.AgentKey | None = None
        self.closing = False
        #: Whether this connection is counted in ``stats.tcp_sessions``.
        self.counted = False
        #: Bytes read past a turn's budget, decoded at a later turn (reading is paused).
        self.held = b""
        self.paused = False

    # ------------------------------------------------------------------ transport

    def connectionMade(self) -> None:
        """Count the connection; read at most :data:`READ_BYTES` from it per reactor turn."""
        self.factory.stats.connections += 1
        self.factory.stats.tcp_sessions += 1
        self.counted = True
        transport: object = self.transport
        while isinstance(transport, ProtocolWrapper):  # the connection limits' wrapper
            transport = transport.transport
        if hasattr(transport, "bufferSize"):
            transport.bufferSize = READ_BYTES

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Handle what was held back for a later turn, then release the agent's slot if this
        connection holds it."""
        held, self.held = self.held, b""
        if held and not self.closing:
            self.decode(held)
        if self.counted:
            self.factory.stats.tcp_sessions -= 1
            self.counted = False
        self.closing = True
        if self.agent is not None:
            self.factory._release(self.agent.agent_id, self)

    def dataReceived(self, data: bytes) -> None:
        """Decode the bytes now, or, past this reactor turn's budget (:data:`TURN_BYTES`),
        hold them and stop reading this connection until a later turn."""
        if self.closing:
            return
        factory = self.factory
        if self.held or factory.turn_spent >= factory.turn_bytes:
            self.held += data
            if not self.paused:
                self.paused = True
                if self.transport is not None:
                    cast(IPushProducer, self.transport).pauseProducing()
                factory.hold(self)
            return
        factory.spend(len(data))
        self.decode(data)

    def resume(self) -> None:
        """From the factory, at a later turn: decode what was held, read again."""
        held, self.held = self.held, b""
        self.paused = False
        if self.closing:
            return
        if held:
            self.decode(held)
        if not self.closing and self.transport is not None:
            cast(IPushProducer, self.transport).resumeProducing()

    def decode(self, data: bytes) -> None:
        """Split the stream into frames and handle each one."""
        self.factory.stats.recv_bytes += len(data)
        if self.closing:
            return
        try:
            frames = self.decoder.feed(data)
        except secure.FrameTooLarge:
            self.factory.log.warn("Too big message size from {peer_ip}.", peer_ip=self.peer_ip)
            self.factory.stats.dropped += 1
            self.close()
            return
        agent = self.agent
        if agent is not None and self.factory.take_sealed is not None:
            self._hand_over(agent, frames)
            return
        for payload in frames:
            if self.closing:
                return
            self.factory.stats.frames += 1
            self.handle_payload(payload)

    def _hand_over(self, agent: secure.AgentKey, frames: list[bytes]) -> None:
        """An authenticated connection's frames: the runs of frames sealed with its agent's
        key go to the sink still sealed (an analysis process opens them); the others
        (``#ping``, another agent's id) are handled here, in their place in the stream.
        Frames the sink does not take are opened here too."""
        factory = self.factory
        prefix = agent.sealed_prefix
        run: list[bytes] = []
        for payload in frames:
            if payload.startswith(prefix):
                run.append(payload)
                continue
            if run:
                self._hand_over_run(agent, run)
                run = []
            if self.closing:
                return
            factory.stats.frames += 1
            self.handle_payload(payload)
        if run:
            self._hand_over_run(agent, run)

    def _hand_over_run(self, agent: secure.AgentKey, run: list[bytes]) -> None:
        if self.closing:
            return
        factory = self.factory
        factory.stats.frames += len(run)
        # A lone frame after a lone frame is an idle agent's keep-alive, most of the time:
        # it is answered here at once, as its agent-info expects, rather than after a
        # batch; a busy agent's reads hold several frames, and the hand-over pays.
        busy = len(run) > 1 or self.last_run > 1
        self.last_run = len(run)
        if busy and self._offer(agent, run):
            return
        for payload in run:
            if self.closing:
                return
            self.handle_payload(payload)

    def _offer(self, agent: secure.AgentKey, run: list[bytes]) -> bool:
        """Hand ``run`` to the sink sealed; False when it does not take it."""
        factory = self.factory
        now = factory.clock.seconds()
        session = factory.sessions.get(agent.agent_id)
        group = SealedFrames(
            agent.agent_id,
            agent.name,
            agent.cipher_key,
            agent.ip,
            session.reported_ip if session is not None else None,
            session.labels if session is not None else (),
            now,
            self.number,
            self.peer_ip,
            run,
        )
        assert factory.take_sealed is not None
        if not factory.take_sealed(group):
            return False
        factory._last_received[agent.agent_id] = now  # opened here, _claim would set it
        return True

    def close(self) -> None:
        """Stop reading and close the connection."""
        self.closing = True
        if self.transport is not None:
            self.transport.loseConnection()

    def write_payload(self, payload: bytes) -> None:
        """Write one payload framed."""
        if self.transport is not None:
            self.transport.write(secure.frame(payload))

    def write_pong(self) -> None:
        """``#pong``, framed."""
        if self.transport is not None:
            self.transport.write(secure.frame(control.PONG))

    def authenticated(self) -> None:
        """The first valid message is this listener's credential: admit the connection."""
        admit(self.transport)


class AgentChannelFactory(Factory[AgentChannelProtocol]):
    """Builds agent connections and holds what they share: keys, sessions, counters, slots."""

    def __init__(
        self,
        keys: secure.KeyStore,
        sessions: SessionTable,
        event_sink: EventSink,
        clock: IReactorTime,
        *,
        log: ClusterLog | None = None,
        overtake_time: float = DEFAULT_OVERTAKE_TIME,
        verify_counters: bool = False,
        max_frame: int = secure.MAX_FRAME,
        max_shared_file: int = MAX_SHARED_FILE,
        cooperator: task.Cooperator | None = None,
        manager_version: str | None = None,
        allow_higher_versions: bool = False,
        run_in_thread: RunInThread = run_in_reactor_pool,
    ) -> None:
        self._keys = keys
        self.sessions = sessions
        self.event_sink = event_sink
        #: How each event reaches the sink (:func:`event_taker`).
        self.take_event = event_taker(event_sink)
        #: Where an authenticated agent's frames go still sealed (None: they are opened
        #: here). Not with ``verify_counters``: its replay check needs each agent's frames
        #: opened in order in one place, this one.
        self.take_sealed = None if verify_counters else sealed_taker(event_sink)
        self.clock = clock
        self.log = log or ClusterLog("Node", "Agent channel")
        self.overtake_time = overtake_time
        self.verify_counters = verify_counters
        self.max_frame = max_frame
        self.max_shared_file = max_shared_file
        self.cooperator = cooperator or task.Cooperator(scheduler=self._schedule)
        self.manager_version = control.version_tuple(manager_version) if manager_version else None
        self.allow_higher_versions = allow_higher_versions
        self.stats = ChannelStats()
        #: Numbers for the connections, in the order they are accepted.
        self.numbers = itertools.count(1)
        #: What each agent sent and was sent (``daemons/stats`` per agent).
        self.agent_counters = counted.AgentCounters(clock.seconds)
        # Start the manager's counter at the current time so it keeps growing across
        # restarts without a counter file (remoted persists it in queue/rids/sender_counter).
        self.send_counter = secure.SendCounter(int(clock.seconds()) & secure.MAX_GLOBAL_COUNTER)
        self._owners: dict[str, AgentPeer] = {}
        self._last_received: dict[str, float] = {}
        self._counters: dict[str, secure.ReceiveCounter] = {}
        #: Per agent: the text of its last keep-alive and what it parsed to.
        self._keepalives: dict[str, tuple[str, control.KeepAlive]] = {}
        self._pushing: set[str] = set()
        self.shared_files = SharedFileReader(run_in_thread, max_shared_file)
        #: Pushes in progress, cancelled when the listener stops.
        self.background = BackgroundWork(self.log, "shared file pushes")
        #: Bytes decoded in this reactor turn, its budget, and the connections waiting for
        #: a later turn (see :data:`TURN_BYTES`).
        self.turn_bytes = TURN_BYTES
        self.turn_spent = 0
        self._held: deque[AgentChannelProtocol] = deque()
        self._next_turn: IDelayedCall | None = None
        #: Questions asked to connected agents (``#!-req``); answers come via handle_control.
        self.requests = RequestTable(self.send_to_agent, clock)

    def _schedule(self, call: Callable[[], None]) -> IDelayedCall:
        return self.clock.callLater(0, call)

    # ------------------------------------------------------------------ turn budget

    def spend(self, size: int) -> None:
        """Count ``size`` bytes against the turn budget; once the count reaches half of it,
        it starts again at the next turn (see :data:`TURN_BYTES`)."""
        self.turn_spent += size
        if self._next_turn is None and 2 * self.turn_spent >= self.turn_bytes:
            self._next_turn = self.clock.callLater(0, self._new_turn)

    def hold(self, proto: AgentChannelProtocol) -> None:
        """``proto`` read past the budget: it is served at a later turn, in order."""
        self._held.append(proto)
        if self._next_turn is None:
            self._next_turn = self.clock.callLater(0, self._new_turn)

    def _new_turn(self) -> None:
        """A new turn: serve the held connections first (oldest first), within the budget."""
        self._next_turn = None
        self.turn_spent = 0
        held = self._held
        while held and self.turn_spent < self.turn_bytes:
            proto = held.popleft()
            self.spend(len(proto.held))
            proto.resume()
        if held and self._next_turn is None:
            self._next_turn = self.clock.callLater(0, self._new_turn)

    def version_refusal(self, startup: control.Startup) -> str | None:
        """Why a startup is refused (agent newer than the manager, or no version), or None.

        Only checked when a ``manager_version`` was given, like remoted without
        ``allow_higher_versions``; a startup whose JSON does not parse is accepted, as there.
        """
        if self.manager_version is None or self.allow_higher_versions or not startup.has_info:
            return None
        agent = control.version_tuple(startup.version) if startup.version else None
        if agent is None:
            return control.RETRIEVE_VERSION
        if agent > self.manager_version:
            return control.INVALID_VERSION_RESPONSE
        return None

    def parse_control(self, agent_id: str, text: str) -> control.AgentControl:
        """Classify a control message of ``agent_id`` (one that does not parse is
        :class:`~.control.OtherControl`).

        An agent sends the same keep-alive text every time until something about it changes
        (remoted, too, only updates the keep-alive time when the text is the one it holds),
        so the last keep-alive of each agent is kept with what it parsed to and an identical
        one is not parsed again.
        """
        last = self._keepalives.get(agent_id)
        if last is not None and last[0] == text:
            return last[1]
        try:
            message = control.parse_agent_control(text)
        except control.ControlError:
            return control.OtherControl(text)
        if isinstance(message, control.KeepAlive):
            self._keepalives[agent_id] = (text, message)
        return message

    # ------------------------------------------------------------------ keys

    @property
    def keys(self) -> secure.KeyStore:
        """The current key store."""
        return self._keys

    def set_keys(self, keys: secure.KeyStore, changed: Iterable[str] | None = None) -> None:
        """Swap in a new key store; agents that lost or changed their key are disconnected.

        ``changed`` (when known) lists the only ids whose entry may differ, so a store
        updated for one enrollment does not walk every connected agent.
        """
        old = self._keys
        self._keys = keys
        candidates = list(self._owners) if changed is None else list(changed)
        for agent_id in candidates:
            entry = keys.get(agent_id)
            if entry is None or entry != old.get(agent_id):
                owner = self._owners.get(agent_id)
                if owner is not None:
                    owner.close()
                self._counters.pop(agent_id, None)
                if entry is None:
                    self._last_received.pop(agent_id, None)
                    self._keepalives.pop(agent_id, None)
                    self.agent_counters.forget(agent_id)
        if changed is None:
            for table in (self._counters, self._last_received, self._keepalives):
                for agent_id in [agent_id for agent_id in table if agent_id not in keys]:
                    del table[agent_id]
            self.agent_counters.retain(keys)

    # ------------------------------------------------------------------ connections

    def buildProtocol(self, addr: IAddress | None) -> AgentChannelProtocol:
        """A protocol for one accepted connection."""
        return AgentChannelProtocol(self, host_text(addr) if addr is not None else "unknown")

    def connection_for(self, agent_id: str) -> AgentPeer | None:
        """The live connection of an agent (or the address of a UDP agent), if any."""
        return self._owners.get(agent_id)

    @property
    def connected_agents(self) -> int:
        """How many agents have a live connection."""
        return len(self._owners)

    def connected_ids(self) -> list[str]:
        """Ids of the agents with a live connection, in id order."""
        return sorted(self._owners)

    def _counter(self, agent_id: str) -> secure.ReceiveCounter:
        counter = self._counters.get(agent_id)
        if counter is None:
            counter = self._counters[agent_id] = secure.ReceiveCounter()
        return counter

    def _contender(self, agent_id: str, proto: AgentPeer) -> AgentPeer | None | bool:
        """None when ``proto`` may use the agent's slot, the idle owner to replace, or False.

        A UDP agent's slot is only the address of its last datagram: any later authenticated
        message of that agent, over either protocol, takes it.
        """
        owner = self._owners.get(agent_id)
        if owner is None or owner is proto or owner.datagram:
            return None
        idle = self.clock.seconds() - self._last_received.get(agent_id, 0.0)
        if self.overtake_time > 0 and idle > self.overtake_time:
            return owner
        return False

    def _claim(self, agent_id: str, proto: AgentPeer, idle_owner: AgentPeer | None | bool) -> None:
        self._last_received[agent_id] = self.clock.seconds()
        if isinstance(idle_owner, AgentPeer):
            self.log.debug(
                "Idle connection of agent ID '{agent_id}' will be closed.", agent_id=agent_id
            )
            self.stats.overtaken += 1
            idle_owner.agent = None
            idle_owner.close()
        self._owners[agent_id] = proto

    def _release(self, agent_id: str, proto: AgentPeer) -> None:
        if self._owners.get(agent_id) is proto:
            del self._owners[agent_id]
            self.requests.agent_gone(agent_id)

    # ------------------------------------------------------------------ sealed frames

    def sealed_opened(self, report: SealedReport) -> None:
        """What an analysis process found opening frames that this channel handed over
        sealed: count the events, answer the control messages on the agent's connection,
        log the malformed events, and close the connection after a frame that could not be
        opened (as when the frame is opened here)."""
        stats = self.stats
        for agent_id, counts in report.events.items():
            events = sum(counts.values())
            stats.events += events
            self.agent_counters.count(agent_id, counted.EVENT, events)
        for outcome in report.outcomes:
            self._sealed_outcome(outcome)

    def _sealed_outcome(self, outcome: SealedOutcome) -> None:
        agent_id = outcome.agent_id
        entry = self.keys.get(agent_id)
        owner = self._owners.get(agent_id)
        # The connection that sent the frames, while it is still open and the agent's.
        sender = (
            owner
            if isinstance(owner, AgentChannelProtocol)
            and owner.number == outcome.connection
            and not owner.closing
            else None
        )
        peer: AgentPeer | None = None
        if entry is not None:
            peer = sender or GonePeer(self, outcome.peer_ip, entry)
        if outcome.control:
            self.agent_counters.count(agent_id, counted.CONTROL, len(outcome.control))
            for text in outcome.control:
                if entry is None or peer is None:
                    self.stats.control += 1  # the agent was removed meanwhile
                elif self._restarted(owner, outcome.connection, agent_id, text):
                    self.stats.control += 1
                else:
                    peer.handle_control(entry, text)
        if outcome.malformed:
            self.stats.dropped += outcome.malformed
            for reason in outcome.reasons:  # the first few; the others are only counted
                self.log.warn(
                    "Malformed event from agent '{agent_id}': {reason}",
                    agent_id=agent_id,
                    reason=reason,
                )
        error = outcome.secure_error()
        if error is not None:
            self.stats.dropped += 1 + outcome.discarded
            if entry is not None and peer is not None:
                peer._log_secure_error(entry, error)
                peer.close()

    def _restarted(
        self, owner: AgentPeer | None, connection: int, agent_id: str, text: str
    ) -> bool:
        """Whether ``text`` is a shutdown sent on ``connection`` while the agent now owns
        another: it is past, the agent started again on the new one."""
        if owner is None or getattr(owner, "number", None) == connection:
            return False
        return isinstance(self.parse_control(agent_id, text), control.Shutdown)

    # ------------------------------------------------------------------ manager → agent

    def send_to_agent(self, agent_id: str, message: str | bytes) -> bool:
        """Send one message to a connected agent; False when it has no connection."""
        proto = self._owners.get(agent_id)
        if proto is None or proto.closing:
            return False
        data = message.encode() if isinstance(message, str) else message
        if data.startswith(b"#!-execd"):
            self.agent_counters.count(agent_id, counted.AR)
        proto.send(data)
        return True

    def force_reconnect(self, agent_id: str) -> bool:
        """Ask an agent to reconnect (``#!-force_reconnect``)."""
        return self.send_to_agent(agent_id, control.FORCE_RECONNECT)

    def push_shared(self, push: SharedPush) -> Deferred[None]:
        """Send a shared file: ``#!-up file <md5> merged.mg``, 900-byte chunks, ``#!-close file``.

        One push per agent at a time; the file is read in ``run_in_thread`` (bounded by
        ``max_shared_file``, and not again while its stat is unchanged), then its chunks are
        sent cooperatively so other agents are served meanwhile. The returned Deferred fires
        when the push is over and never fails: errors are logged here.
        """
        if push.agent_id in self._pushing or push.agent_id not in self._owners:
            return succeed(None)
        self._pushing.add(push.agent_id)
        pushed = self.shared_files.content(push.path)
        pushed.addCallback(self._send_shared, push)
        pushed.addErrback(self._push_failed, push)

        def done(result: object) -> None:
            self._pushing.discard(push.agent_id)

        pushed.addBoth(done)
        return self.background.track(pushed, f"Shared file push to agent {push.agent_id}")

    def _send_chunk(self, agent_id: str, chunk: bytes, deflated: bytes) -> bool:
        proto = self._owners.get(agent_id)
        if proto is None or proto.closing:
            return False
        proto.send_deflated(chunk, deflated)
        return True

    def _send_shared(self, content: SharedContent, push: SharedPush) -> Deferred[None] | None:
        if content.length > self.max_shared_file:
            self.log.warn(
                "Shared file '{path}' is larger than {limit} bytes; "
                "not sent to agent '{agent_id}'.",
                path=push.path,
                limit=self.max_shared_file,
                agent_id=push.agent_id,
            )
            return None
        if push.agent_id not in self._owners:
            return None  # gone while the file was read
        self.stats.pushes += 1
        self.agent_counters.count(push.agent_id, counted.SHARED)

        def steps() -> Generator[None, None, None]:
            if not self.send_to_agent(push.agent_id, control.format_file_update(push.md5)):
                return
            yield None
            for chunk, deflated in content.chunks:
                if not self._send_chunk(push.agent_id, chunk, deflated):
                    return
                yield None
            self.send_to_agent(push.agent_id, control.FILE_CLOSE)

        cooperative = self.cooperator.cooperate(steps())
        # Cancelling the push (the node stops) stops sending its chunks.
        finished: Deferred[None] = Deferred(lambda _: cooperative.stop())

        def over(result: object) -> None:
            if finished.called:
                return
            if isinstance(result, Failure) and not result.check(task.TaskStopped):
                finished.errback(result)
            else:
                finished.callback(None)

        cooperative.whenDone().addBoth(over)
        return finished

    def _push_failed(self, failure: Failure, push: SharedPush) -> None:
        if failure.check(OSError):
            error = failure.value
            assert isinstance(error, OSError)
            self.log.warn(
                "Unable to read shared file '{path}' for agent '{agent_id}': {error}",
                path=push.path,
                agent_id=push.agent_id,
                error=error.strerror or str(error),
            )
            return
        failure.raiseException()  # anything else is a bug: the tracker logs it

    def stopFactory(self) -> None:
        """The listener stopped (the node is stopping): cancel the pushes in progress, and
        decode what connections held for a later turn now (there will be none); questions
        to agents fail."""
        self.background.cancel()
        self.requests.stop()
        if self._next_turn is not None and self._next_turn.active():
            self._next_turn.cancel()
        self._next_turn = None
        while self._held:
            self._held.popleft().resume()

    # ------------------------------------------------------------------ periodic

    def check_disconnections(self) -> list[str]:
        """Run the session table's keep-alive time-out check (for a periodic task); a UDP
        agent that timed out loses its slot (it has no connection that would close)."""
        expired = self.sessions.check_disconnections()
        for agent_id in expired:
            owner = self._owners.get(agent_id)
            if owner is not None and owner.datagram:
                owner.close()
        return expired

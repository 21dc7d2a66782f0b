"""Wazuh's enrollment line protocol (TCP 1515): request parser, replies, server protocol.

An agent opens a TLS connection, sends one line and reads one answer::

    [OSSEC PASS: <pass> ]OSSEC A:'<name>'[ V:'<ver>'][ G:'<g1,g2>'][ IP:'<ip|src>'][ K:'<sha1>']\\n
    OSSEC K:'<id> <name> <ip> <key>'          (success)
    ERROR: <reason>. Unable to add agent      (refusal)

:func:`parse_request` turns the line into an :class:`EnrollmentRequest` or raises
:class:`EnrollmentError`, whose reason is the text wazuh-authd 4.14 answers for the same
mistake (``Invalid agent name: x``, ``Unterminated group field``...). It is stricter than
authd in one way: text after the last field is refused rather than ignored.

:class:`EnrollmentServerFactory` serves the protocol. It knows nothing of roles: it is
given ``register(request, source_ip) -> Deferred[reply]``, which on the master decides
against the registry and on a worker forwards to the master. One request per
connection, reads bounded, an idle client is answered and dropped after a timeout.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from attrs import frozen
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wazuhcluster.registry.groups import MAX_GROUPS_PER_AGENT, group_name_problem
from wazuhcluster.registry.keys import KeyEntry
from wazuhcluster.registry.model import agent_name_problem, normalize_ip
from wazuhcluster.util.limits import host_text
from wazuhcluster.util.nodelay import send_without_delay

#: authd's buffer for one request (MAX_SSL_MSG_SIZE: 64 KiB + 4 KiB).
MAX_REQUEST = 65536 + 4096
MAX_PASSWORD = 1024
MAX_VERSION = 2048
MAX_GROUPS_FIELD = 65536
MAX_IP_FIELD = 46
KEY_HASH_LENGTH = 40
#: Longest piece of client text echoed back in a reply or a log line.
ECHO_LIMIT = 255

SOURCE_IP = "src"
PASSWORD_PREFIX = "OSSEC PASS: "
ADD_PREFIX = "OSSEC A:'"
KEY_REPLY_PREFIX = "OSSEC K:'"
ERROR_PREFIX = "ERROR: "
ERROR_SUFFIX = ". Unable to add agent"

INVALID_REQUEST = "Invalid request for new agent"
INVALID_PASSWORD = "Invalid password"
INVALID_VERSION = "Agent version must be lower or equal to manager version"
REQUEST_TOO_LARGE = "Request too large"
REQUEST_TIMEOUT = "Timeout waiting for the enrollment request"
DECISION_TIMEOUT = "Timeout waiting for the enrollment decision"
#: For a worker's ``register`` when the master link is down (authd says "comunicate").
CANNOT_REACH_MASTER = "Cannot communicate with master"

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VERSION = re.compile(r"v?(\d{1,6})\.(\d{1,6})")

log = Logger()


class EnrollmentError(Exception):
    """A refused enrollment; ``reason`` is the text after ``ERROR:`` in the reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def reply(self) -> str:
        """The line sent to the agent for this refusal."""
        return error_reply(self.reason)


def _echo(text: str) -> str:
    """Client text made safe to echo: bounded and without control characters."""
    return _CONTROL.sub("?", text[:ECHO_LIMIT])


def error_reply(reason: str) -> str:
    """``ERROR: <reason>. Unable to add agent``, as wazuh-authd answers a refusal."""
    return f"{ERROR_PREFIX}{reason}{ERROR_SUFFIX}"


def key_reply(entry: KeyEntry) -> str:
    """``OSSEC K:'<id> <name> <ip> <key>'``, the success answer."""
    return f"{KEY_REPLY_PREFIX}{entry.line()}'"


@frozen
class EnrollmentRequest:
    """One parsed enrollment request; ``ip`` is None, ``"src"`` or a validated address."""

    name: str
    password: str | None = None
    version: str | None = None
    groups: tuple[str, ...] = ()
    ip: str | None = None
    key_hash: str | None = None

    def to_line(self) -> str:
        """The request in wire form (without the newline); parses back to ``self``."""
        parts = [] if self.password is None else [f"{PASSWORD_PREFIX}{self.password} "]
        parts.append(f"{ADD_PREFIX}{self.name}'")
        if self.version is not None:
            parts.append(f" V:'{self.version}'")
        if self.groups:
            parts.append(f" G:'{','.join(self.groups)}'")
        if self.ip is not None:
            parts.append(f" IP:'{self.ip}'")
        if self.key_hash is not None:
            parts.append(f" K:'{self.key_hash}'")
        return "".join(parts)


def parse_request(data: bytes | str) -> EnrollmentRequest:
    """Parse one request line (trailing ``\\n``/``\\r\\n`` allowed); see module docstring.

    Raises :class:`EnrollmentError` for every malformed input and nothing else.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_REQUEST:
            raise EnrollmentError(REQUEST_TOO_LARGE)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise EnrollmentError(INVALID_REQUEST) from None
    else:
        text = data
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if len(text) > MAX_REQUEST:
        raise EnrollmentError(REQUEST_TOO_LARGE)
    if _CONTROL.search(text):
        raise EnrollmentError(INVALID_REQUEST)

    password: str | None = None
    position = 0
    if text.startswith(PASSWORD_PREFIX):
        # The password ends at the first " OSSEC A:'": a name can't hold a quote or
        # space, so this is where the add request starts unless the password holds it.
        marker = text.find(f" {ADD_PREFIX}", len(PASSWORD_PREFIX))
        if marker < 0:
            raise EnrollmentError(INVALID_REQUEST)
        password = text[len(PASSWORD_PREFIX) : marker]
        if len(password) > MAX_PASSWORD:
            raise EnrollmentError(INVALID_PASSWORD)
        position = marker + 1
    if not text.startswith(ADD_PREFIX, position):
        raise EnrollmentError(INVALID_REQUEST)
    position += len(ADD_PREFIX)
    end = text.find("'", position)
    if end < 0:
        raise EnrollmentError(INVALID_REQUEST)
    name = text[position:end]
    if agent_name_problem(name) is not None:
        raise EnrollmentError(f"Invalid agent name: {_echo(name)}")
    position = end + 1

    version, position = _field(text, position, " V:'", "version", MAX_VERSION)
    raw_groups, position = _field(text, position, " G:'", "group", MAX_GROUPS_FIELD)
    ip, position = _field(text, position, " IP:'", "IP", MAX_IP_FIELD)
    key_hash, position = _field(text, position, " K:'", "key", KEY_HASH_LENGTH)
    if position != len(text):
        raise EnrollmentError(INVALID_REQUEST)

    groups = _parse_groups(raw_groups) if raw_groups is not None else ()
    if ip is not None and ip != SOURCE_IP and normalize_ip(ip) is None:
        raise EnrollmentError(f"Invalid IP: {_echo(ip)}")
    if key_hash is not None:
        if _HEX40.fullmatch(key_hash) is None:
            raise EnrollmentError("Invalid key field")
        key_hash = key_hash.lower()
    return EnrollmentRequest(name, password, version, groups, ip, key_hash)


def _field(text: str, position: int, tag: str, what: str, limit: int) -> tuple[str | None, int]:
    """Read an optional ``tag value'`` field at ``position``; return (value, next position)."""
    if not text.startswith(tag, position):
        return None, position
    start = position + len(tag)
    end = text.find("'", start, start + limit + 1)
    if end < 0 or (what == "IP" and " " in text[start:end]):
        raise EnrollmentError(f"Unterminated {what} field")
    return text[start:end], end + 1


def _parse_groups(raw: str) -> tuple[str, ...]:
    """Validate a comma-separated group list and drop repeats (first kept)."""
    if not raw:
        raise EnrollmentError("Invalid group name: Empty Group")
    names = raw.split(",")
    if len(names) > MAX_GROUPS_PER_AGENT:
        raise EnrollmentError(f"Maximum multigroup reached: Limit is {MAX_GROUPS_PER_AGENT}")
    for name in names:
        if group_name_problem(name) is not None:
            raise EnrollmentError(f"Invalid group name: {_echo(name or raw)}")
    return tuple(dict.fromkeys(names))


def version_is_newer(agent_version: str, manager_version: str) -> bool:
    """Whether an agent's version is above the manager's, by major.minor only.

    wazuh-authd compares versions without the patch level, so a 4.14.9 agent may
    enroll with a 4.14.7 manager; an unreadable version counts as 0.0.
    """

    def major_minor(text: str) -> tuple[int, int]:
        match = _VERSION.search(text)
        return (int(match.group(1)), int(match.group(2))) if match else (0, 0)

    return major_minor(agent_version) > major_minor(manager_version)


def parse_reply(data: bytes | str) -> KeyEntry:
    """Parse the manager's answer; raise :class:`EnrollmentError` for ``ERROR:`` or garbage."""
    if isinstance(data, bytes):
        text = data.decode("utf-8", "replace")
    else:
        text = data
    text = text.strip()
    if text.startswith(ERROR_PREFIX):
        reason = text[len(ERROR_PREFIX) :]
        if reason.endswith(ERROR_SUFFIX):
            reason = reason[: -len(ERROR_SUFFIX)]
        raise EnrollmentError(_echo(reason))
    if not (text.startswith(KEY_REPLY_PREFIX) and text.endswith("'")):
        raise EnrollmentError(f"Unexpected reply from manager: {_echo(text)}")
    fields = text[len(KEY_REPLY_PREFIX) : -1].split(" ")
    if len(fields) != 4 or not fields[0].isdigit() or not fields[3]:
        raise EnrollmentError(f"Malformed key in reply: {_echo(text)}")
    if agent_name_problem(fields[1]) is not None or normalize_ip(fields[2]) is None:
        raise EnrollmentError(f"Malformed key in reply: {_echo(text)}")
    return KeyEntry(*fields)


# -- the 1515 server ----------------------------------------------------------------

Register = Callable[[EnrollmentRequest, str], "Deferred[str]"]
Undelivered = Callable[[EnrollmentRequest, str], None]


def peer_host(address: IAddress) -> str:
    """The client's IP as text (IPv4-mapped IPv6 shown as IPv4), ``any`` when unknown."""
    return host_text(address, unknown="any")


class EnrollmentServerProtocol(Protocol):
    """One enrollment connection: read one line, ask ``register``, answer, close."""

    def __init__(self, factory: EnrollmentServerFactory) -> None:
        self.factory = factory
        self.buffer = bytearray()
        self.state = "reading"  # reading → deciding → done
        self.source_ip = "any"
        self.request: EnrollmentRequest | None = None
        self.timer: IDelayedCall | None = None
        self.pending: Deferred[str] | None = None
        self.connected_now = False

    def connectionMade(self) -> None:
        """Start the idle timer (or refuse when too many clients are connected)."""
        self.connected_now = True
        self.factory.active += 1
        send_without_delay(self.transport)
        self.source_ip = peer_host(self.transport.getPeer())  # type: ignore[union-attr]
        if self.factory.max_connections and self.factory.active > self.factory.max_connections:
            log.warn("Too many enrollment connections; dropping {ip}", ip=self.source_ip)
            self.state = "done"
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        # The reply and TLS close_notify are two small records: with Nagle on, the second
        # waits for the agent's delayed ACK (~40 ms) whenever the decision takes a moment.
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        self.timer = self.factory.clock.callLater(self.factory.request_timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        """Collect the request line, bounded; anything after it is ignored."""
        if self.state != "reading":
            return
        self.buffer += data
        newline = self.buffer.find(b"\n")
        if newline < 0:
            if len(self.buffer) > self.factory.max_request:
                self._answer(error_reply(REQUEST_TOO_LARGE))
            return
        line = bytes(self.buffer[:newline])
        self.buffer = bytearray()
        if len(line) > self.factory.max_request:
            self._answer(error_reply(REQUEST_TOO_LARGE))
            return
        self._decide(line)

    def _decide(self, line: bytes) -> None:
        """Parse the line and hand a valid request to ``register``."""
        try:
            request = parse_request(line)
        except EnrollmentError as error:
            log.info(
                "Refused enrollment request from {ip}: {reason}",
                ip=self.source_ip,
                reason=error.reason,
            )
            self._answer(error.reply())
            return
        self.state = "deciding"
        self.request = request
        self._cancel_timer()
        self.timer = self.factory.clock.callLater(self.factory.decision_timeout, self._timed_out)
        pending = defer.maybeDeferred(self.factory.register, request, self.source_ip)
        self.pending = pending
        pending.addCallbacks(self._decided, self._failed).addErrback(
            lambda failure: log.failure("Could not answer an enrollment", failure)
        )

    def _decided(self, reply: str) -> None:
        """Send the decision, or report it as undelivered if the agent has gone."""
        self.pending = None
        if self.state == "deciding" and self.connected_now:
            self._answer(reply)
            return
        self.state = "done"
        if self.request is not None and reply.startswith(KEY_REPLY_PREFIX):
            log.warn(
                "Agent key not delivered to {name} ({ip}): connection closed or timed out",
                name=self.request.name,
                ip=self.source_ip,
            )
            if self.factory.undelivered is not None:
                self.factory.undelivered(self.request, reply)

    def _failed(self, failure: Failure) -> None:
        """An error in ``register`` becomes an internal-error reply (and a log line)."""
        self.pending = None
        name = self.request.name if self.request is not None else "?"
        log.failure("Enrollment of {name} from {ip} failed", failure, name=name, ip=self.source_ip)
        if self.state == "deciding" and self.connected_now:
            self._answer(error_reply(f"Internal manager error adding agent: {_echo(name)}"))

    def _timed_out(self) -> None:
        """Answer and drop a client that sent nothing, or whose decision never came.

        A decision still running is not cancelled (the master may already have
        registered the agent); when it arrives it is reported as undelivered.
        """
        self.timer = None
        reason = REQUEST_TIMEOUT if self.state == "reading" else DECISION_TIMEOUT
        log.info("Enrollment from {ip}: {reason}", ip=self.source_ip, reason=reason)
        self._answer(error_reply(reason))

    def _answer(self, reply: str) -> None:
        """Write the one reply of this connection and close it."""
        if self.state == "done":
            return
        self.state = "done"
        self._cancel_timer()
        self.transport.write(reply.encode("utf-8"))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _cancel_timer(self) -> None:
        """Stop the pending timeout, if any."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the connection; a decision still pending is kept but not sent."""
        if self.connected_now:
            self.connected_now = False
            self.factory.active -= 1
        self._cancel_timer()


class EnrollmentServerFactory(Factory):
    """Builds :class:`EnrollmentServerProtocol` for one listening port.

    ``register(request, source_ip)`` returns a Deferred of the reply line;
    ``undelivered(request, reply)``, if given, hears about keys the agent never got
    (the master removes such agents, as wazuh-authd does). ``max_connections`` (0: none)
    counts from the TCP connect; the listener's limits (:func:`.enrollment_tls.enrollment_listener`)
    count after the TLS handshake instead, so a node leaves it at 0.
    """

    protocol = EnrollmentServerProtocol
    noisy = False

    def __init__(
        self,
        register: Register,
        clock: IReactorTime,
        request_timeout: float = 10.0,
        decision_timeout: float = 30.0,
        max_request: int = MAX_REQUEST,
        max_connections: int = 0,
        undelivered: Undelivered | None = None,
    ) -> None:
        self.register = register
        self.clock = clock
        self.request_timeout = request_timeout
        self.decision_timeout = decision_timeout
        self.max_request = max_request
        self.max_connections = max_connections
        self.undelivered = undelivered
        self.active = 0

    def buildProtocol(self, addr: IAddress | None) -> EnrollmentServerProtocol:
        """A protocol bound to this factory."""
        return EnrollmentServerProtocol(self)

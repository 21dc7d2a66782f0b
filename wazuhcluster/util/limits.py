"""Connection limits for a listening port: deadlines, idle timeouts, caps per address and in all.

:class:`LimitedFactory` wraps any server factory (inside the TLS layer the endpoint adds, so
it sees each TCP connection from its first moment). A connection lives in two stages:

*pending*
    from the TCP connect until the peer shows its credential: the TLS handshake
    (``admit_on="handshake"``: on 1516 it proves a client certificate), the protocol's
    first valid message (``"protocol"``: the wrapped protocol calls :func:`admit`; 1514's
    first decrypted message, the API's first authenticated request), the first bytes
    (``"data"``) or nothing (``"connect"``: admitted at once). A pending connection must be
    admitted within ``handshake_timeout`` or it is aborted. Pending connections have their
    own caps, per address and in all; when one is full the *oldest* pending connection goes,
    so a flood of bare connects can delay an honest client by one handshake at most, never
    lock it out.
*admitted*
    counted against ``max_per_address`` and ``max_connections``; a connection over either
    is refused (aborted: for ``"connect"`` before the wrapped protocol sees it). An admitted
    connection silent for ``idle_timeout`` is aborted.

Whatever the stage, a connection the wrapped protocol closes is aborted if it is still
open ``close_timeout`` later (TLS waits for the peer's close alert, and a peer that never
reads keeps the last bytes unsent). Warnings are limited to one per address and reason every
:data:`REPORT_EVERY` seconds, with the number left out, so a flood cannot flood the log.
Every check costs a dictionary update and a timer per connection.

An "address" is the peer's IP by default; a listener on a UNIX socket (where every client
has the same address) counts per client uid instead (``address=peer_uid``).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any, Literal

from attrs import frozen
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IProtocolNegotiationFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import Interface, alsoProvides, implementer

from wazuhcluster.util.logs import ClusterLog

#: Concurrent enrollment connections from one address (authd has no such limit; agents
#: behind one NAT address enroll in bursts, so this only stops one address from taking
#: every slot of the global cap).
ENROLLMENT_PER_ADDRESS = 256

#: Seconds between two warnings for the same address and reason.
REPORT_EVERY = 10.0
#: Addresses remembered for the warning limit before the table is emptied.
MAX_REPORTED = 10_000

AdmitOn = Literal["connect", "data", "handshake", "protocol"]


@frozen
class ListenerLimits:
    """The limits of one listener (0 or None: no limit); see the module docstring."""

    #: Seconds from the TCP connect to the credential (TLS handshake, first valid message).
    handshake_timeout: float | None = None
    #: Seconds an admitted connection may stay silent.
    idle_timeout: float | None = None
    #: Admitted connections in all, and from one address.
    max_connections: int = 0
    max_per_address: int = 0
    #: Connections not yet admitted, in all and from one address (the oldest goes first).
    max_pending: int = 0
    max_pending_per_address: int = 0
    #: Seconds a connection closed by the server may take to go away before it is aborted.
    close_timeout: float = 10.0

    def __attrs_post_init__(self) -> None:
        for name in ("max_connections", "max_per_address", "max_pending"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if self.max_pending_per_address < 0:
            raise ValueError(
                f"max_pending_per_address must be 0 or more, not {self.max_pending_per_address}"
            )
        for name in ("handshake_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if self.close_timeout <= 0:
            raise ValueError(f"close_timeout must be positive, not {self.close_timeout}")


class IAdmission(Interface):
    """A connection under limits that a protocol can admit (the peer showed its credential)."""

    def admit() -> None:
        """Move the connection from the pending stage to the admitted one."""


def admit(transport: object) -> None:
    """Admit the connection whose transport is ``transport`` (no-op without limits)."""
    admission = IAdmission(transport, None)
    if admission is not None:
        admission.admit()


def peer_address(transport: ITransport) -> str:
    """The peer's IP as text (IPv4-mapped IPv6 shown as IPv4), or ``unknown``."""
    return host_text(transport.getPeer())


#: What SO_PEERCRED gives: the peer's pid, uid and gid.
_PEERCRED = struct.Struct("3i")


def peer_uid(transport: object) -> str:
    """``uid N`` of the process at the other end of a UNIX socket (SO_PEERCRED, the uid
    it had at connect), or ``unknown`` where the kernel does not say (not Linux, no socket)."""
    option = getattr(socket, "SO_PEERCRED", None)
    get_handle = getattr(transport, "getHandle", None)
    if option is None or get_handle is None:
        return "unknown"
    try:
        raw = get_handle().getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size)
        _pid, uid, _gid = _PEERCRED.unpack(raw)
    except (OSError, AttributeError, TypeError, struct.error):
        return "unknown"
    if uid < 0:  # a socket with no peer (not connected, not UNIX): the kernel says -1
        return "unknown"
    return f"uid {uid}"


def host_text(address: object, unknown: str = "unknown") -> str:
    """The IP of an address as text (IPv4-mapped IPv6 shown as IPv4), or ``unknown``."""
    host = getattr(address, "host", None)
    if not host:
        return unknown
    try:
        parsed = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


@implementer(IAdmission, IHandshakeListener)
class LimitedProtocol(ProtocolWrapper):
    """One connection under a :class:`LimitedFactory`."""

    factory: LimitedFactory

    def __init__(self, factory: LimitedFactory, wrapped: Protocol) -> None:
        super().__init__(factory, wrapped)
        self.address = "unknown"
        self.stage: Literal["new", "pending", "admitted", "gone"] = "new"
        self.refused = False
        self.started = False
        self.last_received = 0.0
        self._idle: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._closing: IDelayedCall | None = None

    # --- stages -----------------------------------------------------------------------
    def makeConnection(self, transport: ITransport) -> None:  # noqa: N802 - Twisted's name
        """Count the connection, start its timers and (unless refused at once) the protocol."""
        self.address = self.factory.address_of(transport)
        factory = self.factory
        self.last_received = factory.clock.seconds()
        if factory.admit_on == "connect":
            if not self._count_admitted(transport):
                Protocol.makeConnection(self, transport)
                transport.abortConnection()  # type: ignore[attr-defined]  # TCP, TLS
                return
        else:
            self.stage = "pending"
            factory.add_pending(self)
            timeout = factory.limits.handshake_timeout
            if timeout:
                self._deadline = factory.clock.callLater(timeout, self._missed_deadline)
        if factory.limits.idle_timeout:
            self._idle = factory.clock.callLater(factory.limits.idle_timeout, self._check_idle)
        self.started = True
        super().makeConnection(transport)

    def admit(self) -> None:
        """The peer showed its credential: count it as admitted, or refuse it over a cap."""
        if self.stage != "pending":
            return
        self.factory.remove_pending(self)
        self._cancel("_deadline")
        if not self._count_admitted(self.transport):
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _count_admitted(self, transport: ITransport | None) -> bool:
        factory = self.factory
        limits = factory.limits
        count = factory.counts.get(self.address, 0) + 1
        over = None
        if limits.max_per_address and count > limits.max_per_address:
            over = count
        elif limits.max_connections and factory.admitted + 1 > limits.max_connections:
            over = factory.admitted + 1
        if over is not None:
            self.refused = True
            self.stage = "gone"
            factory.refused += 1
            factory.report(
                self.address,
                "refused",
                "Too many connections from {ip} ({count}), rejecting.",
                count=over if over == count else f"{over} in all",
            )
            return False
        self.stage = "admitted"
        factory.counts[self.address] = count
        factory.admitted += 1
        return True

    def evict(self, reason: str) -> None:
        """Abort a pending connection pushed out by newer ones."""
        self.stage = "gone"
        self.factory.evicted += 1
        self.factory.report(
            self.address,
            "evicted",
            "Too many connections from {ip} before {stage} ({count}): closing the oldest.",
            stage=self.factory.credential,
            count=reason,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _missed_deadline(self) -> None:
        self._deadline = None
        if self.stage != "pending":
            return
        factory = self.factory
        factory.late += 1
        factory.remove_pending(self)
        self.stage = "gone"
        factory.report(
            self.address,
            "late",
            "Closing connection from {ip}: no {stage} within {seconds:.0f} s.",
            stage=factory.credential,
            seconds=factory.limits.handshake_timeout,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _check_idle(self) -> None:
        self._idle = None
        factory = self.factory
        timeout = factory.limits.idle_timeout
        assert timeout is not None
        quiet = factory.clock.seconds() - self.last_received
        if quiet < timeout:
            self._idle = factory.clock.callLater(timeout - quiet, self._check_idle)
            return
        factory.idled += 1
        factory.report(
            self.address,
            "idle",
            "Closing connection from {ip}: nothing received for {seconds:.0f} s.",
            seconds=quiet,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    # --- the wrapped protocol's view --------------------------------------------------
    def handshakeCompleted(self) -> None:  # noqa: N802 - Twisted's name
        """TLS is up: admit when the handshake is the credential; tell the protocol."""
        if self.factory.admit_on == "handshake":
            self.admit()
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """Note the time (the idle timer reads it lazily) and pass the bytes on."""
        if not self.started or self.stage == "gone":
            return
        self.last_received = self.factory.clock.seconds()
        if self.factory.admit_on == "data":
            self.admit()
            if self.refused:
                return
        super().dataReceived(data)

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        """Close as asked, and abort if the connection is still there ``close_timeout`` later."""
        if self._closing is None and self.transport is not None:
            timeout = self.factory.limits.close_timeout
            self._closing = self.factory.clock.callLater(timeout, self._close_overdue)
        super().loseConnection()

    def _close_overdue(self) -> None:
        self._closing = None
        self.factory.overdue += 1
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - Twisted's name
        """Release the slot and the timers; only a started protocol hears of the loss."""
        for timer in ("_idle", "_deadline", "_closing"):
            self._cancel(timer)
        factory = self.factory
        if self.stage == "pending":
            factory.remove_pending(self)
        elif self.stage == "admitted":
            left = factory.counts.get(self.address, 1) - 1
            if left > 0:
                factory.counts[self.address] = left
            else:
                factory.counts.pop(self.address, None)
            factory.admitted -= 1
        self.stage = "gone"
        if self.started:
            super().connectionLost(reason)

    def _cancel(self, name: str) -> None:
        timer: IDelayedCall | None = getattr(self, name)
        if timer is not None and timer.active():
            timer.cancel()
        setattr(self, name, None)


class LimitedFactory(WrappingFactory[LimitedProtocol]):
    """Wraps ``wrapped`` with ``limits`` (see the module docstring).

    ``max_per_address`` and ``idle_timeout`` remain as keywords for a listener that admits
    at connect and needs nothing else. ``credential`` names what admits a connection in
    log lines ("TLS handshake", "valid message"...). ``address`` gives the key a connection
    is counted under, from its transport (the peer's IP; :func:`peer_uid` on a UNIX socket).
    """

    protocol = LimitedProtocol

    def __init__(
        self,
        wrapped: Factory[Any],
        clock: IReactorTime,
        log: ClusterLog,
        *,
        max_per_address: int = 0,
        idle_timeout: float | None = None,
        limits: ListenerLimits | None = None,
        admit_on: AdmitOn = "connect",
        credential: str | None = None,
        address: Callable[[Any], str] = peer_address,
    ) -> None:
        if limits is None:
            limits = ListenerLimits(max_per_address=max_per_address, idle_timeout=idle_timeout)
        elif max_per_address or idle_timeout is not None:
            raise ValueError("give either limits or max_per_address/idle_timeout, not both")
        super().__init__(wrapped)
        if IProtocolNegotiationFactory.providedBy(wrapped):
            # TLS asks the listening factory which protocols to offer in ALPN (HTTP sites do):
            # without this, a client offering ALPN gets an "internal error" alert.
            alsoProvides(self, IProtocolNegotiationFactory)
        self.clock = clock
        self.log = log
        self.limits = limits
        self.admit_on = admit_on
        self.address_of = address
        self.credential = (
            credential
            or {
                "connect": "connection",
                "data": "first message",
                "handshake": "TLS handshake",
                "protocol": "valid message",
            }[admit_on]
        )
        #: Live admitted connections per address, and in all.
        self.counts: dict[str, int] = {}
        self.admitted = 0
        #: Pending connections, oldest first: in all and per address.
        self.pending: dict[LimitedProtocol, None] = {}
        self.pending_by_address: dict[str, dict[LimitedProtocol, None]] = {}
        #: Connections refused at admission, pushed out while pending, closed for missing
        #: the deadline, for idleness, and aborted because their close took too long.
        self.refused = 0
        self.evicted = 0
        self.late = 0
        self.idled = 0
        self.overdue = 0
        self._reported: dict[tuple[str, str], tuple[float, int]] = {}

    @property
    def max_per_address(self) -> int:
        """The admitted connections allowed from one address (0: no limit)."""
        return self.limits.max_per_address

    @property
    def idle_timeout(self) -> float | None:
        """Seconds an admitted connection may stay silent (None: forever)."""
        return self.limits.idle_timeout

    def add_pending(self, connection: LimitedProtocol) -> None:
        """Count a new pending connection, pushing the oldest out of a full pool."""
        limits = self.limits
        mine = self.pending_by_address.setdefault(connection.address, {})
        if limits.max_pending_per_address and len(mine) >= limits.max_pending_per_address:
            oldest = next(iter(mine))
            self.remove_pending(oldest)
            oldest.evict(f"{len(mine) + 2}")
            mine = self.pending_by_address.setdefault(connection.address, {})
        if limits.max_pending and len(self.pending) >= limits.max_pending:
            oldest = next(iter(self.pending))
            self.remove_pending(oldest)
            oldest.evict(f"{len(self.pending) + 2} in all")
            mine = self.pending_by_address.setdefault(connection.address, {})
        mine[connection] = None
        self.pending[connection] = None

    def remove_pending(self, connection: LimitedProtocol) -> None:
        """Forget a pending connection (admitted, evicted, late or gone)."""
        self.pending.pop(connection, None)
        mine = self.pending_by_address.get(connection.address)
        if mine is not None:
            mine.pop(connection, None)
            if not mine:
                del self.pending_by_address[connection.address]

    def report(self, address: str, reason: str, message: str, **fields: Any) -> None:
        """Warn, at most once per address and reason every :data:`REPORT_EVERY` seconds."""
        now = self.clock.seconds()
        key = (address, reason)
        last = self._reported.get(key)
        if last is not None and now - last[0] < REPORT_EVERY:
            self._reported[key] = (last[0], last[1] + 1)
            return
        if len(self._reported) >= MAX_REPORTED:
            self._reported.clear()
        self._reported[key] = (now, 0)
        if last is not None and last[1]:
            message += " ({more} more like it since the last report)"
            fields["more"] = last[1]
        self.log.warn(message, ip=address, **fields)

    def __getattr__(self, name: str) -> Any:
        # Code holding the listener's factory (tests, health) still reaches the wrapped one.
        if name == "wrappedFactory":
            raise AttributeError(name)
        return getattr(self.wrappedFactory, name)


def close_connections(factory: object) -> int:
    """Close every live connection a wrapping factory accepted (what is still buffered is
    sent, nothing more is read); returns how many. A listener that stops calls it: a node
    that hands a role over (``<failover>``) must not keep serving through old connections."""
    protocols = list(getattr(factory, "protocols", None) or ())
    for protocol in protocols:
        protocol.loseConnection()
    return len(protocols)


def stop_serving(port: IListeningPort | None, factory: object) -> Deferred[None]:
    """Close every connection ``factory`` accepted, then stop ``port`` listening (None: a
    port never opened, nothing to stop). For services that keep their own listening port."""
    close_connections(factory)
    if port is None:
        return succeed(None)
    return maybeDeferred(port.stopListening).addCallback(lambda _: None)


class ListenerService(StreamServerEndpointService):
    """A listening service whose stop also closes the connections it accepted."""

    def stopService(self) -> Deferred[None]:
        """Stop listening, then close what is still connected."""
        stopped: Deferred[None] = super().stopService()
        close_connections(self.factory)
        return stopped

"""Per-address connection limits and idle timeouts for a listening port.

:class:`LimitedFactory` wraps any server factory (before TLS is added by the endpoint, so it
counts TCP connections, like Wazuh's ``MAX_CONNECTIONS_PER_IP``). A connection over the
per-address limit is aborted before the wrapped protocol sees it, with one warning; a
connection that receives nothing for ``idle_timeout`` seconds is aborted with a warning.
Both checks cost one dictionary update and one timer per connection.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IProtocolNegotiationFactory, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides

from wazuhcluster.util.logs import ClusterLog

#: Concurrent enrollment connections from one address (authd has no such limit; agents
#: behind one NAT address enroll in bursts, so this only stops one address from taking
#: every slot of the global cap).
ENROLLMENT_PER_ADDRESS = 256


def peer_address(transport: Any) -> str:
    """The peer's IP as text (IPv4-mapped IPv6 shown as IPv4), or ``unknown``."""
    return host_text(transport.getPeer())


def host_text(address: Any, unknown: str = "unknown") -> str:
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


class LimitedProtocol(ProtocolWrapper):
    """One connection under a :class:`LimitedFactory`."""

    factory: LimitedFactory

    def __init__(self, factory: LimitedFactory, wrapped: Protocol) -> None:
        super().__init__(factory, wrapped)
        self.address = "unknown"
        self.refused = False
        self.last_received = 0.0
        self._idle: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 - Twisted's name
        """Count the connection; abort it before the wrapped protocol starts when over the limit."""
        self.address = peer_address(transport)
        factory = self.factory
        count = factory.counts.get(self.address, 0) + 1
        if factory.max_per_address and count > factory.max_per_address:
            self.refused = True
            factory.refused += 1
            factory.log.warn(
                "Too many connections from {ip} ({count}), rejecting.",
                ip=self.address,
                count=count,
            )
            Protocol.makeConnection(self, transport)
            transport.abortConnection()
            return
        factory.counts[self.address] = count
        self.last_received = factory.clock.seconds()
        if factory.idle_timeout:
            self._idle = factory.clock.callLater(factory.idle_timeout, self._check_idle)
        super().makeConnection(transport)

    def _check_idle(self) -> None:
        self._idle = None
        factory = self.factory
        assert factory.idle_timeout is not None
        quiet = factory.clock.seconds() - self.last_received
        if quiet < factory.idle_timeout:
            self._idle = factory.clock.callLater(factory.idle_timeout - quiet, self._check_idle)
            return
        factory.idled += 1
        factory.log.warn(
            "Closing connection from {ip}: nothing received for {seconds:.0f} s.",
            ip=self.address,
            seconds=quiet,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """Note the time (the idle timer reads it lazily) and pass the bytes on."""
        if self.refused:
            return
        self.last_received = self.factory.clock.seconds()
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - Twisted's name
        """Release the address's slot and the timer; only an accepted connection reports on."""
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.refused:
            return
        counts = self.factory.counts
        left = counts.get(self.address, 1) - 1
        if left > 0:
            counts[self.address] = left
        else:
            counts.pop(self.address, None)
        super().connectionLost(reason)


class LimitedFactory(WrappingFactory[LimitedProtocol]):
    """Wraps ``wrapped``: at most ``max_per_address`` concurrent connections per peer address
    (0: no limit) and, when ``idle_timeout`` is set, abort connections silent that long."""

    protocol = LimitedProtocol

    def __init__(
        self,
        wrapped: Factory[Any],
        clock: IReactorTime,
        log: ClusterLog,
        *,
        max_per_address: int = 0,
        idle_timeout: float | None = None,
    ) -> None:
        if max_per_address < 0:
            raise ValueError(f"max_per_address must be 0 or more, not {max_per_address}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout}")
        super().__init__(wrapped)
        if IProtocolNegotiationFactory.providedBy(wrapped):
            # TLS asks the listening factory which protocols to offer in ALPN (HTTP sites do):
            # without this, a client offering ALPN gets an "internal error" alert.
            alsoProvides(self, IProtocolNegotiationFactory)
        self.clock = clock
        self.log = log
        self.max_per_address = max_per_address
        self.idle_timeout = idle_timeout
        #: Live accepted connections per address.
        self.counts: dict[str, int] = {}
        #: Connections refused for the per-address limit, and closed for idleness.
        self.refused = 0
        self.idled = 0

    def __getattr__(self, name: str) -> Any:
        # Code holding the listener's factory (tests, health) still reaches the wrapped one.
        if name == "wrappedFactory":
            raise AttributeError(name)
        return getattr(self.wrappedFactory, name)

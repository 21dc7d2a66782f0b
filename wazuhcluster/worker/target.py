"""Where the worker's link dials: the master of ``<nodes><node>``, or the one etcd elected.

Without ``<failover>`` the target is fixed. With it the worker starts with no target (its
attempts fail with :class:`NoMasterKnown`, retried with the link's back-off) until the
election tells it where the master is, and it is moved whenever another node is elected.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from zope.interface import implementer

MakeEndpoint = Callable[[str, int], IStreamClientEndpoint]


class NoMasterKnown(Exception):
    """The worker does not know yet where the master is (no election seen)."""


@implementer(IStreamClientEndpoint)
class MasterTarget:
    """An endpoint to whichever master the worker follows now."""

    def __init__(self, make: MakeEndpoint, host: str | None = None, port: int = 0) -> None:
        self.make = make
        self.host = host
        self.port = port
        #: The endpoint built for the current target (once per target: it reads the TLS
        #: material).
        self._endpoint: tuple[tuple[str, int], IStreamClientEndpoint] | None = None

    @property
    def known(self) -> bool:
        """Whether a master has been named."""
        return self.host is not None

    def move(self, host: str, port: int) -> bool:
        """Dial ``host:port`` from the next attempt on; True when that is a change."""
        if (self.host, self.port) == (host, port):
            return False
        self.host, self.port = host, port
        return True

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect to the current master, or fail at once while none is known."""
        if self.host is None:
            return fail(NoMasterKnown("no master elected yet"))
        where = (self.host, self.port)
        if self._endpoint is None or self._endpoint[0] != where:
            self._endpoint = (where, self.make(*where))
        return self._endpoint[1].connect(factory)

    def __str__(self) -> str:
        return "no master known yet" if self.host is None else f"{self.host}:{self.port}"

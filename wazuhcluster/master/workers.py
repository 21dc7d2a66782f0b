"""The master's directory of connected workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from attrs import define, field

from wazuhcluster.wire.interfaces import IPeer


@define(eq=False)
class WorkerLink:
    """One connected, authenticated worker as the master sees it."""

    name: str
    version: str
    address: str
    protocol: IPeer
    connected_at: float
    last_keepalive: float
    #: Per-link state of the features (integrity locks, sync status...), by feature name.
    state: dict[str, Any] = field(factory=dict)

    def disconnect(self) -> None:
        """Drop the worker's connection at once."""
        transport = getattr(self.protocol, "transport", None)
        if transport is not None:
            transport.abortConnection()


@define
class Departure:
    """A worker that left: when, and what it was."""

    name: str
    version: str
    address: str
    at: float


#: How long a departed worker is still reported as disconnected.
DEPARTURE_MEMORY = 24 * 3600.0
#: How many (name, address) pairs the log of refusals remembers (oldest forgotten first).
REFUSALS_REMEMBERED = 1024


class WorkerDirectory:
    """Connected workers by name, in connection order, and the ones that left recently."""

    def __init__(self) -> None:
        self._links: dict[str, WorkerLink] = {}
        self.departed: dict[str, Departure] = {}
        self._refusals: dict[tuple[str, str], str] = {}

    def refusal_is_new(self, name: str, address: str, reason: str) -> bool:
        """Remember that a worker claiming ``name`` from ``address`` was refused for
        ``reason``; True unless that is what it was refused for last time (so a worker
        retrying for hours is logged once per change of reason, not at every attempt)."""
        key = (name, address)
        if self._refusals.get(key) == reason:
            return False
        self._refusals.pop(key, None)
        self._refusals[key] = reason
        while len(self._refusals) > REFUSALS_REMEMBERED:
            del self._refusals[next(iter(self._refusals))]
        return True

    def add(self, link: WorkerLink) -> None:
        """Register a worker that passed the handshake; its name must be free."""
        if link.name in self._links:
            raise KeyError(f"worker {link.name} is already connected")
        self._links[link.name] = link
        self.departed.pop(link.name, None)
        for key in [key for key in self._refusals if key[0] == link.name]:
            del self._refusals[key]

    def remove(self, link: WorkerLink, now: float) -> bool:
        """Forget ``link`` if it is still the one registered under its name; remember it left."""
        if self._links.get(link.name) is link:
            del self._links[link.name]
            self.departed[link.name] = Departure(link.name, link.version, link.address, now)
            return True
        return False

    def recent_departures(self, now: float) -> list[Departure]:
        """Workers that left within :data:`DEPARTURE_MEMORY` and have not come back."""
        for name in [n for n, d in self.departed.items() if now - d.at > DEPARTURE_MEMORY]:
            del self.departed[name]
        return list(self.departed.values())

    def get(self, name: str) -> WorkerLink | None:
        """The worker called ``name``, if connected."""
        return self._links.get(name)

    def names(self) -> list[str]:
        """Names of the connected workers."""
        return list(self._links)

    def __iter__(self) -> Iterator[WorkerLink]:
        return iter(list(self._links.values()))

    def __len__(self) -> int:
        return len(self._links)

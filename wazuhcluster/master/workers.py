"""The master's directory of connected workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from attrs import define, field


@define(eq=False)
class WorkerLink:
    """One connected, authenticated worker as the master sees it."""

    name: str
    version: str
    address: str
    protocol: Any
    connected_at: float
    last_keepalive: float
    #: Per-link state of the features (integrity locks, sync status...), by feature name.
    state: dict[str, Any] = field(factory=dict)

    def disconnect(self) -> None:
        """Drop the worker's connection at once."""
        transport = getattr(self.protocol, "transport", None)
        if transport is not None:
            transport.abortConnection()


class WorkerDirectory:
    """Connected workers by name, in connection order."""

    def __init__(self) -> None:
        self._links: dict[str, WorkerLink] = {}

    def add(self, link: WorkerLink) -> None:
        """Register a worker that passed the handshake; its name must be free."""
        if link.name in self._links:
            raise KeyError(f"worker {link.name} is already connected")
        self._links[link.name] = link

    def remove(self, link: WorkerLink) -> bool:
        """Forget ``link`` if it is still the one registered under its name."""
        if self._links.get(link.name) is link:
            del self._links[link.name]
            return True
        return False

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

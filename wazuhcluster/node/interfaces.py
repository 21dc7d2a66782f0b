"""What both roles hand their node and control backend of the analysis service."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Interface


class IRuleset(Interface):
    """The node's ruleset, as the control backend and SIGHUP reload it."""

    def reload() -> Deferred[None]:
        """Build the engine again from the ruleset on disk; keep the old one on failure."""

    def reopen_alerts() -> Deferred[None]:
        """Reopen alerts.json (after logrotate moved it)."""

    def intake() -> dict[str, Any]:
        """The intake numbers: received, processed, dropped, queue, EPS, per process."""


class IMasterFollower(Interface):
    """A worker that links to whichever master the election names (``<failover>``)."""

    def follow_master(name: str, host: str, port: int) -> Deferred[None] | None:
        """Link to master ``name`` at ``host:port`` from now on; when that is a move, drop
        the current link and dial the new master at once (the Deferred fires when the old
        link is down and the new attempt started)."""

"""What a role hands the agent channel, and what the channel offers the role."""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.agents.sealed import SealedFrames
from wazuhcluster.agents.sessions import SessionTable


class IEventSink(Interface):
    """Takes every event the agents send (the node's analysis service)."""

    def __call__(event: AgentEvent) -> None:
        """Queue ``event`` for analysis; never blocks, never raises for a full queue."""


class ISealedSink(Interface):
    """An event sink that also takes an authenticated agent's frames still sealed, to open
    them where it analyses them (:mod:`~wazuhcluster.agents.sealed`)."""

    def take_sealed(group: SealedFrames) -> bool:
        """Queue ``group``; False when it does not take it now (fewer than two analysis
        processes, an EPS limit, a full queue): the channel then opens the frames itself."""


class IMergedFiles(Interface):
    """Says which merged.mg an agent should have (its group's or its multigroup's)."""

    def __call__(agent_id: str) -> tuple[str, str] | None:
        """``(md5, path)`` of the agent's merged.mg, or None when there is none yet."""


class IAgentChannel(Interface):
    """A node's agent channel as the role sees it: sessions, key updates, reconnections."""

    sessions: SessionTable = Attribute("The agents' sessions on this node.")

    def send_message(agent_ids: list[str], message: str) -> list[str]:
        """Send ``message`` (a manager → agent text, e.g. ``#!-execd ...``) to each of the
        given agents connected here; the ids it was sent to."""

    def reconnect(agent_ids: list[str], count: int = 0) -> list[str]:
        """Ask the given connected agents, plus up to ``count`` more, to reconnect; the ids
        asked."""

    def apply_key_changes(
        added: Iterable[tuple[str, str, str, str]], removed: Iterable[str]
    ) -> Deferred[None] | None:
        """Take ``(id, name, ip, key)`` entries and removed ids this node just wrote to
        client.keys; they are usable by agents on return, or when the Deferred fires."""

    def reload_keys(force: bool = False) -> Deferred[None]:
        """Read client.keys again if it changed (always when ``force``)."""

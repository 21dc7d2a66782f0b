"""What a role hands the agent channel, and what the channel offers the role."""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.agents.sessions import SessionTable


class IEventSink(Interface):
    """Takes every event the agents send (the node's analysis service)."""

    def __call__(event: AgentEvent) -> None:
        """Queue ``event`` for analysis; never blocks, never raises for a full queue."""


class IMergedFiles(Interface):
    """Says which merged.mg an agent should have (its group's or its multigroup's)."""

    def __call__(agent_id: str) -> tuple[str, str] | None:
        """``(md5, path)`` of the agent's merged.mg, or None when there is none yet."""


class IAgentChannel(Interface):
    """A node's agent channel as the role sees it: sessions, key updates, reconnections."""

    sessions: SessionTable = Attribute("The agents' sessions on this node.")

    def reconnect(agent_ids: list[str], count: int = 0) -> list[str]:
        """Ask the given connected agents, plus up to ``count`` more, to reconnect; the ids
        asked."""

    def send_control(agent_ids: list[str], command: str) -> list[str]:
        """Send ``#!-<command>`` to the given agents connected here; the ids reached."""

    def apply_key_changes(
        added: Iterable[tuple[str, str, str, str]], removed: Iterable[str]
    ) -> Deferred[None] | None:
        """Take ``(id, name, ip, key)`` entries and removed ids this node just wrote to
        client.keys; they are usable by agents on return, or when the Deferred fires."""

    def reload_keys(force: bool = False) -> Deferred[None]:
        """Read client.keys again if it changed (always when ``force``)."""

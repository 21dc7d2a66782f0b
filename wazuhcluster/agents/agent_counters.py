"""Per-agent message counters of the agent channel, as Wazuh 4.4's remoted keeps them
(``GET /agents/{agent_id}/daemons/stats`` for ``wazuh-remoted``).

One small list of integers per agent that has sent something since this node started,
dropped when the agent's key goes away; counting is one list increment. What this node
does not count (requests and SCA messages sent, and sends discarded: this node
queues none) stays 0.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

#: Slots of one agent's record.
EVENT, CONTROL, KEEPALIVE, STARTUP, SHUTDOWN, REQUEST, ACK, AR, SHARED = range(9)
_SLOTS = 9


class AgentCounters:
    """What each agent sent and was sent, since its first message here."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        #: agent id → (when counting started, the slots above).
        self._records: dict[str, tuple[float, list[int]]] = {}

    def count(self, agent_id: str, slot: int, times: int = 1) -> None:
        """``times`` more messages of kind ``slot`` for ``agent_id``."""
        record = self._records.get(agent_id)
        if record is None:
            record = self._records[agent_id] = (self.now(), [0] * _SLOTS)
        record[1][slot] += times

    def forget(self, agent_id: str) -> None:
        """Drop an agent's record (its key went away)."""
        self._records.pop(agent_id, None)

    def retain(self, known: Container[str]) -> None:
        """Drop the records of agents not in ``known``."""
        for agent_id in [agent_id for agent_id in self._records if agent_id not in known]:
            del self._records[agent_id]

    def __len__(self) -> int:
        return len(self._records)

    def started(self, agent_id: str) -> float | None:
        """When counting started for ``agent_id``; None when it has no record."""
        record = self._records.get(agent_id)
        return None if record is None else record[0]

    def remoted_metrics(self, agent_id: str) -> dict[str, Any]:
        """The agent's counts in Wazuh's ``wazuh-remoted`` per-agent ``metrics`` shape
        (all 0 for an agent with no record)."""
        record = self._records.get(agent_id)
        c = record[1] if record is not None else [0] * _SLOTS
        return {
            "messages": {
                "received_breakdown": {
                    "control": c[CONTROL],
                    "control_breakdown": {
                        "keepalive": c[KEEPALIVE],
                        "request": c[REQUEST],
                        "shutdown": c[SHUTDOWN],
                        "startup": c[STARTUP],
                    },
                    "event": c[EVENT],
                },
                "sent_breakdown": {
                    "ack": c[ACK],
                    "ar": c[AR],
                    "discarded": 0,
                    "request": 0,
                    "sca": 0,
                    "shared": c[SHARED],
                },
            }
        }

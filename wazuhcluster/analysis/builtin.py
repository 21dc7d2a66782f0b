"""What the queue decoders share: the built-in decoder record and small helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from wazuhcluster.analysis.agentstate import AgentState
from wazuhcluster.analysis.eventinfo import EventInfo


@attrs.frozen
class BuiltinDecoder:
    """A decoder analysisd builds in (it has no XML): its name and the ``ossec`` category."""

    reported_name: str
    type: str = "ossec"
    parent: str | None = None
    accumulate: bool = False
    fts: tuple[str, ...] = ()
    plugin_offset: str | None = None
    json_null: str = "string"
    json_array: str = "array"


QueueDecoder = Callable[[EventInfo, str, AgentState], bool]


class MalformedMessage(ValueError):
    """A module queue's decoder refuses a message that lacks what its kind requires (Wazuh
    logs such a message as malformed and drops it): the reason names the field. The engine
    notes it once per agent, queue and reason, and goes no further with the event."""


def location_ends(info: EventInfo, suffix: str) -> bool:
    """True when the event's location (after the agent's ``->``) ends with ``suffix``."""
    return info.location.endswith(suffix)


def as_text(value: Any) -> str:
    """A JSON scalar as Wazuh prints it into a field (integers without a fraction)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:f}"
    return str(value)

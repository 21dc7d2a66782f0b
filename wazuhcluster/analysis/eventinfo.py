"""The working record of one event while it is decoded and matched against rules."""

from __future__ import annotations

from typing import Any, Protocol

# Static fields in the order Wazuh writes them into an alert's ``data`` object.
STATIC_FIELDS = (
    "protocol",
    "action",
    "srcip",
    "srcport",
    "srcuser",
    "dstip",
    "dstport",
    "dstuser",
    "id",
    "status",
    "url",
    "data",
    "extra_data",
    "system_name",
)

# Names a decoder's <order> may use for a static field (``user`` is dstuser).
ORDER_STATIC = {
    "dstuser": "dstuser",
    "srcuser": "srcuser",
    "user": "dstuser",
    "srcip": "srcip",
    "dstip": "dstip",
    "srcport": "srcport",
    "dstport": "dstport",
    "protocol": "protocol",
    "action": "action",
    "id": "id",
    "url": "url",
    "data": "data",
    "extra_data": "extra_data",
    "status": "status",
    "system_name": "system_name",
}

MAX_DYNAMIC_FIELDS = 256


class DecodedBy(Protocol):
    """The decoder an event was decoded with, as the later stages read it (alerts, rules,
    the engine and the decoder plugins); :class:`~.decoders.Decoder` provides it."""

    @property
    def reported_name(self) -> str:
        """The name alerts and rules see (the parent's unless ``use_own_name``)."""

    @property
    def parent(self) -> str | None:
        """The parent decoder's name, for a child."""

    @property
    def type(self) -> str:
        """The log category (``syslog``, ``ossec``...)."""

    @property
    def accumulate(self) -> bool:
        """Whether events of this decoder are accumulated by id."""

    @property
    def fts(self) -> tuple[str, ...]:
        """The fields of the first-time-seen key."""

    @property
    def plugin_offset(self) -> str | None:
        """Where a plugin starts reading: after the parent, after the prematch, or the log."""

    @property
    def json_null(self) -> str:
        """How the JSON plugin writes a null (``string``, ``discard``...)."""

    @property
    def json_array(self) -> str:
        """How the JSON plugin writes an array (``array`` or ``csv``)."""


class EventInfo:
    """Mutable state of one event: pre-decoded header, decoded fields, and match results."""

    __slots__ = (
        "agent_id",
        "agent_ip",
        "agent_labels",
        "agent_name",
        "decoder",
        "field_index",
        "fields",
        "firedtimes",
        "fts_new",
        "full_log",
        "fields_in_data",
        "hostname",
        "last_events",
        "location",
        "log",
        "log_after_parent",
        "log_lower",
        "log_after_prematch",
        "matched",
        "parent_rule",
        "program_name",
        "sections",
        "static",
        "time",
        "timestamp",
    )

    def __init__(self, full_log: str, log: str, location: str, time: float) -> None:
        self.full_log = full_log
        self.log = log
        self.log_lower = log.lower()
        self.location = location
        self.time = time
        self.timestamp: str | None = None
        self.hostname: str | None = None
        self.program_name: str | None = None
        self.agent_id = "000"
        self.agent_name: str | None = None
        self.agent_ip: str | None = None
        # The agent's labels, a hidden one's key with a leading '!' (see engine.Event).
        self.agent_labels: tuple[tuple[str, str], ...] = ()
        self.decoder: DecodedBy | None = None
        self.static: dict[str, str] = {}
        self.fields: list[tuple[str, str]] = []
        self.field_index: dict[str, str] = {}
        self.log_after_parent = log
        self.log_after_prematch = log
        self.matched = 0
        # The rule directly above the one the event matched (Wazuh's prev_rule): an event
        # inside the matched rule's ignore window alerts on it instead.
        self.parent_rule: object | None = None  # a rules.Rule
        self.firedtimes = 0
        self.last_events: list[str] = []
        self.fts_new: bool | None = None
        # Set by the queue decoders: top-level alert objects (``syscheck``...) and whether
        # the dynamic fields go to the alert's ``data`` (not for FIM, as in Wazuh).
        self.sections: dict[str, Any] | None = None
        self.fields_in_data = True

    def add_field(self, key: str, value: str) -> None:
        """Append a dynamic field (Wazuh keeps duplicates; lookups see the first)."""
        if len(self.fields) < MAX_DYNAMIC_FIELDS:
            self.fields.append((key, value))
            self.field_index.setdefault(key.lower(), value)

    def find_field(self, name: str) -> str | None:
        """Value of the first dynamic field called ``name`` (case-insensitive), or None."""
        found = self.field_index.get(name)
        if found is None:
            found = self.field_index.get(name.lower())
        return found

    def get(self, name: str) -> str | None:
        """A static field by its rule/decoder name, else a dynamic field."""
        if name in ("user", "dstuser"):
            return self.static.get("dstuser")
        if name in self.static:
            return self.static[name]
        if name == "systemname":
            return self.static.get("system_name")
        if name == "location":
            return self.location
        if name == "hostname":
            return self.hostname
        if name == "program_name":
            return self.program_name
        return self.find_field(name)

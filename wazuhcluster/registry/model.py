"""The registry's records, name and address rules, and the errors its methods raise."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from wazuhcluster.registry.groups import group_name_problem

#: Wazuh's agent name rule (OS_IsValidName): 2 to 128 characters among letters, digits,
#: '-', '_' and '.', not starting with '.'.
_AGENT_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{1,127}")
#: Longest text accepted as an IP: an IPv6 address plus a prefix length.
MAX_IP_TEXT = 50
ANY_IP = "any"
NEVER_CONNECTED = "never_connected"
CONNECTION_STATUSES = ("never_connected", "pending", "active", "disconnected")


def agent_name_problem(name: str) -> str | None:
    """Return why ``name`` is not a valid agent name, or None when it is."""
    if not 2 <= len(name) <= 128:
        return "an agent name has 2 to 128 characters"
    if _AGENT_NAME.fullmatch(name) is None:
        return "only letters, digits, '-', '_' and '.' are allowed, not first '.'"
    return None


def normalize_ip(text: str) -> str | None:
    """Return the registry form of an agent IP (``any``, an address or a network), or None.

    Like Wazuh, an address may carry a prefix length (``10.0.0.0/8``); the text is kept
    as given once it has been validated, so ``client.keys`` shows what the agent asked.
    """
    if text == ANY_IP:
        return ANY_IP
    if not text or len(text) > MAX_IP_TEXT:
        return None
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def format_agent_id(number: int) -> str:
    """Wazuh's agent id text: zero-padded to at least three digits (``001``)."""
    return f"{number:03d}"


def parse_agent_id(text: str) -> int:
    """The number of an agent id text (``"001"`` → 1); raise ValueError when malformed."""
    if not (1 <= len(text) <= 8 and text.isascii() and text.isdigit()) or int(text) == 0:
        raise ValueError(f"invalid agent id {text[:16]!r}")
    return int(text)


@frozen
class Agent:
    """One registered agent as the registry holds it."""

    id: str
    name: str
    ip: str
    key: str
    register_time: float
    groups: tuple[str, ...] = ()
    connection_status: str = NEVER_CONNECTED
    last_keepalive: float | None = None
    disconnection_time: float = 0.0
    version: str = ""
    os_name: str = ""
    os_version: str = ""
    os_platform: str = ""
    os_arch: str = ""
    os_uname: str = ""
    os_major: str = ""
    os_minor: str = ""
    os_build: str = ""
    os_codename: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    config_sum: str = ""
    merged_sum: str = ""
    #: The IP the agent reports in its keep-alives (``_agent_ip``), "" when unknown.
    agent_ip: str = ""
    node_name: str = ""
    status_time: float = 0.0
    status_seq: int = 0

    @property
    def address(self) -> str:
        """The IP the API shows as ``ip``: the agent's reported one, else the registered one."""
        return self.agent_ip or self.ip

    def visible_labels(self) -> dict[str, str]:
        """The agent's labels as the API shows them, ``{key: value}``: hidden ones (kept
        with a leading ``!``) are left out."""
        return {key: value for key, value in self.labels if not key.startswith("!")}

    def key_line(self) -> str:
        """The agent's ``client.keys`` line: ``ID NAME IP KEY``."""
        return f"{self.id} {self.name} {self.ip} {self.key}"


def _labels(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """Normalize labels given as a mapping or pairs into sorted pairs."""
    if not value:
        return ()  # most reports (keep-alive refreshes) carry none: skip the ABC check
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


@frozen
class AgentInfoReport:
    """One agent's status as a node reports it (the worker → master agent-info rows).

    ``status_time`` and ``status_seq`` order reports for the same agent: the registry
    keeps a report only if ``(status_time, status_seq)`` is greater than what it holds,
    so a late report from the node an agent left cannot overwrite a newer one.
    """

    agent_id: str
    node_name: str
    status_time: float
    status_seq: int = 0
    connection_status: str = "active"
    last_keepalive: float | None = None
    disconnection_time: float = 0.0
    version: str = ""
    os_name: str = ""
    os_version: str = ""
    os_platform: str = ""
    os_arch: str = ""
    os_uname: str = ""
    os_major: str = ""
    os_minor: str = ""
    os_build: str = ""
    os_codename: str = ""
    labels: tuple[tuple[str, str], ...] = field(default=(), converter=_labels)
    config_sum: str = ""
    merged_sum: str = ""
    #: The IP the agent reports in its keep-alives (``_agent_ip``), "" when unknown.
    agent_ip: str = ""
    #: Only the keep-alive changed since the node's previous report: the registry updates
    #: the status, node, times and sequence and keeps the agent's other fields.
    refresh_only: bool = False


@frozen
class AgentInfoResult:
    """Counts of one batch of agent-info reports: kept, older than held, unknown agent."""

    applied: int
    stale: int
    unknown: int


@frozen
class GroupInfo:
    """A group and how many agents belong to it."""

    name: str
    agent_count: int


class RegistryError(Exception):
    """Base of the errors a registry operation reports to its caller."""


class DuplicateName(RegistryError):
    """Another agent already has this name."""

    def __init__(self, name: str, agent_id: str) -> None:
        super().__init__(f"duplicate agent name {name!r} (agent {agent_id})")
        self.name = name
        self.agent_id = agent_id


class DuplicateIP(RegistryError):
    """Another agent already has this IP."""

    def __init__(self, ip: str, agent_id: str) -> None:
        super().__init__(f"duplicate IP {ip!r} (agent {agent_id})")
        self.ip = ip
        self.agent_id = agent_id


class DuplicateId(RegistryError):
    """Another agent already has this id (an insertion with a chosen id)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"duplicate agent id {agent_id!r}")
        self.agent_id = agent_id


class UnknownGroup(RegistryError):
    """The group does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown group {name!r}")
        self.name = name


class GroupExists(RegistryError):
    """The group already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"group {name!r} already exists")
        self.name = name


class UnknownAgent(RegistryError):
    """No agent has this id."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"unknown agent {agent_id!r}")
        self.agent_id = agent_id


class InvalidValue(RegistryError):
    """A name, IP or group list the registry refuses; ``reason`` says why."""

    def __init__(self, what: str, value: str, reason: str) -> None:
        super().__init__(f"invalid {what} {value[:255]!r}: {reason}")
        self.what = what
        self.value = value
        self.reason = reason


#: The longest agent key accepted from a durable record.
MAX_KEY_TEXT = 128


@frozen
class DurableAgent:
    """The facts of an agent kept where the next master finds them (etcd): what its
    identity and ``<force>`` need; status and agent-info are volatile, reported again."""

    id: str
    name: str
    ip: str
    key: str
    register_time: float
    groups: tuple[str, ...]

    @classmethod
    def of(cls, agent: Agent) -> DurableAgent:
        """The durable facts of a registered agent."""
        return cls(agent.id, agent.name, agent.ip, agent.key, agent.register_time, agent.groups)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DurableAgent:
        """Validate a stored record (each field again: it comes from outside this node);
        :class:`InvalidValue` when it cannot be an agent of ours."""
        agent_id = str(record.get("id", ""))
        try:
            number = parse_agent_id(agent_id)
        except ValueError:
            raise InvalidValue("agent id", agent_id, "not an agent id") from None
        name = str(record.get("name", ""))
        problem = agent_name_problem(name)
        if problem is not None:
            raise InvalidValue("agent name", name, problem)
        ip = normalize_ip(str(record.get("ip", "")))
        if ip is None:
            raise InvalidValue("IP", str(record.get("ip")), "not an IP address, a network or 'any'")
        key = str(record.get("key", ""))
        if not 0 < len(key) <= MAX_KEY_TEXT or not key.isascii() or not key.isalnum():
            raise InvalidValue("agent key", f"of agent {agent_id}", "not a key")
        groups = record.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
            raise InvalidValue("group list", str(groups), "not a list of names")
        for group in groups:
            problem = group_name_problem(group)
            if problem is not None:
                raise InvalidValue("group name", group, problem)
        when = record.get("register_time", 0.0)
        if not isinstance(when, (int, float)) or isinstance(when, bool):
            raise InvalidValue("registration time", str(when), "not a number")
        return cls(format_agent_id(number), name, ip, key, float(when), tuple(groups))

    def record(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "id": self.id,
            "name": self.name,
            "ip": self.ip,
            "key": self.key,
            "register_time": self.register_time,
            "groups": list(self.groups),
        }

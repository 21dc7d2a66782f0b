"""Agent sessions on one node: status, keep-alive data, and the rows for the agent-info sync.

Status follows Wazuh 4.x (``remoted/manager.c``, ``agent_control``):
``never_connected`` → ``pending`` (a startup) → ``active`` (a keep-alive) → ``disconnected``
(a shutdown, or no keep-alive for ``agents_disconnection_time``, 900 s by default).

The table is pure logic: time comes from an injected clock (anything with ``seconds()``),
status changes go to an injected sink, and the group's shared file comes from an injected
``merged_for(agent_id) -> (md5, path) | None``. The agent-info task takes the changed rows
with :meth:`SessionTable.take_dirty`.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from typing import ClassVar, Protocol

from attrs import define, field, frozen

from wazuhcluster.agents.control import KeepAliveData, OsInfo, label_pairs, short_uname

DEFAULT_DISCONNECTION_TIME = 900.0


class AgentStatus(enum.StrEnum):
    """Wazuh's four connection states."""

    NEVER_CONNECTED = "never_connected"
    PENDING = "pending"
    ACTIVE = "active"
    DISCONNECTED = "disconnected"


class SecondsClock(Protocol):
    """The one clock method the table needs (``task.Clock`` and the reactor have it)."""

    def seconds(self) -> float:
        """Current time in seconds since the epoch."""
        ...


@frozen
class StatusChange:
    """One agent's status transition, given to the status sink."""

    agent_id: str
    name: str
    old: AgentStatus
    new: AgentStatus
    at: float
    reason: str


@frozen
class SharedPush:
    """The agent reported a merged.mg sum that differs from its group's: send it this file."""

    agent_id: str
    md5: str
    path: str


@frozen
class AgentInfoRow:
    """One agent's whole state as this node reports it to the master (its status, OS,
    version, labels or sums changed since the previous report, or everything is resent).

    ``timestamp`` is the time of the newest agent message the row reflects (for a
    disconnection by time-out, the last keep-alive), so the master can keep, per agent, the
    row backed by the most recent evidence from any node. ``seq`` increases with every row
    this node produces; it orders rows from the same node.
    """

    #: Always True: an agent that only sent a keep-alive gives a :class:`RefreshRow`.
    full: ClassVar[bool] = True

    agent_id: str
    name: str
    ip: str
    node_name: str
    status: AgentStatus
    last_keepalive: float | None
    disconnection_time: float | None
    version: str | None
    os_uname: str | None
    os_name: str | None
    os_version: str | None
    os_major: str | None
    os_minor: str | None
    os_build: str | None
    os_codename: str | None
    os_platform: str | None
    os_arch: str | None
    labels: tuple[str, ...]
    config_sum: str | None
    merged_sum: str | None
    agent_ip: str | None
    group_config_status: str | None
    timestamp: float
    seq: int


@frozen
class RefreshRow:
    """An agent that only sent keep-alives since the previous report: the fields of
    :class:`AgentInfoRow` the master updates for it, and nothing else (most rows of every
    report are these, so they skip the OS, uname and label fields altogether)."""

    #: Always False, as opposed to :attr:`AgentInfoRow.full`.
    full: ClassVar[bool] = False

    agent_id: str
    status: AgentStatus
    last_keepalive: float | None
    disconnection_time: float | None
    timestamp: float
    seq: int


#: A row of :meth:`SessionTable.take_dirty`.
AgentRow = AgentInfoRow | RefreshRow


@define
class AgentSession:
    """What this node knows about one agent that has talked to it."""

    agent_id: str
    name: str
    ip: str
    status: AgentStatus = AgentStatus.NEVER_CONNECTED
    peer_ip: str | None = None
    startup_version: str | None = None
    keepalive: KeepAliveData | None = None
    last_keepalive: float | None = None
    disconnection_time: float | None = None
    evidence_at: float = 0.0
    group_config_status: str | None = None
    #: The agent's labels as its events carry them to analysis (see
    #: :func:`~wazuhcluster.agents.control.label_pairs`), from the last keep-alive.
    labels: tuple[tuple[str, str], ...] = ()

    def signature(self) -> tuple[object, ...]:
        """The fields whose change makes the agent dirty for the agent-info sync."""
        return (self.status, self.name, self.ip, self.keepalive, self.startup_version,
                self.group_config_status)  # fmt: skip

    @property
    def reported_ip(self) -> str | None:
        """The agent's own IP from its last keep-alive (``#"_agent_ip":``), or None."""
        return self.keepalive.agent_ip if self.keepalive is not None else None

    @property
    def version(self) -> str | None:
        """The agent version from the last keep-alive, else from the startup message."""
        if self.keepalive is not None and self.keepalive.version:
            return self.keepalive.version
        return self.startup_version


@define
class SessionTable:
    """All agent sessions of one node, with status tracking and dirty rows."""

    clock: SecondsClock
    node_name: str
    disconnection_time: float = DEFAULT_DISCONNECTION_TIME
    status_sink: Callable[[StatusChange], None] | None = None
    merged_for: Callable[[str], tuple[str, str] | None] | None = None
    _sessions: dict[str, AgentSession] = field(factory=dict, init=False)
    _changed: set[str] = field(factory=set, init=False)
    _touched: set[str] = field(factory=set, init=False)
    _seq: Iterator[int] = field(factory=lambda: itertools.count(1), init=False)

    # ------------------------------------------------------------------ events

    def startup(self, agent_id: str, name: str, ip: str, peer_ip: str, version: str | None) -> None:
        """``#!-agent startup``: the agent becomes pending."""
        now = self.clock.seconds()
        session = self._session(agent_id, name, ip)
        before = session.signature()
        session.peer_ip = peer_ip
        session.startup_version = version
        session.last_keepalive = now
        session.evidence_at = now
        self._set_status(session, AgentStatus.PENDING, now, "startup")
        self._note(session, before)

    def keepalive(
        self, agent_id: str, name: str, ip: str, peer_ip: str, data: KeepAliveData
    ) -> SharedPush | None:
        """A keep-alive: the agent becomes active; returns a push when its merged.mg is stale."""
        now = self.clock.seconds()
        session = self._session(agent_id, name, ip)
        before = session.signature()
        session.peer_ip = peer_ip
        if session.keepalive is None or session.keepalive.labels != data.labels:
            session.labels = label_pairs(data.labels)
        session.keepalive = data
        session.last_keepalive = now
        session.evidence_at = now
        push = None
        target = self.merged_for(agent_id) if self.merged_for is not None else None
        if target is None:
            session.group_config_status = None
        elif data.merged_sum == target[0]:
            session.group_config_status = "synced"
        else:
            session.group_config_status = "not synced"
            push = SharedPush(agent_id, target[0], target[1])
        self._set_status(session, AgentStatus.ACTIVE, now, "keep-alive")
        self._note(session, before)
        self._touched.add(agent_id)
        return push

    def shutdown(self, agent_id: str, name: str, ip: str) -> None:
        """``#!-agent shutdown``: the agent is disconnected at once."""
        now = self.clock.seconds()
        session = self._session(agent_id, name, ip)
        before = session.signature()
        session.evidence_at = now
        self._set_status(session, AgentStatus.DISCONNECTED, now, "shutdown")
        self._note(session, before)

    def check_disconnections(self) -> list[str]:
        """Mark agents without a keep-alive for ``disconnection_time`` as disconnected."""
        now = self.clock.seconds()
        expired = []
        for session in self._sessions.values():
            if session.status not in (AgentStatus.PENDING, AgentStatus.ACTIVE):
                continue
            last = session.last_keepalive if session.last_keepalive is not None else 0.0
            if now - last >= self.disconnection_time:
                before = session.signature()
                self._set_status(session, AgentStatus.DISCONNECTED, now, "keep-alive timeout")
                self._note(session, before)
                expired.append(session.agent_id)
        return expired

    def forget(self, agent_id: str) -> None:
        """Drop an agent that was removed from the keys."""
        self._sessions.pop(agent_id, None)
        self._changed.discard(agent_id)
        self._touched.discard(agent_id)

    # ------------------------------------------------------------------ queries

    def status(self, agent_id: str) -> AgentStatus:
        """The agent's status on this node (``never_connected`` when it never talked here)."""
        session = self._sessions.get(agent_id)
        return AgentStatus.NEVER_CONNECTED if session is None else session.status

    def get(self, agent_id: str) -> AgentSession | None:
        """The agent's session, or None."""
        return self._sessions.get(agent_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[AgentSession]:
        return iter(list(self._sessions.values()))

    def counts(self) -> dict[AgentStatus, int]:
        """Number of sessions per status."""
        result = dict.fromkeys(AgentStatus, 0)
        for session in self._sessions.values():
            result[session.status] += 1
        return result

    @property
    def dirty_count(self) -> int:
        """How many agents have changes not yet taken."""
        return len(self._changed | self._touched)

    def take_dirty(self, keepalives: bool = True, limit: int | None = None) -> list[AgentRow]:
        """Take the rows of changed agents (an :class:`AgentInfoRow` each) and, with
        ``keepalives``, of agents that only sent keep-alives (a :class:`RefreshRow` each).

        With ``limit``, at most that many rows are taken (changed agents first); the rest stay
        dirty for the next call.
        """
        ids = list(self._changed)
        if keepalives:
            ids.extend(agent_id for agent_id in self._touched if agent_id not in self._changed)
        if limit is not None:
            ids = ids[: max(limit, 0)]
        rows: list[AgentRow] = []
        changed, touched, sessions = self._changed, self._touched, self._sessions
        for agent_id in ids:
            full = agent_id in changed
            changed.discard(agent_id)
            touched.discard(agent_id)
            session = sessions.get(agent_id)
            if session is None:
                continue
            if full:
                rows.append(self._row(session))
            else:
                rows.append(
                    RefreshRow(
                        session.agent_id,
                        session.status,
                        session.last_keepalive,
                        session.disconnection_time,
                        session.evidence_at,
                        next(self._seq),
                    )
                )
        return rows

    def mark_all_dirty(self) -> None:
        """Report every session again in full (e.g. after the link to the master came back)."""
        self._changed.update(self._sessions)

    # ------------------------------------------------------------------ internals

    def _session(self, agent_id: str, name: str, ip: str) -> AgentSession:
        session = self._sessions.get(agent_id)
        if session is None:
            session = AgentSession(agent_id, name, ip)
            self._sessions[agent_id] = session
        else:
            session.name = name
            session.ip = ip
        return session

    def _set_status(self, session: AgentSession, new: AgentStatus, now: float, why: str) -> None:
        old = session.status
        if old == new:
            return
        session.status = new
        session.disconnection_time = now if new == AgentStatus.DISCONNECTED else None
        if self.status_sink is not None:
            self.status_sink(StatusChange(session.agent_id, session.name, old, new, now, why))

    def _note(self, session: AgentSession, before: tuple[object, ...]) -> None:
        if session.signature() != before:
            self._changed.add(session.agent_id)

    def _row(self, session: AgentSession) -> AgentInfoRow:
        data = session.keepalive
        os_info = data.os if data is not None else OsInfo()
        return AgentInfoRow(
            agent_id=session.agent_id,
            name=session.name,
            ip=session.ip,
            node_name=self.node_name,
            status=session.status,
            last_keepalive=session.last_keepalive,
            disconnection_time=session.disconnection_time,
            version=session.version,
            os_uname=short_uname(data.uname) if data is not None and data.uname else None,
            os_name=os_info.name,
            os_version=os_info.version,
            os_major=os_info.major,
            os_minor=os_info.minor,
            os_build=os_info.build,
            os_codename=os_info.codename,
            os_platform=os_info.platform,
            os_arch=os_info.arch,
            labels=data.labels if data is not None else (),
            config_sum=data.config_sum if data is not None else None,
            merged_sum=data.merged_sum if data is not None else None,
            agent_ip=data.agent_ip if data is not None else None,
            group_config_status=session.group_config_status,
            timestamp=session.evidence_at,
            seq=next(self._seq),
        )

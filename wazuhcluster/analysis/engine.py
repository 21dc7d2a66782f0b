"""The analysis engine: pre-decode, decode, match rules, and produce the alert record.

An :class:`Engine` holds a loaded ruleset (immutable once built) and the correlation state
(which :meth:`Engine.reset` clears). It is pure logic: no I/O, no reactor, and the clock is
the event's timestamp (``time.time()`` is only a default when an event carries none).
"""

from __future__ import annotations

import collections
import time as time_module
from typing import Any

import attrs

from wazuhcluster.analysis.agentstate import AgentState, MemoryState
from wazuhcluster.analysis.alerts import Identity, build_alert
from wazuhcluster.analysis.archives import ArchivedEvent
from wazuhcluster.analysis.builtin import MalformedMessage
from wazuhcluster.analysis.decoders import DecoderSet
from wazuhcluster.analysis.eventinfo import EventInfo
from wazuhcluster.analysis.predecoder import predecode
from wazuhcluster.analysis.queues import GENERIC, decoder_for
from wazuhcluster.analysis.rules import DEFAULT_TIMEFRAME, Rule, RuleState, match_rule

MAX_MESSAGE = 64 * 1024
ACCUMULATE_SECONDS = 120
MAX_ACCUMULATED = 16384
#: Keys each count-and-note-once counter (unknown queues, malformed messages) holds before
#: it starts again.
MAX_COUNTED_KEYS = 4096
MAX_NOTICES = 100
ACCUMULATED_FIELDS = ("dstuser", "srcuser", "dstip", "srcip", "dstport", "srcport", "data")


def _label_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """Labels as pairs (JSON brings them back from the analysis processes as lists)."""
    if not value:
        return ()
    return tuple((str(key), str(text)) for key, text in value)


@attrs.frozen
class Event:
    """One event to analyse, as the agent channel (or wazuh-logtest) hands it over.

    ``location`` is the log's origin (a file path, ``stdin``...); ``queue`` is the letter
    that selects its path (:mod:`~wazuhcluster.analysis.queues`). For an agent's event,
    ``agent_id`` is its id and ``agent_name``/``agent_ip`` describe it; ``000`` is the
    manager itself. ``timestamp`` is the receive time in epoch seconds. ``manager_name``,
    ``cluster_name``, ``cluster_node`` and ``hide_cluster`` override the engine's
    :class:`Identity` for this event when given.

    ``agent_ip`` is the agent's registered IP (the one the location carries);
    ``agent_reported_ip`` the IP the agent reported in its keep-alives (Wazuh's system label
    ``_agent_ip``), which the alert shows instead when known. ``agent_labels`` are the
    agent's own labels as ``(key, value)`` pairs, a hidden label's key with a leading ``!``
    (alerts print the others under ``agent.labels``).
    """

    message: str
    location: str = "stdin"
    queue: str = "1"
    agent_id: str = "000"
    agent_name: str | None = None
    agent_ip: str | None = None
    timestamp: float | None = None
    manager_name: str | None = None
    cluster_name: str | None = None
    cluster_node: str | None = None
    hide_cluster: bool | None = None
    agent_reported_ip: str | None = None
    agent_labels: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_label_pairs)

    def identity(self, default: Identity) -> Identity:
        """The identity to write in this event's alert."""
        if (
            self.manager_name is None
            and self.cluster_name is None
            and self.cluster_node is None
            and self.hide_cluster is None
        ):
            return default
        return Identity(
            manager_name=self.manager_name or default.manager_name,
            cluster_name=self.cluster_name or default.cluster_name,
            cluster_node=self.cluster_node or default.cluster_node,
            hide_cluster=default.hide_cluster if self.hide_cluster is None else self.hide_cluster,
        )


class QueueFormatError(ValueError):
    """A queue message that is not ``<queue>:<location>:<message>``."""


def _split_location(raw: str) -> tuple[str, str]:
    """Split at the first ':' not escaped with '|'; unescape '|:' and '||' in the location."""
    out: list[str] = []
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "|" and index + 1 < len(raw) and raw[index + 1] in ":|":
            out.append(raw[index + 1])
            index += 2
            continue
        if char == ":":
            return "".join(out), raw[index + 1 :]
        out.append(char)
        index += 1
    raise QueueFormatError("no ':' between location and message")


def parse_queue_message(raw: str, timestamp: float | None = None) -> Event:
    """Read Wazuh's internal ``<queue>:<location>:<message>`` form into an :class:`Event`.

    The location may carry the agent, as remoted writes it: ``[001] (web1) 10.0.0.1->/var/log/x``
    (``any`` as the address when unknown); otherwise the event is the manager's own (000).
    """
    if len(raw) < 3 or raw[1] != ":":
        raise QueueFormatError("expected '<queue>:<location>:<message>'")
    queue = raw[0]
    location, message = _split_location(raw[2:])
    if not location.startswith("["):
        return Event(message, location=location, queue=queue, timestamp=timestamp)
    close = location.find("]")
    if close < 0:
        raise QueueFormatError("agent location without ']'")
    agent_id = location[1:close]
    rest = location[close + 1 :].lstrip()
    name: str | None = None
    address: str | None = None
    if rest.startswith("("):
        end = rest.find(")")
        if end < 0:
            raise QueueFormatError("agent location without ')'")
        name = rest[1:end]
        rest = rest[end + 1 :].lstrip()
        arrow = rest.find("->")
        if arrow >= 0:
            address = rest[:arrow] or None
            rest = rest[arrow + 2 :]
    if not agent_id.isdigit():
        raise QueueFormatError(f"bad agent id {agent_id!r}")
    return Event(
        message,
        location=rest,
        queue=queue,
        agent_id=agent_id,
        agent_name=name,
        agent_ip=address,
        timestamp=timestamp,
    )


@attrs.frozen
class Verdict:
    """Everything wazuh-logtest shows for one event."""

    event: EventInfo
    rule: Rule | None
    alert: bool
    output: dict[str, Any]


class Engine:
    """A loaded ruleset plus its correlation state."""

    def __init__(
        self,
        decoders: DecoderSet,
        roots: list[Rule],
        identity: Identity | None = None,
        log_alert_level: int = 3,
        warnings: list[str] | None = None,
        history_windows: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self.decoders = decoders
        self.roots = roots
        self.identity = identity or Identity()
        self.log_alert_level = log_alert_level
        self.warnings = list(warnings or [])
        self.history_windows = dict(history_windows or {})
        self.state = RuleState()
        self._sequence = 0
        #: What the queue decoders remember per agent (hand it on to a reloaded engine).
        self.agent_state: AgentState = MemoryState()
        #: Messages of unknown queues, per (agent, letter).
        self.unknown_queues: collections.Counter[tuple[str, str]] = collections.Counter()
        #: Messages a module queue's decoder refused, by agent, queue and reason.
        self.malformed: collections.Counter[tuple[str, str, str]] = collections.Counter()
        #: Things worth logging once that analysis noticed (the caller takes them).
        self.notices: list[str] = []

    def reset(self) -> None:
        """Forget all correlation state (frequency counters, histories, ignore windows)."""
        self.state = RuleState()

    def with_identity(self, identity: Identity) -> Engine:
        """Use ``identity`` for the manager/cluster part of alerts; returns self."""
        self.identity = identity
        return self

    def _record(self, event: Event, full_log: str, log: str, hostname: str | None) -> EventInfo:
        """The working record of ``event``: its location, agent and time."""
        now = event.timestamp if event.timestamp is not None else time_module.time()
        if event.agent_id != "000":
            ip = event.agent_ip or "any"
            location = f"({event.agent_name or ''}) {ip}->{event.location}"
        else:
            location = event.location
        info = EventInfo(full_log, log, location, now)
        info.agent_id = event.agent_id
        info.agent_ip = event.agent_reported_ip or event.agent_ip
        info.agent_labels = event.agent_labels
        if event.agent_id != "000":
            info.agent_name = event.agent_name
            info.hostname = event.agent_name or ""
        else:
            manager = event.manager_name or self.identity.manager_name
            info.agent_name = manager
            info.hostname = hostname or manager
        return info

    def prepare(self, event: Event) -> EventInfo | None:
        """Pre-decode and decode ``event`` (phases 1 and 2); None when its queue's decoder
        only stored it, found it invalid, or the queue is unknown (nothing to match)."""
        message = event.message[:MAX_MESSAGE]
        queue = event.queue
        if queue not in GENERIC:
            decoder = decoder_for(queue)
            if decoder is None:
                self._unknown_queue(event)
                return None
            info = self._record(event, message, message, None)
            try:
                if not decoder(info, message, self.agent_state):
                    return None
            except MalformedMessage as problem:
                self._malformed(event, str(problem))
                return None
            return info
        header = predecode(message)
        info = self._record(event, header.full_log, header.log, header.hostname)
        info.timestamp = header.timestamp
        info.program_name = header.program_name
        self.decoders.decode(info)
        if info.decoder is not None and info.decoder.accumulate:
            self._accumulate(info)
        return info

    def _unknown_queue(self, event: Event) -> None:
        """Count a message of an unknown queue; note the first of each agent and letter."""
        self._count_and_note(
            self.unknown_queues,
            (event.agent_id, event.queue),
            f"Agent {event.agent_id} sent a message to unknown queue {event.queue!r} "
            f"(location {event.location[:64]!r}); such messages are counted, not analysed.",
        )

    def _malformed(self, event: Event, reason: str) -> None:
        """Count a message its queue's decoder refused; note the first of each agent,
        queue and reason."""
        self._count_and_note(
            self.malformed,
            (event.agent_id, event.queue, reason),
            f"Agent {event.agent_id} sent a malformed message to queue {event.queue!r} "
            f"(location {event.location[:64]!r}): {reason}. Dropped; more like it are "
            "counted, not logged.",
        )

    def _count_and_note(
        self, counts: collections.Counter[Any], key: tuple[str, ...], notice: str
    ) -> None:
        """Count ``key``; the first time, keep ``notice`` for the caller to log (the
        counter starts again when it holds too many keys; notices are bounded too)."""
        counts[key] += 1
        if counts[key] == 1:
            if len(counts) > MAX_COUNTED_KEYS:
                counts.clear()
                counts[key] = 1
            if len(self.notices) < MAX_NOTICES:
                self.notices.append(notice)

    def take_notices(self) -> list[str]:
        """The notices gathered since the last call (for the caller to log)."""
        notices, self.notices = self.notices, []
        notices.extend(self.state.notices)
        self.state.notices.clear()
        return notices

    def _accumulate(self, info: EventInfo) -> None:
        """Wazuh's accumulator: events of one host, decoder and id share their fields.

        Fields an event lacks are filled from what earlier events with the same key carried
        (within two minutes), and the first known value of each field is kept for later ones.
        """
        assert info.decoder is not None
        ident = info.static.get("id")
        if not ident:
            return
        store = self.state.accumulated
        key = (info.hostname or "", info.decoder.reported_name, ident)
        found = store.get(key)
        known: dict[str, str] = {}
        if found is not None and info.time - found[0] <= ACCUMULATE_SECONDS:
            known = found[1]
            for name, value in known.items():
                if not info.static.get(name):
                    info.static[name] = value
        for name in ACCUMULATED_FIELDS:
            current = info.static.get(name)
            if current and not known.get(name):
                known[name] = current
        if len(store) >= MAX_ACCUMULATED:
            for stale in [
                k for k, (seen, _) in store.items() if info.time - seen > ACCUMULATE_SECONDS
            ]:
                del store[stale]
            if len(store) >= MAX_ACCUMULATED:
                store.clear()
        store[key] = (info.time, known)

    def evaluate(self, info: EventInfo) -> tuple[Rule | None, bool]:
        """Match the rules (phase 3); return the final rule and whether it alerts."""
        category = info.decoder.type if info.decoder is not None else "syslog"
        state = self.state
        for root in self.roots:
            if root.category != category:
                continue
            rule = match_rule(root, info, state)
            if rule is None:
                continue
            if rule.level == 0:
                return rule, False
            if rule.ignore_time:
                since = state.ignored_since.get(rule.id)
                if since is None:
                    state.ignored_since[rule.id] = info.time
                elif info.time - since < rule.ignore_time:
                    # Inside the window the event is not lost: as Wazuh, it alerts on the
                    # rule it matched just below this one (if any).
                    parent = info.parent_rule
                    if not isinstance(parent, Rule):
                        return rule, False
                    rule = parent
                    info.last_events = []
                else:
                    state.ignored_since[rule.id] = info.time
            if rule.check_ignore_fields and self._is_ignored(rule, info):
                return rule, False
            if rule.ignore_fields:
                self._mark_ignored(rule, info)
            sid_keys = [key for key in rule.feeds if key[0] == "sid"]
            for key in sid_keys or rule.feeds:
                # Events older than every timeframe that searches this history are dropped.
                state.remember(key, info, self.history_windows.get(key, DEFAULT_TIMEFRAME))
            return rule, rule.log_alert and rule.level >= self.log_alert_level
        return None, False

    def _ignore_key(self, rule: Rule, names: list[str], info: EventInfo) -> tuple[int, tuple]:
        return rule.id, tuple(info.get(name) for name in names)

    def _is_ignored(self, rule: Rule, info: EventInfo) -> bool:
        key = self._ignore_key(rule, rule.check_ignore_fields, info)
        return key in self.state.ignore_marks

    def _mark_ignored(self, rule: Rule, info: EventInfo) -> None:
        marks = self.state.ignore_marks
        if len(marks) > 65536:
            marks.clear()
        marks[self._ignore_key(rule, rule.ignore_fields, info)] = info.time

    def analyse(self, event: Event) -> Verdict:
        """Run the three phases and build the output record (whether or not it alerts)."""
        prepared = self.prepare(event)
        if prepared is None:
            info = self._record(event, event.message, event.message, None)
            rule, alert = None, False
        else:
            info = prepared
            rule, alert = self.evaluate(info)
        self._sequence += 1
        output = build_alert(info, rule, event.identity(self.identity), self._sequence)
        return Verdict(info, rule, alert, output)

    def process_archived(self, event: Event) -> tuple[dict[str, Any] | None, ArchivedEvent | None]:
        """Like :meth:`process`, plus the event's archive record (None for a message its
        queue's decoder only stored): the alerts' shape, ``rule`` only when it alerted,
        always the full log."""
        info = self.prepare(event)
        if info is None:
            return None, None
        rule, alert = self.evaluate(info)
        self._sequence += 1
        identity = event.identity(self.identity)
        output: dict[str, Any] | None = None
        if alert:
            output = build_alert(info, rule, identity, self._sequence)
            record = dict(output)
            record.setdefault("full_log", info.full_log)
        else:
            record = build_alert(info, None, identity, self._sequence)
        archived = ArchivedEvent(record, info.time, info.location, info.hostname or "")
        return output, archived

    def process(self, event: Event) -> dict[str, Any] | None:
        """Return the alert record for ``event``, or None when it does not alert."""
        info = self.prepare(event)
        if info is None:
            return None
        rule, alert = self.evaluate(info)
        if not alert:
            return None
        self._sequence += 1
        return build_alert(info, rule, event.identity(self.identity), self._sequence)

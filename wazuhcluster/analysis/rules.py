"""Rules, the rule tree and the matching walk (Wazuh's OS_CheckIfRuleMatch semantics).

Rules with an id below 10 are the roots (one per category); every other rule hangs under the
rules named by its ``if_sid``, under every rule whose groups contain its ``if_group``, under
every rule at least as severe as its ``if_level``, or else under the root of its category.
Siblings are kept by descending level, so an event walks down the first matching branch and
the deepest matching rule is its verdict. Correlation state (fired counters, the recent events
of ``if_matched_*`` rules, ignore windows) lives in a :class:`RuleState` owned by the engine.
"""

from __future__ import annotations

import collections
import ipaddress
import time as time_module
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from wazuhcluster.analysis import cdb
from wazuhcluster.analysis.eventinfo import EventInfo
from wazuhcluster.analysis.expressions import Expression, LiteralRegex, OSMatch, test

DEFAULT_TIMEFRAME = 360
#: Events one history keeps at most. Histories are bounded by their searching rules'
#: timeframe first; this cap only guards memory under a flood. Wazuh 4.x keeps every
#: matched event of the last ``memory_size`` (8192 by default, all rules together) in its
#: rules' lists, and compares agent ids while searching, so a thousand agents interleaving
#: eight sshd failures each still correlate: the cap leaves room for twice that per history.
MAX_HISTORY = 16384

# Fields that <same_*>/<different_*> compare, by their static names.
SAME_FIELD_NAMES = (
    "srcip",
    "id",
    "dstip",
    "srcport",
    "dstport",
    "srcuser",
    "dstuser",
    "protocol",
    "action",
    "url",
    "data",
    "extra_data",
    "status",
    "system_name",
    "location",
)


@attrs.frozen
class IPList:
    """The ``<srcip>``/``<dstip>`` entries of a rule (CIDR allowed, ``!`` negates)."""

    networks: tuple[tuple[bool, ipaddress.IPv4Network | ipaddress.IPv6Network], ...]
    negate: bool = False

    def matches(self, text: str) -> bool:
        """Wazuh's OS_IPFoundList: the first ``!`` entry turns the answer around for good."""
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            return False
        verdict = True
        for negated, network in self.networks:
            if negated:
                verdict = False
            if address.version == network.version and address in network:
                return verdict
        return not verdict


def parse_ip_entry(text: str) -> tuple[bool, ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse one ``<srcip>`` value: ``[!]address[/prefix or /netmask]``."""
    value = text.strip()
    negated = value.startswith("!")
    if negated:
        value = value[1:].strip()
    if value.lower() == "any":
        value = "0.0.0.0/0"
    return negated, ipaddress.ip_network(value, strict=False)


@attrs.frozen
class ListCheck:
    """One ``<list>`` lookup of a rule."""

    field: str
    path: str
    lookup: cdb.Lookup
    check_value: OSMatch | None
    entries: dict[str, str] = attrs.field(eq=False, repr=False)

    def value_of(self, event: EventInfo) -> str | None:
        """The event value to look up (``user`` tries srcuser first, as Wazuh does)."""
        if self.field == "user":
            return event.static.get("srcuser") or event.static.get("dstuser")
        return event.get(self.field)

    def passes(self, event: EventInfo) -> bool:
        """True when the lookup succeeds for ``event``."""
        value = self.value_of(event)
        if value is None:
            return False
        return cdb.lookup(self.entries, self.lookup, value, self.check_value)


@attrs.define(eq=False)
class Rule:
    """One ``<rule>``, compiled. Conditions left None are not checked."""

    id: int
    level: int
    source: str = ""
    line: int = 0
    sort_level: int = 0
    category: str = "syslog"
    decoded_as: str | None = None
    description: str = ""
    group_text: str = ""
    info: list[tuple[str, str]] = attrs.field(factory=list)
    mitre_ids: list[str] = attrs.field(factory=list)
    maxsize: int = 0
    frequency: int | None = None
    timeframe: int = DEFAULT_TIMEFRAME
    ignore_time: int = 0
    noalert: bool = False
    overwrite: bool = False
    expressions: dict[str, Expression] = attrs.field(factory=dict)
    user: Expression | None = None
    srcip: IPList | None = None
    dstip: IPList | None = None
    fields: list[tuple[str, Expression]] = attrs.field(factory=list)
    lists: list[ListCheck] = attrs.field(factory=list)
    compiled: Callable[[EventInfo], bool] | None = None
    day_time: tuple[bool, str, str] | None = None
    week_days: tuple[bool, frozenset[int]] | None = None
    if_sid: list[int] = attrs.field(factory=list)
    if_group: str | None = None
    if_level: int | None = None
    if_matched_sid: int | None = None
    if_matched_group: OSMatch | None = None
    same: set[str] = attrs.field(factory=set)
    different: set[str] = attrs.field(factory=set)
    same_dynamic: list[str] = attrs.field(factory=list)
    different_dynamic: list[str] = attrs.field(factory=list)
    global_frequency: bool = False
    if_fts: bool = False
    mail: bool = False
    log_alert: bool = True
    no_full_log: bool = False
    no_counter: bool = False
    ignore_fields: list[str] = attrs.field(factory=list)
    check_ignore_fields: list[str] = attrs.field(factory=list)
    context: bool = False
    children: list[Rule] = attrs.field(factory=list)
    feeds: list[tuple[str, int]] = attrs.field(factory=list)
    search_key: tuple[str, int] | None = None
    child_cache: dict[
        tuple[str, str | None, tuple[str | None, ...], frozenset[str]], tuple[Rule, ...]
    ] = attrs.field(factory=dict, repr=False)
    key_fields: tuple[str, ...] = attrs.field(default=(), repr=False)
    presence_fields: frozenset[str] = attrs.field(default=frozenset(), repr=False)
    overflows: int = attrs.field(default=0, repr=False)
    indexed: bool = attrs.field(default=False, repr=False)
    checks: tuple[Callable[[EventInfo, RuleState], bool], ...] | None = attrs.field(
        default=None, repr=False
    )
    alert_template: tuple[dict[str, Any], dict[str, Any]] | None = attrs.field(
        default=None, repr=False
    )

    def children_for(self, event: EventInfo) -> tuple[Rule, ...]:
        """The children worth trying for ``event``.

        Children whose decoded_as, program_name or conditions on the dynamic fields their
        siblings test most rule the event out are dropped; the answer depends only on those
        values, so it is cached per combination (a line tries tens of rules, not the whole
        tree). A parent whose cache keeps overflowing (fields with too many distinct values)
        falls back to indexing on decoder and program name only.
        """
        if not self.indexed:
            self.key_fields = _pick_key_fields(self.children)
            self.presence_fields = frozenset(
                name.lower() for child in self.children for name, _ in child.fields
            )
            self.indexed = True
        decoder_name = event.decoder.reported_name if event.decoder is not None else ""
        key_fields = self.key_fields
        values = tuple([event.find_field(name) for name in key_fields]) if key_fields else ()
        # Which tested fields the event has at all: a field condition fails without its field.
        present = (
            self.presence_fields.intersection(event.field_index)
            if self.presence_fields and event.field_index
            else _NOTHING
        )
        key = (decoder_name, event.program_name, values, present)
        found = self.child_cache.get(key)
        if found is None:
            found = tuple(
                c
                for c in self.children
                if _may_match(c, decoder_name, event.program_name, self.key_fields, values, present)
            )
            if len(self.child_cache) >= MAX_CHILD_CACHE:
                self.child_cache.clear()
                self.overflows += 1
                if self.overflows > 2:
                    self.key_fields = ()
            self.child_cache[key] = found
        return found

    @property
    def groups(self) -> list[str]:
        """The group names, in order, without empty entries."""
        return [g for g in self.group_text.split(",") if g.strip()]

    @property
    def reported_frequency(self) -> int | None:
        """``rule.frequency`` of the alert (the attribute as written), for correlation rules."""
        if self.search_key is None:
            return None
        return self.frequency if self.frequency is not None else 2


MAX_CHILD_CACHE = 4096


MAX_KEY_FIELDS = 4
_NOTHING: frozenset[str] = frozenset()


def _pick_key_fields(children: list[Rule]) -> tuple[str, ...]:
    """The dynamic fields most children test (each by at least two), for the child index."""
    counts: dict[str, int] = {}
    for child in children:
        for name in {name for name, _ in child.fields}:
            counts[name] = counts.get(name, 0) + 1
    ranked = sorted((item for item in counts.items() if item[1] >= 2), key=lambda item: -item[1])
    return tuple(name for name, _ in ranked[:MAX_KEY_FIELDS])


def _may_match(
    child: Rule,
    decoder_name: str,
    program_name: str | None,
    key_fields: tuple[str, ...],
    values: tuple[str | None, ...],
    present: frozenset[str],
) -> bool:
    """False when ``child`` surely fails on these decoder, program name and field values."""
    if child.decoded_as is not None and child.decoded_as != decoder_name:
        return False
    expression = child.expressions.get("program_name")
    if expression is not None and (
        program_name is None or expression.matches(program_name) == expression.negate
    ):
        return False
    for name, condition in child.fields:
        if name.lower() not in present:
            return False
        if name in key_fields:
            value = values[key_fields.index(name)]
            if value is None or condition.matches(value) == condition.negate:
                return False
    return True


def add_sorted(siblings: list[Rule], rule: Rule) -> None:
    """Insert ``rule`` before the first sibling of a lower level (Wazuh's _OS_AddRule)."""
    for index, sibling in enumerate(siblings):
        if rule.sort_level > sibling.sort_level:
            siblings.insert(index, rule)
            return
    siblings.append(rule)


def walk(rules: Iterable[Rule]) -> Iterable[Rule]:
    """Every node of the tree, depth first (a rule under several parents appears each time)."""
    for rule in rules:
        yield rule
        yield from walk(rule.children)


#: A view of a history: an agent's events, or an agent's events from one source address.
ViewKey = str | tuple[str, str]


@attrs.define
class RuleState:
    """Correlation state: firing counters, event histories and ignore windows."""

    fired: dict[int, int] = attrs.field(factory=dict)
    histories: dict[tuple[str, int], collections.deque[EventInfo]] = attrs.field(factory=dict)
    ignored_since: dict[int, float] = attrs.field(factory=dict)
    ignore_marks: dict[tuple[int, tuple[str | None, ...]], float] = attrs.field(factory=dict)
    first_seen: set[tuple[str | None, ...]] = attrs.field(factory=set)
    accumulated: dict[tuple[str, str, str], tuple[float, dict[str, str]]] = attrs.field(
        factory=dict
    )

    #: Events ever appended to each history (numbers them: the history holds the last ones).
    appended: dict[tuple[str, int], int] = attrs.field(factory=dict)
    #: Each history's events again, per agent and per (agent, srcip), numbered: a search for
    #: one agent's events (from one source address, with ``same_source_ip``) walks only
    #: those instead of every agent's (entries that left the history are skipped by number
    #: and swept out now and then). Histories keep a whole timeframe, so without these a
    #: flood from many addresses would make every search walk thousands of others' events.
    by_agent: dict[tuple[str, int], dict[ViewKey, collections.deque[tuple[int, EventInfo]]]] = (
        attrs.field(factory=dict)
    )
    #: Events pushed out of each history by the cap while still inside its timeframe.
    overflowed: collections.Counter[tuple[str, int]] = attrs.field(factory=collections.Counter)
    #: Things worth logging once (the engine hands them to its caller).
    notices: list[str] = attrs.field(factory=list)

    def history(self, key: tuple[str, int]) -> collections.deque[EventInfo]:
        """The bounded history list for ``key``."""
        found = self.histories.get(key)
        if found is None:
            found = self.histories[key] = collections.deque(maxlen=MAX_HISTORY)
        return found

    def remember(self, key: tuple[str, int], event: EventInfo, window: float) -> None:
        """Append ``event`` to the history ``key`` (and its agent's view of it); drop the
        events older than ``window`` seconds before it."""
        history = self.history(key)
        while history and event.time - history[0].time > window:
            history.popleft()
        if len(history) == history.maxlen:
            self._overflow(key, window)
        history.append(event)
        number = self.appended.get(key, 0) + 1
        self.appended[key] = number
        agents = self.by_agent.get(key)
        if agents is None:
            agents = self.by_agent[key] = {}
        srcip = event.static.get("srcip")
        views: tuple[ViewKey, ...] = (
            (event.agent_id,) if srcip is None else (event.agent_id, (event.agent_id, srcip))
        )
        for view in views:
            mine = agents.get(view)
            if mine is None:
                mine = agents[view] = collections.deque(maxlen=MAX_HISTORY)
            mine.append((number, event))
        if number % MAX_HISTORY == 0:
            self._sweep(key)

    def _overflow(self, key: tuple[str, int], window: float) -> None:
        """Count an event the cap pushes out while still inside the timeframe; note the
        first of each history and every power of ten after it."""
        self.overflowed[key] += 1
        count = self.overflowed[key]
        if count == 1 or (count % 10 == 0 and str(count).rstrip("0") == "1"):
            if len(self.notices) < 100:
                self.notices.append(
                    f"Correlation history {key[0]} {key[1]} is full ({MAX_HISTORY} events "
                    f"within {window:g} s): {count} event(s) left it before their time, "
                    "frequency rules searching it may miss them."
                )

    def _sweep(self, key: tuple[str, int]) -> None:
        """Forget the agent views' entries that left the history (and empty views)."""
        gone = self.appended[key] - len(self.histories[key])
        agents = self.by_agent[key]
        for agent_id in list(agents):
            mine = agents[agent_id]
            while mine and mine[0][0] <= gone:
                mine.popleft()
            if not mine:
                del agents[agent_id]

    def agent_history(
        self, key: tuple[str, int], view: ViewKey
    ) -> tuple[collections.deque[tuple[int, EventInfo]] | None, int]:
        """One view's numbered events of history ``key`` (an agent id, or (agent id,
        srcip)) and the number at or below which an entry has left the history."""
        agents = self.by_agent.get(key)
        mine = agents.get(view) if agents is not None else None
        history = self.histories.get(key)
        gone = self.appended.get(key, 0) - (len(history) if history is not None else 0)
        return mine, gone


def _check_time(rule: Rule, event: EventInfo) -> bool:
    local = time_module.localtime(event.time)
    if rule.day_time is not None:
        negated, start, end = rule.day_time
        now = f"{local.tm_hour:02d}:{local.tm_min:02d}"
        inside = start <= now <= end
        if inside == negated:
            return False
    if rule.week_days is not None:
        negated, days = rule.week_days
        weekday = (local.tm_wday + 1) % 7
        if (weekday in days) == negated:
            return False
    return True


def first_time_seen(event: EventInfo, state: RuleState) -> bool:
    """Wazuh's FTS: is this combination of the decoder's ``<fts>`` fields new?"""
    decoder = event.decoder
    if decoder is None or not decoder.fts:
        # A queue decoder may know it itself (a rootcheck finding stored for the first time).
        return bool(event.fts_new)
    if event.fts_new is None:
        key = (decoder.reported_name,) + tuple(
            event.location if name == "location" else event.get(name) for name in decoder.fts
        )
        event.fts_new = key not in state.first_seen
        if event.fts_new:
            if len(state.first_seen) > 100_000:
                state.first_seen.clear()
            state.first_seen.add(key)
    return event.fts_new


Check = Callable[[EventInfo, "RuleState"], bool]


def _log_check(expression: Expression) -> Check:
    """A check on the log; plain OS_Match substrings test the pre-lowered log directly."""
    negate = expression.negate
    if (
        isinstance(expression, OSMatch)
        and not expression.inverted
        and not expression.any_empty
        and not expression.exact
        and not expression.prefixes
        and not expression.suffixes
    ):
        parts = expression.contains
        if len(parts) == 1:
            part = parts[0]
            return lambda event, state: (part in event.log_lower) != negate

        def contains(event: EventInfo, state: RuleState) -> bool:
            low = event.log_lower
            for piece in parts:
                if piece in low:
                    return not negate
            return negate

        return contains
    if isinstance(expression, OSMatch):
        found_in = expression.found_in_lowered
        flip = expression.inverted != negate
        return lambda event, state: found_in(event.log_lower) != flip
    if isinstance(expression, LiteralRegex):
        found_lit = expression.found_in_lowered
        return lambda event, state: found_lit(event.log_lower) != negate
    matches = expression.matches
    return lambda event, state: matches(event.log) != negate


def _expression_check(name: str, expression: Expression) -> Check:
    matches = expression.matches
    negate = expression.negate
    if name in ("match", "regex"):
        return _log_check(expression)
    if name == "location":
        return lambda event, state: matches(event.location) != negate
    if name in ("hostname", "program_name"):

        def header(event: EventInfo, state: RuleState) -> bool:
            value = getattr(event, name)
            return value is not None and matches(value) != negate

        return header

    def static(event: EventInfo, state: RuleState) -> bool:
        value = event.static.get(name)
        return value is not None and matches(value) != negate

    return static


def _field_check(name: str, expression: Expression) -> Check:
    matches = expression.matches
    negate = expression.negate
    key = name.lower()

    def field(event: EventInfo, state: RuleState) -> bool:
        value = event.field_index.get(key)
        return value is not None and matches(value) != negate

    return field


def _ip_check(name: str, addresses: IPList) -> Check:
    def address(event: EventInfo, state: RuleState) -> bool:
        value = event.static.get(name)
        return value is not None and addresses.matches(value) != addresses.negate

    return address


def _user_check(expression: Expression) -> Check:
    def user(event: EventInfo, state: RuleState) -> bool:
        value = event.static.get("dstuser")
        if value is None:
            value = event.static.get("srcuser")
        return value is not None and test(expression, value)

    return user


def compile_checks(rule: Rule) -> tuple[Check, ...]:
    """The rule's conditions as a tuple of small predicates, cheapest first."""
    checks: list[Check] = []
    # Below the roots, children_for() has already filtered on decoded_as.
    if rule.decoded_as is not None and rule.id < 10:
        wanted = rule.decoded_as
        checks.append(
            lambda event, state: event.decoder is not None and event.decoder.reported_name == wanted
        )
    for name, expression in rule.expressions.items():
        checks.append(_expression_check(name, expression))
    for name, expression in rule.fields:
        checks.append(_field_check(name, expression))
    if rule.srcip is not None:
        checks.append(_ip_check("srcip", rule.srcip))
    if rule.dstip is not None:
        checks.append(_ip_check("dstip", rule.dstip))
    if rule.compiled is not None:
        predicate = rule.compiled
        checks.append(lambda event, state: predicate(event))
    if rule.user is not None:
        checks.append(_user_check(rule.user))
    if rule.maxsize:
        size = rule.maxsize
        checks.append(lambda event, state: len(event.log) >= size)
    if rule.day_time is not None or rule.week_days is not None:
        checks.append(lambda event, state: _check_time(rule, event))
    if rule.if_fts:
        checks.append(first_time_seen)
    for lookup in rule.lists:
        checks.append(_list_check(lookup))
    return tuple(checks)


def _list_check(lookup: ListCheck) -> Check:
    def listed(event: EventInfo, state: RuleState) -> bool:
        return lookup.passes(event)

    return listed


def conditions_hold(rule: Rule, event: EventInfo, state: RuleState) -> bool:
    """Check every condition of ``rule`` except its correlation search."""
    checks = rule.checks
    if checks is None:
        checks = rule.checks = compile_checks(rule)
    for check in checks:
        if not check(event, state):
            return False
    return True


def _same_and_different(rule: Rule, old: EventInfo, new: EventInfo) -> bool:
    for name in rule.same:
        a = old.location if name == "location" else old.static.get(name)
        b = new.location if name == "location" else new.static.get(name)
        if a is None or b is None or a != b:
            return False
    for name in rule.different:
        a = old.location if name == "location" else old.static.get(name)
        b = new.location if name == "location" else new.static.get(name)
        if a is not None and b is not None and a == b:
            return False
    if rule.same_dynamic:
        if not new.fields or not old.fields:
            return False
        for name in rule.same_dynamic:
            mine = new.find_field(name)
            theirs = old.find_field(name)
            if mine is None or theirs is None or mine != theirs:
                return False
    if rule.different_dynamic:
        if not new.fields and not old.fields:
            return False
        for name in rule.different_dynamic:
            mine = new.find_field(name)
            if mine is not None and old.find_field(name) == mine:
                return False
    return True


def _own_events(rule: Rule, event: EventInfo, state: RuleState) -> Iterator[EventInfo]:
    """The events of the rule's history to search, newest first: every agent's with
    ``global_frequency``, else the event's agent's only (as Wazuh compares agent ids)."""
    assert rule.search_key is not None
    if rule.global_frequency:
        yield from reversed(state.histories.get(rule.search_key) or ())
        return
    # same_source_ip needs the same address on both events: only that address's view.
    srcip = event.static.get("srcip") if "srcip" in rule.same else None
    view: ViewKey = event.agent_id if srcip is None else (event.agent_id, srcip)
    mine, gone = state.agent_history(rule.search_key, view)
    if not mine:
        return
    for number, old in reversed(mine):
        if number <= gone:
            return
        yield old


def _lacks_a_same_field(rule: Rule, event: EventInfo) -> bool:
    """Whether ``event`` lacks a field that ``rule``'s search needs equal in an earlier
    event (``same_*``): no earlier event can then pass :func:`_same_and_different`, so the
    search fails without walking the history. Without this, every failed login from a
    syslog line walked the whole history of the Windows rule that wants the same
    ``win.eventdata.ipAddress`` (60204), three quarters of all the entries searches walked
    at 18,000 events a second."""
    for name in rule.same:
        if name != "location" and event.static.get(name) is None:
            return True
    if rule.same_dynamic:
        if not event.fields:
            return True
        for name in rule.same_dynamic:
            if event.find_field(name) is None:
                return True
    return False


def search_history(rule: Rule, event: EventInfo, state: RuleState) -> bool:
    """Wazuh's Search_LastSids/Search_LastGroups: enough recent related events?"""
    if _lacks_a_same_field(rule, event):
        return False
    needed = (rule.frequency - 2) if rule.frequency is not None else 0
    count = 0
    first: EventInfo | None = None
    previous: list[str] = []
    for old in _own_events(rule, event, state):
        if event.time - old.time > rule.timeframe:
            return False
        if not _same_and_different(rule, old, event):
            continue
        if old.matched >= rule.sort_level:
            return False
        if len(previous) <= 10:
            previous.append(old.full_log)
        if count < needed:
            count += 1
            if first is None:
                first = old
            continue
        event.matched = rule.sort_level
        if first is not None:
            first.matched = rule.sort_level
        event.last_events = previous
        return True
    return False


def match_rule(rule: Rule, event: EventInfo, state: RuleState) -> Rule | None:
    """Return the deepest rule under (and including) ``rule`` that matches ``event``."""
    checks = rule.checks
    if checks is None:
        checks = rule.checks = compile_checks(rule)
    for check in checks:
        if not check(event, state):
            return None
    return _matched(rule, event, state)


def _matched(rule: Rule, event: EventInfo, state: RuleState) -> Rule | None:
    """``rule``'s own conditions hold: run its correlation search, then its children."""
    if rule.search_key is not None and not search_history(rule, event, state):
        event.last_events = []
        return None
    for child in rule.children_for(event):
        # The children's checks run inline: most children fail their first check.
        checks = child.checks
        if checks is None:
            checks = child.checks = compile_checks(child)
        for check in checks:
            if not check(event, state):
                break
        else:
            found = _matched(child, event, state)
            if found is not None:
                # The innermost parent is recorded first, on the way back up.
                if event.parent_rule is None:
                    event.parent_rule = rule
                return found
    if rule.noalert:
        return None
    fired = state.fired.get(rule.id, 0) + 1
    state.fired[rule.id] = fired
    event.firedtimes = fired
    return rule

"""Listing a collection the Wazuh API way: ``q``, ``search``, ``select``, ``sort``, paging.

Pure functions over lists of JSON-ready dicts, no reactor and no I/O. Field names may be
dotted to reach nested values (``os.name``). The ``q`` language is Wazuh's:
``field<op>value`` conditions with ``=``, ``!=``, ``<``, ``>`` and ``~`` (contains), all
comparing text without case as Wazuh does, joined by ``;`` (and) or ``,`` (or), grouped
with parentheses; ``;`` binds tighter than ``,`` as AND does over OR in SQL. The value
``null`` matches a missing value. On date fields (ISO-8601 text in the items) a value is
a time frame or a date: a time frame speaks of elapsed time, as in Wazuh
(``lastKeepAlive<1d``: seen less than a day ago; ``>1d``: longer ago; ``=`` reads as
``<``), a date compares moments. Errors are :class:`~wazuhcluster.api.errors.ApiError`
with Wazuh's codes.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import frozen

from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.util.textmatch import as_number as _number
from wazuhcluster.util.textmatch import compare as _compare

DEFAULT_LIMIT = 500
MAX_LIMIT = 100_000
#: Bounds on a ``q`` expression, so one request cannot make the parser work hard.
MAX_QUERY_LENGTH = 2048
MAX_CONDITIONS = 64

_FIELD = re.compile(r"[\w.]+")
_OPERATORS = ("!=", "=", "<", ">", "~")
#: Like Wazuh, the operator is the run of one or two operator characters after the field.
_OPERATOR_RUN = re.compile(r"[!=<>~]{1,2}")
_TIMEFRAME = re.compile(r"(?:\d+[smhd])+")
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@frozen
class Condition:
    """One ``field<op>value`` test."""

    field: str
    operator: str
    value: str | None

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether ``item`` passes this test."""
        found = field_value(item, self.field)
        values = found if isinstance(found, list) else [found]
        if self.operator == "!=":
            return not any(_compare(value, "=", self.value) for value in values)
        return any(_compare(value, self.operator, self.value) for value in values)


@frozen
class Junction:
    """Conditions joined by and (``all_of``) or or."""

    all_of: bool
    parts: tuple[Expression, ...]

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether ``item`` passes all (and) or any (or) of the parts."""
        results = (part.matches(item) for part in self.parts)
        return all(results) if self.all_of else any(results)


@frozen
class DateCondition:
    """One test on a date field, against a moment in POSIX seconds.

    ``elapsed`` marks a time frame: ``<`` (and ``=``) keep items whose date is after the
    moment (less time has passed), the other operators those before it.
    """

    field: str
    operator: str
    moment: float
    elapsed: bool

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether ``item`` passes this test (a missing or unreadable date never does)."""
        held = _moment(field_value(item, self.field))
        if held is None:
            return False
        if self.elapsed:
            return held > self.moment if self.operator in ("<", "=") else held < self.moment
        if self.operator == "<":
            return held < self.moment
        if self.operator == ">":
            return held > self.moment
        if self.operator == "!=":
            return held != self.moment
        return held == self.moment


Expression = Condition | DateCondition | Junction

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?Z?")


def _moment(value: Any) -> float | None:
    """POSIX seconds of an ISO-8601 date text (UTC unless it says otherwise), or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _date_condition(field: str, operator: str, value: str, now: float) -> DateCondition:
    """The test of ``field<op>value`` on a date field (1412 for an unreadable value)."""
    if _TIMEFRAME.fullmatch(value) or (value.isascii() and value.isdigit()):
        return DateCondition(field, operator, now - parse_timeframe(value), True)
    moment = _moment(value) if _DATE.fullmatch(value) else None
    if moment is None:
        raise wazuh_error(1412, value[:64])
    return DateCondition(field, operator, moment, False)


def field_value(item: Mapping[str, Any], field: str) -> Any:
    """The value of a dotted ``field`` in ``item`` (None when absent)."""
    value: Any = item
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def parse_q(
    text: str,
    fields: Iterable[str],
    dates: Iterable[str] = (),
    now: float | None = None,
    *,
    lists: Iterable[str] = (),
) -> Expression:
    """Parse a ``q`` expression over the allowed ``fields`` (see module docstring).

    ``dates`` are the fields holding dates; time frames on them count back from ``now``
    (POSIX seconds; the current time when None). ``lists`` are the fields holding lists
    (an agent's groups), which have no order: ``<`` and ``>`` on them are error 1409.
    """
    allowed = set(fields)
    if len(text) > MAX_QUERY_LENGTH:
        raise wazuh_error(1407, f"longer than {MAX_QUERY_LENGTH} characters")
    moment = time.time() if now is None else now
    return _build(_tokenize(text, allowed, set(dates), moment, set(lists)), text)


def _tokenize(
    text: str, allowed: set[str], dates: set[str], now: float, lists: set[str]
) -> list[object]:
    """Split ``q`` into '(' / ')' / ';' / ',' and :class:`Condition` tokens."""
    tokens: list[object] = []
    position = 0
    conditions = 0
    while position < len(text):
        while position < len(text) and text[position] == "(":
            tokens.append("(")
            position += 1
        field = _FIELD.match(text, position)
        if field is None:
            raise wazuh_error(1407, text)
        position = field.end()
        found = _OPERATOR_RUN.match(text, position)
        if found is None:
            raise wazuh_error(1407, text)
        operator = found.group()
        if operator not in _OPERATORS:
            raise wazuh_error(1409, f"{operator}; valid operators: =, !=, <, >, ~")
        position += len(operator)
        end = position
        while end < len(text) and text[end] not in ";,":
            end += 1
        raw = text[position:end]
        closing = len(raw) - len(raw.rstrip(")"))
        value = raw[: len(raw) - closing]
        if not value:
            raise wazuh_error(1407, text)
        if field.group() not in allowed:
            raise wazuh_error(
                1408, f"{field.group()}; available fields: {', '.join(sorted(allowed))}"
            )
        if field.group() in lists and operator in ("<", ">"):
            raise wazuh_error(1409, f"{operator} on {field.group()}; valid operators: =, !=, ~")
        conditions += 1
        if conditions > MAX_CONDITIONS:
            raise wazuh_error(1407, f"more than {MAX_CONDITIONS} conditions")
        if field.group() in dates and value != "null" and operator != "~":
            tokens.append(_date_condition(field.group(), operator, value, now))
        else:
            tokens.append(Condition(field.group(), operator, None if value == "null" else value))
        tokens.extend(")" * closing)
        position = end
        if position < len(text):
            tokens.append(text[position])
            position += 1
            if position == len(text):
                raise wazuh_error(1407, text)
    return tokens


def _build(tokens: list[object], text: str) -> Expression:
    """The expression of ``tokens``: an or-list of and-lists of terms, a parenthesis
    opening a nested one.

    Iterative (an explicit stack of open parentheses), so deep nesting within the length
    limit costs no recursion; the result has as many levels as there are junctions, which
    :data:`MAX_CONDITIONS` bounds.
    """
    # Each open level is a list of or-parts, each a list of and-parts.
    stack: list[list[list[Expression]]] = [[[]]]
    want_term = True
    for token in tokens:
        if token == "(" and want_term:
            stack.append([[]])
        elif isinstance(token, Condition | DateCondition) and want_term:
            stack[-1][-1].append(token)
            want_term = False
        elif token == ")" and not want_term and len(stack) > 1:
            closed = _close(stack.pop())
            stack[-1][-1].append(closed)
        elif token == ";" and not want_term:
            want_term = True
        elif token == "," and not want_term:
            stack[-1].append([])
            want_term = True
        else:
            raise wazuh_error(1407, text)
    if want_term or len(stack) != 1:
        raise wazuh_error(1407, text)
    return _close(stack[0])


def _close(level: list[list[Expression]]) -> Expression:
    """One parenthesised level as an expression (``;`` binds tighter than ``,``)."""
    parts = [terms[0] if len(terms) == 1 else Junction(True, tuple(terms)) for terms in level]
    return parts[0] if len(parts) == 1 else Junction(False, tuple(parts))


def parse_timeframe(text: str) -> int:
    """Seconds in a Wazuh time frame: ``30``, ``10s``, ``5m``, ``2h``, ``7d`` or ``1d12h``."""
    if len(text) <= 32:
        if text.isascii() and text.isdigit():
            return int(text)
        if _TIMEFRAME.fullmatch(text):
            return sum(
                int(number) * _TIME_UNITS[unit] for number, unit in re.findall(r"(\d+)(\w)", text)
            )
    raise wazuh_error(1411, text[:64])


@frozen
class Listing:
    """How to list a collection: the parsed common query parameters."""

    offset: int = 0
    limit: int = DEFAULT_LIMIT
    select: tuple[str, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()
    search: str | None = None
    search_negated: bool = False
    q: str | None = None
    #: Each row once (after select, which then keeps no identity fields).
    distinct: bool = False


def parse_sort(text: str) -> tuple[tuple[str, bool], ...]:
    """``+name,-id`` → ((name, False), (id, True)); a leading sign applies to later fields."""
    order: list[tuple[str, bool]] = []
    descending = False
    for raw in text.split(","):
        field = raw.strip()
        if field.startswith("-"):
            descending, field = True, field[1:]
        elif field.startswith("+") or field.startswith(" "):
            descending, field = False, field[1:]
        if not field:
            raise wazuh_error(1403, text[:64])
        order.append((field, descending))
    return tuple(order)


def _sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    def key(item: Mapping[str, Any]) -> tuple[int, Any]:
        value = field_value(item, field)
        if value is None:
            return (0, "")
        number = _number(value)
        if number is not None:
            return (1, number)
        return (2, ",".join(value) if isinstance(value, list) else str(value).lower())

    return key


def _contains(item: Any, needle: str) -> bool:
    if isinstance(item, Mapping):
        return any(_contains(value, needle) for value in item.values())
    if isinstance(item, list):
        return any(_contains(value, needle) for value in item)
    return item is not None and needle in str(item).lower()


def _project(item: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """Keep only ``fields`` (dotted) of ``item``, nested as in the original."""
    result: dict[str, Any] = {}
    for field in fields:
        if not _has(item, field):
            continue
        value = field_value(item, field)
        target = result
        parts = field.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return result


def _has(item: Mapping[str, Any], field: str) -> bool:
    value: Any = item
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def apply_listing(
    items: Sequence[Mapping[str, Any]],
    listing: Listing,
    fields: Sequence[str],
    always: Sequence[str] = (),
    dates: Sequence[str] = (),
    now: float | None = None,
    *,
    lists: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], int]:
    """Filter, sort, page and project ``items``; return the page and the filtered total.

    ``fields`` are the names usable in q, sort and select; ``always`` are kept by any
    select (the item's identity, as Wazuh keeps ``id``) but a distinct one; ``dates``,
    ``now`` and ``lists`` are :func:`parse_q`'s.
    """
    selected = list(items)
    if listing.q:
        expression = parse_q(listing.q, fields, dates, now, lists=lists)
        selected = [item for item in selected if expression.matches(item)]
    if listing.search:
        needle = listing.search.lower()
        selected = [item for item in selected if _contains(item, needle) != listing.search_negated]
    unknown = [field for field, _ in listing.sort if field not in fields]
    if unknown:
        raise wazuh_error(
            1403, f"allowed sort fields: {', '.join(fields)}; fields: {', '.join(unknown)}"
        )
    unknown = [field for field in listing.select if field not in fields]
    if unknown:
        raise wazuh_error(
            1724, f"allowed select fields: {', '.join(fields)}; fields: {', '.join(unknown)}"
        )
    for field, descending in reversed(listing.sort):
        selected.sort(key=_sort_key(field), reverse=descending)
    if listing.distinct:
        rows = [_project(item, listing.select) if listing.select else item for item in selected]
        selected = _distinct(rows)
        total = len(selected)
        return [
            dict(item) for item in selected[listing.offset : listing.offset + listing.limit]
        ], total
    total = len(selected)
    page = selected[listing.offset : listing.offset + listing.limit]
    if listing.select:
        wanted = list(dict.fromkeys([*always, *listing.select]))
        return [_project(item, wanted) for item in page], total
    return [dict(item) for item in page], total


def _distinct(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``rows`` without repeats, first occurrences kept in order."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def check_listing(
    listing: Listing, fields: Sequence[str], dates: Sequence[str] = (), lists: Sequence[str] = ()
) -> None:
    """Raise the error :func:`apply_listing` would raise, before any work is done."""
    apply_listing([], listing, fields, (), dates, lists=lists)


__all__ = [
    "ApiError",
    "Condition",
    "DateCondition",
    "Junction",
    "Listing",
    "apply_listing",
    "check_listing",
    "field_value",
    "parse_q",
    "parse_sort",
    "parse_timeframe",
]

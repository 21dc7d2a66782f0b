"""The Wazuh API's ``q`` language over the registry's agent rows, in SQL.

A filter is a tree of :class:`TextTest` (``field<op>value`` compared as text, see
:func:`wazuhcluster.util.textmatch.compare`), :class:`MomentTest` (a date field against a
moment) and :class:`AllOrAny` (and / or). :func:`where_clause` turns it into a WHERE
expression over ``agents LEFT JOIN agent_times`` with bound parameters only: field names
are looked up in fixed tables (:data:`FIELDS`), operators in fixed sets, and every value
is a ``?``. Text comparisons call :func:`~wazuhcluster.util.textmatch.compare` through a
function registered on the connection (:func:`install`), so SQL and the in-memory
evaluation of the API views agree, case folding and numbers included.

Each field's SQL expression gives what the API's agent view shows for it (None when the
view leaves the field out); fields the registry does not hold (``labels``,
``group_config_status``, ``status_code``) are not in :data:`FIELDS` and the API filters
them in memory.
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import Any

from attrs import frozen

from wazuhcluster.util.textmatch import as_number, compare

_DISCONNECTED_AT = (
    "CASE WHEN connection_status = 'disconnected' AND COALESCE(disconnection_time, 0) != 0"
    " THEN disconnection_time END"
)
#: The date fields: API name -> SQL expression of POSIX seconds (NULL when not shown).
_DATES = {
    "dateAdd": "register_time",
    "lastKeepAlive": "last_keepalive",
    "disconnection_time": _DISCONNECTED_AT,
}
#: The text fields: API name -> SQL expression of the shown value (NULL when not shown).
_TEXTS = {
    "id": "printf('%03d', id)",
    "name": "name",
    "ip": "COALESCE(NULLIF(agent_ip, ''), ip)",
    "registerIP": "ip",
    "status": "connection_status",
    "version": "NULLIF(version, '')",
    "configSum": "NULLIF(config_sum, '')",
    "mergedSum": "NULLIF(merged_sum, '')",
    "node_name": "NULLIF(node_name, '')",
    "manager": "NULLIF(node_name, '')",
    "os.name": "NULLIF(os_name, '')",
    "os.platform": "NULLIF(os_platform, '')",
    "os.version": "NULLIF(os_version, '')",
    "os.major": "NULLIF(os_major, '')",
    "os.minor": "NULLIF(os_minor, '')",
    "os.codename": "NULLIF(os_codename, '')",
    "os.arch": "NULLIF(os_arch, '')",
    "os.uname": "NULLIF(os_uname, '')",
    **{name: f"q_iso({expression})" for name, expression in _DATES.items()},
}
#: The agent's groups: a list, which a test passes when any member does.
_GROUP = "group"
#: Every field a filter may test.
FIELDS = frozenset(_TEXTS) | {_GROUP}
#: The fields :func:`shown_value` gives (one value an agent, not a list).
SHOWN_FIELDS = frozenset(_TEXTS)
DATE_FIELDS = frozenset(_DATES)
_TEXT_OPERATORS = frozenset({"=", "!=", "<", ">", "~"})
_MOMENT_OPERATORS = {"=": "=", "!=": "!=", "<": "<", ">": ">"}


@frozen
class TextTest:
    """``field<operator>value`` compared as text (``value`` None: ``null``)."""

    field: str
    operator: str
    value: str | None


@frozen
class MomentTest:
    """A date field against ``moment`` (POSIX seconds); ``elapsed`` marks a time frame:
    ``<`` and ``=`` keep dates after the moment, ``>`` and ``!=`` those before it."""

    field: str
    operator: str
    moment: float
    elapsed: bool


@frozen
class AllOrAny:
    """Tests joined by and (``all_of``) or or."""

    all_of: bool
    parts: tuple[AgentFilter, ...]


@frozen
class InNoGroup:
    """Agents that belong to no group."""


@frozen
class VersionOtherThan:
    """Agents that reported a version (any) other than ``version`` (exactly)."""

    version: str


AgentFilter = TextTest | MomentTest | AllOrAny | InNoGroup | VersionOtherThan


@frozen
class Grant:
    """One permission entry on agents, in the caller's order: ``allow`` or deny the agents
    whose id is ``value`` (``kind`` ``id``) or that belong to the group ``value``
    (``kind`` ``group``); ``*`` covers every agent (``id``) or every agent in a group."""

    allow: bool
    kind: str
    value: str


@frozen
class AgentScope:
    """The agents a caller may act on: everyone or no one at first (``everyone``), then
    each grant in order adds (allow) or removes (deny) the agents it covers."""

    everyone: bool
    grants: tuple[Grant, ...]


#: At most this many grants are written into one query (each nests the expression).
MAX_GRANTS = 200


class UnknownField(ValueError):
    """A filter names a field or operator the registry cannot test."""


def install(connection: sqlite3.Connection) -> None:
    """Register the functions :func:`where_clause` uses on ``connection``."""
    connection.create_function("q_match", 3, _match, deterministic=True)
    connection.create_function("q_iso", 1, _iso, deterministic=True)
    connection.create_function("q_second", 1, _second, deterministic=True)


def where_clause(test: AgentFilter) -> tuple[str, list[Any]]:
    """The SQL expression of ``test`` and its parameters (:class:`UnknownField` for a
    field or operator outside the fixed tables)."""
    if isinstance(test, AllOrAny):
        if not test.parts:
            raise UnknownField("an empty junction")
        pieces = [where_clause(part) for part in test.parts]
        joiner = " AND " if test.all_of else " OR "
        params = [value for _, values in pieces for value in values]
        return "(" + joiner.join(sql for sql, _ in pieces) + ")", params
    if isinstance(test, MomentTest):
        return _moment_clause(test)
    if isinstance(test, InNoGroup):
        return "NOT EXISTS (SELECT 1 FROM memberships n WHERE n.agent_id = agents.id)", []
    if isinstance(test, VersionOtherThan):
        return "(version != '' AND version != ?)", [test.version]
    return _text_clause(test)


def shown_value(field: str) -> str:
    """The SQL expression of what the API's agent view shows for the text or date
    ``field`` (NULL when it leaves the field out; :class:`UnknownField` otherwise)."""
    if field not in _TEXTS:
        raise UnknownField(field)
    return _TEXTS[field]


def scope_clause(scope: AgentScope) -> tuple[str, list[Any]]:
    """The SQL expression of the agents ``scope`` covers and its parameters
    (:class:`UnknownField` for a grant of another kind, or too many grants)."""
    if len(scope.grants) > MAX_GRANTS:
        raise UnknownField(f"more than {MAX_GRANTS} grants")
    sql = "1" if scope.everyone else "0"
    params: list[Any] = []
    for grant in scope.grants:
        covered, values = _covered(grant)
        sql = f"({sql} OR {covered})" if grant.allow else f"({sql} AND NOT {covered})"
        params.extend(values)
    return sql, params


def _covered(grant: Grant) -> tuple[str, list[Any]]:
    """SQL of the agents one grant covers."""
    if grant.kind == "id":
        if grant.value == "*":
            return "1", []
        if grant.value.isdigit():
            # Digits name the same agent however they are padded (1, 001).
            return "id = ?", [int(grant.value)]
        return "printf('%03d', id) = ?", [grant.value]
    if grant.kind == "group":
        member = "EXISTS (SELECT 1 FROM memberships g WHERE g.agent_id = agents.id"
        if grant.value == "*":
            return member + ")", []
        return member + " AND g.group_name = ?)", [grant.value]
    raise UnknownField(grant.kind)


def _text_clause(test: TextTest) -> tuple[str, list[Any]]:
    if test.operator not in _TEXT_OPERATORS:
        raise UnknownField(test.operator)
    # != passes when no value equals (for a list: no member does).
    operator = "=" if test.operator == "!=" else test.operator
    negate = "NOT " if test.operator == "!=" else ""
    if test.field == _GROUP:
        sql, params = _compared("m.group_name", operator, test.value)
        found = f"EXISTS (SELECT 1 FROM memberships m WHERE m.agent_id = agents.id AND {sql})"
        return negate + found, params
    if test.field not in _TEXTS:
        raise UnknownField(test.field)
    if test.field == "id" and operator in ("<", ">"):
        number = as_number(test.value)
        if number is not None:
            # Both sides are numbers: compared as numbers (the shown id is the number).
            return f"id {operator} ?", [number]
    sql, params = _compared(_TEXTS[test.field], operator, test.value)
    return negate + sql, params


def _compared(expression: str, operator: str, value: str | None) -> tuple[str, list[Any]]:
    """SQL of ``compare(expression, operator, value)`` (0 or 1, never NULL).

    Plain SQL where it gives the same answer: an ASCII value (``=`` or ``~``) against an
    ASCII text (as many bytes as characters), since SQLite's NOCASE and lower() fold
    ASCII letters only and Python's lower() folds an ASCII text the same way. A text
    with other characters (the Kelvin sign lowers to ``k`` in Python, the dotted capital
    I to ``i`` and a combining dot) and anything else call :func:`compare` itself.
    """
    python = f"q_match({expression}, ?, ?)"
    if value is not None and value.isascii() and operator in ("=", "~"):
        if operator == "=":
            native, params = f"{expression} = ? COLLATE NOCASE", [value]
        else:
            native, params = f"instr(lower({expression}), ?) > 0", [value.lower()]
        ascii_text = f"length(CAST({expression} AS BLOB)) = length({expression})"
        sql = f"(CASE WHEN {ascii_text} THEN COALESCE({native}, 0) ELSE {python} END)"
        return sql, [*params, operator, value]
    return python, [operator, value]


def _moment_clause(test: MomentTest) -> tuple[str, list[Any]]:
    if test.field not in _DATES or test.operator not in _MOMENT_OPERATORS:
        raise UnknownField(f"{test.field}{test.operator}")
    column = _DATES[test.field]
    if test.elapsed:
        operator = ">" if test.operator in ("<", "=") else "<"
    else:
        operator = _MOMENT_OPERATORS[test.operator]
    moment = test.moment
    # The shown date is the stored one in whole seconds, never a second or more away:
    # plain numeric bounds decide every row but those within a second of the moment,
    # which the Python function (the view's own rounding) decides.
    checked = "=" if operator == "!=" else operator
    near = (
        f"({column} > ? - 1 AND {column} < ? + 1 AND COALESCE(q_second({column}) {checked} ?, 0))"
    )
    if operator == ">":
        return f"({column} >= ? + 1 OR {near})", [moment] * 4
    if operator == "<":
        return f"({column} <= ? - 1 OR {near})", [moment] * 4
    if operator == "=":
        return near, [moment] * 3
    return f"({column} IS NOT NULL AND NOT {near})", [moment] * 3


def _match(held: Any, operator: str, wanted: str | None) -> int:
    """SQL ``q_match``: :func:`compare` as 0 or 1."""
    return 1 if compare(held, operator, wanted) else 0


def _shown(seconds: float) -> datetime.datetime:
    """The moment as the API shows it: whole seconds, UTC."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(microsecond=0)


def _iso(seconds: float | None) -> str | None:
    """SQL ``q_iso``: POSIX seconds as the API's ``YYYY-MM-DDTHH:MM:SS+00:00`` text."""
    if seconds is None:
        return None
    return _shown(seconds).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _second(seconds: float | None) -> float | None:
    """SQL ``q_second``: the shown moment in POSIX seconds."""
    return None if seconds is None else _shown(seconds).timestamp()

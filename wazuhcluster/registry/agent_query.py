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

from wazuhcluster.util.textmatch import compare

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


AgentFilter = TextTest | MomentTest | AllOrAny


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
    return _text_clause(test)


def _text_clause(test: TextTest) -> tuple[str, list[Any]]:
    if test.operator not in _TEXT_OPERATORS:
        raise UnknownField(test.operator)
    # != passes when no value equals (for a list: no member does).
    operator = "=" if test.operator == "!=" else test.operator
    negate = "NOT " if test.operator == "!=" else ""
    if test.field == _GROUP:
        sql = (
            f"{negate}EXISTS (SELECT 1 FROM memberships m WHERE m.agent_id = agents.id"
            " AND q_match(m.group_name, ?, ?))"
        )
        return sql, [operator, test.value]
    if test.field not in _TEXTS:
        raise UnknownField(test.field)
    return f"{negate}q_match({_TEXTS[test.field]}, ?, ?)", [operator, test.value]


def _moment_clause(test: MomentTest) -> tuple[str, list[Any]]:
    if test.field not in _DATES or test.operator not in _MOMENT_OPERATORS:
        raise UnknownField(f"{test.field}{test.operator}")
    column = _DATES[test.field]
    if test.elapsed:
        operator = ">" if test.operator in ("<", "=") else "<"
    else:
        operator = _MOMENT_OPERATORS[test.operator]
    # The shown date is whole seconds (within a second of the stored one): a plain
    # numeric bound first, so most rows that fail never reach the Python function.
    bounds = {
        ">": (f"{column} > ? - 1", 1),
        "<": (f"{column} < ? + 1", 1),
        "=": (f"{column} > ? - 1 AND {column} < ? + 1", 2),
    }
    exact = f"COALESCE(q_second({column}) {operator} ?, 0)"
    if operator not in bounds:
        return exact, [test.moment]
    prefilter, count = bounds[operator]
    return f"({prefilter} AND {exact})", [test.moment] * (count + 1)


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

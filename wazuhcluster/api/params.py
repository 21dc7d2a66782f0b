"""Typed query-string and body parameters: each parser turns text into a value or a 400.

A route declares its parameters as ``{name: parser}``; the resource refuses any other
parameter, as the Wazuh API (strict OpenAPI validation) does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from wazuhcluster.api.errors import bad_request, wazuh_error
from wazuhcluster.api.query import MAX_LIMIT, Listing, parse_sort, parse_timeframe

Parser = Callable[[str, str], Any]
MAX_PARAM = 8192
MAX_LIST_ITEMS = 10_000
MAX_LIST_TEXT = 128 * 1024
MAX_OFFSET = 2**31 - 1
_AGENT_ID = re.compile(r"\d{3,8}")
_NAMES = re.compile(r"[\w.@:/ -]{1,255}")


def text(name: str, value: str) -> str:
    """Any text up to the parameter bound."""
    if len(value) > MAX_PARAM:
        raise bad_request(f"'{name}' is longer than {MAX_PARAM} characters")
    return value


def names(name: str, value: str) -> str:
    """A name-like value (node, agent, group, version...)."""
    if _NAMES.fullmatch(value) is None:
        raise bad_request(f"'{value[:64]}' is not a valid '{name}'")
    return value


def boolean(name: str, value: str) -> bool:
    """``true`` or ``false``."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"'{value[:64]}' is not of type 'boolean' ('{name}')")


def integer(minimum: int, maximum: int) -> Parser:
    """An integer in ``[minimum, maximum]``."""

    def parse(name: str, value: str) -> int:
        if not re.fullmatch(r"-?\d{1,12}", value):
            raise bad_request(f"'{value[:64]}' is not of type 'integer' ('{name}')")
        number = int(value)
        if number < minimum:
            raise bad_request(f"{number} is less than the minimum of {minimum} ('{name}')")
        if number > maximum:
            raise bad_request(f"{number} is greater than the maximum of {maximum} ('{name}')")
        return number

    return parse


def offset(name: str, value: str) -> int:
    """A list offset: 0 or more; beyond what a database offset holds is Wazuh's error 2003."""
    if not re.fullmatch(r"-?\d{1,64}", value):
        raise bad_request(f"'{value[:64]}' is not of type 'integer' ('{name}')")
    number = int(value)
    if number < 0:
        raise bad_request(f"{number} is less than the minimum of 0 ('{name}')")
    if number > MAX_OFFSET:
        raise wazuh_error(2003, f"offset {value[:64]} is out of range")
    return number


def comma_list(item: Parser) -> Parser:
    """A comma-separated list, each item checked by ``item``."""

    def parse(name: str, value: str) -> tuple[Any, ...]:
        if len(value) > MAX_LIST_TEXT:
            raise bad_request(f"'{name}' is longer than {MAX_LIST_TEXT} characters")
        parts = value.split(",")
        if len(parts) > MAX_LIST_ITEMS:
            raise bad_request(f"'{name}' has more than {MAX_LIST_ITEMS} items")
        if any(not part for part in parts):
            raise bad_request(f"'{name}' has an empty item")
        return tuple(item(name, part) for part in parts)

    return parse


def agent_id(name: str, value: str) -> str:
    """An agent id: three to eight digits (``001``)."""
    if _AGENT_ID.fullmatch(value) is None:
        raise bad_request(f"'{value[:64]}' is not a valid agent id ('{name}')")
    return value


def agent_id_or_all(name: str, value: str) -> str:
    """An agent id or ``all``."""
    return value if value == "all" else agent_id(name, value)


def group_name(name: str, value: str) -> str:
    """A group name as Wazuh allows it."""
    if not re.fullmatch(r"[\w.\-]{1,255}", value, re.ASCII) or value in (".", ".."):
        raise wazuh_error(1722, value[:64])
    return value


def group_or_all(name: str, value: str) -> str:
    """A group name or ``all``."""
    return value if value == "all" else group_name(name, value)


def choice(*allowed: str) -> Parser:
    """One of ``allowed``, in any case (``AcTiVe`` is ``active``, as Wazuh takes it)."""
    canonical = {value.lower(): value for value in allowed}

    def parse(name: str, value: str) -> str:
        found = canonical.get(value.lower())
        if found is None:
            raise bad_request(f"'{value[:64]}' is not one of {list(allowed)} ('{name}')")
        return found

    return parse


def timeframe(name: str, value: str) -> int:
    """A Wazuh time frame in seconds."""
    return parse_timeframe(value)


def sort(name: str, value: str) -> tuple[tuple[str, bool], ...]:
    """A sort expression."""
    return parse_sort(text(name, value))


def search(name: str, value: str) -> str:
    """A search string (``-`` prefix negates)."""
    return text(name, value)


#: The parameters every route accepts and ignores (results are always complete).
COMMON: dict[str, Parser] = {"pretty": boolean, "wait_for_complete": boolean}
#: The collection parameters of list endpoints.
LISTING: dict[str, Parser] = {
    "offset": offset,
    "limit": integer(1, MAX_LIMIT),
    "select": comma_list(names),
    "sort": sort,
    "search": search,
    "q": text,
    "distinct": boolean,
}


def listing(values: Mapping[str, Any]) -> Listing:
    """The :class:`Listing` of parsed collection parameters."""
    found: str = values.get("search") or ""
    negated = found.startswith("-")
    return Listing(
        offset=values.get("offset", 0),
        limit=values.get("limit", 500),
        select=tuple(values.get("select", ())),
        sort=values.get("sort", ()),
        search=(found[1:] if negated else found) or None,
        search_negated=negated,
        q=values.get("q") or None,
        distinct=bool(values.get("distinct", False)),
    )


# --- JSON bodies ------------------------------------------------------------------------

_JSON_TYPES: dict[type, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    dict: "object",
    list: "array",
}


def check_body(body: Any, fields: Mapping[str, tuple[type, bool, int]]) -> dict[str, Any]:
    """Validate a JSON object: ``fields`` maps name → (type, required, max length)."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    extra = sorted(set(body) - set(fields))
    if extra:
        listed = ", ".join(repr(name) for name in extra)
        raise bad_request(f"Additional properties are not allowed ({listed} was unexpected)")
    for name, (kind, required, limit) in fields.items():
        if name not in body:
            if required:
                raise bad_request(f"'{name}' is a required property")
            continue
        value = body[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            shown = str(value)[:64]
            raise bad_request(f"{shown!r} is not of type '{_JSON_TYPES[kind]}' ('{name}')")
        if isinstance(value, str) and len(value) > limit:
            raise bad_request(f"'{name}' is longer than {limit} characters")
    return dict(body)

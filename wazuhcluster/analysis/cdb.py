"""CDB lists read from their text form (``key:value`` lines) and the rule lookups on them.

A line without ``:`` is skipped; a key or value may be wrapped in double quotes (so a key can
hold a ``:``). Address lookups also try the key's prefixes that end with a dot, so a list
entry ``10.0.0.`` covers ``10.0.0.7``.
"""

from __future__ import annotations

import enum

from wazuhcluster.analysis.expressions import OSMatch

MAX_LIST_BYTES = 64 * 1024 * 1024


class ListError(Exception):
    """A CDB list that cannot be read."""


class Lookup(enum.Enum):
    """The ``lookup`` attribute of a rule's ``<list>``."""

    MATCH_KEY = "match_key"
    NOT_MATCH_KEY = "not_match_key"
    MATCH_KEY_VALUE = "match_key_value"
    ADDRESS_MATCH_KEY = "address_match_key"
    NOT_ADDRESS_MATCH_KEY = "not_address_match_key"
    ADDRESS_MATCH_KEY_VALUE = "address_match_key_value"


def parse_list(text: str) -> dict[str, str]:
    """Parse the text form of a CDB list into a dict."""
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.replace("\r", "")
        key: str | None = None
        rest = line
        first_quote = line.find('"')
        colon = line.find(":")
        if first_quote >= 0 and colon > first_quote:
            closing = line.find('"', first_quote + 1)
            if closing < 0:
                continue
            key = line[first_quote + 1 : closing]
            rest = line[closing + 1 :]
        colon = rest.find(":")
        if colon < 0:
            continue
        if key is None:
            key = rest[:colon]
        value = rest[colon + 1 :]
        if '"' in value:
            start = value.find('"')
            end = value.find('"', start + 1)
            if end < 0:
                continue
            value = value[start + 1 : end]
        entries.setdefault(key, value)
    return entries


def load_list(path: str) -> dict[str, str]:
    """Read a CDB list's text file (bounded in size)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_LIST_BYTES + 1)
    except OSError as error:
        raise ListError(f"{path}: cannot read: {error.strerror}") from None
    if len(data) > MAX_LIST_BYTES:
        raise ListError(f"{path}: larger than {MAX_LIST_BYTES} bytes")
    return parse_list(data.decode("utf-8", errors="replace"))


def _address_entry(entries: dict[str, str], key: str) -> str | None:
    if key in entries:
        return entries[key]
    prefix = key
    while prefix:
        if prefix.endswith(".") and prefix in entries:
            return entries[prefix]
        prefix = prefix[:-1]
    return None


def lookup(entries: dict[str, str], kind: Lookup, key: str, check: OSMatch | None) -> bool:
    """Evaluate one list lookup of a rule against ``key``, with Wazuh's semantics."""
    if kind is Lookup.MATCH_KEY:
        return key in entries
    if kind is Lookup.NOT_MATCH_KEY:
        return key not in entries
    if kind is Lookup.MATCH_KEY_VALUE:
        value = entries.get(key)
        if value is None:
            return False
        return check.matches(value) if check is not None else True
    found = _address_entry(entries, key)
    if kind is Lookup.ADDRESS_MATCH_KEY:
        return found is not None
    if kind is Lookup.NOT_ADDRESS_MATCH_KEY:
        return found is None
    # Wazuh fires address_match_key_value when the value does NOT match (analysisd's
    # OS_DBSearch compares the lookup result with 0); we keep that for compatibility.
    if found is None:
        return True
    return not (check.matches(found) if check is not None else True)

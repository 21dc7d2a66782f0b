"""JSON documents built from XML as Wazuh's API builds them: a repeated tag becomes a list."""

from __future__ import annotations

from typing import Any


def put_repeated(holder: dict[str, Any], key: str, value: Any) -> None:
    """Set ``holder[key]`` to ``value``; a key set again holds a list of its values, in order."""
    if key not in holder:
        holder[key] = value
    elif isinstance(holder[key], list):
        holder[key].append(value)
    else:
        holder[key] = [holder[key], value]

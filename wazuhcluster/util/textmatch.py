"""How the Wazuh API's ``q`` language compares one held value with a wanted text.

One definition shared by the in-memory evaluation (:mod:`wazuhcluster.api.query`) and the
registry's SQL translation (a function registered on its SQLite connection), so both give
the same answers. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def as_number(value: Any) -> float | None:
    """``value`` as a number when it is one or a decimal text (booleans are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    return None


def compare(held: Any, operator: str, wanted: str | None) -> bool:
    """Whether ``held`` passes ``<operator> wanted`` (``=``, ``<``, ``>`` or ``~``).

    Text compares without case, as Wazuh's queries do; ``<`` and ``>`` compare numbers
    when both sides are numbers; a ``wanted`` of None (``null``) matches a missing or
    empty value with ``=`` and nothing otherwise.
    """
    if wanted is None:
        missing = held is None or held == ""
        return missing if operator == "=" else False
    if held is None:
        return False
    text = ("true" if held else "false") if isinstance(held, bool) else str(held)
    text, wanted = text.lower(), wanted.lower()
    if operator == "=":
        return text == wanted
    if operator == "~":
        return wanted in text
    left, right = as_number(held), as_number(wanted)
    if left is not None and right is not None:
        return left < right if operator == "<" else left > right
    return text < wanted if operator == "<" else text > wanted

"""What an endpoint answers: a :class:`Reply` and Wazuh's multi-item envelope.

Calls on several items (agents, groups, nodes) answer with the affected items, the
failed ones grouped by Wazuh error code, one of three messages (all, some or none
done) and an error level; :func:`envelope` builds that shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from wazuhcluster.api.errors import failed_item

#: The content types of answers: JSON (most) and plain text (a raw token).
JSON = b"application/json; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
#: XML text (a raw agent.conf, a ruleset file).
XML = b"application/xml; charset=utf-8"


@frozen
class Reply:
    """A successful answer."""

    body: Any
    status: int = 200
    content_type: bytes = JSON


def envelope(
    items: list[Any],
    failed: Mapping[int, Sequence[str | int]],
    all_msg: str,
    some_msg: str,
    none_msg: str,
    total: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Wazuh's multi-item answer: affected and failed items, a message and an error level.

    ``error`` is 0 when nothing failed, 2 when some items failed and 1 when all did
    (nothing affected), as Wazuh's framework sets it.
    """
    failed_items = [failed_item(code, ids) for code, ids in sorted(failed.items()) if ids]
    failed_count = sum(len(ids) for ids in failed.values())
    if not failed_count:
        message, error = all_msg, 0
    elif items:
        message, error = some_msg, 2
    else:
        message, error = none_msg, 1
    data: dict[str, Any] = {
        "affected_items": items,
        "total_affected_items": len(items) if total is None else total,
        "total_failed_items": failed_count,
        "failed_items": failed_items,
    }
    if extra:
        data.update(extra)
    return {"data": data, "message": message, "error": error}


def numeric_ids(failed: Mapping[int, list[str]]) -> dict[int, list[str | int]]:
    """``failed`` with its decimal ids as numbers: Wazuh's security endpoints name roles,
    policies, rules and users by their integer ids in ``failed_items``."""
    return {code: [int(i) if i.isdecimal() else i for i in ids] for code, ids in failed.items()}


def add_failure(failed: dict[int, list[str]], code: int, item: str) -> None:
    """Record that ``item`` failed with Wazuh error ``code``."""
    failed.setdefault(code, []).append(item)


def same_message(message: str) -> tuple[str, str, str]:
    """The all/some/none messages of an envelope that says the same in every case."""
    return message, message, message

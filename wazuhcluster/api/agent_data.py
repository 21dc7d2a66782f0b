"""One question about an agent's stored data, answered where the data is.

A request is a JSON object — ``agent_id``, ``kind`` (see
:data:`~wazuhcluster.analysis.state_reader.KINDS`), ``policy_id`` (for ``sca_checks``),
``filters`` (field → value, equality) and ``listing`` (offset, limit, select, sort, search,
q) — so it can cross the cluster link. :func:`answer_locally` reads the node's agent
databases, filters, sorts, pages and projects there, and answers ``{"items", "total"}`` (or
``{"error": {"code", "detail"}}`` for a bad query), so only one page travels. A request with
``"clear": true`` empties the agent's ``syscheck`` or ``rootcheck`` state there instead (the
DELETE operations) and answers the agent's id. Blocking: run it in a thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wazuhcluster.analysis.state_reader import KINDS, read_items
from wazuhcluster.analysis.state_store import CLEARED_TABLES, clear_agent_state
from wazuhcluster.api.errors import ApiError
from wazuhcluster.api.query import Listing, apply_listing, field_value


class AgentDataUnavailable(Exception):
    """The node that holds an agent's data could not answer; ``str()`` says why and
    ``code`` is Wazuh's error for it: 3022 for a node that is not connected (Wazuh answers
    400 then), 3020 for one that did not answer in time, 1000 for any other failure."""

    def __init__(self, message: str, code: int = 1000) -> None:
        super().__init__(message)
        self.code = code


#: Fields usable in q, sort and select, per kind (besides any the items carry).
BASE_FIELDS: dict[str, tuple[str, ...]] = {
    "syscheck": (
        "file",
        "type",
        "date",
        "changes",
        "size",
        "perm",
        "uid",
        "gid",
        "uname",
        "gname",
        "md5",
        "sha1",
        "sha256",
        "mtime",
        "inode",
        "attributes",
        "arch",
        "value.name",
        "value.type",
    ),
    "sca": (
        "policy_id",
        "name",
        "description",
        "references",
        "hash_file",
        "pass",
        "fail",
        "invalid",
        "total_checks",
        "score",
        "start_scan",
        "end_scan",
    ),
    "sca_checks": (
        "id",
        "policy_id",
        "title",
        "description",
        "rationale",
        "remediation",
        "references",
        "file",
        "directory",
        "registry",
        "process",
        "command",
        "condition",
        "result",
        "reason",
    ),
    "rootcheck": ("log", "date_first", "date_last", "status", "pci_dss", "cis"),
    "syscheck_last_scan": ("start", "end"),
    "rootcheck_last_scan": ("start", "end"),
}


def _dotted(item: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in item.items():
        name = prefix + key
        if isinstance(value, Mapping):
            yield from _dotted(value, name + ".")
        else:
            yield name


def fields_of(kind: str, items: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    """The field names of ``kind`` (its base fields and those its items carry)."""
    names = dict.fromkeys(BASE_FIELDS.get(kind, ("agent_id", "scan.id", "scan.time")))
    for item in items:
        names.update(dict.fromkeys(_dotted(item)))
    return list(names)


def listing_to_json(listing: Listing) -> dict[str, Any]:
    """A :class:`Listing` as JSON."""
    return {
        "offset": listing.offset,
        "limit": listing.limit,
        "select": list(listing.select),
        "sort": [[name, descending] for name, descending in listing.sort],
        "search": listing.search,
        "search_negated": listing.search_negated,
        "q": listing.q,
    }


def listing_from_json(data: Mapping[str, Any]) -> Listing:
    """A :class:`Listing` back from :func:`listing_to_json`."""
    return Listing(
        offset=int(data.get("offset", 0)),
        limit=int(data.get("limit", 500)),
        select=tuple(str(name) for name in data.get("select", ())),
        sort=tuple((str(name), bool(descending)) for name, descending in data.get("sort", ())),
        search=data.get("search"),
        search_negated=bool(data.get("search_negated")),
        q=data.get("q"),
    )


def answer_locally(directory: Path, request: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``request`` from the agent databases in ``directory`` (see module docstring)."""
    kind = str(request.get("kind", ""))
    agent_id = str(request.get("agent_id", ""))
    if request.get("clear") is True:
        if kind not in CLEARED_TABLES:
            return {"error": {"code": 1000, "detail": f"cannot clear {kind[:32]!r}"}}
        try:
            clear_agent_state(directory, agent_id, kind)
        except sqlite3.Error as error:
            return {"error": {"code": 1000, "detail": f"could not clear: {error}"}}
        return {"items": [agent_id], "total": 1}
    if kind not in KINDS:
        return {"error": {"code": 1000, "detail": f"unknown kind {kind[:32]!r}"}}
    policy = request.get("policy_id")
    items = read_items(directory, agent_id, kind, str(policy) if policy is not None else None)
    filters = request.get("filters") or {}
    for name, wanted in filters.items():
        items = [item for item in items if _equals(field_value(item, str(name)), wanted)]
    try:
        page, total = apply_listing(
            items, listing_from_json(request.get("listing") or {}), fields_of(kind, items)
        )
    except ApiError as error:
        return {"error": {"code": error.code or 1000, "detail": error.detail}}
    return {"items": page, "total": total}


def _equals(held: Any, wanted: Any) -> bool:
    if held is None:
        return False
    if isinstance(held, list):
        return any(str(value) == str(wanted) for value in held)
    return str(held) == str(wanted)

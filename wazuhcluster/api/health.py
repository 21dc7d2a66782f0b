"""The healthcheck and ruleset-sync answers, built from the master's health data.

The verdict itself (ok / lagging / stale / disconnected) is the node's, computed once in
:mod:`wazuhcluster.node.health` so the control tool, the API and monitoring agree; here the
report is only reshaped into Wazuh's ``GET /cluster/healthcheck`` items (times as ISO
text) and the ``synced`` flag of ``GET /cluster/ruleset/synchronization`` is derived.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wazuhcluster.api.views import iso_micro

#: Status keys that hold POSIX times besides the ``date_*`` ones.
_TIME_KEYS = frozenset({"last_keep_alive", "connected_since", "disconnected_at"})
OK_VERDICT: dict[str, Any] = {"state": "ok", "reasons": []}


def format_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a health status with every time (POSIX seconds) as ISO text, ``n/a`` if unset."""
    result: dict[str, Any] = {}
    for key, value in status.items():
        if isinstance(value, Mapping):
            result[key] = format_status(value)
        elif key in _TIME_KEYS or key.startswith("date_"):
            result[key] = "n/a" if value is None else iso_micro(value)
        else:
            result[key] = value
    return result


def health_items(
    health: Mapping[str, Any], active_agents: Mapping[str, int]
) -> list[dict[str, Any]]:
    """One ``{info, status?, verdict}`` item per node of the master's health report."""
    items = []
    for name, entry in health["nodes"].items():
        info = {**entry["info"], "n_active_agents": active_agents.get(name, 0)}
        item: dict[str, Any] = {"info": info}
        if "status" in entry:
            item["status"] = format_status(entry["status"])
        item["verdict"] = dict(entry.get("verdict") or OK_VERDICT)
        items.append(item)
    return items


def ruleset_synced(status: Mapping[str, Any]) -> bool:
    """Whether a worker's health status says its synced files match the master's.

    True once an integrity check has finished, no sync is running or failed, no files
    are deferred to later cycles, and the worker is still connected.
    """
    if status.get("disconnected_at") is not None:
        return False
    check = status.get("last_check_integrity") or {}
    sync = status.get("last_sync_integrity") or {}
    if not status.get("sync_integrity_free", True) or check.get("date_end_master") is None:
        return False
    if sync.get("last_error") or sync.get("deferred_files"):
        return False
    started, ended = sync.get("date_start_master"), sync.get("date_end_master")
    return started is None or (ended is not None and ended >= started)

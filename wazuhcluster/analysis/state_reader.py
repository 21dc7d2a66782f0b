"""Reading an agent's state database in the shapes of Wazuh's API (read-only, blocking).

:func:`read_items` opens ``<directory>/<agent id>.db`` read-only beside its writer (WAL) and
returns the items of one kind as the Wazuh API lists them: ``syscheck`` (FIM entries),
``sca`` (policies with their last scan), ``sca_checks`` (the checks of one policy),
``rootcheck`` (findings, ``outstanding`` or ``solved``) and ``syscollector/<table>`` (``os``,
``hardware``, ``packages``, ``processes``, ``ports``, ``netiface``, ``netaddr``, ``netproto``,
``hotfixes``, ``users``, ``groups``, ``services``, ``browser_extensions``) and the dates of
the last FIM and rootcheck scans (``syscheck_last_scan``, ``rootcheck_last_scan``: one item,
``start`` and ``end``). An agent with no database has no items (no dates). Run it in a
thread.
"""

from __future__ import annotations

import json
import sqlite3
import time as time_module
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wazuhcluster.analysis.state_store import agent_db_path

#: Most items read of one kind (an answer is bounded before any filtering).
MAX_ITEMS = 200_000
#: A rootcheck finding not seen within this long before the last scan's end is solved.
SOLVED_AFTER = 86_400
_MARKERS = ("Starting rootcheck scan.", "Ending rootcheck scan.")


def iso(seconds: Any) -> str | None:
    """Seconds since the epoch as Wazuh's API prints dates (UTC, ``Z``)."""
    if not isinstance(seconds, (int, float)):
        return None
    return time_module.strftime("%Y-%m-%dT%H:%M:%SZ", time_module.gmtime(seconds))


def _scan_time(text: Any) -> str | None:
    """Syscollector's ``YYYY/MM/DD hh:mm:ss`` as ``YYYY-MM-DDThh:mm:ssZ``."""
    if not isinstance(text, str) or len(text) < 19:
        return None
    return text[:10].replace("/", "-") + "T" + text[11:19] + "Z"


def _target(column: str, mapping: dict[str, str]) -> str:
    """The API name of a column: its own entry in ``mapping``, else the first ``prefix_``
    entry it starts with (``user_home`` → ``user.home``), else the column itself."""
    found = mapping.get(column)
    if found is not None:
        return found
    for prefix, dotted in mapping.items():
        if prefix.endswith("_") and column.startswith(prefix):
            return dotted + column[len(prefix) :]
    return column


def _nest(row: dict[str, Any], mapping: dict[str, str], agent_id: str) -> dict[str, Any]:
    """Move ``row``'s columns to the (dotted) names of ``mapping``; others keep theirs."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if column in ("checksum", "item_id", "scan_time", "scan_id") or value in (None, ""):
            continue
        target = _target(column, mapping)
        if not target:
            continue
        parts = target.split(".")
        place = out
        for part in parts[:-1]:
            place = place.setdefault(part, {})
        place[parts[-1]] = value
    scan: dict[str, Any] = {"id": row.get("scan_id", 0) or 0}
    stamp = _scan_time(row.get("scan_time"))
    if stamp:
        scan["time"] = stamp
    out["scan"] = scan
    out["agent_id"] = agent_id
    return out


# Wazuh API name of each inventory kind → (our table, column → API field)
INVENTORY: dict[str, tuple[str, dict[str, str]]] = {
    "os": (
        "osinfo",
        {
            "os_name": "os.name",
            "os_version": "os.version",
            "os_codename": "os.codename",
            "os_major": "os.major",
            "os_minor": "os.minor",
            "os_patch": "os.patch",
            "os_build": "os.build",
            "os_platform": "os.platform",
            "os_display_version": "os.display_version",
            "os_release": "os_release",
        },
    ),
    "hardware": (
        "hwinfo",
        {
            "cpu_name": "cpu.name",
            "cpu_cores": "cpu.cores",
            "cpu_mhz": "cpu.mhz",
            "ram_total": "ram.total",
            "ram_free": "ram.free",
            "ram_usage": "ram.usage",
        },
    ),
    "packages": ("packages", {"groups": "section"}),
    "processes": ("processes", {}),
    "ports": (
        "ports",
        {
            "local_ip": "local.ip",
            "local_port": "local.port",
            "remote_ip": "remote.ip",
            "remote_port": "remote.port",
        },
    ),
    "netiface": (
        "network_iface",
        {
            "adapter": "adapter",
            "tx_packets": "tx.packets",
            "rx_packets": "rx.packets",
            "tx_bytes": "tx.bytes",
            "rx_bytes": "rx.bytes",
            "tx_errors": "tx.errors",
            "rx_errors": "rx.errors",
            "tx_dropped": "tx.dropped",
            "rx_dropped": "rx.dropped",
        },
    ),
    "netaddr": ("network_address", {}),
    "netproto": ("network_protocol", {}),
    "hotfixes": ("hotfixes", {}),
    # The 4.x agents' users, groups, services and browser extensions (dbsync_<table>).
    "users": ("users", {"user_": "user.", "login_": "login."}),
    "groups": ("groups", {"group_": "group."}),
    "services": (
        "services",
        {
            "service_": "service.",
            "process_": "process.",
            "process_working_dir": "process.working_directory",
            "process_root_dir": "process.root_directory",
            "file_path": "file.path",
            "log_file_path": "log_file.path",
            "error_log_file_path": "error_log_file.path",
        },
    ),
    "browser_extensions": (
        "browser_extensions",
        {"browser_": "browser.", "package_": "package.", "file_hash_": "file_hash."},
    ),
}
#: The scan dates of ``GET /syscheck/{agent_id}/last_scan`` and ``/rootcheck/.../last_scan``.
LAST_SCAN_KINDS = ("syscheck_last_scan", "rootcheck_last_scan")
KINDS = (
    "syscheck",
    "sca",
    "sca_checks",
    "rootcheck",
    *LAST_SCAN_KINDS,
    *(f"syscollector/{k}" for k in INVENTORY),
)


def _connect(directory: Path, agent_id: str) -> sqlite3.Connection | None:
    path = agent_db_path(directory, agent_id)
    if path is None or not path.exists():
        return None
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    connection.row_factory = sqlite3.Row
    return connection


def _syscheck(connection: sqlite3.Connection, agent_id: str, _: str | None) -> list[dict]:
    rows = connection.execute(
        "SELECT * FROM fim_entry ORDER BY full_path LIMIT ?", (MAX_ITEMS,)
    ).fetchall()
    items = []
    for row in rows:
        kind = row["type"] or "file"
        item: dict[str, Any] = {
            "file": row["path"],
            # As stored: "file", "registry_key" or "registry_value" (older agents: "registry").
            "type": kind,
            "date": iso(row["date"]),
            "changes": row["changes"],
            "size": row["size"],
            "perm": row["perm"],
            "uid": row["uid"],
            "gid": row["gid"],
            "uname": row["uname"],
            "gname": row["gname"],
            "md5": row["md5"],
            "sha1": row["sha1"],
            "sha256": row["sha256"],
            "mtime": iso(row["mtime"]),
            "inode": row["inode"],
            "attributes": row["attributes"],
        }
        if kind.startswith("registry"):
            item["arch"] = row["arch"]
            item["value"] = {"name": row["value_name"], "type": row["value_type"]}
        items.append({key: value for key, value in item.items() if value is not None})
    return items


def _sca(connection: sqlite3.Connection, agent_id: str, _: str | None) -> list[dict]:
    rows = connection.execute(
        """SELECT p.id AS policy_id, p.name, p.description, p.refs, p.hash_file,
            s.pass, s.fail, s.invalid, s.total_checks, s.score, s.start_scan, s.end_scan
        FROM sca_policy p LEFT JOIN sca_scan s ON s.policy_id = p.id ORDER BY p.id"""
    ).fetchall()
    items = []
    for row in rows:
        item = {
            "policy_id": row["policy_id"],
            "name": row["name"],
            "description": row["description"],
            "references": row["refs"],
            "hash_file": row["hash_file"],
            "pass": row["pass"],
            "fail": row["fail"],
            "invalid": row["invalid"],
            "total_checks": row["total_checks"],
            "score": row["score"],
            "start_scan": iso(row["start_scan"]),
            "end_scan": iso(row["end_scan"]),
        }
        items.append({key: value for key, value in item.items() if value is not None})
    return items


def _sca_checks(connection: sqlite3.Connection, agent_id: str, policy: str | None) -> list[dict]:
    rows = connection.execute(
        "SELECT id, policy_id, result, data FROM sca_check WHERE policy_id = ? ORDER BY id LIMIT ?",
        (policy or "", MAX_ITEMS),
    ).fetchall()
    items = []
    for row in rows:
        event = json.loads(row["data"])
        check = event.get("check") if isinstance(event.get("check"), dict) else {}
        item: dict[str, Any] = {"id": row["id"], "policy_id": row["policy_id"]}
        for name in ("title", "description", "rationale", "remediation", "references"):
            if isinstance(check.get(name), str):
                item[name] = check[name]
        for name in ("file", "directory", "registry", "process", "command"):
            if isinstance(check.get(name), str):
                item[name] = check[name]
        if isinstance(check.get("condition"), str):
            item["condition"] = check["condition"]
        item["result"] = row["result"]
        if isinstance(check.get("reason"), str):
            item["reason"] = check["reason"]
        compliance = check.get("compliance")
        if isinstance(compliance, dict):
            item["compliance"] = [
                {"key": key, "value": str(value)} for key, value in compliance.items()
            ]
        rules = check.get("rules")
        if isinstance(rules, list):
            item["rules"] = [{"type": _rule_type(str(rule)), "rule": str(rule)} for rule in rules]
        items.append(item)
    return items


def _rule_type(rule: str) -> str:
    return {
        "f": "file",
        "d": "directory",
        "r": "registry",
        "c": "command",
        "p": "process",
        "n": "numeric",
    }.get(rule[:1], "unknown")


def _rootcheck(connection: sqlite3.Connection, agent_id: str, _: str | None) -> list[dict]:
    rows = connection.execute(
        "SELECT log, date_first, date_last, pci_dss, cis FROM pm_event ORDER BY id LIMIT ?",
        (MAX_ITEMS,),
    ).fetchall()
    last_end = max(
        (row["date_last"] for row in rows if row["log"] == "Ending rootcheck scan."),
        default=None,
    )
    items = []
    for row in rows:
        if row["log"] in _MARKERS:
            continue
        solved = last_end is not None and row["date_last"] <= last_end - SOLVED_AFTER
        item = {
            "log": row["log"],
            "date_first": iso(row["date_first"]),
            "date_last": iso(row["date_last"]),
            "status": "solved" if solved else "outstanding",
            "pci_dss": row["pci_dss"],
            "cis": row["cis"],
        }
        items.append({key: value for key, value in item.items() if value is not None})
    return items


def _last_scan(start: Any, end: Any) -> list[dict[str, Any]]:
    """Wazuh's answer: no end while a scan runs (an end older than the start)."""
    if not isinstance(start, (int, float)):
        return [{"start": None, "end": None}]
    finished = isinstance(end, (int, float)) and end >= start
    return [{"start": iso(start), "end": iso(end) if finished else None}]


def _syscheck_last_scan(connection: sqlite3.Connection, agent_id: str, _: str | None) -> list:
    marks = dict(connection.execute("SELECT event, time FROM scan_info").fetchall())
    return _last_scan(marks.get("start_scan"), marks.get("end_scan"))


def _rootcheck_last_scan(connection: sqlite3.Connection, agent_id: str, _: str | None) -> list:
    found = dict(
        connection.execute(
            "SELECT log, max(date_last) FROM pm_event WHERE log IN (?, ?) GROUP BY log",
            _MARKERS,
        ).fetchall()
    )
    return _last_scan(found.get(_MARKERS[0]), found.get(_MARKERS[1]))


#: Columns the agent sends as 0/1 that the API shows as booleans.
_BOOLEANS = {
    "services": frozenset(("service_starts_on_mount", "service_inetd_compatibility")),
    "browser_extensions": frozenset(
        (
            "package_enabled",
            "package_visible",
            "package_autoupdate",
            "package_persistent",
            "package_from_webstore",
            "browser_profile_referenced",
        )
    ),
}


def _inventory(kind: str) -> Callable[[sqlite3.Connection, str, str | None], list[dict]]:
    table, mapping = INVENTORY[kind]
    booleans = _BOOLEANS.get(kind, frozenset())

    def read(connection: sqlite3.Connection, agent_id: str, _: str | None) -> list[dict]:
        rows = connection.execute(
            "SELECT data FROM inventory WHERE kind = ? ORDER BY key LIMIT ?", (table, MAX_ITEMS)
        ).fetchall()
        items = []
        for row in rows:
            data = json.loads(row["data"])
            for column in booleans & data.keys():
                if isinstance(data[column], int):
                    data[column] = bool(data[column])
            items.append(_nest(data, mapping, agent_id))
        return items

    return read


_READERS: dict[str, Callable[[sqlite3.Connection, str, str | None], list[dict]]] = {
    "syscheck": _syscheck,
    "sca": _sca,
    "sca_checks": _sca_checks,
    "rootcheck": _rootcheck,
    "syscheck_last_scan": _syscheck_last_scan,
    "rootcheck_last_scan": _rootcheck_last_scan,
    **{f"syscollector/{kind}": _inventory(kind) for kind in INVENTORY},
}


def read_items(
    directory: Path, agent_id: str, kind: str, policy_id: str | None = None
) -> list[dict[str, Any]]:
    """The items of ``kind`` stored for ``agent_id`` (see module docstring)."""
    reader = _READERS.get(kind)
    if reader is None:
        raise ValueError(f"unknown kind of agent data: {kind[:32]!r}")
    nothing: list[dict[str, Any]] = _last_scan(None, None) if kind in LAST_SCAN_KINDS else []
    connection = _connect(directory, agent_id)
    if connection is None:
        return nothing
    try:
        return reader(connection, agent_id, policy_id)
    except sqlite3.OperationalError:  # a database not yet migrated: nothing stored yet
        return nothing
    finally:
        connection.close()

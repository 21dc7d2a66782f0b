"""The agents' status reports (agent-info) as the registry applies them in SQL: what one
report may set, bounded and checked, and a batch applied in one transaction."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from wazuhcluster.registry.agent_rows import AGENTS_JOINED
from wazuhcluster.registry.model import (
    CONNECTION_STATUSES,
    MAX_IP_TEXT,
    AgentInfoReport,
    AgentInfoResult,
    InvalidValue,
    parse_agent_id,
)

#: Upper bound of a reported text field.
TEXT_LIMIT = 1024
#: The columns of agent_times, which every report writes.
TIME_COLUMNS = ("last_keepalive", "disconnection_time", "status_time", "status_seq")


def apply_reports(db: sqlite3.Connection, reports: Sequence[AgentInfoReport]) -> AgentInfoResult:
    """Apply status reports in the open transaction of ``db``, keeping per agent only what
    is newer than held. Unknown ids (removed agents, a worker with stale keys) are counted,
    not errors."""
    applied = stale = unknown = 0
    numbers: list[int | None] = []
    for report in reports:
        try:
            numbers.append(parse_agent_id(report.agent_id))
        except ValueError:
            numbers.append(None)
    # One read for the whole batch and one UPDATE per agent in id order: per-row
    # SELECTs and random page order dominated applying a worker's report.
    known = json.dumps(sorted({n for n in numbers if n is not None}))
    held: dict[int, tuple[float, int]] = {}
    placed: dict[int, tuple[str, str]] = {}
    for number, status_time, status_seq, status, node in db.execute(
        "SELECT id, COALESCE(status_time, 0), COALESCE(status_seq, 0), "
        f"connection_status, node_name FROM {AGENTS_JOINED} "
        "WHERE id IN (SELECT value FROM json_each(?))",
        (known,),
    ):
        held[number] = (status_time, status_seq)
        placed[number] = (status, node)
    updates: dict[int, dict[str, Any]] = {}
    for number, report in zip(numbers, reports, strict=True):
        if number is None or number not in held:
            unknown += 1
            continue
        newest = (report.status_time, report.status_seq)
        if newest <= held[number]:
            stale += 1
            continue
        updates.setdefault(number, {}).update(report_columns(report))
        held[number] = newest
        applied += 1
    # Every report writes the narrow agent_times row; most only refresh a keep-alive,
    # so the wide agents row (and its status and node indexes) is left alone unless
    # one of its columns changed.
    times: list[tuple[Any, ...]] = []
    statements: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for number in sorted(updates):
        columns = updates[number]
        times.append((number, *(columns.pop(name) for name in TIME_COLUMNS)))
        if (columns["connection_status"], columns["node_name"]) == placed[number]:
            del columns["connection_status"], columns["node_name"]
        if columns:
            statements.setdefault(tuple(columns), []).append((*columns.values(), number))
    db.executemany(
        f"INSERT INTO agent_times (id, {', '.join(TIME_COLUMNS)}) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in TIME_COLUMNS),
        times,
    )
    for names, rows in statements.items():
        assignments = ", ".join(f"{name} = ?" for name in names)  # our column names
        db.executemany(f"UPDATE agents SET {assignments} WHERE id = ?", rows)
    return AgentInfoResult(applied, stale, unknown)


def clip(text: str) -> str:
    """Bound a reported text field."""
    return text[:TEXT_LIMIT]


def report_columns(report: AgentInfoReport) -> dict[str, Any]:
    """The columns one agent-info report sets, bounded and checked (a keep-alive refresh
    sets only the status, node, times and sequence)."""
    status = report.connection_status
    if status not in CONNECTION_STATUSES:
        raise InvalidValue("connection status", status, f"not one of {CONNECTION_STATUSES}")
    columns: dict[str, Any] = {
        "connection_status": status,
        "node_name": clip(report.node_name),
        "last_keepalive": report.last_keepalive,
        "disconnection_time": report.disconnection_time,
        "status_time": report.status_time,
        "status_seq": report.status_seq,
    }
    if report.refresh_only:
        return columns
    labels = json.dumps(dict(report.labels), separators=(",", ":")) if report.labels else "{}"
    if len(labels) > 16 * TEXT_LIMIT:
        raise InvalidValue("labels", labels[:64], "too large")
    columns.update(
        version=clip(report.version),
        os_name=clip(report.os_name),
        os_version=clip(report.os_version),
        os_platform=clip(report.os_platform),
        os_arch=clip(report.os_arch),
        os_uname=clip(report.os_uname),
        labels=labels,
        config_sum=clip(report.config_sum),
        merged_sum=clip(report.merged_sum),
        os_major=clip(report.os_major),
        os_minor=clip(report.os_minor),
        os_build=clip(report.os_build),
        os_codename=clip(report.os_codename),
        agent_ip=reported_ip(report.agent_ip),
    )
    return columns


def reported_ip(text: str) -> str:
    """The agent's reported IP when it is one address ("" otherwise: never shown)."""
    if not text or len(text) > MAX_IP_TEXT:
        return ""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return ""
    return text

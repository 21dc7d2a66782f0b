"""The agent-info rows a node reports to the master, on the wire: JSON lines, validated.

Rows travel worker → master in a stream (they can be many: 50,000 agents after a worker
restart). The master builds registry reports from them, always naming the node that sent
them itself: a worker cannot report on behalf of another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

from wazuhcluster.agents.control import label_pairs
from wazuhcluster.agents.sessions import AgentInfoRow, AgentRow
from wazuhcluster.registry.model import AgentInfoReport

#: Most rows one report may carry.
MAX_ROWS = 500_000
#: Longest accepted line (a row with long labels and a uname stays far below).
MAX_LINE = 16_384
_ID = re.compile(r"\d{3,8}")
_TEXT_FIELDS = (
    "version",
    "os_name",
    "os_version",
    "os_major",
    "os_minor",
    "os_build",
    "os_codename",
    "os_platform",
    "os_arch",
    "os_uname",
    "config_sum",
    "merged_sum",
    "agent_ip",
)
_STATUSES = {"never_connected", "pending", "active", "disconnected"}
#: One encoder for every row: ``json.dumps`` with custom separators builds a new encoder per
#: call, which cost more than the encoding itself at 5,000 rows per report.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()
#: A refresh row, with its values already in JSON: the keys and their order are those of
#: the encoder's output for the same row.
_REFRESH_LINE = (
    '{"id":%s,"status":%s,"last_keepalive":%s,"disconnection_time":%s,"time":%s,"seq":%s,'
    '"refresh":true}'
)


class InfoError(ValueError):
    """A malformed agent-info report; the message says which line and why."""


def encode_rows(rows: Iterable[AgentRow]) -> bytes:
    """One JSON object per row, newline-terminated. A row whose agent only sent a keep-alive
    since the previous report carries the status and times alone (``"refresh": true``).

    Refresh rows, nearly all of a report, are written with one format string instead of a
    dict and the encoder each: the same text the encoder gives, at a fraction of the cost.
    """
    lines: list[str] = []
    append = lines.append
    number = _json_number
    for row in rows:
        if isinstance(row, AgentInfoRow):
            append(_full_line(row))
            continue
        last = row.last_keepalive
        last_json = number(last)
        gone = row.disconnection_time
        at = row.timestamp
        append(
            _REFRESH_LINE
            % (
                # The C string encoder the JSON encoder itself uses; a StrEnum status is
                # its value's text.
                encode_basestring_ascii(row.agent_id),
                encode_basestring_ascii(row.status),
                last_json,
                "null" if gone is None else number(gone),
                # A keep-alive sets both times to the same float: format it once.
                last_json if at is last else number(at),
                number(row.seq),
            )
        )
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _json_number(value: float | int | None) -> str:
    """``value`` as the encoder writes it: ``float.__repr__`` for a finite float (the
    encoder's own choice), ``int.__repr__`` for an int, null for None; anything else (NaN,
    infinities, subclasses) goes to the encoder itself."""
    if value is None:
        return "null"
    cls = value.__class__
    if cls is float and value - value == 0.0:
        return float.__repr__(value)
    if cls is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


def _full_line(row: AgentInfoRow) -> str:
    fields: dict[str, Any] = {
        "id": row.agent_id,
        "status": str(row.status),
        "last_keepalive": row.last_keepalive,
        "disconnection_time": row.disconnection_time,
        "time": row.timestamp,
        "seq": row.seq,
        "version": row.version,
        "os_name": row.os_name,
        "os_version": row.os_version,
        "os_major": row.os_major,
        "os_minor": row.os_minor,
        "os_build": row.os_build,
        "os_codename": row.os_codename,
        "os_platform": row.os_platform,
        "os_arch": row.os_arch,
        "os_uname": row.os_uname,
        "labels": list(row.labels),
        "config_sum": row.config_sum,
        "merged_sum": row.merged_sum,
        "agent_ip": row.agent_ip,
    }
    return _ENCODER.encode(fields)


def _labels(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or len(value) > 256:
        raise ValueError("labels must be a list of at most 256 strings")
    for label in value:
        if not isinstance(label, str) or len(label) > 1024:
            raise ValueError("each label must be a string of at most 1024 characters")
    return label_pairs(value)


def _number(value: Any, name: str, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


def _report(obj: Any, node_name: str) -> AgentInfoReport:
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    agent_id = obj.get("id")
    if not isinstance(agent_id, str) or not _ID.fullmatch(agent_id):
        raise ValueError("bad agent id")
    status = obj.get("status")
    if status not in _STATUSES:
        raise ValueError(f"unknown status {status!r}")
    seq = obj.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("seq must be a non-negative integer")
    refresh = obj.get("refresh", False)
    if not isinstance(refresh, bool):
        raise ValueError("refresh must be a boolean")
    common: dict[str, Any] = {
        "agent_id": agent_id,
        "node_name": node_name,
        "status_time": _number(obj.get("time"), "time", optional=False) or 0.0,
        "status_seq": seq,
        "connection_status": status,
        "last_keepalive": _number(obj.get("last_keepalive"), "last_keepalive"),
        "disconnection_time": _number(obj.get("disconnection_time"), "disconnection_time") or 0.0,
    }
    if refresh:
        return AgentInfoReport(**common, refresh_only=True)
    texts: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        value = obj.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 1024):
            raise ValueError(f"{name} must be a string of at most 1024 characters")
        texts[name] = value or ""
    return AgentInfoReport(**common, labels=_labels(obj.get("labels", [])), **texts)


def decode_reports(data: bytes, node_name: str, max_rows: int = MAX_ROWS) -> list[AgentInfoReport]:
    """Parse a report sent by ``node_name``; any bad line rejects the whole report.

    Each line must hold exactly one JSON object (no surrounding whitespace, as
    :func:`encode_rows` writes them). The text is decoded once and each line parsed with a
    shared decoder: ``json.loads`` per line cost twice as much at 5,000 rows.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InfoError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    reports: list[AgentInfoReport] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        if len(line) > MAX_LINE:
            raise InfoError(f"line {number}: longer than {MAX_LINE} characters")
        if len(reports) >= max_rows:
            raise InfoError(f"more than {max_rows} rows")
        try:
            value, end = _DECODER.raw_decode(line)
            if end != len(line):
                raise ValueError("more than one JSON value")
            reports.append(_report(value, node_name))
        except (ValueError, TypeError) as error:
            raise InfoError(f"line {number}: {error}") from None
    return reports

"""Synchronous reads of a test etcd for the failover tests: keys (optionally at a past
revision) through etcd's JSON gateway, and who held the leader key when a write was made.

Every durable write of a master is a fenced transaction: it applies only while the leader
key's create revision (the term) is the writer's. So the record written at revision ``R``
was written by whoever held the leader key at ``R - 1``: :func:`writer_of` reads that from
etcd's history (the test etcd never compacts it).
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

from attrs import frozen

from wazuhcluster.failover.election import parse_leader_value

#: The prefix of the test clusters' keys (cluster name "wazuh").
PREFIX = "/wazuhcluster/wazuh/"
LEADER = PREFIX + "leader"
AGENTS = PREFIX + "agents/"


@frozen
class Kv:
    """One key as etcd returns it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: str) -> bytes:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


def read_range(
    endpoint: str, key: str, prefix: bool = False, revision: int = 0
) -> tuple[int, list[Kv]]:
    """The header revision and the keys at ``key`` (every key under it with ``prefix``), at
    ``revision`` (0: now)."""
    body: dict[str, Any] = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(_prefix_end(key))
    if revision:
        body["revision"] = revision
    request = urllib.request.Request(
        endpoint + "/v3/kv/range",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        reply = json.loads(answer.read(64 * 1024 * 1024))
    found = [
        Kv(
            base64.b64decode(kv["key"]).decode(),
            base64.b64decode(kv.get("value", "")),
            int(kv.get("create_revision", 0)),
            int(kv.get("mod_revision", 0)),
        )
        for kv in reply.get("kvs", [])
    ]
    return int(reply["header"]["revision"]), found


def agent_records(endpoint: str) -> dict[str, tuple[dict[str, Any], int]]:
    """Agent name → (its durable record, the revision that last wrote it)."""
    _revision, found = read_range(endpoint, AGENTS, prefix=True)
    records = {}
    for kv in found:
        record = json.loads(kv.value)
        records[record["name"]] = (record, kv.mod_revision)
    return records


def leader_at(endpoint: str, revision: int) -> tuple[str, int] | None:
    """(leader's node name, term) holding the leader key at ``revision``, or None."""
    _now, found = read_range(endpoint, LEADER, revision=revision)
    if not found:
        return None
    name, _address = parse_leader_value(found[0].value)
    return name, found[0].create_revision


def writer_of(endpoint: str, mod_revision: int) -> tuple[str, int] | None:
    """(master, term) whose fenced transaction wrote at ``mod_revision`` (None: no leader
    held the key just before, which a fenced write cannot do)."""
    return leader_at(endpoint, mod_revision - 1)


def raft_status(endpoint: str) -> tuple[str, str]:
    """(this member's id, the raft leader's id) as ``endpoint`` reports them."""
    request = urllib.request.Request(
        endpoint + "/v3/maintenance/status",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        reply = json.loads(answer.read(1024 * 1024))
    return str(reply["header"]["member_id"]), str(reply["leader"])

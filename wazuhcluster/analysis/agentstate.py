"""What the queue decoders remember about each agent (Wazuh keeps it in wazuh-db).

The decoders of :mod:`~wazuhcluster.analysis.queues` ask an :class:`AgentState` the few
questions Wazuh's analysisd asks wazuh-db: the stored FIM entry of a path (the older FIM text
format alerts only on a change), the stored result of an SCA check (a check alerts only when
its result changed), the stored hash of an SCA scan, whether a rootcheck finding is new, and
the open ports last seen for a host. They also tell it what to store (FIM entries, inventory
rows, scan summaries).

:class:`MemoryState` answers from memory, bounded per agent: what an engine uses by default,
and what tests use. :class:`~wazuhcluster.analysis.state_store.SqliteState` keeps the same
in one SQLite database per agent; the analysis thread (or process) calls either synchronously,
never the reactor, and calls :meth:`AgentState.flush` after each batch.

Some messages want an answer to the agent (the result of an integrity check, a request to
resend SCA results): the decoders :meth:`~AgentState.send` them and the caller of the engine
takes them with :meth:`~AgentState.take_replies` and hands them to the agent channel.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

#: Entries kept per agent and kind by :class:`MemoryState` (the oldest go first).
MAX_ENTRIES = 100_000
#: Agents kept by :class:`MemoryState` (the least recently used go first).
MAX_AGENTS = 10_000
#: Replies held for the caller before the oldest are dropped.
MAX_REPLIES = 10_000

#: Integrity answers (the agent resends rows, or splits the range further).
CHECKSUM_FAIL = "checksum_fail"
NO_DATA = "no_data"


class AgentState(Protocol):
    """The per-agent memory of the queue decoders."""

    def fim_get(self, agent_id: str, key: str) -> dict[str, Any] | None:
        """The stored attributes of a FIM entry (a path, or a registry index), or None."""

    def fim_save(self, agent_id: str, key: str, entry: dict[str, Any]) -> None:
        """Store a FIM entry (``data`` of the event without its per-event members)."""

    def fim_delete(self, agent_id: str, key: str) -> None:
        """Forget a FIM entry."""

    def fim_scan(self, agent_id: str, event: str, timestamp: float) -> None:
        """Record a FIM scan mark (``start_scan``, ``end_scan``, ``first_start``...)."""

    def sca_result(self, agent_id: str, check_id: str) -> str | None:
        """The stored result of an SCA check (``passed``, ``failed``, ``not applicable``)."""

    def sca_save_check(
        self, agent_id: str, check_id: str, result: str, event: dict[str, Any]
    ) -> None:
        """Store an SCA check event and its (possibly new) result."""

    def sca_scan_hash(self, agent_id: str, policy_id: str) -> str | None:
        """The results hash of the last stored scan of a policy."""

    def sca_save_scan(self, agent_id: str, policy_id: str, summary: dict[str, Any]) -> bool:
        """Store a scan summary; True when the policy's file changed since the stored one
        (``hash_file``): its stored checks are then dropped."""

    def sca_keep_policies(self, agent_id: str, policy_ids: list[str]) -> None:
        """Forget every policy (and its checks) not in ``policy_ids``."""

    def rootcheck_seen(self, agent_id: str, text: str, timestamp: float) -> bool:
        """Record a rootcheck finding; True when it was never seen before."""

    def inventory_apply(
        self, agent_id: str, table: str, operation: str, row: dict[str, Any]
    ) -> None:
        """Apply one syscollector delta (``INSERTED``, ``MODIFIED`` or ``DELETED``)."""

    def dbsync(self, agent_id: str, component: str, kind: str, data: dict[str, Any]) -> str | None:
        """Take one state-synchronisation message (``state``, ``integrity_*``); the answer
        the agent expects (``checksum_fail``, ``no_data``), None when none is due."""

    def sca_results_hash(self, agent_id: str, policy_id: str) -> str | None:
        """SHA-256 of the stored results of a policy's checks (``:``-joined in check id
        order, ``not applicable`` as empty), None when no check is stored."""

    def sca_dump_end(self, agent_id: str, policy_id: str, scan_id: int) -> None:
        """A resend ended: forget the policy's checks that it did not refresh."""

    def send(self, agent_id: str, message: str) -> None:
        """Queue a message for the agent (``#!-...``)."""

    def take_replies(self) -> list[tuple[str, str]]:
        """The (agent id, message) pairs queued since the last call."""

    def flush(self) -> None:
        """Make what was stored so far durable (after each batch)."""

    def close(self) -> None:
        """Flush and release the store."""

    def host_ports(self, ip: str, ports: str) -> str | None:
        """Record the open ports of ``ip``; the previous ports, ``""`` when new, None when
        unchanged."""


def range_checksum(checksums: Iterable[str]) -> str:
    """The manager's checksum of a range: SHA-1 over the rows' checksums in index order."""
    digest = hashlib.sha1()  # noqa: S324 - the agent's own choice, not for security
    for checksum in checksums:
        digest.update(checksum.encode("utf-8"))
    return digest.hexdigest()


def results_hash(results: Iterable[str]) -> str:
    """SCA's results hash: SHA-256 of the results joined by ``:``."""
    texts = ["" if result == "not applicable" else result for result in results]
    return hashlib.sha256(":".join(texts).encode("utf-8")).hexdigest()


def integrity_answer(
    kind: str, data: dict[str, Any], keys: list[str], checksums: dict[str, str]
) -> tuple[str | None, list[str]]:
    """Judge an ``integrity_check_*`` message against the stored rows of a component.

    ``keys`` are the stored indexes (sorted), ``checksums`` their checksums. Answers the
    reply due (None on a match) and the keys to delete: rows outside the agent's whole
    range (``global``), or in the gap between the two halves (``left``, up to ``tail``).
    """
    begin = data.get("begin")
    end = data.get("end")
    if not isinstance(begin, str) or not isinstance(end, str):
        return None, []
    doomed: list[str] = []
    if kind == "integrity_check_global":
        doomed = [key for key in keys if key < begin or key > end]
    elif kind == "integrity_check_left":
        tail = data.get("tail")
        if isinstance(tail, str):
            doomed = [key for key in keys if end < key < tail]
    in_range = [key for key in keys if begin <= key <= end]
    if begin == end and len(in_range) > 1:
        doomed.extend(in_range)
        in_range = []
    usable = [checksums[key] for key in in_range if checksums[key] not in ("", "legacy")]
    if not usable:
        return NO_DATA, doomed
    if range_checksum(usable) != data.get("checksum"):
        return CHECKSUM_FAIL, doomed
    return None, doomed


def reply_text(component: str, answer: str, data: dict[str, Any]) -> str:
    """The message an integrity answer travels as: ``#!-<component> dbsync <answer> {...}``."""
    shown = {key: value for key, value in data.items() if key not in ("tail", "checksum")}
    return f"#!-{component} dbsync {answer} " + json.dumps(shown, separators=(",", ":"))


class Outbox:
    """The replies due to agents, for the engine's caller to take."""

    def __init__(self) -> None:
        self.replies: list[tuple[str, str]] = []

    def send(self, agent_id: str, message: str) -> None:
        """Queue a message for the agent (the oldest go when too many wait)."""
        if len(self.replies) >= MAX_REPLIES:
            del self.replies[0]
        self.replies.append((agent_id, message))

    def take_replies(self) -> list[tuple[str, str]]:
        """The replies queued since the last call."""
        replies, self.replies = self.replies, []
        return replies


def _bounded(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


class MemoryState(Outbox):
    """An :class:`AgentState` in memory: lost on restart, bounded per agent."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_agents: int = MAX_AGENTS) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.max_agents = max_agents
        self.agents: OrderedDict[str, dict[str, OrderedDict[str, Any]]] = OrderedDict()
        self.hosts: OrderedDict[str, str] = OrderedDict()

    def _table(self, agent_id: str, kind: str) -> OrderedDict[str, Any]:
        tables = self.agents.get(agent_id)
        if tables is None:
            tables = self.agents[agent_id] = {}
            while len(self.agents) > self.max_agents:
                self.agents.popitem(last=False)
        else:
            self.agents.move_to_end(agent_id)
        table = tables.get(kind)
        if table is None:
            table = tables[kind] = OrderedDict()
        return table

    def fim_get(self, agent_id: str, key: str) -> dict[str, Any] | None:
        """The stored attributes of a FIM entry, or None."""
        found: dict[str, Any] | None = self._table(agent_id, "fim").get(key)
        return found

    def fim_save(self, agent_id: str, key: str, entry: dict[str, Any]) -> None:
        """Store a FIM entry."""
        _bounded(self._table(agent_id, "fim"), key, entry, self.max_entries)

    def fim_delete(self, agent_id: str, key: str) -> None:
        """Forget a FIM entry."""
        self._table(agent_id, "fim").pop(key, None)

    def fim_scan(self, agent_id: str, event: str, timestamp: float) -> None:
        """Record a FIM scan mark."""
        _bounded(self._table(agent_id, "fim_scan"), event, timestamp, 16)

    def sca_result(self, agent_id: str, check_id: str) -> str | None:
        """The stored result of an SCA check."""
        found = self._table(agent_id, "sca_check").get(check_id)
        return None if found is None else str(found[0])

    def sca_save_check(
        self, agent_id: str, check_id: str, result: str, event: dict[str, Any]
    ) -> None:
        """Store an SCA check event and its result."""
        _bounded(self._table(agent_id, "sca_check"), check_id, (result, event), self.max_entries)

    def sca_scan_hash(self, agent_id: str, policy_id: str) -> str | None:
        """The results hash of the last stored scan of a policy."""
        found = self._table(agent_id, "sca_scan").get(policy_id)
        return None if found is None else str(found.get("hash") or "")

    def sca_save_scan(self, agent_id: str, policy_id: str, summary: dict[str, Any]) -> bool:
        """Store a scan summary; a changed policy file drops the policy's checks (True)."""
        scans = self._table(agent_id, "sca_scan")
        before = scans.get(policy_id)
        old_file = before.get("hash_file") if isinstance(before, dict) else None
        new_file = summary.get("hash_file")
        changed = isinstance(old_file, str) and isinstance(new_file, str) and old_file != new_file
        if changed:
            checks = self._table(agent_id, "sca_check")
            for check_id in [
                c for c, (_, event) in checks.items() if event.get("policy_id") == policy_id
            ]:
                del checks[check_id]
        _bounded(scans, policy_id, summary, 1024)
        return changed

    def sca_keep_policies(self, agent_id: str, policy_ids: list[str]) -> None:
        """Forget every policy (and its checks) not in ``policy_ids``."""
        keep = set(policy_ids)
        scans = self._table(agent_id, "sca_scan")
        for policy in [p for p in scans if p not in keep]:
            del scans[policy]
        checks = self._table(agent_id, "sca_check")
        for check_id in [
            c for c, (_, event) in checks.items() if event.get("policy_id") not in keep
        ]:
            del checks[check_id]

    def rootcheck_seen(self, agent_id: str, text: str, timestamp: float) -> bool:
        """Record a rootcheck finding; True when new."""
        table = self._table(agent_id, "rootcheck")
        found = table.get(text)
        first = found[0] if found is not None else timestamp
        _bounded(table, text, (first, timestamp), self.max_entries)
        return found is None

    def inventory_apply(
        self, agent_id: str, table: str, operation: str, row: dict[str, Any]
    ) -> None:
        """Apply one syscollector delta, keyed by its ``item_id`` (or its whole row)."""
        rows = self._table(agent_id, "inventory:" + table)
        key = str(row.get("item_id") or sorted(row.items()))
        if operation == "DELETED":
            rows.pop(key, None)
        else:
            _bounded(rows, key, row, self.max_entries)

    def dbsync(self, agent_id: str, component: str, kind: str, data: dict[str, Any]) -> str | None:
        """Keep ``state`` rows of a component; ``integrity_clear`` empties it; an integrity
        check is judged against the rows kept."""
        rows = self._table(agent_id, "dbsync:" + component)
        if kind == "state" and data.get("index") is not None:
            _bounded(rows, str(data["index"]), data.get("attributes"), self.max_entries)
        elif kind == "integrity_clear":
            rows.clear()
        elif kind.startswith("integrity_check_"):
            keys = sorted(rows)
            checksums = {
                key: str(row.get("checksum") or "") if isinstance(row, dict) else ""
                for key, row in rows.items()
            }
            answer, doomed = integrity_answer(kind, data, keys, checksums)
            for key in doomed:
                rows.pop(key, None)
            return answer
        return None

    def sca_results_hash(self, agent_id: str, policy_id: str) -> str | None:
        """SHA-256 of the stored results of a policy's checks, None when none is stored."""
        checks = self._table(agent_id, "sca_check")
        found = sorted(
            (int(check_id), result)
            for check_id, (result, event) in checks.items()
            if event.get("policy_id") == policy_id and check_id.isdigit()
        )
        if not found:
            return None
        return results_hash(result for _, result in found)

    def sca_dump_end(self, agent_id: str, policy_id: str, scan_id: int) -> None:
        """Forget the policy's checks that the resend did not refresh."""
        checks = self._table(agent_id, "sca_check")
        for check_id in [
            c
            for c, (_, event) in checks.items()
            if event.get("policy_id") == policy_id and event.get("id") != scan_id
        ]:
            del checks[check_id]

    def flush(self) -> None:
        """Nothing to make durable."""

    def close(self) -> None:
        """Nothing to release."""

    def host_ports(self, ip: str, ports: str) -> str | None:
        """Record the open ports of ``ip``; the previous ones, ``""`` when new, None when
        unchanged."""
        previous = self.hosts.get(ip)
        if previous == ports:
            return None
        _bounded(self.hosts, ip, ports, self.max_entries)
        return "" if previous is None else previous

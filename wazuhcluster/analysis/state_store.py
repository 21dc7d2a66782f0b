"""What the queue decoders remember per agent, in one SQLite database per agent.

``<directory>/<agent id>.db`` (a node uses ``HOME/var/db/agents``), like Wazuh's per-agent
databases, with our own schema (:mod:`~wazuhcluster.analysis.state_schema`) in WAL mode.
One file per agent because an agent's events are analysed by exactly one thread or process
at a time (the pool sends each agent to one lane), so every file has a single writer and
the processes never wait for each other's locks; readers (the API, through the cluster
link) open the file read-only beside it. Hostinfo's open ports are one list for every agent,
as in Wazuh: ``hostinfo.db`` in the same directory, written at once (rare, and shared by the
processes, so never held across a batch).

Writes go into one open transaction per agent, committed by :meth:`SqliteState.flush`
(after a batch: every batch on the analysis thread, at most every half second in an analysis
process) or when the connection is closed: a flush costs one commit per agent written
since. At most :data:`MAX_OPEN` databases stay open (the least recently used is committed
and closed first). Everything here is synchronous and must run off the reactor.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time as time_module
from collections import OrderedDict
from pathlib import Path
from typing import Any

from wazuhcluster.analysis.agentstate import Outbox, integrity_answer, results_hash
from wazuhcluster.analysis.state_schema import migrate

#: Agent databases kept open at once.
MAX_OPEN = 256
#: How long a write to the shared hostinfo database waits for another process (seconds).
BUSY_TIMEOUT = 5.0
#: Agent ids as file names (Wazuh's ids are digits; ``000`` is the manager).
_AGENT_ID = re.compile(r"[0-9]{1,8}")

# dbsync component → the FIM entry types it covers (None: an inventory table)
_FIM_COMPONENTS: dict[str, tuple[str, ...]] = {
    "fim_file": ("file",),
    "syscheck": ("file",),
    "fim_registry_key": ("registry_key",),
    "fim_registry_value": ("registry_value",),
    "fim_registry": ("registry", "registry_key", "registry_value"),
}
#: The column that identifies a row of each inventory table (else ``item_id``).
INVENTORY_INDEX = {
    "osinfo": "os_name",
    "hwinfo": "board_serial",
    "hotfixes": "hotfix",
    "processes": "pid",
    "users": "user_name",
    "groups": "group_name",
}
_PCI = re.compile(r"\{PCI_DSS: ([^}]*)\}")
_CIS = re.compile(r"\{CIS: ([^}]*)\}")


def agent_db_path(directory: Path, agent_id: str) -> Path | None:
    """The database file of ``agent_id`` in ``directory`` (None for an id that is not one)."""
    if _AGENT_ID.fullmatch(agent_id) is None:
        return None
    return directory / f"{agent_id}.db"


#: The tables that hold what an agent told this node (everything but ``meta``).
STATE_TABLES = (
    "fim_entry",
    "scan_info",
    "sync_info",
    "pm_event",
    "sca_policy",
    "sca_scan",
    "sca_check",
    "inventory",
)


def forget_agents(directory: Path, agent_ids: list[str]) -> int:
    """Empty the databases of agents that report to another node now, beside their
    writer (it may still have the file open: rows are deleted, the file stays); the number
    of databases emptied. Blocking: run it in a thread."""
    emptied = 0
    for agent_id in agent_ids:
        path = agent_db_path(directory, agent_id)
        if path is None or not path.exists():
            continue
        connection = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT)
        try:
            connection.execute("BEGIN IMMEDIATE")
            for table in STATE_TABLES:
                connection.execute(f"DELETE FROM {table}")  # noqa: S608 - our own names
            connection.execute("COMMIT")
            emptied += 1
        except sqlite3.Error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        finally:
            connection.close()
    return emptied


#: What ``DELETE /syscheck/{agent_id}`` and ``DELETE /rootcheck/{agent_id}`` empty.
CLEARED_TABLES: dict[str, tuple[str, ...]] = {
    "syscheck": ("fim_entry", "scan_info"),
    "rootcheck": ("pm_event",),
}


def clear_agent_state(directory: Path, agent_id: str, kind: str) -> bool:
    """Empty one kind of an agent's stored state (``syscheck`` or ``rootcheck``) beside its
    writer, as :func:`forget_agents` does; False when there was no database. Blocking."""
    tables = CLEARED_TABLES[kind]
    path = agent_db_path(directory, agent_id)
    if path is None or not path.exists():
        return False
    connection = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT)
    try:
        connection.execute("BEGIN IMMEDIATE")
        for table in tables:
            connection.execute(f"DELETE FROM {table}")  # noqa: S608 - our own names
        connection.execute("COMMIT")
        return True
    except sqlite3.Error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()


def inventory_key(table: str, row: dict[str, Any]) -> str:
    """The index of an inventory row, as the agent's synchronisation names it."""
    column = INVENTORY_INDEX.get(table, "item_id")
    value = row.get(column)
    if value is None or value == "":
        value = row.get("item_id")
    if value is None or value == "":
        return json.dumps(row, sort_keys=True, separators=(",", ":"))
    return str(value)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _open(path: Path, schema: bool = True) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    if schema:
        migrate(connection)
    return connection


class SqliteState(Outbox):
    """An :class:`~wazuhcluster.analysis.agentstate.AgentState` on SQLite files."""

    def __init__(self, directory: Path | str, max_open: int = MAX_OPEN) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.max_open = max_open
        self._open: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        self._dirty: set[str] = set()
        self._hosts: sqlite3.Connection | None = None

    # ---- connections ---------------------------------------------------------------------
    def _db(self, agent_id: str) -> sqlite3.Connection:
        """The agent's database, inside its open transaction."""
        connection = self._open.get(agent_id)
        if connection is None:
            path = agent_db_path(self.directory, agent_id)
            if path is None:
                raise ValueError(f"not an agent id: {agent_id[:16]!r}")
            connection = _open(path)
            self._open[agent_id] = connection
            while len(self._open) > self.max_open:
                old_id, old = self._open.popitem(last=False)
                self._commit(old_id, old)
                old.close()
        else:
            self._open.move_to_end(agent_id)
        if agent_id not in self._dirty:
            # IMMEDIATE: the write lock from the start. A transaction stays open for up to
            # half a second in an analysis process; one that began with a read could not
            # write any more once another writer (the API clearing a kind of state, a
            # node forgetting the agent) committed meanwhile. That writer waits instead.
            connection.execute("BEGIN IMMEDIATE")
            self._dirty.add(agent_id)
        return connection

    def _commit(self, agent_id: str, connection: sqlite3.Connection) -> None:
        if agent_id in self._dirty:
            self._dirty.discard(agent_id)
            connection.execute("COMMIT")

    def flush(self) -> None:
        """Commit every agent's open transaction."""
        for agent_id in list(self._dirty):
            connection = self._open.get(agent_id)
            if connection is None:
                self._dirty.discard(agent_id)
                continue
            self._commit(agent_id, connection)

    def close(self) -> None:
        """Commit and close every database."""
        self.flush()
        for connection in self._open.values():
            connection.close()
        self._open.clear()
        if self._hosts is not None:
            self._hosts.close()
            self._hosts = None

    def forget_agent(self, agent_id: str) -> None:
        """Delete everything stored about an agent (it left this node, or was removed)."""
        connection = self._open.pop(agent_id, None)
        self._dirty.discard(agent_id)
        if connection is not None:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.close()
        path = agent_db_path(self.directory, agent_id)
        if path is None:
            return
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    # ---- FIM -------------------------------------------------------------------------------
    def fim_get(self, agent_id: str, key: str) -> dict[str, Any] | None:
        """The stored entry of a path (or registry index), or None."""
        row = (
            self._db(agent_id)
            .execute("SELECT data FROM fim_entry WHERE full_path = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None
        found: dict[str, Any] = json.loads(row[0])
        return found

    def fim_save(self, agent_id: str, key: str, entry: dict[str, Any]) -> None:
        """Store an entry; a stored one counts one more change."""
        self._save_fim(self._db(agent_id), key, entry, entry.get("timestamp"))

    def _save_fim(
        self, connection: sqlite3.Connection, key: str, entry: dict[str, Any], stamp: Any
    ) -> None:
        attributes = entry.get("attributes")
        if not isinstance(attributes, dict):
            attributes = {}
        kind = str(attributes.get("type") or "file")
        path = entry.get("path")
        date = float(stamp) if isinstance(stamp, (int, float)) else time_module.time()
        value_type = attributes.get("value_type")
        connection.execute(
            """INSERT INTO fim_entry (full_path, type, path, date, changes, checksum, arch,
                value_name, value_type, size, perm, uid, gid, md5, sha1, sha256, uname,
                gname, mtime, inode, attributes, symbolic_path, data)
            VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (full_path) DO UPDATE SET type = excluded.type, path = excluded.path,
                date = excluded.date, changes = changes + 1, checksum = excluded.checksum,
                arch = excluded.arch, value_name = excluded.value_name,
                value_type = excluded.value_type, size = excluded.size, perm = excluded.perm,
                uid = excluded.uid, gid = excluded.gid, md5 = excluded.md5,
                sha1 = excluded.sha1, sha256 = excluded.sha256, uname = excluded.uname,
                gname = excluded.gname, mtime = excluded.mtime, inode = excluded.inode,
                attributes = excluded.attributes, symbolic_path = excluded.symbolic_path,
                data = excluded.data""",
            (
                key,
                kind,
                str(path) if isinstance(path, str) else key,
                date,
                str(attributes.get("checksum") or ""),
                _text_or_none(entry.get("arch")),
                _text_or_none(entry.get("value_name")),
                _text_or_none(value_type),
                _int_or_none(attributes.get("size")),
                _text_or_none(attributes.get("perm")),
                _text_or_none(attributes.get("uid")),
                _text_or_none(attributes.get("gid")),
                _text_or_none(attributes.get("hash_md5")),
                _text_or_none(attributes.get("hash_sha1")),
                _text_or_none(attributes.get("hash_sha256")),
                _text_or_none(attributes.get("user_name")),
                _text_or_none(attributes.get("group_name")),
                _int_or_none(attributes.get("mtime")),
                _int_or_none(attributes.get("inode")),
                _text_or_none(attributes.get("attributes")),
                _text_or_none(attributes.get("symlink_path")),
                json.dumps(entry, separators=(",", ":")),
            ),
        )

    def fim_delete(self, agent_id: str, key: str) -> None:
        """Forget an entry."""
        self._db(agent_id).execute("DELETE FROM fim_entry WHERE full_path = ?", (key,))

    def fim_scan(self, agent_id: str, event: str, timestamp: float) -> None:
        """Record a scan mark (``start_scan``, ``end_scan``, ``first_start``...)."""
        self._db(agent_id).execute(
            "INSERT OR REPLACE INTO scan_info (event, time) VALUES (?, ?)", (event, timestamp)
        )

    # ---- SCA -------------------------------------------------------------------------------
    def sca_result(self, agent_id: str, check_id: str) -> str | None:
        """The stored result of a check."""
        if not check_id.isdigit():
            return None
        row = (
            self._db(agent_id)
            .execute("SELECT result FROM sca_check WHERE id = ?", (int(check_id),))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def sca_save_check(
        self, agent_id: str, check_id: str, result: str, event: dict[str, Any]
    ) -> None:
        """Store a check event and its result."""
        if not check_id.isdigit():
            return
        scan_id = event.get("id")
        self._db(agent_id).execute(
            "INSERT OR REPLACE INTO sca_check (id, policy_id, scan_id, result, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                int(check_id),
                str(event.get("policy_id") or ""),
                scan_id if isinstance(scan_id, int) else None,
                result,
                json.dumps(event, separators=(",", ":")),
            ),
        )

    def sca_scan_hash(self, agent_id: str, policy_id: str) -> str | None:
        """The results hash of the last stored scan of a policy."""
        row = (
            self._db(agent_id)
            .execute("SELECT hash FROM sca_scan WHERE policy_id = ?", (policy_id,))
            .fetchone()
        )
        return None if row is None else str(row[0] or "")

    def sca_save_scan(self, agent_id: str, policy_id: str, summary: dict[str, Any]) -> bool:
        """Store a scan summary and its policy; a policy file that changed drops the
        policy's stored checks (the agent will be asked to resend them)."""
        connection = self._db(agent_id)
        hash_file = _text_or_none(summary.get("hash_file"))
        stored = connection.execute(
            "SELECT hash_file FROM sca_policy WHERE id = ?", (policy_id,)
        ).fetchone()
        changed = stored is not None and hash_file is not None and stored[0] != hash_file
        if changed:
            connection.execute("DELETE FROM sca_check WHERE policy_id = ?", (policy_id,))
        connection.execute(
            "INSERT OR REPLACE INTO sca_policy (id, name, file, description, refs, hash_file) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                policy_id,
                _text_or_none(summary.get("name")),
                _text_or_none(summary.get("file")),
                _text_or_none(summary.get("description")),
                _text_or_none(summary.get("references")),
                hash_file,
            ),
        )
        score = summary.get("score")
        connection.execute(
            "INSERT OR REPLACE INTO sca_scan (policy_id, scan_id, start_scan, end_scan, pass, "
            "fail, invalid, total_checks, score, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                policy_id,
                _int_or_none(summary.get("scan_id")),
                _int_or_none(summary.get("start_time")),
                _int_or_none(summary.get("end_time")),
                _int_or_none(summary.get("passed")),
                _int_or_none(summary.get("failed")),
                _int_or_none(summary.get("invalid")),
                _int_or_none(summary.get("total_checks")),
                int(score) if isinstance(score, (int, float)) else None,
                _text_or_none(summary.get("hash")),
            ),
        )
        return changed

    def sca_keep_policies(self, agent_id: str, policy_ids: list[str]) -> None:
        """Forget every policy (and its checks and scan) not in ``policy_ids``."""
        connection = self._db(agent_id)
        marks = ",".join("?" for _ in policy_ids) or "''"
        for table, column in (
            ("sca_policy", "id"),
            ("sca_scan", "policy_id"),
            ("sca_check", "policy_id"),
        ):
            connection.execute(
                f"DELETE FROM {table} WHERE {column} NOT IN ({marks})",  # noqa: S608 - ours
                policy_ids,
            )

    def sca_results_hash(self, agent_id: str, policy_id: str) -> str | None:
        """SHA-256 of the stored results of a policy's checks, None when none is stored."""
        rows = (
            self._db(agent_id)
            .execute("SELECT result FROM sca_check WHERE policy_id = ? ORDER BY id", (policy_id,))
            .fetchall()
        )
        if not rows:
            return None
        return results_hash(str(row[0]) for row in rows)

    def sca_dump_end(self, agent_id: str, policy_id: str, scan_id: int) -> None:
        """Forget the policy's checks that the resend did not refresh."""
        self._db(agent_id).execute(
            "DELETE FROM sca_check WHERE policy_id = ? AND (scan_id IS NULL OR scan_id != ?)",
            (policy_id, scan_id),
        )

    # ---- rootcheck ----------------------------------------------------------------------
    def rootcheck_seen(self, agent_id: str, text: str, timestamp: float) -> bool:
        """Record a finding (first and last seen); True when it was never seen before."""
        connection = self._db(agent_id)
        cursor = connection.execute(
            "UPDATE pm_event SET date_last = ? WHERE log = ?", (timestamp, text)
        )
        if cursor.rowcount:
            return False
        pci = _PCI.search(text)
        cis = _CIS.search(text)
        connection.execute(
            "INSERT INTO pm_event (log, date_first, date_last, pci_dss, cis) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                text,
                timestamp,
                timestamp,
                pci.group(1).strip() if pci else None,
                cis.group(1).strip() if cis else None,
            ),
        )
        return True

    # ---- syscollector -------------------------------------------------------------------
    def inventory_apply(
        self, agent_id: str, table: str, operation: str, row: dict[str, Any]
    ) -> None:
        """Apply one delta: upsert (``INSERTED``, ``MODIFIED``) or delete (``DELETED``)."""
        connection = self._db(agent_id)
        key = inventory_key(table, row)
        if operation == "DELETED":
            connection.execute("DELETE FROM inventory WHERE kind = ? AND key = ?", (table, key))
            return
        self._save_row(connection, table, key, row)

    @staticmethod
    def _save_row(
        connection: sqlite3.Connection, table: str, key: str, row: dict[str, Any]
    ) -> None:
        connection.execute(
            "INSERT OR REPLACE INTO inventory (kind, key, checksum, scan_time, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                table,
                key,
                str(row.get("checksum") or ""),
                _text_or_none(row.get("scan_time")),
                json.dumps(row, separators=(",", ":")),
            ),
        )

    # ---- dbsync ----------------------------------------------------------------------------
    def dbsync(self, agent_id: str, component: str, kind: str, data: dict[str, Any]) -> str | None:
        """A state row, a clear, or an integrity check (answered, with its deletions)."""
        connection = self._db(agent_id)
        fim_types = _FIM_COMPONENTS.get(component)
        if fim_types is None:
            if not component.startswith("syscollector_"):
                return None
            table = component[len("syscollector_") :]
            rows_sql = "SELECT key, checksum FROM inventory WHERE kind = ? ORDER BY key"
            delete_sql = "DELETE FROM inventory WHERE kind = ? AND key = ?"
            clear_sql = "DELETE FROM inventory WHERE kind = ?"
            scope: tuple[Any, ...] = (table,)
        else:
            marks = ",".join("?" for _ in fim_types)
            rows_sql = (
                "SELECT full_path, checksum FROM fim_entry "  # noqa: S608 - our own marks
                f"WHERE type IN ({marks}) ORDER BY full_path"
            )
            delete_sql = "DELETE FROM fim_entry WHERE full_path = ?"
            clear_sql = f"DELETE FROM fim_entry WHERE type IN ({marks})"  # noqa: S608
            scope = fim_types
        if kind == "state":
            index = data.get("index")
            attributes = data.get("attributes")
            if index is None or not isinstance(attributes, dict):
                return None
            if fim_types is None:
                self._save_row(connection, table, str(index), attributes)
            else:
                entry = {
                    name: value
                    for name, value in data.items()
                    if name not in ("index", "timestamp")
                }
                entry.setdefault("path", str(index))
                self._save_fim(connection, str(index), entry, data.get("timestamp"))
            return None
        if kind == "integrity_clear":
            connection.execute(clear_sql, scope)
            self._synced(connection, component, True, "", "")
            return None
        if not kind.startswith("integrity_check_"):
            return None
        rows = connection.execute(rows_sql, scope).fetchall()
        keys = [str(row[0]) for row in rows]
        checksums = {str(row[0]): str(row[1] or "") for row in rows}
        answer, doomed = integrity_answer(kind, data, keys, checksums)
        for key in doomed:
            if fim_types is None:
                connection.execute(delete_sql, (table, key))
            else:
                connection.execute(delete_sql, (key,))
        if kind == "integrity_check_global":
            self._synced(connection, component, answer is None, str(data.get("checksum") or ""), "")
        return answer

    @staticmethod
    def _synced(
        connection: sqlite3.Connection,
        component: str,
        complete: bool,
        agent_checksum: str,
        manager_checksum: str,
    ) -> None:
        now = time_module.time()
        connection.execute("INSERT OR IGNORE INTO sync_info (component) VALUES (?)", (component,))
        connection.execute(
            """UPDATE sync_info SET last_attempt = ?, n_attempts = n_attempts + 1,
                last_completion = CASE WHEN ? THEN ? ELSE last_completion END,
                n_completions = n_completions + ?, last_agent_checksum = ?,
                last_manager_checksum = ?
            WHERE component = ?""",
            (
                now,
                complete,
                now,
                1 if complete else 0,
                agent_checksum,
                manager_checksum,
                component,
            ),
        )

    # ---- hostinfo ---------------------------------------------------------------------------
    def host_ports(self, ip: str, ports: str) -> str | None:
        """Record the open ports of ``ip`` (one list for every agent, as Wazuh); the
        previous ports, ``""`` when new, None when unchanged."""
        if self._hosts is None:
            self._hosts = _open(self.directory / "hostinfo.db", schema=False)
            self._hosts.execute(
                "CREATE TABLE IF NOT EXISTS hosts (ip TEXT PRIMARY KEY, ports TEXT NOT NULL)"
            )
        connection = self._hosts
        row = connection.execute("SELECT ports FROM hosts WHERE ip = ?", (ip,)).fetchone()
        previous = None if row is None else str(row[0])
        if previous == ports:
            return None
        connection.execute("INSERT OR REPLACE INTO hosts (ip, ports) VALUES (?, ?)", (ip, ports))
        return "" if previous is None else previous

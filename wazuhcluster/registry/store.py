"""The master's agent registry: one SQLite connection, used from one thread.

:class:`Registry` is synchronous and not thread-safe on purpose: the node runs it on a
single dedicated thread (see :mod:`wazuhcluster.registry.service`), which serializes
every write, so "check then insert" sequences such as enrollment need no extra locks.
Each public method is one transaction. When a :class:`RegistryFiles` is given, the
files derived from the registry (client.keys, merged.mg files) are marked stale by
changes and rewritten by :meth:`Registry.flush_files`, which the async facade calls
once per burst of changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attrs import define, field, frozen

from wazuhcluster.registry import groups as group_files
from wazuhcluster.registry.agent_query import (
    AgentFilter,
    AgentScope,
    shown_value,
)
from wazuhcluster.registry.agent_query import install as install_query_functions
from wazuhcluster.registry.agent_reports import apply_reports
from wazuhcluster.registry.agent_rows import (
    AGENT_COLUMNS,
    AGENTS_JOINED,
    agent_from_row,
    text_clauses,
)
from wazuhcluster.registry.keys import CLIENT_KEYS_MODE, KeyEntry
from wazuhcluster.registry.model import (
    ANY_IP,
    Agent,
    AgentInfoReport,
    AgentInfoResult,
    DuplicateId,
    DuplicateIP,
    DuplicateName,
    DurableAgent,
    GroupExists,
    GroupInfo,
    InvalidValue,
    UnknownAgent,
    UnknownGroup,
    agent_name_problem,
    format_agent_id,
    normalize_ip,
    parse_agent_id,
)
from wazuhcluster.registry.schema import migrate
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.migrations import schema_version

DEFAULT_GROUP = group_files.DEFAULT_GROUP
#: Upper bound of one agent-info batch and of one id list, so one call stays short.
MAX_BATCH = 10_000


@frozen
class RegistryFiles:
    """Where the registry writes what it derives: client.keys and the group files."""

    client_keys: Path
    shared_dir: Path
    multigroups_dir: Path


#: SQLite's error classes that hide the file system's own reason (read-only, I/O error...).
_OPAQUE_ERRORS = ("SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")


def note_file_system_reason(error: sqlite3.Error, directory: Path) -> None:
    """Add to ``error`` (as a note) what the file system answers when asked to create a file
    in the database's ``directory``, if SQLite reported an I/O or read-only error: SQLite
    says "disk I/O error" when the disk turned read-only, which does not tell an operator
    what to fix. Nothing is added when the file can be created (a real I/O error)."""
    if not getattr(error, "sqlite_errorname", "").startswith(_OPAQUE_ERRORS):
        return
    probe = directory / f".wcprobe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as os_error:
        error.add_note(f"{directory} cannot be written: {os_error.strerror or os_error}")
        return
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


def new_key() -> str:
    """A fresh agent key: 64 hex characters from the operating system's CSPRNG."""
    return secrets.token_hex(32)


@define
class Registry:
    """Agents, groups and memberships in HOME/var/db/global.db (see module docstring)."""

    connection: sqlite3.Connection
    files: RegistryFiles | None = None
    clock: Callable[[], float] = time.time
    keys_dirty: bool = True
    groups_dirty: bool = True
    #: client.keys lines (newline included) by agent number, in id order, once loaded.
    _key_lines: dict[int, bytes] | None = field(default=None, init=False)
    #: The agent → groups table and its checksum, until a write may have changed it.
    _groups_cache: tuple[dict[str, tuple[str, ...]], str] | None = field(default=None, init=False)
    #: The database's directory (to explain a failed write; None for a database in memory).
    directory: Path | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        files: RegistryFiles | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Registry:
        """Open (creating if needed) the database at ``path`` and migrate it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk before the agent gets its key.
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            migrate(connection)
            install_query_functions(connection)
            # Never hand out an id at or below one in use (e.g. rows from an older tool).
            connection.execute(
                "UPDATE meta SET value = MAX(CAST(value AS INTEGER), "
                "(SELECT COALESCE(MAX(id), 0) + 1 FROM agents)) WHERE key = 'next_id'"
            )
        except BaseException:
            connection.close()
            raise
        return cls(connection, files, clock, directory=path.parent)

    def close(self) -> None:
        """Close the database connection."""
        self.connection.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return schema_version(self.connection)

    @contextmanager
    def _transaction(self, groups_unchanged: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, rolled back on any error (a savepoint when it runs inside
        :meth:`write_batch`'s transaction). Unless ``groups_unchanged``, it drops the cached
        agent → groups table."""
        if not groups_unchanged:
            self._groups_cache = None
        nested = self.connection.in_transaction
        self.connection.execute("SAVEPOINT change" if nested else "BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            if nested:
                self.connection.execute("ROLLBACK TO change")
                self.connection.execute("RELEASE change")
            else:
                self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("RELEASE change" if nested else "COMMIT")

    def write_batch(
        self, writes: Sequence[Callable[[Registry], Any]]
    ) -> tuple[list[tuple[Any, BaseException | None]], BaseException | None]:
        """Run several writes in one transaction (one commit, so one fsync, for a burst of
        enrollments), then bring the derived files up to date once.

        Each write runs in its own savepoint: one that raises is undone alone and gets its
        error back; the others still commit. Returns each write's ``(value, error)`` and
        the error of the file flush, if any. If the commit itself fails, every write gets
        that error and the caches kept beside the database are dropped.
        """
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                for write in writes:
                    self.connection.execute("SAVEPOINT write")
                    try:
                        value = write(self)
                    except Exception as error:
                        self.connection.execute("ROLLBACK TO write")
                        if isinstance(error, sqlite3.Error):
                            self._explain(error)
                        outcomes.append((None, error))
                    else:
                        outcomes.append((value, None))
                    self.connection.execute("RELEASE write")
                self.connection.execute("COMMIT")
            except BaseException:
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            self._forget_caches()
            self._explain(error)
            return [(None, error)] * len(writes), None
        try:
            self.flush_files()
        except Exception as error:
            return outcomes, error
        return outcomes, None

    def _explain(self, error: sqlite3.Error) -> None:
        """Add the file system's reason to a failed write's error (see
        :func:`note_file_system_reason`)."""
        if self.directory is not None:
            note_file_system_reason(error, self.directory)

    def _forget_caches(self) -> None:
        """Drop what is kept beside the database (after a failed commit): it is read again,
        and the derived files rewritten, at the next use."""
        self._key_lines = None
        self._groups_cache = None
        self.keys_dirty = self.groups_dirty = True

    # -- agents -------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        ip: str = ANY_IP,
        groups: Sequence[str] = (),
        replace: Iterable[str] = (),
        key: str | None = None,
        agent_id: str | None = None,
    ) -> Agent:
        """Register a new agent and return it (with its new id and key).

        ``replace`` lists ids of agents to remove in the same transaction (the force
        rules' decision); afterwards the name, and the IP unless ``any``, must be free,
        otherwise :class:`DuplicateName` / :class:`DuplicateIP` is raised and nothing
        changes. ``groups`` must exist (:class:`UnknownGroup`); an agent with no group
        joins ``default``. Ids are sequential and never reused, unless ``agent_id`` names
        the id (Wazuh's insertion of an agent with its id and key): it must be free
        (:class:`DuplicateId`), and later sequential ids come after it.
        """
        problem = agent_name_problem(name)
        if problem is not None:
            raise InvalidValue("agent name", name, problem)
        clean_ip = normalize_ip(ip)
        if clean_ip is None:
            raise InvalidValue("IP", ip, "not an IP address, a network or 'any'")
        wanted = _dedupe(groups) or (DEFAULT_GROUP,)
        if len(wanted) > group_files.MAX_GROUPS_PER_AGENT:
            raise InvalidValue(
                "group list", ",".join(wanted), f"more than {group_files.MAX_GROUPS_PER_AGENT}"
            )
        replace_numbers = [parse_agent_id(held) for held in replace]
        chosen = parse_agent_id(agent_id) if agent_id is not None else None
        with self._transaction() as db:
            missing = self._missing_groups(db, wanted)
            if missing:
                raise UnknownGroup(missing[0])
            for number in replace_numbers:
                db.execute("DELETE FROM agents WHERE id = ?", (number,))
            for held_id, held_name in db.execute(
                "SELECT id, name FROM agents WHERE name = ? OR (ip = ? AND ip != 'any')",
                (name, clean_ip),
            ).fetchall():
                if held_name == name:
                    raise DuplicateName(name, format_agent_id(held_id))
                raise DuplicateIP(clean_ip, format_agent_id(held_id))
            if chosen is None:
                number = int(
                    db.execute(
                        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_id' "
                        "RETURNING CAST(value AS INTEGER) - 1"
                    ).fetchone()[0]
                )
            else:
                if db.execute("SELECT 1 FROM agents WHERE id = ?", (chosen,)).fetchone():
                    raise DuplicateId(format_agent_id(chosen))
                number = chosen
                db.execute(
                    "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) WHERE key = 'next_id'",
                    (chosen + 1,),
                )
            agent_key = key if key is not None else new_key()
            now = self.clock()
            db.execute(
                "INSERT INTO agents (id, name, ip, key, register_time) VALUES (?, ?, ?, ?, ?)",
                (number, name, clean_ip, agent_key, now),
            )
            db.execute("INSERT INTO agent_times (id) VALUES (?)", (number,))
            db.executemany(
                "INSERT INTO memberships (agent_id, group_name, priority) VALUES (?, ?, ?)",
                [(number, group, priority) for priority, group in enumerate(wanted)],
            )
        lines = self._key_lines
        if lines is not None:
            for replaced in replace_numbers:
                lines.pop(replaced, None)
            in_order = not lines or number > next(reversed(lines))
            lines[number] = KeyEntry(format_agent_id(number), name, clean_ip, agent_key).encode()
            if not in_order:
                self._key_lines = dict(sorted(lines.items()))
        self.keys_dirty = True
        # Only a multigroup membership (or a replacement) can change the group files.
        if len(wanted) > 1 or replace_numbers:
            self.groups_dirty = True
        return Agent(format_agent_id(number), name, clean_ip, agent_key, now, wanted)

    def remove_agents(self, agent_ids: Iterable[str]) -> list[str]:
        """Remove (purge) agents by id; return the ids that existed, in the order given."""
        numbers = [parse_agent_id(agent_id) for agent_id in agent_ids]
        if len(numbers) > MAX_BATCH:
            raise InvalidValue("agent list", f"{len(numbers)} ids", f"more than {MAX_BATCH}")
        removed: list[str] = []
        with self._transaction() as db:
            for number in numbers:
                if db.execute("DELETE FROM agents WHERE id = ?", (number,)).rowcount:
                    removed.append(format_agent_id(number))
        if removed:
            if self._key_lines is not None:
                for agent_id in removed:
                    self._key_lines.pop(int(agent_id), None)
            self.keys_dirty = True
            self.groups_dirty = True
        return removed

    def replace_agents(
        self, records: Sequence[DurableAgent], next_id: int = 0
    ) -> tuple[int, int, int]:
        """Make the registered agents exactly ``records`` (the durable copy a newly elected
        master found in etcd), in one transaction: an agent whose id, name, IP rule and key
        match a record is kept with its status; every other agent is removed; the records
        not yet here are added with their groups (created when missing). The next id
        becomes at least ``next_id`` and above every id. Returns (kept, added, removed)."""
        by_number = {parse_agent_id(record.id): record for record in records}
        with self._transaction() as db:
            current = {
                row[0]: (row[1], row[2], row[3])
                for row in db.execute("SELECT id, name, ip, key FROM agents")
            }
            stale = [
                number
                for number, facts in current.items()
                if number not in by_number
                or (by_number[number].name, by_number[number].ip, by_number[number].key) != facts
            ]
            for start in range(0, len(stale), 500):
                chunk = stale[start : start + 500]
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM agents WHERE id IN ({marks})", chunk)
            kept = set(current) - set(stale)
            now = self.clock()
            for number, record in sorted(by_number.items()):
                groups = record.groups or (DEFAULT_GROUP,)
                db.executemany(
                    "INSERT OR IGNORE INTO groups (name, created) VALUES (?, ?)",
                    [(group, now) for group in groups],
                )
                if number in kept:
                    if self._groups_of(db, number) != groups:
                        db.execute("DELETE FROM memberships WHERE agent_id = ?", (number,))
                    else:
                        continue
                else:
                    db.execute(
                        "INSERT INTO agents (id, name, ip, key, register_time) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (number, record.name, record.ip, record.key, record.register_time),
                    )
                    db.execute("INSERT INTO agent_times (id) VALUES (?)", (number,))
                db.executemany(
                    "INSERT INTO memberships (agent_id, group_name, priority) VALUES (?, ?, ?)",
                    [(number, group, priority) for priority, group in enumerate(groups)],
                )
            db.execute(
                "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?, "
                "(SELECT COALESCE(MAX(id), 0) + 1 FROM agents)) WHERE key = 'next_id'",
                (next_id,),
            )
        self._key_lines = None
        self.keys_dirty = self.groups_dirty = True
        return len(kept), len(by_number) - len(kept), len(stale)

    def get_agent(self, agent_id: str) -> Agent | None:
        """The agent with this id, or None."""
        try:
            number = parse_agent_id(agent_id)
        except ValueError:
            return None
        found = self._select_agents("WHERE id = ?", (number,))
        return found[0] if found else None

    def agent_nodes(self) -> dict[str, str]:
        """Every agent's id and the node it reports to (``""``: never reported): two
        columns, not whole :class:`Agent` records, since the master reads them for 50,000
        agents every minute on the thread that also applies the agent-info reports."""
        rows = self.connection.execute("SELECT id, node_name FROM agents ORDER BY id")
        return {format_agent_id(number): node or "" for number, node in rows}

    def get_agent_by_name(self, name: str) -> Agent | None:
        """The agent with this name, or None."""
        found = self._select_agents("WHERE name = ?", (name,))
        return found[0] if found else None

    def get_agent_by_ip(self, ip: str) -> Agent | None:
        """The agent registered with this IP (never matches ``any``), or None."""
        if ip == ANY_IP:
            return None
        found = self._select_agents("WHERE ip = ?", (ip,))
        return found[0] if found else None

    def list_agents(
        self,
        status: str | None = None,
        node_name: str | None = None,
        group: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        same_text: Sequence[tuple[str, str]] = (),
        where: AgentFilter | None = None,
        scope: AgentScope | None = None,
    ) -> list[Agent]:
        """Agents ordered by id, filtered by connection status, node, group and/or name.

        ``same_text`` adds (field, value) tests that ignore ASCII case, on the fields of
        :data:`~wazuhcluster.registry.agent_rows.TEXT_FIELDS` (``group``: any of the
        agent's groups); ``where`` an API ``q`` filter and ``scope`` the agents a caller
        may see (see
        :mod:`wazuhcluster.registry.agent_query`)."""
        clauses, params = text_clauses(same_text, where, scope)
        if status is not None:
            clauses.append("connection_status = ?")
            params.append(status)
        if node_name is not None:
            clauses.append("node_name = ?")
            params.append(node_name)
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        if group is not None:
            clauses.append("id IN (SELECT agent_id FROM memberships WHERE group_name = ?)")
            params.append(group)
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = ""
        if limit is not None:
            tail = " LIMIT ? OFFSET ?"
            params.extend([max(0, limit), max(0, offset)])
        return self._select_agents(condition + " ORDER BY id" + tail, tuple(params))

    def next_agent_id(self) -> int:
        """The number the next enrolled agent gets."""
        row = self.connection.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        return int(row[0])

    def count_agents(
        self,
        same_text: Sequence[tuple[str, str]] = (),
        where: AgentFilter | None = None,
        scope: AgentScope | None = None,
    ) -> int:
        """How many agents are registered (passing the ``same_text``, ``where`` and
        ``scope`` tests of :meth:`list_agents`)."""
        clauses, params = text_clauses(same_text, where, scope)
        table = "agents" if where is None and scope is None else AGENTS_JOINED
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        found = self.connection.execute(f"SELECT COUNT(*) FROM {table}{condition}", params)
        return int(found.fetchone()[0])

    def status_counts(
        self, scope: AgentScope | None = None
    ) -> list[tuple[str, str, tuple[str, ...], int]]:
        """How many agents (of ``scope``, None: all) share each (connection status,
        merged.mg sum they reported, group list in priority order): what a summary of
        every agent needs, without reading every agent."""
        clauses, params = text_clauses((), None, scope)
        condition = f" WHERE {clauses[0]}" if clauses else ""
        rows = self.connection.execute(
            "SELECT connection_status, merged_sum, groups, COUNT(*) FROM ("
            " SELECT agents.connection_status, agents.merged_sum,"
            "  (SELECT group_concat(group_name, char(10)) FROM"
            "   (SELECT group_name FROM memberships m WHERE m.agent_id = agents.id"
            f"    ORDER BY priority)) AS groups FROM agents{condition}) GROUP BY 1, 2, 3",
            params,
        ).fetchall()
        return [
            (status, merged, tuple(groups.split("\n")) if groups else (), int(count))
            for status, merged, groups, count in rows
        ]

    def distinct_counts(
        self,
        fields: Sequence[str],
        scope: AgentScope | None = None,
        where: AgentFilter | None = None,
    ) -> list[tuple[tuple[Any, ...], int, int]]:
        """Each combination of the API agent ``fields`` (shown values, None when the view
        leaves one out) among the agents of ``scope`` (None: all) that pass ``where``,
        with how many agents hold it and the first agent's number, in that order."""
        shown = [shown_value(name) for name in fields]
        clauses, params = text_clauses((), where, scope)
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        groups = ", ".join(str(n) for n in range(1, len(shown) + 1))
        rows = self.connection.execute(
            f"SELECT {', '.join(shown)}, COUNT(*), MIN(id) FROM {AGENTS_JOINED}{condition}"
            f" GROUP BY {groups} ORDER BY MIN(id)",
            params,
        ).fetchall()
        return [(tuple(row[:-2]), int(row[-2]), int(row[-1])) for row in rows]

    def last_registered(self, scope: AgentScope | None = None) -> Agent | None:
        """The agent of ``scope`` (None: any) registered last, as the API shows dates
        (whole seconds; the highest id among those of that second), or None."""
        clauses, params = text_clauses((), None, scope)
        inside = f" AND {clauses[0]}" if clauses else ""
        # Only agents within a second of the newest can share its shown second.
        found = self._select_agents(
            f"WHERE register_time >= (SELECT MAX(register_time) FROM agents WHERE 1{inside}) - 1"
            f"{inside} ORDER BY q_iso(register_time) DESC, id DESC LIMIT 1",
            (*params, *params),
        )
        return found[0] if found else None

    def field_counts(self) -> dict[str, dict[str, int]]:
        """How many agents have each connection status, each OS platform (those that
        reported one) and each group."""
        db = self.connection
        return {
            "status": dict(
                db.execute("SELECT connection_status, COUNT(*) FROM agents GROUP BY 1").fetchall()
            ),
            "os": dict(
                db.execute(
                    "SELECT os_platform, COUNT(*) FROM agents WHERE os_platform != '' GROUP BY 1"
                ).fetchall()
            ),
            "groups": dict(
                db.execute("SELECT group_name, COUNT(*) FROM memberships GROUP BY 1").fetchall()
            ),
        }

    def client_keys_data(self) -> bytes:
        """The content of client.keys: every agent's line, ordered by id.

        Served from a cache of the encoded lines, loaded once and kept in step by the
        registry's own writes (it is the only writer; new ids are always the highest, so
        the cache stays in id order), so a rewrite after an enrollment neither walks the
        table nor formats every line again: under a busy reactor every SQLite row step
        hands the GIL over, and that work per enrollment dominated enrollment latency.
        """
        if self._key_lines is None:
            rows = self.connection.execute(
                "SELECT id, name, ip, key FROM agents ORDER BY id"
            ).fetchall()
            self._key_lines = {
                row[0]: KeyEntry(format_agent_id(row[0]), row[1], row[2], row[3]).encode()
                for row in rows
            }
        return b"".join(self._key_lines.values())

    def find_holders(self, name: str, ip: str) -> list[Agent]:
        """Agents holding ``name``, or ``ip`` unless it is ``any`` (at most two)."""
        return self._select_agents(
            "WHERE name = ? OR (ip = ? AND ip != 'any') ORDER BY id", (name, ip)
        )

    def missing_groups(self, groups: Sequence[str]) -> list[str]:
        """The groups in ``groups`` that do not exist, in the given order."""
        return self._missing_groups(self.connection, groups)

    @staticmethod
    def _missing_groups(db: sqlite3.Connection, groups: Sequence[str]) -> list[str]:
        """See :meth:`missing_groups` (usable inside a transaction)."""
        if not groups:
            return []
        marks = ",".join("?" * len(groups))
        rows = db.execute(f"SELECT name FROM groups WHERE name IN ({marks})", tuple(groups))
        found = {row[0] for row in rows}
        return [group for group in groups if group not in found]

    def _select_agents(self, tail: str, params: tuple[Any, ...]) -> list[Agent]:
        """Run a SELECT over agents and build :class:`Agent` records with their groups."""
        rows = self.connection.execute(
            f"SELECT {AGENT_COLUMNS} FROM {AGENTS_JOINED} {tail}", params
        )
        agents = rows.fetchall()
        if not agents:
            return []
        memberships = self._memberships([row[0] for row in agents])
        return [agent_from_row(row, memberships.get(row[0], ())) for row in agents]

    def _memberships(self, numbers: list[int]) -> dict[int, tuple[str, ...]]:
        """Group lists (in priority order) of the given agent numbers."""
        result: dict[int, list[str]] = {}
        for start in range(0, len(numbers), 500):
            chunk = numbers[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.connection.execute(
                "SELECT agent_id, group_name FROM memberships "
                f"WHERE agent_id IN ({marks}) ORDER BY agent_id, priority",
                chunk,
            )
            for number, group in rows:
                result.setdefault(number, []).append(group)
        return {number: tuple(names) for number, names in result.items()}

    # -- groups -------------------------------------------------------------------

    def create_group(self, name: str) -> None:
        """Create a group (and, with files, its etc/shared folder and agent.conf)."""
        problem = group_files.group_name_problem(name)
        if problem is not None:
            raise InvalidValue("group name", name, problem)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM groups WHERE lower(name) = lower(?)", (name,)).fetchone():
                raise GroupExists(name)
            db.execute("INSERT INTO groups (name, created) VALUES (?, ?)", (name, self.clock()))
        if self.files is not None:
            group_files.create_group_folder(self.files.shared_dir, name)
        self.groups_dirty = True

    def delete_group(self, name: str) -> list[str]:
        """Delete a group; agents left with no group join ``default``. Return their ids."""
        if name == DEFAULT_GROUP:
            raise InvalidValue("group name", name, "the default group cannot be deleted")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone() is None:
                raise UnknownGroup(name)
            members = [
                row[0]
                for row in db.execute(
                    "SELECT agent_id FROM memberships WHERE group_name = ?", (name,)
                )
            ]
            db.execute("DELETE FROM groups WHERE name = ?", (name,))
            orphans = [
                number
                for number in members
                if db.execute("SELECT 1 FROM memberships WHERE agent_id = ?", (number,)).fetchone()
                is None
            ]
            db.executemany(
                "INSERT INTO memberships (agent_id, group_name, priority) VALUES (?, ?, 0)",
                [(number, DEFAULT_GROUP) for number in orphans],
            )
        if self.files is not None:
            folder = self.files.shared_dir / name
            if folder.is_dir():
                group_files.remove_tree(folder)
        self.groups_dirty = True
        return [format_agent_id(number) for number in orphans]

    def group_exists(self, name: str) -> bool:
        """Whether the group exists."""
        row = self.connection.execute("SELECT 1 FROM groups WHERE name = ?", (name,))
        return row.fetchone() is not None

    def list_groups(self) -> list[GroupInfo]:
        """Every group with its agent count, by name."""
        rows = self.connection.execute(
            "SELECT g.name, COUNT(m.agent_id) FROM groups g "
            "LEFT JOIN memberships m ON m.group_name = g.name GROUP BY g.name ORDER BY g.name"
        )
        return [GroupInfo(name, int(count)) for name, count in rows]

    def assign(self, agent_id: str, group: str, replace: bool = False) -> tuple[str, ...]:
        """Add an agent to a group (or make it its only group); return its new group list."""
        number = parse_agent_id(agent_id)
        with self._transaction() as db:
            self._require_agent(db, number, agent_id)
            if db.execute("SELECT 1 FROM groups WHERE name = ?", (group,)).fetchone() is None:
                raise UnknownGroup(group)
            if replace:
                db.execute("DELETE FROM memberships WHERE agent_id = ?", (number,))
            current = self._groups_of(db, number)
            if group not in current:
                if len(current) >= group_files.MAX_GROUPS_PER_AGENT:
                    raise InvalidValue(
                        "group list", group, f"agent already in {len(current)} groups"
                    )
                db.execute(
                    "INSERT INTO memberships (agent_id, group_name, priority) "
                    "VALUES (?, ?, (SELECT COALESCE(MAX(priority), -1) + 1 "
                    "FROM memberships WHERE agent_id = ?))",
                    (number, group, number),
                )
            result = self._groups_of(db, number)
        self.groups_dirty = True
        return result

    def set_groups(self, agent_id: str, groups: Sequence[str]) -> tuple[str, ...]:
        """Make ``groups`` (existing ones, in priority order) the agent's group list, e.g.
        to undo a change that could not be made durable; returns it."""
        number = parse_agent_id(agent_id)
        wanted = _dedupe(groups) or (DEFAULT_GROUP,)
        with self._transaction() as db:
            self._require_agent(db, number, agent_id)
            missing = self._missing_groups(db, wanted)
            if missing:
                raise UnknownGroup(missing[0])
            db.execute("DELETE FROM memberships WHERE agent_id = ?", (number,))
            db.executemany(
                "INSERT INTO memberships (agent_id, group_name, priority) VALUES (?, ?, ?)",
                [(number, group, priority) for priority, group in enumerate(wanted)],
            )
            result = self._groups_of(db, number)
        self.groups_dirty = True
        return result

    def unassign(self, agent_id: str, group: str) -> tuple[str, ...]:
        """Remove an agent from a group (back to ``default`` if none is left)."""
        number = parse_agent_id(agent_id)
        with self._transaction() as db:
            self._require_agent(db, number, agent_id)
            db.execute(
                "DELETE FROM memberships WHERE agent_id = ? AND group_name = ?", (number, group)
            )
            if not self._groups_of(db, number):
                db.execute(
                    "INSERT INTO memberships (agent_id, group_name, priority) VALUES (?, ?, 0)",
                    (number, DEFAULT_GROUP),
                )
            result = self._groups_of(db, number)
        self.groups_dirty = True
        return result

    @staticmethod
    def _require_agent(db: sqlite3.Connection, number: int, agent_id: str) -> None:
        """Raise :class:`UnknownAgent` unless the agent exists."""
        if db.execute("SELECT 1 FROM agents WHERE id = ?", (number,)).fetchone() is None:
            raise UnknownAgent(agent_id)

    @staticmethod
    def _groups_of(db: sqlite3.Connection, number: int) -> tuple[str, ...]:
        """The groups of one agent in priority order."""
        rows = db.execute(
            "SELECT group_name FROM memberships WHERE agent_id = ? ORDER BY priority", (number,)
        )
        return tuple(row[0] for row in rows)

    def agent_groups(self) -> dict[str, tuple[str, ...]]:
        """The agent → groups table (every agent, groups in priority order)."""
        return dict(self._cached_groups()[0])

    def agent_groups_checksum(self) -> str:
        """SHA-256 of the agent → groups table (see :func:`groups_table_checksum`)."""
        return self._cached_groups()[1]

    def _cached_groups(self) -> tuple[dict[str, tuple[str, ...]], str]:
        # The master reads the whole table every few seconds (agent-groups task, group
        # files); with 50,000 agents a fresh read costs a good part of a second.
        if self._groups_cache is None:
            table = self._read_agent_groups()
            self._groups_cache = (table, groups_table_checksum(table))
        return self._groups_cache

    def _read_agent_groups(self) -> dict[str, tuple[str, ...]]:
        rows = self.connection.execute(
            "SELECT a.id, m.group_name FROM agents a "
            "LEFT JOIN memberships m ON m.agent_id = a.id ORDER BY a.id, m.priority"
        )
        table: dict[str, list[str]] = {}
        for number, group in rows:
            names = table.setdefault(format_agent_id(number), [])
            if group is not None:
                names.append(group)
        return {agent_id: tuple(names) for agent_id, names in table.items()}

    # -- status reports -----------------------------------------------------------

    def apply_agent_info(self, reports: Sequence[AgentInfoReport]) -> AgentInfoResult:
        """Apply status reports, keeping per agent only what is newer than held.

        Unknown ids (removed agents, a worker with stale keys) are counted, not errors.
        """
        if len(reports) > MAX_BATCH:
            raise InvalidValue("agent-info batch", f"{len(reports)} rows", f"over {MAX_BATCH}")
        with self._transaction(groups_unchanged=True) as db:
            return apply_reports(db, reports)

    # -- maintenance --------------------------------------------------------------

    def integrity_check(self) -> list[str]:
        """Problems SQLite finds in the file and its foreign keys (empty when healthy)."""
        problems = [
            str(row[0])
            for row in self.connection.execute("PRAGMA integrity_check")
            if row[0] != "ok"
        ]
        for table, rowid, parent, _ in self.connection.execute("PRAGMA foreign_key_check"):
            problems.append(f"{table} row {rowid} points to a missing {parent} row")
        return problems

    def flush_files(self) -> bool:
        """Rewrite client.keys and the group files if changes made them stale.

        Returns True when something was written.
        """
        if self.files is None:
            self.keys_dirty = self.groups_dirty = False
            return False
        wrote = False
        # A file is marked clean only once written: after a failed write (disk full,
        # read-only) the next flush tries again, so the files catch up by themselves.
        if self.keys_dirty:
            # Once the cache is loaded every flush follows a change: skip reading it back.
            first = self._key_lines is None
            write_atomically(
                self.files.client_keys,
                self.client_keys_data(),
                mode=CLIENT_KEYS_MODE,
                skip_identical=first,
            )
            self.keys_dirty = False
            wrote = True
        if self.groups_dirty:
            self.rebuild_group_files()
            self.groups_dirty = False
            wrote = True
        return wrote

    def rebuild_group_files(self) -> None:
        """Rebuild every group's merged.mg and the multigroups agents use now."""
        if self.files is None:
            return
        names = [info.name for info in self.list_groups()]
        for name in names:
            group_files.create_group_folder(self.files.shared_dir, name)
        combos = {combo for combo in self.agent_groups().values() if len(combo) > 1}
        group_files.rebuild_all(
            self.files.shared_dir, self.files.multigroups_dir, names, sorted(combos)
        )


def groups_table_checksum(table: dict[str, tuple[str, ...]]) -> str:
    """SHA-256 of an agent → groups table in a canonical JSON form (ids sorted)."""
    canonical = json.dumps(
        [[agent_id, list(table[agent_id])] for agent_id in sorted(table)],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _dedupe(groups: Sequence[str]) -> tuple[str, ...]:
    """Groups without repeats, first occurrence kept (Wazuh drops repeated groups)."""
    seen: dict[str, None] = {}
    for group in groups:
        seen.setdefault(group, None)
    return tuple(seen)

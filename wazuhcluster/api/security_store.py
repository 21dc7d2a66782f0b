"""The API's security data: roles, policies, security rules, their links and revocations.

Kept in SQLite at HOME/etc/api/rbac.db (mode 0600), created on first start with Wazuh's
default roles, policies and rules (:mod:`wazuhcluster.api.rbac`). Users themselves stay
in users.json (:mod:`wazuhcluster.api.users`); their role ids point here.

:class:`SecurityDatabase` is the blocking side: every SQL statement is in it, behind one
lock. :class:`SecurityStore` is the reactor's side: it answers reads from an immutable
:class:`SecurityState` snapshot held in memory (so checking a token costs no I/O), and
runs each change in a thread, replacing the snapshot once the change is committed.
Token revocations (a user's, a role's, every run_as token's) are rows here, so a restart
does not bring a logged-out token back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from attrs import field, frozen
from twisted.internet.defer import Deferred

from wazuhcluster.api import rbac
from wazuhcluster.util.threads import RunInThread

T = TypeVar("T")

DB_MODE = 0o600
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS roles (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE CHECK (length(name) <= 64),
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS policies (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL UNIQUE,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rules (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL UNIQUE,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS role_policies (
    role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    policy_id INTEGER NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    level INTEGER NOT NULL, PRIMARY KEY (role_id, policy_id));
CREATE TABLE IF NOT EXISTS role_rules (
    role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    rule_id INTEGER NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, rule_id));
CREATE TABLE IF NOT EXISTS revoked_users (
    name TEXT PRIMARY KEY, until REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_roles (
    role_id INTEGER PRIMARY KEY, until REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_run_as (
    one INTEGER PRIMARY KEY CHECK (one = 1), until REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SecurityConflict(Exception):
    """A change the data refuses: ``code`` is the Wazuh error to answer."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(detail or str(code))
        self.code = code


@frozen
class SecurityState:
    """What the security database held after its last change (see module docstring)."""

    roles: Mapping[int, str] = field(factory=dict)
    policies: Mapping[int, tuple[str, dict[str, Any]]] = field(factory=dict)
    rules: Mapping[int, tuple[str, dict[str, Any]]] = field(factory=dict)
    #: Per role, its policy ids in level order.
    role_policies: Mapping[int, tuple[int, ...]] = field(factory=dict)
    #: Per role, its security rule ids.
    role_rules: Mapping[int, tuple[int, ...]] = field(factory=dict)
    revoked_users: Mapping[str, float] = field(factory=dict)
    revoked_roles: Mapping[int, float] = field(factory=dict)
    revoked_run_as: float | None = None
    rbac_mode: str = "white"
    #: The token lifetime set through PUT /security/config (None: the <api> setting).
    token_timeout: int | None = None

    def permissions(self, role_ids: list[int] | tuple[int, ...]) -> rbac.Permissions:
        """The processed permissions of ``role_ids`` (in that order)."""
        bodies = {pid: body for pid, (_, body) in self.policies.items()}
        return rbac.process_policies(rbac.role_policies(role_ids, self.role_policies, bodies))

    def roles_for_context(self, context: Any, user_id: int) -> list[int]:
        """The roles a run_as login with ``context`` gets: those with a matching rule.

        Default rules (id ≤ 99) only count for the dashboard's user (id 2), as in Wazuh.
        """
        found = []
        for role_id in sorted(self.role_rules):
            for rule_id in self.role_rules[role_id]:
                if rule_id <= rbac.MAX_RESERVED_ID and user_id != 2:
                    continue
                entry = self.rules.get(rule_id)
                if entry is not None and rbac.rule_matches(entry[1], context):
                    found.append(role_id)
                    break
        return found


def _next_id(connection: sqlite3.Connection, table: str) -> int:
    (highest,) = connection.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
    return max(int(highest) + 1, rbac.FIRST_USER_ID)


class SecurityDatabase:
    """The SQLite side (blocking; call from a thread, see module docstring)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, now: float) -> SecurityDatabase:
        """Open (creating and seeding with Wazuh's defaults if new) the database at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, DB_MODE))
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        return cls._prepare(connection, now)

    @classmethod
    def memory(cls, now: float) -> SecurityDatabase:
        """A database in memory (for a token authority built without a store: tests)."""
        connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        return cls._prepare(connection, now)

    @classmethod
    def _prepare(cls, connection: sqlite3.Connection, now: float) -> SecurityDatabase:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA busy_timeout = 5000")
        database = cls(connection)
        with database.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 0:
                database._seed(db, now)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return database

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.connection.close()

    def transaction(self) -> _Transaction:
        """A context manager: one locked transaction, committed on success."""
        return _Transaction(self)

    @staticmethod
    def _seed(db: sqlite3.Connection, now: float) -> None:
        for policy in rbac.DEFAULT_POLICIES:
            db.execute(
                "INSERT INTO policies VALUES (?, ?, ?, ?)",
                (policy.id, policy.name, json.dumps(policy.body, sort_keys=True), now),
            )
        for role_id, name, policy_ids in rbac.DEFAULT_ROLES:
            db.execute("INSERT INTO roles VALUES (?, ?, ?)", (role_id, name, now))
            for level, policy_id in enumerate(policy_ids):
                db.execute(
                    "INSERT INTO role_policies VALUES (?, ?, ?)", (role_id, policy_id, level)
                )
        for rule_id, name, body in rbac.DEFAULT_RULES:
            db.execute(
                "INSERT INTO rules VALUES (?, ?, ?, ?)",
                (rule_id, name, json.dumps(body, sort_keys=True), now),
            )
        for role_id, rule_id in rbac.DEFAULT_ROLE_RULES:
            db.execute("INSERT INTO role_rules VALUES (?, ?)", (role_id, rule_id))

    def snapshot(self) -> SecurityState:
        """Everything, read in one transaction."""
        with self.transaction() as db:
            roles = dict(db.execute("SELECT id, name FROM roles ORDER BY id"))
            policies = {
                pid: (name, json.loads(body))
                for pid, name, body in db.execute("SELECT id, name, body FROM policies ORDER BY id")
            }
            rules = {
                rid: (name, json.loads(body))
                for rid, name, body in db.execute("SELECT id, name, body FROM rules ORDER BY id")
            }
            links: dict[int, list[int]] = {}
            for role_id, policy_id in db.execute(
                "SELECT role_id, policy_id FROM role_policies ORDER BY role_id, level"
            ):
                links.setdefault(role_id, []).append(policy_id)
            rule_links: dict[int, list[int]] = {}
            for role_id, rule_id in db.execute(
                "SELECT role_id, rule_id FROM role_rules ORDER BY role_id, rule_id"
            ):
                rule_links.setdefault(role_id, []).append(rule_id)
            revoked_users = dict(db.execute("SELECT name, until FROM revoked_users"))
            revoked_roles = dict(db.execute("SELECT role_id, until FROM revoked_roles"))
            run_as = db.execute("SELECT until FROM revoked_run_as").fetchone()
            settings = dict(db.execute("SELECT key, value FROM settings"))
        return SecurityState(
            roles=roles,
            policies=policies,
            rules=rules,
            role_policies={k: tuple(v) for k, v in links.items()},
            role_rules={k: tuple(v) for k, v in rule_links.items()},
            revoked_users=revoked_users,
            revoked_roles=revoked_roles,
            revoked_run_as=None if run_as is None else float(run_as[0]),
            rbac_mode=settings.get("rbac_mode", "white"),
            token_timeout=int(settings["auth_token_exp_timeout"])
            if "auth_token_exp_timeout" in settings
            else None,
        )

    # --- changes (each runs inside a transaction the caller opened) ---------------------

    @staticmethod
    def revoke_user(db: sqlite3.Connection, name: str, now: float, lifetime: float) -> None:
        """Tokens of ``name`` issued until ``now`` stop working."""
        db.execute("DELETE FROM revoked_users WHERE expires < ?", (now,))
        db.execute(
            "INSERT OR REPLACE INTO revoked_users VALUES (?, ?, ?)", (name, now, now + lifetime)
        )

    @staticmethod
    def revoke_roles(
        db: sqlite3.Connection, role_ids: list[int], now: float, lifetime: float
    ) -> None:
        """Tokens naming any of ``role_ids``, issued until ``now``, stop working."""
        db.execute("DELETE FROM revoked_roles WHERE expires < ?", (now,))
        for role_id in role_ids:
            db.execute(
                "INSERT OR REPLACE INTO revoked_roles VALUES (?, ?, ?)",
                (role_id, now, now + lifetime),
            )

    @staticmethod
    def revoke_run_as(db: sqlite3.Connection, now: float, lifetime: float) -> None:
        """Every run_as token issued until ``now`` stops working."""
        db.execute("INSERT OR REPLACE INTO revoked_run_as VALUES (1, ?, ?)", (now, now + lifetime))

    @staticmethod
    def clear_revocations(db: sqlite3.Connection) -> None:
        """Forget every revocation (after the signing key changed, none is needed)."""
        for table in ("revoked_users", "revoked_roles", "revoked_run_as"):
            db.execute(f"DELETE FROM {table}")

    @staticmethod
    def set_setting(db: sqlite3.Connection, key: str, value: str | None) -> None:
        """Set (or with None, reset) one security setting."""
        if value is None:
            db.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    @staticmethod
    def add_role(db: sqlite3.Connection, name: str, now: float) -> int:
        """A new role; 4005 when the name is taken."""
        if db.execute("SELECT 1 FROM roles WHERE name = ?", (name,)).fetchone():
            raise SecurityConflict(4005, name)
        role_id = _next_id(db, "roles")
        db.execute("INSERT INTO roles VALUES (?, ?, ?)", (role_id, name, now))
        return role_id

    @staticmethod
    def rename_role(db: sqlite3.Connection, role_id: int, name: str) -> None:
        """Rename a role; 4005 when the name is taken by another."""
        taken = db.execute("SELECT id FROM roles WHERE name = ?", (name,)).fetchone()
        if taken is not None and taken[0] != role_id:
            raise SecurityConflict(4005, name)
        db.execute("UPDATE roles SET name = ? WHERE id = ?", (name, role_id))

    @staticmethod
    def delete(db: sqlite3.Connection, table: str, object_id: int) -> None:
        """Delete one role, policy or rule (links go with it)."""
        assert table in ("roles", "policies", "rules")
        db.execute(f"DELETE FROM {table} WHERE id = ?", (object_id,))

    @staticmethod
    def add_body(
        db: sqlite3.Connection, table: str, name: str, body: dict[str, Any], now: float
    ) -> int:
        """A new policy or rule; 4009 (policy) / 4005 (rule) when name or body is taken."""
        assert table in ("policies", "rules")
        text = json.dumps(body, sort_keys=True)
        code = 4009 if table == "policies" else 4005
        if db.execute(f"SELECT 1 FROM {table} WHERE name = ? OR body = ?", (name, text)).fetchone():
            raise SecurityConflict(code, name)
        object_id = _next_id(db, table)
        db.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", (object_id, name, text, now))
        return object_id

    @staticmethod
    def update_body(
        db: sqlite3.Connection,
        table: str,
        object_id: int,
        name: str | None,
        body: dict[str, Any] | None,
    ) -> None:
        """Change a policy's or rule's name and/or body; 4013/4005 when taken by another."""
        assert table in ("policies", "rules")
        code = 4013 if table == "policies" else 4005
        if name is not None:
            taken = db.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()
            if taken is not None and taken[0] != object_id:
                raise SecurityConflict(code, name)
            db.execute(f"UPDATE {table} SET name = ? WHERE id = ?", (name, object_id))
        if body is not None:
            text = json.dumps(body, sort_keys=True)
            taken = db.execute(f"SELECT id FROM {table} WHERE body = ?", (text,)).fetchone()
            if taken is not None and taken[0] != object_id:
                raise SecurityConflict(code, "same body")
            db.execute(f"UPDATE {table} SET body = ? WHERE id = ?", (text, object_id))

    @staticmethod
    def link_policy(
        db: sqlite3.Connection, role_id: int, policy_id: int, position: int | None
    ) -> None:
        """Give ``role_id`` the policy at ``position`` (appended when None); 4011 if held."""
        held = [
            pid
            for (pid,) in db.execute(
                "SELECT policy_id FROM role_policies WHERE role_id = ? ORDER BY level", (role_id,)
            )
        ]
        if policy_id in held:
            raise SecurityConflict(4011)
        at = len(held) if position is None else min(position, len(held))
        held.insert(at, policy_id)
        db.execute("DELETE FROM role_policies WHERE role_id = ?", (role_id,))
        for level, pid in enumerate(held):
            db.execute("INSERT INTO role_policies VALUES (?, ?, ?)", (role_id, pid, level))

    @staticmethod
    def unlink_policy(db: sqlite3.Connection, role_id: int, policy_id: int) -> None:
        """Take a policy from a role; 4010 when the role does not hold it."""
        gone = db.execute(
            "DELETE FROM role_policies WHERE role_id = ? AND policy_id = ?", (role_id, policy_id)
        )
        if gone.rowcount == 0:
            raise SecurityConflict(4010)

    @staticmethod
    def link_rule(db: sqlite3.Connection, role_id: int, rule_id: int) -> None:
        """Link a security rule to a role; 4023 when already linked."""
        if db.execute(
            "SELECT 1 FROM role_rules WHERE role_id = ? AND rule_id = ?", (role_id, rule_id)
        ).fetchone():
            raise SecurityConflict(4023)
        db.execute("INSERT INTO role_rules VALUES (?, ?)", (role_id, rule_id))

    @staticmethod
    def unlink_rule(db: sqlite3.Connection, role_id: int, rule_id: int) -> None:
        """Unlink a security rule from a role; 4024 when not linked."""
        gone = db.execute(
            "DELETE FROM role_rules WHERE role_id = ? AND rule_id = ?", (role_id, rule_id)
        )
        if gone.rowcount == 0:
            raise SecurityConflict(4024)


class _Transaction:
    def __init__(self, database: SecurityDatabase) -> None:
        self.database = database

    def __enter__(self) -> sqlite3.Connection:
        self.database.lock.acquire()
        try:
            self.database.connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.database.lock.release()
            raise
        return self.database.connection

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            self.database.connection.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.database.lock.release()


class SecurityStore:
    """The reactor's view: a snapshot for reads, changes in a thread (see module docstring)."""

    def __init__(self, database: SecurityDatabase, run_in_thread: RunInThread) -> None:
        self.database = database
        self.run_in_thread = run_in_thread
        self.state = database.snapshot()
        #: Awaited after each committed change before it is answered (ApiHooks).
        self.on_changed: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def open(cls, path: Path, now: float, run_in_thread: RunInThread) -> SecurityStore:
        """Open the database at ``path`` (blocking: at start-up only)."""
        return cls(SecurityDatabase.open(path, now), run_in_thread)

    def change(self, function: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run ``function`` in one transaction in a thread; the snapshot follows on success."""

        def work() -> tuple[T, SecurityState]:
            with self.database.transaction() as db:
                result = function(db)
            return result, self.database.snapshot()

        def done(outcome: tuple[T, SecurityState]) -> T:
            result, self.state = outcome
            return result

        d: Deferred[tuple[T, SecurityState]] = self.run_in_thread(work)
        committed = d.addCallback(done)
        if self.on_changed is None:
            return committed

        async def answered() -> T:
            result = await committed
            await self.changed()
            return result

        return Deferred.fromCoroutine(answered())

    async def changed(self) -> None:
        """Tell ``on_changed`` the security data changed (users.json writes call it too)."""
        if self.on_changed is not None:
            await self.on_changed()

    def close(self) -> None:
        """Close the database."""
        self.database.close()

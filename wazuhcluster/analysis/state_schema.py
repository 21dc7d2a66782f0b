"""The schema of one agent's state database (``var/db/agents/<id>.db``), as migrations.

Our own schema in the shape of Wazuh's per-agent databases: FIM entries and scan times, the
bookkeeping of the agent's integrity synchronisation, rootcheck findings, SCA policies,
scans and checks, and the syscollector inventory (one table for every inventory kind, a row
per item keyed by the item's index, its columns as JSON). ``PRAGMA user_version`` counts the
migrations applied, as in :mod:`wazuhcluster.registry.schema`: they are only ever appended.
"""

from __future__ import annotations

import sqlite3

from wazuhcluster.util.migrations import run_migrations, schema_version

_V1 = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE fim_entry (
        full_path TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        path TEXT NOT NULL,
        date REAL NOT NULL,
        changes INTEGER NOT NULL DEFAULT 1,
        checksum TEXT NOT NULL DEFAULT '',
        arch TEXT,
        value_name TEXT,
        value_type TEXT,
        size INTEGER,
        perm TEXT,
        uid TEXT,
        gid TEXT,
        md5 TEXT,
        sha1 TEXT,
        sha256 TEXT,
        uname TEXT,
        gname TEXT,
        mtime INTEGER,
        inode INTEGER,
        attributes TEXT,
        symbolic_path TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX fim_entry_type ON fim_entry (type, full_path)",
    """CREATE TABLE scan_info (
        event TEXT PRIMARY KEY,
        time REAL NOT NULL
    )""",
    """CREATE TABLE sync_info (
        component TEXT PRIMARY KEY,
        last_attempt REAL NOT NULL DEFAULT 0,
        last_completion REAL NOT NULL DEFAULT 0,
        n_attempts INTEGER NOT NULL DEFAULT 0,
        n_completions INTEGER NOT NULL DEFAULT 0,
        last_agent_checksum TEXT NOT NULL DEFAULT '',
        last_manager_checksum TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE pm_event (
        id INTEGER PRIMARY KEY,
        log TEXT NOT NULL UNIQUE,
        date_first REAL NOT NULL,
        date_last REAL NOT NULL,
        pci_dss TEXT,
        cis TEXT
    )""",
    """CREATE TABLE sca_policy (
        id TEXT PRIMARY KEY,
        name TEXT,
        file TEXT,
        description TEXT,
        refs TEXT,
        hash_file TEXT
    )""",
    """CREATE TABLE sca_scan (
        policy_id TEXT PRIMARY KEY,
        scan_id INTEGER,
        start_scan REAL,
        end_scan REAL,
        pass INTEGER,
        fail INTEGER,
        invalid INTEGER,
        total_checks INTEGER,
        score INTEGER,
        hash TEXT
    )""",
    """CREATE TABLE sca_check (
        id INTEGER PRIMARY KEY,
        policy_id TEXT NOT NULL,
        scan_id INTEGER,
        result TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX sca_check_policy ON sca_check (policy_id, id)",
    """CREATE TABLE inventory (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        checksum TEXT NOT NULL DEFAULT '',
        scan_time TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID""",
)

#: Every migration, in order; ``MIGRATIONS[n]`` takes a database from version n to n+1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
LATEST_VERSION = len(MIGRATIONS)


class StateSchemaError(Exception):
    """An agent state database written by a newer version of the program."""


def migrate(connection: sqlite3.Connection) -> int:
    """Apply the missing migrations (``connection`` in autocommit mode); the version."""
    current = schema_version(connection)
    if current > LATEST_VERSION:
        raise StateSchemaError(
            f"agent state schema version {current} is newer than this program's {LATEST_VERSION}"
        )
    return run_migrations(connection, MIGRATIONS, current, LATEST_VERSION)

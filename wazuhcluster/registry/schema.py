"""The registry's SQLite schema as an ordered list of migrations.

``PRAGMA user_version`` holds the number of migrations applied. Opening a database runs
the missing ones in order, each in its own transaction, so an old file is brought up to
date and a crash mid-way leaves it at the last complete version. Migrations are only
ever appended; an applied one is never edited.
"""

from __future__ import annotations

import sqlite3

from wazuhcluster.util.migrations import run_migrations, schema_version

#: Version 1: identities (agents, groups, memberships) and a small key/value table.
_V1 = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    "INSERT INTO meta (key, value) VALUES ('next_id', '1')",
    """CREATE TABLE agents (
        id INTEGER PRIMARY KEY CHECK (id > 0),
        name TEXT NOT NULL UNIQUE,
        ip TEXT NOT NULL,
        key TEXT NOT NULL,
        register_time REAL NOT NULL
    )""",
    "CREATE UNIQUE INDEX agents_ip ON agents (ip) WHERE ip != 'any'",
    """CREATE TABLE groups (
        name TEXT PRIMARY KEY,
        created REAL NOT NULL
    )""",
    "INSERT INTO groups (name, created) VALUES ('default', 0)",
    """CREATE TABLE memberships (
        agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
        group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
        priority INTEGER NOT NULL,
        PRIMARY KEY (agent_id, group_name)
    )""",
    "CREATE INDEX memberships_group ON memberships (group_name)",
)

#: Version 2: the status fields the agent-info reports fill, with the node and the
#: (status_time, status_seq) pair used to keep only the newest report per agent.
_V2 = (
    "ALTER TABLE agents ADD COLUMN connection_status TEXT NOT NULL DEFAULT 'never_connected'",
    "ALTER TABLE agents ADD COLUMN last_keepalive REAL",
    "ALTER TABLE agents ADD COLUMN disconnection_time REAL NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN version TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_name TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_version TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_platform TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_arch TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_uname TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE agents ADD COLUMN config_sum TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN merged_sum TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN node_name TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN status_time REAL NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN status_seq INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX agents_node ON agents (node_name)",
    "CREATE INDEX agents_status ON agents (connection_status)",
)

#: Version 3: the four fields every keep-alive refresh rewrites move to a narrow table of
#: their own. Updating them in the wide agents rows (keys, names, uname, labels...) dirtied
#: about five times as many pages per report: 5,000 refreshes cost ~45 ms instead of ~9 ms.
_V3 = (
    """CREATE TABLE agent_times (
        id INTEGER PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
        last_keepalive REAL,
        disconnection_time REAL NOT NULL DEFAULT 0,
        status_time REAL NOT NULL DEFAULT 0,
        status_seq INTEGER NOT NULL DEFAULT 0
    )""",
    "INSERT INTO agent_times (id, last_keepalive, disconnection_time, status_time, status_seq) "
    "SELECT id, last_keepalive, disconnection_time, status_time, status_seq FROM agents",
    "ALTER TABLE agents DROP COLUMN last_keepalive",
    "ALTER TABLE agents DROP COLUMN disconnection_time",
    "ALTER TABLE agents DROP COLUMN status_time",
    "ALTER TABLE agents DROP COLUMN status_seq",
)

#: Version 4: the rest of what a keep-alive tells (Wazuh's ``os_major``, ``os_minor``,
#: ``os_build``, ``os_codename``) and the IP the agent reports (``_agent_ip``), which the
#: API shows as ``ip`` while ``ip`` here stays the registered one (client.keys).
_V4 = (
    "ALTER TABLE agents ADD COLUMN os_major TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_minor TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_build TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN os_codename TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN agent_ip TEXT NOT NULL DEFAULT ''",
)

#: Every migration, in order; ``MIGRATIONS[n]`` takes a database from version n to n+1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
LATEST_VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The database file cannot be used by this version of the code."""


def migrate(connection: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Apply the missing migrations up to ``target``; return the version reached.

    ``connection`` must be in autocommit mode (``isolation_level=None``) so each
    migration runs in the explicit transaction opened here.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise SchemaError(f"unknown schema version {target}")
    current = schema_version(connection)
    if current > LATEST_VERSION:
        raise SchemaError(
            f"database schema version {current} is newer than this program's {LATEST_VERSION}"
        )
    return run_migrations(connection, MIGRATIONS, current, target)

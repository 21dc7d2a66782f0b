"""Numbered SQLite schema migrations, applied in order, each in its own transaction.

The database's ``PRAGMA user_version`` holds how many migrations were applied. The registry and
the per-agent state databases keep their own lists of migrations and say what a version newer
than theirs means; this module only runs the missing ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


def schema_version(connection: sqlite3.Connection) -> int:
    """How many migrations were already applied to ``connection``'s database."""
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def run_migrations(
    connection: sqlite3.Connection,
    migrations: Sequence[Sequence[str]],
    current: int,
    target: int,
) -> int:
    """Apply ``migrations[current:target]``, each with its new ``user_version`` in one
    transaction (a failure rolls that one back and is raised); the version reached.

    ``connection`` must be in autocommit mode (``isolation_level=None``) so each migration runs
    in the explicit transaction opened here.
    """
    while current < target:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[current]:
                connection.execute(statement)
            # PRAGMA does not take parameters; the value is our own integer.
            connection.execute(f"PRAGMA user_version = {current + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        current += 1
    return current

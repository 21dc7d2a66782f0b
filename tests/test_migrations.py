"""Tests for wazuhcluster.util.migrations: numbered SQLite migrations."""

from __future__ import annotations

import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util.migrations import run_migrations, schema_version

MIGRATIONS = (
    ("CREATE TABLE a (x INTEGER)",),
    ("CREATE TABLE b (y INTEGER)", "INSERT INTO b VALUES (1)"),
    ("CREATE TABLE c (z INTEGER)", "INSERT INTO nowhere VALUES (1)"),
)


class MigrationTests(SynchronousTestCase):
    """Each migration is applied whole, in order, or not at all."""

    def setUp(self) -> None:
        """An empty database in autocommit mode."""
        self.connection = sqlite3.connect(":memory:", isolation_level=None)
        self.addCleanup(self.connection.close)

    def test_applies_up_to_the_target(self) -> None:
        """The missing migrations run in order and the version records them."""
        self.assertEqual(run_migrations(self.connection, MIGRATIONS, 0, 2), 2)
        self.assertEqual(schema_version(self.connection), 2)
        self.assertEqual(self.connection.execute("SELECT y FROM b").fetchall(), [(1,)])
        self.assertEqual(run_migrations(self.connection, MIGRATIONS, 2, 2), 2)

    def test_failed_migration_is_rolled_back(self) -> None:
        """A migration that fails leaves neither its tables nor a new version behind."""
        run_migrations(self.connection, MIGRATIONS, 0, 2)
        with self.assertRaises(sqlite3.OperationalError):
            run_migrations(self.connection, MIGRATIONS, 2, 3)
        self.assertEqual(schema_version(self.connection), 2)
        tables = {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master")}
        self.assertEqual(tables, {"a", "b"})

"""Tests for wazuhcluster.registry.store, schema and service: the master's agent registry."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.registry.model import (
    AgentInfoReport,
    DuplicateIP,
    DuplicateName,
    GroupExists,
    InvalidValue,
    UnknownAgent,
    UnknownGroup,
)
from wazuhcluster.registry.schema import LATEST_VERSION, MIGRATIONS, migrate
from wazuhcluster.registry.service import AsyncRegistry, synchronous_runner
from wazuhcluster.registry.store import Registry, RegistryFiles, groups_table_checksum


class CountingRegistry(Registry):
    """A registry that records its file flushes."""

    __slots__ = ()
    flushes: list[bool] = []

    def flush_files(self) -> bool:
        """Record the call, then flush."""
        CountingRegistry.flushes.append(True)
        return super().flush_files()


class FakeClock:
    """A settable wall clock for register/status times."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_registry(case: SynchronousTestCase, with_files: bool = False) -> Registry:
    """A fresh registry in a temporary home, closed at the end of the test."""
    home = Path(case.mktemp())
    files = None
    if with_files:
        files = RegistryFiles(
            home / "etc" / "client.keys", home / "etc" / "shared", home / "var" / "multigroups"
        )
    registry = Registry.open(home / "var" / "db" / "global.db", files, FakeClock())
    case.addCleanup(registry.close)
    return registry


class SchemaTests(SynchronousTestCase):
    """The schema version and migrations."""

    def test_new_database_is_latest_with_wal_and_foreign_keys(self) -> None:
        """A new file is migrated to the latest version, in WAL mode, with FKs enforced."""
        registry = open_registry(self)
        self.assertEqual(registry.schema_version, LATEST_VERSION)
        mode = registry.connection.execute("PRAGMA journal_mode").fetchone()[0]
        self.assertEqual(mode, "wal")
        self.assertEqual(registry.connection.execute("PRAGMA foreign_keys").fetchone()[0], 1)

    def test_old_version_database_is_migrated_and_keeps_rows(self) -> None:
        """A version-1 database with agents opens at the latest version, rows intact."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(str(path), isolation_level=None)
        migrate(raw, target=1)
        raw.execute("INSERT INTO agents VALUES (7, 'old-agent', 'any', ?, 5.0)", ("k" * 64,))
        raw.execute("INSERT INTO memberships VALUES (7, 'default', 0)")
        raw.execute("UPDATE meta SET value = '8' WHERE key = 'next_id'")
        raw.close()

        registry = Registry.open(path, None, FakeClock())
        self.addCleanup(registry.close)
        self.assertEqual(registry.schema_version, LATEST_VERSION)
        agent = registry.get_agent("007")
        assert agent is not None
        self.assertEqual(
            (agent.name, agent.groups, agent.connection_status),
            ("old-agent", ("default",), "never_connected"),
        )
        self.assertEqual(registry.enroll("next-one").id, "008")

    def test_version_2_status_moves_to_agent_times(self) -> None:
        """Opening a version-2 database moves each agent's keep-alive and report order to
        agent_times: the values survive, an older report stays stale, and the agents table
        no longer carries those columns."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(str(path), isolation_level=None)
        migrate(raw, target=2)
        raw.execute(
            "INSERT INTO agents (id, name, ip, key, register_time, connection_status, "
            "last_keepalive, disconnection_time, node_name, status_time, status_seq) "
            "VALUES (3, 'kept', 'any', ?, 1.0, 'active', 40.0, 0, 'w1', 41.0, 7)",
            ("k" * 64,),
        )
        raw.execute("UPDATE meta SET value = '4' WHERE key = 'next_id'")
        raw.close()

        registry = Registry.open(path, None, FakeClock())
        self.addCleanup(registry.close)
        agent = registry.get_agent("003")
        assert agent is not None
        self.assertEqual(
            (agent.connection_status, agent.last_keepalive, agent.status_time, agent.status_seq),
            ("active", 40.0, 41.0, 7),
        )
        result = registry.apply_agent_info([AgentInfoReport("003", "w2", 41.0, 6, "active")])
        self.assertEqual(result.stale, 1)
        columns = {row[1] for row in registry.connection.execute("PRAGMA table_info(agents)")}
        self.assertFalse(columns & {"last_keepalive", "status_time", "status_seq"})
        registry.remove_agents(["003"])
        self.assertEqual(
            registry.connection.execute("SELECT COUNT(*) FROM agent_times").fetchone()[0], 0
        )

    def test_stale_next_id_is_repaired_on_open(self) -> None:
        """If next_id lags behind the highest id in use, opening moves it past it."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(str(path), isolation_level=None)
        migrate(raw)
        raw.execute(
            "INSERT INTO agents (id, name, ip, key, register_time) "
            "VALUES (41, 'imported', 'any', 'k', 1.0)"
        )
        raw.close()
        registry = Registry.open(path, None, FakeClock())
        self.addCleanup(registry.close)
        self.assertEqual(registry.enroll("after-import").id, "042")

    def test_newer_database_is_refused(self) -> None:
        """A file written by a newer program (higher user_version) is not touched."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(str(path), isolation_level=None)
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        raw.close()
        from wazuhcluster.registry.schema import SchemaError

        self.assertRaises(SchemaError, Registry.open, path)

    def test_state_survives_reopen(self) -> None:
        """Agents, groups and memberships are on disk after close and reopen."""
        home = Path(self.mktemp())
        registry = Registry.open(home / "global.db", None, FakeClock())
        registry.create_group("web")
        agent = registry.enroll("a1", "10.0.0.1", ["web"])
        registry.close()
        again = Registry.open(home / "global.db", None, FakeClock())
        self.addCleanup(again.close)
        self.assertEqual(again.get_agent(agent.id), agent)


class EnrollTests(SynchronousTestCase):
    """Registry.enroll: ids, keys, uniqueness and groups."""

    def test_ids_are_sequential_zero_padded_and_never_reused(self) -> None:
        """Ids go 001, 002...; a removed agent's id is not handed out again."""
        registry = open_registry(self)
        ids = [registry.enroll(f"agent-{n}").id for n in range(3)]
        self.assertEqual(ids, ["001", "002", "003"])
        registry.remove_agents(["003"])
        self.assertEqual(registry.enroll("agent-x").id, "004")

    def test_key_is_64_hex_and_unique(self) -> None:
        """Each key is 64 lowercase hex characters, different for every agent."""
        registry = open_registry(self)
        keys = {registry.enroll(f"agent-{n}").key for n in range(20)}
        self.assertEqual(len(keys), 20)
        for key in keys:
            self.assertRegex(key, r"^[0-9a-f]{64}$")

    def test_default_group_and_register_time(self) -> None:
        """An agent without groups joins 'default'; its register time is the clock's."""
        registry = open_registry(self)
        agent = registry.enroll("lonely")
        self.assertEqual(agent.groups, ("default",))
        self.assertEqual(agent.register_time, 1_000_000.0)
        self.assertEqual(registry.get_agent("001"), agent)

    def test_duplicate_name_refused(self) -> None:
        """A second agent with the same name raises DuplicateName naming the holder."""
        registry = open_registry(self)
        registry.enroll("same")
        error = self.assertRaises(DuplicateName, registry.enroll, "same")
        self.assertEqual(error.agent_id, "001")
        self.assertEqual(registry.count_agents(), 1)

    def test_duplicate_ip_refused_but_any_is_shared(self) -> None:
        """Two agents cannot share an IP, but any number can use 'any'."""
        registry = open_registry(self)
        registry.enroll("a1", "192.168.1.5")
        self.assertRaises(DuplicateIP, registry.enroll, "a2", "192.168.1.5")
        registry.enroll("a3", "any")
        registry.enroll("a4", "any")
        self.assertEqual(registry.count_agents(), 3)

    def test_replace_removes_old_agent_in_same_transaction(self) -> None:
        """replace= removes the holder and enrolls the new agent under a new id."""
        registry = open_registry(self)
        old = registry.enroll("host", "10.1.1.1")
        new = registry.enroll("host", "10.1.1.1", replace=[old.id])
        self.assertEqual(new.id, "002")
        self.assertIsNone(registry.get_agent(old.id))

    def test_failed_enroll_keeps_replaced_agent(self) -> None:
        """If the enrollment fails after replace=, the replaced agent is still there."""
        registry = open_registry(self)
        old = registry.enroll("host")
        registry.enroll("other", "10.9.9.9")
        self.assertRaises(DuplicateIP, registry.enroll, "host", "10.9.9.9", replace=[old.id])
        self.assertIsNotNone(registry.get_agent(old.id))

    def test_unknown_group_refused(self) -> None:
        """Enrolling into a group that does not exist raises UnknownGroup, adds nothing."""
        registry = open_registry(self)
        error = self.assertRaises(UnknownGroup, registry.enroll, "a1", "any", ["nope"])
        self.assertEqual(error.name, "nope")
        self.assertEqual(registry.count_agents(), 0)

    def test_groups_deduplicated_in_order(self) -> None:
        """Repeated groups are dropped; the first-seen order is the priority order."""
        registry = open_registry(self)
        registry.create_group("b")
        registry.create_group("a")
        agent = registry.enroll("multi", groups=["b", "a", "b"])
        self.assertEqual(agent.groups, ("b", "a"))
        self.assertEqual(registry.get_agent(agent.id).groups, ("b", "a"))  # type: ignore[union-attr]

    def test_invalid_name_and_ip_refused(self) -> None:
        """Names and IPs Wazuh refuses raise InvalidValue."""
        registry = open_registry(self)
        for name in ("x", ".hidden", "has space", "a" * 129, "semi;colon"):
            self.assertRaises(InvalidValue, registry.enroll, name)
        for ip in ("300.1.1.1", "abc", "", "1.2.3.4/99"):
            self.assertRaises(InvalidValue, registry.enroll, "good-name", ip)

    def test_ipv6_and_network_accepted(self) -> None:
        """IPv6 addresses and CIDR networks are valid agent IPs, kept as given."""
        registry = open_registry(self)
        self.assertEqual(registry.enroll("v6", "fe80::1").ip, "fe80::1")
        self.assertEqual(registry.enroll("net", "10.0.0.0/8").ip, "10.0.0.0/8")


class ManageTests(SynchronousTestCase):
    """Removal, listing, groups and memberships."""

    def test_remove_returns_only_existing_ids(self) -> None:
        """remove_agents reports the ids that existed and cascades memberships."""
        registry = open_registry(self)
        registry.enroll("a1")
        registry.enroll("a2")
        self.assertEqual(registry.remove_agents(["002", "009", "001"]), ["002", "001"])
        self.assertEqual(registry.count_agents(), 0)
        count = registry.connection.execute("SELECT COUNT(*) FROM memberships").fetchone()[0]
        self.assertEqual(count, 0)

    def test_list_filters(self) -> None:
        """list_agents filters by status, node, group and name, ordered by id."""
        registry = open_registry(self)
        registry.create_group("web")
        registry.enroll("a1", groups=["web"])
        registry.enroll("a2")
        registry.enroll("a3", groups=["web", "default"])
        registry.apply_agent_info([AgentInfoReport("002", "worker-1", 10.0)])
        names = [agent.name for agent in registry.list_agents(group="web")]
        self.assertEqual(names, ["a1", "a3"])
        self.assertEqual([a.name for a in registry.list_agents(status="active")], ["a2"])
        self.assertEqual([a.name for a in registry.list_agents(node_name="worker-1")], ["a2"])
        self.assertEqual([a.name for a in registry.list_agents(name="a3")], ["a3"])
        self.assertEqual([a.name for a in registry.list_agents(limit=1, offset=1)], ["a2"])

    def test_group_lifecycle(self) -> None:
        """Create, refuse duplicates and bad names, delete; orphans go back to default."""
        registry = open_registry(self)
        registry.create_group("web")
        self.assertRaises(GroupExists, registry.create_group, "web")
        self.assertRaises(GroupExists, registry.create_group, "DEFAULT")
        self.assertRaises(InvalidValue, registry.create_group, "..")
        self.assertRaises(InvalidValue, registry.create_group, "a/b")
        only = registry.enroll("only-web", groups=["web"])
        both = registry.enroll("both", groups=["web", "default"])
        self.assertEqual(registry.delete_group("web"), [only.id])
        self.assertEqual(registry.get_agent(only.id).groups, ("default",))  # type: ignore[union-attr]
        self.assertEqual(registry.get_agent(both.id).groups, ("default",))  # type: ignore[union-attr]
        self.assertRaises(UnknownGroup, registry.delete_group, "web")
        self.assertRaises(InvalidValue, registry.delete_group, "default")
        counts = [(group.name, group.agent_count) for group in registry.list_groups()]
        self.assertEqual(counts, [("default", 2)])

    def test_assign_and_unassign(self) -> None:
        """assign appends (or replaces) a group; unassigning the last one returns to default."""
        registry = open_registry(self)
        registry.create_group("web")
        registry.create_group("db")
        agent = registry.enroll("a1")
        self.assertEqual(registry.assign(agent.id, "web"), ("default", "web"))
        self.assertEqual(registry.assign(agent.id, "web"), ("default", "web"))
        self.assertEqual(registry.assign(agent.id, "db", replace=True), ("db",))
        self.assertEqual(registry.unassign(agent.id, "db"), ("default",))
        self.assertRaises(UnknownGroup, registry.assign, agent.id, "nope")
        self.assertRaises(UnknownAgent, registry.assign, "099", "web")

    def test_agent_groups_checksum_follows_changes(self) -> None:
        """The agent→groups table and its checksum change with an assignment."""
        registry = open_registry(self)
        registry.create_group("web")
        registry.enroll("a1")
        before = registry.agent_groups_checksum()
        self.assertEqual(registry.agent_groups(), {"001": ("default",)})
        registry.assign("001", "web")
        self.assertEqual(registry.agent_groups(), {"001": ("default", "web")})
        self.assertNotEqual(registry.agent_groups_checksum(), before)
        self.assertEqual(
            registry.agent_groups_checksum(), groups_table_checksum({"001": ("default", "web")})
        )

    def test_agent_groups_table_follows_every_write(self) -> None:
        """The table read once (and cached) reflects each later enrollment, assignment,
        removal and group deletion, and an agent-info report leaves it as it was."""
        registry = open_registry(self)
        registry.create_group("web")
        registry.enroll("a1")
        self.assertEqual(registry.agent_groups(), {"001": ("default",)})
        registry.enroll("a2", groups=["web"])
        self.assertEqual(registry.agent_groups(), {"001": ("default",), "002": ("web",)})
        registry.assign("001", "web")
        registry.apply_agent_info([AgentInfoReport("001", "w1", 5.0, 1, "active", 5.0)])
        self.assertEqual(registry.agent_groups()["001"], ("default", "web"))
        registry.delete_group("web")
        self.assertEqual(registry.agent_groups(), {"001": ("default",), "002": ("default",)})
        registry.remove_agents(["002"])
        self.assertEqual(registry.agent_groups(), {"001": ("default",)})
        self.assertEqual(
            registry.agent_groups_checksum(), groups_table_checksum({"001": ("default",)})
        )

    def test_integrity_check_healthy(self) -> None:
        """A healthy database reports no problems."""
        registry = open_registry(self)
        registry.enroll("a1")
        self.assertEqual(registry.integrity_check(), [])


class AgentInfoTests(SynchronousTestCase):
    """apply_agent_info keeps the newest report per agent."""

    def test_newer_applied_older_ignored_unknown_counted(self) -> None:
        """A newer report wins, an older one is stale, an unknown id is counted."""
        registry = open_registry(self)
        registry.enroll("roamer")
        first = AgentInfoReport(
            "001",
            "worker-b",
            20.0,
            1,
            "active",
            20.0,
            version="v4.14.7",
            os_name="Ubuntu",
            labels={"env": "prod"},
        )
        late = AgentInfoReport("001", "worker-a", 10.0, 9, "disconnected", 9.0, 10.0)
        result = registry.apply_agent_info(
            [first, late, AgentInfoReport("077", "w", 30.0), AgentInfoReport("bad", "w", 30.0)]
        )
        self.assertEqual((result.applied, result.stale, result.unknown), (1, 1, 2))
        agent = registry.get_agent("001")
        assert agent is not None
        self.assertEqual(
            (agent.node_name, agent.connection_status, agent.version, agent.os_name, agent.labels),
            ("worker-b", "active", "v4.14.7", "Ubuntu", (("env", "prod"),)),
        )

    def test_sequence_breaks_time_ties(self) -> None:
        """With equal status times the higher sequence number wins."""
        registry = open_registry(self)
        registry.enroll("a1")
        registry.apply_agent_info([AgentInfoReport("001", "w1", 5.0, 1, "active")])
        result = registry.apply_agent_info([AgentInfoReport("001", "w2", 5.0, 2, "disconnected")])
        self.assertEqual(result.applied, 1)
        self.assertEqual(registry.get_agent("001").node_name, "w2")  # type: ignore[union-attr]

    def test_agent_nodes_match_the_full_records(self) -> None:
        """``agent_nodes`` (two columns, read every minute by the master) gives every
        agent's node exactly as the full records do, ``""`` for one that never reported."""
        registry = open_registry(self)
        for name in ("a1", "a2", "a3"):
            registry.enroll(name)
        registry.apply_agent_info(
            [AgentInfoReport("001", "w1", 5.0, 1, "active"), AgentInfoReport("003", "w2", 5.0)]
        )
        expected = {agent.id: agent.node_name for agent in registry.list_agents()}
        self.assertEqual(registry.agent_nodes(), expected)
        self.assertEqual(registry.agent_nodes(), {"001": "w1", "002": "", "003": "w2"})

    def test_keepalive_refresh_from_same_node(self) -> None:
        """A newer report from the agent's node with the same status updates every other
        field, and a batch listing agents out of id order applies each one's newest row."""
        registry = open_registry(self)
        for name in ("a1", "a2", "a3"):
            registry.enroll(name)
        registry.apply_agent_info(
            [AgentInfoReport(i, "w1", 5.0, 1, "active", 5.0) for i in ("003", "001", "002")]
        )
        result = registry.apply_agent_info(
            [
                AgentInfoReport("002", "w1", 9.0, 2, "active", 9.0, version="v4.9.0"),
                AgentInfoReport("001", "w1", 7.0, 3, "active", 7.0),
                AgentInfoReport("002", "w1", 8.0, 4, "disconnected", 8.0),
            ]
        )
        self.assertEqual((result.applied, result.stale, result.unknown), (2, 1, 0))
        agents = {a.id: a for a in registry.list_agents()}
        self.assertEqual(
            (
                agents["002"].connection_status,
                agents["002"].node_name,
                agents["002"].last_keepalive,
                agents["002"].version,
                agents["002"].status_seq,
            ),
            ("active", "w1", 9.0, "v4.9.0", 2),
        )
        self.assertEqual((agents["001"].last_keepalive, agents["003"].last_keepalive), (7.0, 5.0))

    def test_bad_status_rolls_back_batch(self) -> None:
        """An unknown connection status refuses the whole batch."""
        registry = open_registry(self)
        registry.enroll("a1")
        self.assertRaises(
            InvalidValue,
            registry.apply_agent_info,
            [
                AgentInfoReport("001", "w", 5.0, 0, "active"),
                AgentInfoReport("001", "w", 6.0, 0, "flying"),
            ],
        )
        self.assertEqual(registry.get_agent("001").status_time, 0.0)  # type: ignore[union-attr]


class FilesTests(SynchronousTestCase):
    """client.keys and group files derived from the registry."""

    def test_client_keys_written_on_flush(self) -> None:
        """flush_files writes client.keys with every agent, mode 0640; removal drops lines."""
        registry = open_registry(self, with_files=True)
        files = registry.files
        assert files is not None
        a1 = registry.enroll("a1", "10.0.0.1")
        registry.enroll("a2")
        self.assertTrue(registry.flush_files())
        entries = read_client_keys(files.client_keys)
        self.assertEqual([e.line() for e in entries][0], a1.key_line())
        self.assertEqual(len(entries), 2)
        self.assertEqual(files.client_keys.stat().st_mode & 0o777, 0o640)
        registry.remove_agents(["001"])
        registry.flush_files()
        self.assertEqual([e.name for e in read_client_keys(files.client_keys)], ["a2"])
        self.assertFalse(registry.flush_files())

    def test_client_keys_follow_replacement(self) -> None:
        """A forced replacement drops the old line and adds the new one."""
        registry = open_registry(self, with_files=True)
        files = registry.files
        assert files is not None
        registry.enroll("keep")
        old = registry.enroll("host")
        registry.flush_files()
        new = registry.enroll("host", replace=[old.id])
        registry.flush_files()
        lines = [entry.line() for entry in read_client_keys(files.client_keys)]
        self.assertEqual(lines, [registry.get_agent("001").key_line(), new.key_line()])  # type: ignore[union-attr]

    def test_group_folders_and_multigroups(self) -> None:
        """A new group gets agent.conf and merged.mg; a two-group agent gets a multigroup."""
        registry = open_registry(self, with_files=True)
        files = registry.files
        assert files is not None
        registry.create_group("web")
        self.assertTrue((files.shared_dir / "web" / "agent.conf").is_file())
        registry.enroll("a1", groups=["web", "default"])
        registry.flush_files()
        self.assertTrue((files.shared_dir / "web" / "merged.mg").is_file())
        self.assertTrue((files.shared_dir / "default" / "merged.mg").is_file())
        from wazuhcluster.registry.groups import multigroup_hash

        folder = files.multigroups_dir / multigroup_hash(["web", "default"])
        self.assertTrue((folder / "merged.mg").is_file())
        registry.remove_agents(["001"])
        registry.flush_files()
        self.assertFalse(folder.exists())


class QueuedRunner:
    """A registry runner that holds each job until the test runs it."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def __call__(self, function: Callable[[], Any]) -> Deferred[Any]:
        """Queue ``function``; its Deferred fires when the test runs it."""
        deferred: Deferred[Any] = Deferred()
        self.jobs.append((function, deferred))
        return deferred

    def run_next(self) -> None:
        """Run the oldest queued job."""
        function, deferred = self.jobs.pop(0)
        deferred.callback(function())

    def run_all(self) -> None:
        """Run queued jobs until none is left."""
        while self.jobs:
            self.run_next()


class AsyncRegistryTests(SynchronousTestCase):
    """The Deferred facade with an injected runner."""

    def test_many_enrollments_get_distinct_ids(self) -> None:
        """200 enrollments through the facade produce 200 distinct ids and key lines."""
        registry = open_registry(self, with_files=True)
        facade = AsyncRegistry(registry, synchronous_runner)
        results = [self.successResultOf(facade.enroll(f"agent-{n}", "any")) for n in range(200)]
        self.assertEqual(len({agent.id for agent in results}), 200)
        assert registry.files is not None
        self.assertEqual(len(read_client_keys(registry.files.client_keys)), 200)

    def test_write_waits_for_files_and_batches_flushes(self) -> None:
        """Writes queued together run as one batch (one commit, one flush) in the first
        registry job; each Deferred fires after the flush, and the later jobs find nothing
        left to do."""
        home = Path(self.mktemp())
        files = RegistryFiles(home / "client.keys", home / "shared", home / "multigroups")
        registry = CountingRegistry.open(home / "global.db", files, FakeClock())
        self.addCleanup(registry.close)
        registry.flush_files()
        CountingRegistry.flushes.clear()
        runner = QueuedRunner()
        facade = AsyncRegistry(registry, runner)
        pending = [facade.enroll(f"a{n}", "any") for n in range(5)]
        self.assertNoResult(pending[0])
        self.assertEqual(len(runner.jobs), 5)
        runner.run_next()
        agents = [self.successResultOf(d) for d in pending]
        self.assertEqual([a.id for a in agents], ["001", "002", "003", "004", "005"])
        self.assertEqual(len(CountingRegistry.flushes), 1)
        runner.run_all()
        self.assertEqual(len(CountingRegistry.flushes), 1)
        self.assertEqual(len(read_client_keys(files.client_keys)), 5)

    def test_failed_commit_fails_the_whole_batch(self) -> None:
        """When the batch's commit fails, every write of it gets the error, nothing is kept,
        and the next write starts from what the database really holds."""
        registry = open_registry(self, with_files=True)
        facade = AsyncRegistry(registry, synchronous_runner)
        self.successResultOf(facade.enroll("before", "any"))
        real = registry.connection

        class CommitFails:
            """Forwards to the connection, but its next COMMIT fails like a full disk."""

            def __init__(self) -> None:
                self.in_transaction = False

            def execute(self, sql: str, *args: object) -> object:
                if sql == "COMMIT":
                    raise sqlite3.OperationalError("database or disk is full")
                result = real.execute(sql, *args)
                self.in_transaction = real.in_transaction
                return result

        registry.connection = CommitFails()  # type: ignore[assignment]
        runner = QueuedRunner()
        facade = AsyncRegistry(registry, runner)
        first, second = facade.enroll("lost-1", "any"), facade.enroll("lost-2", "any")
        runner.run_next()
        self.failureResultOf(first, sqlite3.OperationalError)
        self.failureResultOf(second, sqlite3.OperationalError)
        registry.connection = real
        self.assertEqual([a.name for a in registry.list_agents()], ["before"])
        self.assertEqual(registry.enroll("after").id, "002")
        registry.flush_files()
        assert registry.files is not None
        self.assertEqual(
            [e.name for e in read_client_keys(registry.files.client_keys)], ["before", "after"]
        )

    def test_failed_write_in_burst_still_flushes(self) -> None:
        """A failing last write still flushes for the successful writes before it."""
        registry = open_registry(self, with_files=True)
        runner = QueuedRunner()
        facade = AsyncRegistry(registry, runner)
        good = facade.enroll("same", "any")
        bad = facade.enroll("same", "any")
        runner.run_all()
        self.assertEqual(self.successResultOf(good).id, "001")
        self.failureResultOf(bad, DuplicateName)
        assert registry.files is not None
        self.assertEqual([e.name for e in read_client_keys(registry.files.client_keys)], ["same"])

    def test_errors_arrive_as_failures(self) -> None:
        """A registry error fails the Deferred with that error."""
        registry = open_registry(self)
        facade = AsyncRegistry(registry, synchronous_runner)
        self.successResultOf(facade.enroll("same", "any"))
        self.failureResultOf(facade.enroll("same", "any"), DuplicateName)

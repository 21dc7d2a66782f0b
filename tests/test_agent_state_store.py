"""Per-agent state in SQLite (``analysis/state_store.py``): it survives restarts, SCA alerts
once per changed result across them, syscollector deltas and full states converge, and the
integrity synchronisation answers as a Wazuh agent expects."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from twisted.trial import unittest

from tests.analysis_data import CLOCK, make_engine
from tests.test_analysis_queues import sca_summary
from wazuhcluster.analysis.agentstate import MemoryState, range_checksum, results_hash
from wazuhcluster.analysis.engine import Engine, parse_queue_message
from wazuhcluster.analysis.state_schema import LATEST_VERSION
from wazuhcluster.analysis.state_store import SqliteState, agent_db_path

AGENT = "[003] (web01) any->"

RULES = """
<group name="ossec,">
  <rule id="7" level="0" noalert="1">
    <category>ossec</category>
    <description>Root of the ossec category (the queue decoders').</description>
  </rule>
</group>
<group name="test,">
  <rule id="100100" level="5">
    <category>ossec</category>
    <decoded_as>sca</decoded_as>
    <field name="sca.type">check</field>
    <description>SCA check result changed</description>
  </rule>
  <rule id="100101" level="5">
    <category>ossec</category>
    <decoded_as>syscheck_new_entry</decoded_as>
    <description>FIM added</description>
  </rule>
  <rule id="100102" level="5">
    <category>ossec</category>
    <decoded_as>syscheck_integrity_changed</decoded_as>
    <description>FIM modified</description>
  </rule>
  <rule id="100103" level="5">
    <category>ossec</category>
    <decoded_as>rootcheck</decoded_as>
    <description>rootcheck</description>
  </rule>
</group>
"""


def line(queue: str, location: str, message: str | dict[str, Any]) -> str:
    """A queue line of agent 003 as remoted hands it on."""
    text = message if isinstance(message, str) else json.dumps(message)
    return f"{queue}:{AGENT}{location}:{text}"


def sca_check(check_id: int, result: str | None, scan_id: int = 7) -> dict[str, Any]:
    """An SCA check event of policy ``pol``."""
    check: dict[str, Any] = {"id": check_id, "title": f"Check {check_id}"}
    if result is not None:
        check["result"] = result
    return {"type": "check", "id": scan_id, "policy": "Policy", "policy_id": "pol", "check": check}


def fim_row(path: str, checksum: str) -> dict[str, Any]:
    """A dbsync ``state`` message's data for a file."""
    return {
        "index": path,
        "timestamp": 1718022911,
        "attributes": {"type": "file", "size": 1, "perm": "rw-r--r--", "checksum": checksum},
    }


class StateTestCase(unittest.TestCase):
    """An engine with a tiny ruleset on a SQLite state in a temporary directory."""

    def setUp(self) -> None:
        """A home with the test rules and an empty state directory."""
        self.home = os.path.abspath(self.mktemp())
        self.engine = make_engine(self.home, rules=RULES)
        self.directory = os.path.join(self.home, "var", "db", "agents")
        self.state = self.open_state()

    def open_state(self) -> SqliteState:
        """(Re)open the store and give it to the engine, as a restarted node does."""
        state = SqliteState(self.directory)
        self.engine.agent_state = state
        self.addCleanup(state.close)
        return state

    def restart(self) -> None:
        """Close the store (a stopping node) and open it again."""
        self.state.close()
        self.state = self.open_state()

    def process(self, text: str, offset: float = 0.0) -> dict[str, Any] | None:
        """The alert of one line; the batch ends after it (the store is committed)."""
        alert = self.engine.process(parse_queue_message(text, timestamp=CLOCK + offset))
        self.state.flush()
        return alert


class PersistenceTests(StateTestCase):
    """What agents told a node survives the node's restart."""

    def test_one_database_per_agent_in_wal(self) -> None:
        """Agent 003's state is in 003.db, WAL, at the latest schema version."""
        self.process(line("9", "rootcheck", "File '/tmp/x' is owned by root."))
        path = agent_db_path(self.state.directory, "003")
        assert path is not None
        self.assertTrue(path.exists())
        connection = sqlite3.connect(str(path))
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], LATEST_VERSION)
        self.assertIsNone(agent_db_path(self.state.directory, "../x"))

    def test_fim_legacy_entry_survives_restart(self) -> None:
        """The older FIM text form alerts only on a change, also after a restart."""
        sums = "10:rw-r--r--:0:0:" + "a" * 32 + ":" + "b" * 40 + ":root:root:1:2:" + "c" * 64
        self.assertIsNotNone(self.process(line("8", "syscheck", f"{sums} /etc/hosts")))
        self.restart()
        self.assertIsNone(self.process(line("8", "syscheck", f"{sums} /etc/hosts"), 1))
        changed = sums.replace("10:", "11:", 1)
        alert = self.process(line("8", "syscheck", f"{changed} /etc/hosts"), 2)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "100102")
        entry = self.state.fim_get("003", "/etc/hosts")
        assert entry is not None
        self.assertEqual(entry["attributes"]["size"], 11)

    def test_rootcheck_first_and_last_seen(self) -> None:
        """A finding is new once; its first time stays, its last time moves."""
        text = "System Audit: SSH - 4: No key {PCI_DSS: 2.2.4}. File: /etc/ssh/sshd_config."
        self.assertTrue(self.state.rootcheck_seen("003", text, 100.0))
        self.restart()
        self.assertFalse(self.state.rootcheck_seen("003", text, 200.0))
        self.state.flush()
        path = agent_db_path(self.state.directory, "003")
        connection = sqlite3.connect(str(path))
        self.addCleanup(connection.close)
        row = connection.execute("SELECT date_first, date_last, pci_dss FROM pm_event").fetchone()
        self.assertEqual(row, (100.0, 200.0, "2.2.4"))

    def test_uncommitted_batch_is_not_visible_to_readers(self) -> None:
        """Writes become visible to another connection at the end of the batch."""
        self.state.fim_scan("003", "end_scan", 5.0)
        path = agent_db_path(self.state.directory, "003")
        reader = sqlite3.connect(str(path))
        self.addCleanup(reader.close)
        self.assertEqual(reader.execute("SELECT COUNT(*) FROM scan_info").fetchone()[0], 0)
        self.state.flush()
        self.assertEqual(reader.execute("SELECT COUNT(*) FROM scan_info").fetchone()[0], 1)

    def test_open_transaction_holds_the_write_lock(self) -> None:
        """An agent's open transaction holds its database's write lock from its first
        statement, a read: another writer (the API clearing the agent's FIM, a node
        forgetting it) waits for the commit, instead of committing under a transaction
        that read before it and could then no longer write."""
        self.state.fim_scan("003", "end_scan", 5.0)
        self.state.flush()
        self.assertIsNone(self.state.fim_get("003", "/etc/hosts"))  # a read opens it
        path = agent_db_path(self.state.directory, "003")
        other = sqlite3.connect(str(path), isolation_level=None, timeout=0)
        self.addCleanup(other.close)
        with self.assertRaises(sqlite3.OperationalError):
            other.execute("BEGIN IMMEDIATE")
        self.state.fim_scan("003", "start_scan", 6.0)  # the open transaction still writes
        self.state.flush()
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM scan_info")
        other.execute("COMMIT")
        self.assertIsNone(self.state.fim_get("003", "/etc/hosts"))
        self.state.fim_scan("003", "end_scan", 7.0)
        self.state.flush()

    def test_forget_agent(self) -> None:
        """Forgetting an agent deletes its database."""
        self.state.fim_scan("003", "end_scan", 5.0)
        self.state.flush()
        self.state.forget_agent("003")
        path = agent_db_path(self.state.directory, "003")
        assert path is not None
        self.assertFalse(path.exists())

    def test_least_recently_used_database_is_closed(self) -> None:
        """With more agents than open files allowed, the oldest is committed and closed."""
        state = SqliteState(os.path.join(self.home, "small"), max_open=2)
        self.addCleanup(state.close)
        for agent in ("001", "002", "003"):
            state.fim_scan(agent, "end_scan", 1.0)
        self.assertEqual(list(state._open), ["002", "003"])
        reader = sqlite3.connect(os.path.join(self.home, "small", "001.db"))
        self.addCleanup(reader.close)
        self.assertEqual(reader.execute("SELECT COUNT(*) FROM scan_info").fetchone()[0], 1)

    def test_hostinfo_is_shared(self) -> None:
        """Open ports are one list for every agent, and survive a restart."""
        self.assertEqual(self.state.host_ports("10.0.0.1", "22(tcp)"), "")
        self.restart()
        self.assertIsNone(self.state.host_ports("10.0.0.1", "22(tcp)"))
        self.assertEqual(self.state.host_ports("10.0.0.1", "80(tcp)"), "22(tcp)")


class ScaTests(StateTestCase):
    """SCA: an alert per changed check result, across restarts; resend requests."""

    def test_changed_result_alerts_once_across_restarts(self) -> None:
        """A new check alerts; the same result after a restart does not; a change does."""
        alert = self.process(line("p", "sca", sca_check(1, "passed")))
        assert alert is not None
        self.assertNotIn("previous_result", alert["data"]["sca"]["check"])
        self.restart()
        self.assertIsNone(self.process(line("p", "sca", sca_check(1, "passed")), 1))
        alert = self.process(line("p", "sca", sca_check(1, "failed")), 2)
        assert alert is not None
        self.assertEqual(alert["data"]["sca"]["check"]["previous_result"], "passed")
        self.restart()
        self.assertIsNone(self.process(line("p", "sca", sca_check(1, "failed")), 3))

    def test_summary_asks_for_a_dump_when_results_differ(self) -> None:
        """A summary whose hash the stored results do not give asks the agent to resend;
        one that matches asks nothing. A first scan's summary of a policy with no stored
        scan asks for a first scan for that reason too: twice in all, as Wazuh does."""
        self.process(line("p", "sca", sca_check(1, "passed")))
        self.process(line("p", "sca", sca_check(2, None)))
        self.state.take_replies()
        summary = sca_summary("pol", 7, "x" * 64)
        self.process(line("p", "sca", dict(summary, first_scan=1)))
        self.assertEqual(
            self.state.take_replies(), [("003", "#!-sca-dump:pol:1"), ("003", "#!-sca-dump:pol:1")]
        )
        good = results_hash(["passed", "not applicable"])
        self.assertEqual(good, results_hash(["passed", ""]))
        self.process(line("p", "sca", dict(summary, hash=good)))
        self.assertEqual(self.state.take_replies(), [])
        # A scan is stored now: a differing hash asks once.
        self.process(line("p", "sca", summary))
        self.assertEqual(self.state.take_replies(), [("003", "#!-sca-dump:pol:0")])

    def test_first_scan_of_an_unknown_policy_asks_once_when_results_match(self) -> None:
        """No stored scan and a first scan: one request for a first scan, even when the
        stored results already give the hash; not a first scan: none (it alerts)."""
        self.process(line("p", "sca", sca_check(1, "passed")))
        good = results_hash(["passed"])
        summary = sca_summary("pol", 7, good)
        self.process(line("p", "sca", dict(summary, first_scan=1)))
        self.assertEqual(self.state.take_replies(), [("003", "#!-sca-dump:pol:1")])
        self.process(line("p", "sca", dict(summary, policy_id="other")))
        self.assertEqual(self.state.take_replies(), [("003", "#!-sca-dump:other:0")])

    def test_dump_end_forgets_checks_not_resent(self) -> None:
        """After a resend, checks of the policy that it did not refresh are gone."""
        self.process(line("p", "sca", sca_check(1, "passed", scan_id=7)))
        self.process(line("p", "sca", sca_check(2, "passed", scan_id=7)))
        self.process(line("p", "sca", sca_check(1, "passed", scan_id=8)))
        self.process(line("p", "sca", {"type": "dump_end", "policy_id": "pol", "scan_id": 8}))
        self.assertEqual(self.state.sca_result("003", "1"), "passed")
        self.assertIsNone(self.state.sca_result("003", "2"))

    def test_dump_end_checks_the_results_again(self) -> None:
        """After a resend the stored results are compared with the summary's hash: still
        different asks for another resend (not a first scan); matching asks nothing."""
        good = results_hash(["passed", "failed"])
        summary = sca_summary("pol", 8, good)
        self.process(line("p", "sca", summary))
        self.state.take_replies()
        self.process(line("p", "sca", sca_check(1, "passed", scan_id=8)))
        self.process(line("p", "sca", {"type": "dump_end", "policy_id": "pol", "scan_id": 8}))
        self.assertEqual(self.state.take_replies(), [("003", "#!-sca-dump:pol:0")])
        self.process(line("p", "sca", sca_check(1, "passed", scan_id=9)))
        self.process(line("p", "sca", sca_check(2, "failed", scan_id=9)))
        self.process(line("p", "sca", {"type": "dump_end", "policy_id": "pol", "scan_id": 9}))
        self.assertEqual(self.state.take_replies(), [])

    def test_changed_policy_file_drops_checks_and_asks_a_first_scan(self) -> None:
        """A summary whose hash_file differs from the stored one drops the policy's checks
        and asks for them as a first scan, in SQLite and in memory alike."""
        good = results_hash(["passed"])
        summary = sca_summary("pol", 7, good)
        for state in (self.state, MemoryState()):
            state.sca_save_check("003", "1", "passed", sca_check(1, "passed"))
            self.assertFalse(state.sca_save_scan("003", "pol", dict(summary, hash_file="a")))
            self.assertFalse(state.sca_save_scan("003", "pol", dict(summary, hash_file="a")))
            self.assertEqual(state.sca_result("003", "1"), "passed")
            self.assertTrue(state.sca_save_scan("003", "pol", dict(summary, hash_file="b")))
            self.assertIsNone(state.sca_result("003", "1"))
        self.process(line("p", "sca", sca_check(1, "passed")))
        self.process(line("p", "sca", dict(summary, hash_file="b")))
        self.assertEqual(self.state.take_replies(), [])
        # Wazuh asks for a first scan, then again for the results it just dropped (as a
        # first scan only when the summary is one).
        self.process(line("p", "sca", dict(summary, hash_file="c")))
        self.assertEqual(
            self.state.take_replies(), [("003", "#!-sca-dump:pol:1"), ("003", "#!-sca-dump:pol:0")]
        )
        self.process(line("p", "sca", dict(summary, hash_file="d", first_scan=1)))
        self.assertEqual(
            self.state.take_replies(), [("003", "#!-sca-dump:pol:1"), ("003", "#!-sca-dump:pol:1")]
        )

    def test_dump_end_without_a_summary_asks_nothing(self) -> None:
        """No summary stored: nothing to compare the resent results with."""
        self.process(line("p", "sca", sca_check(1, "passed", scan_id=8)))
        self.process(line("p", "sca", {"type": "dump_end", "policy_id": "pol", "scan_id": 8}))
        self.assertEqual(self.state.take_replies(), [])

    def test_policies_forgets_others(self) -> None:
        """A ``policies`` list drops the checks and scans of the other policies."""
        self.process(line("p", "sca", sca_check(1, "passed")))
        self.process(line("p", "sca", {"type": "policies", "policies": ["other"]}))
        self.assertIsNone(self.state.sca_result("003", "1"))

    def test_memory_state_hashes_alike(self) -> None:
        """The in-memory state answers the same results hash."""
        memory = MemoryState()
        for check_id, result in ((2, "failed"), (10, "passed")):
            event = sca_check(check_id, result)
            memory.sca_save_check("003", str(check_id), result, event)
            self.state.sca_save_check("003", str(check_id), result, event)
        self.assertEqual(
            memory.sca_results_hash("003", "pol"), self.state.sca_results_hash("003", "pol")
        )
        self.assertEqual(memory.sca_results_hash("003", "pol"), results_hash(["failed", "passed"]))


PACKAGES = [
    {"name": name, "version": "1.0", "item_id": f"id-{name}", "checksum": f"sum-{name}"}
    for name in ("bash", "curl", "openssh-server", "zsh")
]


def delta(table: str, operation: str, row: dict[str, Any]) -> str:
    """A syscollector delta line."""
    return line(
        "d", "syscollector", {"type": f"dbsync_{table}", "operation": operation, "data": row}
    )


def dbsync(component: str, kind: str, data: dict[str, Any]) -> str:
    """A dbsync line."""
    location = component if component.startswith("fim") else "syscollector"
    return line("5", location, {"component": component, "type": kind, "data": data})


def inventory(state: SqliteState, table: str) -> dict[str, dict[str, Any]]:
    """The stored rows of an inventory table, by key."""
    rows = state._db("003").execute(
        "SELECT key, data FROM inventory WHERE kind = ? ORDER BY key", (table,)
    )
    return {key: json.loads(data) for key, data in rows}


class SyscollectorTests(StateTestCase):
    """Deltas and full states reach the same inventory; integrity checks repair it."""

    def test_delta_and_full_state_converge(self) -> None:
        """One store fed deltas, another fed the full state: the same rows."""
        for row in PACKAGES:
            self.process(delta("packages", "INSERTED", row))
        self.process(delta("packages", "DELETED", PACKAGES[1]))
        modified = dict(PACKAGES[0], version="2.0", checksum="sum-bash-2")
        self.process(delta("packages", "MODIFIED", modified))
        by_delta = inventory(self.state, "packages")

        other = SqliteState(os.path.join(self.home, "other"))
        self.addCleanup(other.close)
        self.engine.agent_state = other
        for row in (modified, PACKAGES[2], PACKAGES[3]):
            data = {"index": row["item_id"], "timestamp": "", "attributes": row}
            self.engine.process(parse_queue_message(dbsync("syscollector_packages", "state", data)))
        self.assertEqual(inventory(other, "packages"), by_delta)
        self.assertEqual(sorted(by_delta), ["id-bash", "id-openssh-server", "id-zsh"])

    def test_integrity_global_match_and_stale_rows(self) -> None:
        """A global check over what the agent has: a row the agent lost is deleted, the
        rest matches, and no reply is due."""
        for row in PACKAGES:
            self.process(delta("packages", "INSERTED", row))
        kept = PACKAGES[:3]
        check = {
            "begin": "id-bash",
            "end": "id-openssh-server",
            "checksum": range_checksum(row["checksum"] for row in kept),
            "id": 1,
        }
        self.process(dbsync("syscollector_packages", "integrity_check_global", check))
        self.assertEqual(self.state.take_replies(), [])
        self.assertEqual(sorted(inventory(self.state, "packages")), [r["item_id"] for r in kept])

    def test_integrity_empty_range_asks_for_rows(self) -> None:
        """Nothing stored in the range: ``no_data`` with the range, without tail or checksum."""
        check = {"begin": "a", "checksum": "0" * 40, "end": "b", "id": 5, "tail": "c"}
        self.process(dbsync("syscollector_hotfixes", "integrity_check_left", check))
        self.assertEqual(
            self.state.take_replies(),
            [("003", '#!-syscollector_hotfixes dbsync no_data {"begin":"a","end":"b","id":5}')],
        )


class FimSyncTests(StateTestCase):
    """The FIM synchronisation walk-through of Wazuh's documentation: the agent has a < b <
    c < d, the manager lost c and still has a stale z."""

    def test_walk_through(self) -> None:
        """Global fails (z deleted), right half fails, the single row is asked for, its state
        repairs the table, and the next global check matches silently."""
        sums = {name: f"sum-{name}" for name in "abcd"}
        for name in ("a", "b", "d", "z"):
            self.process(dbsync("fim_file", "state", fim_row(name, f"sum-{name}")))
        whole = range_checksum(sums[name] for name in "abcd")
        check = {"begin": "a", "checksum": whole, "end": "d", "id": 9}
        self.process(dbsync("fim_file", "integrity_check_global", check))
        self.assertEqual(
            self.state.take_replies(),
            [("003", '#!-fim_file dbsync checksum_fail {"begin":"a","end":"d","id":9}')],
        )
        self.assertIsNone(self.state.fim_get("003", "z"))
        left = {"begin": "a", "checksum": range_checksum([sums["a"], sums["b"]]), "end": "b"}
        self.process(dbsync("fim_file", "integrity_check_left", dict(left, id=9, tail="c")))
        right = {"begin": "c", "checksum": range_checksum([sums["c"], sums["d"]]), "end": "d"}
        self.process(dbsync("fim_file", "integrity_check_right", dict(right, id=9)))
        self.assertEqual(
            self.state.take_replies(),
            [("003", '#!-fim_file dbsync checksum_fail {"begin":"c","end":"d","id":9}')],
        )
        single = {"begin": "c", "checksum": range_checksum([sums["c"]]), "end": "c", "id": 9}
        self.process(dbsync("fim_file", "integrity_check_left", dict(single, tail="d")))
        self.assertEqual(
            self.state.take_replies(),
            [("003", '#!-fim_file dbsync no_data {"begin":"c","end":"c","id":9}')],
        )
        self.process(dbsync("fim_file", "state", fim_row("c", "sum-c")))
        self.restart()
        self.process(dbsync("fim_file", "integrity_check_global", check))
        self.assertEqual(self.state.take_replies(), [])
        connection = self.state._db("003")
        row = connection.execute(
            "SELECT n_attempts, n_completions FROM sync_info WHERE component = 'fim_file'"
        ).fetchone()
        self.assertEqual(row, (2, 1))

    def test_clear_and_events(self) -> None:
        """An event stores the entry with its columns; ``integrity_clear`` empties FIM."""
        event = {
            "type": "event",
            "data": {
                "path": "/etc/passwd",
                "mode": "scheduled",
                "type": "added",
                "timestamp": 1718022911,
                "attributes": {
                    "type": "file",
                    "size": 42,
                    "inode": "7",
                    "hash_md5": "m" * 32,
                    "checksum": "k" * 40,
                },
            },
        }
        alert = self.process(line("8", "syscheck", event))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "100101")
        row = (
            self.state._db("003")
            .execute("SELECT path, size, inode, md5, checksum, date FROM fim_entry")
            .fetchone()
        )
        self.assertEqual(row, ("/etc/passwd", 42, 7, "m" * 32, "k" * 40, 1718022911.0))
        self.process(dbsync("fim_file", "integrity_clear", {"id": 3}))
        self.assertIsNone(self.state.fim_get("003", "/etc/passwd"))

    def test_memory_state_answers_alike(self) -> None:
        """The in-memory state answers the walk-through's first check the same way."""
        memory = MemoryState()
        engine: Engine = self.engine
        engine.agent_state = memory
        for name in ("a", "b", "d"):
            engine.process(parse_queue_message(dbsync("fim_file", "state", fim_row(name, name))))
        check = {"begin": "a", "checksum": range_checksum("abcd"), "end": "d", "id": 1}
        engine.process(parse_queue_message(dbsync("fim_file", "integrity_check_global", check)))
        self.assertEqual(
            memory.take_replies(),
            [("003", '#!-fim_file dbsync checksum_fail {"begin":"a","end":"d","id":1}')],
        )

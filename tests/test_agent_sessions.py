"""Tests for wazuhcluster.agents.sessions: status transitions, dirty rows, shared-file pushes."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents import control, sessions
from wazuhcluster.agents.sessions import (
    AgentInfoRow,
    AgentStatus,
    RefreshRow,
    SessionTable,
    SharedPush,
    StatusChange,
)

UNAME = "Linux |h1 |6.1 |#1 SMP |x86_64 [Debian GNU/Linux|debian: 12]"
GROUP_SUM = "c" * 32


def _keepalive(
    merged: str | None = GROUP_SUM, version: str = "Wazuh v4.14.7"
) -> control.KeepAliveData:
    text = control.format_keepalive(UNAME, version, "d" * 32, ['"team":blue'], merged, "10.9.0.1")
    return control.parse_keepalive(text[len(control.CONTROL_HEADER) :])


class StatusTests(SynchronousTestCase):
    """never_connected → pending → active → disconnected, on a task.Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.changes: list[StatusChange] = []
        self.table = SessionTable(self.clock, "w1", 900.0, status_sink=self.changes.append)

    def test_full_cycle_with_timeout(self) -> None:
        """Startup gives pending, keep-alive active, and 900 s of silence disconnected."""
        self.assertEqual(self.table.status("001"), AgentStatus.NEVER_CONNECTED)
        self.table.startup("001", "a1", "any", "10.0.0.1", "v4.14.7")
        self.assertEqual(self.table.status("001"), AgentStatus.PENDING)
        self.clock.advance(5)
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.assertEqual(self.table.status("001"), AgentStatus.ACTIVE)
        self.clock.advance(899)
        self.assertEqual(self.table.check_disconnections(), [])
        self.clock.advance(1)
        self.assertEqual(self.table.check_disconnections(), ["001"])
        self.assertEqual(self.table.status("001"), AgentStatus.DISCONNECTED)
        self.assertEqual(
            [(c.old, c.new, c.reason) for c in self.changes],
            [
                (AgentStatus.NEVER_CONNECTED, AgentStatus.PENDING, "startup"),
                (AgentStatus.PENDING, AgentStatus.ACTIVE, "keep-alive"),
                (AgentStatus.ACTIVE, AgentStatus.DISCONNECTED, "keep-alive timeout"),
            ],
        )
        self.assertEqual(self.changes[-1].at, 1905)

    def test_keepalive_resets_timer(self) -> None:
        """Keep-alives before the limit keep the agent active."""
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        for _ in range(10):
            self.clock.advance(600)
            self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
            self.assertEqual(self.table.check_disconnections(), [])
        self.assertEqual(self.table.status("001"), AgentStatus.ACTIVE)

    def test_pending_times_out(self) -> None:
        """A startup never followed by a keep-alive also times out."""
        self.table.startup("002", "a2", "any", "10.0.0.2", None)
        self.clock.advance(900)
        self.assertEqual(self.table.check_disconnections(), ["002"])

    def test_shutdown(self) -> None:
        """A shutdown disconnects at once; a new startup makes the agent pending again."""
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.table.shutdown("001", "a1", "any")
        self.assertEqual(self.table.status("001"), AgentStatus.DISCONNECTED)
        self.clock.advance(2000)
        self.assertEqual(self.table.check_disconnections(), [])
        self.table.startup("001", "a1", "any", "10.0.0.1", "v4.14.7")
        self.assertEqual(self.table.status("001"), AgentStatus.PENDING)
        self.assertEqual(self.table.counts()[AgentStatus.PENDING], 1)

    def test_custom_disconnection_time(self) -> None:
        """agents_disconnection_time is honoured."""
        table = SessionTable(self.clock, "w1", disconnection_time=30)
        table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.clock.advance(29)
        self.assertEqual(table.check_disconnections(), [])
        self.clock.advance(1)
        self.assertEqual(table.check_disconnections(), ["001"])


class DirtyRowTests(SynchronousTestCase):
    """Changed agents become dirty rows for the agent-info sync."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(50)
        self.table = SessionTable(self.clock, "worker-2")

    def test_row_contents(self) -> None:
        """A keep-alive row carries status, OS, version, labels, sums, IPs and node."""
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        [row] = self.table.take_dirty()
        assert isinstance(row, AgentInfoRow)
        self.assertEqual(row.agent_id, "001")
        self.assertEqual(row.node_name, "worker-2")
        self.assertEqual(row.status, AgentStatus.ACTIVE)
        self.assertEqual(
            (row.os_name, row.os_platform, row.os_major), ("Debian GNU/Linux", "debian", "12")
        )
        self.assertEqual(row.os_arch, "x86_64")
        self.assertEqual(row.version, "Wazuh v4.14.7")
        self.assertEqual(row.labels, ('"team":blue',))
        self.assertEqual((row.merged_sum, row.config_sum), (GROUP_SUM, "d" * 32))
        self.assertEqual(row.agent_ip, "10.9.0.1")
        self.assertEqual((row.last_keepalive, row.timestamp), (50, 50))
        self.assertTrue(row.full)
        self.assertEqual(self.table.take_dirty(), [])

    def test_keepalive_only_rows(self) -> None:
        """An identical keep-alive gives a non-full row, or none when keepalives=False."""
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.table.take_dirty()
        self.clock.advance(10)
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.assertEqual(self.table.take_dirty(keepalives=False), [])
        [row] = self.table.take_dirty()
        self.assertFalse(row.full)
        self.assertEqual(row.last_keepalive, 60)

    def test_keepalive_only_rows_skip_the_full_fields(self) -> None:
        """A keep-alive-only agent gives a RefreshRow of the fields the master updates,
        without the uname being shortened; a changed agent still gives a whole row."""
        shortened: list[str] = []

        def counting_short_uname(uname: str) -> str:
            shortened.append(uname)
            return control.short_uname(uname)

        self.patch(sessions, "short_uname", counting_short_uname)
        for agent_id in ("001", "002"):
            self.table.keepalive(agent_id, "a", "any", "10.0.0.1", _keepalive())
        self.table.take_dirty()
        self.assertEqual(len(shortened), 2)
        self.clock.advance(10)
        self.table.keepalive("001", "a", "any", "10.0.0.1", _keepalive())
        self.table.keepalive("002", "a", "any", "10.0.0.1", _keepalive(version="Wazuh v4.14.8"))
        rows = {row.agent_id: row for row in self.table.take_dirty()}
        self.assertEqual(len(shortened), 3)
        refresh, changed = rows["001"], rows["002"]
        self.assertEqual(
            refresh,
            RefreshRow("001", AgentStatus.ACTIVE, 60.0, None, 60.0, refresh.seq),
        )
        self.assertFalse(hasattr(refresh, "os_name") or hasattr(refresh, "os_uname"))
        assert isinstance(changed, AgentInfoRow)
        self.assertTrue(changed.full)
        self.assertEqual(
            (changed.version, changed.os_uname), ("Wazuh v4.14.8", control.short_uname(UNAME))
        )
        self.assertEqual(changed.last_keepalive, 60.0)

    def test_changes_mark_dirty(self) -> None:
        """A version, sum or status change makes the row full again."""
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.table.take_dirty()
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive(version="Wazuh v4.14.8"))
        [row] = self.table.take_dirty()
        self.assertTrue(row.full)
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive(merged="e" * 32))
        self.assertTrue(self.table.take_dirty()[0].full)
        self.table.shutdown("001", "a1", "any")
        [row] = self.table.take_dirty()
        self.assertEqual(row.status, AgentStatus.DISCONNECTED)
        self.assertTrue(row.full)

    def test_sequence_and_timestamp(self) -> None:
        """seq grows with every row; a time-out row keeps the last keep-alive as timestamp."""
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        first = self.table.take_dirty()[0]
        self.clock.advance(900)
        self.table.check_disconnections()
        second = self.table.take_dirty()[0]
        self.assertGreater(second.seq, first.seq)
        self.assertEqual(second.status, AgentStatus.DISCONNECTED)
        self.assertEqual(second.timestamp, 50)
        self.assertEqual(second.disconnection_time, 950)

    def test_limit(self) -> None:
        """take_dirty(limit=n) leaves the rest for the next call."""
        for i in range(5):
            self.table.keepalive(f"{i:03}", f"a{i}", "any", "10.0.0.1", _keepalive())
        self.assertEqual(self.table.dirty_count, 5)
        self.assertEqual(len(self.table.take_dirty(limit=2)), 2)
        self.assertEqual(len(self.table.take_dirty()), 3)
        self.table.mark_all_dirty()
        self.assertEqual(len(self.table.take_dirty()), 5)

    def test_forget(self) -> None:
        """A forgotten agent leaves no session and no dirty row."""
        self.table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.table.forget("001")
        self.assertEqual(self.table.take_dirty(), [])
        self.assertEqual(len(self.table), 0)


class SharedPushTests(SynchronousTestCase):
    """Agents whose merged.mg sum differs from their group's get a push."""

    def test_push_when_sums_differ(self) -> None:
        """A stale sum asks for a push and marks 'not synced'; the right sum is 'synced'."""
        targets = {"001": ("f" * 32, "/shared/default/merged.mg")}
        table = SessionTable(Clock(), "w1", merged_for=targets.get)
        push = table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive())
        self.assertEqual(push, SharedPush("001", "f" * 32, "/shared/default/merged.mg"))
        self.assertEqual(table.take_dirty()[0].group_config_status, "not synced")
        self.assertIsNone(table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive("f" * 32)))
        self.assertEqual(table.take_dirty()[0].group_config_status, "synced")

    def test_no_group_no_push(self) -> None:
        """Without a group file there is nothing to push."""
        table = SessionTable(Clock(), "w1", merged_for=lambda agent_id: None)
        self.assertIsNone(table.keepalive("001", "a1", "any", "10.0.0.1", _keepalive()))

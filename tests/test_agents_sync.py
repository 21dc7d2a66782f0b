"""Agent-info and agent-groups: wire formats, conflict resolution, and the syncs over a link."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import HeldThreads, InMemoryCluster
from tests.test_registry_link import _SyncRegistryService
from wazuhcluster.agents import control, groups_table
from wazuhcluster.agents.info import InfoError, decode_reports, encode_rows
from wazuhcluster.agents.sessions import SessionTable
from wazuhcluster.config.auth_settings import default_auth
from wazuhcluster.config.home import Home
from wazuhcluster.control.commands import NotConnected
from wazuhcluster.master.agents import MasterAgents
from wazuhcluster.master.registry import MasterRegistry
from wazuhcluster.registry.model import AgentInfoReport
from wazuhcluster.registry.store import Registry
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire import agents as wire
from wazuhcluster.worker.agents import WorkerAgents
from wazuhcluster.worker.link import MasterLink

UNAME = (
    "Linux |web-1 |6.1.0 |#1 SMP |x86_64 [Debian GNU/Linux|debian: 12 (bookworm)] - Wazuh v4.14.7"
)


def keepalive(labels: tuple[str, ...] = ('"env":prod',)) -> control.KeepAliveData:
    """A parsed 4.x keep-alive."""
    text = control.format_keepalive(
        UNAME.rsplit(" - ", 1)[0], "Wazuh v4.14.7", "abc123", list(labels), "f" * 32, "10.0.0.7"
    )
    parsed = control.parse_agent_control(text)
    assert isinstance(parsed, control.KeepAlive), parsed
    return parsed.data


class WireTests(SynchronousTestCase):
    """Agent-info rows and agent-groups tables on the wire."""

    def test_rows_round_trip(self) -> None:
        """Rows from a session table decode into registry reports named after the sender."""
        clock = Clock()
        sessions = SessionTable(clock, "spoofed-name")
        sessions.startup("001", "web-1", "any", "10.0.0.7", "Wazuh v4.14.7")
        clock.advance(5)
        sessions.keepalive("001", "web-1", "any", "10.0.0.7", keepalive())
        [report] = decode_reports(encode_rows(sessions.take_dirty()), "worker1")
        self.assertEqual(report.node_name, "worker1")
        self.assertEqual(report.connection_status, "active")
        self.assertEqual(report.status_time, 5.0)
        self.assertEqual(report.last_keepalive, 5.0)
        self.assertEqual(report.config_sum, "abc123")
        self.assertEqual(report.labels, (("env", "prod"),))
        self.assertTrue(report.version.endswith("4.14.7"))

    def test_keepalive_only_rows_are_refreshes(self) -> None:
        """A row whose agent only sent the same keep-alive again travels without its OS
        fields, and applying it moves the times on while the registry keeps those fields."""
        clock = Clock()
        sessions = SessionTable(clock, "w")
        registry = Registry.open(Path(self.mktemp()) / "global.db")
        registry.enroll("web-1")
        sessions.keepalive("001", "web-1", "any", "10.0.0.7", keepalive())
        registry.apply_agent_info(decode_reports(encode_rows(sessions.take_dirty()), "worker1"))
        clock.advance(10)
        sessions.keepalive("001", "web-1", "any", "10.0.0.7", keepalive())
        data = encode_rows(sessions.take_dirty())
        self.assertNotIn(b"os_uname", data)
        [report] = decode_reports(data, "worker1")
        self.assertTrue(report.refresh_only)
        self.assertEqual(registry.apply_agent_info([report]).applied, 1)
        agent = registry.get_agent("001")
        assert agent is not None
        self.assertEqual((agent.last_keepalive, agent.status_time), (10.0, 10.0))
        # Wazuh stores os_uname without the OS bracket (parse_uname_string cuts it).
        self.assertEqual((agent.os_uname, agent.config_sum, agent.labels),
                         (UNAME.split(" [", 1)[0], "abc123", (("env", "prod"),)))  # fmt: skip

    def test_large_report_applied_in_batches(self) -> None:
        """A report with more rows than one registry batch is applied in several, and the
        counts add up."""
        from wazuhcluster.master import agents as master_agents

        self.patch(master_agents, "MAX_BATCH", 2)
        registry = Registry.open(Path(self.mktemp()) / "global.db")
        for name in ("a1", "a2", "a3", "a4"):
            registry.enroll(name)
        data = b"".join(
            b'{"id":"%03d","status":"active","time":5,"seq":%d}\n' % (n, n) for n in range(1, 6)
        )
        result = master_agents.apply_in_batches(registry, decode_reports(data, "w1"))
        self.assertEqual((result.applied, result.stale, result.unknown), (4, 0, 1))
        self.assertEqual({a.node_name for a in registry.list_agents()}, {"w1"})

    def test_full_table_encoded_once_per_version(self) -> None:
        """Workers asking for the whole table get the same bytes while it is unchanged, and
        the new table once a refresh changed it."""
        from twisted.internet.defer import succeed

        from wazuhcluster.master.agents import MasterAgents

        sent: list[tuple[str, bytes]] = []

        def link(name: str) -> Any:
            def send(kind: str, data: bytes, size: int) -> object:
                sent.append((name, data))
                return succeed(None)

            streams = SimpleNamespace(send=send)
            return SimpleNamespace(name=name, state={}, protocol=SimpleNamespace(streams=streams))

        timings = SimpleNamespace(local_agent_groups=10.0, sync_agent_info=10.0)
        agents = MasterAgents(SimpleNamespace(timings=timings, workers=[]), None, Clock())
        agents.table.update({"001": ("default",)})
        agents.checksum = groups_table.checksum(agents.table)
        agents.send_full(link("w1"))
        agents.send_full(link("w2"))
        self.assertIs(sent[0][1], sent[1][1])
        agents.table["002"] = ("web",)
        agents.checksum = groups_table.checksum(agents.table)
        agents.send_full(link("w1"))
        self.assertIn(b'"002":["web"]', sent[2][1])

    def test_bad_reports_refused(self) -> None:
        """Malformed lines reject the whole report with the line number."""
        good = b'{"id":"001","status":"active","time":1,"seq":1}\n'
        self.assertEqual(len(decode_reports(good, "w")), 1)
        for bad in (
            b"not json",
            b'{"id":"../1","status":"active","time":1}',
            b'{"id":"001","status":"angry","time":1}',
            b'{"id":"001","status":"active"}',
            b'{"id":"001","status":"active","time":-1}',
            b'{"id":"001","status":"active","time":1,"refresh":1}',
            b"x" * 20000,
            good.rstrip() + b" " + good.rstrip(),
            b" " + good.rstrip(),
        ):
            with self.assertRaises(InfoError) as caught:
                decode_reports(good + bad, "w")
            self.assertIn("line 2", str(caught.exception))
        with self.assertRaises(InfoError):
            decode_reports(good * 3, "w", max_rows=2)
        with self.assertRaises(InfoError) as caught:
            decode_reports(good + b"\xff\n", "w")
        self.assertIn("not UTF-8", str(caught.exception))

    def test_groups_table_changes(self) -> None:
        """Diffs, validation and application of agent-groups changes."""
        old = {"001": ("default",), "002": ("default", "web")}
        new = {"001": ("web",), "003": ("default",)}
        changes = groups_table.diff(old, new)
        self.assertEqual(changes, {"001": ["web"], "003": ["default"], "002": None})
        table = dict(old)
        groups_table.apply_changes(table, groups_table.validate_changes(changes))
        self.assertEqual(table, new)
        self.assertEqual(groups_table.checksum(table), groups_table.checksum(new))
        for bad in ({"abc": ["x"]}, {"001": ["../etc"]}, {"001": []}, {"001": "web"}, []):
            self.assertRaises(groups_table.GroupsTableError, groups_table.validate_changes, bad)

    def test_merged_files(self) -> None:
        """One group uses its merged.mg, several a multigroup; sums follow file changes."""
        base = Path(self.mktemp())
        shared, multi = base / "shared", base / "multigroups"
        (shared / "web").mkdir(parents=True)
        (shared / "web" / "merged.mg").write_text("v1")
        table = {"001": ("web",), "002": ("default", "web")}
        lookup = groups_table.MergedFiles(shared, multi, table, run_in_thread=run_inline)
        first = lookup("001")
        assert first is not None
        self.assertEqual(first[1], str(shared / "web" / "merged.mg"))
        self.assertIsNone(lookup("002"))  # its multigroup file does not exist yet
        self.assertTrue(lookup.path_for(("default", "web")).parent.parent == multi)
        (shared / "web" / "merged.mg").write_text("version two")
        second = lookup("001")
        assert second is not None
        self.assertNotEqual(first[0], second[0])

    def test_merged_files_hashed_in_the_thread_runner(self) -> None:
        """The hash runs in the injected runner, never on the caller: while it is held the
        lookup answers at once (nothing known yet, then the last known sum); an unchanged
        file is not read again."""
        base = Path(self.mktemp())
        merged = base / "shared" / "web" / "merged.mg"
        merged.parent.mkdir(parents=True)
        merged.write_bytes(b"v1")
        threads = HeldThreads()
        lookup = groups_table.MergedFiles(
            base / "shared", base / "multi", {"001": ("web",)}, run_in_thread=threads
        )
        self.assertIsNone(lookup("001"))
        self.assertIsNone(lookup("001"))
        self.assertEqual(threads.calls, [groups_table.file_md5])  # one hash, however asked
        threads.release()
        first = hashlib.md5(b"v1").hexdigest()
        self.assertEqual(lookup("001"), (first, str(merged)))
        self.assertEqual(len(threads.calls), 1)  # unchanged: answered from the cache
        merged.write_bytes(b"version two")
        self.assertEqual(lookup("001"), (first, str(merged)))  # the new sum is being taken
        self.assertEqual(len(threads.calls), 2)
        threads.release()
        self.assertEqual(lookup("001"), (hashlib.md5(b"version two").hexdigest(), str(merged)))

    def test_merged_files_stat_at_most_once_per_interval(self) -> None:
        """With a clock, keep-alives of many agents sharing a merged.mg cost one stat per
        interval; a change, a removal and a new file are still seen once it has passed."""
        base = Path(self.mktemp())
        merged = base / "shared" / "web" / "merged.mg"
        merged.parent.mkdir(parents=True)
        merged.write_bytes(b"v1")
        stats: list[Path] = []
        stat_stamp = groups_table.stat_stamp

        def counted(path: Path) -> groups_table.Stamp | None:
            stats.append(path)
            return stat_stamp(path)

        self.patch(groups_table, "stat_stamp", counted)
        clock = Clock()
        table = {f"{n:03}": ("web",) for n in range(1, 51)}
        table["100"] = ("default",)
        lookup = groups_table.MergedFiles(
            base / "shared", base / "multi", table, run_in_thread=run_inline, clock=clock
        )
        first = (hashlib.md5(b"v1").hexdigest(), str(merged))
        self.assertEqual(lookup("001"), first)
        before = len(stats)  # the hash's own result makes the next call stat again
        for agent_id in table:
            if agent_id != "100":
                self.assertEqual(lookup(agent_id), first)
        self.assertEqual(len(stats), before + 1)
        self.assertIsNone(lookup("100"))  # default/merged.mg is not there
        self.assertIsNone(lookup("100"))
        self.assertEqual(len(stats), before + 2)

        merged.write_bytes(b"version two")
        (base / "shared" / "default").mkdir()
        (base / "shared" / "default" / "merged.mg").write_bytes(b"d")
        clock.advance(groups_table.STAT_INTERVAL / 2)
        self.assertEqual(lookup("001"), first)  # not stat'ed again yet
        self.assertIsNone(lookup("100"))
        self.assertEqual(len(stats), before + 2)
        clock.advance(groups_table.STAT_INTERVAL / 2)
        self.assertEqual(lookup("001"), (hashlib.md5(b"version two").hexdigest(), str(merged)))
        self.assertEqual(
            lookup("100"),
            (hashlib.md5(b"d").hexdigest(), str(base / "shared" / "default" / "merged.mg")),
        )

        merged.unlink()
        clock.advance(groups_table.STAT_INTERVAL)
        self.assertIsNone(lookup("001"))


class ConflictTests(SynchronousTestCase):
    """The registry keeps, per agent, the newest report from any node (Wazuh #24401)."""

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["worker1", "worker2"]),
                st.integers(0, 50),
                st.sampled_from(["active", "disconnected"]),
            ),
            min_size=1,
            max_size=12,
        ),
        st.randoms(),
    )
    def test_newest_report_wins(self, reports: list[tuple[str, int, str]], rnd: object) -> None:
        """Whatever order reports arrive in, the registry ends with the newest one."""
        registry = Registry.open(Path(self.mktemp()) / "global.db")
        registry.enroll("web-1")
        made = [
            AgentInfoReport("001", node, float(time), seq, status)
            for seq, (node, time, status) in enumerate(reports, start=1)
        ]
        shuffled = list(made)
        rnd.shuffle(shuffled)  # type: ignore[attr-defined]
        for report in shuffled:
            registry.apply_agent_info([report])
        newest = max(made, key=lambda r: (r.status_time, r.status_seq))
        agent = registry.get_agent("001")
        assert agent is not None
        self.assertEqual(
            (agent.node_name, agent.connection_status), (newest.node_name, newest.connection_status)
        )


class AgentSyncLinkTests(SynchronousTestCase):
    """The syncs between a master and a worker, in memory."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())
        home = self.cluster.master_home
        self.registry = MasterRegistry(
            home,
            default_auth(home.root),
            self.cluster.master,
            self.cluster.reactor,
            registry_service=_SyncRegistryService(home),
        )
        self.master = MasterAgents(
            self.cluster.master, self.registry, self.cluster.reactor, run_in_thread=run_inline
        )
        for feature in (self.registry, self.master):
            self.cluster.master.features.add(feature)
        self.store = self.registry.registry
        for name in ("web-1", "web-2"):
            self.successResultOf(self.store.enroll(name, "any"))
        self.successResultOf(self.store.create_group("web"))
        self.successResultOf(ensureDeferred(self.master.refresh_groups()))
        self.sessions = SessionTable(self.cluster.reactor, "worker1")

        self.asked: list[tuple[list[str], int]] = []

        def reconnect(ids: list[str], count: int) -> list[str]:
            self.asked.append((ids, count))
            return [i for i in ids if i == "001"]

        self.messages: list[tuple[list[str], str]] = []

        def send_message(ids: list[str], message: str) -> list[str]:
            self.messages.append((ids, message))
            return [i for i in ids if i in ("001", "002")]

        channel = SimpleNamespace(
            sessions=self.sessions, reconnect=reconnect, send_message=send_message
        )

        def features(link: MasterLink, home: Home) -> list[WorkerAgents]:
            self.worker = WorkerAgents(
                link, channel, self.cluster.reactor, run_in_thread=run_inline
            )
            return [self.worker]

        self.link = self.cluster.add_worker("worker1", features=features)
        self.cluster.connect(self.link)
        self.cluster.settle()

    def test_agent_info_reaches_master(self) -> None:
        """Status from the worker's sessions lands in the registry with the worker's name."""
        self.sessions.startup("001", "web-1", "any", "10.0.0.7", "Wazuh v4.14.7")
        self.sessions.keepalive("001", "web-1", "any", "10.0.0.7", keepalive())
        ensureDeferred(self.worker.send_info())
        self.cluster.settle()
        agent = self.successResultOf(self.store.get_agent("001"))
        assert agent is not None
        self.assertEqual((agent.connection_status, agent.node_name), ("active", "worker1"))
        self.assertEqual(self.worker.last_info["applied"], 1)
        status = self.cluster.master.health()["nodes"]["worker1"]["status"]
        self.assertEqual(status["last_sync_agentinfo"]["n_synced_chunks"], 1)

    def test_complete_agent_info_reaches_master(self) -> None:
        """Reported IP, every OS field, labels and both sums reach the registry, and a
        keep-alive that changes any of them is there after the next agent-info cycle."""
        self.sessions.keepalive(
            "001", "web-1", "any", "10.0.0.7", keepalive(('"env":prod', '!"owner":ops'))
        )
        ensureDeferred(self.worker.send_info())
        self.cluster.settle()
        agent = self.successResultOf(self.store.get_agent("001"))
        assert agent is not None
        self.assertEqual((agent.ip, agent.agent_ip, agent.address), ("any", "10.0.0.7", "10.0.0.7"))
        self.assertEqual(
            (agent.os_name, agent.os_version, agent.os_major, agent.os_minor),
            ("Debian GNU/Linux", "12", "12", ""),
        )
        self.assertEqual((agent.os_codename, agent.os_platform), ("bookworm", "debian"))
        self.assertEqual(agent.os_uname, "Linux |web-1 |6.1.0 |#1 SMP |x86_64")
        self.assertEqual(agent.labels, (("!owner", "ops"), ("env", "prod")))
        self.assertEqual((agent.config_sum, agent.merged_sum), ("abc123", "f" * 32))
        changed = control.format_keepalive(
            "Linux |web-1 |6.2.0 |#1 SMP |x86_64 [Ubuntu|ubuntu: 24.04.1 LTS (Noble Numbat)]",
            "Wazuh v4.14.7",
            "def456",
            ['"env":test'],
            "e" * 32,
            "10.0.0.8",
        )
        parsed = control.parse_agent_control(changed)
        assert isinstance(parsed, control.KeepAlive)
        self.cluster.reactor.advance(10)
        self.sessions.keepalive("001", "web-1", "any", "10.0.0.8", parsed.data)
        ensureDeferred(self.worker.send_info())
        self.cluster.settle()
        agent = self.successResultOf(self.store.get_agent("001"))
        assert agent is not None
        self.assertEqual(
            (agent.agent_ip, agent.os_major, agent.os_minor, agent.os_codename),
            ("10.0.0.8", "24", "04", "Noble Numbat"),
        )
        self.assertEqual((agent.labels, agent.config_sum), ((("env", "test"),), "def456"))

    def test_control_listing_shows_agent_info(self) -> None:
        """``wazuh-cluster-control -a --json`` rows carry the reported IP, the registered
        one, the OS, the visible labels and both sums."""
        self.sessions.keepalive(
            "001", "web-1", "any", "10.0.0.7", keepalive(('"env":prod', '!"owner":ops'))
        )
        ensureDeferred(self.worker.send_info())
        self.cluster.settle()
        listing = self.successResultOf(ensureDeferred(self.registry.manage("list_agents", {})))
        row = listing["agents"][0]
        self.assertEqual((row["id"], row["ip"], row["register_ip"]), ("001", "10.0.0.7", "any"))
        self.assertEqual(row["labels"], {"env": "prod"})
        self.assertEqual((row["config_sum"], row["merged_sum"]), ("abc123", "f" * 32))
        self.assertEqual(
            {k: row["os"][k] for k in ("name", "major", "codename", "platform", "uname")},
            {
                "name": "Debian GNU/Linux",
                "major": "12",
                "codename": "bookworm",
                "platform": "debian",
                "uname": "Linux |web-1 |6.1.0 |#1 SMP |x86_64",
            },
        )
        self.assertEqual(listing["agents"][1]["ip"], "any")

    def test_control_listing_pages_stay_under_amp_limit(self) -> None:
        """Listing pages end at a byte budget, so rows with long OS fields never overflow an
        AMP value; asking again from where a page stopped gets every agent once."""
        for number in range(3, 151):
            self.successResultOf(self.store.enroll(f"big-{number}", "any"))
        reports = [
            AgentInfoReport(f"{n:03d}", "worker1", 5.0, n, os_uname="u" * 1000, os_name="n" * 900)
            for n in range(1, 151)
        ]
        self.successResultOf(self.store.apply_agent_info(reports))
        ids: list[str] = []
        pages = 0
        while True:
            listing = self.successResultOf(
                ensureDeferred(self.registry.manage("list_agents", {"offset": len(ids)}))
            )
            self.assertLess(len(json.dumps(listing)), 65535)
            ids.extend(row["id"] for row in listing["agents"])
            pages += 1
            if not listing["agents"] or len(ids) >= listing["total"]:
                break
        self.assertEqual(ids, [f"{n:03d}" for n in range(1, 151)])
        self.assertGreater(pages, 1)

    def test_master_rows_match_worker_rows(self) -> None:
        """The master's own channel rows, whole or keep-alive refreshes, give the same
        report as a worker's over the wire."""
        from wazuhcluster.master.agents import report_from_row

        sessions = SessionTable(Clock(), "master")
        sessions.keepalive("001", "web-1", "any", "10.0.0.7", keepalive(('"e":1', '!"h":2')))
        [row] = sessions.take_dirty()
        local = report_from_row(row, "master")
        [remote] = decode_reports(encode_rows([row]), "master")
        self.assertEqual(local, remote)
        self.assertEqual(local.agent_ip, "10.0.0.7")
        sessions.keepalive("001", "web-1", "any", "10.0.0.7", keepalive(('"e":1', '!"h":2')))
        [refresh] = sessions.take_dirty()
        local = report_from_row(refresh, "master")
        [remote] = decode_reports(encode_rows([refresh]), "master")
        self.assertEqual(local, remote)
        self.assertTrue(local.refresh_only)

    def test_unknown_agents_are_counted(self) -> None:
        """Rows for agents the master does not know are ignored and counted."""
        self.sessions.startup("042", "ghost", "any", "10.0.0.8", "Wazuh v4.14.7")
        ensureDeferred(self.worker.send_info())
        self.cluster.settle()
        self.assertEqual(
            self.worker.last_info, {**self.worker.last_info, "unknown": 1, "applied": 0}
        )

    def test_groups_table_full_then_changes(self) -> None:
        """The worker gets the whole table on joining, then the changes."""
        self.assertEqual(self.worker.table, {"001": ("default",), "002": ("default",)})
        self.successResultOf(self.store.assign("002", "web"))
        ensureDeferred(self.master.refresh_groups())
        self.cluster.settle()
        self.assertEqual(self.worker.table["002"], ("default", "web"))
        self.assertEqual(self.worker.mismatches, 0)

    def test_drifted_worker_asks_for_everything(self) -> None:
        """A table that keeps disagreeing with the master's is replaced after a few cycles."""
        drift = {"mode": "changes", "changes": {"999": ["rogue"]}, "checksum": self.master.checksum}
        self.worker.on_stream(self.link, "agent-groups", "drift", json.dumps(drift).encode())
        limit = self.link.timings.agent_groups_mismatch_limit
        for _ in range(limit):
            ensureDeferred(self.master.refresh_groups())
            self.cluster.settle()
        self.assertNotIn("999", self.worker.table)
        self.assertEqual(groups_table.checksum(self.worker.table), self.master.checksum)

    def test_empty_change_sets_reuse_the_checksum(self) -> None:
        """The worker hashes its table again only after the table changed, not for every
        (mostly empty) change set."""
        hashed: list[int] = []
        real_checksum = groups_table.checksum

        def counting(table: groups_table.Table) -> str:
            hashed.append(len(table))
            return real_checksum(table)

        self.patch(groups_table, "checksum", counting)
        for _ in range(3):
            ensureDeferred(self.master.refresh_groups())
            self.cluster.settle()
        self.assertEqual(hashed, [])
        self.successResultOf(self.store.assign("002", "web"))
        ensureDeferred(self.master.refresh_groups())
        self.cluster.settle()
        self.assertEqual(hashed, [2])
        self.assertEqual(self.worker.mismatches, 0)

    def test_stop_cancels_groups_send(self) -> None:
        """A change set still on its way to a worker when the node stops is cancelled; the
        stop does not wait for it and nothing is logged as an error."""
        self.successResultOf(self.store.assign("002", "web"))
        ensureDeferred(self.master.refresh_groups())
        self.assertEqual(self.master.background.pending, ["Agent-groups send to worker1"])
        with capturedLogs() as events:
            self.successResultOf(self.master.background.stopService())
            self.cluster.settle()
        self.assertEqual(self.master.background.pending, [])
        self.assertEqual([e for e in events if e.get("log_failure") is not None], [])
        self.assertEqual(self.worker.table["002"], ("default",))

    def test_failed_request_for_the_table_is_logged(self) -> None:
        """The worker's request for the whole table runs in the background; its failure is
        logged with the reason, and a request in flight is cancelled at stop."""

        def not_connected(command: object, **arguments: object) -> object:
            raise NotConnected("Worker node is not connected to master")

        self.worker.master_checksum = "drifted"
        self.worker.mismatches = self.link.timings.agent_groups_mismatch_limit - 1
        self.link.call = not_connected  # type: ignore[method-assign]
        with capturedLogs() as events:
            self.worker._compare(self.worker.groups_log)
        del self.link.call  # the class's own again
        self.assertEqual(self.worker.background.pending, [])
        failed = [formatEvent(e) for e in events if e.get("log_failure") is not None]
        self.assertEqual(failed, ["Asking for the whole agent-groups table failed"])
        self.assertEqual(len(self.flushLoggedErrors(NotConnected)), 1)
        self.worker.mismatches = self.link.timings.agent_groups_mismatch_limit - 1
        self.worker._compare(self.worker.groups_log)
        self.assertEqual(
            self.worker.background.pending, ["Asking for the whole agent-groups table"]
        )
        self.successResultOf(self.worker.background.stopService())
        self.assertEqual(self.worker.background.pending, [])
        self.cluster.settle()

    def test_send_to_agents_reaches_workers(self) -> None:
        """A message for agents goes through the master's own channel first, then to the
        workers for the rest (in chunks of at most MAX_SEND_IDS ids); the ids reached come
        back by node."""
        self.master.local_channel = SimpleNamespace(
            send_message=lambda ids, message: [i for i in ids if i == "003"]
        )
        many = ["003", "001", "002", *[f"{n:05d}" for n in range(10, 10 + wire.MAX_SEND_IDS)]]
        sent = ensureDeferred(self.master.send_to_agents("#!-execd x", many))
        self.cluster.settle()
        self.assertEqual(self.successResultOf(sent), {"master": ["003"], "worker1": ["001", "002"]})
        self.assertEqual([len(ids) for ids, _ in self.messages], [wire.MAX_SEND_IDS, 2])
        self.assertNotIn("003", self.messages[0][0])
        self.assertEqual({message for _, message in self.messages}, {"#!-execd x"})

    def test_reconnect_reaches_workers(self) -> None:
        """A reconnect asked on the master is relayed to the workers, which report what they
        asked; the master's own agents are asked too when it has a channel."""
        self.master.local_channel = SimpleNamespace(reconnect=lambda ids, count: ["003"][:count])
        asked = ensureDeferred(self.master.reconnect(["001", "002"], 1))
        self.cluster.settle()
        self.assertEqual(self.successResultOf(asked), {"master": ["003"], "worker1": ["001"]})
        self.assertEqual(self.asked, [(["001", "002"], 0)])

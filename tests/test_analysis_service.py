"""The analysis service: queueing, batches, alerts.json, reloads that keep the old engine."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.test_analysis_queues import sca_summary
from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.analysis.alert_totals import AlertTally, day_items
from wazuhcluster.analysis.alerts import AlertWriter, Identity
from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.home import Home
from wazuhcluster.node.agent_stats import analysisd_agent_metrics
from wazuhcluster.node.alert_totals import read_day, totals_folder
from wazuhcluster.node.analysis_service import AnalysisService
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline

SSH_FAIL = (
    "Nov 26 10:00:00 web1 sshd[123]: Failed password for invalid user admin "
    "from 198.51.100.7 port 5555 ssh2"
)
CUSTOM_RULE = (
    '<group name="local,">\n  <rule id="100100" level="7">\n    <match>CUSTOM-MARKER</match>\n'
    "    <description>Custom marker seen</description>\n  </rule>\n</group>\n"
)


def event(message: str, agent_id: str = "001") -> AgentEvent:
    """An agent event as the channel hands it over."""
    return AgentEvent(
        agent_id, "web-1", "10.0.0.7", "1", "/var/log/auth.log", message, 100.0, "10.0.0.7"
    )


class AnalysisServiceTests(SynchronousTestCase):
    """Events in, Wazuh-shaped alerts out, with hot reload."""

    def setUp(self) -> None:
        self.home = Home(Path(self.mktemp()))
        self.home.make_dirs()
        self.clock = Clock()
        self.service = AnalysisService(
            self.home,
            RulesetSettings(),
            Identity("manager", "wazuh", "worker1"),
            self.clock,
            ClusterLog("Worker worker1", "Main"),
            queue_size=10,
            run_in_thread=run_inline,
            analysis_thread=run_inline,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def alerts(self) -> list[dict]:
        """The alerts written so far."""
        path = self.home.alerts_dir / "alerts.json"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def test_event_becomes_alert(self) -> None:
        """An sshd failure with the default ruleset gives Wazuh's rule 5710 alert shape."""
        self.service(event(SSH_FAIL))
        [alert] = self.alerts()
        self.assertEqual(alert["rule"]["id"], "5710")
        self.assertEqual(alert["agent"]["id"], "001")
        self.assertEqual(alert["cluster"], {"name": "wazuh", "node": "worker1"})
        self.assertEqual(alert["data"]["srcip"], "198.51.100.7")
        self.assertEqual(self.service.stats.alerts, 1)

    def test_alerts_carry_agent_ip_and_labels(self) -> None:
        """The IP and labels of the agent's last keep-alive are in its alerts; the location
        keeps the registered IP, as remoted writes it."""
        item = attrs.evolve(
            event(SSH_FAIL),
            registered_ip="any",
            reported_ip="192.0.2.40",
            labels=(("env", "prod"), ("!owner", "ops")),
        )
        self.service(item)
        [alert] = self.alerts()
        self.assertEqual(
            alert["agent"],
            {"id": "001", "name": "web-1", "ip": "192.0.2.40", "labels": {"env": "prod"}},
        )
        self.assertEqual(alert["location"], "/var/log/auth.log")

    def test_queue_letter_selects_the_path(self) -> None:
        """A FIM message (queue 8) alerts as FIM, an SCA check (queue p) as SCA, an unknown
        letter is logged once and not analysed; SCA memory survives a reload."""
        fim = json.dumps(
            {
                "type": "event",
                "data": {
                    "path": "/etc/passwd",
                    "mode": "scheduled",
                    "type": "added",
                    "attributes": {"type": "file", "size": 10},
                },
            }
        )
        check = json.dumps(
            {
                "type": "check",
                "id": 1,
                "policy": "Policy",
                "policy_id": "p1",
                "check": {"id": 7, "title": "Seven", "result": "failed"},
            }
        )
        self.service(attrs.evolve(event(fim), queue="8", location="syscheck"))
        self.service(attrs.evolve(event(check), queue="p", location="sca"))
        notices: list[str] = []
        self.clock.callFromThread = lambda f, *a, **kw: notices.append(kw["notice"])  # type: ignore[attr-defined]
        self.service(attrs.evolve(event("hello"), queue="z", location="x"))
        self.service(attrs.evolve(event("hello"), queue="z", location="x"))
        assert self.service.engine is not None
        self.assertEqual(self.service.engine.unknown_queues[("001", "z")], 2)
        self.assertEqual(len(notices), 1)
        self.assertIn("unknown queue 'z'", notices[0])
        self.service.reload()
        self.service(attrs.evolve(event(check), queue="p", location="sca"))
        alerts = self.alerts()
        self.assertEqual([alert["rule"]["id"] for alert in alerts], ["554", "19007"])
        self.assertEqual(alerts[0]["syscheck"]["path"], "/etc/passwd")
        self.assertEqual(alerts[1]["data"]["sca"]["check"]["title"], "Seven")
        self.assertEqual(self.service.stats.analysed, 5)

    def test_reload_picks_up_custom_rule(self) -> None:
        """A custom rule added under etc/rules fires after reload, without restarting."""
        self.service(event("web1 myapp: CUSTOM-MARKER seen"))
        self.assertEqual(self.alerts(), [])
        (self.home.etc / "rules" / "local_rules.xml").write_text(CUSTOM_RULE)
        self.successResultOf(self.service.reload())
        self.service(event("web1 myapp: CUSTOM-MARKER seen"))
        self.assertEqual([a["rule"]["id"] for a in self.alerts()], ["100100"])

    def test_broken_ruleset_keeps_old_engine(self) -> None:
        """A ruleset that fails to load is logged and the running engine stays."""
        engine = self.service.engine
        (self.home.etc / "rules" / "local_rules.xml").write_text("<group><rule id='x'")
        self.successResultOf(self.service.reload())
        self.assertIs(self.service.engine, engine)
        self.assertEqual(self.service.stats.failed_reloads, 1)
        self.service(event(SSH_FAIL))
        self.assertEqual(len(self.alerts()), 1)

    def test_full_queue_drops_and_counts(self) -> None:
        """Without an engine events queue up to the limit; the rest are dropped and counted;
        queued events are analysed once an engine is there."""
        self.service.engine = None
        for _ in range(12):
            self.service(event(SSH_FAIL))
        self.assertEqual((len(self.service.queue), self.service.stats.dropped), (10, 2))
        self.successResultOf(self.service.reload())
        self.assertEqual(len(self.service.queue), 0)
        self.assertEqual(len(self.alerts()), 10)

    def test_counts_per_agent_and_queue_letter(self) -> None:
        """Each agent's events are counted by queue letter, with those a full queue dropped;
        a removed agent's counts are forgotten; the node shapes them as Wazuh's analysisd."""
        self.service.engine = None
        for _ in range(11):
            self.service(event(SSH_FAIL))
        self.service(attrs.evolve(event("x", "002"), queue="8"))
        self.assertEqual(self.service.agent_counts("001"), ({"1": 11}, 1))
        self.assertEqual(self.service.agent_counts("002"), ({"8": 1}, 1))
        metrics = analysisd_agent_metrics(*self.service.agent_counts("001"))["events"]
        self.assertEqual(metrics["processed"], 10)
        modules = metrics["received_breakdown"]["decoded_breakdown"]["modules_breakdown"]
        self.assertEqual(modules["logcollector_breakdown"]["others"], 11)
        self.service.forget_agents(["001"])
        self.assertEqual(self.service.agent_counts("001"), ({}, 0))
        self.assertEqual(list(self.service.agent_queues), ["002"])

    def test_hourly_totals_count_alerts_and_events(self) -> None:
        """The alerts written and the events processed reach today's totals file (once a
        minute and at stop); the rendered line counts as the record does."""
        moment = time.mktime((2025, 3, 4, 15, 20, 0, 0, 0, -1))
        self.service.totals.now = lambda: moment
        self.service(event(SSH_FAIL))
        self.service(event("nothing to see here"))
        self.clock.advance(60)
        [alert] = self.alerts()
        rendered = AlertTally()
        rendered.count_lines((self.home.alerts_dir / "alerts.json").read_text())
        record = AlertTally()
        record.count(alert)
        self.assertEqual(rendered.take(), record.take())
        self.service(event(SSH_FAIL))
        self.successResultOf(self.service.stopService())
        day = read_day(totals_folder(self.home.root), time.localtime(moment))
        assert day is not None
        [item] = day_items(day)
        self.assertEqual((item["events"], item["totalAlerts"]), (3, 2))
        self.assertEqual(item["alerts"], [{"sigid": 5710, "level": 5, "times": 2}])

    def test_stop_flushes_and_closes(self) -> None:
        """Stopping analyses what is queued and closes alerts.json."""
        engine, self.service.engine = self.service.engine, None
        self.service(event(SSH_FAIL))
        self.service.engine = engine
        self.successResultOf(self.service.stopService())
        self.assertEqual(len(self.alerts()), 1)
        self.assertIsNone(self.service.writer)

    def test_reopen_after_rotation(self) -> None:
        """After logrotate renames alerts.json, reopening writes new alerts to a new file."""
        self.service(event(SSH_FAIL))
        path = self.home.alerts_dir / "alerts.json"
        path.rename(path.with_suffix(".json.1"))
        self.successResultOf(self.service.reopen_alerts())
        self.service(event(SSH_FAIL))
        self.assertEqual(len(path.with_suffix(".json.1").read_text().splitlines()), 1)
        self.assertEqual(len(self.alerts()), 1)

    def test_full_disk_is_logged_and_writing_resumes(self) -> None:
        """alerts.json cannot be written (ENOSPC): one dated ERROR in cluster.log, analysis
        goes on; when space returns the alerts are written again and a WARNING counts those
        lost. A failed write of the pool's output is an ERROR, never an unhandled error."""
        full = [True]

        def raw_write(fd: int, data: memoryview) -> int:
            if full[0]:
                raise OSError(28, "No space left on device")
            return os.write(fd, data)

        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.clock.callFromThread = lambda f, *a, **kw: f(*a, **kw)  # type: ignore[attr-defined]
        old = self.service.writer
        assert old is not None
        old.close()
        self.service.writer = AlertWriter(
            old.path, report=self.service._writer_report, raw_write=raw_write
        )
        for _ in range(3):
            self.service(event(SSH_FAIL))
        self.assertEqual(self.alerts(), [])
        self.assertEqual(self.service.stats.analysed, 3)
        full[0] = False
        self.service(event(SSH_FAIL))
        self.assertEqual(len(self.alerts()), 1)
        texts = [(e["log_level"], formatEvent(e)) for e in seen if "cluster_tag" in e]
        self.assertEqual([level for level, _ in texts], [LogLevel.error, LogLevel.warn])
        self.assertIn("Cannot write", texts[0][1])
        self.assertIn("No space left on device", texts[0][1])
        self.assertIn("3 alerts were lost", texts[1][1])

        class Broken:
            def write_rendered(self, data: bytes, count: int) -> None:
                raise OSError(30, "Read-only file system")

        self.service.writer = Broken()  # type: ignore[assignment]
        self.service._write_alerts(b"{}\n", 1)
        self.successResultOf(self.service._writes)
        self.assertIn("Read-only file system", formatEvent(seen[-1]))
        self.assertEqual(seen[-1]["log_level"], LogLevel.error)
        self.service.writer = None

    def test_failed_output_hand_off_is_logged(self) -> None:
        """When starting the writer thread's next hand-off fails, the error is logged and
        the chain of writes that stop waits for does not fail."""

        def broken(_: object) -> None:
            raise RuntimeError("hand-off broken on purpose")

        self.service._output_done = broken  # type: ignore[method-assign]
        self.service._write_alerts(b"{}\n", 1)
        self.assertIsNone(self.successResultOf(self.service._writes))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIsNone(self.service._output_job)


class StartupLoadTests(SynchronousTestCase):
    """The ruleset load started by startService is waited for by stopService."""

    def test_stop_waits_for_the_load_at_start(self) -> None:
        """A stop asked while the first load is on the thread waits for it before it closes
        the writers; the load's engine is in place once the stop is done."""
        home = Home(Path(self.mktemp()))
        home.make_dirs()
        held: list[Deferred[object]] = []

        def run_in_thread(function, *args):  # type: ignore[no-untyped-def]
            if function is load_engine:
                waiting: Deferred[object] = Deferred()
                held.append(waiting)
                return waiting.addCallback(lambda _: function(*args))
            return run_inline(function, *args)

        service = AnalysisService(
            home,
            RulesetSettings(),
            Identity("manager", "wazuh", "worker1"),
            Clock(),
            ClusterLog("Worker worker1", "Main"),
            run_in_thread=run_in_thread,
            analysis_thread=run_inline,
        )
        service.startService()
        self.assertEqual(len(held), 1)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.assertIsNotNone(service.writer)
        held[0].callback(None)
        self.successResultOf(stopped)
        self.assertIsNotNone(service.engine)
        self.assertIsNone(service.writer)


class ArchivesTests(SynchronousTestCase):
    """<logall> and <logall_json>: every event archived, rotated with the alerts."""

    def setUp(self) -> None:
        self.home = Home(Path(self.mktemp()))
        self.home.make_dirs()
        self.service = AnalysisService(
            self.home,
            RulesetSettings(logall=True, logall_json=True),
            Identity("manager", "wazuh", "worker1"),
            Clock(),
            ClusterLog("Worker worker1", "Main"),
            run_in_thread=run_inline,
            analysis_thread=run_inline,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def test_every_event_is_archived(self) -> None:
        """An alerting and a quiet event both reach archives.json and archives.log; only the
        first reaches alerts.json; the JSON record has a rule only for the alert."""
        self.service(event(SSH_FAIL))
        self.service(event("web1 myapp: nothing to see"))
        archive = self.home.archives_dir
        records = [
            json.loads(line) for line in (archive / "archives.json").read_text().splitlines()
        ]
        self.assertEqual(len(records), 2)
        self.assertEqual(records[0]["rule"]["id"], "5710")
        self.assertNotIn("rule", records[1])
        self.assertEqual(records[1]["full_log"], "web1 myapp: nothing to see")
        self.assertEqual(records[1]["agent"]["id"], "001")
        lines = (archive / "archives.log").read_text().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(
            lines[1].endswith("(web-1) 10.0.0.7->/var/log/auth.log web1 myapp: nothing to see"),
            lines[1],
        )
        alerts = (self.home.alerts_dir / "alerts.json").read_text().splitlines()
        self.assertEqual(len(alerts), 1)

    def test_archives_rotate_with_the_alerts(self) -> None:
        """After logrotate renamed the files, reopening writes new ones."""
        self.service(event(SSH_FAIL))
        archive = self.home.archives_dir
        (archive / "archives.json").rename(archive / "archives.json.1")
        self.successResultOf(self.service.reopen_alerts())
        self.service(event(SSH_FAIL))
        self.assertEqual(len((archive / "archives.json").read_text().splitlines()), 1)
        self.assertEqual(len((archive / "archives.json.1").read_text().splitlines()), 1)


class AgentStateServiceTests(SynchronousTestCase):
    """With a state directory the service keeps agents' state in SQLite across its restart
    and hands the decoders' replies to the agent channel."""

    def make_service(self) -> AnalysisService:
        """A started service on the test's home, with agent state in var/db/agents."""
        clock = Clock()
        clock.callFromThread = lambda f, *a, **kw: f(*a, **kw)  # type: ignore[attr-defined]
        service = AnalysisService(
            self.home,
            RulesetSettings(),
            Identity("manager", "wazuh", "worker1"),
            clock,
            ClusterLog("Worker worker1", "Main"),
            run_in_thread=run_inline,
            analysis_thread=run_inline,
            state_dir=self.home.agents_state,
        )
        service.reply_to_agent = lambda agent_id, message: self.sent.append((agent_id, message))
        service.startService()
        return service

    def setUp(self) -> None:
        """A home; replies are recorded."""
        self.home = Home(Path(self.mktemp()))
        self.home.make_dirs()
        self.sent: list[tuple[str, str]] = []

    def test_state_survives_restart_and_replies_reach_the_agent(self) -> None:
        """An SCA check stored before a restart does not alert again after it; a summary
        whose hash the stored results do not give asks agent 001 to resend its checks."""
        check = json.dumps(
            {
                "type": "check",
                "id": 1,
                "policy": "Policy",
                "policy_id": "p1",
                "check": {"id": 7, "title": "Seven", "result": "failed"},
            }
        )
        service = self.make_service()
        service(attrs.evolve(event(check), queue="p", location="sca"))
        self.successResultOf(service.stopService())
        self.assertTrue((self.home.agents_state / "001.db").exists())
        path = self.home.alerts_dir / "alerts.json"
        self.assertEqual(len(path.read_text().splitlines()), 1)
        service = self.make_service()
        self.addCleanup(service.stopService)
        service(attrs.evolve(event(check), queue="p", location="sca"))
        summary = json.dumps(sca_summary("p1", 1, "0"))
        service(attrs.evolve(event(summary), queue="p", location="sca"))
        rules = [json.loads(line)["rule"]["id"] for line in path.read_text().splitlines()]
        self.assertEqual(rules, ["19007", "19001"])  # the check once, then the new summary
        self.assertEqual(self.sent, [("001", "#!-sca-dump:p1:0")])

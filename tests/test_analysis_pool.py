"""The analysis pool with in-memory children (the real child protocol over iosim): agent
affinity, batching, atomic reloads, restarts after a death, draining; and the service and
its settings around it (EPS limit, intake numbers)."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from tests.test_analysis_queues import sca_summary
from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.analysis.alert_totals import AlertTally
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Event
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.config.analysis_settings import (
    AnalysisSettings,
    RulesetSettings,
    default_workers,
    parse_analysis,
)
from wazuhcluster.config.home import Home
from wazuhcluster.config.xmlconfig import ConfigError, Section
from wazuhcluster.node import analysis_pool
from wazuhcluster.node.analysis_child import (
    COMMIT_INTERVAL,
    AnalysisChild,
    Prepare,
    decode_batch,
    encode_events,
    event_row,
    settings_to_json,
    widen_pipe,
)
from wazuhcluster.node.analysis_pool import AnalysisPool, lane_of
from wazuhcluster.node.analysis_service import AnalysisService, to_event
from wazuhcluster.node.intake import EpsLimiter, RateWindow
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline

MARKER_RULE = (
    '<group name="local,">\n  <rule id="100200" level="7">\n    <match>POOL-MARKER</match>\n'
    "    <description>Pool marker</description>\n  </rule>\n</group>\n"
)
SSH_FAIL = (
    "Nov 26 10:00:00 web1 sshd[123]: Failed password for invalid user admin "
    "from 198.51.100.7 port 5555 ssh2"
)
QUIET = "web1 myapp: nothing to see"
FIM_ADDED = json.dumps(
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


def sca_check(result: str) -> str:
    """An SCA check message (queue ``p``) of policy p1, check 7, with ``result``."""
    return json.dumps(
        {
            "type": "check",
            "id": 1,
            "policy": "Policy",
            "policy_id": "p1",
            "check": {"id": 7, "title": "Seven", "result": result},
        }
    )


class RecordingChild(AnalysisChild):
    """The real child protocol, remembering each batch's agent ids and sizes."""

    def __init__(self, lane: int, fail_prepare: bool = False) -> None:
        super().__init__()
        self.index = lane
        self.fail_prepare = fail_prepare
        self.batches: list[list[str]] = []

    def prepare(self) -> dict[str, Any]:
        """Fail on demand, else load for real."""
        if self.fail_prepare:
            return {"ok": False, "error": "broken on purpose", "warnings": []}
        return super().prepare()

    def analyse(self, events: bytes) -> dict[str, Any]:
        """Record the batch, then analyse it for real."""
        self.batches.append([event.agent_id for event in decode_batch(events)[0]])
        return super().analyse(events)


class FakeChild:
    """A child process in memory: AMP to a :class:`RecordingChild` over an iosim pump."""

    def __init__(self, lane: int, fail_prepare: bool = False) -> None:
        self.child = RecordingChild(lane, fail_prepare)
        self.remote = amp.AMP()
        self.ended: Deferred[None] = Deferred()
        self.pid: int | None = 4000 + lane
        self.stopped = False
        self.pump = iosim.connect(
            self.child,
            iosim.makeFakeServer(self.child),
            self.remote,
            iosim.makeFakeClient(self.remote),
            greet=False,
        )

    def stop(self) -> None:
        """Answer what was asked, then exit cleanly."""
        self.stopped = True
        self.pump.flush()
        self.end(ProcessDone(0))

    def kill(self) -> None:
        """Die at once."""
        self.end(ProcessTerminated(signal=9))

    def end(self, reason: Exception) -> None:
        """The process is gone: its calls in flight fail, then the pool hears of it."""
        if self.ended.called:
            return
        self.pid = None
        self.remote.connectionLost(Failure(reason))
        self.ended.callback(None)


class PoolTestCase(SynchronousTestCase):
    """A home with the default ruleset, a clock, and a pool of in-memory children."""

    lanes = 2

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.home = Home(self.root)
        self.home.make_dirs()
        install_default_ruleset(str(self.root))
        self.clock = Clock()
        self.children: list[FakeChild] = []
        self.failing: set[int] = set()
        self.written: list[bytes] = []

    def spawn(self, lane: int) -> FakeChild:
        """The pool's spawner: a new in-memory child for ``lane``."""
        child = FakeChild(lane, lane in self.failing)
        self.children.append(child)
        return child

    def make_pool(self, limiter: EpsLimiter | None = None) -> AnalysisPool:
        """A started pool with the ruleset loaded in every child."""
        pool = AnalysisPool(
            self.lanes,
            self.spawn,
            self.clock,
            ClusterLog("Worker w1", "Main"),
            str(self.root),
            RulesetSettings(),
            Identity("manager", "wazuh", "w1"),
            lambda text, count: self.written.append(text),
            limiter,
        )
        started = pool.start()
        self.flush()
        self.successResultOf(started)
        loaded = Deferred.fromCoroutine(pool.reload())
        self.flush()
        self.assertTrue(self.successResultOf(loaded).ok)
        return pool

    def make_service(
        self,
        workers: int,
        limiter: EpsLimiter | None = None,
        settings: RulesetSettings | None = None,
    ) -> AnalysisService:
        """A started service; with workers, its children are in-memory ones."""
        service = AnalysisService(
            self.home,
            settings or RulesetSettings(),
            Identity("manager", "wazuh", "w1"),
            self.clock,
            ClusterLog("Worker w1", "Main"),
            queue_size=100,
            run_in_thread=run_inline,
            analysis_thread=run_inline,
            workers=workers,
            limiter=limiter,
            spawn=self.spawn,
        )
        service.startService()
        self.flush()
        return service

    def flush(self) -> None:
        """Let the batches' send delay pass and move every byte between the pool and its
        children until all is quiet."""
        moved = True
        while moved:
            moved = False
            self.clock.advance(0)
            for child in list(self.children):
                if not child.ended.called and child.pump.flush():
                    moved = True
            if self.clock.getDelayedCalls() and any(
                call.getTime() <= self.clock.seconds() + analysis_pool.SEND_DELAY
                for call in self.clock.getDelayedCalls()
            ):
                self.clock.advance(analysis_pool.SEND_DELAY)
                moved = True

    def live(self, lane: int) -> FakeChild:
        """The running child of ``lane``."""
        return [c for c in self.children if c.child.index == lane and not c.ended.called][-1]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts handed to the writer so far."""
        return [json.loads(line) for text in self.written for line in text.splitlines()]


def event(message: str, agent_id: str = "001") -> Event:
    """An analysis event of ``agent_id``."""
    return Event(message, location="/var/log/auth.log", agent_id=agent_id, timestamp=100.0)


class AffinityAndBatchingTests(PoolTestCase):
    """Where events go and how many travel per call."""

    def test_agent_stays_on_one_lane(self) -> None:
        """Every event of an agent reaches the same child; agents spread over lanes."""
        pool = self.make_pool()
        for round_ in range(3):
            for agent in ("001", "002", "003", "004", "web"):
                pool.put(event(f"{SSH_FAIL} {round_}", agent))
        self.flush()
        seen: dict[str, set[int]] = {}
        for child in self.children:
            for batch in child.child.batches:
                for agent in batch:
                    seen.setdefault(agent, set()).add(child.child.index)
        self.assertEqual(
            {agent: len(lanes) for agent, lanes in seen.items()}, dict.fromkeys(seen, 1)
        )
        self.assertEqual(seen["001"], {lane_of("001", 2)})
        self.assertEqual(seen["002"], {lane_of("002", 2)})
        self.assertNotEqual(seen["001"], seen["002"])
        self.assertEqual(pool.totals().processed, 15)
        self.assertEqual(len(self.alerts()), 15)
        self.assertEqual(len({alert["id"] for alert in self.alerts()}), 15)

    def test_batches_by_count_and_window(self) -> None:
        """Events go in calls of at most BATCH_EVENTS, with WINDOW calls in flight."""
        pool = self.make_pool()
        for _ in range(1200):
            pool.put(event("web1 myapp: nothing to see", "001"))
        self.assertEqual(pool.lanes[lane_of("001", 2)].inflight, 0)
        self.clock.advance(0)
        child = self.live(lane_of("001", 2))
        self.assertEqual(pool.lanes[lane_of("001", 2)].inflight, analysis_pool.WINDOW)
        self.assertEqual(pool.queued, 1200 - 2 * analysis_pool.BATCH_EVENTS)
        self.flush()
        self.assertEqual([len(b) for b in child.child.batches], [500, 500, 200])
        self.assertEqual(pool.queued, 0)

    def test_partial_batch_waits_the_send_delay(self) -> None:
        """A few events wait SEND_DELAY for others (one call for all of them); a steady
        trickle makes one call per SEND_DELAY, not one per event."""
        pool = self.make_pool()
        lane = pool.lanes[lane_of("001", 2)]
        child = self.live(lane_of("001", 2))
        for _ in range(3):
            pool.put(event("web1 myapp: nothing to see", "001"))
        self.clock.advance(0)
        self.assertEqual((lane.inflight, pool.queued), (0, 3))
        self.clock.advance(analysis_pool.SEND_DELAY / 2)
        self.assertEqual(lane.inflight, 0)
        self.clock.advance(analysis_pool.SEND_DELAY / 2)
        self.assertEqual((lane.inflight, pool.queued), (1, 0))
        self.flush()
        self.assertEqual([len(b) for b in child.child.batches], [3])
        started = self.clock.seconds()
        for _ in range(100):  # one event every 10 ms for a second
            pool.put(event("web1 myapp: nothing to see", "001"))
            self.clock.advance(0.01)
            child.pump.flush()
        self.flush()
        calls = len(child.child.batches) - 1
        self.assertEqual(sum(len(b) for b in child.child.batches), 103)
        self.assertLessEqual(calls, (self.clock.seconds() - started) / analysis_pool.SEND_DELAY + 1)
        self.assertGreater(calls, 2)

    def test_large_batches_split_by_size(self) -> None:
        """Long messages make smaller calls, each carried over several AMP values."""
        pool = self.make_pool()
        long_line = "web1 myapp: " + "x" * 20_000
        for _ in range(40):
            pool.put(event(long_line, "002"))
        self.flush()
        sizes = [len(b) for b in self.live(lane_of("002", 2)).child.batches]
        self.assertEqual(sum(sizes), 40)
        self.assertTrue(all(size <= 14 for size in sizes), sizes)
        self.assertEqual(pool.totals().processed, 40)


class ReloadTests(PoolTestCase):
    """A reload reaches every child at one point of the event stream, or none."""

    def test_reload_switches_every_child_at_once(self) -> None:
        """Events dispatched before the commit meet the old ruleset, later ones the new."""
        pool = self.make_pool()
        (self.root / "etc" / "rules" / "local_rules.xml").write_text(MARKER_RULE)
        reloading = Deferred.fromCoroutine(pool.reload())
        for agent in ("001", "002"):  # sent behind Prepare, before Commit
            pool.put(event("web1 myapp: POOL-MARKER early", agent))
        self.flush()
        self.assertTrue(self.successResultOf(reloading).ok)
        for agent in ("001", "002"):
            pool.put(event("web1 myapp: POOL-MARKER late", agent))
        self.flush()
        marked = [a for a in self.alerts() if a["rule"]["id"] == "100200"]
        self.assertEqual(sorted(a["agent"]["id"] for a in marked), ["001", "002"])
        self.assertTrue(all("late" in a["full_log"] for a in marked))

    def test_one_failure_keeps_the_old_ruleset_everywhere(self) -> None:
        """When one child cannot load the new ruleset, no child switches."""
        pool = self.make_pool()
        (self.root / "etc" / "rules" / "local_rules.xml").write_text(MARKER_RULE)
        self.live(1).child.fail_prepare = True
        reloading = Deferred.fromCoroutine(pool.reload())
        self.flush()
        outcome = self.successResultOf(reloading)
        self.assertEqual((outcome.ok, outcome.error), (False, "broken on purpose"))
        self.assertIsNone(self.live(0).child.pending)
        for agent in ("001", "002"):
            pool.put(event("web1 myapp: POOL-MARKER", agent))
        self.flush()
        self.assertEqual([a for a in self.alerts() if a["rule"]["id"] == "100200"], [])

    def test_a_commit_not_taken_is_an_error(self) -> None:
        """A child that fails the Commit is said in cluster.log (it is not swallowed)."""
        pool = self.make_pool()

        def broken() -> dict[str, Any]:
            raise RuntimeError("commit broken on purpose")

        self.live(1).child.commit = broken  # type: ignore[method-assign]
        with capturedLogs() as events:
            reloading = Deferred.fromCoroutine(pool.reload())
            self.flush()
        self.assertTrue(self.successResultOf(reloading).ok)
        errors = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.error]
        self.assertTrue(any("Analysis process 1 did not take Commit" in e for e in errors), errors)
        self.flushLoggedErrors(RuntimeError)

    def test_a_child_gone_before_commit_is_not_an_error(self) -> None:
        """A child that ends before its Commit is expected (stop, or a death whose restart
        loads afresh): no error is logged for the Commit."""
        pool = self.make_pool()
        reloading = Deferred.fromCoroutine(pool.reload())
        self.live(1).pump.flush()  # Prepare answered; Commit sent, not yet answered
        self.live(0).pump.flush()
        with capturedLogs() as events:
            self.live(1).end(ProcessDone(0))
            self.flush()
        self.successResultOf(reloading)
        texts = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.error]
        self.assertFalse(any("Commit" in text for text in texts), texts)


class RestartTests(PoolTestCase):
    """A child that dies is started again; what it had in flight is counted as lost."""

    def test_death_counts_loss_and_restarts(self) -> None:
        """The batch in flight is lost and logged; the new child takes the queued events."""
        pool = self.make_pool()
        lane = lane_of("001", 2)
        for _ in range(700):
            pool.put(event(SSH_FAIL, "001"))
        self.clock.advance(0)
        self.live(lane).kill()
        self.assertEqual(pool.lanes[lane].stats.lost, 700 - pool.queued)
        self.assertEqual(pool.lanes[lane].stats.restarts, 1)
        spawned = len(self.children)
        self.clock.advance(0)
        self.assertEqual(len(self.children), spawned + 1)
        self.flush()
        self.assertTrue(pool.lanes[lane].ready)
        self.assertEqual(pool.queued, 0)
        stats = pool.lanes[lane].stats
        self.assertEqual(stats.processed + stats.lost, 700)
        errors = [e for e in self.flushLoggedErrors()]
        self.assertEqual(errors, [])

    def test_repeated_deaths_back_off(self) -> None:
        """A child dying again before any batch succeeds waits before its next start."""
        pool = self.make_pool()
        self.live(0).kill()
        self.clock.advance(0)
        self.flush()
        self.live(0).kill()
        spawned = len(self.children)
        self.clock.advance(0.4)
        self.assertEqual(len(self.children), spawned)
        self.clock.advance(0.1)
        self.assertEqual(len(self.children), spawned + 1)
        self.flush()
        self.assertTrue(pool.lanes[0].ready)
        self.assertEqual(pool.lanes[0].stats.restarts, 2)

    def test_stop_while_a_restarted_child_loads(self) -> None:
        """A child restarted after the first load is loading when the pool stops: the stop
        settles that work (nothing is left pending) and logs no error for it."""
        pool = self.make_pool()
        self.live(0).kill()
        self.clock.advance(0)  # the new child is spawned; its Hello is not answered yet
        self.assertEqual(pool.background.pending, ["Restarting analysis process 0"])
        with capturedLogs() as events:
            stopped = Deferred.fromCoroutine(pool.stop())
            self.flush()
        self.successResultOf(stopped)
        self.assertEqual(pool.background.pending, [])
        texts = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.error]
        self.assertEqual(texts, [])
        self.flushLoggedErrors()

    def test_drain_then_stop(self) -> None:
        """drain fires once every queued event is analysed; stop ends every child."""
        pool = self.make_pool()
        for index in range(1500):
            pool.put(event(SSH_FAIL, f"{index % 7:03d}"))
        drained = pool.drain()
        self.assertNoResult(drained)
        self.flush()
        self.successResultOf(drained)
        self.assertEqual(pool.totals().processed, 1500)
        stopped = Deferred.fromCoroutine(pool.stop())
        self.successResultOf(stopped)
        self.assertTrue(all(child.stopped for child in self.children if child.pid is None))
        self.assertTrue(all(child.ended.called for child in self.children))

    def test_limit_holds_events_back(self) -> None:
        """With an EPS limit, the pool sends only the credits of the window."""
        pool = self.make_pool(EpsLimiter(10, 2))
        for _ in range(50):
            pool.put(event(SSH_FAIL, "001"))
        self.flush()
        self.assertEqual((pool.totals().processed, pool.queued), (20, 30))
        self.clock.advance(2)
        pool.pump()
        self.flush()
        self.assertEqual((pool.totals().processed, pool.queued), (40, 10))


def agent_event(message: str, agent_id: str = "001") -> AgentEvent:
    """An agent event as the channel hands it over."""
    return AgentEvent(agent_id, "web-1", "10.0.0.7", "1", "/var/log/auth.log", message, 100.0)


class ServiceWithPoolTests(PoolTestCase):
    """The analysis service on the pool: alerts.json, the intake numbers, stop."""

    def test_alerts_and_numbers(self) -> None:
        """Alerts reach alerts.json; -i more's numbers add up, per process too."""
        service = self.make_service(2)
        for index in range(30):
            service(agent_event(SSH_FAIL, f"{index % 3:03d}"))
        self.flush()
        for second in range(1, 12):
            self.clock.advance(second - self.clock.seconds())  # the ticks stay on the second
            if second == 5:
                for _ in range(20):
                    service(agent_event(SSH_FAIL, "004"))
                self.flush()
        numbers = service.intake()
        self.assertEqual(numbers["received"], 50)
        self.assertEqual((numbers["processed"], numbers["decoded"]), (50, 50))
        self.assertEqual((numbers["queue_length"], numbers["queue_size"]), (0, 100))
        self.assertGreater(numbers["alerts_written"], 40)
        self.assertEqual(len(numbers["processes"]), 2)
        self.assertEqual(sum(p["processed"] for p in numbers["processes"]), 50)
        self.assertEqual(numbers["eps_10s"], 2.0)
        counted = service.tally.take()
        self.successResultOf(service.stopService())
        lines = (self.home.alerts_dir / "alerts.json").read_text().splitlines()
        self.assertEqual(len(lines), numbers["alerts_written"])
        self.assertTrue(all(child.ended.called for child in self.children))
        # The processes counted their alerts for the hourly totals as the lines show them.
        expected = AlertTally()
        expected.count_lines("".join(line + "\n" for line in lines))
        self.assertEqual(counted, expected.take())

    def test_tally_of_module_alerts(self) -> None:
        """The totals a process counts include its syscheck alerts (a FIM event)."""
        service = self.make_service(1)
        service(module_event("8", "syscheck", FIM_ADDED, "001"))
        service(agent_event(SSH_FAIL, "002"))
        self.flush()
        pairs, syscheck, firewall = service.tally.take()
        self.successResultOf(service.stopService())
        self.assertEqual((sum(pairs.values()), syscheck, firewall), (2, 1, 0))
        self.assertIn((554, 5), pairs)

    def test_row_of_an_agent_event(self) -> None:
        """The row the service queues for an agent's event is the event the engine would get
        from it (every field in its place)."""
        service = self.make_service(1)
        rows: list[tuple[str, tuple[Any, ...]]] = []
        assert service.processes is not None
        service.processes.put_row = lambda agent_id, row: rows.append((agent_id, row))  # type: ignore[method-assign]
        item = AgentEvent(
            "007",
            "web-7",
            "10.0.0.7",
            "p",
            "sca",
            "a message",
            123.5,
            "any",
            "10.9.9.9",
            (("env", "prod"),),
        )
        service(item)
        self.assertEqual(rows, [("007", event_row(to_event(item)))])
        self.successResultOf(service.stopService())

    def test_outputs_share_a_hand_off_in_order(self) -> None:
        """Batches answered while the writer thread is busy are written by its next
        hand-off, in order, with one flush; output queued just as a hand-off ends gets a new
        one."""
        jobs: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

        def later(function: Any, *args: Any) -> Deferred[Any]:
            waiting: Deferred[Any] = Deferred()
            jobs.append((waiting, function, args))
            return waiting

        def run(index: int, before_answer: Any = None) -> None:
            waiting, function, args = jobs[index]
            result = function(*args)
            if before_answer is not None:
                before_answer()
            waiting.callback(result)

        service = AnalysisService(
            self.home,
            RulesetSettings(),
            Identity("manager", "wazuh", "w1"),
            self.clock,
            ClusterLog("Worker w1", "Main"),
            run_in_thread=run_inline,
            analysis_thread=later,
        )
        service.startService()
        writer = service.writer
        assert writer is not None
        self.addCleanup(writer.close)
        flushes: list[int] = []
        flush = writer.flush
        writer.flush = lambda: (flushes.append(1), flush())[1]  # type: ignore[method-assign]
        for number in range(3):
            service._write_alerts(f'{{"n":{number}}}\n', 1)
        self.assertEqual(len(jobs), 1)
        run(0)
        path = self.home.alerts_dir / "alerts.json"
        self.assertEqual(path.read_text().splitlines(), ['{"n":0}', '{"n":1}', '{"n":2}'])
        self.assertEqual(len(flushes), 1)
        service._write_alerts('{"n":3}\n', 1)
        self.assertEqual(len(jobs), 2)
        run(1, lambda: service._write_alerts('{"n":4}\n', 1))
        self.assertEqual(len(jobs), 3)
        run(2)
        self.assertEqual(
            [json.loads(line)["n"] for line in path.read_text().splitlines()], [0, 1, 2, 3, 4]
        )
        self.assertEqual(service.stats.alerts, 5)

    def test_reload_before_the_processes_started(self) -> None:
        """A reload asked while the processes are still starting (a sync that changed the
        rules right at start) is no failure: they load the ruleset as they start."""
        service = AnalysisService(
            self.home,
            RulesetSettings(),
            Identity("manager", "wazuh", "w1"),
            self.clock,
            ClusterLog("Worker w1", "Main"),
            queue_size=100,
            run_in_thread=run_inline,
            analysis_thread=run_inline,
            workers=2,
            spawn=self.spawn,
        )
        with capturedLogs() as events:
            service.startService()
            self.successResultOf(service.reload())
            self.flush()
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.error], [])
        self.assertEqual(service.stats.failed_reloads, 0)
        self.assertEqual(service.stats.reloads, 1)
        service(agent_event(SSH_FAIL, "001"))
        self.flush()
        self.assertEqual(service.intake()["processed"], 1)
        self.successResultOf(service.stopService())

    def test_full_queue_drops_per_agent(self) -> None:
        """Events beyond the queue are dropped and counted per agent; the limit holds the
        rest in the queue rather than dropping them."""
        service = self.make_service(0, EpsLimiter(1, 10))
        for _ in range(60):
            service(agent_event(SSH_FAIL, "001"))
        for _ in range(70):
            service(agent_event(SSH_FAIL, "002"))
        numbers = service.intake()
        self.assertEqual(numbers["processed"], 10)
        self.assertEqual(numbers["queue_length"], 100)
        self.assertEqual(numbers["dropped"], 20)
        self.assertEqual(numbers["dropped_by_agent"], {"002": 20})
        self.clock.advance(10)
        self.assertEqual(service.intake()["processed"], 20)
        self.successResultOf(service.stopService())
        self.assertEqual(service.intake()["processed"], 110)


def module_event(queue: str, location: str, message: str, agent_id: str = "001") -> AgentEvent:
    """An agent event of a module's queue (``8`` FIM, ``p`` SCA...)."""
    return AgentEvent(agent_id, "web-1", "10.0.0.7", queue, location, message, 100.0)


class MeaningInPoolTests(PoolTestCase):
    """What agents' messages mean, in the analysis processes: queue letters, archives,
    notices of unknown queues, and the per-agent memory across reloads."""

    def written_lines(self, path: Path) -> list[str]:
        """The lines of a file the node wrote."""
        return path.read_text().splitlines() if path.exists() else []

    def test_queue_letter_reaches_the_child(self) -> None:
        """A FIM message (queue 8) and an SCA check (queue p) alert as FIM and SCA through
        the pool: the letter crosses to the children with the event."""
        service = self.make_service(2)
        service(module_event("8", "syscheck", FIM_ADDED, "001"))
        service(module_event("p", "sca", sca_check("failed"), "002"))
        self.flush()
        self.successResultOf(service.stopService())
        alerts = [
            json.loads(line) for line in self.written_lines(self.home.alerts_dir / "alerts.json")
        ]
        by_rule = {alert["rule"]["id"]: alert for alert in alerts}
        self.assertEqual(sorted(by_rule), ["19007", "554"])
        self.assertEqual(by_rule["554"]["syscheck"]["path"], "/etc/passwd")
        self.assertEqual(by_rule["554"]["agent"]["id"], "001")
        self.assertEqual(by_rule["19007"]["data"]["sca"]["check"]["title"], "Seven")
        self.assertEqual(by_rule["19007"]["agent"]["id"], "002")
        self.assertFalse(any(child.child.archives for child in self.children))

    def test_events_carry_their_queue(self) -> None:
        """The batch encoding keeps every field of an event, the queue letter included."""
        events = [Event("x", location="sca", queue="p", agent_id="003", timestamp=1.0)]
        self.assertEqual(decode_batch(encode_events(events))[0], events)

    def test_events_carry_agent_labels(self) -> None:
        """Labels and the reported IP cross into the analysis processes unchanged."""
        events = [
            Event(
                "x",
                agent_id="003",
                agent_ip="any",
                agent_reported_ip="10.0.0.3",
                agent_labels=(("env", "prod"), ("!owner", "me")),
            )
        ]
        self.assertEqual(decode_batch(encode_events(events))[0], events)

    def test_archives_in_pool_mode(self) -> None:
        """With <logall> and <logall_json>, the children build every event's archive lines
        and the node writes them: all events, in order per agent, ids shared with the
        alerts and unique across the pool; the files reopen with the alerts."""
        service = self.make_service(2, settings=RulesetSettings(logall=True, logall_json=True))
        self.assertTrue(all(child.child.archives for child in self.children))
        service(agent_event(SSH_FAIL, "001"))
        service(agent_event(QUIET, "002"))
        service(agent_event(SSH_FAIL, "003"))
        service(agent_event(QUIET, "001"))
        self.flush()
        archives = self.home.archives_dir
        records = [json.loads(line) for line in self.written_lines(archives / "archives.json")]
        self.assertEqual(len(records), 4)
        first = [record for record in records if record["agent"]["id"] == "001"]
        self.assertEqual([record["full_log"] for record in first], [SSH_FAIL, QUIET])
        self.assertEqual(first[0]["rule"]["id"], "5710")
        self.assertNotIn("rule", first[1])
        self.assertEqual(len({record["id"] for record in records}), 4)
        alerts = [
            json.loads(line) for line in self.written_lines(self.home.alerts_dir / "alerts.json")
        ]
        self.assertEqual(len(alerts), 2)
        alerted = {record["id"] for record in records if "rule" in record}
        self.assertEqual({alert["id"] for alert in alerts}, alerted)
        lines = self.written_lines(archives / "archives.log")
        self.assertEqual(len(lines), 4)
        quiet = "(web-1) any->/var/log/auth.log " + QUIET
        self.assertEqual(sum(1 for line in lines if line.endswith(quiet)), 2, lines)
        (archives / "archives.json").rename(archives / "archives.json.1")
        self.successResultOf(service.reopen_alerts())
        service(agent_event(QUIET, "004"))
        self.flush()
        self.successResultOf(service.stopService())
        self.assertEqual(len(self.written_lines(archives / "archives.json")), 1)
        self.assertEqual(len(self.written_lines(archives / "archives.json.1")), 4)
        self.assertEqual(len(self.written_lines(archives / "archives.log")), 5)

    def test_unknown_queue_noticed_once(self) -> None:
        """Messages of an unknown queue are counted in the agent's process and logged by
        the node once per agent and letter, not analysed."""
        service = self.make_service(2)
        with capturedLogs() as events:
            for _ in range(3):
                service(module_event("z", "x", "hello", "001"))
            self.flush()
        notices = [formatEvent(e) for e in events if "unknown queue" in formatEvent(e)]
        self.assertEqual(len(notices), 1, notices)
        self.assertIn("Agent 001 sent a message to unknown queue 'z'", notices[0])
        engine = self.live(lane_of("001", 2)).child.engine
        assert engine is not None
        self.assertEqual(engine.unknown_queues[("001", "z")], 3)
        self.assertEqual(service.intake()["processed"], 3)
        self.assertEqual(self.written_lines(self.home.alerts_dir / "alerts.json"), [])
        self.successResultOf(service.stopService())

    def test_agent_state_kept_across_pool_reload(self) -> None:
        """A reload's new engine in a child takes over the old one's per-agent memory: an
        unchanged SCA check does not alert again, a changed one knows its previous result."""
        pool = self.make_pool()
        pool.put(Event(sca_check("failed"), location="sca", queue="p", agent_id="001"))
        self.flush()
        child = self.live(lane_of("001", 2)).child
        before = child.engine
        reloading = Deferred.fromCoroutine(pool.reload())
        self.flush()
        self.assertTrue(self.successResultOf(reloading).ok)
        self.assertIsNot(child.engine, before)
        assert before is not None and child.engine is not None
        self.assertIs(child.engine.agent_state, before.agent_state)
        pool.put(Event(sca_check("failed"), location="sca", queue="p", agent_id="001"))
        pool.put(Event(sca_check("passed"), location="sca", queue="p", agent_id="001"))
        self.flush()
        self.assertEqual([alert["rule"]["id"] for alert in self.alerts()], ["19007", "19010"])

    def test_agent_state_in_sqlite_and_replies(self) -> None:
        """With a state directory each child keeps its agents' state in their databases
        (a restarted child still knows an SCA result) and its replies reach the pool's
        ``reply``."""
        sent: list[tuple[str, str]] = []
        state_dir = self.home.agents_state
        pool = AnalysisPool(
            2,
            self.spawn,
            self.clock,
            ClusterLog("Worker w1", "Main"),
            str(self.root),
            RulesetSettings(),
            Identity("manager", "wazuh", "w1"),
            lambda text, count: self.written.append(text),
            reply=lambda agent_id, message: sent.append((agent_id, message)),
            state_dir=str(state_dir),
        )
        self.successResultOf(self._started(pool))
        pool.put(Event(sca_check("failed"), location="sca", queue="p", agent_id="001"))
        self.flush()
        self.assertTrue((state_dir / "001.db").exists())
        summary = json.dumps(sca_summary("p1", 1, "0"))
        pool.put(Event(summary, location="sca", queue="p", agent_id="001"))
        self.flush()
        self.assertEqual(sent, [("001", "#!-sca-dump:p1:0")])
        child = self.live(lane_of("001", 2)).child
        child.agent_state.close()
        restarted = RecordingChild(lane_of("001", 2))
        restarted.hello(
            str(self.root), settings_to_json(RulesetSettings()), {}, 1, 2, False, str(state_dir)
        )
        self.assertTrue(restarted.prepare()["ok"])
        restarted.commit()
        assert restarted.engine is not None
        self.assertEqual(restarted.engine.agent_state.sca_result("001", "7"), "failed")
        restarted.agent_state.close()

    def test_state_commits_at_most_every_interval(self) -> None:
        """A child commits its agents' databases after a batch at most every
        ``COMMIT_INTERVAL`` seconds; what a batch wrote meanwhile is committed by a later
        batch, or when its main loop finds nothing to read (``commit_due``)."""
        state_dir = self.home.agents_state
        now = [1000.0]
        child = AnalysisChild()
        child.clock = lambda: now[0]
        child.hello(
            str(self.root), settings_to_json(RulesetSettings()), {}, 0, 1, False, str(state_dir)
        )
        self.assertTrue(child.prepare()["ok"])
        child.commit()
        self.addCleanup(child.agent_state.close)

        def fim(path: str) -> bytes:
            message = json.loads(FIM_ADDED)
            message["data"]["path"] = path
            event = Event(json.dumps(message), location="syscheck", queue="8", agent_id="001")
            return encode_events([event])

        def stored() -> list[str]:
            with closing(sqlite3.connect(str(state_dir / "001.db"))) as reader:
                return [row[0] for row in reader.execute("SELECT full_path FROM fim_entry")]

        self.assertIsNone(child.commit_due())
        child.analyse(fim("/etc/one"))
        self.assertEqual(stored(), ["/etc/one"])
        self.assertIsNone(child.commit_due())
        now[0] += COMMIT_INTERVAL / 5
        child.analyse(fim("/etc/two"))
        self.assertEqual(stored(), ["/etc/one"])
        self.assertAlmostEqual(child.commit_due() or 0.0, COMMIT_INTERVAL * 4 / 5)
        now[0] += COMMIT_INTERVAL
        self.assertEqual(child.commit_due(), 0.0)
        child.commit_state()
        self.assertEqual(sorted(stored()), ["/etc/one", "/etc/two"])
        self.assertIsNone(child.commit_due())
        now[0] += COMMIT_INTERVAL / 5
        child.analyse(fim("/etc/three"))
        now[0] += COMMIT_INTERVAL
        child.analyse(fim("/etc/four"))
        self.assertEqual(len(stored()), 4)
        self.assertIsNone(child.commit_due())

    def _started(self, pool: AnalysisPool) -> Deferred[None]:
        started = pool.start()
        self.flush()
        self.successResultOf(started)
        loaded = Deferred.fromCoroutine(pool.reload())
        self.flush()
        return loaded.addCallback(lambda outcome: self.assertTrue(outcome.ok))


class WidenPipeTests(SynchronousTestCase):
    """widen_pipe: an analysis process's pipes to the parent hold a whole answer."""

    def test_pipe_widened(self) -> None:
        """A pipe grows to the size asked, within the system's ceiling."""
        reading, writing = os.pipe()
        self.addCleanup(os.close, reading)
        self.addCleanup(os.close, writing)
        ceiling = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        size = widen_pipe(writing, 256 * 1024)
        self.assertEqual(size, min(256 * 1024, ceiling))
        self.assertEqual(fcntl.fcntl(reading, fcntl.F_GETPIPE_SZ), size)

    def test_beyond_the_ceiling_takes_the_ceiling(self) -> None:
        """Asked for more than pipe-max-size, the pipe gets the ceiling, not an error."""
        reading, writing = os.pipe()
        self.addCleanup(os.close, reading)
        self.addCleanup(os.close, writing)
        ceiling = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        self.assertEqual(widen_pipe(reading, ceiling * 4), ceiling)

    def test_not_a_pipe(self) -> None:
        """A descriptor that is no pipe is left alone: 0."""
        with open(self.mktemp(), "wb") as handle:
            self.assertEqual(widen_pipe(handle.fileno()), 0)


class IntakeArithmeticTests(SynchronousTestCase):
    """The rate windows and the EPS limiter."""

    def test_rate_window(self) -> None:
        """EPS over 10 s and 1 min from per-second samples."""
        window = RateWindow()
        self.assertEqual(window.rate(10), 0.0)
        for second in range(61):
            window.sample(float(second), second * (100 if second > 50 else 10))
        self.assertEqual(window.rate(10), (6000 - 500) / 10)
        self.assertEqual(window.rate(60), 6000 / 60)

    def test_limiter_window_slides(self) -> None:
        """Credits used in a second come back ``timeframe`` seconds later."""
        limiter = EpsLimiter(5, 2)
        self.assertEqual(limiter.available(0.0), 10)
        limiter.take(0.5, 8)
        limiter.take(1.2, 2)
        self.assertEqual(limiter.available(1.9), 0)
        self.assertEqual(limiter.available(2.0), 8)
        self.assertEqual(limiter.available(3.0), 10)
        self.assertGreater(EpsLimiter(0, 10).available(0.0), 10**9)


class AnalysisSettingsTests(SynchronousTestCase):
    """<analysis><workers> and <global><limits><eps>."""

    def parse(self, analysis: str = "", global_: str = "") -> AnalysisSettings:
        """Parse the two blocks from XML text."""
        from xml.etree.ElementTree import fromstring

        a = fromstring(analysis) if analysis else None
        g = fromstring(global_) if global_ else None
        return parse_analysis(Section(a, "conf", "analysis"), Section(g, "conf", "global"))

    def test_defaults(self) -> None:
        """One process per CPU, no EPS limit, Wazuh's 10 s timeframe."""
        self.assertEqual(self.parse(), AnalysisSettings(default_workers(), 0, 10))
        self.assertGreaterEqual(default_workers(), 1)

    def test_values(self) -> None:
        """Workers 0 keeps the thread; the EPS block is read under <limits>."""
        settings = self.parse(
            "<analysis><workers>0</workers></analysis>",
            "<global><limits><eps><maximum>500</maximum><timeframe>30</timeframe></eps>"
            "</limits></global>",
        )
        self.assertEqual(settings, AnalysisSettings(0, 500, 30))

    def test_bad_values(self) -> None:
        """Out-of-range values name their option."""
        with self.assertRaises(ConfigError) as caught:
            self.parse("<analysis><workers>-1</workers></analysis>")
        self.assertIn("<analysis><workers>", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            self.parse("", "<global><limits><eps><maximum>100001</maximum></eps></limits></global>")
        self.assertIn("<global><limits><eps><maximum>", str(caught.exception))
        with self.assertRaises(ConfigError):
            self.parse("", "<global><limits><eps><timeframe>0</timeframe></eps></limits></global>")


class ClosedPipeProcess:
    """A spawned process's writing side as Twisted keeps it: a closed pipe is a KeyError."""

    def __init__(self) -> None:
        self.pipes: dict[int, list[bytes]] = {analysis_pool.CHILD_IN: []}

    def writeToChild(self, child_fd: int, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """Append to the pipe, or fail as Process.writeToChild does once it is closed."""
        self.pipes[child_fd].append(data)

    def closeChildFD(self, child_fd: int) -> None:  # noqa: N802 - Twisted's name
        """The pipe is gone from ``pipes``, as once Twisted has closed it."""
        self.pipes.pop(child_fd, None)


class PipeTransportTests(SynchronousTestCase):
    """AMP to a child whose input is already closed (a pool stopped during a reload)."""

    def test_call_after_input_closed_fails_at_process_end(self) -> None:
        """A call sent after the child's input closed raises nothing where it is sent
        (it was a KeyError from writeToChild, unhandled in the reload); it fails when the
        child's end is seen, like a call on a closed connection."""
        process = ClosedPipeProcess()
        remote = amp.AMP()
        remote.makeConnection(analysis_pool._PipeTransport(process, 0))  # type: ignore[arg-type]
        sent = remote.callRemote(Prepare)
        self.assertEqual(len(process.pipes[analysis_pool.CHILD_IN]), 1)
        process.closeChildFD(analysis_pool.CHILD_IN)
        late = remote.callRemote(Prepare)
        self.assertNoResult(late)
        remote.connectionLost(Failure(ProcessDone(0)))
        self.failureResultOf(late, ProcessDone)
        self.failureResultOf(sent, ProcessDone)


class PipeReader:
    """The reading end of a real pipe, as Twisted keeps it in ``Process.pipes``."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor

    def fileno(self) -> int:
        """The pipe's file descriptor."""
        return self.descriptor


class AnswerDrainTests(SynchronousTestCase):
    """A child's answer is read whole once Twisted's 8 KiB read comes back full."""

    def setUp(self) -> None:
        read_end, self.write_end = os.pipe()
        os.set_blocking(read_end, False)
        self.read_end = read_end
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, self.write_end)
        self.child = analysis_pool.ChildProcess(ClusterLog("Node", "test"), 0)
        self.child.transport = type(  # type: ignore[assignment]
            "Process", (), {"pipes": {analysis_pool.CHILD_OUT: PipeReader(read_end)}}
        )()
        self.received: list[bytes] = []
        self.child.remote.dataReceived = self.received.append  # type: ignore[method-assign]

    def test_a_full_read_takes_the_rest_of_the_pipe(self) -> None:
        """After a read of 8 KiB, what else the child wrote comes in the same call; a
        shorter read is passed on as it is, and an empty pipe adds nothing."""
        answer = os.urandom(50_000)
        os.write(self.write_end, answer)
        first = os.read(self.read_end, analysis_pool.TWISTED_PIPE_READ)
        self.child.childDataReceived(analysis_pool.CHILD_OUT, first)
        self.assertEqual(self.received, [answer])
        os.write(self.write_end, b"short")
        self.child.childDataReceived(analysis_pool.CHILD_OUT, b"x" * 100)
        self.assertEqual(self.received[1], b"x" * 100)
        self.assertEqual(os.read(self.read_end, 100), b"short")  # left for the reactor
        full = b"y" * analysis_pool.TWISTED_PIPE_READ
        self.child.childDataReceived(analysis_pool.CHILD_OUT, full)
        self.assertEqual(self.received[2], full)

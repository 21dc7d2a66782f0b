"""The analysis pool with real child processes: alerts, a killed child started again, a
reload reaching every child, and a stop that drains the queue; agent modules' messages,
archives and notices of unknown queues through real children."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from wazuhcluster.agents.channel import AgentEvent
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.archives import plain_line
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.home import Home
from wazuhcluster.node.analysis_child import CHILD_IN, CHILD_OUT, PIPE_BYTES
from wazuhcluster.node.analysis_pool import AnalysisPool, ChildProcess
from wazuhcluster.node.analysis_service import AnalysisService
from wazuhcluster.util.logs import ClusterLog

DEADLINE = 60.0
SSH_FAIL = (
    "Nov 26 10:00:00 web1 sshd[123]: Failed password for invalid user admin "
    "from 198.51.100.7 port 5555 ssh2"
)
MARKER_RULE = (
    '<group name="local,">\n  <rule id="100300" level="7">\n    <match>REAL-POOL-MARKER</match>\n'
    "    <description>Pool marker</description>\n  </rule>\n</group>\n"
)


def agent_event(
    message: str, agent_id: str, queue: str = "1", location: str = "/var/log/auth.log"
) -> AgentEvent:
    """An agent event as the channel hands it over."""
    return AgentEvent(agent_id, f"agent-{agent_id}", "10.0.0.7", queue, location, message, 1e9)


def sca_check(result: str) -> str:
    """An SCA check message (queue ``p``) with ``result``."""
    return json.dumps(
        {
            "type": "check",
            "id": 1,
            "policy": "Policy",
            "policy_id": "p1",
            "check": {"id": 7, "title": "Seven", "result": result},
        }
    )


class RealPoolTests(TestCase):
    """Two real analysis processes behind one service."""

    timeout = 120

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        """Poll ``condition`` every 50 ms until it holds, or fail after the deadline."""
        clock = cast(IReactorTime, global_reactor)
        waited = 0.0
        while not condition():
            if waited > DEADLINE:
                self.fail(f"timed out waiting for {what}")
            await deferLater(clock, 0.05, lambda: None)
            waited += 0.05

    async def started(
        self, workers: int, settings: RulesetSettings | None = None
    ) -> tuple[Home, AnalysisService, AnalysisPool]:
        """A service with ``workers`` real analysis processes in a fresh home, started (and
        stopped at cleanup), once every process has loaded the ruleset."""
        home = Home(Path(self.mktemp()))
        home.make_dirs()
        service = AnalysisService(
            home,
            settings or RulesetSettings(),
            Identity("manager", "wazuh", "w1"),
            global_reactor,  # type: ignore[arg-type]
            ClusterLog("Worker w1", "Main"),
            workers=workers,
        )
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        pool = service.processes
        assert pool is not None
        await self.wait(
            lambda: pool.loaded and all(lane.ready for lane in pool.lanes), "the ruleset"
        )
        return home, service, pool

    async def test_pool_end_to_end(self) -> None:
        """Events from 10 agents become alerts; a killed child is replaced and counted;
        a reload reaches both children; stopping analyses everything still queued."""
        home, service, pool = await self.started(2)
        pids = {lane.handle.pid for lane in pool.lanes if lane.handle is not None}
        self.assertEqual(len(pids), 2)
        self.assertNotIn(os.getpid(), pids)

        for index in range(200):
            service(agent_event(SSH_FAIL, f"{index % 10:03d}"))
        await self.wait(lambda: pool.totals().processed == 200, "200 events analysed")

        victim = pool.lanes[0].handle
        assert victim is not None and victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        await self.wait(lambda: pool.lanes[0].stats.restarts == 1, "the death noticed")
        await self.wait(lambda: pool.lanes[0].ready, "the child started again")
        self.assertNotIn(pool.lanes[0].handle.pid, pids)  # type: ignore[union-attr]

        (home.etc / "rules" / "local_rules.xml").write_text(MARKER_RULE)
        await service.reload()
        self.assertEqual(service.stats.failed_reloads, 0)
        for index in range(2000):
            service(agent_event(f"web1 myapp: REAL-POOL-MARKER {index}", f"{index % 10:03d}"))
        await service.stopService()
        numbers: dict[str, Any] = service.intake()
        self.assertEqual(numbers["processed"] + numbers["lost"], 2200)
        self.assertEqual(numbers["queue_length"], 0)
        alerts = [
            json.loads(line) for line in (home.alerts_dir / "alerts.json").read_text().splitlines()
        ]
        marked = [alert for alert in alerts if alert["rule"]["id"] == "100300"]
        self.assertEqual(len(marked), 2000)
        self.assertEqual(
            {alert["agent"]["id"] for alert in marked}, {f"{i:03d}" for i in range(10)}
        )
        self.assertTrue(all(lane.handle is None or lane.handle.pid is None for lane in pool.lanes))

    async def test_pipes_hold_a_whole_answer(self) -> None:
        """Each analysis process widens both pipes to the parent (1 MiB, or the system's
        ceiling), so a batch's answer of alerts fits without waiting for the parent."""
        _, _, pool = await self.started(1)
        child = pool.lanes[0].handle
        assert isinstance(child, ChildProcess) and child.transport is not None
        pipes = child.transport.pipes  # type: ignore[attr-defined]
        expected = min(PIPE_BYTES, int(Path("/proc/sys/fs/pipe-max-size").read_text()))
        for descriptor in (CHILD_IN, CHILD_OUT):
            self.assertEqual(fcntl.fcntl(pipes[descriptor].fileno(), fcntl.F_GETPIPE_SZ), expected)

    async def test_modules_archives_and_notices(self) -> None:
        """With archives on, FIM and SCA messages alert in real children, every event is
        archived by the node, an unknown queue is logged once, and an unchanged SCA check
        stays quiet after a reload (the children keep the agents' memory)."""
        home, service, pool = await self.started(2, RulesetSettings(logall=True, logall_json=True))
        fim = {
            "type": "event",
            "data": {
                "path": "/etc/hosts",
                "mode": "realtime",
                "type": "added",
                "attributes": {"type": "file", "size": 10},
            },
        }
        with capturedLogs() as logged:
            for agent in ("001", "002"):
                service(agent_event(json.dumps(fim), agent, "8", "syscheck"))
                service(agent_event(sca_check("failed"), agent, "p", "sca"))
                service(agent_event("hello", agent, "z", "x"))
                service(agent_event("hello", agent, "z", "x"))
            await self.wait(lambda: pool.totals().processed == 8, "8 events analysed")
            await service.reload()
            for agent in ("001", "002"):
                service(agent_event(sca_check("failed"), agent, "p", "sca"))
                service(agent_event(SSH_FAIL, agent))
            await service.stopService()
        self.assertEqual(service.stats.failed_reloads, 0)
        alerts = [
            json.loads(line) for line in (home.alerts_dir / "alerts.json").read_text().splitlines()
        ]
        rules = sorted(alert["rule"]["id"] for alert in alerts)
        self.assertEqual(rules, ["19007", "19007", "554", "554", "5710", "5710"])
        archived = [
            json.loads(line)
            for line in (home.archives_dir / "archives.json").read_text().splitlines()
        ]
        # Every event but the unknown queue's (not analysed, not archived).
        self.assertEqual(len(archived), 8)
        self.assertEqual(
            {record["id"] for record in archived if "rule" in record},
            {alert["id"] for alert in alerts},
        )
        plain = (home.archives_dir / "archives.log").read_text().splitlines()
        # A FIM event's full log spans several lines; each event's first line is dated.
        dated = plain_line(1e9, "x", "", "")[:12]  # "<year> <Mon> <day> " in local time
        self.assertEqual(sum(1 for line in plain if line.startswith(dated)), 8, plain)
        notices = [formatEvent(e) for e in logged if "unknown queue 'z'" in formatEvent(e)]
        self.assertEqual(len(notices), 2, notices)

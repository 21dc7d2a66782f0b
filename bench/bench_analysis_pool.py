"""Benchmark the analysis pool: the node's analysis path with 1 and 2 analysis processes.

Builds a home with Wazuh's stock ruleset (``WAZUH_RULESET``), then, in one run:

- *engine alone*: the ruleset test cases' log lines through ``Engine.process`` in this
  process (the baseline);
- *pool, N processes*: the same lines as agent events (``--agents`` agents) handed to an
  :class:`AnalysisService` with ``workers=N`` on the real reactor, timed from the first event
  to the last alert written (queue, batches over AMP, alerts.json).

The events are injected into the service inside this process, not over 1514: this measures
the pool and the alert writer, not the agent channel.

    .venv/bin/python bench/bench_analysis_pool.py [--events 200000] [--agents 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_analysis import build_home, sample_lines  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from wazuhcluster.agents.channel import AgentEvent  # noqa: E402
from wazuhcluster.analysis.alerts import Identity  # noqa: E402
from wazuhcluster.analysis.engine import Event  # noqa: E402
from wazuhcluster.analysis.loader import load_engine  # noqa: E402
from wazuhcluster.config.analysis_settings import RulesetSettings  # noqa: E402
from wazuhcluster.config.home import Home  # noqa: E402
from wazuhcluster.node.analysis_service import AnalysisService  # noqa: E402
from wazuhcluster.testing.reference import missing_reason  # noqa: E402
from wazuhcluster.util.logs import ClusterLog  # noqa: E402

SETTINGS = RulesetSettings(rule_excludes=("0215-policy_rules.xml",))


def engine_alone(home: str, events: list[AgentEvent]) -> float:
    """Events per second of one engine in this process (no alert writing)."""
    engine = load_engine(home, SETTINGS)
    analysed = [
        Event(e.message, location=e.location, agent_id=e.agent_id, timestamp=e.received)
        for e in events
    ]
    started = time.perf_counter()
    for event in analysed:
        engine.process(event)
    return len(analysed) / (time.perf_counter() - started)


async def pool_rate(home: str, events: list[AgentEvent], workers: int) -> tuple[float, int]:
    """Events per second through the service with ``workers`` processes; alerts written."""
    service = AnalysisService(
        Home(Path(home)),
        SETTINGS,
        Identity("bench", "wazuh", "worker1"),
        reactor,  # type: ignore[arg-type]
        ClusterLog("Worker worker1", "Main"),
        queue_size=len(events) + 1,
        workers=workers,
    )
    service.startService()
    pool = service.processes
    assert pool is not None
    while not (pool.loaded and all(lane.ready for lane in pool.lanes)):
        await deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
    started = time.perf_counter()
    cpu = time.process_time()
    step = 5000  # hand events over in reads of this size, as the channel would
    for at in range(0, len(events), step):
        for event in events[at : at + step]:
            service(event)
        await deferLater(reactor, 0, lambda: None)  # type: ignore[arg-type]
    await service.stopService()  # drains the queue, writes and closes alerts.json
    elapsed = time.perf_counter() - started
    print(
        f"  pool {workers}: node process CPU {time.process_time() - cpu:.1f} s of {elapsed:.1f} s",
        file=sys.stderr,
    )
    numbers = service.intake()
    assert numbers["processed"] == len(events), numbers
    return len(events) / elapsed, numbers["alerts_written"]


async def run(args: argparse.Namespace) -> None:
    """Build the home, run every case, print the table."""
    lines = sample_lines()
    events = [
        AgentEvent(
            f"{1 + i % args.agents:03d}",
            f"agent{i % args.agents}",
            "10.0.0.1",
            "1",
            "/var/log/syslog",
            lines[i % len(lines)],
            1_700_000_000.0 + i / 1000,
        )
        for i in range(args.events)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rates: dict[str, float] = {}
        home = os.path.join(tmp, "home")
        build_home(home)
        rates["engine alone (this process)"] = engine_alone(home, events)
        for workers in (1, 2):
            case_home = os.path.join(tmp, f"pool{workers}")
            build_home(case_home)
            rate, alerts = await pool_rate(case_home, events, workers)
            rates[f"pool, {workers} process{'es' if workers > 1 else ''}"] = rate
            print(f"  pool {workers}: {alerts} alerts written", file=sys.stderr)
    base = rates["engine alone (this process)"]
    print(f"{len(events)} events, {args.agents} agents, {len(lines)} distinct lines")
    print(f"{'case':32} {'events/s':>10} {'x engine':>9}")
    for name, rate in rates.items():
        print(f"{name:32} {rate:10.0f} {rate / base:9.2f}")
    one, two = rates["pool, 1 process"], rates["pool, 2 processes"]
    print(f"2 processes / 1 process: {two / one:.2f}")


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--agents", type=int, default=100)
    args = parser.parse_args()
    reason = missing_reason("WAZUH_RULESET")
    if reason:
        print(f"skipped: {reason}")
        return 0
    failures: list[BaseException] = []

    def start() -> Deferred[None]:
        done = Deferred.fromCoroutine(run(args))
        done.addErrback(lambda f: failures.append(f.value))
        done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
        return done

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if failures:
        raise failures[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load: several workers and thousands of simulated agents for a while, judged by Wazuh QA's
reliability criteria.

Criteria, checked at the end: no ERROR line in any cluster.log (except ``Could not connect
to master``), no worker reconnect after its first join, no integrity sync repeating the same
counts three times in a row, every agent active in the master's registry, and memory that
does not grow (each node's VmRSS is sampled; the least-squares slope is reported).

The default is a short run for ``make test``; ``make soak`` sets
``WAZUHCLUSTER_LOAD_WORKERS=10 WAZUHCLUSTER_LOAD_AGENTS=20000 WAZUHCLUSTER_LOAD_SECONDS=600``.
``WAZUHCLUSTER_LOAD_REPORT`` names a JSON file for the figures.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from tests.integration.common import DEADLINE, ClusterTestCase, active_agents
from tests.integration.test_faults_support import (
    in_sync,
    log_lines,
    open_fds,
    slope,
    sync_difference,
    unexpected_errors,
    vm_rss_kib,
)
from wazuhcluster.registry.store import Registry, RegistryFiles
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

WORKERS = int(os.environ.get("WAZUHCLUSTER_LOAD_WORKERS", "3"))
AGENTS = int(os.environ.get("WAZUHCLUSTER_LOAD_AGENTS", "1500"))
SECONDS = float(os.environ.get("WAZUHCLUSTER_LOAD_SECONDS", "30"))
REPORT = os.environ.get("WAZUHCLUSTER_LOAD_REPORT")
KEEPALIVE = os.environ.get("WAZUHCLUSTER_LOAD_KEEPALIVE", "5")
EPS = os.environ.get("WAZUHCLUSTER_LOAD_EPS", str(max(AGENTS // 100, 10)))
SAMPLE_EVERY = 3.0
CONNECTED = "Successfully connected to master"
_SYNC_SUMMARY = re.compile(r"\[Integrity sync\] (?!Starting|Finished)(.*)$")


def preenroll(cluster: LocalCluster, count: int) -> list[str]:
    """Register ``count`` agents straight into the master's registry (as if they had enrolled
    before the run) and return the client.keys lines."""
    home = cluster.home(cluster.master)
    files = RegistryFiles(home.client_keys, home.shared, home.root / "var" / "multigroups")
    registry = Registry.open(home.var_db / "global.db", files)
    try:
        registry.connection.execute("PRAGMA synchronous = OFF")  # set-up only, not the test
        for index in range(count):
            registry.enroll(f"load-{index:05d}")
        registry.flush_files()
    finally:
        registry.close()
    return [line for line in home.client_keys.read_text().splitlines() if line.strip()]


def task_seconds(lines: list[str], task: str) -> dict[str, float]:
    """Max and mean of the ``Finished in Xs`` durations the log reports for ``task``."""
    pattern = re.compile(rf"\[{re.escape(task)}\] Finished in ([0-9.]+)s")
    found = [float(m.group(1)) for m in map(pattern.search, lines) if m]
    if not found:
        return {"runs": 0}
    return {"runs": len(found), "max": max(found), "mean": round(sum(found) / len(found), 3)}


def sync_repeats(lines: list[str]) -> int:
    """The longest run of identical consecutive integrity-sync summaries."""
    longest = run = 0
    previous = None
    for line in lines:
        match = _SYNC_SUMMARY.search(line)
        if match is None:
            continue
        summary = match.group(1)
        run = run + 1 if summary == previous else 1
        previous = summary
        longest = max(longest, run)
    return longest


class LoadTests(ClusterTestCase):
    """A master, WORKERS workers and AGENTS simulated agents."""

    def simulate(self, cluster: LocalCluster, worker: str, keys: Path, count: int) -> None:
        """wazuh-agent-sim for ``count`` agents of ``keys`` on ``worker``; killed at the end."""
        ports = cluster.node_ports(worker)
        self.start_simulator(
            "--port",
            str(ports["agents"]),
            "--keys",
            str(keys),
            "--agents",
            str(count),
            "--keepalive",
            KEEPALIVE,
            "--eps",
            str(max(int(EPS) // WORKERS, 1)),
            "--spread",
            str(min(20, max(2, count // 200))),
            output=cluster.base / f"sim-{worker}.log",
        )

    def test_load(self) -> None:
        """The cluster under load meets the reliability criteria (see the module docstring)."""
        workers = [f"worker{i}" for i in range(1, WORKERS + 1)]
        cluster = self.make_cluster(workers)
        started = time.monotonic()
        lines = preenroll(cluster, AGENTS)
        nodes: dict[str, NodeProcess] = {"master": self.start(cluster, "master", "master")}
        for name in workers:
            nodes[name] = self.start(cluster, name, "worker")
        for name in workers:
            self.wait_log(nodes[name], CONNECTED, timeout=DEADLINE * 2)
        if not wait_for(lambda: in_sync(cluster, workers), DEADLINE * 2, 0.5):
            self.fail(f"keys not synced: {sync_difference(cluster, workers[0])}")
        for name in workers:
            # The agent channel reloads client.keys on its own period: until then the synced
            # keys are unknown to it and agents would be refused (and retry).
            self.wait_log(nodes[name], f"Reading authentication keys file. {AGENTS} agents.")
        for index, name in enumerate(workers):
            share = lines[index::WORKERS]
            keys = cluster.base / f"keys-{name}"
            keys.write_text("".join(line + "\n" for line in share))
            self.simulate(cluster, name, keys, len(share))
        warmup = max(DEADLINE, AGENTS / 50)
        if not wait_for(lambda: active_agents(cluster) == AGENTS, warmup, 1.0):
            self.fail(f"only {active_agents(cluster)} of {AGENTS} agents active")
        ready = time.monotonic()

        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in nodes}
        fds: dict[str, int] = {}
        while time.monotonic() - ready < SECONDS:
            now = time.monotonic() - ready
            for name, node in nodes.items():
                assert node.process is not None
                rss = vm_rss_kib(node.process.pid)
                self.assertIsNotNone(rss, f"{name} died:\n{node.log_text()[-3000:]}")
                samples[name].append((now / 60.0, float(rss or 0)))
                fds[name] = max(fds.get(name, 0), open_fds(node.process.pid))
            time.sleep(SAMPLE_EVERY)

        active_end = active_agents(cluster)
        report = {
            "workers": WORKERS,
            "agents": AGENTS,
            "seconds": SECONDS,
            "setup_seconds": round(ready - started, 1),
            "active_at_end": active_end,
            "rss_kib_first": {n: s[0][1] for n, s in samples.items()},
            "rss_kib_last": {n: s[-1][1] for n, s in samples.items()},
            "rss_slope_kib_per_min": {n: round(slope(s), 1) for n, s in samples.items()},
            "max_fds": fds,
            "errors": {n: unexpected_errors(cluster.home(n)) for n in nodes},
            "warnings": {n: len(log_lines(cluster.home(n), "WARNING")) for n in nodes},
            "warning_kinds": {
                n: sorted(
                    {re.sub(r"\d+", "N", w)[:120] for w in log_lines(cluster.home(n), "WARNING")}
                )[:5]
                for n in nodes
            },
            "joins": {n: nodes[n].log_text().count(CONNECTED) for n in workers},
            "agent_info_seconds": {
                n: task_seconds(nodes[n].log_text().splitlines(), "Agent-info sync")
                for n in workers
            },
            "integrity_check_seconds": {
                n: task_seconds(nodes[n].log_text().splitlines(), "Integrity check")
                for n in workers
            },
            "longest_sync_repeat": {
                n: sync_repeats(nodes[n].log_text().splitlines()) for n in workers
            },
        }
        print(json.dumps(report, indent=1))
        if REPORT:
            Path(REPORT).write_text(json.dumps(report, indent=1) + "\n")

        self.assertEqual(active_end, AGENTS, "agents lost their active status")
        for name in nodes:
            self.assertEqual(report["errors"][name], [], f"ERROR lines on {name}")  # type: ignore[index]
        for name in workers:
            self.assertEqual(report["joins"][name], 1, f"{name} reconnected")  # type: ignore[index]
            self.assertLess(report["longest_sync_repeat"][name], 3, f"{name} sync loop")  # type: ignore[index]
        for name, series in samples.items():
            first, last = series[0][1], series[-1][1]
            # Lenient on purpose for short runs (allocator warm-up); the slope is the figure.
            self.assertLess(last, first * 1.5 + 20_000, f"{name} RSS grew {first} → {last} KiB")

"""Benchmark: agent-info from 10 workers (50,000 agents) into one master, per sync cycle.

The cluster is bench_cluster's (every node its own process, mutual TLS on 127.0.0.1, Wazuh's
default 10 s agent-info interval, every agent connected over the real agent protocol from
separate ``wazuh-load-gen`` processes, a keep-alive every 10 s), with few shared files so
agent-info is what the master does. Per cycle it reports, from the nodes' cluster.log: the
master's apply time per worker report (max, mean), the workers' send time (stream out until
the master's answer), and from /proc the master's CPU and peak RSS.

Baseline, same run: the same number of full rows (every column) written by plain SQLite
``UPDATE … WHERE id = ?`` into the agents and agent_times tables (``executemany``, one
transaction per worker's batch, rows in arrival order) in a copy of the master's database
after the cluster stopped: what SQLite alone costs.

    .venv/bin/python bench/bench_agent_info.py [--workers 10] [--agents 50000] [--cycles 12]

Writes docs/bench/agent_info.csv and agent_info.png; prints the table. Not part of the test
suite. Wazuh (10 workers / 50,000 agents, stable phase): master max 3 s, workers max 5.1 s,
master memory 330 MB; issue 5's target: master max ≤ 1 s, master RSS ≤ 200 MB.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import bench_cluster as bc  # noqa: E402
import plot  # noqa: E402

SYNC_INTERVAL = 10.0  # Wazuh's sync_agent_info default, which the cluster runs with


def per_cycle(run: bc.Run) -> list[dict[str, float]]:
    """Figures of each agent-info cycle of the stable phase."""
    start, end = run.phases["stable"]
    cycles: dict[int, dict[str, list[float]]] = {}

    def slot(stamp: float) -> dict[str, list[float]] | None:
        if not start <= stamp + 1 <= end:  # log stamps are whole seconds
            return None
        index = int(max(stamp - start, 0) // SYNC_INTERVAL)
        return cycles.setdefault(index, {"master": [], "worker": [], "cpu": [], "rss": []})

    for phase, stamp, figure, _, seconds in bc.timings(run):
        place = slot(stamp) if phase == "stable" else None
        if place is not None and figure == "agent-info master":
            place["master"].append(seconds)
        elif place is not None and figure == "agent-info workers":
            place["worker"].append(seconds)
    for phase, stamp, figure, node, value in bc.resource_rows(run):
        place = slot(stamp) if phase == "stable" and node == run.cluster.master else None
        if place is not None and figure == "master CPU %":
            place["cpu"].append(value)
        elif place is not None and figure == "master RSS KB":
            place["rss"].append(value)
    rows = []
    for index in sorted(cycles):
        c = cycles[index]
        if not c["master"]:
            continue
        rows.append(
            {
                "cycle": float(index),
                "reports": float(len(c["master"])),
                "master_max": max(c["master"]),
                "master_mean": statistics.fmean(c["master"]),
                "worker_max": max(c["worker"], default=float("nan")),
                "worker_mean": statistics.fmean(c["worker"]) if c["worker"] else float("nan"),
                "master_cpu_mean": statistics.fmean(c["cpu"]) if c["cpu"] else float("nan"),
                "master_rss_peak_kb": max(c["rss"], default=float("nan")),
            }
        )
    return rows


def sqlite_baseline(database: Path, workers: int, agents: int, cycles: int) -> list[float]:
    """Seconds per worker batch of plain UPDATEs of every agent, ``cycles`` times over."""
    connection = sqlite3.connect(str(database), isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    ids = list(range(1, agents + 1))
    rnd = random.Random(5)
    batches = [ids[i::workers] for i in range(workers)]
    times = []
    stamp = time.time()
    for cycle in range(cycles):
        for number, batch in enumerate(batches):
            order = batch[:]
            rnd.shuffle(order)  # arrival order, as a worker's dirty set yields it
            rows = [
                (
                    "active",
                    "Wazuh v4.9.0",
                    "Ubuntu",
                    "22.04.3 LTS",
                    "ubuntu",
                    "x86_64",
                    f"Linux |agent-{n:03d} |5.15.0-91-generic |#101-Ubuntu SMP |x86_64",
                    "{}",
                    "ab73af41699f13fdd81903b5f23d8d00",
                    "c2305e0ac17e7176e924294c69cc7a24",
                    f"w{number + 1:02d}",
                    n,
                )
                for n in order
            ]
            times_rows = [(stamp + cycle, 0.0, stamp + cycle, 10_000_000 + cycle, n) for n in order]
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "UPDATE agents SET connection_status = ?, version = ?, os_name = ?, "
                "os_version = ?, os_platform = ?, os_arch = ?, os_uname = ?, labels = ?, "
                "config_sum = ?, merged_sum = ?, node_name = ? WHERE id = ?",
                rows,
            )
            connection.executemany(
                "UPDATE agent_times SET last_keepalive = ?, disconnection_time = ?, "
                "status_time = ?, status_seq = ? WHERE id = ?",
                times_rows,
            )
            connection.execute("COMMIT")
            times.append(time.perf_counter() - started)
    connection.close()
    return times


def main() -> None:
    """Run the cluster, then the baseline; print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--out", type=Path, default=bc.OUT)
    options = parser.parse_args()
    scenario = bc.Scenario(
        options.workers,
        options.agents,
        files=50,
        groups=50,
        stable=options.cycles * SYNC_INTERVAL + 2,
        change_every=3600,
    )
    run, summary = bc.run_scenario(scenario, keep=True)
    try:
        cycles = per_cycle(run)
        copy = run.base / "baseline.db"
        shutil.copy(run.cluster.home(run.cluster.master).var_db / "global.db", copy)
        baseline = sqlite_baseline(copy, options.workers, options.agents, options.cycles)
    finally:
        shutil.rmtree(run.base, ignore_errors=True)
    out: Path = options.out
    header = [
        "cycle",
        "reports",
        "master_max",
        "master_mean",
        "worker_max",
        "worker_mean",
        "master_cpu_mean",
        "master_rss_peak_kb",
    ]
    bc.write_csv(out / "agent_info.csv", header, ([c[h] for h in header] for c in cycles))
    print(
        "| cycle | reports | master apply max | mean | worker send max | mean | master CPU % "
        "| master RSS peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in cycles:
        print(
            f"| {c['cycle']:.0f} | {c['reports']:.0f} | {c['master_max']:.3f} | "
            f"{c['master_mean']:.3f} | {c['worker_max']:.3f} | {c['worker_mean']:.3f} | "
            f"{c['master_cpu_mean']:.0f} | {c['master_rss_peak_kb'] / 1024:.0f} |"
        )
    masters = [c["master_max"] for c in cycles]
    means = [c["master_mean"] for c in cycles]
    workers_max = [c["worker_max"] for c in cycles]
    rss = max(c["master_rss_peak_kb"] for c in cycles) / 1024
    uss = summary.get(("stable", "master USS KB"), {}).get("max", float("nan")) / 1024
    per_batch = options.agents / options.workers
    print()
    print(
        f"stable phase, {len(cycles)} cycles: master apply max {max(masters):.3f} s, mean "
        f"{statistics.fmean(means):.3f} s; worker send max {max(workers_max):.3f} s; "
        f"master CPU mean {statistics.fmean(c['master_cpu_mean'] for c in cycles):.0f} %; "
        f"master peak RSS {rss:.0f} MB (USS {uss:.0f} MB)"
    )
    print(
        f"baseline, plain SQLite UPDATE of {per_batch:.0f} rows per batch: max "
        f"{max(baseline):.3f} s, mean {statistics.fmean(baseline):.3f} s "
        f"(all {options.workers} batches of a cycle: "
        f"{statistics.fmean(baseline) * options.workers:.3f} s)"
    )
    print(
        f"Wazuh threshold: master max 3 s, workers max 5.1 s, master 330 MB; "
        f"target master max <= 1 s: {'met' if max(masters) <= 1 else 'NOT met'}, "
        f"RSS <= 200 MB: {'met' if rss <= 200 else 'NOT met'}"
    )
    plot.bars(
        [
            "master apply max",
            "master apply mean",
            "worker send max",
            "SQLite batch max",
            "SQLite batch mean",
        ],
        [
            max(masters),
            statistics.fmean(means),
            max(workers_max),
            max(baseline),
            statistics.fmean(baseline),
        ],
        "seconds",
        f"Agent-info, {options.workers} workers / {options.agents} agents, per report",
        out / "agent_info.png",
    )


if __name__ == "__main__":
    main()

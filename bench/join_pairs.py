"""Paired cold-sync joins: two versions of the code, alternated, each with its own master.

Not part of the tests. The machine's speed drifts from minute to minute (another tenant's load,
ext4 being slow to create files after a large deletion), which moves the figures of
``bench_integrity_cluster.py`` more than most code changes do. Here each source tree given gets
a cluster of its own (a master holding a tree of 10,000 files of 1-8 KB, so two versions that
speak different protocols can be compared), and fresh, empty workers join the masters in turn;
each join is timed as in (a), from the worker's link up to the end of its durable sync::

    git archive OLD wazuhcluster twisted | tar -x -C /tmp/old
    .venv/bin/python bench/join_pairs.py BASE ROUNDS /tmp/old "$PWD"

BASE is a new directory for the homes (under /dev/shm for tmpfs); ROUNDS joins per tree. A node
takes its code from its working directory, which comes first on its ``sys.path``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TypeVar

from bench_integrity_cluster import (
    LogTail,
    Nodes,
    cold_sync,
    cpu_seconds,
    make_tree,
    start_master_and_worker1,
    wait,
)

CHECKOUT = str(Path(__file__).resolve().parent.parent)

T = TypeVar("T")


def in_tree(tree: str, action: Callable[[], T]) -> T:
    """``action()`` run with ``tree`` as the working directory, so the nodes it starts run the
    code of that tree."""
    os.chdir(tree)
    try:
        return action()
    finally:
        os.chdir(CHECKOUT)


def join(nodes: Nodes, name: str, tree: str) -> tuple[float, float, float]:
    """Start the fresh worker ``name`` with the code of ``tree``; the seconds from its link up
    until it logs the end of its sync, and the CPU seconds the worker and the master used in
    that time (far steadier than the wall time on a shared machine)."""
    log = LogTail(nodes.cluster.home(name).cluster_log)
    os.sync()  # as in (a): no dirty pages of the step before
    in_tree(tree, lambda: nodes.start(name, "worker"))
    wait(lambda: log.count("Successfully connected") >= 1, f"{name}'s link up", 60)
    started = time.perf_counter()
    pids = (nodes.pid(name), nodes.pid("master"))
    cpu0 = [cpu_seconds(pid) for pid in pids]
    wait(lambda: log.count("[Integrity sync] Finished") >= 1, f"the sync of {name}")
    took = time.perf_counter() - started
    worker_cpu, master_cpu = (cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True))
    return took, worker_cpu, master_cpu


def main() -> None:
    """Run the rounds and print every join, then the medians per tree."""
    base, rounds, trees = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    if base.exists() or not trees:
        raise SystemExit(__doc__)
    clusters = {
        tree: Nodes(base / f"tree{i}", [f"worker{w}" for w in range(1, rounds + 2)])
        for i, tree in enumerate(trees)
    }
    results: dict[str, list[tuple[float, float, float]]] = {tree: [] for tree in trees}
    os.chdir(CHECKOUT)
    with ExitStack() as stack:
        for tree, nodes in clusters.items():
            stack.callback(nodes.stop_all)
            in_tree(tree, partial(start_master_and_worker1, nodes))
            staging = nodes.cluster.home("master").root / "queue" / "bench"
            make_tree(staging, 10_000)
            cold_sync(nodes, staging)
            nodes.stop("worker1")
        for number in range(2, rounds + 2):
            for tree, nodes in clusters.items():
                name = f"worker{number}"
                took, worker_cpu, master_cpu = join(nodes, name, tree)
                nodes.stop(name)
                results[tree].append((took, worker_cpu, master_cpu))
                print(
                    f"{tree}: {took:.3f} s, CPU worker {worker_cpu:.2f} s, master "
                    f"{master_cpu:.2f} s [load {os.getloadavg()[0]:.1f}]",
                    flush=True,
                )
    for tree, joins in results.items():
        walls, worker_cpus, master_cpus = zip(*joins, strict=True)
        shown = ", ".join(f"{t:.3f}" for t in sorted(walls))
        print(
            f"{tree}: median {statistics.median(walls):.3f} s ({shown}); median CPU worker "
            f"{statistics.median(worker_cpus):.2f} s, master {statistics.median(master_cpus):.2f} s"
        )


if __name__ == "__main__":
    main()

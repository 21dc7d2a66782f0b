"""Micro-benchmark: the registry-side costs behind the agent-info and enrollment figures.

One process, no cluster, temporary files. Prints:

1. agent-info: CPU time (``time.process_time``, median of ``--rounds``) to decode one
   worker's report of keep-alive refreshes and apply it to a registry, for 10,000, 25,000 and
   50,000 agents (reports of a tenth of the agents, as ten workers send them), with the
   exponent k of cost ~ rows**k between the smallest and the largest;
2. client.keys on a worker at ``--agents`` agents: one pushed key merged through the
   :class:`~wazuhcluster.registry.keys.KeysFile` mirror, against re-reading and validating
   the whole file (what a merge cost before the mirror).

    .venv/bin/python bench/bench_registry.py [--rounds 7] [--agents 50000]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wazuhcluster.agents.info import decode_reports  # noqa: E402
from wazuhcluster.registry.keys import (  # noqa: E402
    KeyEntry,
    KeysFile,
    read_client_keys,
    write_client_keys,
)
from wazuhcluster.registry.store import Registry  # noqa: E402

KEY = "ab" * 32


def filled_registry(base: Path, agents: int) -> Registry:
    """A registry holding ``agents`` active agents of node w01."""
    registry = Registry.open(base / f"global-{agents}.db")
    db = registry.connection
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO agents (id, name, ip, key, register_time, connection_status, node_name) "
        "VALUES (?, ?, 'any', ?, 0, 'active', 'w01')",
        [(n, f"agent-{n}", KEY) for n in range(1, agents + 1)],
    )
    db.executemany("INSERT INTO agent_times (id) VALUES (?)", [(n,) for n in range(1, agents + 1)])
    db.execute("COMMIT")
    return registry


def refresh_report(ids: list[int], cycle: int) -> bytes:
    """A worker's report: one keep-alive refresh per agent, as encode_rows writes it."""
    lines = [
        json.dumps(
            {
                "id": f"{n:03d}",
                "status": "active",
                "last_keepalive": 1000.0 * cycle,
                "disconnection_time": None,
                "time": 1000.0 * cycle + 0.5,
                "seq": cycle * 1_000_000 + position,
                "refresh": True,
            },
            separators=(",", ":"),
        )
        for position, n in enumerate(ids)
    ]
    return ("\n".join(lines) + "\n").encode()


def agent_info_costs(base: Path, rounds: int) -> None:
    """Print the CPU cost of one report at three registry sizes."""
    rnd = random.Random(5)
    costs: dict[int, float] = {}
    for agents in (10_000, 25_000, 50_000):
        registry = filled_registry(base, agents)
        rows = agents // 10
        samples = []
        for cycle in range(1, rounds + 1):
            data = refresh_report(rnd.sample(range(1, agents + 1), rows), cycle)
            started = time.process_time()
            registry.apply_agent_info(decode_reports(data, "w01"))
            samples.append(time.process_time() - started)
        registry.close()
        costs[rows] = statistics.median(samples)
        print(f"agent-info: {rows:>5} rows into {agents:>6} agents: "
              f"{1000 * costs[rows]:6.1f} ms CPU per report (decode + apply)")  # fmt: skip
    small, large = min(costs), max(costs)
    k = math.log(costs[large] / costs[small]) / math.log(large / small)
    print(f"agent-info: cost ~ rows**k with k = {k:.2f}")


def keys_merge_costs(base: Path, agents: int, rounds: int) -> None:
    """Print one pushed key merged through the mirror against a full re-read of the file."""
    path = base / "client.keys"
    entries = [KeyEntry(f"{n:03d}", f"agent-{n}", "any", KEY) for n in range(1, agents + 1)]
    write_client_keys(path, entries)
    mirror = KeysFile(path)
    mirror.merge([])  # the first merge reads the file, as a worker's first push does
    merges, reads = [], []
    for n in range(agents + 1, agents + 1 + rounds):
        started = time.perf_counter()
        mirror.merge([([{"id": str(n), "name": f"agent-{n}", "ip": "any", "key": KEY}], [])])
        merges.append(time.perf_counter() - started)
        started = time.perf_counter()
        read_client_keys(path)
        reads.append(time.perf_counter() - started)
    print(f"client.keys at {agents} agents: merge of one pushed key "
          f"{1000 * statistics.median(merges):.1f} ms (write + fsync included), "
          f"re-reading the file {1000 * statistics.median(reads):.1f} ms")  # fmt: skip


def main() -> None:
    """Run both measurements in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--agents", type=int, default=50_000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wzc-registry-") as directory:
        agent_info_costs(Path(directory), options.rounds)
        keys_merge_costs(Path(directory), options.agents, options.rounds)


if __name__ == "__main__":
    main()

"""Benchmark: the promotion of a new master, 50,000 agents from a real etcd to its registry.

A one-member etcd (Debian's ``etcd``) is filled with ``--agents`` agent records the way the
master writes them (the failover agent store, ``DurableAgents.save``, in batches of
``--batch``). Then the take-over a newly elected master runs before its services open
(``roles.promotion.take_over_agents``: every record read from etcd, checked, and the SQLite
registry made to match it, client.keys rewritten) is timed in two cases:

- **empty**: a fresh node whose registry holds no agent;
- **caught up**: a registry that already holds all but 100 of them, plus 50 agents etcd no
  longer knows (100 added, 50 removed).

Each is split into reading the records from etcd (``DurableAgents.load``) and applying
them (the rest). Baselines measured in the same run: a raw SQLite insert of the same rows
in one transaction (no checks, no groups, no files), and a raw range read of the same keys
from etcd's JSON gateway in the same pages (urllib, no decoding of the records).

    .venv/bin/python bench/bench_promotion.py [--agents 50000] [--repeat 3]

Prints the best of ``--repeat`` runs of each and the machine's load average. Not part of
the test suite. Target (issue 21): 50,000 agents taken over in ≤ 5 s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402
from zope.interface import implementer  # noqa: E402

from wazuhcluster.config.home import Home  # noqa: E402
from wazuhcluster.failover.agents import PAGE, DurableAgents  # noqa: E402
from wazuhcluster.failover.client import EtcdClient  # noqa: E402
from wazuhcluster.failover.interfaces import IDurableAgents  # noqa: E402
from wazuhcluster.failover.kv import Op, TxnResult, prefix_end  # noqa: E402
from wazuhcluster.registry.model import DurableAgent  # noqa: E402
from wazuhcluster.roles.promotion import open_registry, take_over_agents  # noqa: E402
from wazuhcluster.testing.etcd import EtcdCluster, find_etcd  # noqa: E402
from wazuhcluster.util.logs import ClusterLog  # noqa: E402
from wazuhcluster.util.threads import run_in_reactor_pool  # noqa: E402

PREFIX = "/wazuhcluster/bench/"
NEW, GONE = 100, 50


class Unfenced:
    """The store's fenced write without an election: a plain transaction (the bench is the
    only writer)."""

    def __init__(self, client: EtcdClient) -> None:
        self.client = client

    async def fenced_txn(self, success: Sequence[Op]) -> TxnResult:
        """Run ``success`` unconditionally."""
        return await self.client.txn([], success)


@implementer(IDurableAgents)
class TimedLoad:
    """The store as promotion sees it, timing its one read of etcd."""

    def __init__(self, durable: DurableAgents) -> None:
        self.durable = durable
        self.seconds = 0.0

    async def load(self) -> tuple[list[dict[str, Any]], int]:
        """The store's load, timed."""
        started = time.perf_counter()
        loaded = await self.durable.load()
        self.seconds = time.perf_counter() - started
        return loaded

    async def save(self, *args: Any, **kwargs: Any) -> None:
        """Never reached here (etcd holds agents)."""
        raise AssertionError("the bench's etcd should hold agents")


def agent_record(number: int) -> dict[str, Any]:
    """The durable record of bench agent ``number``."""
    return DurableAgent(
        f"{number:03d}",
        f"bench-agent-{number:06d}",
        "any",
        f"{number:08d}" + "a1b2c3d4e5f6" * 4,
        1_700_000_000.0 + number,
        ("default",),
    ).record()


def raw_sqlite(path: Path, records: list[dict[str, Any]]) -> float:
    """Seconds to insert the records' columns into a bare table, one transaction."""
    db = sqlite3.connect(path)
    try:
        db.execute(
            "CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT UNIQUE, ip TEXT, "
            "key TEXT, register_time REAL)"
        )
        rows = [(int(r["id"]), r["name"], r["ip"], r["key"], r["register_time"]) for r in records]
        started = time.perf_counter()
        with db:
            db.executemany("INSERT INTO agents VALUES (?, ?, ?, ?, ?)", rows)
        return time.perf_counter() - started
    finally:
        db.close()


def raw_range(endpoint: str) -> tuple[float, int]:
    """Seconds to read every agent key through etcd's JSON gateway in pages of
    :data:`PAGE` (blocking; the JSON parsed, the records not), and how many were read."""
    start = (PREFIX + "agents/").encode()
    end = prefix_end(PREFIX + "agents/")
    count = 0
    started = time.perf_counter()
    while True:
        body = {
            "key": base64.b64encode(start).decode(),
            "range_end": base64.b64encode(end).decode(),
            "limit": str(PAGE),
        }
        request = urllib.request.Request(
            endpoint + "/v3/kv/range", json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            page = json.loads(answer.read())
        kvs = page.get("kvs", [])
        count += len(kvs)
        if not page.get("more") or not kvs:
            break
        start = base64.b64decode(kvs[-1]["key"]) + b"\0"
    return time.perf_counter() - started, count


def registry_holding(home: Home, records: list[dict[str, Any]]) -> None:
    """Give ``home`` a registry that holds exactly ``records`` (blocking)."""
    home.make_dirs()
    registry = open_registry(home)
    try:
        registry.replace_agents([DurableAgent.from_record(record) for record in records])
        registry.flush_files()
    finally:
        registry.close()


async def take_over(durable: DurableAgents, home: Home) -> tuple[float, float]:
    """Run the promotion's take-over of agents into ``home``: (read, total) seconds."""
    timed = TimedLoad(durable)
    started = time.perf_counter()
    await take_over_agents(timed, home, run_in_reactor_pool, ClusterLog("Master", "Bench"))
    return timed.seconds, time.perf_counter() - started


def registry_count(home: Home) -> int:
    """How many agents ``home``'s registry holds."""
    registry = open_registry(home)
    try:
        return len(registry.list_agents())
    finally:
        registry.close()


async def run(reactor: Any, args: argparse.Namespace, base: Path) -> None:
    """Fill etcd, time the cases, print the figures."""
    etcd = EtcdCluster(base / "etcd")
    etcd.start()
    client = EtcdClient.connect(reactor, etcd.endpoints, timeout=60)
    try:
        durable = DurableAgents(Unfenced(client), client, PREFIX)
        records = [agent_record(number) for number in range(1, args.agents + 1)]
        started = time.perf_counter()
        for at in range(0, len(records), args.batch):
            batch = records[at : at + args.batch]
            await durable.save(batch, [], next_id=int(batch[-1]["id"]) + 1)
        stored = time.perf_counter() - started
        print(f"stored {len(records)} records in etcd in {stored:.1f} s", flush=True)

        figures: dict[str, list[tuple[float, float]]] = {"empty": [], "caught up": []}
        raw_db, raw_etcd = [], []
        for round_number in range(args.repeat):
            home = Home(base / f"empty{round_number}")
            home.make_dirs()
            figures["empty"].append(await take_over(durable, home))
            if registry_count(home) != args.agents:
                raise RuntimeError("the empty registry did not take over every agent")
            home = Home(base / f"stale{round_number}")
            gone = [
                agent_record(number) for number in range(args.agents + 1, args.agents + GONE + 1)
            ]
            await run_in_reactor_pool(registry_holding, home, records[:-NEW] + gone)
            figures["caught up"].append(await take_over(durable, home))
            if registry_count(home) != args.agents:
                raise RuntimeError("the stale registry was not caught up")
            raw_db.append(raw_sqlite(base / f"raw{round_number}.db", records))
            seconds, count = await run_in_reactor_pool(raw_range, etcd.endpoints[0])
            if count != args.agents:
                raise RuntimeError(f"the raw range read {count} keys")
            raw_etcd.append(seconds)
            print(f"  round {round_number + 1} done", flush=True)
    finally:
        await client.close()
        etcd.stop()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nTake-over of {args.agents} agents (best of {args.repeat}; etcd on 127.0.0.1)")
    print("| registry before | read from etcd | apply to registry | total | worst total |")
    print("|---|---|---|---|---|")
    for case, runs in figures.items():
        read, total = min(runs, key=lambda pair: pair[1])
        worst = max(pair[1] for pair in runs)
        label = "empty" if case == "empty" else f"{args.agents - NEW} of them + {GONE} gone"
        print(f"| {label} | {read:.2f} s | {total - read:.2f} s | {total:.2f} s | {worst:.2f} s |")
    print("(target: total ≤ 5 s)")
    best_db, best_etcd = min(raw_db), min(raw_etcd)
    empty_read, empty_total = min(figures["empty"], key=lambda pair: pair[1])
    print(
        f"\nbaselines: raw etcd range read of the same keys {best_etcd:.2f} s "
        f"(read ratio {empty_read / best_etcd:.1f}×); raw SQLite insert of the same rows in "
        f"one transaction {best_db:.2f} s (apply ratio {(empty_total - empty_read) / best_db:.1f}×)"
    )


def main() -> None:
    """Parse the arguments and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="records per save when filling")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if find_etcd() is None:
        sys.exit("bench_promotion: etcd is not installed (make system-deps)")
    base = Path(tempfile.mkdtemp(prefix="wzc-bench-promotion-"))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        task.react(lambda reactor: ensureDeferred(run(reactor, args, base)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

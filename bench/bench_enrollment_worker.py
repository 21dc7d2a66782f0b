"""Benchmark: enrollments per second through a worker (TLS on 1515, forwarded to the master).

A master and two workers run as processes on 127.0.0.1 (bench_cluster's node processes,
mutual TLS between them). The same client (:func:`request_enrollment`, ``--concurrency``
requests in flight) enrolls ``--count`` agents:

1. against a trivial TLS line server in this process (handshake, one line, a fixed answer),
2. through worker ``w01`` (the worker forwards each request to the master over the cluster
   link; the master decides, writes the registry and client.keys, pushes the key to every
   worker and answers back through the worker),
3. directly on the master's 1515, for reference.

1 and 2 alternate for ``--rounds`` rounds, so the machine's drift reaches both alike; the
figures are the medians, the ratio the median of the rounds' ratios.

Afterwards every agent enrolled through the worker must be in the master's registry (read
from its SQLite file) and in the *other* worker's (``w02``) client.keys.

    .venv/bin/python bench/bench_enrollment_worker.py [--count 1000] [--concurrency 10] [--rounds 3]

Writes docs/bench/enrollment_worker.csv and .png; prints the figures. Not part of the test
suite. Target (issue 4): through a worker ≥ 0.5× the baseline.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import bench_cluster as bc  # noqa: E402
import plot  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import SSL4ServerEndpoint  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402

from wazuhcluster.agents.enrollment_client import request_enrollment  # noqa: E402
from wazuhcluster.agents.enrollment_tls import (  # noqa: E402
    ensure_manager_certificate,
    server_tls_options,
)
from wazuhcluster.config.auth_settings import default_auth  # noqa: E402
from wazuhcluster.registry.keys import read_client_keys  # noqa: E402
from wazuhcluster.registry.store import Registry  # noqa: E402

FIXED_REPLY = b"OSSEC K:'001 agent any " + b"0" * 64 + b"'"


class TrivialLine(Protocol):
    """Baseline: answer the first line with a fixed key line and close."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """Answer once the request line is complete."""
        if b"\n" in data:
            self.transport.write(FIXED_REPLY)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]


async def enroll_all(reactor: Any, port: int, count: int, concurrency: int, prefix: str) -> float:
    """Enroll ``count`` names with ``concurrency`` in flight; return the rate per second."""
    names = iter(range(count))
    failures: list[Exception] = []

    async def client() -> None:
        for number in names:
            try:
                await request_enrollment(reactor, "127.0.0.1", port, f"{prefix}-{number:06d}")
            except Exception as error:  # counted and reported below
                failures.append(error)

    started = time.perf_counter()
    await defer.gatherResults([defer.Deferred.fromCoroutine(client()) for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    if failures:
        print(f"  {prefix}: {len(failures)} failures, first: {failures[0]!r}")
    return (count - len(failures)) / elapsed


def start_cluster(base: Path) -> bc.Run:
    """A master and two workers (no simulated agents), connected."""
    scenario = bc.Scenario(workers=2, agents=0, files=0, groups=1)
    # The rate limits are off: this measures what the nodes can do, not the default limits
    # (300 per address per minute would refuse most of a 1,000-agent run from 127.0.0.1).
    limits_off = "<rate_limit><max_per_ip>0</max_per_ip><max_total>0</max_total></rate_limit>"
    cluster = bc.LocalCluster(
        base, workers=["w01", "w02"], master="master", auth_options=limits_off
    )
    run = bc.Run(scenario, base, cluster)
    bc.write_homes(run)
    bc.start_cluster(run)
    for name in run.cluster.workers:
        bc.wait_log(run, name, "Successfully connected", 60)
    bc.wait_log(run, run.cluster.master, "w02", 60)
    time.sleep(2)  # let the first integrity and agent-groups rounds pass
    return run


def wait_for_keys(path: Path, names: set[str], timeout: float = 60.0) -> int:
    """How many of ``names`` the client.keys at ``path`` holds, waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            held = {entry.name for entry in read_client_keys(path)}
        except OSError:
            held = set()
        found = len(names & held)
        if found == len(names) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def main() -> None:
    """Run the three measurements and check durability."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternated baseline/worker runs")
    parser.add_argument("--out", type=Path, default=bc.OUT)
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wzc-"))
    run = start_cluster(base)
    rates: dict[str, float] = {}
    rounds: list[tuple[float, float]] = []
    try:
        certs = base / "baseline"
        settings = default_auth(certs)
        ensure_manager_certificate(settings.ssl_manager_cert, settings.ssl_manager_key)
        worker_port = run.cluster.node_ports("w01")["enrollment"]
        master_port = run.cluster.node_ports("master")["enrollment"]

        async def measure(reactor: Any) -> None:
            endpoint = SSL4ServerEndpoint(
                reactor, 0, server_tls_options(settings), interface="127.0.0.1"
            )
            listening = await endpoint.listen(Factory.forProtocol(TrivialLine))
            port = listening.getHost().port
            for index in range(options.rounds):
                baseline = await enroll_all(
                    reactor, port, options.count, options.concurrency, f"base{index}"
                )
                worker = await enroll_all(
                    reactor, worker_port, options.count, options.concurrency, f"viaw{index}"
                )
                print(f"  round {index + 1}: baseline {baseline:.1f}/s, worker {worker:.1f}/s")
                rounds.append((baseline, worker))
            await listening.stopListening()
            rates["baseline"] = statistics.median(base for base, _ in rounds)
            rates["through worker"] = statistics.median(worker for _, worker in rounds)
            rates["master direct"] = await enroll_all(
                reactor, master_port, options.count, options.concurrency, "direct"
            )

        task.react(lambda reactor: defer.Deferred.fromCoroutine(measure(reactor)))
    except SystemExit as done:
        if done.code:
            raise
    finally:
        names = {
            f"viaw{index}-{n:06d}" for index in range(len(rounds)) for n in range(options.count)
        }
        in_w02 = wait_for_keys(run.cluster.home("w02").client_keys, names)
        master_home = run.cluster.home(run.cluster.master)
        registry = Registry.open(master_home.var_db / "global.db")
        durable = sum(1 for name in names if registry.get_agent_by_name(name) is not None)
        registry.close()
        bc.stop_cluster(run)
        shutil.rmtree(base, ignore_errors=True)
    report(options, rates, statistics.median(w / b for b, w in rounds), durable, in_w02)


def report(
    options: argparse.Namespace, rates: dict[str, float], ratio: float, durable: int, in_w02: int
) -> None:
    """Print, write the CSV and the plot (``ratio``: the median of the rounds' ratios)."""
    total = options.count * options.rounds
    print(
        f"connections per run: {options.count}, concurrency: {options.concurrency}, "
        f"rounds: {options.rounds} (medians)"
    )
    for label, rate in rates.items():
        print(f"{label:>16}: {rate:8.1f} /s")
    print(
        f"through a worker / baseline: {ratio:.2f} (target >= 0.5: "
        f"{'met' if ratio >= 0.5 else 'NOT met'})"
    )
    print(
        f"enrolled through w01: {durable}/{total} in the master's registry, "
        f"{in_w02}/{total} in w02's client.keys"
    )
    out: Path = options.out
    bc.write_csv(
        out / "enrollment_worker.csv",
        ["measure", "per_second", "count", "concurrency"],
        [(label, rate, options.count, options.concurrency) for label, rate in rates.items()]
        + [
            ("durable in registry", float(durable), options.count, options.concurrency),
            ("in other worker's client.keys", float(in_w02), options.count, options.concurrency),
        ],
    )
    plot.bars(
        list(rates),
        list(rates.values()),
        "per second",
        f"Enrollment, {options.concurrency} concurrent TLS clients",
        out / "enrollment_worker.png",
    )


if __name__ == "__main__":
    main()

"""Benchmark: failover on a real etcd.

1. Take-over time: two master candidates and a worker on a one-member etcd (Debian's
   ``etcd``); each round the master is killed with SIGKILL and the time is taken until an
   enrollment through the worker is answered with a key (the other candidate elected, its
   master's services up with the agents from etcd, the worker relinked). The killed node is
   restarted as the next round's standby. ``--rounds`` rounds for each lease TTL of
   ``--ttls`` (default: the default 10 s, and 3 s). The probe enrolls every 0.1 s, so a
   figure is at most that late.
2. Enrollment rate through a worker, failover on vs off: the same client (``--concurrency``
   threads, one TLS enrollment each at a time) enrolls ``--count`` agents through a worker of
   a master without ``<failover>`` (the baseline), then of a master with it (every enrollment
   durable in etcd before it is answered; the second candidate running as a worker). The two
   alternate ``--rate-runs`` times on fresh clusters and their medians are compared, so a
   change of the machine's load during the run weighs on both alike.

    .venv/bin/python bench/bench_failover.py [--rounds 5] [--ttls 10,3] [--count 300]
    .venv/bin/python bench/bench_failover.py --ttls "" --rate-runs 5   # the rate only

Prints the figures and the machine's load average. Not part of the test suite. Targets
(issue 21): with the default TTL, median take-over ≤ 12 s and max ≤ 20 s; the rate with
failover ≥ 0.5× the rate without.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wazuhcluster.agents.enrollment import EnrollmentRequest  # noqa: E402
from wazuhcluster.testing.devcluster import (  # noqa: E402
    LocalCluster,
    NodeProcess,
    free_port,
    wait_for,
)
from wazuhcluster.testing.etcd import EtcdCluster, find_etcd  # noqa: E402

DEADLINE = 120.0
#: Every benchmark agent comes from 127.0.0.1: 1515's per-address caps (256 connections, 300
#: requests a minute) are lifted, or they would bound the rate measured.
ONE_ADDRESS = (
    "<max_connections_per_ip>1024</max_connections_per_ip>"
    "<rate_limit><max_per_ip>0</max_per_ip><max_total>0</max_total></rate_limit>"
)
#: The largest answer read from the enrollment service.
MAX_REPLY = 8192


def enroll_once(port: int, name: str, timeout: float = 10.0) -> str | None:
    """Enroll ``name`` on 127.0.0.1:``port`` (blocking); the agent id, or None if refused
    or nothing answered."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reply = bytearray()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(EnrollmentRequest(name).to_line().encode() + b"\n")
            while len(reply) <= MAX_REPLY:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    text = reply.decode("utf-8", "replace")
    if not text.startswith("OSSEC K:'"):
        return None
    return text[len("OSSEC K:'") :].split(" ", 1)[0]


def failover_block(endpoints: list[str], ttl: int) -> str:
    """The ``<failover>`` block of the bench clusters (candidates cand-a and cand-b)."""
    return (
        "    <failover>\n      <etcd>\n"
        + "".join(f"        <endpoint>{endpoint}</endpoint>\n" for endpoint in endpoints)
        + f"      </etcd>\n      <lease_ttl>{ttl}s</lease_ttl>\n"
        "      <candidates>\n        <node>cand-a</node>\n        <node>cand-b</node>\n"
        "      </candidates>\n    </failover>\n"
    )


def wait_log(node: NodeProcess, text: str, times: int = 1) -> None:
    """Wait until ``text`` is ``times`` times in the node's cluster.log, or raise."""
    if not wait_for(lambda: node.log_text().count(text) >= times, DEADLINE, 0.05):
        raise RuntimeError(f"{text!r} not in {node.home.cluster_log}:\n{node.log_text()[-2000:]}")


@contextmanager
def failover_cluster(base: Path, ttl: int | None) -> Iterator[tuple[LocalCluster, dict]]:
    """cand-a (master), cand-b and worker1 running, on a fresh etcd (``ttl`` None: a plain
    master and worker1, no etcd); yields the cluster and its running nodes."""
    etcd = EtcdCluster(base / "etcd") if ttl is not None else None
    nodes: dict[str, NodeProcess] = {}
    try:
        cluster = LocalCluster(
            base / "nodes", master="cand-a", workers=["worker1"], auth_options=ONE_ADDRESS
        )
        if etcd is not None and ttl is not None:
            etcd.start()
            block = failover_block(etcd.endpoints, ttl)
            cluster.cluster_extra = lambda name, role: block
            cluster.cluster_ports["cand-b"] = free_port()
        cluster.write()
        nodes["cand-a"] = NodeProcess(cluster.home("cand-a"), "master")
        nodes["cand-a"].start()
        if etcd is not None:
            wait_log(nodes["cand-a"], "Master for term")
            cluster.write_node("cand-b", "master")
            nodes["cand-b"] = NodeProcess(cluster.home("cand-b"), "master")
            nodes["cand-b"].start()
        nodes["worker1"] = NodeProcess(cluster.home("worker1"), "worker")
        nodes["worker1"].start()
        wait_log(nodes["worker1"], "Successfully connected to master cand-a")
        if "cand-b" in nodes:
            wait_log(nodes["cand-b"], "Successfully connected to master cand-a")
        yield cluster, nodes
    finally:
        for node in nodes.values():
            node.kill()
        if etcd is not None:
            etcd.stop()


def take_overs(base: Path, ttl: int, rounds: int) -> list[float]:
    """Seconds from kill -9 of the master to an enrollment answered through the worker."""
    took: list[float] = []
    with failover_cluster(base, ttl) as (cluster, nodes):
        port = cluster.node_ports("worker1")["enrollment"]
        worker = nodes["worker1"]
        master, standby = "cand-a", "cand-b"
        for number in range(rounds):
            if enroll_once(port, f"ttl{ttl}-before-{number}") is None:
                raise RuntimeError(f"round {number}: no enrollment before the kill")
            linked = worker.log_text().count(f"Successfully connected to master {standby}")
            nodes[master].kill()
            killed = time.monotonic()
            while enroll_once(port, f"ttl{ttl}-after-{number}", timeout=5) is None:
                if time.monotonic() - killed > DEADLINE:
                    raise RuntimeError(f"round {number}: no enrollment after {DEADLINE} s")
                time.sleep(0.1)
            took.append(time.monotonic() - killed)
            print(f"  TTL {ttl} s, round {number + 1}: {took[-1]:.1f} s", flush=True)
            nodes[master].start()
            wait_log(nodes[master], f"Successfully connected to master {standby}")
            wait_log(worker, f"Successfully connected to master {standby}", linked + 1)
            master, standby = standby, master
    return took


def enrollment_rate(base: Path, ttl: int | None, count: int, concurrency: int) -> float:
    """Enrollments per second through worker1, with ``<failover>`` (``ttl``) or without."""
    with failover_cluster(base, ttl) as (cluster, _nodes):
        port = cluster.node_ports("worker1")["enrollment"]
        tag = "off" if ttl is None else "on"
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            ids = list(pool.map(lambda i: enroll_once(port, f"rate-{tag}-{i:05d}"), range(count)))
        elapsed = time.perf_counter() - started
        refused = ids.count(None)
        if refused:
            raise RuntimeError(f"{refused} of {count} enrollments refused (failover {tag})")
        if len(set(ids)) != count:
            raise RuntimeError("an id issued twice")
        return count / elapsed


def main() -> None:
    """Run the take-over rounds and the rate comparison; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="kill -9 rounds per TTL")
    parser.add_argument("--ttls", default="10,3", help="lease TTLs in seconds, comma-separated")
    parser.add_argument("--count", type=int, default=300, help="agents per rate run")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate-runs", type=int, default=3, help="alternated off/on rate runs")
    parser.add_argument("--skip-rate", action="store_true")
    args = parser.parse_args()
    if find_etcd() is None:
        sys.exit("bench_failover: etcd is not installed (make system-deps)")
    base = Path(tempfile.mkdtemp(prefix="wzc-bench-failover-"))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[int, list[float]] = {}
    try:
        for ttl in (int(text) for text in args.ttls.split(",") if text.strip()):
            results[ttl] = take_overs(base / f"ttl{ttl}", ttl, args.rounds)
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for run in range(0 if args.skip_rate else args.rate_runs):
            for case, ttl in (("off", None), ("on", 10)):
                rate = enrollment_rate(
                    base / f"rate-{case}-{run}", ttl, args.count, args.concurrency
                )
                rates[case].append(rate)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if results:
        print("\nkill -9 of the master → an enrollment answered through a worker")
        print("| lease TTL | rounds | median | max |")
        print("|---|---|---|---|")
    for ttl, took in results.items():
        print(f"| {ttl} s | {len(took)} | {statistics.median(took):.1f} s | {max(took):.1f} s |")
    if rates["on"]:
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        print(
            f"\nenrollments through a worker ({args.count} agents, {args.concurrency} at a time, "
            f"{len(rates['on'])} alternated runs each): failover off median {off:.0f}/s "
            f"({', '.join(f'{r:.0f}' for r in rates['off'])}), on median {on:.0f}/s "
            f"({', '.join(f'{r:.0f}' for r in rates['on'])}), ratio {on / off:.2f}× "
            "(target ≥ 0.5×)"
        )


if __name__ == "__main__":
    main()

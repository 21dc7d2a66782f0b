"""Benchmark: enrollments per second on the master's 1515 service vs. a trivial TLS server.

Both servers run in this process on 127.0.0.1 with the same certificate and the same
client (:func:`request_enrollment`, ``concurrency`` requests in flight). The baseline
server answers a fixed key line; ours parses, decides against the SQLite registry on its
thread, rewrites client.keys and answers. After the run every enrollment is checked to
be in the registry and in client.keys.

    .venv/bin/python bench/bench_enrollment.py [--count 1000] [--concurrency 10]

Not part of the test suite. The forward through a worker (cluster link) is not included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from wazuhcluster.agents.enrollment import EnrollmentServerFactory
from wazuhcluster.agents.enrollment_client import request_enrollment
from wazuhcluster.agents.enrollment_tls import ensure_manager_certificate, server_tls_options
from wazuhcluster.config.auth_settings import default_auth
from wazuhcluster.master.enrollment_authority import EnrollmentAuthority, EnrollmentPolicy
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.registry.service import RegistryService
from wazuhcluster.registry.store import Registry, RegistryFiles

FIXED_REPLY = b"OSSEC K:'001 agent any " + b"0" * 64 + b"'"


class TrivialLine(Protocol):
    """Baseline: answer the first line with a fixed key line and close."""

    def dataReceived(self, data: bytes) -> None:
        if b"\n" in data:
            self.transport.write(FIXED_REPLY)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]


async def run_clients(reactor: Any, port: int, count: int, concurrency: int, prefix: str) -> float:
    """Enroll ``count`` names with ``concurrency`` in flight; return the rate per second."""
    names = iter(range(count))
    failures: list[Exception] = []

    async def worker() -> None:
        for number in names:
            try:
                await request_enrollment(reactor, "127.0.0.1", port, f"{prefix}-{number:06d}")
            except Exception as error:  # counted and reported below
                failures.append(error)

    start = time.perf_counter()
    await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    if failures:
        print(f"  {len(failures)} failures, first: {failures[0]!r}")
    return count / elapsed


async def listen(reactor: Any, factory: Factory, options: Any) -> tuple[Any, int]:
    """Listen with TLS on an ephemeral 127.0.0.1 port."""
    port = await SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(factory)
    return port, port.getHost().port


async def main(reactor: Any, count: int, concurrency: int) -> None:
    """Run the baseline, then our service, and print the figures."""
    home = Path(tempfile.mkdtemp(prefix="bench-enroll-"))
    settings = default_auth(home)
    ensure_manager_certificate(settings.ssl_manager_cert, settings.ssl_manager_key)
    options = server_tls_options(settings)

    baseline_port, port = await listen(reactor, Factory.forProtocol(TrivialLine), options)
    baseline = await run_clients(reactor, port, count, concurrency, "base")
    await baseline_port.stopListening()

    files = RegistryFiles(
        home / "etc" / "client.keys", home / "etc" / "shared", home / "var" / "multigroups"
    )
    database = home / "var" / "db" / "global.db"
    service = RegistryService(reactor, database, files)
    service.startService()
    authority = EnrollmentAuthority(service.registry, EnrollmentPolicy())
    factory = EnrollmentServerFactory(authority.register, reactor)
    our_port, port = await listen(reactor, factory, options)
    ours = await run_clients(reactor, port, count, concurrency, "agent")
    await our_port.stopListening()
    await service.stopService()

    check = Registry.open(database)
    registered = check.count_agents()
    check.close()
    in_keys = len(read_client_keys(files.client_keys))
    print(f"connections: {count}, concurrency: {concurrency}")
    print(f"baseline TLS line server: {baseline:8.1f} exchanges/s")
    print(f"enrollment (master):      {ours:8.1f} enrollments/s")
    print(f"ratio: {ours / baseline:.2f} (target >= 0.5)")
    print(f"durable: {registered} in registry, {in_keys} in client.keys (expected {count})")


def run(argv: list[str]) -> None:
    """Parse arguments and run under the reactor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)

    def start(reactor: Any) -> defer.Deferred[None]:
        coroutine: Callable[..., Any] = main
        return defer.Deferred.fromCoroutine(coroutine(reactor, args.count, args.concurrency))

    task.react(start)


if __name__ == "__main__":
    run(sys.argv[1:])

"""Tests for wazuhcluster.registry.service with its real one-thread pool (no sockets)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wazuhcluster.agents.enrollment import EnrollmentRequest, parse_reply
from wazuhcluster.master.enrollment_authority import EnrollmentAuthority, EnrollmentPolicy
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.registry.service import AsyncRegistry, RegistryService, synchronous_runner
from wazuhcluster.registry.store import Registry, RegistryFiles


class RegistryServiceTests(TestCase):
    """RegistryService runs every registry call on one dedicated thread."""

    def make_service(self) -> tuple[RegistryService, RegistryFiles, Path]:
        """A started service in a temporary home, stopped at cleanup."""
        home = Path(self.mktemp())
        files = RegistryFiles(
            home / "etc" / "client.keys", home / "etc" / "shared", home / "var" / "multigroups"
        )
        database = home / "var" / "db" / "global.db"
        service = RegistryService(reactor, database, files)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service, files, database

    @defer.inlineCallbacks
    def test_parallel_enrollments_distinct_and_off_reactor(self):  # type: ignore[no-untyped-def]
        """200 concurrent enrollments give 200 ids, all on one non-reactor thread."""
        service, files, database = self.make_service()
        threads: set[int] = set()
        authority = EnrollmentAuthority(service.registry, EnrollmentPolicy())
        original = service.registry.runner

        def spying_runner(function):  # type: ignore[no-untyped-def]
            def wrapped():  # type: ignore[no-untyped-def]
                threads.add(threading.get_ident())
                return function()

            return original(wrapped)

        service.registry.runner = spying_runner
        replies = yield defer.gatherResults(
            [
                authority.register(EnrollmentRequest(f"agent-{n:03d}"), "10.0.0.1")
                for n in range(200)
            ]
        )
        entries = [parse_reply(reply) for reply in replies]
        self.assertEqual(len({entry.id for entry in entries}), 200)
        self.assertEqual(len(threads), 1)
        self.assertNotIn(threading.get_ident(), threads)
        self.assertEqual(len(read_client_keys(files.client_keys)), 200)
        yield service.stopService()
        reopened = Registry.open(database)
        self.addCleanup(reopened.close)
        self.assertEqual(reopened.count_agents(), 200)

    def test_registry_unavailable_when_stopped(self) -> None:
        """Asking for the facade before start is a clear error."""
        service = RegistryService(reactor, Path(self.mktemp()) / "g.db", None)
        self.assertRaises(RuntimeError, lambda: service.registry)


class WriteJobFailureTests(SynchronousTestCase):
    """A write job that fails on the registry side is logged, not left unhandled."""

    def test_failed_job_logged(self) -> None:
        """When the runner cannot run the batch, the failure is logged with its reason and
        the write waits for the next job."""
        store = Registry.open(Path(self.mktemp()) / "global.db")
        self.addCleanup(store.close)
        runs: list[str] = []

        def broken_runner(function: Callable[[], object]) -> defer.Deferred[object]:
            runs.append("job")
            if len(runs) == 1:
                return defer.fail(RuntimeError("registry thread stopped"))
            return synchronous_runner(function)

        registry = AsyncRegistry(store, broken_runner)
        with capturedLogs() as events:
            first = registry.create_group("web")
        self.assertNoResult(first)
        self.assertEqual(
            [formatEvent(e) for e in events if e.get("log_failure") is not None],
            ["A registry write job failed"],
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        second = registry.create_group("db")
        self.successResultOf(first)
        self.successResultOf(second)

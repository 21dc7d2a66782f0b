"""Tests for wazuhcluster.util.signals: SIGHUP schedules the reload callbacks on the reactor."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util.logs import ClusterLog, ClusterLogService
from wazuhcluster.util.signals import SignalHandlers


class CallQueue:
    """The part of a reactor SignalHandlers uses: callFromThread, recorded for the test to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def callFromThread(self, f: Callable[..., object], *args: Any) -> None:  # noqa: N802
        """Record the call instead of waking a reactor."""
        self.calls.append((f, args))

    def run(self) -> int:
        """Run every recorded call, as the reactor thread would; return how many ran."""
        calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)
        return len(calls)


class SignalHandlersTests(SynchronousTestCase):
    """SignalHandlers installs, schedules, logs failures and restores handlers."""

    def setUp(self) -> None:
        """Keep the test process's SIGHUP handler and put it back after each test."""
        self.saved = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, self.saved)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.queue = CallQueue()
        self.ran: list[str] = []

    def start(self, callbacks: list[Callable[[], object]]) -> SignalHandlers:
        """A started SignalHandlers over ``callbacks``, stopped at the end of the test."""
        service = SignalHandlers(self.queue, callbacks)
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    def test_hup_schedules_callbacks_on_the_reactor(self) -> None:
        """A real SIGHUP runs nothing in the handler; the callbacks run, in order, only when
        the reactor runs what was handed to callFromThread."""
        self.start([lambda: self.ran.append("reopen"), lambda: self.ran.append("reload")])
        signal.raise_signal(signal.SIGHUP)
        self.assertEqual(self.ran, [])
        self.assertEqual(self.queue.run(), 1)
        self.assertEqual(self.ran, ["reopen", "reload"])

    def test_each_hup_runs_callbacks_again(self) -> None:
        """A second SIGHUP after the first was handled runs the callbacks again."""
        self.start([lambda: self.ran.append("reopen")])
        for _ in range(2):
            signal.raise_signal(signal.SIGHUP)
            self.queue.run()
        self.assertEqual(self.ran, ["reopen", "reopen"])

    def test_signals_before_the_run_are_folded(self) -> None:
        """Several SIGHUPs before the reactor gets to run give one run of the callbacks."""
        self.start([lambda: self.ran.append("reopen")])
        for _ in range(3):
            signal.raise_signal(signal.SIGHUP)
        self.assertEqual(self.queue.run(), 1)
        self.assertEqual(self.ran, ["reopen"])

    def test_callbacks_appended_later_run(self) -> None:
        """on_hup is a public list: a callback appended after start runs on the next SIGHUP."""
        service = self.start([])
        service.on_hup.append(lambda: self.ran.append("late"))
        signal.raise_signal(signal.SIGHUP)
        self.queue.run()
        self.assertEqual(self.ran, ["late"])

    def test_failure_is_logged_and_others_run(self) -> None:
        """A callback that raises is logged as an error; the ones after it still run."""
        self.start([lambda: 1 // 0, lambda: self.ran.append("after")])
        signal.raise_signal(signal.SIGHUP)
        self.queue.run()
        self.assertEqual(self.ran, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_deferred_failure_is_logged(self) -> None:
        """A callback whose Deferred fails later has the failure logged, not lost."""
        pending: Deferred[None] = Deferred()
        self.start([lambda: pending])
        signal.raise_signal(signal.SIGHUP)
        self.queue.run()
        self.assertEqual(self.flushLoggedErrors(ValueError), [])
        pending.errback(ValueError("bad ruleset"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_stop_restores_previous_handler(self) -> None:
        """After stopService the handler that was there before start is back."""

        def previous(signum: int, frame: object) -> None:
            """The handler installed before the service."""

        signal.signal(signal.SIGHUP, previous)
        service = self.start([])
        self.assertIsNot(signal.getsignal(signal.SIGHUP), previous)
        service.stopService()
        self.assertIs(signal.getsignal(signal.SIGHUP), previous)

    def test_stop_leaves_a_newer_handler_alone(self) -> None:
        """If something replaced our handler while running, stopping does not undo that."""
        service = self.start([])
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)

    def test_default_restored_when_previous_unknown(self) -> None:
        """A previous handler Python cannot name (None) is replaced by the default on stop."""
        service = self.start([])
        service._previous = None
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_DFL)

    def test_scheduled_run_after_stop_does_nothing(self) -> None:
        """A SIGHUP whose run is still queued when the service stops runs no callback."""
        service = self.start([lambda: self.ran.append("reopen")])
        signal.raise_signal(signal.SIGHUP)
        service.stopService()
        self.queue.run()
        self.assertEqual(self.ran, [])

    def test_reopens_cluster_log_after_rotation(self) -> None:
        """Wired to ClusterLogService.reopen, a SIGHUP after a rename starts a new cluster.log
        and the next lines (including the SIGHUP line) go to it, not the renamed file."""
        path = Path(self.mktemp()) / "logs" / "cluster.log"
        logs = ClusterLogService(path)
        logs.startService()
        self.addCleanup(logs.stopService)
        service = SignalHandlers(self.queue, [logs.reopen], log=ClusterLog("Master", "Main"))
        service.startService()
        self.addCleanup(service.stopService)
        ClusterLog("Master", "Main").info("before rotation")
        rotated = path.with_name("cluster.log.1")
        path.rename(rotated)
        signal.raise_signal(signal.SIGHUP)
        self.queue.run()
        ClusterLog("Master", "Main").info("after rotation")
        old, new = rotated.read_text(), path.read_text()
        self.assertIn("before rotation", old)
        self.assertNotIn("after rotation", old)
        self.assertIn("INFO: [Master] [Main] SIGHUP received: ran 1 reload action(s)", new)
        self.assertIn("after rotation", new)

"""BackgroundWork: tracked Deferreds, logged failures, cancel or wait at stop."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util.background import BackgroundWork, OnStop
from wazuhcluster.util.logs import ClusterLog, format_line


class BackgroundWorkTests(SynchronousTestCase):
    """What the tracker keeps, logs, cancels and waits for."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.work = BackgroundWork(ClusterLog("Master", "Test"))
        self.work.startService()

    def test_kept_until_fired(self) -> None:
        """Pending work is listed until it fires; its result is not passed on."""
        send: Deferred[str] = Deferred()
        tracked = self.work.track(send, "send to w1")
        self.assertEqual(self.work.pending, ["send to w1"])
        send.callback("answer")
        self.assertEqual(self.work.pending, [])
        self.assertIsNone(self.successResultOf(tracked))

    def test_coroutine_started(self) -> None:
        """A coroutine is run as a Deferred and tracked like one."""

        async def later() -> None:
            await deferLater(self.clock, 3, lambda: None)

        tracked = self.work.track(later(), "write")
        self.assertEqual(self.work.pending, ["write"])
        self.clock.advance(3)
        self.successResultOf(tracked)
        self.assertEqual(self.work.pending, [])

    def test_failure_logged_with_reason(self) -> None:
        """A failing send is logged at ERROR with what it was and why; the tracked Deferred
        does not fail (nothing is left unhandled)."""
        send: Deferred[None] = Deferred()
        with capturedLogs() as events:
            tracked = self.work.track(send, "Agent-groups send to w1")
            send.errback(ConnectionError("link lost"))
        self.assertIsNone(self.successResultOf(tracked))
        lines = [format_line(event) for event in events]
        self.assertEqual(len(lines), 1)
        self.assertTrue(
            lines[0].endswith(
                "ERROR: [Master] [Test] Agent-groups send to w1 failed: ConnectionError: link lost"
            ),
            lines,
        )
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)

    def test_stop_cancels_sends(self) -> None:
        """At stop, a send marked CANCEL is cancelled and the stop fires at once; the
        cancellation is not logged as an error."""
        cancelled: list[bool] = []
        send: Deferred[None] = Deferred(lambda d: cancelled.append(True))
        self.work.track(send, "send", OnStop.CANCEL)
        with capturedLogs() as events:
            stopped = self.work.stopService()
        self.successResultOf(stopped)
        self.assertEqual(cancelled, [True])
        self.assertEqual(self.work.pending, [])
        self.assertFalse([e for e in events if e.get("log_failure") is not None])
        self.assertIsNone(self.successResultOf(send))  # the tracker consumed the CancelledError

    def test_stop_waits_for_writes(self) -> None:
        """At stop, a write marked WAIT is waited for, not cancelled."""
        write: Deferred[None] = Deferred(lambda d: self.fail("a write must not be cancelled"))
        send: Deferred[None] = Deferred()
        self.work.track(write, "write", OnStop.WAIT)
        self.work.track(send, "send", OnStop.CANCEL)
        stopped = self.work.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(self.work.pending, ["write"])
        write.callback(None)
        self.successResultOf(stopped)

    def test_stop_waits_for_cancelled_coroutine_to_settle(self) -> None:
        """A cancelled coroutine that still has clean-up to await holds the stop until it ends."""
        cleaned: list[bool] = []

        async def send() -> None:
            try:
                await Deferred()
            finally:
                await deferLater(self.clock, 1, lambda: None)
                cleaned.append(True)

        self.work.track(send(), "stream")
        stopped = self.work.stopService()
        self.assertNoResult(stopped)
        self.clock.advance(1)
        self.successResultOf(stopped)
        self.assertEqual(cleaned, [True])

    def test_work_started_while_stopping_is_cancelled(self) -> None:
        """A send tracked after the stop began is cancelled at once; a write is kept."""
        self.successResultOf(self.work.stopService())
        late: Deferred[None] = Deferred()
        self.work.track(late, "late send")
        self.assertEqual(self.work.pending, [])
        write: Deferred[None] = Deferred()
        self.work.track(write, "late write", OnStop.WAIT)
        self.assertEqual(self.work.pending, ["late write"])
        write.callback(None)

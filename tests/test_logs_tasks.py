"""cluster.log formatting and the PeriodicTask helper."""

from __future__ import annotations

import io
import re
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher, capturedLogs, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util.logs import (
    ClusterLog,
    ClusterLogObserver,
    ClusterLogService,
    cluster_log_state,
    format_line,
)
from wazuhcluster.util.tasks import PeriodicTask

LINE = re.compile(
    r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|DEBUG|WARNING|ERROR): "
    r"\[(Worker .*|Master)\] \[(.*)\] (.*)$"
)


class LogFormatTests(SynchronousTestCase):
    """Lines follow Wazuh's shape, which QA parsers match with a regular expression."""

    def test_line_shape(self) -> None:
        """A tagged event becomes ``DATE TIME LEVEL: [tag] [task] text``."""
        with capturedLogs() as events:
            ClusterLog("Worker w1", "Integrity sync").info("Finished in {t:.3f}s.", t=0.0181)
        line = format_line(events[0])
        match = LINE.match(line)
        assert match is not None, line
        self.assertEqual(
            match.groups(), ("INFO", "Worker w1", "Integrity sync", "Finished in 0.018s.")
        )

    def test_tag_asked_at_each_line(self) -> None:
        """A tag given as a function is asked when each line is written, and a child
        logger without a tag of its own follows it (a node whose role changes)."""
        now = ["Worker n1"]
        log = ClusterLog(lambda: now[0], "Failover")
        with capturedLogs() as events:
            log.info("first")
            now[0] = "Master"
            log.child("Election").warn("second")
            log.child("Main", tag="Cluster").info("third")
        lines = [format_line(event) for event in events]
        self.assertTrue(lines[0].endswith("INFO: [Worker n1] [Failover] first"), lines)
        self.assertTrue(lines[1].endswith("WARNING: [Master] [Election] second"), lines)
        self.assertTrue(lines[2].endswith("INFO: [Cluster] [Main] third"), lines)
        self.assertEqual(log.tag, "Master")

    def test_failure_detail(self) -> None:
        """A logged failure adds its type and message to the line."""
        with capturedLogs() as events:
            try:
                raise ValueError("boom")
            except ValueError:
                ClusterLog("Master", "Main").failure("Could not apply")
        self.assertTrue(
            format_line(events[0]).endswith(
                "ERROR: [Master] [Main] Could not apply: ValueError: boom"
            )
        )
        self.flushLoggedErrors(ValueError)

    def test_untagged_events_filtered(self) -> None:
        """Twisted's own INFO chatter stays out of cluster.log; its warnings do not."""
        stream = io.StringIO()
        observer = ClusterLogObserver(stream)
        observer({"log_format": "Starting factory", "log_level": LogLevel.info, "log_time": 0})
        observer({"log_format": "Oops", "log_level": LogLevel.warn, "log_time": 0})
        self.assertEqual(stream.getvalue().count("\n"), 1)
        self.assertIn("WARNING: [Cluster] [Main] Oops", stream.getvalue())

    def test_service_writes_and_reopens(self) -> None:
        """The service writes lines to the file and reopens it after a rotation."""
        path = Path(self.mktemp()) / "logs" / "cluster.log"
        service = ClusterLogService(path)
        service.startService()
        try:
            ClusterLog("Master", "Main").info("first")
            path.rename(path.with_suffix(".1"))
            service.reopen()
            ClusterLog("Master", "Main").debug("hidden at INFO level")
            ClusterLog("Master", "Main").info("second")
        finally:
            service.stopService()
        self.assertIn("[Master] [Main] first", path.with_suffix(".1").read_text())
        self.assertEqual(path.read_text().count("\n"), 1)
        self.assertIn("[Master] [Main] second", path.read_text())
        self.assertNotIn(service._observer, getattr(globalLogPublisher, "_observers", []))

    def test_broken_end_repaired_at_start(self) -> None:
        """cluster.log left by a crash (a half line, then the zero bytes of writes the file
        system lost): at start the zeros are cut, the half line ended, a WARNING says how
        many bytes went, and every line is dated."""
        path = Path(self.mktemp()) / "logs" / "cluster.log"
        path.parent.mkdir(parents=True)
        path.write_bytes(
            b"2026/12/05 07:22:20 INFO: [Master] [Main] whole\n"
            b"2026/12/05 07:22:21 INFO: [Master] [Main] half" + b"\0" * 5000
        )
        service = ClusterLogService(path)
        service.startService()
        try:
            ClusterLog("Master", "Main").info("after the restart")
        finally:
            service.stopService()
        lines = path.read_text(encoding="utf-8").splitlines()
        self.assertNotIn("\0", path.read_text(encoding="utf-8"))
        self.assertEqual(len(lines), 4, lines)
        self.assertTrue(lines[1].endswith("[Main] half"), lines)
        self.assertRegex(
            lines[2], r"WARNING: \[Cluster\] \[Main\] cluster.log ended with 5000 zero"
        )
        self.assertTrue(lines[3].endswith("after the restart"), lines)
        for line in lines:
            self.assertRegex(line, r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+: \[")

    def test_state_while_running(self) -> None:
        """cluster_log_state() tells the running service's writer state (for ``-i more``),
        and None once it has stopped."""
        service = ClusterLogService(Path(self.mktemp()) / "cluster.log")
        service.startService()
        try:
            self.assertEqual(cluster_log_state(), {"failure": None, "lost": 0})
        finally:
            service.stopService()
        self.assertIsNone(cluster_log_state())


class LogFaultTests(SynchronousTestCase):
    """Every line of cluster.log is dated, and a log that cannot be written does not break
    the node (issue 17, item 5)."""

    def test_every_line_dated(self) -> None:
        """A multi-line report (Twisted's "Unhandled Error" with its traceback, or a debug
        traceback) gives lines that each carry the date, the level, the tag and the task."""
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            from twisted.python.failure import Failure

            failure = Failure()
        legacy = {
            "log_format": "{log_text}",
            "log_text": "Unhandled Error\n" + failure.getTraceback(),
            "log_level": LogLevel.critical,
            "log_time": 0,
        }
        tagged = {
            "log_format": "Could not write",
            "log_failure": failure,
            "log_level": LogLevel.error,
            "log_time": 0,
            "cluster_tag": "Master",
            "cluster_task": "Registry",
        }
        for event, debug in ((legacy, False), (tagged, True)):
            stream = io.StringIO()
            ClusterLogObserver(stream, debug=debug)(event)
            lines = stream.getvalue().splitlines()
            self.assertGreater(len(lines), 3)
            for line in lines:
                self.assertRegex(line, r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+: \[")

    def test_unwritable_log_is_survived_and_noted(self) -> None:
        """A full disk under cluster.log: the failed write does not raise into the caller,
        one dated ERROR goes to twistd's output, lines are counted while it lasts, and once
        the file can be written again a WARNING line says how many were lost; no half line
        is left (the line after it starts with a date)."""
        path = Path(self.mktemp())
        full = [True]
        now = [0.0]

        class Disk(io.StringIO):
            def flush(self) -> None:
                if full[0]:
                    with path.open("a") as handle:
                        handle.write("2026/01/01 00:00:00 INFO: [Master] [Main] half a li")
                    raise OSError(28, "No space left on device")
                with path.open("a") as handle:
                    handle.write(self.getvalue())
                self.seek(0)
                self.truncate()

        complaints = io.StringIO()
        observer = ClusterLogObserver(
            Disk(), reopen=lambda: path.open("a+"), complaints=complaints, monotonic=lambda: now[0]
        )
        event = {"log_format": "line", "log_level": LogLevel.info, "log_time": 0,
                 "cluster_tag": "Master", "cluster_task": "Main"}  # fmt: skip
        observer(event)
        observer(event)
        self.assertEqual(observer.lost, 2)
        self.assertEqual(
            observer.state(), {"failure": "[Errno 28] No space left on device", "lost": 2}
        )
        self.assertEqual(complaints.getvalue().count("Cannot write cluster.log"), 1)
        self.assertRegex(complaints.getvalue(), r"^\d{4}/\d\d/\d\d .* ERROR: ")
        full[0] = False
        now[0] = 2.0
        observer(event)
        lines = path.read_text().splitlines()
        self.assertIn("2 log lines were lost", lines[-2])
        self.assertIn("No space left on device", lines[-2])
        self.assertTrue(lines[-1].endswith("[Master] [Main] line"))
        for line in lines:
            self.assertRegex(line, r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+: \[")
        self.assertEqual(observer.state(), {"failure": None, "lost": 0})

    def test_half_line_is_cut_not_kept(self) -> None:
        """The half line a failed write left at the end of cluster.log is cut off when the
        file can be written again (its line was counted as lost), not kept as a broken
        line."""
        path = Path(self.mktemp())
        path.write_text("2026/01/01 00:00:00 INFO: [Master] [Main] whole\n")
        now = [0.0]

        class Disk(io.StringIO):
            def flush(self) -> None:
                with path.open("a") as handle:
                    handle.write("2026/01/01 00:00:01 INFO: [Master] [Main] half a li")
                raise OSError(28, "No space left on device")

        observer = ClusterLogObserver(
            Disk(), reopen=lambda: path.open("a+"), complaints=io.StringIO(),
            monotonic=lambda: now[0],
        )  # fmt: skip
        event = {"log_format": "line", "log_level": LogLevel.info, "log_time": 0,
                 "cluster_tag": "Master", "cluster_task": "Main"}  # fmt: skip
        observer(event)
        now[0] = 2.0
        observer(event)
        lines = path.read_text().splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(lines[0].endswith("whole"))
        self.assertIn("1 log lines were lost", lines[1])
        self.assertTrue(lines[2].endswith("[Master] [Main] line"))
        self.assertNotIn("half a li", path.read_text())

    def test_warning_tries_at_once(self) -> None:
        """While cluster.log cannot be written, INFO lines try again at most every
        RETRY_INTERVAL, but a WARNING tries at once: written as soon as space returns,
        after the note of the lines lost."""
        path = Path(self.mktemp())
        full = [True]

        class Disk(io.StringIO):
            def flush(self) -> None:
                raise OSError(28, "No space left on device")

        def reopen() -> io.TextIOWrapper:
            if full[0]:
                raise OSError(28, "No space left on device")
            return path.open("a+")

        observer = ClusterLogObserver(
            Disk(), reopen=reopen, complaints=io.StringIO(), monotonic=lambda: 0.0
        )
        info = {"log_format": "info", "log_level": LogLevel.info, "log_time": 0,
                "cluster_tag": "Master", "cluster_task": "Main"}  # fmt: skip
        warning = dict(info, log_format="3 alerts were lost", log_level=LogLevel.warn)
        observer(info)
        observer(warning)
        full[0] = False
        observer(info)
        self.assertFalse(path.exists())
        observer(warning)
        lines = path.read_text().splitlines()
        self.assertIn("3 log lines were lost", lines[0])
        self.assertTrue(lines[1].endswith("WARNING: [Master] [Main] 3 alerts were lost"))
        self.assertEqual(len(lines), 2)

    def test_other_output_failing_is_one_line(self) -> None:
        """twistd's output on a full disk: Twisted reports each failed line as an observer
        failure with a traceback; cluster.log gets one dated ERROR for them per minute."""
        now = [0.0]
        stream = io.StringIO()
        observer = ClusterLogObserver(stream, monotonic=lambda: now[0])
        publisher = LogPublisher()

        def twistd_output(event: dict) -> None:
            raise OSError(28, "No space left on device")

        publisher.addObserver(twistd_output)
        publisher.addObserver(observer)
        logger = Logger(observer=publisher)
        for _ in range(3):
            logger.info("line", cluster_tag="Master", cluster_task="Main")
        now[0] = 61.0
        logger.info("line", cluster_tag="Master", cluster_task="Main")
        lines = stream.getvalue().splitlines()
        notes = [line for line in lines if "twistd's" in line]
        self.assertEqual(len(notes), 2, lines)
        self.assertRegex(notes[0], r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ERROR: \[Cluster\] \[Main\] ")
        self.assertIn("No space left on device", notes[0])
        self.assertEqual(sum(line.endswith("[Master] [Main] line") for line in lines), 4)
        self.assertNotIn("Traceback", stream.getvalue())
        self.assertEqual(len(lines), 6)


class PeriodicTaskTests(SynchronousTestCase):
    """PeriodicTask runs on its clock, never overlaps, survives failures and stops cleanly."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.log = ClusterLog("Master", "Test")

    def test_runs_every_interval(self) -> None:
        """The body runs at start and then every interval; timings are recorded."""
        calls: list[float] = []
        task = PeriodicTask(
            "t", 5, lambda: calls.append(self.clock.seconds()), self.clock, self.log
        )
        task.startService()
        self.clock.advance(5)
        self.clock.advance(5)
        task.stopService()
        self.assertEqual(calls, [0, 5, 10])
        self.assertEqual(task.last_start, 10)
        self.assertEqual(task.runs, 3)

    def test_no_overlap(self) -> None:
        """A slow run delays the next one instead of overlapping it."""
        pending: list[Deferred[None]] = []

        def body() -> Deferred[None]:
            pending.append(Deferred())
            return pending[-1]

        task = PeriodicTask("t", 5, body, self.clock, self.log)
        task.startService()
        self.clock.advance(12)
        self.assertEqual(len(pending), 1)
        self.assertTrue(task.busy)
        pending[0].callback(None)
        self.assertEqual(task.last_duration, 12)
        self.clock.advance(5)
        self.assertEqual(len(pending), 2)
        stopped = task.stopService()
        self.assertNoResult(stopped)
        pending[1].callback(None)
        self.successResultOf(stopped)

    def test_failure_logged_and_loop_continues(self) -> None:
        """A failing run is logged with its reason and the next run still happens."""
        runs: list[int] = []

        def body() -> None:
            runs.append(1)
            raise RuntimeError("disk on fire")

        task = PeriodicTask("t", 5, body, self.clock, self.log)
        task.startService()
        self.clock.advance(5)
        task.stopService()
        self.assertEqual(len(runs), 2)
        self.assertEqual(task.last_error, "disk on fire")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_coroutine_body(self) -> None:
        """An async body is awaited like a Deferred one."""
        done: list[bool] = []

        async def body() -> None:
            done.append(True)

        task = PeriodicTask("t", 5, body, self.clock, self.log, run_at_start=False)
        task.startService()
        self.assertEqual(done, [])
        self.clock.advance(5)
        self.assertEqual(done, [True])
        self.successResultOf(task.stopService())

    def test_phase_delays_every_run(self) -> None:
        """With a phase, the first run waits that long and the next ones follow the interval."""
        calls: list[float] = []
        task = PeriodicTask(
            "t", 10, lambda: calls.append(self.clock.seconds()), self.clock, self.log, phase=3
        )
        task.startService()
        self.clock.advance(2.9)
        self.assertEqual(calls, [])
        self.clock.advance(0.1)
        self.clock.advance(10)
        self.assertEqual(calls, [3, 13])
        self.successResultOf(task.stopService())

    def test_stop_before_phase_ends(self) -> None:
        """Stopping during the phase cancels the pending start."""
        calls: list[float] = []
        task = PeriodicTask("t", 10, lambda: calls.append(1.0), self.clock, self.log, phase=5)
        task.startService()
        self.successResultOf(task.stopService())
        self.clock.advance(20)
        self.assertEqual(calls, [])

"""cluster.log in Wazuh's line shape, written through twisted.logger.

A line looks like ``2026/08/14 10:21:09 INFO: [Worker w1] [Integrity sync] Finished in 0.018s.``:
the node tag (``Master``, ``Worker <name>``) and the task name travel as named fields of the
log event, so any other observer (JSON, journald) keeps them as structure.
"""

from __future__ import annotations

import io
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from twisted.application.service import Service
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.util import tails

_LEVEL_NAMES = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARNING",
    LogLevel.error: "ERROR",
    LogLevel.critical: "CRITICAL",
}


#: A node tag: fixed, or asked each time a line is written (a node whose role changes).
Tag = str | Callable[[], str]


class ClusterLog:
    """A logger bound to one node tag and one task, e.g. ``[Worker w1] [Keep Alive]``.

    The tag is a string, or a function giving the tag at the moment each line is written:
    a node with ``<failover>`` is a master, then a worker, with the same loggers.
    Messages use named fields (``log.info("Connected to {peer}", peer=...)``), never f-strings.
    """

    def __init__(self, tag: Tag, task: str, namespace: str = "wazuhcluster") -> None:
        self._tag = tag
        self.task = task
        self._logger = Logger(namespace=namespace)

    @property
    def tag(self) -> str:
        """The node tag now."""
        return self._tag if isinstance(self._tag, str) else self._tag()

    def child(self, task: str, tag: str | None = None) -> ClusterLog:
        """Return a logger for another task (and optionally another tag) of the same node;
        without ``tag`` it follows this logger's tag, changing with it."""
        return ClusterLog(tag or self._tag, task, self._logger.namespace)

    def _emit(self, level: LogLevel, message: str, fields: dict[str, Any]) -> None:
        self._logger.emit(level, message, cluster_tag=self.tag, cluster_task=self.task, **fields)

    def debug(self, message: str, **fields: Any) -> None:
        """Log at DEBUG."""
        self._emit(LogLevel.debug, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        """Log at INFO."""
        self._emit(LogLevel.info, message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        """Log at WARNING."""
        self._emit(LogLevel.warn, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        """Log at ERROR."""
        self._emit(LogLevel.error, message, fields)

    def failure(self, message: str, failure: Failure | None = None, **fields: Any) -> None:
        """Log an ERROR with the current (or given) failure attached."""
        self._logger.failure(
            message,
            failure,
            LogLevel.error,
            cluster_tag=self.tag,
            cluster_task=self.task,
            **fields,
        )


def format_line(event: LogEvent, with_traceback: bool = False) -> str:
    """Format one event as cluster.log lines (without the trailing newline).

    Text that spans several lines (a traceback, Twisted's "Unhandled Error" reports) gets
    the date, level, tag and task on every line, so each line of cluster.log is dated.
    """
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(event.get("log_time", time.time())))
    level = _LEVEL_NAMES.get(event.get("log_level", LogLevel.info), "INFO")
    tag = event.get("cluster_tag", "Cluster")
    task = event.get("cluster_task", "Main")
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        detail = failure.getErrorMessage()
        text = f"{text}: {failure.type.__name__}: {detail}" if text else detail
        if with_traceback:
            text = f"{text}\n{failure.getTraceback()}"
    prefix = f"{stamp} {level}: [{tag}] [{task}] "
    return "\n".join(prefix + line.rstrip("\r") for line in text.rstrip("\n").split("\n"))


def _own_line(level: LogLevel, text: str) -> str:
    """A line cluster.log's writer says about itself (``[Cluster] [Main]``, dated now),
    written straight to a stream rather than through the log publisher."""
    return format_line({"log_format": "{text}", "text": text, "log_level": level}) + "\n"


def _ends_a_line(stream: IO[str]) -> bool:
    """Whether the file behind ``stream`` is empty or ends with a newline (True when it
    cannot be told: no extra newline is better than a line without a date)."""
    try:
        return tails.ends_a_line(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return True


def _cut_half_line(stream: IO[str]) -> bool:
    """Cut off the half line a failed write left at the end of the file behind ``stream``
    (its line was counted as lost); False when it cannot be found or cut."""
    try:
        return tails.cut_half_line(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _repair_tail(stream: IO[str]) -> None:
    """Before a node's first line: cut the zero bytes a file system left where it lost the
    last writes (a crash, a journal abort) and end a half line, saying so in the file."""
    try:
        zeros = tails.cut_trailing_zeros(stream.fileno())
        if not _ends_a_line(stream):
            stream.write("\n")
        if zeros:
            stream.write(
                _own_line(
                    LogLevel.warn,
                    f"cluster.log ended with {zeros} zero bytes, where the file system lost "
                    "its last writes (a crash or a disk error); they were cut off.",
                )
            )
        stream.flush()
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # the first line written will meet the same error and report it


#: How Twisted reports that another log observer (twistd's output) raised.
_OBSERVER_DISABLED = "Temporarily disabling observer"


@implementer(ILogObserver)
class ClusterLogObserver:
    """Writes cluster events to a text stream in Wazuh's shape.

    Events from Twisted itself (no node tag) are kept only at WARNING and above unless
    debugging, so cluster.log is not filled with "Starting factory" lines.
    """

    #: Seconds between attempts to open cluster.log again after a write failed.
    RETRY_INTERVAL = 1.0
    #: Seconds between two notes that another log output cannot be written.
    NOTE_INTERVAL = 60.0

    def __init__(
        self,
        stream: IO[str],
        debug: bool = False,
        reopen: Callable[[], IO[str]] | None = None,
        complaints: IO[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.debug = debug
        #: Opens cluster.log again after a failed write (disk full, read-only).
        self.reopen = reopen
        #: Where to say that cluster.log cannot be written (twistd's output by default).
        self.complaints = complaints
        self.monotonic = monotonic
        self.lost = 0
        self.failure: str | None = None
        self._next_try = 0.0
        self._next_note = float("-inf")

    def state(self) -> dict[str, Any]:
        """Whether cluster.log can be written now (``failure`` is None) and the lines
        dropped since it could not."""
        return {"failure": self.failure, "lost": self.lost}

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level", LogLevel.info)
        if "cluster_tag" not in event and level < LogLevel.warn and not self.debug:
            return
        if self._other_output_failed(event):
            return
        text = format_line(event, with_traceback=self.debug) + "\n"
        # A WARNING or worse tries at once, so a note written just as space returns (the
        # alert writer's count of lost alerts) is not lost itself.
        if self.failure is not None and not self._recover(urgent=level >= LogLevel.warn):
            self.lost += 1
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError as error:
            self.lost += 1
            self._broken(error)

    def _other_output_failed(self, event: LogEvent) -> bool:
        """Another log output (twistd's, on the same full disk) raised an OSError: one dated
        ERROR line for it every NOTE_INTERVAL, not one failure report per log line."""
        failure = event.get("log_failure")
        if (
            failure is None
            or not str(event.get("log_format", "")).startswith(_OBSERVER_DISABLED)
            or not failure.check(OSError)
        ):
            return False
        now = self.monotonic()
        if now < self._next_note:
            return True
        self._next_note = now + self.NOTE_INTERVAL
        self(
            {
                "log_format": "Another log output (twistd's) cannot be written: {error}. "
                "Its lines are dropped while it lasts; cluster.log goes on.",
                "error": failure.getErrorMessage(),
                "log_level": LogLevel.error,
                "log_time": event.get("log_time", time.time()),
                "cluster_tag": "Cluster",
                "cluster_task": "Main",
            }
        )
        return True

    def _broken(self, error: OSError) -> None:
        """A write failed: say so once where it can be seen, drop lines until it works."""
        self.failure = str(error)
        self._next_try = self.monotonic() + self.RETRY_INTERVAL
        complaints = self.complaints if self.complaints is not None else sys.stderr
        try:
            complaints.write(
                _own_line(
                    LogLevel.error,
                    f"Cannot write cluster.log: {error}. Log lines are dropped (and counted) "
                    "until it can be written again.",
                )
            )
            complaints.flush()
        except (OSError, ValueError):
            pass
        if self.reopen is not None:
            try:
                self.stream.close()
            except OSError:
                pass  # its unwritten buffer is what failed: dropped with the stream

    def _recover(self, urgent: bool = False) -> bool:
        """Try (at most every RETRY_INTERVAL unless ``urgent``) to write again; note what
        was lost."""
        if not urgent and self.monotonic() < self._next_try:
            return False
        self._next_try = self.monotonic() + self.RETRY_INTERVAL
        stream = self.stream
        try:
            if self.reopen is not None:
                stream = self.reopen()
                if not _ends_a_line(stream) and not _cut_half_line(stream):
                    # A failed write left half a line that cannot be cut: end it first.
                    stream.write("\n")
            stream.write(
                _own_line(
                    LogLevel.warn,
                    f"cluster.log could not be written ({self.failure}); "
                    f"{self.lost} log lines were lost.",
                )
            )
            stream.flush()
        except OSError:
            if stream is not self.stream:
                try:
                    stream.close()
                except OSError:
                    pass
            return False
        self.stream = stream
        self.failure = None
        self.lost = 0
        return True


#: The cluster.log writer of this process while a node runs; see cluster_log_state.
_writing: weakref.WeakSet[ClusterLogObserver] = weakref.WeakSet()


def cluster_log_state() -> dict[str, Any] | None:
    """The state of this process's cluster.log writer (None when no node writes one), so
    ``wazuh-cluster-control -i more`` can say that log lines are being dropped."""
    for writer in list(_writing):
        return writer.state()
    return None


class ClusterLogService(Service):
    """Opens HOME/logs/cluster.log while the node runs and reopens it on demand (logrotate)."""

    def __init__(self, path: Path, debug: bool = False) -> None:
        self.path = path
        self.debug = debug
        self._stream: IO[str] | None = None
        self._observer: FilteringLogObserver | None = None
        self._writer: ClusterLogObserver | None = None

    def startService(self) -> None:
        """Open the file and start observing the global log publisher."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = self._open()
        _repair_tail(self._stream)
        self._writer = ClusterLogObserver(self._stream, self.debug, reopen=self._open)
        _writing.add(self._writer)
        predicate = LogLevelFilterPredicate(
            defaultLogLevel=LogLevel.debug if self.debug else LogLevel.info
        )
        self._observer = FilteringLogObserver(self._writer, [predicate])
        globalLogPublisher.addObserver(self._observer)
        super().startService()

    def _open(self) -> IO[str]:
        # Readable too, so a half line left by a failed write can be seen after reopening.
        stream = self.path.open("a+", encoding="utf-8")
        self.path.chmod(0o640)
        return stream

    def reopen(self) -> None:
        """Close and reopen the file, so an external rotation takes effect."""
        if self._writer is None:
            return
        old = self._writer.stream
        self._stream = self._writer.stream = self._open()
        try:
            old.close()
        except OSError:
            pass  # a full disk: what it still held is lost, the new stream is fine

    def stopService(self) -> None:
        """Stop observing and close the file."""
        super().stopService()
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
        if self._writer is not None:
            _writing.discard(self._writer)
        stream = self._writer.stream if self._writer is not None else self._stream
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
        self._observer = self._writer = self._stream = None

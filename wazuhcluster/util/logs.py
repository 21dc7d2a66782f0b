"""cluster.log in Wazuh's line shape, written through twisted.logger.

A line looks like ``2026/08/14 10:21:09 INFO: [Worker w1] [Integrity sync] Finished in 0.018s.``:
the node tag (``Master``, ``Worker <name>``) and the task name travel as named fields of the
log event, so any other observer (JSON, journald) keeps them as structure.
"""

from __future__ import annotations

import time
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
from zope.interface import implementer

_LEVEL_NAMES = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARNING",
    LogLevel.error: "ERROR",
    LogLevel.critical: "CRITICAL",
}


class ClusterLog:
    """A logger bound to one node tag and one task, e.g. ``[Worker w1] [Keep Alive]``.

    Messages use named fields (``log.info("Connected to {peer}", peer=...)``), never f-strings.
    """

    def __init__(self, tag: str, task: str, namespace: str = "wazuhcluster") -> None:
        self.tag = tag
        self.task = task
        self._logger = Logger(namespace=namespace)

    def child(self, task: str, tag: str | None = None) -> ClusterLog:
        """Return a logger for another task (and optionally another tag) of the same node."""
        return ClusterLog(tag or self.tag, task, self._logger.namespace)

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

    def failure(self, message: str, failure: Any = None, **fields: Any) -> None:
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
    """Format one event as a cluster.log line (without the trailing newline)."""
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
    return f"{stamp} {level}: [{tag}] [{task}] {text}"


@implementer(ILogObserver)
class ClusterLogObserver:
    """Writes cluster events to a text stream in Wazuh's shape.

    Events from Twisted itself (no node tag) are kept only at WARNING and above unless
    debugging, so cluster.log is not filled with "Starting factory" lines.
    """

    def __init__(self, stream: IO[str], debug: bool = False) -> None:
        self.stream = stream
        self.debug = debug

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level", LogLevel.info)
        if "cluster_tag" not in event and level < LogLevel.warn and not self.debug:
            return
        self.stream.write(format_line(event, with_traceback=self.debug) + "\n")
        self.stream.flush()


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
        self._writer = ClusterLogObserver(self._stream, self.debug)
        predicate = LogLevelFilterPredicate(
            defaultLogLevel=LogLevel.debug if self.debug else LogLevel.info
        )
        self._observer = FilteringLogObserver(self._writer, [predicate])
        globalLogPublisher.addObserver(self._observer)
        super().startService()

    def _open(self) -> IO[str]:
        stream = self.path.open("a", encoding="utf-8")
        self.path.chmod(0o640)
        return stream

    def reopen(self) -> None:
        """Close and reopen the file, so an external rotation takes effect."""
        if self._writer is None or self._stream is None:
            return
        old = self._stream
        self._stream = self._writer.stream = self._open()
        old.close()

    def stopService(self) -> None:
        """Stop observing and close the file."""
        super().stopService()
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
        if self._stream is not None:
            self._stream.close()
        self._observer = self._writer = self._stream = None

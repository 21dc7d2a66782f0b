"""Archives: every analysed event, alerting or not (Wazuh's ``logall`` and ``logall_json``).

``archives.json`` holds one record per event in the alerts' shape (with ``rule`` only when
the event alerted, and always its ``full_log``); ``archives.log`` holds Wazuh's plain line
``<year> <Mon> <day> <hh:mm:ss> <location> <full log>`` (the manager's own events with
``<host>->`` before their location). Both are appended to with a buffer, flushed after each
batch, and reopened with the alerts when the logs are rotated.
"""

from __future__ import annotations

import io
import os
import threading
import time as time_module
from typing import Any

import attrs

from wazuhcluster.analysis.json_line import json_line

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def plain_line(epoch: float, location: str, hostname: str, full_log: str) -> str:
    """One archives.log line for an event received at ``epoch``."""
    local = time_module.localtime(epoch)
    prefix = "" if location.startswith("(") else f"{hostname}->"
    return (
        f"{local.tm_year} {MONTHS[local.tm_mon - 1]} {local.tm_mday:02d} "
        f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} "
        f"{prefix}{location} {full_log}\n"
    )


@attrs.frozen
class ArchivedEvent:
    """One event for the archives (plain data): its record, receive time, full location
    (``(web01) any->/var/log/x`` for an agent's) and the event's host name."""

    record: dict[str, Any]
    time: float
    location: str
    hostname: str

    def json_text(self) -> str:
        """This event's archives.json line (with its newline)."""
        return json_line(self.record).decode("utf-8") + "\n"

    def plain_text(self) -> str:
        """This event's archives.log line (with its newline)."""
        full_log = str(self.record.get("full_log", ""))
        return plain_line(self.time, self.location, self.hostname, full_log)


class ArchiveWriter:
    """Append every event to ``archives.json`` and/or ``archives.log`` in one directory."""

    def __init__(
        self, directory: str, json_out: bool, plain: bool, buffer_size: int = 64 * 1024
    ) -> None:
        self.directory = directory
        self.json_out = json_out
        self.plain = plain
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._json: io.TextIOWrapper | None = None
        self._plain: io.TextIOWrapper | None = None
        if json_out:
            self._json = open(  # noqa: SIM115
                os.path.join(directory, "archives.json"),
                "a",
                encoding="utf-8",
                buffering=buffer_size,
            )
        if plain:
            self._plain = open(  # noqa: SIM115
                os.path.join(directory, "archives.log"),
                "a",
                encoding="utf-8",
                buffering=buffer_size,
            )
        self.written = 0

    def write(self, event: ArchivedEvent) -> None:
        """Archive one event: its record (JSON) and its plain line."""
        with self._lock:
            if self._json is not None:
                self._json.write(event.json_text())
            if self._plain is not None:
                self._plain.write(event.plain_text())
            self.written += 1

    def write_text(self, json_text: str, plain_text: str, count: int) -> None:
        """Append ``count`` events already rendered elsewhere (by an analysis process):
        their archives.json lines and their archives.log lines."""
        with self._lock:
            if self._json is not None and json_text:
                self._json.write(json_text)
            if self._plain is not None and plain_text:
                self._plain.write(plain_text)
            self.written += count

    def flush(self) -> None:
        """Push buffered lines to the files."""
        with self._lock:
            for handle in (self._json, self._plain):
                if handle is not None:
                    handle.flush()

    def close(self) -> None:
        """Flush and close both files."""
        with self._lock:
            for handle in (self._json, self._plain):
                if handle is not None:
                    handle.flush()
                    os.fsync(handle.fileno())
                    handle.close()
            self._json = self._plain = None

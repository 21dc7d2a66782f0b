"""Keeping the per-hour analysis totals on disk (HOME/var/stats/totals/YYYY/Mon/totals-DD.json).

:class:`TotalsKeeper` runs with the analysis: once a minute (and at stop) it takes the
alerts the writer counted and the events processed since the last time, and adds them to
the current hour of today's file, read, merged and written atomically in a thread. The
readers below give the API's answers from those files (in a thread as well).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from wazuhcluster.analysis.alert_totals import (
    AlertTally,
    day_path,
    decode_day,
    empty_day,
    encode_day,
    merge_hour,
)
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

#: Seconds between two writes of the day file.
INTERVAL = 60.0
#: The most day files the hourly and weekly averages read (the newest).
MAX_DAYS = 366


def totals_folder(root: Path) -> Path:
    """The totals folder of a node's home."""
    return root / "var" / "stats" / "totals"


class TotalsKeeper:
    """Adds the tally and the events processed to today's file every minute."""

    def __init__(
        self,
        folder: Path,
        tally: AlertTally,
        processed: Callable[[], int],
        clock: IReactorTime,
        run_in_thread: RunInThread,
        log: ClusterLog,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.tally = tally
        self.processed = processed
        self.clock = clock
        self.run_in_thread = run_in_thread
        self.log = log
        self.now = now
        self._seen = 0
        self._loop: LoopingCall | None = None
        self._writing: Deferred[None] = succeed(None)

    def start(self) -> None:
        """Write once a minute from now on."""
        self._seen = self.processed()
        self._loop = LoopingCall(self.save)
        self._loop.clock = self.clock
        self._loop.start(INTERVAL, now=False)

    def stop(self) -> Deferred[None]:
        """Stop the minute writes and write what is left."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return self.save()

    def save(self) -> Deferred[None]:
        """Add what was counted since the last save to the current hour (one write at a
        time; a failed write is logged and its counts lost)."""
        processed = self.processed()
        events, self._seen = max(0, processed - self._seen), processed
        pairs, syscheck, firewall = self.tally.take()
        if not (events or pairs or syscheck or firewall):
            return self._writing
        moment = time.localtime(self.now())

        def write(_: object) -> Deferred[None]:
            return self.run_in_thread(
                add_to_day, self.folder, moment, events, pairs, syscheck, firewall
            )

        def failed(failure: Failure) -> None:
            self.log.error(
                "Could not write the hourly totals: {error}", error=failure.getErrorMessage()
            )

        self._writing = self._writing.addCallback(write).addErrback(failed)
        return self._writing


def add_to_day(
    folder: Path,
    moment: time.struct_time,
    events: int,
    pairs: dict[tuple[int, int], int],
    syscheck: int,
    firewall: int,
) -> None:
    """In a thread: today's file with these counts added to the moment's hour (a damaged
    file starts again empty)."""
    path = folder / day_path(moment)
    try:
        day = decode_day(path.read_bytes())
    except FileNotFoundError:
        day = empty_day()
    except ValueError:
        day = empty_day()
    merge_hour(day, moment.tm_hour, events, pairs, syscheck, firewall)
    write_atomically(path, encode_day(day))


def read_day(folder: Path, moment: time.struct_time) -> dict[str, Any] | None:
    """In a thread: one day's totals (None when there is no file, ValueError when it is
    damaged)."""
    try:
        data = (folder / day_path(moment)).read_bytes()
    except FileNotFoundError:
        return None
    return decode_day(data)


def read_days(folder: Path) -> list[tuple[int, dict[str, Any]]]:
    """In a thread: the newest :data:`MAX_DAYS` days kept, each with its weekday (0 is
    Sunday); damaged files are left out."""
    found: list[tuple[time.struct_time, Path]] = []
    for path in folder.glob("[0-9][0-9][0-9][0-9]/*/totals-[0-9][0-9].json"):
        try:
            moment = time.strptime(
                f"{path.parent.parent.name} {path.parent.name} {path.name[7:9]}", "%Y %b %d"
            )
        except ValueError:
            continue
        found.append((moment, path))
    found.sort(key=lambda pair: pair[0], reverse=True)
    days = []
    for moment, path in found[:MAX_DAYS]:
        try:
            day = decode_day(path.read_bytes())
        except (OSError, ValueError):
            continue
        days.append(((moment.tm_wday + 1) % 7, day))
    return days

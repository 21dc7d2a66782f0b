"""Per-hour totals of a node's analysis (Wazuh's ``GET /manager/stats`` family).

:class:`AlertTally` counts the alerts as they are written (by rule id and level, and the
syscheck and firewall alerts among them); a keeper adds the events processed and folds
each minute's counts into the hour of the day's file (:func:`merge_hour`). The day file is
our own small JSON format, one per day (``YYYY/Mon/totals-DD.json``, like Wazuh's
``stats/totals`` tree), read back as Wazuh's three answers: one day per hour
(:func:`day_items`), the average events of each hour over the days kept (:func:`hourly`),
and the same per weekday (:func:`weekly`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

#: The format number written in each day file.
FORMAT = 1
#: The most (rule id, level) pairs one hour of a day file keeps; the others still count
#: in ``totalAlerts``.
MAX_PAIRS_PER_HOUR = 5000
#: The most a day file may weigh to be read.
MAX_DAY_FILE = 8 * 1024 * 1024
#: Wazuh's weekday names, Sunday first.
WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)")


class AlertTally:
    """Alerts counted since the last :meth:`take`, safe across the writer thread and the
    reactor: ``(rule id, level)`` → times, and how many were syscheck or firewall alerts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: Counter[tuple[int, int]] = Counter()
        self._syscheck = 0
        self._firewall = 0

    def count(self, alert: Mapping[str, Any]) -> None:
        """Count one alert record (a dict as alerts.json holds it)."""
        rule = alert.get("rule")
        if not isinstance(rule, Mapping):
            return
        groups = rule.get("groups") or ()
        try:
            pair = (int(rule.get("id", 0)), int(rule.get("level", 0)))
        except (TypeError, ValueError):
            return
        with self._lock:
            self._pairs[pair] += 1
            if "syscheck" in groups:
                self._syscheck += 1
            if "firewall" in groups:
                self._firewall += 1

    def count_lines(self, text: str) -> None:
        """Count the alerts of alerts.json lines already rendered (string searches, no JSON
        parsing: this runs for every alert the analysis processes write)."""
        found: list[tuple[tuple[int, int], str]] = []
        find = text.find
        position = 0
        while True:
            rule = find('"rule":{', position)
            if rule < 0:
                break
            # Every string of the rule section is JSON-escaped, so these literals are the
            # section's own keys: level (first, or last when 0), id, then groups.
            level = 0
            if text.startswith('"level":', rule + 8):
                comma = find(",", rule + 16)
                level = int(text[rule + 16 : comma]) if text[rule + 16 : comma].isdigit() else 0
            id_start = find('","id":"', rule)
            id_end = find('"', id_start + 8)
            groups_start = find('"groups":[', id_end)
            groups_end = find("]", groups_start)
            line_end = find("\n", groups_end)
            if min(id_start, id_end, groups_start, groups_end) < 0:
                break
            rule_id = text[id_start + 8 : id_end]
            if rule_id.isdigit():
                found.append(((int(rule_id), level), text[groups_start + 10 : groups_end]))
            if line_end < 0:
                break
            position = line_end
        if not found:
            return
        with self._lock:
            for pair, groups in found:
                self._pairs[pair] += 1
                if '"syscheck"' in groups:
                    self._syscheck += 1
                if '"firewall"' in groups:
                    self._firewall += 1

    def add(self, pairs: Iterable[Iterable[int]], syscheck: int, firewall: int) -> None:
        """Add counts taken elsewhere (an analysis process's :meth:`take` of one batch,
        ``pairs`` as ``[rule id, level, times]`` triples)."""
        with self._lock:
            for rule_id, level, times in pairs:
                self._pairs[(rule_id, level)] += times
            self._syscheck += syscheck
            self._firewall += firewall

    def take(self) -> tuple[dict[tuple[int, int], int], int, int]:
        """The counts so far (pairs, syscheck, firewall), and start again from zero."""
        with self._lock:
            pairs, self._pairs = dict(self._pairs), Counter()
            syscheck, self._syscheck = self._syscheck, 0
            firewall, self._firewall = self._firewall, 0
        return pairs, syscheck, firewall


def day_path(moment: time.struct_time) -> str:
    """The day file of a local time, relative to the totals folder."""
    month = _MONTHS[moment.tm_mon - 1]
    return f"{moment.tm_year:04d}/{month}/totals-{moment.tm_mday:02d}.json"


def parse_date(text: str) -> time.struct_time:
    """A ``YYYY-MM-DD`` date (ValueError when it is not one)."""
    found = _DATE.fullmatch(text)
    if found is None:
        raise ValueError(f"'{text[:32]}' is not a date of the form YYYY-MM-DD")
    return time.strptime(text, "%Y-%m-%d")


def empty_day() -> dict[str, Any]:
    """A day file with no hour yet."""
    return {"format": FORMAT, "hours": {}}


def decode_day(data: bytes) -> dict[str, Any]:
    """A day file's content, checked (ValueError when it is not one of ours)."""
    if len(data) > MAX_DAY_FILE:
        raise ValueError("the day file is too large")
    day = json.loads(data)
    if not isinstance(day, dict) or day.get("format") != FORMAT:
        raise ValueError("not a day file of this format")
    hours = day.get("hours")
    if not isinstance(hours, dict):
        raise ValueError("the day file has no hours")
    for hour, totals in hours.items():
        if not (hour.isdigit() and 0 <= int(hour) <= 23) or not isinstance(totals, dict):
            raise ValueError(f"bad hour {hour[:8]!r} in the day file")
        for key in ("events", "syscheck", "firewall", "totalAlerts"):
            if not isinstance(totals.get(key, 0), int):
                raise ValueError(f"bad {key} in the day file")
        if not isinstance(totals.get("alerts", {}), dict):
            raise ValueError("bad alerts in the day file")
    return day


def encode_day(day: Mapping[str, Any]) -> bytes:
    """A day file's bytes."""
    return json.dumps(day, separators=(",", ":"), sort_keys=True).encode("utf-8")


def merge_hour(
    day: dict[str, Any],
    hour: int,
    events: int,
    pairs: Mapping[tuple[int, int], int],
    syscheck: int,
    firewall: int,
) -> dict[str, Any]:
    """``day`` with these counts added to ``hour`` (the pairs beyond the bound only to
    ``totalAlerts``)."""
    totals = day["hours"].setdefault(
        str(hour), {"events": 0, "syscheck": 0, "firewall": 0, "totalAlerts": 0, "alerts": {}}
    )
    totals["events"] += events
    totals["syscheck"] += syscheck
    totals["firewall"] += firewall
    alerts = totals["alerts"]
    for (rule_id, level), times in pairs.items():
        totals["totalAlerts"] += times
        key = f"{rule_id}:{level}"
        if key in alerts or len(alerts) < MAX_PAIRS_PER_HOUR:
            alerts[key] = alerts.get(key, 0) + times
    return day


def day_items(day: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One day as Wazuh's ``/manager/stats`` items: each hour with data, in order."""
    items = []
    for hour in sorted(day["hours"], key=int):
        totals = day["hours"][hour]
        alerts = []
        for key, times in totals.get("alerts", {}).items():
            rule_id, _, level = key.partition(":")
            alerts.append({"sigid": int(rule_id), "level": int(level), "times": int(times)})
        alerts.sort(key=lambda alert: (alert["sigid"], alert["level"]))
        items.append(
            {
                "hour": int(hour),
                "alerts": alerts,
                "totalAlerts": int(totals.get("totalAlerts", 0)),
                "events": int(totals.get("events", 0)),
                "syscheck": int(totals.get("syscheck", 0)),
                "firewall": int(totals.get("firewall", 0)),
            }
        )
    return items


def _averages(days: list[Mapping[str, Any]]) -> dict[str, Any]:
    sums = [0] * 24
    for day in days:
        for hour, totals in day["hours"].items():
            sums[int(hour)] += int(totals.get("events", 0))
    count = len(days)
    return {
        "averages": [total // count if count else 0 for total in sums],
        "interactions": count,
    }


def hourly(days: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Wazuh's hourly item: the events of each hour of the day averaged over ``days``
    (``interactions`` is how many days)."""
    return _averages(list(days))


def weekly(days: Iterable[tuple[int, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Wazuh's weekly items: per weekday (0 is Sunday), the hourly averages of the days
    that fell on it."""
    by_weekday: list[list[Mapping[str, Any]]] = [[] for _ in WEEKDAYS]
    for weekday, day in days:
        by_weekday[weekday].append(day)
    return [{name: _averages(by_weekday[i])} for i, name in enumerate(WEEKDAYS)]

"""The per-hour analysis totals: counted where alerts are written, kept in day files under
var/stats, and answered as Wazuh's ``/manager/stats``, ``/stats/hourly`` and ``/stats/weekly``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness
from wazuhcluster.analysis.alert_totals import (
    MAX_PAIRS_PER_HOUR,
    AlertTally,
    day_items,
    decode_day,
    empty_day,
    hourly,
    merge_hour,
    weekly,
)
from wazuhcluster.analysis.alerts import AlertWriter
from wazuhcluster.node.alert_totals import (
    INTERVAL,
    TotalsKeeper,
    add_to_day,
    read_day,
    read_days,
    totals_folder,
)
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline

#: 2025-03-04 (a Tuesday) 15:20 local time.
MOMENT = time.mktime((2025, 3, 4, 15, 20, 0, 0, 0, -1))


def alert(rule_id: str, level: int, groups: list[str], description: str = "x") -> dict:
    """An alert record in alerts.json's key order (level 0 written last, as the builder does)."""
    rule: dict = {} if level == 0 else {"level": level}
    rule.update({"description": description, "id": rule_id, "firedtimes": 1, "mail": False})
    rule["groups"] = groups
    if level == 0:
        rule["level"] = 0
    return {"timestamp": "2025-03-04T15:20:00.000+0000", "rule": rule, "agent": {"id": "001"}}


def lines(*alerts: dict) -> str:
    """The alerts as alerts.json lines."""
    return "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in alerts)


class TallyTests(SynchronousTestCase):
    """Counting alerts and shaping the day files."""

    def test_counts_records_and_rendered_lines_alike(self) -> None:
        """A dict and its rendered line count the same; syscheck and firewall by group."""
        records = [
            alert("5501", 3, ["pam", "syslog"]),
            alert("550", 7, ["ossec", "syscheck"], description='a "quoted" groups:[x]'),
            alert("4101", 5, ["firewall"]),
            alert("4101", 5, ["firewall"]),
            alert("1", 0, ["syslog"]),
        ]
        from_dicts = AlertTally()
        for record in records:
            from_dicts.count(record)
        from_lines = AlertTally()
        from_lines.count_lines(lines(*records))
        expected = ({(5501, 3): 1, (550, 7): 1, (4101, 5): 2, (1, 0): 1}, 1, 2)
        self.assertEqual(from_dicts.take(), expected)
        self.assertEqual(from_lines.take(), expected)
        self.assertEqual(from_lines.take(), ({}, 0, 0))

    def test_merge_bounds_pairs_but_not_total(self) -> None:
        """Beyond the bound a pair only adds to totalAlerts."""
        day = empty_day()
        pairs = {(rule, 3): 1 for rule in range(MAX_PAIRS_PER_HOUR + 5)}
        merge_hour(day, 7, 10, pairs, 0, 0)
        merge_hour(day, 7, 5, {(0, 3): 2}, 1, 1)
        totals = day["hours"]["7"]
        self.assertEqual(len(totals["alerts"]), MAX_PAIRS_PER_HOUR)
        self.assertEqual(totals["totalAlerts"], MAX_PAIRS_PER_HOUR + 7)
        self.assertEqual((totals["events"], totals["syscheck"], totals["firewall"]), (15, 1, 1))
        self.assertEqual(totals["alerts"]["0:3"], 3)

    def test_day_items_hourly_and_weekly_shapes(self) -> None:
        """Items per hour in order; averages per hour over days and per weekday."""
        one = merge_hour(empty_day(), 15, 40, {(5501, 3): 4, (221, 0): 2}, 1, 0)
        merge_hour(one, 2, 10, {}, 0, 0)
        two = merge_hour(empty_day(), 15, 20, {}, 0, 0)
        items = day_items(one)
        self.assertEqual([item["hour"] for item in items], [2, 15])
        self.assertEqual(
            items[1],
            {
                "hour": 15,
                "alerts": [
                    {"sigid": 221, "level": 0, "times": 2},
                    {"sigid": 5501, "level": 3, "times": 4},
                ],
                "totalAlerts": 6,
                "events": 40,
                "syscheck": 1,
                "firewall": 0,
            },
        )
        averaged = hourly([one, two])
        self.assertEqual(averaged["interactions"], 2)
        self.assertEqual((averaged["averages"][15], averaged["averages"][2]), (30, 5))
        self.assertEqual(len(averaged["averages"]), 24)
        week = weekly([(2, one), (2, two), (0, two)])
        self.assertEqual([next(iter(item)) for item in week][:3], ["Sun", "Mon", "Tue"])
        self.assertEqual(week[2]["Tue"]["averages"][15], 30)
        self.assertEqual(week[0]["Sun"], {"averages": [0] * 15 + [20] + [0] * 8, "interactions": 1})
        self.assertEqual(week[1]["Mon"]["interactions"], 0)

    def test_damaged_day_files_are_refused(self) -> None:
        """Not JSON, another format, a bad hour: ValueError."""
        for data in (b"{", b'{"format":9,"hours":{}}', b'{"format":1,"hours":{"24":{}}}'):
            with self.assertRaises(ValueError):
                decode_day(data)


class KeeperTests(SynchronousTestCase):
    """The minute writes, the day files and their readers."""

    def test_written_each_minute_and_at_stop_into_the_hour(self) -> None:
        """Counts reach today's file once a minute and at stop; events are the processed
        delta; the file is read back (and survives a new keeper: a restart)."""
        folder = Path(self.mktemp())
        clock = task.Clock()
        tally = AlertTally()
        processed = [100]
        keeper = TotalsKeeper(
            folder,
            tally,
            lambda: processed[0],
            clock,
            run_inline,
            ClusterLog("T", "T"),
            now=lambda: MOMENT,
        )
        keeper.start()
        tally.count(alert("5501", 3, ["syslog"]))
        processed[0] = 130
        moment = time.localtime(MOMENT)
        self.assertIsNone(read_day(folder, moment))
        clock.advance(INTERVAL)
        self.assertTrue((folder / "2025" / "Mar" / "totals-04.json").exists())
        day = read_day(folder, moment)
        assert day is not None
        self.assertEqual(day_items(day)[0]["events"], 30)
        tally.count(alert("5501", 3, ["syslog"]))
        processed[0] = 131
        keeper.stop()
        again = TotalsKeeper(
            folder,
            AlertTally(),
            lambda: 0,
            clock,
            run_inline,
            ClusterLog("T", "T"),
            now=lambda: MOMENT,
        )
        again.start()
        again.tally.count(alert("5501", 3, ["syslog"]))
        again.stop()
        day = read_day(folder, moment)
        assert day is not None
        item = day_items(day)[0]
        self.assertEqual((item["hour"], item["events"], item["totalAlerts"]), (15, 31, 3))
        self.assertEqual(item["alerts"], [{"sigid": 5501, "level": 3, "times": 3}])

    def test_alert_writer_counts_what_it_writes(self) -> None:
        """Both write paths of alerts.json feed the tally."""
        tally = AlertTally()
        path = Path(self.mktemp()) / "alerts.json"
        writer = AlertWriter(str(path), tally=tally)
        writer.write(alert("5501", 3, ["syslog"]))
        writer.write_lines(lines(alert("550", 7, ["syscheck"])))
        writer.close()
        self.assertEqual(tally.take(), ({(5501, 3): 1, (550, 7): 1}, 1, 0))

    def test_read_days_weekday_and_skips_damaged(self) -> None:
        """Each day file with its weekday (Sunday 0); a damaged one is left out."""
        folder = Path(self.mktemp())
        add_to_day(folder, time.localtime(MOMENT), 5, {}, 0, 0)
        add_to_day(folder, time.localtime(MOMENT + 86400 * 5), 7, {}, 0, 0)  # Sunday
        bad = folder / "2025" / "Mar" / "totals-10.json"
        bad.write_text("nope")
        add_to_day(folder, time.localtime(MOMENT + 86400 * 6), 1, {}, 0, 0)  # damaged: anew
        self.assertEqual(
            sorted((weekday, day_items(day)[0]["events"]) for weekday, day in read_days(folder)),
            [(0, 7), (1, 1), (2, 5)],
        )
        bad.write_text("nope")
        self.assertEqual(len(read_days(folder)), 2)


class StatsApiTests(SynchronousTestCase):
    """``/manager/stats*`` and ``/cluster/{node_id}/stats*`` over the master's day files."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.folder = totals_folder(self.api.home.root)

    def test_dated_hourly_and_weekly(self) -> None:
        """A kept day answers per hour; today's default; hourly and weekly averages."""
        add_to_day(self.folder, time.localtime(MOMENT), 40, {(5501, 3): 4}, 0, 1)
        later = MOMENT + 86400 * 3
        self.api.node.answers.now = lambda: later
        add_to_day(self.folder, time.localtime(later), 8, {}, 0, 0)
        for prefix in ("/manager", "/cluster/master"):
            dated = self.api.call("GET", f"{prefix}/stats?date=2025-03-04").json["data"]
            self.assertEqual(dated["total_affected_items"], 1)
            item = dated["affected_items"][0]
            self.assertEqual((item["hour"], item["events"], item["firewall"]), (15, 40, 1))
            today = self.api.call("GET", f"{prefix}/stats").json["data"]["affected_items"]
            self.assertEqual(today[0]["events"], 8)
            hours = self.api.call("GET", f"{prefix}/stats/hourly").json["data"]
            self.assertEqual(hours["affected_items"][0]["interactions"], 2)
            week = self.api.call("GET", f"{prefix}/stats/weekly").json["data"]["affected_items"]
            self.assertEqual(week[2]["Tue"]["averages"][15], 40)

    def test_errors(self) -> None:
        """No file for the day: 1308; a damaged one: 1309; not a date: 400; unknown node."""
        missing = self.api.call("GET", "/manager/stats?date=2001-01-01")
        self.assertEqual((missing.status, missing.json["error"]), (400, 1308))
        add_to_day(self.folder, time.localtime(MOMENT), 1, {}, 0, 0)
        (self.folder / "2025" / "Mar" / "totals-04.json").write_text("{")
        damaged = self.api.call("GET", "/manager/stats?date=2025-03-04")
        self.assertEqual(damaged.json["error"], 1309)
        self.assertEqual(self.api.call("GET", "/manager/stats?date=2025-13-01").status, 400)
        self.assertEqual(self.api.call("GET", "/manager/stats?date=yesterday").status, 400)
        ghost = self.api.call("GET", "/cluster/ghost/stats/hourly").json["data"]
        self.assertEqual(ghost["failed_items"][0]["error"]["code"], 1730)
        empty = self.api.call("GET", "/manager/stats/hourly").json["data"]["affected_items"]
        self.assertEqual(empty, [{"averages": [0] * 24, "interactions": 0}])

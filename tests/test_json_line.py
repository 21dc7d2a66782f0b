"""Tests for wazuhcluster.analysis.json_line: alert lines as compact UTF-8 JSON."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.analysis.json_line import json_line


def standard(record: Any) -> bytes:
    """What the standard library writes for ``record`` (the format alerts.json had)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class JsonLineTests(SynchronousTestCase):
    """``json_line`` writes what the standard library wrote, faster, and never fails."""

    def test_alert_shaped_record_matches_the_standard_library(self) -> None:
        """An alert's kinds of values (nested dicts and lists, non-ASCII text, quotes,
        control characters, integers, booleans, None) come out byte for byte as
        ``json.dumps`` with compact separators and UTF-8 as is renders them."""
        record = {
            "timestamp": "2026-12-04T23:00:00.000+0000",
            "rule": {"level": 5, "id": "5716", "firedtimes": 3, "mail": False, "groups": []},
            "agent": {"id": "001", "name": "héllo-日本", "ip": "any"},
            "full_log": 'sshd[1]: Failed "password" for\troot\n\u0001 ✓',
            "data": {"srcip": "10.0.0.1", "nested": [1, None, True, {"k": "v"}]},
            "id": "1764889200.42",
            "previous_output": "",
        }
        self.assertEqual(json_line(record), standard(record))
        self.assertEqual(json.loads(json_line(record)), record)

    def test_values_orjson_refuses_fall_back_to_the_standard_library(self) -> None:
        """An integer beyond 64 bits or a key that is not a string still renders, as
        ``json`` renders it."""
        for record in ({"big": 2**70}, {"rule": {1: "one"}}):
            self.assertEqual(json_line(record), standard(record))

    def test_lone_surrogate_gives_a_valid_ascii_line(self) -> None:
        """Text no UTF-8 can hold (a lone surrogate) is written as a ``\\u`` escape, so
        the line stays valid JSON and round-trips."""
        record = {"full_log": "bad \ud800 text"}
        line = json_line(record)
        self.assertEqual(line, b'{"full_log":"bad \\ud800 text"}')
        self.assertEqual(json.loads(line), record)

"""Benchmark: rendering alerts.json lines, the standard library's encoder against json_line.

The stock ruleset (``WAZUH_RULESET``) analyses one full cycle of the syslog lines of its test
cases as 100 agents send them (as ``bench_events.py``); every alert is then rendered with
``json`` (compact, UTF-8 as is: what alerts.json held before) and with
:func:`wazuhcluster.analysis.json_line.json_line`, best of ``--rounds``. Prints microseconds
per alert and per event for each, and how many of the lines are byte for byte the same.

    .venv/bin/python bench/bench_alert_json.py [--rounds 5]

Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_events import EXCLUDE, generator_events, install_ruleset, syslog_lines  # noqa: E402

from wazuhcluster.analysis.json_line import json_line  # noqa: E402
from wazuhcluster.analysis.loader import load_engine  # noqa: E402
from wazuhcluster.config.analysis_settings import RulesetSettings  # noqa: E402
from wazuhcluster.testing.reference import missing_reason  # noqa: E402

AGENTS = 100
STANDARD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def alerts_of_one_cycle() -> tuple[list[dict[str, Any]], int]:
    """The alerts of one full cycle of the lines for every agent, and how many events."""
    events = generator_events(syslog_lines(), AGENTS, 1e9)
    with tempfile.TemporaryDirectory() as home:
        install_ruleset(Path(home))
        engine = load_engine(home, RulesetSettings(rule_excludes=(EXCLUDE,)))
        alerts = [alert for alert in map(engine.process, events) if alert is not None]
    return alerts, len(events)


def best_seconds(render: Any, alerts: list[dict[str, Any]], rounds: int) -> float:
    """CPU seconds of the least disturbed round rendering every alert."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for alert in alerts:
            render(alert)
        best = min(best, time.process_time() - started)
    return best


def main() -> int:
    """Render the alerts both ways and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    reason = missing_reason("WAZUH_RULESET")
    if reason:
        print(f"skipped: {reason}")
        return 0
    alerts, events = alerts_of_one_cycle()
    same = sum(STANDARD.encode(alert).encode("utf-8") == json_line(alert) for alert in alerts)
    size = sum(len(json_line(alert)) for alert in alerts) / len(alerts)
    print(f"{len(alerts)} alerts of {events} events, {size:.0f} bytes each on average")
    print(f"byte for byte the same: {same} of {len(alerts)}")
    print("| renderer | µs per alert | µs per event |\n|---|---|---|")
    for name, render in (("json (standard library)", STANDARD.encode), ("json_line", json_line)):
        seconds = best_seconds(render, alerts, options.rounds)
        print(f"| {name} | {1e6 * seconds / len(alerts):.2f} | {1e6 * seconds / events:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

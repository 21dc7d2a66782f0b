"""Benchmark the analysis engine: events per second with the full Wazuh 4.x ruleset.

Builds a throw-away home from Wazuh's ruleset (``WAZUH_RULESET``, default
``../shared/wazuh-ruleset``; stock decoders, rules and lists),
replays every log line of the ruleset's test cases through decode + rules + alert writing,
and compares with the same lines through the bare pre-decoder. Prints EPS and peak memory.

    .venv/bin/python bench/bench_analysis.py [--rounds N]
"""

from __future__ import annotations

import argparse
import configparser
import os
import resource
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from wazuhcluster.analysis.alerts import AlertWriter  # noqa: E402
from wazuhcluster.analysis.engine import Engine, Event  # noqa: E402
from wazuhcluster.analysis.loader import load_engine  # noqa: E402
from wazuhcluster.analysis.predecoder import predecode  # noqa: E402
from wazuhcluster.config.analysis_settings import RulesetSettings  # noqa: E402
from wazuhcluster.testing.reference import missing_reason, wazuh_ruleset  # noqa: E402

RULESET = wazuh_ruleset()


def sample_lines() -> list[str]:
    """Every log line of the ruleset's test cases (syslog, JSON, web logs...)."""
    lines: list[str] = []
    tests = os.path.join(RULESET, "testing", "tests")
    for name in sorted(os.listdir(tests)):
        if not name.endswith(".ini"):
            continue
        parser = configparser.RawConfigParser(strict=False)
        parser.read(os.path.join(tests, name), encoding="utf-8")
        for section in parser.sections():
            for key, value in parser.items(section):
                if key.startswith("log "):
                    lines.extend(line for line in value.split("\n") if line)
    return lines


def build_home(home: str) -> None:
    """A home with the stock ruleset and lists."""
    shutil.copytree(os.path.join(RULESET, "decoders"), os.path.join(home, "ruleset", "decoders"))
    shutil.copytree(os.path.join(RULESET, "rules"), os.path.join(home, "ruleset", "rules"))
    shutil.copytree(os.path.join(RULESET, "lists"), os.path.join(home, "etc", "lists"))


def best_rate(engine: Engine, events: list[Event], rounds: int) -> float:
    """Events per CPU second of the least disturbed round (no alert writing)."""
    best = float("inf")
    for _ in range(rounds):
        engine.reset()
        started = time.process_time()
        for event in events:
            engine.process(event)
        best = min(best, time.process_time() - started)
    return len(events) / best


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    reason = missing_reason("WAZUH_RULESET")
    if reason:
        print(f"skipped: {reason}")
        return 0
    lines = sample_lines()
    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "home")
        build_home(home)
        started = time.perf_counter()
        engine = load_engine(home, RulesetSettings(rule_excludes=("0215-policy_rules.xml",)))
        load_seconds = time.perf_counter() - started
        events = [
            Event(line, location="/var/log/syslog", timestamp=1_700_000_000.0 + i)
            for i, line in enumerate(lines)
        ]
        total = len(lines) * args.rounds

        started = time.perf_counter()
        cpu = time.process_time()
        for _ in range(args.rounds):
            for line in lines:
                predecode(line)
        bare = total / (time.perf_counter() - started)
        bare_cpu = total / (time.process_time() - cpu)

        writer = AlertWriter(os.path.join(home, "logs", "alerts", "alerts.json"))
        alerts = 0
        rounds = []
        started = time.perf_counter()
        cpu = time.process_time()
        for _ in range(args.rounds):
            engine.reset()
            round_started = time.process_time()
            for event in events:
                alert = engine.process(event)
                if alert is not None:
                    writer.write(alert)
                    alerts += 1
            rounds.append(time.process_time() - round_started)
        writer.close()
        full = total / (time.perf_counter() - started)
        full_cpu = total / (time.process_time() - cpu)
        best = len(events) / min(rounds)
        syslog = [event for event in events if predecode(event.message).program_name]
        json_lines = [event for event in events if event.message.startswith("{")]
        syslog_rate = best_rate(engine, syslog, args.rounds)
        json_rate = best_rate(engine, json_lines, args.rounds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sample lines          {len(lines)} x {args.rounds} rounds = {total} events")
    print(f"ruleset load          {load_seconds:.2f} s")
    print(f"pre-decoder only      {bare:10.0f} events/s wall  {bare_cpu:10.0f} per CPU second")
    print(
        f"decode+rules+alerts   {full:10.0f} events/s wall  {full_cpu:10.0f} per CPU second"
        f"  ({alerts} alerts written)"
    )
    print(f"best round            {best:10.0f} events per CPU second (least disturbed round)")
    print(f"ratio (CPU)           {full_cpu / bare_cpu:.3f}")
    print(f"syslog lines only     {syslog_rate:10.0f} events per CPU second ({len(syslog)} lines)")
    print(
        f"JSON lines only       {json_rate:10.0f} events per CPU second ({len(json_lines)} lines)"
    )
    print(f"peak memory (RSS)     {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

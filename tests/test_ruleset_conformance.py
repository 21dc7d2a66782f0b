"""Conformance of the analysis engine with Wazuh's own ruleset tests.

Builds a manager home from Wazuh's ruleset (the ``WAZUH_RULESET`` setting, see
:mod:`wazuhcluster.testing.reference`; skipped when it is absent) the way its README describes
(stock decoders and rules under ``ruleset/``, the ``test_*`` files under ``etc/``, rule 60000
decoded as JSON, the lists of the upstream ``<ruleset>`` block), then runs every
``log N pass|fail`` value of ``testing/tests/*.ini`` like the upstream runner: one logtest
session per value, the last line's decoder name, rule id and level must equal the section's
``decoder``, ``rule`` and ``alert`` (exit code 0) for ``pass``, and must not for ``fail``.
"""

from __future__ import annotations

import collections
import configparser
import os
import re
import shutil
import time
from typing import Any

from twisted.trial import unittest

from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.testing.reference import missing_reason, wazuh_ruleset

RULESET = wazuh_ruleset()

# The pass rate (in percent of all log values) may only ever go up.
FLOOR = 100.0

SETTINGS = RulesetSettings(
    decoder_dirs=("ruleset/decoders", "etc/decoders"),
    rule_dirs=("ruleset/rules", "etc/rules"),
    rule_excludes=("0215-policy_rules.xml",),
    lists=(
        "etc/lists/audit-keys",
        "etc/lists/malicious-ioc/malware-hashes",
        "etc/lists/malicious-ioc/malicious-ip",
        "etc/lists/malicious-ioc/malicious-domains",
    ),
)
_RULE_60000 = re.compile(r'(<rule id="60000"[^>]*>)(.*?)(</rule>)', re.DOTALL)


class _MultiDict(collections.OrderedDict):
    """Collects the lines of a repeated ini key, like the upstream runner's dict type."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def build_home(home: str) -> None:
    """Lay out a manager home for the ruleset tests."""
    shutil.copytree(os.path.join(RULESET, "decoders"), os.path.join(home, "ruleset", "decoders"))
    shutil.copytree(os.path.join(RULESET, "rules"), os.path.join(home, "ruleset", "rules"))
    shutil.copytree(os.path.join(RULESET, "lists"), os.path.join(home, "etc", "lists"))
    for kind in ("rules", "decoders"):
        os.makedirs(os.path.join(home, "etc", kind), exist_ok=True)
    testing = os.path.join(RULESET, "testing", "ruleset")
    for name in sorted(os.listdir(testing)):
        if re.match(r"^test_(.*_)?rules\.xml$", name):
            shutil.copy(os.path.join(testing, name), os.path.join(home, "etc", "rules"))
        elif re.match(r"^test_(.*_)?decoders\.xml$", name):
            shutil.copy(os.path.join(testing, name), os.path.join(home, "etc", "decoders"))
    windows = os.path.join(home, "ruleset", "rules", "0575-win-base_rules.xml")
    with open(windows, encoding="utf-8") as handle:
        text = handle.read()

    def retarget(found: re.Match[str]) -> str:
        body = re.sub(r"\s*<(decoded_as|category)>[^<]*</\1>", "", found.group(2))
        return found.group(1) + body + "  <decoded_as>json</decoded_as>\n    " + found.group(3)

    with open(windows, "w", encoding="utf-8") as handle:
        handle.write(_RULE_60000.sub(retarget, text, count=1))


def read_cases(path: str) -> list[tuple[str, str, str, str, str, bool]]:
    """(section, key, lines, rule, level, negate) for every ``log`` key of one ini file."""
    parser = configparser.RawConfigParser(dict_type=_MultiDict, strict=False)
    parser.read([path], encoding="utf-8")
    cases = []
    for section in parser.sections():
        rule = parser.get(section, "rule")
        level = parser.get(section, "alert")
        decoder = parser.get(section, "decoder")
        for name, value in parser.items(section):
            if name.startswith("log "):
                cases.append(
                    (
                        section,
                        name,
                        value,
                        f"{rule}:{level}:{decoder}",
                        level,
                        name.endswith("fail"),
                    )
                )
    return cases


def last_unit(engine: Engine, lines: str, clock: float) -> list[str]:
    """Run one logtest session over ``lines``; return [rule id, level, decoder] of the last."""
    engine.reset()
    unit = ["", "", ""]
    for offset, line in enumerate(lines.split("\n")):
        if not line:
            continue
        verdict = engine.analyse(Event(line, timestamp=clock + offset))
        rule = verdict.output.get("rule")
        unit = ["", "", ""]
        if rule is not None:
            unit[0] = rule["id"]
            unit[1] = str(rule["level"])
        decoder = verdict.output.get("decoder")
        if decoder:
            unit[2] = decoder.get("name", "")
    return unit


def case_passes(engine: Engine, lines: str, expected: str, negate: bool, clock: float) -> bool:
    """Apply wazuh-logtest -U's exit code and the runner's pass/fail reading."""
    wanted = expected.split(":")
    if len(wanted) != 3:
        return negate
    got = last_unit(engine, lines, clock)
    code = wanted.count("") if got == wanted else 1
    return code != 0 if negate else code == 0


def run_conformance(home: str) -> dict[str, tuple[int, int, list[str]]]:
    """Per ini file: (passed, total, failures described)."""
    engine = load_engine(home, SETTINGS)
    results: dict[str, tuple[int, int, list[str]]] = {}
    clock = time.mktime((2024, 6, 5, 12, 0, 0, 0, 0, -1))
    tests = os.path.join(RULESET, "testing", "tests")
    for name in sorted(os.listdir(tests)):
        if not name.endswith(".ini") or name.endswith("geoip.ini"):
            continue
        passed = 0
        failures = []
        cases = read_cases(os.path.join(tests, name))
        for section, key, lines, expected, _level, negate in cases:
            if case_passes(engine, lines, expected, negate, clock):
                passed += 1
            else:
                got = last_unit(engine, lines, clock)
                failures.append(f"[{section}] {key}: expected {expected} got {':'.join(got)}")
        results[name] = (passed, len(cases), failures)
    return results


class RulesetConformanceTests(unittest.SynchronousTestCase):
    """The upstream ruleset test cases, run against our engine."""

    def test_pass_rate(self) -> None:
        """The share of passing log values never drops below the recorded floor."""
        reason = missing_reason("WAZUH_RULESET")
        if reason:
            raise unittest.SkipTest(reason)
        home = self.mktemp()
        build_home(home)
        results = run_conformance(home)
        total = sum(t for _, t, _ in results.values())
        passed = sum(p for p, _, _ in results.values())
        for name, (ok, count, _) in results.items():
            print(f"{name:45s} {ok:4d}/{count:<4d}")
        rate = 100.0 * passed / total if total else 0.0
        print(f"TOTAL {passed}/{total} = {rate:.2f}% (floor {FLOOR}%)")
        self.assertGreaterEqual(rate, FLOOR)

"""``wazuh-logtest``: test log lines against a node's ruleset from the command line.

Reads lines from stdin. For each line it prints Wazuh's three phases (pre-decoding, decoding,
filtering) in text, or with ``--json`` one object per line::

    {"decoder": name or null, "rule": {"id", "level", "description"} or null,
     "alert": bool, "output": {...alert record...}}

An empty line ends the session: correlation state starts afresh after it, as a new
wazuh-logtest process would. ``-U RULE:LEVEL:DECODER`` makes the exit status 0 only when the
last line's rule id, level and decoder name are those (Wazuh's unit-test mode, used by its
ruleset test runner; an expectation with empty parts exits with their count).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from defusedxml import ElementTree as SafeElementTree

from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Engine, Event, Verdict
from wazuhcluster.analysis.loader import RulesetError, load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings, parse_ruleset
from wazuhcluster.config.xmlconfig import ConfigError, Section

DEFAULT_HOME = "/var/wazuh-manager"
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def read_settings(home: str) -> RulesetSettings:
    """``<ruleset>``/``<alerts>`` of HOME/etc/wazuh-manager.conf (defaults when absent)."""
    path = os.path.join(home, "etc", "wazuh-manager.conf")
    if not os.path.exists(path):
        return RulesetSettings()
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, "ruleset", "configuration file too large")
    text = data.decode("utf-8", errors="replace")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("<?xml"))
    try:
        root = SafeElementTree.fromstring(f"<root>{text}</root>")
    except Exception as error:  # defusedxml raises several unrelated types
        raise ConfigError(path, "ruleset", f"unreadable XML: {error}") from None
    rulesets = root.findall("./*/ruleset")
    alerts = root.findall("./*/alerts")
    return parse_ruleset(
        Section(rulesets[-1] if rulesets else None, path, "ruleset"),
        Section(alerts[-1] if alerts else None, path, "alerts"),
    )


def unit_of(verdict: Verdict) -> list[str]:
    """[rule id, level, decoder name] as wazuh-logtest's -U compares them."""
    unit = ["", "", ""]
    rule = verdict.output.get("rule")
    if rule is not None:
        unit[0] = str(rule["id"])
        unit[1] = str(rule["level"])
    decoder = verdict.output.get("decoder")
    if decoder:
        unit[2] = str(decoder.get("name", ""))
    return unit


def _phase_lines(data: dict[str, Any], first: Sequence[str], prefix: str = "") -> list[str]:
    lines = []
    remaining = dict(data)
    for key in first:
        if key in remaining:
            lines.append(f"\t{key}: '{_text(remaining.pop(key))}'")
    for key in sorted(remaining):
        value = remaining[key]
        if isinstance(value, dict):
            lines.extend(_phase_lines(value, (), f"{prefix}{key}."))
        else:
            lines.append(f"\t{prefix}{key}: '{_text(value)}'")
    return lines


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in value) + "]"
    return str(value)


def render_text(verdict: Verdict) -> str:
    """The three phases as wazuh-logtest prints them."""
    output = dict(verdict.output)
    lines = ["**Phase 1: Completed pre-decoding."]
    if "full_log" in output:
        lines.append(f"\tfull event: '{output['full_log']}'")
    lines.extend(
        _phase_lines(output.get("predecoder", {}), ("timestamp", "hostname", "program_name"))
    )
    lines += ["", "**Phase 2: Completed decoding."]
    decoder = output.get("decoder")
    if decoder:
        lines.extend(_phase_lines(decoder, ("name", "parent")))
        lines.extend(_phase_lines(output.get("data", {}), ()))
    else:
        lines.append("\tNo decoder matched.")
    if "rule" in output:
        lines += ["", "**Phase 3: Completed filtering (rules)."]
        lines.extend(
            _phase_lines(output["rule"], ("id", "level", "description", "groups", "firedtimes"))
        )
    if verdict.alert:
        lines.append("**Alert to be generated.")
    return "\n".join(lines)


def render_json(verdict: Verdict) -> str:
    """One JSON object describing the verdict."""
    rule = verdict.output.get("rule")
    decoder = verdict.output.get("decoder")
    return json.dumps(
        {
            "decoder": decoder.get("name") if decoder else None,
            "rule": {"id": rule["id"], "level": rule["level"], "description": rule["description"]}
            if rule is not None
            else None,
            "alert": verdict.alert,
            "output": verdict.output,
        },
        ensure_ascii=False,
    )


def run_session(engine: Engine, stdin: TextIO, stdout: TextIO, as_json: bool) -> list[str]:
    """Process stdin until EOF; return the unit ([rule, level, decoder]) of the last line."""
    unit = ["", "", ""]
    for raw in stdin:
        line = raw.rstrip("\r\n")
        if not line:
            engine.reset()
            continue
        verdict = engine.analyse(Event(line, location="stdin"))
        unit = unit_of(verdict)
        stdout.write((render_json(verdict) if as_json else render_text(verdict) + "\n") + "\n")
        stdout.flush()
    return unit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wazuh-logtest", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--home",
        default=os.environ.get("WAZUH_HOME", DEFAULT_HOME),
        help="the node's HOME directory (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument(
        "-U",
        dest="unit",
        metavar="RULE:LEVEL:DECODER",
        help="exit 0 only if the last line gives this rule, level and decoder",
    )
    return parser


def main(
    argv: Sequence[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Entry point of the ``wazuh-logtest`` console script."""
    args = _parser().parse_args(argv)
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    expected: list[str] | None = None
    if args.unit is not None:
        expected = args.unit.split(":")
        if len(expected) != 3:
            sys.stderr.write(f"wazuh-logtest: bad -U value {args.unit!r} (RULE:LEVEL:DECODER)\n")
            return 1
    try:
        settings = read_settings(args.home)
        engine = load_engine(
            args.home, settings, Identity(manager_name=socket.gethostname(), hide_cluster=True)
        )
    except (ConfigError, RulesetError, OSError) as error:
        sys.stderr.write(f"wazuh-logtest: {error}\n")
        return 1
    unit = run_session(engine, stdin, stdout, args.json)
    if expected is None:
        return 0
    if unit == expected:
        return expected.count("")
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

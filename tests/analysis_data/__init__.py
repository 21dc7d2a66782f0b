"""Helpers for the analysis tests: build a small home with given decoders, rules and lists."""

from __future__ import annotations

import os

from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings

ROOT_RULES = """
<group name="syslog,">
  <rule id="1" level="0" noalert="1">
    <category>syslog</category>
    <description>Generic template for all syslog rules.</description>
  </rule>
  <rule id="2" level="0" noalert="1">
    <category>firewall</category>
    <description>Generic template for all firewall rules.</description>
  </rule>
</group>
"""

JSON_DECODER = """
<decoder name="json">
  <prematch>^{\\s*"</prematch>
  <plugin_decoder>JSON_Decoder</plugin_decoder>
</decoder>
"""

CLOCK = 1_700_000_000.0


def write(path: str, text: str) -> None:
    """Write ``text`` to ``path``, creating the directories."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def make_home(
    home: str, decoders: str = "", rules: str = "", lists: dict[str, str] | None = None
) -> str:
    """Lay out ``home`` with one decoder file, the root rules plus one rule file, and lists."""
    write(os.path.join(home, "ruleset", "decoders", "0001-test_decoders.xml"), decoders)
    write(os.path.join(home, "ruleset", "rules", "0001-root_rules.xml"), ROOT_RULES)
    write(os.path.join(home, "ruleset", "rules", "0002-test_rules.xml"), rules)
    for name, text in (lists or {}).items():
        write(os.path.join(home, "etc", "lists", name), text)
    return home


def make_engine(
    home: str,
    decoders: str = "",
    rules: str = "",
    lists: dict[str, str] | None = None,
    settings: RulesetSettings | None = None,
) -> Engine:
    """Build a home in ``home`` and load an engine from it."""
    make_home(home, decoders, rules, lists)
    return load_engine(home, settings)


def run(engine: Engine, line: str, offset: float = 0.0, **fields: object) -> dict | None:
    """Process one line at CLOCK + offset; return the alert or None."""
    return engine.process(Event(line, timestamp=CLOCK + offset, **fields))  # type: ignore[arg-type]

"""Tests for EngineSlot: atomic swap on reload, old engine kept when a reload fails."""

from __future__ import annotations

import os

from twisted.trial import unittest

from tests.analysis_data import CLOCK, write
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Event
from wazuhcluster.analysis.holder import EngineSlot
from wazuhcluster.analysis.loader import install_default_ruleset, load_engine

LINE = "Feb 10 23:21:05 srv sshd[12]: Accepted publickey for bob from 10.0.0.9 port 22"
CUSTOM = """<group name="local,">
  <rule id="100001" level="12"><if_sid>5715</if_sid><user>^bob$</user>
    <description>bob logged in</description></rule></group>"""


class EngineSlotTests(unittest.SynchronousTestCase):
    """Reloading the ruleset without a restart."""

    def setUp(self) -> None:
        """A HOME with the default ruleset and a slot on its engine."""
        self.home = self.mktemp()
        install_default_ruleset(self.home)
        self.slot = EngineSlot(load_engine(self.home, identity=Identity("w1", "c", "n1")))

    def rule_id(self) -> str:
        """The rule that alerts for LINE now."""
        alert = self.slot.process(Event(LINE, timestamp=CLOCK))
        assert alert is not None
        return str(alert["rule"]["id"])

    def test_custom_rule_fires_after_reload(self) -> None:
        """A rule added under etc/rules is used once reload() succeeds; identity is kept."""
        self.assertEqual(self.rule_id(), "5715")
        write(os.path.join(self.home, "etc", "rules", "local_rules.xml"), CUSTOM)
        self.assertEqual(self.rule_id(), "5715")
        result = self.slot.reload(lambda: load_engine(self.home))
        self.assertTrue(result.ok)
        self.assertEqual((self.rule_id(), self.slot.reloads), ("100001", 1))
        self.assertEqual(self.slot.engine.identity.cluster_node, "n1")

    def test_broken_ruleset_keeps_the_old_engine(self) -> None:
        """A reload that fails reports the file and line, and the old engine keeps running."""
        old = self.slot.engine
        write(
            os.path.join(self.home, "etc", "rules", "local_rules.xml"), "<group name='x,'>\n<rule"
        )
        result = self.slot.reload(lambda: load_engine(self.home))
        self.assertFalse(result.ok)
        assert result.error is not None
        self.assertIn("local_rules.xml:2", result.error)
        self.assertIs(self.slot.engine, old)
        self.assertEqual(self.rule_id(), "5715")

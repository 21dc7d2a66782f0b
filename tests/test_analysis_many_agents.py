"""Wazuh's sshd brute-force rules (5712, 5763) with many agents interleaving their failures.

Wazuh 4.x searches a frequency rule's previously matched events by agent id (unless
``global_frequency``), bounded by the timeframe, so every agent's eighth failure fires the
brute-force rule however many other agents fail in between. Both rules carry ``ignore="60"``,
which Wazuh applies per rule for all agents (after one agent's brute-force alert, the others'
alert on the rule below for a minute): the stock rules show that, a copy without the ignore
shows every agent's correlation. Needs Wazuh's ruleset (the
``WAZUH_RULESET`` setting, see :mod:`wazuhcluster.testing.reference`); skipped without it.
"""

from __future__ import annotations

import os
import shutil

from twisted.trial import unittest

from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.testing.reference import missing_reason, wazuh_ruleset

CLOCK = 1_717_588_800.0
AGENTS = 1000
NON_EXISTENT = "Dec 27 03:23:51 r1 sshd[21183]: Invalid user admin from {ip}"
SSHD_RULES = "0095-sshd_rules.xml"
FAILED = "Dec 27 03:23:51 r1 sshd[21183]: Failed password for user from {ip} port 43042 ssh2"


class InterleavedAgentsTests(unittest.SynchronousTestCase):
    """A thousand agents, eight sshd failures each, sent round after round."""

    skip = missing_reason("WAZUH_RULESET")

    def load(self, keep_ignore: bool) -> None:
        """An engine with the stock decoders and the sshd rules (their ignore="60" removed
        unless ``keep_ignore``)."""
        ruleset = wazuh_ruleset()
        home = self.mktemp()
        shutil.copytree(os.path.join(ruleset, "decoders"), os.path.join(home, "decoders"))
        os.makedirs(os.path.join(home, "rules"))
        shutil.copy(os.path.join(ruleset, "rules", "0010-rules_config.xml"), home + "/rules")
        with open(os.path.join(ruleset, "rules", SSHD_RULES), encoding="utf-8") as handle:
            text = handle.read()
        if not keep_ignore:
            text = text.replace(' ignore="60"', "")
        with open(os.path.join(home, "rules", SSHD_RULES), "w", encoding="utf-8") as handle:
            handle.write(text)
        self.engine: Engine = load_engine(
            home, RulesetSettings(decoder_dirs=("decoders",), rule_dirs=("rules",))
        )

    def rounds(self, template: str, keep_ignore: bool = False) -> list[list[str]]:
        """Per round, the alerting rule id of each agent's failure (every agent from the
        same address: only the agent tells them apart)."""
        self.load(keep_ignore)
        found = []
        for round_number in range(8):
            ids = []
            for number in range(1, AGENTS + 1):
                alert = self.engine.process(
                    Event(
                        template.format(ip="203.0.113.7"),
                        agent_id=f"{number:04d}",
                        agent_name=f"agent{number}",
                        timestamp=CLOCK + round_number,
                    )
                )
                ids.append(alert["rule"]["id"] if alert else "")
            found.append(ids)
        return found

    def test_non_existent_user_brute_force_5712(self) -> None:
        """Seven 5710 alerts per agent, then 5712 for each of the thousand."""
        found = self.rounds(NON_EXISTENT)
        self.assertEqual({rule for ids in found[:7] for rule in ids}, {"5710"})
        self.assertEqual(found[7].count("5712"), AGENTS)

    def test_authentication_failed_brute_force_5763(self) -> None:
        """Seven 5760 alerts per agent, then 5763 for each of the thousand."""
        found = self.rounds(FAILED)
        self.assertEqual({rule for ids in found[:7] for rule in ids}, {"5760"})
        self.assertEqual(found[7].count("5763"), AGENTS)

    def test_the_stock_ignore_applies_to_every_agent(self) -> None:
        """With the stock ignore="60": the first agent's eighth failure alerts 5712, the
        other agents' alert 5710 inside the ignore window, as Wazuh's per-rule ignore does."""
        found = self.rounds(NON_EXISTENT, keep_ignore=True)
        self.assertEqual(found[7][0], "5712")
        self.assertEqual(found[7][1:].count("5710"), AGENTS - 1)

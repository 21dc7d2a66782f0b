"""Tests for the wazuh-logtest console script."""

from __future__ import annotations

import io
import json
import os

from twisted.trial import unittest

from tests.analysis_data import write
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.scripts.logtest import main

INVALID = "Feb 10 23:21:05 srv sshd[12]: Invalid user paco from 172.17.1.1 port 5640"
ACCEPTED = "Feb 10 23:21:05 srv sshd[12]: Accepted password for bob from 10.0.0.9 port 22 ssh2"


class LogtestTests(unittest.SynchronousTestCase):
    """Text and JSON output, sessions and the -U unit mode."""

    def setUp(self) -> None:
        """A HOME with the default ruleset."""
        self.home = self.mktemp()
        install_default_ruleset(self.home)

    def run_main(self, text: str, *args: str) -> tuple[int, str]:
        """Run main() on ``text``; return the exit code and the output."""
        out = io.StringIO()
        code = main(["--home", self.home, *args], stdin=io.StringIO(text), stdout=out)
        return code, out.getvalue()

    def test_text_phases(self) -> None:
        """The text output shows the three phases and whether an alert is generated."""
        code, out = self.run_main(INVALID + "\n")
        self.assertEqual(code, 0)
        self.assertIn("**Phase 1: Completed pre-decoding.", out)
        self.assertIn("\tprogram_name: 'sshd'", out)
        self.assertIn("**Phase 2: Completed decoding.", out)
        self.assertIn("\tname: 'sshd'", out)
        self.assertIn("\tsrcip: '172.17.1.1'", out)
        self.assertIn("**Phase 3: Completed filtering (rules).", out)
        self.assertIn("\tid: '5710'", out)
        self.assertIn("**Alert to be generated.", out)

    def test_no_decoder(self) -> None:
        """An unknown line says so in phase 2 and has no phase 3."""
        code, out = self.run_main("nothing to see\n")
        self.assertIn("No decoder matched.", out)
        self.assertNotIn("Phase 3", out)

    def test_json_lines(self) -> None:
        """--json prints one object per input line with decoder, rule, alert and output."""
        code, out = self.run_main(INVALID + "\nnothing\n", "--json")
        first, second = (json.loads(line) for line in out.splitlines())
        self.assertEqual(first["decoder"], "sshd")
        self.assertEqual(first["rule"]["id"], "5710")
        self.assertEqual(first["rule"]["level"], 5)
        self.assertTrue(first["alert"])
        self.assertEqual(first["output"]["data"]["srcuser"], "paco")
        self.assertEqual((second["decoder"], second["rule"], second["alert"]), (None, None, False))

    def test_unit_mode(self) -> None:
        """-U exits 0 when the last line's rule, level and decoder are the expected ones."""
        self.assertEqual(self.run_main(INVALID + "\n", "-U", "5710:5:sshd")[0], 0)
        self.assertEqual(self.run_main(INVALID + "\n", "-U", "5710:6:sshd")[0], 1)
        self.assertEqual(self.run_main(INVALID + "\n" + ACCEPTED + "\n", "-U", "5715:3:sshd")[0], 0)
        self.assertEqual(self.run_main("nothing\n", "-U", "::")[0], 3)
        self.assertEqual(self.run_main("x\n", "-U", "bad")[0], 1)

    def test_correlation_within_session_and_reset_on_empty_line(self) -> None:
        """Eight invalid users in one session fire 5712; an empty line starts afresh."""
        burst = (INVALID + "\n") * 8
        self.assertEqual(self.run_main(burst, "-U", "5712:10:sshd")[0], 0)
        split = (INVALID + "\n") * 4 + "\n" + (INVALID + "\n") * 4
        self.assertEqual(self.run_main(split, "-U", "5710:5:sshd")[0], 0)

    def test_configuration_is_read(self) -> None:
        """The <ruleset> and <alerts> blocks of etc/wazuh-manager.conf are honoured."""
        write(
            os.path.join(self.home, "etc", "wazuh-manager.conf"),
            "<wazuh_config><alerts><log_alert_level>9</log_alert_level></alerts></wazuh_config>",
        )
        code, out = self.run_main(INVALID + "\n", "--json")
        self.assertFalse(json.loads(out)["alert"])

    def test_broken_home(self) -> None:
        """A HOME whose ruleset cannot load exits 1 with a message."""
        write(os.path.join(self.home, "etc", "rules", "bad.xml"), "<group name='x'><rule>")
        self.assertEqual(self.run_main("x\n")[0], 1)

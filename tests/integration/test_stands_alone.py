"""A clone of the repository with nothing beside it passes the unit suite.

The reference data (Wazuh's ruleset, its API description) sits in ``../shared`` on the team's
machines and in CI; a test that reached for it without the settings of
:mod:`wazuhcluster.testing.reference` would pass here and fail for every user who clones the
project alone. This test clones the committed tree into an empty temporary directory, clears
the settings, and runs every unit test module there with this interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.common import REPO

#: The unit suite runs in well under a minute; slow shared machines get room.
DEADLINE = 900.0


class StandsAloneTests(SynchronousTestCase):
    """The project needs nothing beside its own checkout."""

    def test_unit_suite_passes_in_a_lone_clone(self) -> None:
        """Every unit test passes (or skips with a reason) in a clone with no ../shared."""
        git = shutil.which("git")
        if git is None or not (REPO / ".git").exists():
            raise SkipTest("needs git and a git checkout of the project")
        lone = Path(self.mktemp()).resolve() / "alone"
        lone.mkdir(parents=True)
        clone = lone / "wazuhcluster"
        subprocess.run(
            [git, "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)],
            check=True,
            timeout=120,
        )
        self.assertFalse((lone / "shared").exists())
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("WAZUH_RULESET", "WAZUH_API_SPEC")
        }
        env["PYTHONPATH"] = str(clone)
        probe = subprocess.run(
            [sys.executable, "-c", "import wazuhcluster; print(wazuhcluster.__file__)"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        self.assertTrue(probe.stdout.strip().startswith(str(clone)), probe.stdout)
        modules = sorted(f"tests.{p.stem}" for p in (clone / "tests").glob("test_*.py"))
        result = subprocess.run(
            [sys.executable, "-b", "-m", "twisted.trial", "--reporter=text", *modules],
            check=False,
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        tail = (result.stdout + result.stderr)[-4000:]
        self.assertEqual(result.returncode, 0, tail)
        summary = re.findall(r"^PASSED \((.*)\)\s*$", result.stdout, re.M)
        self.assertTrue(summary, tail)
        self.assertIn("skips=", summary[-1], "the ruleset conformance test should skip here")

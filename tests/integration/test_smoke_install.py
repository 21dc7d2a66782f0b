"""Packaging smoke test: the wheel installed in a fresh virtualenv works from any directory.

`make smoke` runs this test. It builds the wheel, installs it (with its dependencies) into a
new virtualenv, and from another directory checks that twistd lists the plugin, even with a
stale plugin cache, and that every console script answers and takes --home.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = (
    "wazuh-cluster-control",
    "wazuh-cluster-certs",
    "wazuh-logtest",
    "wazuh-agent-sim",
    "wazuh-cluster-ruleset",
)
#: Building and installing may download dependencies on a fresh machine.
INSTALL_TIMEOUT = 600


class SmokeInstallTests(SynchronousTestCase):
    """pip install of the wheel into a fresh venv, then the commands, from elsewhere."""

    def run_checked(self, *args: str | Path, cwd: Path, timeout: float = 120) -> str:
        """Run a command; fail the test with its output if it fails."""
        done = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.assertEqual(done.returncode, 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout + done.stderr

    def test_wheel_in_fresh_venv(self) -> None:
        """The plugin is in the wheel and found from /, a stale dropin.cache is repaired, and
        every console script answers --help with a --home option."""
        base = Path(tempfile.mkdtemp(prefix="wzc-smoke-"))
        self.addCleanup(shutil.rmtree, base, True)
        self.run_checked(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            base / "dist",
            REPO,
            cwd=base,
            timeout=INSTALL_TIMEOUT,
        )
        [wheel] = list((base / "dist").glob("wazuhcluster-*.whl"))
        names = set(zipfile.ZipFile(wheel).namelist())
        self.assertIn("twisted/plugins/wazuhcluster_plugin.py", names)
        self.assertFalse({"twisted/__init__.py", "twisted/plugins/__init__.py"} & names)
        self.assertIn("wazuhcluster/api/openapi.json", names)
        self.assertFalse(any(name.startswith("tests/") for name in names))
        self.run_checked(sys.executable, "-m", "venv", base / "venv", cwd=base)
        bin_dir = base / "venv" / "bin"
        self.run_checked(bin_dir / "pip", "install", "-q", wheel, cwd=base, timeout=INSTALL_TIMEOUT)
        plugins = list((base / "venv").glob("lib/python*/site-packages/twisted/plugins"))
        self.assertEqual(len(plugins), 1)
        self.assertTrue((plugins[0] / "wazuhcluster_plugin.py").exists())
        self.assertFalse(
            (plugins[0] / "__init__.py").exists()
            and "wazuhcluster" in (plugins[0] / "__init__.py").read_text()
        )
        (plugins[0] / "dropin.cache").write_bytes(b"stale garbage, not a pickle")
        elsewhere = Path("/")
        self.assertIn("wazuhcluster", self.run_checked(bin_dir / "twistd", "--help", cwd=elsewhere))
        self.assertIn(
            "--role", self.run_checked(bin_dir / "twistd", "wazuhcluster", "--help", cwd=elsewhere)
        )
        for script in SCRIPTS:
            self.assertIn(
                "--home", self.run_checked(bin_dir / script, "--help", cwd=elsewhere), script
            )

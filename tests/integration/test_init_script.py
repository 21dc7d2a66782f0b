"""The service files in etc/ run a real master: the SysV init script (with start-stop-daemon and
with its portable fallback), the systemd unit's command line, and ``systemd-analyze verify``.

Every node started here is stopped in cleanup, by the init script and then by SIGKILL of any
pid it left, even when the test failed half-way.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import short_temp_dir
from tests.integration.common import DEADLINE, control
from wazuhcluster.config.cluster import load_config
from wazuhcluster.config.home import Home
from wazuhcluster.testing.devcluster import LocalCluster, wait_for

REPO = Path(__file__).resolve().parents[2]
INIT_SCRIPT = REPO / "etc" / "init.d" / "wazuhcluster"
UNIT = REPO / "etc" / "systemd" / "wazuhcluster@.service"
LOGROTATE = REPO / "etc" / "logrotate.d" / "wazuhcluster"
EXAMPLE_CONFIG = REPO / "etc" / "wazuh-manager.conf.example"
TWISTD = Path(sys.executable).parent / "twistd"
#: Seconds the init script waits after SIGTERM before SIGKILL, kept short for the test.
STOP_TIMEOUT = 20


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (orphans may never be reaped here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def process_mentions(pid: int, text: str) -> bool:
    """True if the command line of live process ``pid`` contains ``text``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return text.encode() in cmdline


class NodeUnderTest(SynchronousTestCase):
    """A master home in a short temporary directory and a defaults file pointing at it."""

    def setUp(self) -> None:
        """Lay out the master's home and the defaults file; arrange the cleanup."""
        base = short_temp_dir(self)
        cluster = LocalCluster(base, workers=[])
        cluster.write()
        self.home: Home = cluster.home("master")
        self.defaults = base / "default"
        self.pidfile = self.home.var_run / "wazuhcluster.pid"
        self.twistd_log = self.home.logs / "twistd.log"
        self.write_defaults()
        self.pids: set[int] = set()
        self.addCleanup(self.kill_leftovers)

    def write_defaults(self, **overrides: str) -> None:
        """Write the defaults file: this venv's twistd, the repository on PYTHONPATH, no user."""
        settings = {
            "ROLE": "master",
            "HOME_DIR": str(self.home.root),
            "TWISTD": str(TWISTD),
            "USER": "",
            "LOGFILE": str(self.twistd_log),
            "STOP_TIMEOUT": str(STOP_TIMEOUT),
            "PYTHONPATH": str(REPO),
        }
        settings.update(overrides)
        lines = [f"{name}={shlex.quote(value)}" for name, value in settings.items()]
        self.defaults.write_text("\n".join(lines) + "\n")

    def script(self, action: str, portable: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the init script with ``action``; remember any pid it leaves in the pidfile."""
        env = dict(os.environ, WAZUHCLUSTER_DEFAULTS=str(self.defaults))
        if portable:
            env["WAZUHCLUSTER_PORTABLE"] = "1"
        result = subprocess.run(
            [str(INIT_SCRIPT), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT + DEADLINE,
            check=False,
        )
        pid = self.read_pid()
        if pid is not None:
            self.pids.add(pid)
        return result

    def read_pid(self) -> int | None:
        """The pid in the pidfile, if there is one."""
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill_leftovers(self) -> None:
        """Stop the node through the script, then SIGKILL any pid of ours still alive."""
        if self.read_pid() is not None:
            try:
                self.script("stop")
            except subprocess.TimeoutExpired:
                pass
        for pid in self.pids:
            if process_alive(pid) and process_mentions(pid, str(self.home.root)):
                os.kill(pid, signal.SIGKILL)

    def explain(self, result: subprocess.CompletedProcess[str]) -> str:
        """A failure message with the script's output and the end of twistd's log."""
        try:
            log = self.twistd_log.read_text(errors="replace")[-3000:]
        except OSError:
            log = "(no twistd.log)"
        return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}\ntwistd.log:\n{log}"

    def assert_action(
        self, action: str, code: int, portable: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``action`` and check its exit status."""
        result = self.script(action, portable)
        self.assertEqual(result.returncode, code, f"{action}: {self.explain(result)}")
        return result

    def assert_lists_master(self) -> None:
        """The control tool, talking to the running node, lists the master."""
        result = control(self.home.root, "-l")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines()[1].split()[:2], ["master", "master"])

    def running_pid(self) -> int:
        """The pid of the running node, checked to be alive and to be this node."""
        pid = self.read_pid()
        self.assertIsNotNone(pid, f"no pid in {self.pidfile}")
        assert pid is not None
        self.assertTrue(process_alive(pid), f"pid {pid} is not running")
        self.assertTrue(process_mentions(pid, str(self.home.root)))
        return pid

    def assert_stopped(self, pid: int, portable: bool = False) -> None:
        """``stop`` exits 0, the process is gone, the pidfile too, and ``status`` says 3."""
        self.assert_action("stop", 0, portable)
        self.assertFalse(process_alive(pid), f"pid {pid} survived stop")
        self.assertFalse(self.pidfile.exists())
        self.assert_action("status", 3, portable)


class InitScriptTests(NodeUnderTest):
    """start, status, reload, restart and stop of a real master through etc/init.d."""

    def test_lifecycle(self) -> None:
        """With start-stop-daemon when present: status 3, start, status 0, the control tool
        lists the master, a second start is a no-op, restart gives a new pid, stop ends it."""
        self.assert_action("status", 3)
        self.assert_action("start", 0)
        self.assert_action("status", 0)
        pid = self.running_pid()
        self.assert_lists_master()
        again = self.assert_action("start", 0)
        self.assertIn("already running", again.stdout)
        self.assertEqual(self.read_pid(), pid)
        self.assert_action("restart", 0)
        self.assertFalse(process_alive(pid), f"pid {pid} survived restart")
        pid = self.running_pid()
        self.assert_lists_master()
        self.assert_stopped(pid)
        self.assert_action("stop", 0)

    def test_portable_fallback(self) -> None:
        """Without start-stop-daemon the script starts, reports and stops the node itself."""
        self.assert_action("start", 0, portable=True)
        self.assert_action("status", 0, portable=True)
        pid = self.running_pid()
        self.assert_lists_master()
        self.assert_stopped(pid, portable=True)

    def test_reload_reopens_cluster_log(self) -> None:
        """reload (SIGHUP) keeps the node running and makes it reopen cluster.log, so a
        renamed log (logrotate) is followed by a fresh cluster.log."""
        self.assert_action("start", 0)
        pid = self.running_pid()
        log = self.home.cluster_log
        self.assertTrue(wait_for(log.exists, DEADLINE))
        rotated = log.with_name("cluster.log.1")
        log.rename(rotated)
        self.assert_action("reload", 0)
        self.assertTrue(
            wait_for(lambda: "SIGHUP received" in (log.read_text() if log.exists() else ""), 30),
            f"cluster.log was not reopened; {self.explain(self.script('status'))}",
        )
        self.assertEqual(self.running_pid(), pid)
        self.assert_action("status", 0)
        self.assert_lists_master()
        self.assert_stopped(pid)

    def test_logrotate_rotates_and_signals(self) -> None:
        """etc/logrotate.d, pointed at this home, renames cluster.log and its postrotate SIGHUP
        makes the running node start a new cluster.log; the node keeps running."""
        logrotate = shutil.which("logrotate")
        if logrotate is None:
            raise SkipTest("logrotate is not installed: its configuration was not exercised")
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        config = self.home.root / "logrotate.conf"
        text = (
            LOGROTATE.read_text()
            .replace("/var/wazuh-manager", str(self.home.root))
            .replace("wazuh-manager wazuh-manager", f"{user} {group}")
            # never signal a real node run by systemd on this machine
            .replace("wazuhcluster@", "wazuhcluster-test-absent@")
        )
        config.write_text(text)
        config.chmod(0o644)
        self.assert_action("start", 0)
        pid = self.running_pid()
        log = self.home.cluster_log
        self.assertTrue(wait_for(lambda: log.exists() and log.stat().st_size > 0, DEADLINE))
        result = subprocess.run(
            [logrotate, "--force", "--state", str(self.home.root / "logrotate.state"), str(config)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        rotated = log.with_name("cluster.log.1")
        self.assertTrue(rotated.exists(), sorted(p.name for p in log.parent.iterdir()))
        self.assertTrue(
            wait_for(lambda: "SIGHUP received" in (log.read_text() if log.exists() else ""), 30),
            "cluster.log was not reopened after logrotate",
        )
        self.assertNotIn("SIGHUP received", rotated.read_text())
        self.assertEqual(self.running_pid(), pid)
        self.assert_stopped(pid)

    def test_stale_pidfile_is_not_trusted(self) -> None:
        """A pidfile naming a live process that is not a node gives status 1; stop leaves
        that process alone and removes the pidfile; reload refuses with 7."""
        other = subprocess.Popen(["sleep", "60"])
        self.addCleanup(other.wait)
        self.addCleanup(other.kill)
        self.pidfile.write_text(str(other.pid))
        self.assert_action("status", 1)
        self.assert_action("reload", 7)
        self.assert_action("stop", 0)
        self.assertIsNone(other.poll())
        self.assertFalse(self.pidfile.exists())
        self.assert_action("status", 3)

    def test_bad_settings(self) -> None:
        """A bad role is exit 6, a missing twistd exit 5, a missing home exit 6, an unknown
        action exit 2, a defaults file named but absent exit 6; none of them starts anything."""
        self.write_defaults(ROLE="client")
        self.assertIn("ROLE must be master or worker", self.assert_action("start", 6).stderr)
        self.write_defaults(TWISTD=str(self.home.root / "no-twistd"))
        self.assertIn("not executable", self.assert_action("start", 5).stderr)
        self.write_defaults(HOME_DIR=str(self.home.root / "absent"))
        self.assertIn("does not exist", self.assert_action("start", 6).stderr)
        self.assert_action("frobnicate", 2)
        self.assertFalse(self.pidfile.exists())
        self.defaults.unlink()
        self.assertIn("cannot read WAZUHCLUSTER_DEFAULTS", self.assert_action("status", 6).stderr)

    def test_configtest(self) -> None:
        """configtest runs twistd's --test-config: 0 for the good home, 1 for a broken file."""
        self.assertIn("OK (master master", self.assert_action("configtest", 0).stdout)
        self.home.config_file.write_text("<wazuh_config><cluster><key>short</key>")
        self.assertIn("configuration error", self.assert_action("configtest", 1).stderr)


def unit_command(role: str) -> list[str]:
    """ExecStart of the systemd unit for ``role``, as systemd would run it: ``%i`` replaced,
    ``$$`` unescaped (the variables themselves are left to the shell it starts)."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line.removeprefix("ExecStart="))
            return [word.replace("%i", role).replace("$$", "$") for word in words]
    raise AssertionError(f"no ExecStart= in {UNIT}")


class SystemdUnitTests(NodeUnderTest):
    """The systemd unit is valid and its command line runs a node in the foreground."""

    def test_verify(self) -> None:
        """``systemd-analyze verify`` accepts the unit instantiated for each role."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed: the unit was not verified")
        for role in ("master", "worker"):
            instance = self.home.root / f"wazuhcluster@{role}.service"
            shutil.copyfile(UNIT, instance)
            result = subprocess.run(
                [analyze, "verify", str(instance)],
                capture_output=True,
                text=True,
                timeout=DEADLINE,
                check=False,
            )
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertEqual(result.stderr, "")

    def test_exec_start_runs_the_node(self) -> None:
        """ExecStart, with the variables of the defaults file, runs the master in the
        foreground without a pidfile; SIGTERM (the unit's KillSignal) shuts it down cleanly.

        After a clean shutdown twistd re-raises the signal that stopped it, so the exit is
        "killed by SIGTERM", which systemd counts as a clean exit (no restart)."""
        env = dict(
            os.environ,
            TWISTD=str(TWISTD),
            HOME_DIR=str(self.home.root),
            OPTS="",
            PYTHONPATH=str(REPO),
        )
        out = (self.home.logs / "journal.txt").open("wb")
        self.addCleanup(out.close)
        node = subprocess.Popen(
            unit_command("master"), env=env, stdout=out, stderr=subprocess.STDOUT, cwd="/"
        )
        self.addCleanup(node.wait, DEADLINE)
        self.addCleanup(node.kill)
        self.assertTrue(
            wait_for(lambda: control(self.home.root, "-l").returncode == 0, DEADLINE),
            (self.home.logs / "journal.txt").read_text(errors="replace"),
        )
        self.assert_lists_master()
        self.assertFalse(self.pidfile.exists())
        self.assertFalse(Path("/twistd.pid").exists())
        self.assertTrue(process_mentions(node.pid, "--role master"))
        node.send_signal(signal.SIGTERM)
        self.assertIn(node.wait(timeout=DEADLINE), (0, -signal.SIGTERM))
        self.assertIn("Server Shut Down.", (self.home.logs / "journal.txt").read_text())


class ExampleConfigTests(SynchronousTestCase):
    """etc/wazuh-manager.conf.example stays a valid configuration as the options evolve."""

    def test_master_and_worker(self) -> None:
        """The file loads as the master it describes, and with the two lines its closing
        comment names changed, as a worker of the same cluster."""
        home = Home(Path("/var/wazuh-manager"))
        master = load_config(EXAMPLE_CONFIG, home, "master").cluster
        self.assertEqual((master.node_type, master.node_name), ("master", "master"))
        self.assertEqual(master.warnings, ())
        text = EXAMPLE_CONFIG.read_text()
        for line in ("<node_name>worker1</node_name>", "<node_type>worker</node_type>"):
            self.assertIn(line, text.split("<!--")[-1])
        worker_text = text.replace(
            "<node_name>master</node_name>", "<node_name>worker1</node_name>", 1
        ).replace("<node_type>master</node_type>", "<node_type>worker</node_type>", 1)
        path = Path(self.mktemp())
        path.write_text(worker_text)
        worker = load_config(path, home, "worker").cluster
        self.assertEqual((worker.node_type, worker.node_name), ("worker", "worker1"))
        self.assertEqual((worker.name, worker.key, worker.port), (master.name, master.key, 1516))
        self.assertEqual(worker.master_address, "10.0.0.1")

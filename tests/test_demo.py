"""Tests for the helpers of wazuhcluster.scripts.demo: clearing its directory and reading alerts."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import short_temp_dir
from tests.test_ruleset_tool import make_archive, make_source
from wazuhcluster.analysis.ruleset_install import status
from wazuhcluster.scripts import demo


class PrepareDirTests(SynchronousTestCase):
    """prepare_dir clears only what a demo made."""

    def test_new_directory_is_marked(self) -> None:
        """A missing directory is created and marked as the demo's."""
        base = Path(self.mktemp())
        demo.prepare_dir(base)
        self.assertTrue((base / demo.MARKER).is_file())

    def test_earlier_demo_is_cleared_other_files_kept(self) -> None:
        """The demo's own entries go; anything else in the directory stays."""
        base = Path(self.mktemp())
        demo.prepare_dir(base)
        (base / "master" / "etc").mkdir(parents=True)
        (base / "nginx").mkdir()
        (base / "notes.txt").write_text("mine")
        demo.prepare_dir(base)
        self.assertFalse((base / "master").exists())
        self.assertFalse((base / "nginx").exists())
        self.assertEqual((base / "notes.txt").read_text(), "mine")

    def test_old_layout_without_marker_is_recognised(self) -> None:
        """Homes left by the first demo (no marker, but master/etc/wazuh-manager.conf) go."""
        base = Path(self.mktemp())
        (base / "master" / "etc").mkdir(parents=True)
        (base / "master" / "etc" / "wazuh-manager.conf").write_text("<wazuh_config/>")
        (base / "worker1").mkdir()
        demo.prepare_dir(base)
        self.assertFalse((base / "worker1").exists())
        self.assertFalse((base / "master").exists())

    def test_foreign_directory_is_refused(self) -> None:
        """A directory holding a ``master`` the demo did not make is left alone."""
        base = Path(self.mktemp())
        (base / "master").mkdir(parents=True)
        (base / "master" / "data").write_text("precious")
        with self.assertRaisesRegex(demo.DemoError, "not made by the demo"):
            demo.prepare_dir(base)
        self.assertEqual((base / "master" / "data").read_text(), "precious")

    def test_running_demo_is_refused(self) -> None:
        """While a master answers on the control socket, nothing is removed."""
        base = short_temp_dir(self)
        demo.prepare_dir(base)
        run = base / "master" / "var" / "run"
        run.mkdir(parents=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(str(run / "cluster.sock"))
        listener.listen(1)
        with self.assertRaisesRegex(demo.DemoError, "already running"):
            demo.prepare_dir(base)
        self.assertTrue(run.is_dir())


class ReadAlertsTests(SynchronousTestCase):
    """read_alerts tolerates a file being written."""

    def test_partial_and_foreign_lines_are_skipped(self) -> None:
        """Whole JSON objects are returned; a cut last line and non-objects are skipped;
        a missing file is no alerts."""
        path = Path(self.mktemp())
        self.assertEqual(demo.read_alerts(path), [])
        first = {"rule": {"id": "5710", "level": 5}}
        path.write_text(json.dumps(first) + "\n[1, 2]\n" + '{"rule": {"id": "57')
        self.assertEqual(demo.read_alerts(path), [first])
        self.assertEqual(demo.rule_of(first)["id"], "5710")
        self.assertEqual(demo.rule_of({"rule": "x"}), {})

    def test_assets_are_packaged(self) -> None:
        """The sample events and the custom rule ship in the package; the rule carries the
        id the demo waits for and the events hold a line it matches."""
        rule = demo.asset("local_rules.xml").read_text()
        self.assertIn(f'<rule id="{demo.CUSTOM_RULE_ID}"', rule)
        events = demo.asset("events.log").read_text().splitlines()
        self.assertTrue(
            any("shop-payments" in line and "payment refused" in line for line in events)
        )


class RulesetOptionTests(SynchronousTestCase):
    """--ruleset PATH: the nodes get that ruleset through wazuh-cluster-ruleset."""

    def setUp(self) -> None:
        """A scratch folder with a demo directory laid out, as start_nodes does first."""
        self.base = Path(self.mktemp()).absolute()
        self.lines: list[str] = []
        self.demo = demo.Demo(self.base / "demo", out=self.lines.append)
        demo.prepare_dir(self.demo.base)
        self.demo.cluster.write()

    def test_every_node_gets_the_ruleset(self) -> None:
        """The master's home gets the source's ruleset, each worker's the master's copy; the
        commands are printed."""
        source = make_archive(self.base / "src", "4.14.7")
        self.demo.install_ruleset(source)
        for name in demo.NODE_NAMES:
            answer = status(str(self.demo.cluster.home(name).root))
            self.assertEqual(answer["version"], "4.14.7", name)
            self.assertEqual(answer["counts"]["rules"], 2)
        commands = [line for line in self.lines if line.startswith("$ ")]
        self.assertEqual(len(commands), 3)
        self.assertIn(f"install --from {demo.shown(source)} --no-reload", commands[0])
        self.assertIn("--from ", commands[1])
        self.assertTrue(commands[1].endswith(f"master{os.sep}ruleset --no-reload"), commands[1])

    def test_a_ruleset_that_does_not_load_stops_the_demo(self) -> None:
        """The tool's one line becomes the demo's error; the master keeps no ruleset."""
        broken = make_source(self.base / "bad", rules="<group")
        with self.assertRaisesRegex(demo.DemoError, "the new ruleset does not load"):
            self.demo.install_ruleset(broken)
        self.assertFalse(status(str(self.demo.cluster.home("master").root))["present"])

    def test_main_takes_the_option(self) -> None:
        """``--ruleset`` reaches the install step before any node starts: a missing path ends
        the demo with status 1 and the tool's line, and nothing is left running."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        errors = io.StringIO()
        self.patch(demo.sys, "stderr", errors)
        self.patch(demo.sys, "stdout", io.StringIO())
        missing = self.base / "no-such.tar.gz"
        status_code = demo.main(["--dir", str(self.base / "other"), "--ruleset", str(missing)])
        self.assertEqual(status_code, 1)
        self.assertIn(
            f"demo: wazuh-cluster-ruleset: {demo.shown(missing)}: no such file", errors.getvalue()
        )
        self.assertFalse((self.base / "other" / "master" / "ruleset").exists())


class _FakeProcess:
    """A Popen stand-in whose exit status the test sets."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class _FakeNode(demo.NodeProcess):
    """A node that 'starts' a fake process with the next pid."""

    pids = iter(range(1000, 2000))

    def start(self) -> None:
        self.process = _FakeProcess(next(self.pids))  # type: ignore[assignment]


class NodeDeathTests(SynchronousTestCase):
    """While the demo keeps running, a dead node is reported and started again; the other
    nodes are left alone (the master's death used to end the whole demo)."""

    def make(self, restart_after: float) -> tuple[demo.Demo, list[str]]:
        """A demo whose three nodes are fake, all running."""
        said: list[str] = []
        shown = demo.Demo(short_temp_dir(self) / "d", out=said.append, restart_after=restart_after)
        for name in demo.NODE_NAMES:
            node = _FakeNode(shown.cluster.home(name), "worker")
            node.start()
            shown.nodes[name] = node
        return shown, said

    def kill(self, shown: demo.Demo, name: str) -> None:
        """The node's process ends with SIGKILL."""
        process = shown.nodes[name].process
        assert process is not None
        process.returncode = -signal.SIGKILL

    def test_master_death_reported_and_restarted(self) -> None:
        """kill -9 of the master: one report, the workers untouched, a restart 10 s later."""
        shown, said = self.make(restart_after=10)
        workers = [shown.nodes[name].process for name in demo.NODE_NAMES[1:]]
        self.kill(shown, "master")
        shown.watch_nodes(100.0)
        shown.watch_nodes(101.0)
        self.assertIn("** master died (killed by SIGKILL); still running: worker1, worker2", said)
        self.assertEqual(sum(line.startswith("** master died") for line in said), 1)
        self.assertIn("   the demo starts master again in 10 s", said)
        shown.watch_nodes(109.9)
        self.assertFalse(any("started again" in line for line in said))
        shown.watch_nodes(110.0)
        [again] = [line for line in said if "started again" in line]
        self.assertIn(f"** master started again (pid {shown.pid('master')})", again)
        self.assertIsNone(shown.nodes["master"].died())
        self.assertEqual([shown.nodes[name].process for name in demo.NODE_NAMES[1:]], workers)

    def test_no_restart(self) -> None:
        """--restart-after 0: a dead worker stays down, reported once."""
        shown, said = self.make(restart_after=0)
        self.kill(shown, "worker1")
        for now in (1.0, 50.0, 5000.0):
            shown.watch_nodes(now)
        self.assertEqual(
            [line for line in said if line.startswith("**")],
            ["** worker1 died (killed by SIGKILL); still running: master, worker2"],
        )
        self.assertEqual(shown.nodes["worker1"].died(), "killed by SIGKILL")

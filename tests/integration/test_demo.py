"""``make demo`` end to end: ``python -m wazuhcluster.scripts.demo --seconds 1`` in a temp
directory."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import short_temp_dir
from wazuhcluster.scripts import demo, nginx
from wazuhcluster.testing.devcluster import wait_for
from wazuhcluster.testing.etcd import require_etcd

REPO = Path(__file__).resolve().parents[2]
#: The demo gives each step 90 s; the whole run must end well within this.
TIMEOUT = 240


def processes_under(base: Path) -> list[str]:
    """Command lines of live processes that name ``base`` (nodes, nginx, simulators)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(base) in command:
            found.append(command)
    return found


class DemoTests(SynchronousTestCase):
    """The demo's story, as printed."""

    def run_demo(self, *extra: str) -> str:
        """Run the demo for one second after its story; return what it printed."""
        base = short_temp_dir(self)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wazuhcluster.scripts.demo",
                "--dir",
                "demo",
                "--seconds",
                "1",
                *extra,
            ],
            cwd=base,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # the demo stops what it started
            out, _ = process.communicate(timeout=60)
            self.fail(f"the demo did not finish within {TIMEOUT} s:\n{out[-3000:]}")
        self.assertEqual(process.returncode, 0, out[-3000:])
        self.assertEqual(processes_under(base), [], "the demo left processes running")
        return out

    def check_story(self, out: str) -> None:
        """The key lines of every part of the story are there."""
        lines = out.splitlines()
        self.assertIn("both workers joined the master", out)
        self.assertIn("20 agents active after", out)
        self.assertRegex(out, r"\n   5710 +5 +\d+ +\d+ +sshd: login attempt")
        self.assertIn("worker1 raised it", out)
        self.assertIn("worker2 raised it", out)
        [alert] = [json.loads(line) for line in lines if line.startswith("{")]
        self.assertEqual(alert["rule"]["id"], "100200")
        self.assertEqual(alert["cluster"]["node"], "worker1")
        self.assertIn("payment refused", alert["full_log"])
        self.assertIn("$ wazuh-cluster-control --home demo/worker1 -l", lines)
        for name, role in (("master", "master"), ("worker1", "worker"), ("worker2", "worker")):
            self.assertRegex(out, rf"\n{name} +{role} +\S+ +127\.0\.0\.1\n")
        agent_rows = [line.split() for line in lines if line.startswith(("0", "1"))]
        self.assertEqual(len(agent_rows), 20, out)
        self.assertEqual({row[3] for row in agent_rows}, {"active"})
        self.assertEqual({row[-1] for row in agent_rows}, {"worker1", "worker2"})
        self.assertIn("Cluster verdict: ", out)
        self.assertIn("(checked: the API lists 3 nodes and 20 active agents)", out)
        self.assertIn("itself answered through its worker", out)
        self.assertRegex(out, r'\nTOKEN=\$\(curl -sk -u demo:[0-9a-f]{16} -X POST "https://127')
        self.assertIn("Stopping in 1 s.", lines)

    def test_demo_story(self) -> None:
        """With nginx installed the agents go through it; without, straight to the workers.
        Either way the whole story is told and everything is stopped at the end."""
        out = self.run_demo()
        self.check_story(out)
        binary = nginx.find_nginx()
        if binary is not None:
            self.assertIn("(1514) -> worker1, worker2, least connections", out)
            self.assertIn("Stopped 1 agent simulator(s), nginx, 3 nodes.", out.splitlines())
        else:
            self.assertIn("nginx is not installed", out)

    def test_demo_without_nginx(self) -> None:
        """--no-nginx: two simulators, ten agents on each worker's own ports."""
        out = self.run_demo("--no-nginx")
        self.check_story(out)
        self.assertIn("--no-nginx: agents go straight to the workers' ports", out)
        self.assertIn("$ wazuh-agent-sim --home demo/worker2 --agents 10", out)
        self.assertIn("Stopped 2 agent simulator(s), 3 nodes.", out.splitlines())


class StoryTestCase(SynchronousTestCase):
    """Runs a demo script the way a user does and follows what it prints."""

    def run_story(
        self, base: Path, script: str, *extra: str
    ) -> tuple[subprocess.Popen[str], Callable[[str], re.Match[str]]]:
        """Start ``wazuhcluster.scripts.<script>`` in ``base`` (restarting killed nodes
        after 2 s; SIGTERM at cleanup); the process, and a function that waits up to
        TIMEOUT for the next printed line matching a pattern (failing with the lines seen)."""
        process = subprocess.Popen(
            [
                sys.executable,
                *("-m", f"wazuhcluster.scripts.{script}", "--dir", "demo", *extra),
                *("--restart-after", "2"),
            ],
            cwd=base,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        said: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)

        self.addCleanup(stop)

        def wait_line(pattern: str) -> re.Match[str]:
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=1)
                except queue.Empty:
                    if process.poll() is not None:
                        break
                    continue
                said.append(line)
                found = re.search(pattern, line)
                if found:
                    return found
            self.fail(f"no line matching {pattern!r}:\n" + "\n".join(said[-60:]))

        return process, wait_line


class DemoNodeDeathTests(StoryTestCase):
    """``kill -9`` of the master, then of a worker, as the demo's last lines suggest: the
    demo reports each death, keeps the other nodes running and starts the dead one again."""

    def test_demo_survives_kill_9(self) -> None:
        """The master and worker1 are each killed once; the demo says so, restarts them,
        the restarted master serves its control socket (its cluster.log says it removed
        the stale lock), and the demo still stops cleanly on SIGTERM."""
        base = short_temp_dir(self)
        process, wait_line = self.run_story(base, "demo", "--no-nginx")

        master_pid = int(wait_line(r"kill -9 (\d+)   # the master")[1])
        worker_pid = int(wait_line(r"kill -9 (\d+)   # worker1")[1])
        wait_line(r"Press Ctrl-C to stop everything")
        os.kill(master_pid, signal.SIGKILL)
        wait_line(r"\*\* master died \(killed by SIGKILL\); still running: worker1, worker2")
        wait_line(r"\*\* master started again \(pid \d+\)")
        master_home = base / "demo" / "master"
        # the master lists workers in connection order, which restarts change
        listed = lambda: sorted(control_lists(master_home) or []) == list(demo.NODE_NAMES)  # noqa: E731
        self.assertTrue(wait_for(listed, TIMEOUT), "the restarted master never listed both")
        log = (master_home / "logs" / "cluster.log").read_text()
        self.assertRegex(log, r"WARNING: \[Master\] \[Control\] Removed a stale control-socket")
        os.kill(worker_pid, signal.SIGKILL)
        wait_line(r"\*\* worker1 died \(killed by SIGKILL\); still running: master, worker2")
        wait_line(r"\*\* worker1 started again")
        self.assertTrue(wait_for(listed, TIMEOUT), "worker1 never rejoined")
        self.assertIsNone(process.poll(), "the demo stopped")
        process.send_signal(signal.SIGTERM)
        wait_line(r"Stopped 2 agent simulator\(s\), 3 nodes\.")
        self.assertEqual(process.wait(timeout=60), 0)
        self.assertEqual(processes_under(base), [], "the demo left processes running")


class DemoFailoverTests(StoryTestCase):
    """``make demo FAILOVER=1``: kill -9 of the master, as the demo suggests, and the other
    candidate takes over with the agents still reporting."""

    def test_failover_story(self) -> None:
        """etcd, two candidates, two workers, 20 agents; the master is killed: the demo
        shows master-b elected, both workers relinked, the 20 agents active on master-b,
        then master-a started again; SIGTERM stops everything, etcd included."""
        require_etcd()
        base = short_temp_dir(self)
        process, wait_line = self.run_story(base, "demo_failover")

        wait_line(r"master-a elected master")
        wait_line(r"20 agents active on master-a after")
        wait_line(r"Master: master-a \(127\.0\.0\.1:\d+\), term \d+")
        master_pid = int(wait_line(r"kill -9 (\d+)   # the master master-a")[1])
        wait_line(r"Press Ctrl-C to stop everything")
        os.kill(master_pid, signal.SIGKILL)
        wait_line(r"\*\* master-a died \(killed by SIGKILL\)")
        took = float(wait_line(r"master-b elected master ([\d.]+) s after the kill")[1])
        self.assertLess(took, 60)
        wait_line(r"both workers relinked to master-b")
        wait_line(r"the agents still report: master-b lists 20 active \(10 on worker1, 10 on")
        wait_line(r"Master: master-b \(127\.0\.0\.1:\d+\), term \d+")
        wait_line(r"\*\* master-a started again \(pid \d+\)")
        self.assertIsNone(process.poll(), "the demo stopped")
        process.send_signal(signal.SIGTERM)
        wait_line(r"Stopped 2 agent simulator\(s\), 4 nodes\.")
        wait_line(r"Stopped etcd\.")
        self.assertEqual(process.wait(timeout=60), 0)
        self.assertEqual(processes_under(base), [], "the demo left processes running")


def control_lists(home: Path) -> list[str] | None:
    """The node names ``wazuh-cluster-control -l --json`` lists on ``home``, or None."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from wazuhcluster.scripts.control import main; main()",
            *("--home", str(home), "-l", "--json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if result.returncode != 0:
        return None
    return [node["name"] for node in json.loads(result.stdout)]

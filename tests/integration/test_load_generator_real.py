"""wazuh-load-gen against a real worker: 200 agents over 1514 from their own process, and
the worker's intake numbers (``wazuh-cluster-control -i more --json``) account for every
event sent: received = sent, and sent = processed + dropped once the queue is empty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from tests.helpers import short_temp_dir
from tests.integration.common import DEADLINE, REPO, ClusterTestCase, control
from tests.integration.test_load_real import preenroll
from wazuhcluster.testing.devcluster import LocalCluster, wait_for

AGENTS = 200
#: The last unusable answer of wazuh-cluster-control (status, end of stdout and stderr).
LAST_ANSWER: list[Any] = []
#: Small, so that a burst overflows it and some events are dropped (and must be counted).
QUEUE_SIZE = 300
EVENTS = [
    "Nov 26 10:00:00 web1 sshd[123]: Failed password for invalid user admin "
    "from 198.51.100.7 port 5555 ssh2",
    "Nov 26 10:00:01 web1 sshd[124]: Accepted publickey for root from 198.51.100.8 port 22 ssh2",
    "Nov 26 10:00:02 web1 su: pam_unix(su:session): session opened for user root by (uid=0)",
]


class Generator:
    """A wazuh-load-gen process driven through its stdin commands."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def ask(self, command: str) -> dict[str, Any]:
        """Send one command and read its JSON answer."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(command + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"wazuh-load-gen ended ({self.process.wait(DEADLINE)})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def analysis(home: Path) -> dict[str, Any] | None:
    """The node's analysis numbers from ``-i more --json``, or None while unavailable (the
    exit status is 2 while the cluster is not healthy, with the numbers all the same)."""
    result = control(home, "-i", "more", "--json")
    if result.returncode not in (0, 2) or not result.stdout.strip():
        LAST_ANSWER[:] = [result.returncode, result.stdout[-500:], result.stderr[-1500:]]
        return None
    numbers: dict[str, Any] | None = json.loads(result.stdout).get("analysis")
    return numbers


class LoadGeneratorRealTests(ClusterTestCase):
    """A master, one worker (one analysis process, a small queue) and one generator process."""

    def test_every_event_accounted(self) -> None:
        """Every event the generator sent was received by the worker, and each one was either
        processed or dropped: sent = received = processed + dropped, exactly."""
        cluster = LocalCluster(
            short_temp_dir(self),
            workers=["worker1"],
            extra_config=lambda name, role: (
                f"  <analysis>\n    <workers>{1 if role == 'worker' else 0}</workers>\n"
                "  </analysis>\n"
            ),
        )
        cluster.write()
        worker_home = cluster.home("worker1")
        text = worker_home.config_file.read_text()
        worker_home.config_file.write_text(
            text.replace("</remote>", f"  <queue_size>{QUEUE_SIZE}</queue_size>\n  </remote>")
        )
        keys = preenroll(cluster, AGENTS)
        master = self.start(cluster, "master", "master")
        self.wait_log(master, "listening")
        self.start(cluster, "worker1", "worker")
        self.assertTrue(
            wait_for(
                lambda: (
                    worker_home.client_keys.exists()
                    and len(worker_home.client_keys.read_text().splitlines()) == len(keys)
                ),
                DEADLINE,
            ),
            "the worker never received the agents' keys",
        )
        events = Path(self.mktemp()).resolve()
        events.write_text("\n".join(EVENTS) + "\n")
        port = cluster.node_ports("worker1")["agents"]
        generator = self.start_generator(
            "--keys",
            str(cluster.home("master").client_keys),
            "--target",
            f"127.0.0.1:{port}",
            "--events",
            str(events),
            "--keepalive",
            "2",
            "--spread",
            "0.5",
        )
        self.assertTrue(
            wait_for(lambda: generator.ask("stats")["ready"] == AGENTS, DEADLINE),
            f"not every agent became ready: {generator.ask('stats')}",
        )
        self.assertEqual(generator.ask("preseal 3000"), {"presealed": 3000})
        before = generator.ask("stats")["events_sent"]  # the agents' started events
        generator.ask("rate 20000 3000")
        self.assertTrue(wait_for(lambda: generator.ask("stats")["rate"] == 0, DEADLINE))
        stats = generator.ask("stats")
        self.assertEqual(stats["events_sent"] + stats["held_back"], before + 3000)
        sent = stats["events_sent"]
        self.assertEqual(stats["undecryptable"], 0)
        self.assertEqual(stats["connections"], AGENTS)  # nobody was refused or reconnected

        def settled() -> bool:
            numbers = analysis(worker_home.root)
            return (
                numbers is not None
                and numbers["received"] == sent
                and numbers["queue_length"] == 0
                and numbers["processed"] + numbers["dropped"] == sent
            )

        if not wait_for(settled, DEADLINE, step=0.5):
            self.fail(f"sent {sent}, the worker shows {analysis(worker_home.root)} {LAST_ANSWER}")
        numbers = analysis(worker_home.root)
        assert numbers is not None
        self.assertEqual(numbers["lost"], 0)
        self.assertLessEqual(sum(numbers["dropped_by_agent"].values()), numbers["dropped"])
        # 3,000 events in well under a second into a queue of 300: some must have been dropped
        self.assertGreater(numbers["dropped"], 0)
        self.assertGreater(numbers["processed"], 0)
        self.assertGreater(numbers["alerts_written"], 0)

    def start_generator(self, *args: str) -> Generator:
        """Start wazuh-load-gen with ``--control`` (its stderr in ``load-gen.err``); stopped
        after the test."""
        errors = Path(self.mktemp()).resolve()
        log = errors.open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from wazuhcluster.scripts.load_generator import main; "
                "sys.exit(main())",
                "--control",
                *args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
            start_new_session=True,
        )
        log.close()

        def stop() -> None:
            stdin: IO[str] | None = process.stdin
            if process.poll() is None and stdin is not None:
                try:
                    stdin.close()  # the generator stops when its stdin closes
                    process.wait(timeout=DEADLINE)
                except (OSError, subprocess.TimeoutExpired):
                    process.kill()
            if process.stdout is not None:
                process.stdout.close()

        self.addCleanup(stop)
        return Generator(process)

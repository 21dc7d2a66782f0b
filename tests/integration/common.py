"""Helpers for tests that run real twistd nodes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import short_temp_dir
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

#: The repository root (simulators run from it).
REPO = Path(__file__).resolve().parents[2]
#: Generous: CI machines are shared and sometimes slow.
DEADLINE = 60.0


def attack_rounds(default: int = 1) -> int:
    """How many rounds the issue-17 attack and fault tests (enrollment faults, hostile
    listeners, control-socket restarts) repeat their attack or fault: ``default`` in
    ``make test``, ``WAZUHCLUSTER_ATTACK_ROUNDS`` when set (``make soak`` sets it)."""
    return max(1, int(os.environ.get("WAZUHCLUSTER_ATTACK_ROUNDS", default)))


def control(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run wazuh-cluster-control against the node in ``home``."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from wazuhcluster.scripts.control import main; main()",
            "--home",
            str(home),
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def node_names(home: Path) -> list[str] | None:
    """The node names `-l --json` lists on the node in ``home``, or None if it fails."""
    result = control(home, "-l", "--json")
    if result.returncode != 0:
        return None
    nodes: list[dict[str, Any]] = json.loads(result.stdout)
    return [node["name"] for node in nodes]


def registry_count(cluster: LocalCluster, name_like: str = "%", active: bool = False) -> int:
    """How many agents named like ``name_like`` (SQL LIKE) the master's registry holds
    (only those it shows active when ``active``), read-only; -1 while it cannot be read."""
    path = cluster.home(cluster.master).var_db / "global.db"
    query = "SELECT count(*) FROM agents WHERE name LIKE ?"
    if active:
        query += " AND connection_status = 'active'"
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            [(count,)] = connection.execute(query, (name_like,)).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return -1
    return int(count)


def active_agents(cluster: LocalCluster, name_like: str = "%") -> int:
    """How many agents named like ``name_like`` the master's registry shows active."""
    return registry_count(cluster, name_like, active=True)


class ClusterTestCase(SynchronousTestCase):
    """Starts nodes of a LocalCluster and stops every one of them after the test."""

    def make_cluster(self, workers: list[str]) -> LocalCluster:
        """Lay out homes for a master and ``workers`` in a temporary directory."""
        cluster = LocalCluster(short_temp_dir(self), workers=workers)
        cluster.write()
        return cluster

    def start(self, cluster: LocalCluster, name: str, role: str) -> NodeProcess:
        """Start node ``name``; it is stopped (SIGKILL if need be) at the end of the test."""
        node = NodeProcess(cluster.home(name), role)
        node.start()
        self.addCleanup(node.kill)
        return node

    def start_simulator(self, *args: str, output: Path | None = None) -> subprocess.Popen[str]:
        """Start wazuh-agent-sim with ``args``; it is killed after the test if still running.

        Its output is piped (read it with ``communicate``) unless ``output`` names a file.
        """
        log = output.open("w") if output is not None else None
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from wazuhcluster.scripts.agent_simulator import main; "
                "sys.exit(main())",
                *args,
            ],
            stdout=log or subprocess.PIPE,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True,
            cwd=REPO,
            start_new_session=True,
        )
        if log is not None:
            log.close()

        def stop() -> None:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=DEADLINE)

        self.addCleanup(stop)
        return process

    def simulate_on(
        self,
        cluster: LocalCluster,
        node: str,
        *args: str,
        keepalive: str = "1",
        output: Path | None = None,
    ) -> subprocess.Popen[str]:
        """Start wazuh-agent-sim against ``node``'s agent and enrollment ports (a keep-alive
        every ``keepalive`` seconds), with ``args`` added (its output to ``output`` when
        given); stopped after the test."""
        ports = cluster.node_ports(node)
        return self.start_simulator(
            "--port",
            str(ports["agents"]),
            "--enroll-port",
            str(ports["enrollment"]),
            "--keepalive",
            keepalive,
            *args,
            output=output,
        )

    def wait_log(self, node: NodeProcess, text: str, timeout: float = DEADLINE) -> None:
        """Wait until ``text`` appears in the node's cluster.log, or fail showing the log."""
        if not wait_for(lambda: text in node.log_text(), timeout):
            self.fail(f"{text!r} not in {node.home.cluster_log}:\n{node.log_text()[-3000:]}")

"""Agents behind a real NGINX: enrollment and events spread over two workers, failover when a
worker dies, and a rebalance with ``--reconnect-agents --count`` once it is back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections import Counter
from typing import Any

from twisted.trial.unittest import SkipTest

from tests.integration.common import DEADLINE, ClusterTestCase, control
from wazuhcluster.scripts import nginx
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, free_port, wait_for

AGENTS = 10
#: What apt-get may install, tried in order: Debian 12 splits the stream module out.
PACKAGE_SETS = (
    ("nginx-light", "libnginx-mod-stream"),
    ("nginx", "libnginx-mod-stream"),
    ("nginx-full",),
)
APT_TIMEOUT = 600


def _apt(*args: str) -> bool:
    """Run apt-get non-interactively (waiting for a held dpkg lock); True on success."""
    try:
        result = subprocess.run(
            ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", *args],
            capture_output=True,
            timeout=APT_TIMEOUT,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _usable() -> str | None:
    """The nginx binary if it is installed with the stream module, else None."""
    binary = nginx.find_nginx()
    if binary is None:
        return None
    try:
        nginx.stream_module(binary)
    except nginx.NginxError:
        return None
    return binary


def ensure_nginx() -> str:
    """nginx with the stream module, installed from Debian packages if missing.

    SkipTest when it is missing and cannot be installed here (not root, no apt-get, or
    every install failed even after ``apt-get update``).
    """
    binary = _usable()
    if binary is not None:
        return binary
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SkipTest(
            "nginx with the stream module is not installed, and installing it "
            "needs root and apt-get (apt-get install nginx-light libnginx-mod-stream)"
        )
    for update_first in (False, True):
        if update_first and not _apt("update"):
            break
        for packages in PACKAGE_SETS:
            if _apt("install", "--no-install-recommends", *packages):
                binary = _usable()
                if binary is not None:
                    return binary
    raise SkipTest(
        "nginx could not be installed from Debian packages (tried "
        + "; ".join(" ".join(p) for p in PACKAGE_SETS)
        + ")"
    )


def free_udp_port() -> int:
    """A UDP port of 127.0.0.1 nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def agents(cluster: LocalCluster, node: str) -> dict[str, dict[str, Any]]:
    """The agents `-a --json` shows on ``node``, by name (empty if the call fails)."""
    result = control(cluster.home(node).root, "-a", "--json")
    if result.returncode != 0:
        return {}
    return {agent["name"]: agent for agent in json.loads(result.stdout)}


def placement(cluster: LocalCluster) -> Counter[str]:
    """How many agents the master shows active on each node."""
    return Counter(
        a["node_name"] for a in agents(cluster, "master").values() if a["status"] == "active"
    )


class LoadBalancerTests(ClusterTestCase):
    """A master, two workers and NGINX in front of them on 127.0.0.1."""

    balancer: nginx.NginxProcess

    def start_nginx(self, cluster: LocalCluster, udp_port: int | None = None) -> tuple[int, int]:
        """Run nginx from the etc/ template: 1515 to every node, 1514 to the workers (and,
        with ``udp_port``, UDP agents from that port to the workers' UDP 1514).

        Returns its (enrollment, agents) listen ports; nginx is stopped after the test.
        """
        binary = ensure_nginx()
        enrollment_port, agents_port = free_port(), free_port()
        udp_listen = None if udp_port is None else f"127.0.0.1:{udp_port}"
        stream = nginx.render_stream(
            nginx.read_template(),
            [
                ("127.0.0.1", cluster.node_ports(n)["enrollment"])
                for n in ["master", *cluster.workers]
            ],
            [("127.0.0.1", cluster.node_ports(n)["agents"]) for n in cluster.workers],
            f"127.0.0.1:{enrollment_port}",
            f"127.0.0.1:{agents_port}",
            access_log=cluster.base / "nginx" / "access.log",
            agents_udp_listen=udp_listen,
        )
        balancer = nginx.NginxProcess(binary, cluster.base / "nginx")
        self.balancer = balancer
        balancer.write(stream, nginx.stream_module(binary))
        balancer.start()
        self.addCleanup(balancer.stop)
        if not wait_for(balancer.started, DEADLINE):
            self.fail(f"nginx did not start:\n{balancer.log_text()[-3000:]}")
        return enrollment_port, agents_port

    def restart(self, cluster: LocalCluster, name: str) -> NodeProcess:
        """Start worker ``name`` again and wait until it has joined the master once more."""
        node = self.start(cluster, name, "worker")
        seen = node.log_text().count("Successfully connected")
        if not wait_for(lambda: node.log_text().count("Successfully connected") > seen, DEADLINE):
            self.fail(f"{name} did not rejoin:\n{node.log_text()[-3000:]}")
        return node

    def test_failover_and_rebalance_through_nginx(self) -> None:
        """Agents enroll and report through nginx to both workers (``-a`` shows them active
        with worker names); when worker1 is killed its agents reconnect through nginx to
        worker2 and the master shows worker2 for all of them; once worker1 is back,
        ``--reconnect-agents --count 5`` on worker2 moves five agents back to it."""
        cluster = self.make_cluster(["worker1", "worker2"])
        self.start(cluster, "master", "master")
        workers = {name: self.start(cluster, name, "worker") for name in cluster.workers}
        for worker in workers.values():
            self.wait_log(worker, "Successfully connected")
        enrollment_port, agents_port = self.start_nginx(cluster)

        simulator = self.start_simulator(
            "--manager", "127.0.0.1",
            "--enroll-port", str(enrollment_port),
            "--port", str(agents_port),
            "--agents", str(AGENTS),
            "--keepalive", "1",
        )  # fmt: skip

        spread = Counter({"worker1": AGENTS // 2, "worker2": AGENTS - AGENTS // 2})
        self.assertTrue(
            wait_for(lambda: placement(cluster) == spread, DEADLINE, 0.5),
            f"expected {dict(spread)} active, master shows {agents(cluster, 'master')}",
        )
        # Enrollment went through nginx to more than one node (workers forward to the master).
        enrolled_at = {
            int(line.split(" -> ")[1].split()[0].rsplit(":", 1)[1])
            for line in self.balancer.access_log.read_text().splitlines()
            if f"port {enrollment_port} " in line
        }
        enrollment_ports = {
            cluster.node_ports(n)["enrollment"] for n in ["master", *cluster.workers]
        }
        self.assertLessEqual(enrolled_at, enrollment_ports)
        self.assertGreaterEqual(len(enrolled_at), 2, self.balancer.access_log.read_text())

        table = control(cluster.home("master").root, "-a")
        self.assertEqual(table.returncode, 0, table.stderr)
        rows = [line.split() for line in table.stdout.splitlines()[1:]]
        self.assertEqual(len(rows), AGENTS, table.stdout)
        self.assertEqual({row[3] for row in rows}, {"active"}, table.stdout)
        self.assertEqual({row[-1] for row in rows}, {"worker1", "worker2"}, table.stdout)

        # worker1 dies without a word: its agents find worker2 through the same address.
        workers["worker1"].kill(signal.SIGKILL)
        everyone_on_worker2 = Counter({"worker2": AGENTS})
        self.assertTrue(
            wait_for(lambda: placement(cluster) == everyone_on_worker2, DEADLINE, 0.5),
            f"after the kill the master shows {agents(cluster, 'master')}",
        )

        # worker1 is back; nothing moves by itself, an operator rebalances from worker2.
        self.restart(cluster, "worker1")
        self.assertEqual(placement(cluster), everyone_on_worker2)
        asked = control(
            cluster.home("worker2").root, "--reconnect-agents", "--count", "5", "--json"
        )
        self.assertEqual(asked.returncode, 0, asked.stdout + asked.stderr)
        self.assertEqual(len(json.loads(asked.stdout)["worker2"]), 5, asked.stdout)
        self.assertTrue(
            wait_for(lambda: placement(cluster) == spread, DEADLINE, 0.5),
            f"after the rebalance the master shows {agents(cluster, 'master')}",
        )

        simulator.send_signal(signal.SIGINT)
        out, err = simulator.communicate(timeout=DEADLINE)
        self.assertEqual(simulator.returncode, 0, err)
        summary = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(summary["enrollment_failures"], 0, summary)
        self.assertGreaterEqual(summary["force_reconnects"], 5, summary)

    def test_udp_agents_through_nginx(self) -> None:
        """UDP agents enroll through nginx (TCP 1515) and report through its UDP stream: all
        active on one worker (every agent here shares 127.0.0.1, which the consistent hash
        maps to one node), with the node's replies (startup acks, keep-alive answers, the
        shared files) relayed back to them."""
        cluster = self.make_cluster(["worker1", "worker2"])
        cluster.agent_protocol = "tcp,udp"
        for name in cluster.workers:
            cluster.write_node(name, "worker")
        self.start(cluster, "master", "master")
        workers = {name: self.start(cluster, name, "worker") for name in cluster.workers}
        for worker in workers.values():
            self.wait_log(worker, "Successfully connected")
        udp_port = free_udp_port()
        enrollment_port, _ = self.start_nginx(cluster, udp_port)

        simulator = self.start_simulator(
            "--manager", "127.0.0.1",
            "--enroll-port", str(enrollment_port),
            "--port", str(udp_port),
            "--udp",
            "--agents", str(AGENTS),
            "--keepalive", "1",
            "--eps", "5",
        )  # fmt: skip

        def on_one_worker() -> bool:
            found = placement(cluster)
            return sum(found.values()) == AGENTS and len(found) == 1

        self.assertTrue(
            wait_for(on_one_worker, DEADLINE, 0.5),
            f"master shows {agents(cluster, 'master')}\n{self.balancer.log_text()[-2000:]}",
        )
        simulator.send_signal(signal.SIGINT)
        out, err = simulator.communicate(timeout=DEADLINE)
        self.assertEqual(simulator.returncode, 0, err)
        summary = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(summary["enrollment_failures"], 0, summary)
        self.assertEqual(summary["startups_sent"], AGENTS, summary)
        self.assertGreaterEqual(summary["acks_received"], 2 * AGENTS, summary)
        self.assertEqual(summary["files_received"], AGENTS, summary)

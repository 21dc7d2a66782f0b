"""Simulated agents reporting to real workers: status, node, moves, disconnections, groups."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from typing import Any

from tests.integration.common import DEADLINE, ClusterTestCase, control
from wazuhcluster.testing.devcluster import LocalCluster, wait_for


def agents(cluster: LocalCluster, node: str) -> dict[str, dict[str, Any]]:
    """The agents `-a --json` shows on ``node``, by name (empty if the call fails)."""
    result = control(cluster.home(node).root, "-a", "--json")
    if result.returncode != 0:
        return {}
    return {agent["name"]: agent for agent in json.loads(result.stdout)}


class AgentsTests(ClusterTestCase):
    """A master, two workers and 200 simulated agents."""

    def finish(self, process: subprocess.Popen[str]) -> dict[str, Any]:
        """Stop a simulator with SIGINT (agents send shutdown) and return its summary."""
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=DEADLINE)
        self.assertEqual(process.returncode, 0, err)
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return summary

    def test_agents_report_move_disconnect_and_get_groups(self) -> None:
        """All 200 agents show active with the right node from any node; agents moved to
        another worker show it and never flip back; stopped agents show disconnected; a group
        change delivers the new merged.mg."""
        cluster = self.make_cluster(["worker1", "worker2"])
        self.start(cluster, "master", "master")
        for name in cluster.workers:
            self.wait_log(self.start(cluster, name, "worker"), "Successfully connected")
        keys = cluster.base / "a-keys"
        first = self.simulate_on(
            cluster, "worker1", "--agents", "100", "--name-prefix", "a-", "--save-keys", str(keys)
        )
        second = self.simulate_on(cluster, "worker2", "--agents", "100", "--name-prefix", "b-")

        def settled() -> bool:
            seen = agents(cluster, "worker2")
            return len(seen) == 200 and all(
                a["status"] == "active"
                and a["node_name"] == ("worker1" if n.startswith("a-") else "worker2")
                for n, a in seen.items()
            )

        self.assertTrue(wait_for(settled, DEADLINE, 0.5), agents(cluster, "master"))
        self.assertEqual(len(agents(cluster, "worker1")), 200)

        # A group change reaches the agents in that group as a new merged.mg.
        self.assertEqual(
            control(cluster.home("master").root, "--create-group", "web").returncode, 0
        )
        target = agents(cluster, "master")["b-00001"]["id"]
        self.assertEqual(
            control(cluster.home("worker1").root, "--assign", target, "web").returncode, 0
        )

        # Move the a- agents to worker2.
        self.finish(first)
        moved = self.simulate_on(cluster, "worker2", "--keys", str(keys), "--agents", "100")

        def moved_to_worker2() -> bool:
            seen = agents(cluster, "master")
            return all(
                a["node_name"] == "worker2" and a["status"] == "active"
                for n, a in seen.items()
                if n.startswith("a-")
            )

        self.assertTrue(wait_for(moved_to_worker2, DEADLINE, 0.5))
        deadline = time.monotonic() + 6  # three agent-info cycles: they must not flip back
        while time.monotonic() < deadline:
            self.assertTrue(moved_to_worker2(), "an agent flipped back to worker1")
            time.sleep(0.5)

        summary = self.finish(second)
        self.assertGreaterEqual(summary["files_received"], 101, summary)
        self.assertEqual(summary["files_bad"], 0)
        self.finish(moved)
        self.assertTrue(
            wait_for(
                lambda: all(
                    a["status"] == "disconnected" for a in agents(cluster, "master").values()
                ),
                DEADLINE,
                0.5,
            )
        )


class UdpAgentsTests(ClusterTestCase):
    """A worker serving agents over TCP and UDP at once (``<protocol>tcp,udp``)."""

    def test_udp_and_tcp_agents_side_by_side(self) -> None:
        """Ten TCP and ten UDP agents on one worker: all active there with their reported
        IP, events from both alert, stray datagrams are dropped and counted without harm,
        and stopping them disconnects them all."""
        cluster = self.make_cluster(["worker1"])
        cluster.agent_protocol = "tcp,udp"
        cluster.write_node("worker1", "worker")
        self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Successfully connected")
        port = cluster.node_ports("worker1")["agents"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
            for garbage in (b"garbage", b"!001!#AES:" + os.urandom(64), b"#ping"):
                stray.sendto(garbage, ("127.0.0.1", port))
            stray.settimeout(DEADLINE)
            self.assertEqual(stray.recvfrom(64)[0], b"#pong")
        common = ("--eps", "10", "--manager", "127.0.0.1")
        tcp = self.simulate_on(cluster, "worker1", "--agents", "10", "--name-prefix", "t-", *common)
        udp = self.simulate_on(
            cluster, "worker1", "--agents", "10", "--name-prefix", "u-", "--udp", *common
        )

        def all_active() -> bool:
            seen = agents(cluster, "master")
            return len(seen) == 20 and all(
                a["status"] == "active" and a["node_name"] == "worker1" for a in seen.values()
            )

        self.assertTrue(wait_for(all_active, DEADLINE, 0.5), agents(cluster, "master"))
        seen = agents(cluster, "master")
        self.assertEqual({a["ip"] for a in seen.values()}, {"127.0.0.1"})
        self.assertEqual({a["register_ip"] for a in seen.values()}, {"any"})
        self.assertEqual({a["os"]["codename"] for a in seen.values()}, {"Jammy Jellyfish"})
        alerts_file = cluster.home("worker1").alerts_dir / "alerts.json"

        def alerting_prefixes() -> set[str]:
            if not alerts_file.exists():
                return set()
            names = set()
            for line in alerts_file.read_text().splitlines():
                if line.strip():
                    alert = json.loads(line)
                    if alert["rule"]["id"] == "5710":
                        names.add(alert["agent"]["name"][:2])
            return names

        self.assertTrue(wait_for(lambda: alerting_prefixes() == {"t-", "u-"}, DEADLINE, 0.5))
        health = json.loads(control(cluster.home("worker1").root, "-i", "more", "--json").stdout)
        self.assertTrue(worker.running(), health)
        for process in (tcp, udp):
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=DEADLINE)
            self.assertEqual(process.returncode, 0, err)
            summary = json.loads(out.strip().splitlines()[-1])
            self.assertEqual(summary["startups_sent"], 10, summary)
            self.assertGreaterEqual(summary["acks_received"], 20, summary)  # startups, keep-alives
            self.assertEqual(summary["files_received"], 10, summary)  # merged.mg, both ways
            self.assertGreater(summary["events_sent"], 10, summary)
        self.assertTrue(
            wait_for(
                lambda: all(
                    a["status"] == "disconnected" for a in agents(cluster, "master").values()
                ),
                DEADLINE,
                0.5,
            )
        )

"""Enrollment through real nodes: any node, keys everywhere at once, no duplicates, restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.common import DEADLINE, ClusterTestCase, control
from wazuhcluster.registry.keys import read_client_keys
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

REPO = Path(__file__).resolve().parents[2]


def enroll(ports: list[int], count: int, prefix: str, password: str | None = None) -> list[dict]:
    """Enroll ``count`` agents concurrently through ``ports`` (a helper process)."""
    args = [
        sys.executable,
        "-m",
        "tests.integration.enroll_many",
        ",".join(map(str, ports)),
        str(count),
        prefix,
    ]
    if password is not None:
        args.append(password)
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=DEADLINE * 2, cwd=REPO, check=False
    )
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    results: list[dict] = json.loads(done.stdout)
    return results


def key_names(cluster: LocalCluster, node: str) -> dict[str, str]:
    """name → id in a node's client.keys (empty if missing)."""
    path = cluster.home(node).client_keys
    return {e.name: e.id for e in read_client_keys(path)} if path.exists() else {}


class EnrollmentTests(ClusterTestCase):
    """A master and two workers enrolling agents."""

    def start_cluster(self, password: str | None = None) -> tuple[LocalCluster, list[NodeProcess]]:
        """Start a master and two workers (optionally requiring a password) and wait for them."""
        cluster = self.make_cluster(["worker1", "worker2"])
        if password:
            cluster.auth_options = "<use_password>yes</use_password>"
            cluster.write()
            (cluster.home("master").etc / "authd.pass").write_text(password + "\n")
        master = self.start(cluster, "master", "master")
        workers = [self.start(cluster, name, "worker") for name in cluster.workers]
        for worker in workers:
            self.wait_log(worker, "Successfully connected to master")
        return cluster, [master, *workers]

    def ports(self, cluster: LocalCluster, *names: str) -> list[int]:
        """The enrollment ports of ``names``."""
        return [cluster.node_ports(name)["enrollment"] for name in names]

    def test_enroll_anywhere_and_keys_everywhere(self) -> None:
        """Each node enrolls; an agent enrolled through worker1 is on worker2 within 1 s."""
        cluster, nodes = self.start_cluster()
        for node in ("master", "worker1", "worker2"):
            [result] = enroll(self.ports(cluster, node), 1, f"via-{node}-")
            self.assertIn("id", result, result)
        [result] = enroll(self.ports(cluster, "worker1"), 1, "fast-")
        started = time.monotonic()
        self.assertTrue(wait_for(lambda: "fast-0000" in key_names(cluster, "worker2"), 1.0))
        self.assertLess(time.monotonic() - started, 1.0)

    def test_parallel_enrollments_and_restart(self) -> None:
        """200 concurrent enrollments over three nodes give 200 distinct ids everywhere; a master
        restart keeps them; a deletion made on a worker removes the agent everywhere."""
        cluster, nodes = self.start_cluster()
        results = enroll(self.ports(cluster, "master", "worker1", "worker2"), 200, "bulk-")
        errors = [r for r in results if "error" in r]
        self.assertEqual(errors, [])
        ids = {r["id"] for r in results}
        self.assertEqual(len(ids), 200)
        for node in ("master", "worker1", "worker2"):
            self.assertTrue(
                wait_for(lambda n=node: len(key_names(cluster, n)) == 200, DEADLINE),
                f"{node} has {len(key_names(cluster, node))} keys",
            )
            self.assertEqual(set(key_names(cluster, node).values()), ids)

        nodes[0].stop()
        nodes[0] = self.start(cluster, "master", "master")
        for node in ("master", "worker1"):
            self.assertTrue(
                wait_for(
                    lambda n=node: control(cluster.home(n).root, "-a").returncode == 0, DEADLINE
                )
            )
        listing = control(cluster.home("worker1").root, "-a", "--json")
        self.assertEqual(len(json.loads(listing.stdout)), 200)
        deleted = control(cluster.home("worker1").root, "--delete-agents", "001")
        self.assertEqual(deleted.returncode, 0, deleted.stderr)
        for node in ("master", "worker1", "worker2"):
            self.assertTrue(
                wait_for(lambda n=node: "001" not in key_names(cluster, n).values(), DEADLINE),
                node,
            )

    def test_password(self) -> None:
        """With use_password, the right password enrolls through a worker and a wrong one not."""
        cluster, nodes = self.start_cluster(password="s3cret-pass")
        self.assertTrue(wait_for((cluster.home("worker1").etc / "authd.pass").exists, DEADLINE))
        [good] = enroll(self.ports(cluster, "worker1"), 1, "pw-", "s3cret-pass")
        self.assertIn("id", good, good)
        [bad] = enroll(self.ports(cluster, "worker1"), 1, "nopw-", "wrong")
        self.assertIn("Invalid password", bad.get("error", ""), bad)

"""A real master and workers as twistd processes: forming, restarting, refusing."""

from __future__ import annotations

import signal

from tests.integration.common import DEADLINE, ClusterTestCase, control, node_names
from wazuhcluster.testing.devcluster import wait_for
from wazuhcluster.util.tls import create_ca


class ClusterFormsTests(ClusterTestCase):
    """Nodes connect over mutual TLS, are listed, and come back after a master crash."""

    def test_forms_lists_and_survives_master_kill(self) -> None:
        """Three nodes are listed from any node; after SIGKILL and restart of the master both
        workers are back."""
        cluster = self.make_cluster(["worker1", "worker2"])
        master = self.start(cluster, "master", "master")
        workers = [self.start(cluster, name, "worker") for name in cluster.workers]
        for worker in workers:
            self.wait_log(worker, "Successfully connected to master")
        expected = ["master", "worker1", "worker2"]
        for name in ["master", "worker1", "worker2"]:
            self.assertTrue(
                wait_for(
                    lambda n=name: sorted(node_names(cluster.home(n).root) or []) == expected,
                    DEADLINE,
                ),
                f"-l on {name} did not list {expected}",
            )
        table = control(cluster.home("worker2").root, "-l").stdout.splitlines()
        self.assertEqual(table[0].split(), ["NAME", "TYPE", "VERSION", "ADDRESS"])
        self.assertEqual(table[1].split()[:2], ["master", "master"])

        master.kill(signal.SIGKILL)
        for worker in workers:
            self.wait_log(worker, "Connection with the master lost")
        not_connected = control(cluster.home("worker1").root, "-l")
        self.assertEqual(not_connected.returncode, 1)
        self.assertIn("not connected to master", not_connected.stderr)

        master = self.start(cluster, "master", "master")
        self.assertTrue(
            wait_for(
                lambda: sorted(node_names(cluster.home("master").root) or []) == expected, DEADLINE
            ),
            master.log_text(),
        )

    def test_control_without_node(self) -> None:
        """With no node running, the control tool says so and exits 1."""
        cluster = self.make_cluster([])
        result = control(cluster.home("master").root, "-l")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip(), "Cluster is not running.")


class RefusalTests(ClusterTestCase):
    """Workers with a wrong key or a foreign certificate never join."""

    def test_wrong_key_and_foreign_ca(self) -> None:
        """Both are refused, with the reason in the master's and the worker's logs."""
        cluster = self.make_cluster([])
        cluster.write_node("badkey", "worker", key="ffffffffffffffffffffffffffffffff")
        cluster.write_node("foreign", "worker", ca=create_ca("another CA"))
        master = self.start(cluster, "master", "master")
        self.wait_log(master, "listening on")
        badkey = self.start(cluster, "badkey", "worker")
        foreign = self.start(cluster, "foreign", "worker")
        self.wait_log(master, "Refused worker 'badkey'")
        self.assertIn("Wrong cluster key", master.log_text())
        self.wait_log(badkey, "Could not connect to master: Error 3025 - Wrong cluster key")
        self.wait_log(master, "closed before it authenticated")
        self.wait_log(foreign, "Could not connect to master")
        self.assertEqual(node_names(cluster.home("master").root), ["master"])

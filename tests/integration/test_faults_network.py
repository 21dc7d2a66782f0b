"""Network faults between a real worker and a real master, through a TCP proxy.

The proxy (tests.integration.faultproxy) stalls, resets or cuts the worker's connection in
the middle of a message. Each time the worker must notice (keep-alive failures, the master's
reaper or the reset), reconnect, and complete the next integrity sync; the master must drop
the dead link so the worker's name and its sync lock are free again.
"""

from __future__ import annotations

import os

from tests.integration.common import DEADLINE, ClusterTestCase
from tests.integration.faultproxy import FaultProxy
from tests.integration.test_faults_support import (
    dial_through,
    in_sync,
    sync_difference,
    unexpected_errors,
)
from tests.integration.test_integrity_real import put
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

CONNECTED = "Successfully connected to master"


class NetworkFaultTests(ClusterTestCase):
    """A worker behind a faulty network recovers by itself, and so does the master."""

    def start_behind_proxy(self) -> tuple[LocalCluster, FaultProxy, NodeProcess, NodeProcess]:
        """A master and worker1, the worker dialling through a proxy; first sync done."""
        cluster = self.make_cluster(["worker1"])
        proxy = FaultProxy(cluster.port)
        proxy.start()
        self.addCleanup(proxy.stop)
        dial_through(cluster, "worker1", proxy.port)
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, CONNECTED)
        self.change_and_sync(cluster, "before")
        return cluster, proxy, master, worker

    def change_and_sync(self, cluster: LocalCluster, tag: str, size: int = 64) -> None:
        """Write a new file on the master and wait until the worker holds the master's files."""
        put(cluster.home("master").root, f"etc/shared/default/{tag}.txt", os.urandom(size))
        if not wait_for(lambda: in_sync(cluster, ["worker1"]), DEADLINE, step=0.2):
            self.fail(f"worker1 not in sync after {tag}: {sync_difference(cluster, 'worker1')}")

    def connections(self, worker: NodeProcess) -> int:
        """How many times the worker has joined the master."""
        return worker.log_text().count(CONNECTED)

    def wait_reconnect(self, worker: NodeProcess, count: int) -> None:
        """Wait until the worker has joined ``count`` times."""
        if not wait_for(lambda: self.connections(worker) >= count, DEADLINE, step=0.2):
            self.fail(f"worker1 did not reconnect:\n{worker.log_text()[-3000:]}")

    def assert_clean(self, cluster: LocalCluster, master: NodeProcess) -> None:
        """The master is alive and both nodes logged no ERROR but those a broken link
        explains (lost connection, unanswered request, missed keep-alives)."""
        self.assertTrue(master.running(), master.log_text()[-2000:])
        allowed = (
            "Could not connect to master",
            "keep alive",
            "No keep alives have been received",
            "Worker node ID already exists",
            "Connection to the other side was lost",
            "the link to the master was lost",
            "Connection was closed cleanly",
            "no answer to",
        )
        for name in ("master", "worker1"):
            self.assertEqual(unexpected_errors(cluster.home(name), allowed), [], name)

    def test_stalled_link(self) -> None:
        """A link that silently stops carrying bytes is detected by keep-alives on the
        worker and by the reaper on the master; after the network returns the worker
        reconnects and the next sync completes."""
        cluster, proxy, master, worker = self.start_behind_proxy()
        proxy.stall()
        self.wait_log(worker, "Error sending keep alive")
        self.wait_log(master, "No keep alives have been received from worker1")
        proxy.resume()
        self.wait_reconnect(worker, 2)
        self.change_and_sync(cluster, "after-stall")
        self.assert_clean(cluster, master)

    def test_reset_link(self) -> None:
        """Every connection reset at once: the worker logs the loss, reconnects at once and
        syncs; the master logs the disconnection and accepts the worker's name again."""
        cluster, proxy, master, worker = self.start_behind_proxy()
        for round_number in range(3):
            proxy.drop()
            self.wait_reconnect(worker, round_number + 2)
            self.change_and_sync(cluster, f"after-reset-{round_number}")
        self.wait_log(master, "Disconnected worker1")
        self.assert_clean(cluster, master)

    def test_cut_mid_transfer(self) -> None:
        """The link is cut inside a 4 MB integrity transfer: the worker keeps no temp file,
        reconnects, and the next cycle delivers the file; the master frees the worker's
        sync lock (the next sync is not refused as busy forever)."""
        cluster, proxy, master, worker = self.start_behind_proxy()
        proxy.cut_after(400_000)
        put(cluster.home("master").root, "etc/shared/default/big.bin", os.urandom(4 << 20))
        self.wait_reconnect(worker, 2)
        self.assertGreaterEqual(proxy.resets, 1)
        if not wait_for(lambda: in_sync(cluster, ["worker1"]), DEADLINE, step=0.2):
            self.fail(f"not in sync after the cut: {sync_difference(cluster, 'worker1')}")
        self.change_and_sync(cluster, "after-cut")
        self.assert_clean(cluster, master)

"""The control socket across ``kill -9`` and restarts of real nodes (issue 17, item 4).

After a ``kill -9`` the socket's lock (``var/run/cluster.sock.lock``, a symlink naming the
dead node's pid) stays behind. When that pid is alive again as another process, Twisted
keeps the lock and the restarted node ran without a control socket. Here the lock is made
to name a live process (this test's own pid, as a reused pid would) before each restart.
"""

from __future__ import annotations

import os
import re
import signal

from tests.integration.common import (
    DEADLINE,
    ClusterTestCase,
    attack_rounds,
    control,
    node_names,
)
from wazuhcluster.control.server import lock_path
from wazuhcluster.testing.devcluster import NodeProcess, wait_for

#: Kill-and-restart rounds per node (``WAZUHCLUSTER_ATTACK_ROUNDS`` in ``make soak``).
ROUNDS = attack_rounds(3)


class ControlRestartTests(ClusterTestCase):
    """A restarted node always serves its control socket, or says why it stops."""

    def wait_control(self, node: NodeProcess, expected: list[str]) -> None:
        """Wait until ``-l`` on ``node`` lists ``expected``; fail showing the logs."""
        if not wait_for(lambda: node_names(node.home.root) == expected, DEADLINE):
            self.fail(
                f"the control socket of {node.home.root} did not answer "
                f"{control(node.home.root, '-l').stdout!r}; cluster.log:\n{node.log_text()[-3000:]}"
            )

    def test_kill_9_with_reused_pid(self) -> None:
        """Kill -9 the master, make its lock name a live process, restart it: the control
        socket answers and cluster.log says the stale lock was removed (:data:`ROUNDS` rounds;
        the same for the worker)."""
        cluster = self.make_cluster(["worker1"])
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_control(master, ["master", "worker1"])
        for node in (master, worker):
            lock = lock_path(node.home.control_socket)
            for round_ in range(1, ROUNDS + 1):
                node.kill()
                self.assertTrue(os.path.lexists(lock), "kill -9 left no lock to test with")
                os.unlink(lock)
                os.symlink(str(os.getpid()), lock)  # the dead pid, now a live process
                node.start()
                self.wait_control(node, ["master", "worker1"])
                removed = re.findall(
                    r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d WARNING: .* Removed a stale control-socket "
                    rf"lock .*: pid {os.getpid()} is running but does not answer",
                    node.log_text(),
                    re.MULTILINE,
                )
                self.assertEqual(len(removed), round_, node.log_text()[-3000:])
        self.assertNotIn("Traceback", (master.home.logs / "twistd.out").read_text())

    def test_second_node_on_same_home_stops(self) -> None:
        """A second node started on a running node's home cannot take the socket: it logs
        a dated ERROR in cluster.log and exits 1; the first keeps serving."""
        cluster = self.make_cluster([])
        first = self.start(cluster, "master", "master")
        self.wait_control(first, ["master"])
        second = NodeProcess(first.home, "master")
        second.start()
        self.addCleanup(second.kill)
        assert second.process is not None
        self.assertEqual(second.process.wait(timeout=DEADLINE), 1)
        self.assertRegex(
            first.log_text(),
            r"\n\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ERROR: \[Master\] \[Control\] Could not open the "
            r"control socket .*cluster\.sock: another node is running on this home \(pid "
            rf"{first.process.pid if first.process else '?'} .*\)\. Stopping the node\.",
        )
        self.wait_control(first, ["master"])

    def test_sigterm_leaves_no_lock(self) -> None:
        """A clean stop removes the socket and its lock; the next start logs nothing stale."""
        cluster = self.make_cluster([])
        node = self.start(cluster, "master", "master")
        self.wait_control(node, ["master"])
        node.stop()
        self.assertFalse(os.path.lexists(lock_path(node.home.control_socket)))
        node.start()
        self.wait_control(node, ["master"])
        self.assertNotIn("stale control-socket lock", node.log_text())
        node.kill(signal.SIGTERM)

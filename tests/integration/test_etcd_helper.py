"""The etcd test helper itself: one member and three start healthy and stop by pid."""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import short_temp_dir
from wazuhcluster.testing.etcd import EtcdCluster, require_etcd


class EtcdHelperTests(SynchronousTestCase):
    """Real etcd processes on 127.0.0.1 ephemeral ports."""

    def setUp(self) -> None:
        """Skip without the etcd binary."""
        require_etcd()

    def test_one_member(self) -> None:
        """One member starts healthy on its own port and is gone after stop()."""
        cluster = EtcdCluster(short_temp_dir(self))
        self.addCleanup(cluster.stop)
        cluster.start()
        [member] = cluster.members
        self.assertTrue(cluster.healthy(member))
        self.assertEqual(cluster.endpoints, [f"http://127.0.0.1:{member.client_port}"])
        cluster.stop()
        self.assertFalse(member.running())
        self.assertFalse(cluster.healthy(member))

    def test_three_members_survive_one_loss(self) -> None:
        """Three members form one cluster; with one killed the other two stay healthy, and the
        killed one rejoins with its data when started again."""
        cluster = EtcdCluster(short_temp_dir(self), size=3)
        self.addCleanup(cluster.stop)
        cluster.start()
        first, second, third = cluster.members
        cluster.kill(first)
        self.assertFalse(first.running())
        cluster.wait_healthy(second)
        cluster.wait_healthy(third)
        cluster.start_member(first)
        cluster.wait_healthy(first)

    def test_start_moves_off_a_taken_port(self) -> None:
        """A peer port taken by another process before etcd binds it (a free_port race):
        start() runs the whole new cluster again on fresh ports, and it comes up healthy."""
        cluster = EtcdCluster(short_temp_dir(self), size=3)
        self.addCleanup(cluster.stop)
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        cluster.members[2].peer_port = taken
        cluster.start()
        self.assertIn("address already in use", cluster.members[2].log_text())
        self.assertNotIn(taken, [member.peer_port for member in cluster.members])
        for member in cluster.members:
            self.assertTrue(cluster.healthy(member), member.name)

    def test_tls_member(self) -> None:
        """With tls=True the member serves https and requires the client certificate."""
        cluster = EtcdCluster(short_temp_dir(self), tls=True)
        self.addCleanup(cluster.stop)
        cluster.start()
        self.assertTrue(cluster.endpoints[0].startswith("https://127.0.0.1:"))
        self.assertIsNotNone(cluster.client_material)

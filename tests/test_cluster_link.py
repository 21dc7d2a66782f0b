"""The cluster link in memory: handshake, rejections, keep-alive, reaper and reconnection."""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError
from twisted.logger import capturedLogs
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import InMemoryCluster
from wazuhcluster.util.logs import format_line
from wazuhcluster.wire import commands


class HandshakeTests(SynchronousTestCase):
    """A worker joins only after every handshake check passes."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())

    def assert_refused(self, link: object, reason: str) -> None:
        """The master did not register the worker and logged ``reason``; the worker saw it."""
        self.assertEqual(self.cluster.master.workers.names(), [])
        self.assertFalse(link.connected)  # type: ignore[attr-defined]
        self.assertIn(reason, link.last_error or "")  # type: ignore[attr-defined]

    def test_worker_joins(self) -> None:
        """A worker with the right key, cluster and certificate is registered and listed."""
        link = self.cluster.add_worker("worker1")
        self.cluster.connect(link)
        self.assertTrue(link.connected)
        self.assertEqual(link.master_name, "master")
        self.assertEqual(self.cluster.master.workers.names(), ["worker1"])
        names = [row["name"] for row in self.cluster.master.nodes()]
        self.assertEqual(names, ["master", "worker1"])

    def test_wrong_key_refused(self) -> None:
        """A worker whose key proof does not verify is refused with Wazuh's code 3025."""
        link = self.cluster.add_worker("worker1", key="ffffffffffffffffffffffffffffffff")
        self.cluster.connect(link)
        self.assert_refused(link, "Error 3025 - Wrong cluster key")

    def test_refusal_logged_on_both_sides(self) -> None:
        """The reason of a refusal is in the master's and the worker's cluster.log lines."""
        with capturedLogs() as events:
            link = self.cluster.add_worker("worker1", key="ffffffffffffffffffffffffffffffff")
            self.cluster.connect(link)
        lines = [format_line(event) for event in events if "cluster_tag" in event]
        master_lines = [line for line in lines if "[Master]" in line]
        worker_lines = [line for line in lines if "[Worker worker1]" in line]
        self.assertTrue(
            any(
                "ERROR: [Master] [Main] Refused worker 'worker1'" in line
                and "Wrong cluster key" in line
                for line in master_lines
            ),
            lines,
        )
        self.assertTrue(
            any(
                "ERROR: [Worker worker1] [Main] Could not connect to master: Error 3025" in line
                for line in worker_lines
            ),
            lines,
        )

    def test_other_cluster_refused(self) -> None:
        """A worker of another cluster is refused with code 3030."""
        link = self.cluster.add_worker("worker1", cluster_name="other")
        self.cluster.connect(link)
        self.assert_refused(link, "Error 3030 - Worker does not belong to the same cluster")

    def test_certificate_mismatch_refused(self) -> None:
        """A worker claiming a name its certificate does not carry is refused."""
        link = self.cluster.add_worker("worker1", certificate={"worker9"})
        self.cluster.connect(link)
        self.assert_refused(link, "does not match its certificate")

    def test_master_name_refused(self) -> None:
        """A worker named like the master is refused with code 3029."""
        link = self.cluster.add_worker("master")
        self.cluster.connect(link)
        self.assert_refused(link, "Error 3029")

    def test_duplicate_name_refused(self) -> None:
        """A second worker with a connected worker's name is refused; the first stays."""
        first = self.cluster.add_worker("worker1")
        self.cluster.connect(first)
        second = self.cluster.add_worker("worker1")
        self.cluster.connect(second)
        self.assertTrue(first.connected)
        self.assertFalse(second.connected)
        self.assertIn("Error 3028", second.last_error or "")
        self.assertEqual(self.cluster.master.workers.names(), ["worker1"])

    def test_commands_before_hello_refused(self) -> None:
        """Any command but Challenge/Hello before authentication closes the connection."""
        from twisted.internet.testing import StringTransport

        protocol = self.cluster.master.build_factory(lambda t: None).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        box = amp.AmpBox(_command=b"KeepAlive", _ask=b"1", payload=b"x")
        protocol.dataReceived(box.serialize())
        self.assertIn(b"NOT_AUTHENTICATED", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.cluster.master.workers.names(), [])

    def test_handshake_deadline(self) -> None:
        """A connection that never says Hello is dropped after the request timeout."""
        from twisted.internet.testing import StringTransport

        protocol = self.cluster.master.build_factory(lambda t: None).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.cluster.reactor.advance(19)
        self.assertFalse(transport.disconnecting)
        self.cluster.reactor.advance(2)
        self.assertTrue(transport.disconnecting)


class LivenessTests(SynchronousTestCase):
    """Keep-alives, the master's reaper and reconnection with back-off."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())
        self.link = self.cluster.add_worker("worker1")
        self.pump = self.cluster.connect(self.link)

    def test_keepalive_refreshes_master_view(self) -> None:
        """Each keep-alive updates the worker's last keep-alive time on the master."""
        self.cluster.reactor.advance(60)
        self.cluster.flush()
        worker = self.cluster.master.workers.get("worker1")
        assert worker is not None
        self.assertEqual(worker.last_keepalive, self.cluster.reactor.seconds())
        self.assertEqual(self.link.failed_keepalives, 0)

    def test_reaper_drops_silent_worker(self) -> None:
        """A worker silent for more than 120 s is disconnected by the master."""
        self.link.keepalive.stopService()  # the worker goes silent
        self.cluster.reactor.advance(121)
        self.cluster.master.reap_silent_workers()
        self.cluster.flush()
        self.assertEqual(self.cluster.master.workers.names(), [])
        self.assertFalse(self.link.connected)

    def test_reaper_keeps_live_worker(self) -> None:
        """A worker that keeps sending keep-alives is not dropped."""
        for _ in range(4):
            self.cluster.reactor.advance(60)
            self.cluster.flush()
        self.cluster.master.reap_silent_workers()
        self.assertEqual(self.cluster.master.workers.names(), ["worker1"])

    def test_failed_keepalives_drop_link(self) -> None:
        """After two keep-alives without an answer the worker drops the link itself."""
        # Stop moving bytes from the master: its answers never arrive.
        self.cluster.pumps.clear()
        self.cluster.reactor.advance(60)  # first keep-alive sent
        self.cluster.reactor.advance(20)  # ... and timed out
        self.assertEqual(self.link.failed_keepalives, 1)
        self.assertTrue(self.link.connected)
        self.cluster.reactor.advance(40)
        self.cluster.reactor.advance(20)
        self.pump.flush()
        self.assertFalse(self.link.connected)

    def test_reconnects_with_backoff(self) -> None:
        """After losing the master the worker retries with back-off and joins again."""
        worker = self.cluster.master.workers.get("worker1")
        assert worker is not None
        worker.disconnect()
        self.pump.flush()
        self.assertFalse(self.link.connected)
        self.assertEqual(self.cluster.master.workers.names(), [])
        # First retry 10 s later (Wazuh's connection_retry); let it be refused.
        self.cluster.reactor.advance(9.9)
        self.assertEqual(len(self.cluster.reactor.tcpClients), 0)
        self.cluster.reactor.advance(0.1)
        self.cluster.completer.failOnce(Failure(ConnectionRefusedError()))
        self.assertIn("refused", self.link.last_error or "")
        # The next attempt backs off to 15 s.
        self.cluster.reactor.advance(14.9)
        self.assertEqual(len(self.cluster.reactor.tcpClients), 0)
        self.cluster.reactor.advance(0.1)
        self.cluster.connect(self.link)
        self.assertTrue(self.link.connected)
        self.assertEqual(self.cluster.master.workers.names(), ["worker1"])

    def test_not_connected_call_fails(self) -> None:
        """Asking the master while disconnected raises NotConnected at once."""
        worker = self.cluster.master.workers.get("worker1")
        assert worker is not None
        worker.disconnect()
        self.pump.flush()
        self.assertRaises(commands.NotConnected, self.link.call, commands.GetNodes)

    def test_call_in_flight_when_link_closes(self) -> None:
        """A call pending when the master's end closes (a killed master closes cleanly or
        not) fails as NotConnected saying the link was lost, not as the transport's error."""
        self.cluster.pumps.clear()  # the answer never comes back
        pending = self.link.call(commands.GetNodes)
        worker = self.cluster.master.workers.get("worker1")
        assert worker is not None
        worker.disconnect()
        self.pump.flush()
        failure = self.failureResultOf(pending, commands.NotConnected)
        self.assertIn("the link to the master was lost", failure.getErrorMessage())


class SendWithoutDelayTests(SynchronousTestCase):
    """TCP_NODELAY on cluster, enrollment and similar small-message connections."""

    def test_turns_nodelay_on_through_wrappers(self) -> None:
        """A TCP transport under a protocol wrapper (as TLS and the limiter wrap it) gets
        TCP_NODELAY; transports without it, or that refuse it, are left alone."""
        from twisted.internet.protocol import Factory, Protocol
        from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

        from wazuhcluster.util.nodelay import send_without_delay

        class TCPLike:
            """Records setTcpNoDelay calls."""

            def __init__(self) -> None:
                self.calls: list[bool] = []

            def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802 - Twisted's name
                self.calls.append(enabled)

        class Refusing:
            """A socket that is not TCP after all."""

            def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802 - Twisted's name
                raise OSError(95, "Operation not supported")

        tcp = TCPLike()
        wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
        wrapper.transport = tcp  # type: ignore[assignment]
        send_without_delay(wrapper)
        self.assertEqual(tcp.calls, [True])
        send_without_delay(object())
        send_without_delay(Refusing())


class RefusedWorkerTests(SynchronousTestCase):
    """A worker the master refuses backs off and is logged once per reason on both sides."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())

    def retry_delays(self, events: list[dict[str, object]]) -> list[float]:
        """The delays ClientService scheduled its retries with, in order."""
        return [
            float(event["delay"])  # type: ignore[arg-type]
            for event in events
            if "Scheduling retry" in str(event.get("log_format", ""))
        ]

    def refuse_again(self, link: object, events: list[dict[str, object]]) -> None:
        """Wait out the scheduled retry and let the master refuse it."""
        self.cluster.reactor.advance(self.retry_delays(events)[-1])
        self.cluster.connect(link)  # type: ignore[arg-type]

    def test_backoff_and_one_line_per_side(self) -> None:
        """Refused 9 times for a wrong key: the delays grow 1.5x from 10 s to the 60 s
        reconnect maximum, and each side logs one ERROR, not nine."""
        with capturedLogs() as events:
            link = self.cluster.add_worker("worker1", key="ffffffffffffffffffffffffffffffff")
            self.cluster.connect(link)
            for _ in range(8):
                self.refuse_again(link, events)
        self.assertEqual(
            self.retry_delays(events), [10.0, 15.0, 22.5, 33.75, 50.625, 60.0, 60.0, 60.0, 60.0]
        )
        lines = [format_line(event) for event in events if "cluster_tag" in event]
        errors = [line for line in lines if " ERROR: " in line]
        self.assertEqual(len(errors), 2, errors)
        self.assertIn("Refused worker 'worker1'", errors[0])
        self.assertIn("Could not connect to master: Error 3025 - Wrong cluster key", errors[1])
        self.assertIn("logged again when the reason changes", errors[1])
        self.assertEqual(self.cluster.master.workers.names(), [])

    def test_new_reason_logged_and_success_resets(self) -> None:
        """Another reason is logged again; once the worker joins, the back-off starts over
        and an old reason is news again."""
        import attrs

        with capturedLogs() as events:
            link = self.cluster.add_worker("worker1", key="ffffffffffffffffffffffffffffffff")
            self.cluster.connect(link)
            self.refuse_again(link, events)
            link.cluster = attrs.evolve(link.cluster, key=self.cluster.master.config.cluster.key)
            link.certificate = {"worker9"}  # type: ignore[attr-defined]
            self.refuse_again(link, events)
            self.refuse_again(link, events)
            link.certificate = {"worker1"}  # type: ignore[attr-defined]
            self.refuse_again(link, events)  # accepted this time
            self.assertTrue(link.connected)
            self.assertEqual(link.failed_attempts, 0)
            self.cluster.master.workers.get("worker1").disconnect()  # type: ignore[union-attr]
            self.cluster.flush()
        worker_errors = [
            format_line(event)
            for event in events
            if event.get("cluster_tag") == "Worker worker1" and " ERROR: " in format_line(event)
        ]
        self.assertEqual(len(worker_errors), 2, worker_errors)
        self.assertIn("Error 3025", worker_errors[0])
        self.assertIn("does not match its certificate", worker_errors[1])
        # 10, 15 (3025), 22.5, 33.75 (certificate), then joined: the next loss waits 10 s.
        self.assertEqual(self.retry_delays(events), [10.0, 15.0, 22.5, 33.75, 10.0])

    def test_reconnect_racing_old_link_is_info(self) -> None:
        """A worker that dropped a stalled link and comes back before the master noticed
        is refused as a duplicate (3028): INFO on both sides while the master may still
        hold the old link, ERROR once after that."""
        from twisted.internet.error import ConnectionLost

        link = self.cluster.add_worker("worker1")
        pump = self.cluster.connect(link)
        with capturedLogs() as events:
            # The worker gives up on a stalled link; the master never hears of it.
            self.cluster.pumps.remove(pump)
            pump.client.connectionLost(Failure(ConnectionLost("stalled")))
            self.assertFalse(link.connected)
            self.cluster.reactor.advance(self.retry_delays(events)[-1])
            self.cluster.connect(link)
            self.refuse_again(link, events)
            self.assertEqual(self.cluster.master.workers.names(), ["worker1"])
            # Past max_silence + reaper_interval the duplicate is no longer a race.
            for _ in range(4):
                self.refuse_again(link, events)
        lines = [format_line(event) for event in events if "cluster_tag" in event]
        # DEBUG lines (the repeats) are not in cluster.log unless --debug.
        duplicate = [line for line in lines if "Error 3028" in line and " DEBUG: " not in line]
        worker = [line for line in duplicate if "[Worker worker1]" in line]
        master = [line for line in duplicate if "[Master]" in line]
        self.assertEqual([line.split(" ")[2] for line in worker], ["INFO:", "ERROR:"])
        self.assertEqual([line.split(" ")[2] for line in master], ["INFO:"])
        self.assertIn("previous link from the same address is still open", master[0])

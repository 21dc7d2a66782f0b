"""Agent frames handed over sealed: opened in an analysis process, the outcome back to the
channel (:mod:`wazuhcluster.agents.sealed`, the channel's hand-over, the service and pool
around it), on StringTransport and in-memory analysis processes."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.test_agent_channel import UNAME, FakeAgent, _keepalive
from tests.test_analysis_pool import SSH_FAIL, PoolTestCase
from wazuhcluster.agents import control, secure
from wazuhcluster.agents.channel import AgentChannelFactory, AgentChannelProtocol, AgentEvent
from wazuhcluster.agents.sealed import SealedFrames, SealedOutcome, SealedReport, open_frames
from wazuhcluster.agents.sessions import AgentStatus, SessionTable
from wazuhcluster.analysis.engine import Event
from wazuhcluster.node.analysis_child import decode_batch, encode_rows, event_row, sealed_row
from wazuhcluster.node.analysis_service import AnalysisService
from wazuhcluster.node.intake import EpsLimiter
from wazuhcluster.util.threads import run_inline

KEY = "ab" * 32


def payloads(framed: bytes) -> list[bytes]:
    """The payloads of framed bytes (what the channel's decoder hands on)."""
    return secure.FrameDecoder().feed(framed)


def group_of(agent: FakeAgent, *messages: str, frames: list[bytes] | None = None) -> SealedFrames:
    """``messages`` sealed by ``agent`` as one group."""
    entry = agent.entry
    sealed = frames if frames is not None else []
    for message in messages:
        sealed.extend(payloads(agent.frame(message)))
    return SealedFrames(
        entry.agent_id,
        entry.name,
        entry.cipher_key,
        entry.ip,
        "10.0.0.9",
        (),
        50.0,
        1,
        "10.0.0.1",
        sealed,
    )


class OpenFramesTests(SynchronousTestCase):
    """Opening a group: events, control messages, malformed events, a bad frame."""

    def setUp(self) -> None:
        self.agent = FakeAgent(secure.AgentKey("001", "one", "any", KEY))

    def test_events_control_and_malformed(self) -> None:
        """Events come out in order with their queue and location, counted per agent and
        queue letter; control messages and malformed events are only reported."""
        group = group_of(
            self.agent, "1:/var/log/auth.log:first", _keepalive(), "no queue here", "8:syscheck:x"
        )
        report = SealedReport()
        events = open_frames(group, report)
        self.assertEqual(events, [("1", "/var/log/auth.log", "first"), ("8", "syscheck", "x")])
        self.assertEqual((report.events, report.not_events), ({"001": {"1": 1, "8": 1}}, 2))
        [outcome] = report.outcomes
        self.assertEqual(outcome.control, [_keepalive()])
        self.assertEqual((outcome.malformed, outcome.error), (1, None))
        self.assertEqual(outcome.reasons, ["event does not start with '<queue>:'"])

    def test_only_events_need_no_outcome(self) -> None:
        """A group of events alone is only counted: the channel has nothing to act on."""
        report = SealedReport()
        open_frames(group_of(self.agent, "1:a:x", "1:a:y"), report)
        self.assertEqual((report.events, report.outcomes), ({"001": {"1": 2}}, []))

    def test_bad_frame_ends_the_agents_frames_in_the_batch(self) -> None:
        """The first frame that cannot be opened is named with Wazuh's error; the frames
        after it, and the agent's later groups in the batch, are discarded unopened."""
        other = FakeAgent(secure.AgentKey("001", "one", "any", "cd" * 32))
        frames = payloads(self.agent.frame("1:a:ok"))
        frames += payloads(other.frame("1:a:wrong key"))
        frames += payloads(self.agent.frame("1:a:after"))
        report = SealedReport()
        events = open_frames(group_of(self.agent, frames=frames), report)
        self.assertEqual(events, [("1", "a", "ok")])
        [outcome] = report.outcomes
        self.assertEqual(outcome.discarded, 1)
        self.assertIsInstance(outcome.secure_error(), secure.WrongKey)
        self.assertEqual(open_frames(group_of(self.agent, "1:a:later"), report), [])
        self.assertEqual(report.not_events, 3)

    def test_report_round_trip(self) -> None:
        """A report survives its JSON form, and an unknown error name becomes the base
        error rather than anything else."""
        outcome = SealedOutcome(
            "007", 3, "10.0.0.2", ["#!-x"], 1, ["why"], ("ChecksumMismatch", "r"), 2
        )
        report = SealedReport({"007": {"1": 2}}, 4, [outcome])
        back = SealedReport.from_json(json.loads(json.dumps(report.to_json())))
        self.assertEqual(back, report)
        self.assertIsInstance(back.outcomes[0].secure_error(), secure.ChecksumMismatch)
        odd = SealedOutcome("007", error=("SystemExit", "no"))
        self.assertIs(type(odd.secure_error()), secure.SecureError)

    def test_batch_keeps_rows_and_groups_in_order(self) -> None:
        """A batch mixing event rows and sealed groups decodes to the events in batch order,
        the group's events carrying the agent's fields."""
        row = event_row(Event("before", location="x", agent_id="002", timestamp=1.0))
        group = group_of(self.agent, "1:/var/log/syslog:inside")
        events, report = decode_batch(encode_rows([row, sealed_row(group), row]))
        self.assertEqual([e.message for e in events], ["before", "inside", "before"])
        inside = events[1]
        self.assertEqual(
            (inside.agent_id, inside.agent_name, inside.agent_reported_ip, inside.timestamp),
            ("001", "one", "10.0.0.9", 50.0),
        )
        self.assertEqual(report.events if report else None, {"001": {"1": 1}})
        self.assertIsNone(decode_batch(encode_rows([row]))[1])


class SealedSink:
    """A sink taking sealed groups (or not), recording what it got."""

    def __init__(self) -> None:
        self.taking = True
        self.groups: list[SealedFrames] = []
        self.events: list[AgentEvent] = []

    def __call__(self, event: AgentEvent) -> None:
        """An event the channel opened itself."""
        self.events.append(event)

    def take_sealed(self, group: SealedFrames) -> bool:
        """Take the group when taking."""
        if self.taking:
            self.groups.append(group)
        return self.taking


class HandOverTests(SynchronousTestCase):
    """The channel's side: which frames leave sealed, and what it does with an outcome."""

    def setUp(self) -> None:
        self.channel_clock = Clock()
        self.channel_clock.advance(1000)
        self.entry = secure.AgentKey("001", "one", "any", KEY)
        self.keys = secure.KeyStore([self.entry, secure.AgentKey("002", "two", "any", KEY)])
        self.sessions = SessionTable(self.channel_clock, "w1")
        self.sink = SealedSink()
        self.agent = FakeAgent(self.entry)
        self.logged = EventLoggingObserver()
        globalLogPublisher.addObserver(self.logged)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged)

    def connect(
        self, factory: AgentChannelFactory | None = None, **kwargs: Any
    ) -> tuple[AgentChannelFactory, AgentChannelProtocol, Any]:
        """A factory over the sink (or ``factory``), and one connection."""
        factory = factory or AgentChannelFactory(
            self.keys,
            self.sessions,
            self.sink,
            self.channel_clock,
            run_in_thread=run_inline,
            **kwargs,
        )
        proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
        transport = StringTransport()
        proto.makeConnection(transport)
        return factory, proto, transport

    def test_first_message_opened_later_ones_handed_over(self) -> None:
        """The first message authenticates the connection here; later runs of several
        frames leave sealed in one group, a ping among them answered in its place."""
        factory, proto, transport = self.connect()
        proto.dataReceived(self.agent.frame(_keepalive()))
        self.assertEqual(self.agent.read(transport), [control.ACK.encode()])
        proto.dataReceived(
            self.agent.frame("1:a:one")
            + self.agent.frame("1:a:two")
            + secure.frame(control.PING)
            + self.agent.frame("1:a:three")
            + self.agent.frame("1:a:four")
        )
        self.assertEqual(self.agent.read(transport), [control.PONG])
        self.assertEqual([len(g.frames) for g in self.sink.groups], [2, 2])
        events = open_frames(self.sink.groups[1], SealedReport())
        self.assertEqual([m for _, _, m in events], ["three", "four"])
        self.assertEqual(factory.stats.frames, 6)
        self.assertEqual(self.sink.events, [])

    def test_lone_frames_of_an_idle_agent_opened_here(self) -> None:
        """A read of one frame after a read of one frame (an idle agent's keep-alive) is
        opened here and answered at once; one right after a read of several is handed
        over, as the agent is busy."""
        _, proto, transport = self.connect()
        proto.dataReceived(self.agent.frame(_keepalive()))
        self.agent.read(transport)
        proto.dataReceived(self.agent.frame(_keepalive()))
        self.assertEqual(self.agent.read(transport), [control.ACK.encode()])
        proto.dataReceived(self.agent.frame("1:a:x") + self.agent.frame("1:a:y"))
        proto.dataReceived(self.agent.frame("1:a:z"))
        self.assertEqual([len(g.frames) for g in self.sink.groups], [2, 1])
        proto.dataReceived(self.agent.frame("1:a:idle"))
        self.assertEqual([e.message for e in self.sink.events], ["idle"])

    def test_refused_groups_are_opened_here(self) -> None:
        """A sink that does not take the frames gets the events opened here, in order."""
        _, proto, _ = self.connect()
        self.sink.taking = False
        proto.dataReceived(self.agent.frame(_keepalive()) + self.agent.frame("1:a:x"))
        self.assertEqual([e.message for e in self.sink.events], ["x"])

    def test_no_hand_over_when_counters_are_verified(self) -> None:
        """With remoted's counter verification every frame is opened here, in order."""
        _, proto, _ = self.connect(verify_counters=True)
        proto.dataReceived(self.agent.frame(_keepalive()) + self.agent.frame("1:a:x"))
        self.assertEqual((self.sink.groups, len(self.sink.events)), ([], 1))

    def test_another_agents_frame_is_handled_here(self) -> None:
        """A frame with another agent's id on the connection is not handed over: it is
        dropped here, as before, and the connection closed."""
        _, proto, transport = self.connect()
        proto.dataReceived(self.agent.frame(_keepalive()))
        other = FakeAgent(self.keys.get("002"))  # type: ignore[arg-type]
        proto.dataReceived(other.frame("1:a:x"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.sink.groups, [])

    def test_outcome_answers_counts_and_closes(self) -> None:
        """An outcome's keep-alive is answered on the connection and counted; its events
        are counted; a bad frame closes the connection with Wazuh's message."""
        factory, proto, transport = self.connect()
        proto.dataReceived(self.agent.frame(_keepalive()))
        self.agent.read(transport)
        factory.sealed_opened(
            SealedReport(
                {"001": {"1": 2}}, 1, [SealedOutcome("001", proto.number, control=[_keepalive()])]
            )
        )
        self.assertEqual(self.agent.read(transport), [control.ACK.encode()])
        self.assertEqual((factory.stats.events, factory.stats.control), (2, 2))
        metrics = factory.agent_counters.remoted_metrics("001")
        received = metrics["messages"]["received_breakdown"]
        self.assertEqual((received["event"], received["control_breakdown"]["keepalive"]), (2, 2))
        self.assertFalse(transport.disconnecting)
        bad = SealedOutcome("001", proto.number, error=("ChecksumMismatch", "bad"), discarded=1)
        factory.sealed_opened(SealedReport({}, 2, [bad]))
        self.assertTrue(transport.disconnecting)
        self.assertIn(
            "(1406): Checksum mismatch. Message received from agent '001' at 'any'.",
            [formatEvent(event) for event in self.logged],
        )
        self.assertEqual(factory.stats.dropped, 2)

    def test_control_of_a_closed_connection_still_applies(self) -> None:
        """A shutdown opened after its connection closed still marks the agent
        disconnected (nothing is sent back); one from a connection the agent has replaced
        since is past and ignored, while a keep-alive from it still counts."""
        factory, proto, transport = self.connect()
        proto.dataReceived(self.agent.frame(_keepalive()))
        first = proto.number
        proto.connectionLost()
        transport.clear()
        factory.sealed_opened(
            SealedReport({}, 1, [SealedOutcome("001", first, "10.0.0.1", [control.SHUTDOWN])])
        )
        self.assertEqual(self.sessions.status("001"), AgentStatus.DISCONNECTED)
        self.assertEqual(transport.value(), b"")
        _, again, _ = self.connect(factory=factory)
        self.sink.taking = False  # opened here, at once
        again.dataReceived(self.agent.frame(control.format_startup("v4.14.7")))
        again.dataReceived(self.agent.frame(_keepalive()))
        self.assertEqual(self.sessions.status("001"), AgentStatus.ACTIVE)
        past = SealedOutcome("001", first, "10.0.0.1", [_keepalive(), control.SHUTDOWN])
        factory.sealed_opened(SealedReport({}, 2, [past]))
        self.assertEqual(self.sessions.status("001"), AgentStatus.ACTIVE)
        self.assertFalse(again.closing)

    def test_keepalive_of_a_gone_connection_sends_and_counts_no_ack(self) -> None:
        """A keep-alive opened after its connection closed counts as received, but no ack
        goes out, so none is counted as sent."""
        factory, proto, transport = self.connect()
        proto.dataReceived(self.agent.frame(_keepalive()))
        self.agent.read(transport)
        sent = factory.agent_counters.remoted_metrics("001")["messages"]["sent_breakdown"]["ack"]
        proto.connectionLost()
        factory.sealed_opened(
            SealedReport({}, 1, [SealedOutcome("001", proto.number, "10.0.0.1", [_keepalive()])])
        )
        metrics = factory.agent_counters.remoted_metrics("001")["messages"]
        self.assertEqual(metrics["received_breakdown"]["control_breakdown"]["keepalive"], 2)
        self.assertEqual(metrics["sent_breakdown"]["ack"], sent)
        self.assertEqual(transport.value(), b"")

    def test_shutdown_of_a_closing_connection_applies(self) -> None:
        """A shutdown from the agent's own connection, closing but not gone yet, is not
        taken for a past one: the agent is disconnected."""
        factory, proto, _ = self.connect()
        proto.dataReceived(self.agent.frame(_keepalive()))
        proto.close()
        shutdown = SealedOutcome("001", proto.number, "10.0.0.1", [control.SHUTDOWN])
        factory.sealed_opened(SealedReport({}, 1, [shutdown]))
        self.assertEqual(self.sessions.status("001"), AgentStatus.DISCONNECTED)


class SealedThroughThePoolTests(PoolTestCase):
    """Channel, service and in-memory analysis processes together."""

    def setUp(self) -> None:
        super().setUp()
        self.entry = secure.AgentKey("001", "one", "any", KEY)
        self.keys = secure.KeyStore([self.entry])
        self.sessions = SessionTable(self.clock, "w1")
        self.agent = FakeAgent(self.entry)

    def wire(self, service: AnalysisService) -> tuple[AgentChannelFactory, Any, Any]:
        """A channel feeding ``service``, and one authenticated connection."""
        factory = AgentChannelFactory(
            self.keys, self.sessions, service, self.clock, run_in_thread=run_inline
        )
        service.sealed_opened = factory.sealed_opened
        proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(self.agent.frame(control.format_startup("v4.14.7")))
        self.agent.read(transport)
        return factory, proto, transport

    def stop(self, service: AnalysisService) -> None:
        """Stop ``service``, its processes draining their queues."""
        stopped = service.stopService()
        self.flush()
        self.successResultOf(stopped)

    def test_events_analysed_and_keepalive_answered(self) -> None:
        """Sealed events are analysed (alerts written), a keep-alive among them answered
        after its batch, and the numbers count events only."""
        service = self.make_service(2)
        factory, proto, transport = self.wire(service)
        proto.dataReceived(
            b"".join(self.agent.frame(f"1:/var/log/auth.log:{SSH_FAIL}") for _ in range(3))
            + self.agent.frame(_keepalive())
        )
        self.assertEqual(service.intake()["received"], 4)  # in the queue: frames
        self.flush()
        self.assertEqual(self.agent.read(transport), [control.ACK.encode()])
        self.assertEqual(self.sessions.status("001"), AgentStatus.ACTIVE)
        numbers = service.intake()
        self.assertEqual((numbers["received"], numbers["processed"]), (3, 3))
        self.assertEqual(service.agent_counts("001"), ({"1": 3}, 0))
        self.assertEqual(factory.stats.events, 3)
        self.stop(service)
        lines = (self.home.alerts_dir / "alerts.json").read_text().splitlines()
        self.assertEqual(len(lines), numbers["alerts_written"])
        self.assertGreater(len(lines), 0)
        self.assertEqual(json.loads(lines[0])["agent"]["id"], "001")

    def test_a_batch_of_keepalives_over_one_amp_value(self) -> None:
        """A batch of 400 keep-alives (their texts over AMP's 64 KiB value limit) comes back
        whole: every one is acknowledged and the analysis process stays up."""
        service = self.make_service(2)
        service.queue_size = 1000
        _, proto, transport = self.wire(service)
        long_keepalive = control.format_keepalive(
            UNAME, "Wazuh v4.14.7", None, [f'"label{i}":value' for i in range(8)], "x", "10.0.0.1"
        )
        proto.dataReceived(b"".join(self.agent.frame(long_keepalive) for _ in range(400)))
        self.flush()
        self.assertGreater(400 * len(long_keepalive), 65536)
        assert service.processes is not None
        self.assertEqual([lane.stats.batches for lane in service.processes.lanes], [0, 1])
        self.assertEqual(self.agent.read(transport), [control.ACK.encode()] * 400)
        self.assertEqual(sum(lane.stats.lost for lane in service.processes.lanes), 0)
        self.assertEqual(service.intake()["received"], 0)
        self.stop(service)

    def test_opened_here_with_one_process_or_an_eps_limit(self) -> None:
        """With one analysis process, or with an EPS limit, the channel opens the frames
        itself: the process gets the event, not the sealed frame."""
        for service in (self.make_service(1), self.make_service(2, EpsLimiter(1000, 1))):
            _, proto, _ = self.wire(service)
            proto.dataReceived(self.agent.frame("1:a:x"))
            assert service.processes is not None
            rows = [row for lane in service.processes.lanes for row in lane.queue]
            self.assertEqual([row[0] for row in rows], ["x"])
            self.assertEqual(service.stats.received, 1)
            self.stop(service)

    def test_full_queue_opened_here_drops_events_answers_keepalive(self) -> None:
        """Frames that do not fit in the queue are opened by the channel: the events over
        the queue are dropped and counted, the keep-alive among them answered."""
        service = self.make_service(2)  # queue of 100
        _, proto, transport = self.wire(service)
        proto.dataReceived(
            b"".join(self.agent.frame("1:a:x") for _ in range(120)) + self.agent.frame(_keepalive())
        )
        self.assertEqual(self.agent.read(transport), [control.ACK.encode()])
        numbers = service.intake()
        self.assertEqual((numbers["received"], numbers["dropped"]), (120, 20))
        self.assertEqual(numbers["dropped_by_agent"], {"001": 20})
        self.stop(service)
        self.assertEqual(service.intake()["processed"], 100)

"""Tests for wazuhcluster.agents.requests: ``#!-req`` questions to connected agents."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.test_agent_channel import ChannelTestCase, DatagramTests, FakeAgent, _keepalive
from wazuhcluster.agents import control
from wazuhcluster.agents.datagram import AgentDatagramProtocol
from wazuhcluster.agents.requests import (
    AgentAnswerError,
    AgentNotConnected,
    RequestPoolFull,
    RequestTable,
    RequestTimeout,
    parse_answer,
)


class TableTests(SynchronousTestCase):
    """The table alone, over a recording ``send``."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[tuple[str, str]] = []
        self.connected = {"001", "002"}
        self.table = RequestTable(self.send, self.clock, timeout=60, max_in_flight=2, max_answer=32)

    def send(self, agent_id: str, message: str) -> bool:
        """Record a message to a connected agent."""
        if agent_id not in self.connected:
            return False
        self.sent.append((agent_id, message))
        return True

    def counter(self, index: int = -1) -> str:
        """The counter of a sent question."""
        return self.sent[index][1].split(" ")[1]

    def test_question_and_answer(self) -> None:
        """The question goes out as '#!-req <counter> <payload>'; its answer fires the Deferred."""
        result = self.table.ask("001", "logcollector getstate")
        agent_id, message = self.sent[0]
        self.assertEqual(agent_id, "001")
        self.assertTrue(message.startswith("#!-req "))
        self.assertTrue(message.endswith(" logcollector getstate"))
        self.assertTrue(self.table.answer("001", f"{self.counter()} ok {{}}"))
        self.assertEqual(self.successResultOf(result), "ok {}")
        self.assertEqual(self.table.in_flight, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_counters_differ_and_answers_match_their_question(self) -> None:
        """Two questions get distinct counters; answers in any order reach the right one."""
        first = self.table.ask("001", "agent getstate")
        second = self.table.ask("001", "com getconfig active-response")
        self.assertNotEqual(self.counter(0), self.counter(1))
        self.table.answer("001", f"{self.counter(1)} ok 2")
        self.table.answer("001", f"{self.counter(0)} ok 1")
        self.assertEqual(self.successResultOf(first), "ok 1")
        self.assertEqual(self.successResultOf(second), "ok 2")

    def test_unknown_counter_or_other_agent(self) -> None:
        """An answer with an unknown counter, or from another agent, resolves nothing."""
        result = self.table.ask("001", "agent getstate")
        self.assertFalse(self.table.answer("001", "ffff ok {}"))
        self.assertFalse(self.table.answer("002", f"{self.counter()} ok {{}}"))
        self.assertNoResult(result)
        self.assertEqual(self.table.unmatched, 2)

    def test_timeout(self) -> None:
        """No answer within the time-out fails with RequestTimeout; a late answer is ignored."""
        result = self.table.ask("001", "agent getstate")
        self.clock.advance(59)
        self.assertNoResult(result)
        self.clock.advance(1)
        self.failureResultOf(result, RequestTimeout)
        self.assertFalse(self.table.answer("001", f"{self.counter()} ok {{}}"))

    def test_not_connected(self) -> None:
        """An agent without a connection is refused at once."""
        self.assertRaises(AgentNotConnected, self.table.ask, "009", "agent getstate")
        self.assertEqual(self.table.in_flight, 0)

    def test_agent_gone(self) -> None:
        """Losing the agent fails its questions, not the others'."""
        mine = self.table.ask("001", "agent getstate")
        other = self.table.ask("002", "agent getstate")
        self.table.agent_gone("001")
        self.failureResultOf(mine, AgentNotConnected)
        self.assertNoResult(other)

    def test_pool_bound(self) -> None:
        """Past max_in_flight, a question is refused until one is answered."""
        first = self.table.ask("001", "a getstate")
        second = self.table.ask("001", "b getstate")
        self.assertRaises(RequestPoolFull, self.table.ask, "001", "c getstate")
        self.clock.advance(60)
        self.failureResultOf(first, RequestTimeout)
        self.failureResultOf(second, RequestTimeout)
        self.assertNoResult(self.table.ask("001", "c getstate"))

    def test_answer_size_bound(self) -> None:
        """An answer larger than max_answer fails the question."""
        result = self.table.ask("001", "agent getstate")
        self.table.answer("001", f"{self.counter()} ok " + "x" * 40)
        self.failureResultOf(result, AgentAnswerError)

    def test_bad_payload(self) -> None:
        """Empty, multi-line or oversized payloads are refused."""
        for payload in ("", "a\nb", "x" * 2000):
            self.assertRaises(ValueError, self.table.ask, "001", payload)
        self.assertEqual(self.sent, [])

    def test_cancel_forgets(self) -> None:
        """Cancelling a question removes it and its timer."""
        result = self.table.ask("001", "agent getstate")
        result.cancel()
        self.failureResultOf(result)
        self.assertEqual(self.table.in_flight, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_parse_answer(self) -> None:
        """'ok <json>' gives the JSON; 'err <text>' and anything else raise AgentAnswerError."""
        self.assertEqual(parse_answer('ok {"a": 1}'), {"a": 1})
        error = self.assertRaises(AgentAnswerError, parse_answer, "err Unrecognized command")
        self.assertEqual(str(error), "Unrecognized command")
        self.assertRaises(AgentAnswerError, parse_answer, "ok {bad")
        self.assertRaises(AgentAnswerError, parse_answer, "maybe")


class ChannelRequestTests(ChannelTestCase):
    """Questions through a real channel factory and encrypted agent frames."""

    def active_agent(self) -> tuple[FakeAgent, object, object]:
        """Agent 001 connected and active."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        proto.dataReceived(agent.frame(_keepalive()))
        agent.read(transport)
        return agent, proto, transport

    def test_round_trip(self) -> None:
        """The agent receives '#!-req', its encrypted answer resolves the question."""
        agent, proto, transport = self.active_agent()
        result = self.factory.requests.ask("001", "logcollector getstate")
        (sent,) = agent.read(transport)  # type: ignore[arg-type]
        header, counter, payload = sent.decode().split(" ", 2)
        self.assertEqual((header, payload), ("#!-req", "logcollector getstate"))
        proto.dataReceived(agent.frame(f'#!-req {counter} ok {{"x": 1}}'))  # type: ignore[attr-defined]
        self.assertEqual(parse_answer(self.successResultOf(result)), {"x": 1})

    def test_disconnect_fails_question(self) -> None:
        """Closing the agent's connection fails its pending question."""
        _, proto, _ = self.active_agent()
        result = self.factory.requests.ask("001", "agent getstate")
        proto.connectionLost()  # type: ignore[attr-defined]
        self.failureResultOf(result, AgentNotConnected)

    def test_stop_fails_questions(self) -> None:
        """Stopping the listener fails the questions in flight and leaves no timer."""
        self.active_agent()
        result = self.factory.requests.ask("001", "agent getstate")
        self.factory.stopFactory()
        self.failureResultOf(result, AgentNotConnected)
        self.assertEqual(self.factory.requests.in_flight, 0)

    def test_not_connected(self) -> None:
        """Asking an agent with no connection raises AgentNotConnected."""
        self.assertRaises(AgentNotConnected, self.factory.requests.ask, "002", "agent getstate")


class DatagramRequestTests(ChannelTestCase):
    """Questions to a UDP agent: the manager acknowledges its answer, as remoted does."""

    def setUp(self) -> None:
        """A channel with a UDP listener on a fake transport."""
        super().setUp()
        self.udp = AgentDatagramProtocol(self.factory)
        self.transport = FakeDatagramTransport()
        self.udp.makeConnection(self.transport)

    payload = staticmethod(DatagramTests.payload)
    replies = DatagramTests.replies

    def test_answer_is_acknowledged(self) -> None:
        """An answer over UDP is acked with '#!-req <counter> ack'; the agent's own ack of
        the question is not an answer."""
        agent = FakeAgent(self.one)
        source = ("10.0.0.1", 41000)
        self.udp.datagramReceived(self.payload(agent, _keepalive()), source)
        self.replies(agent)
        result = self.factory.requests.ask("001", "agent getstate")
        ((question, _),) = self.replies(agent)
        counter = question.decode().split(" ")[1]
        self.udp.datagramReceived(self.payload(agent, f"#!-req {counter} ack"), source)
        self.assertNoResult(result)
        self.assertEqual(self.replies(agent), [])
        self.udp.datagramReceived(self.payload(agent, f"#!-req {counter} ok {{}}"), source)
        self.assertEqual(self.successResultOf(result), "ok {}")
        self.assertEqual(self.replies(agent), [(f"#!-req {counter} ack".encode(), source)])

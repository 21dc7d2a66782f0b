"""Tests for wazuhcluster.agents.agent_counters and the agent channel's per-agent counts."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.test_agent_channel import ChannelTestCase, FakeAgent, _keepalive
from wazuhcluster.agents import agent_counters as counted
from wazuhcluster.agents import control, secure


def _flat(metrics: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


class AgentCountersTests(SynchronousTestCase):
    """The record of each agent: counted, shaped as Wazuh's, dropped when forgotten."""

    def test_count_shape_and_forget(self) -> None:
        """Counts land in Wazuh's remoted fields; an unknown agent is all 0; forget and
        retain drop records."""
        now = [5.0]
        counters = counted.AgentCounters(lambda: now[0])
        counters.count("001", counted.EVENT)
        counters.count("001", counted.EVENT)
        counters.count("001", counted.KEEPALIVE)
        counters.count("002", counted.SHARED)
        flat = _flat(counters.remoted_metrics("001"))
        self.assertEqual(flat["messages.received_breakdown.event"], 2)
        self.assertEqual(flat["messages.received_breakdown.control_breakdown.keepalive"], 1)
        self.assertEqual(counters.started("001"), 5.0)
        self.assertEqual(set(_flat(counters.remoted_metrics("009")).values()), {0})
        counters.forget("001")
        self.assertIsNone(counters.started("001"))
        counters.retain({"003"})
        self.assertEqual(len(counters), 0)


class ChannelCountsTests(ChannelTestCase):
    """The agent channel counts each agent's messages as remoted does."""

    def test_messages_counted_per_agent(self) -> None:
        """Startup, keep-alives, events, requests and shutdown are counted for the agent
        that sent them, with the acks sent back and active responses sent to it."""
        agent = FakeAgent(self.one)
        proto, transport = self.connect()
        proto.dataReceived(agent.frame(control.format_startup("v4.14.7")))
        proto.dataReceived(agent.frame(_keepalive()) + agent.frame(_keepalive()))
        proto.dataReceived(agent.frame("1:/var/log/auth.log:sshd: fail"))
        proto.dataReceived(agent.frame("1:/var/log/auth.log:sshd: again"))
        proto.dataReceived(agent.frame("#!-req 12 ok {}"))
        self.assertTrue(self.factory.send_to_agent("001", "#!-execd restart-wazuh0 - - -"))
        self.assertTrue(self.factory.send_to_agent("001", "#!-force_reconnect"))
        proto.dataReceived(agent.frame(control.SHUTDOWN))
        flat = _flat(self.factory.agent_counters.remoted_metrics("001"))
        self.assertEqual(
            {key: value for key, value in flat.items() if value},
            {
                "messages.received_breakdown.control": 5,
                "messages.received_breakdown.control_breakdown.startup": 1,
                "messages.received_breakdown.control_breakdown.keepalive": 2,
                "messages.received_breakdown.control_breakdown.request": 1,
                "messages.received_breakdown.control_breakdown.shutdown": 1,
                "messages.received_breakdown.event": 2,
                "messages.sent_breakdown.ack": 3,
                "messages.sent_breakdown.ar": 1,
            },
        )
        self.assertEqual(self.factory.agent_counters.started("001"), 10_000)
        self.assertIsNone(self.factory.agent_counters.started("002"))

    def test_removed_agent_dropped(self) -> None:
        """An agent whose key is removed loses its record, at once or at a full reload."""
        one, three = FakeAgent(self.one), FakeAgent(self.three)
        proto, _ = self.connect()
        proto.dataReceived(one.frame(_keepalive()))
        other, _ = self.connect("10.0.0.3")
        other.dataReceived(three.frame(_keepalive()))
        self.factory.set_keys(self.keys.updated([], ["001"]), changed=["001"])
        self.assertIsNone(self.factory.agent_counters.started("001"))
        self.assertIsNotNone(self.factory.agent_counters.started("003"))
        self.factory.set_keys(secure.KeyStore([self.two]))
        self.assertEqual(len(self.factory.agent_counters), 0)

"""POST /events: log lines sent through the API are analysed as the manager's own."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness

LINE = "Dec  4 10:00:00 host sshd[12]: Failed password for invalid user bob from 10.0.0.9"


class EventTests(SynchronousTestCase):
    """What POST /events queues, refuses and limits."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)

    def test_events_are_queued_as_agent_000(self) -> None:
        """Each event reaches analysis from agent 000 at location API-Webhook (queue 1); one
        longer than analysis takes is a failed item (1012)."""
        answer = self.api.call("POST", "/events", {"events": [LINE, '{"a": 1}', "x" * 70_000]})
        self.assertEqual(answer.status, 200, answer.raw)
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], [LINE, '{"a": 1}'])
        self.assertEqual(data["failed_items"][0]["error"]["code"], 1012)
        self.assertEqual(answer.json["error"], 2)
        queued = list(self.api.analysis.queue)
        self.assertEqual([event.message for event in queued], [LINE, '{"a": 1}'])
        first = queued[0]
        self.assertEqual((first.agent_id, first.queue, first.location), ("000", "1", "API-Webhook"))
        self.assertEqual(first.name, self.api.config.cluster.node_name)

    def test_limits(self) -> None:
        """More than 100 events is 400; the 31st request of a minute is 429 (6005)."""
        too_many = self.api.call("POST", "/events", {"events": ["a"] * 101})
        self.assertEqual(
            (too_many.status, too_many.json["title"]), (400, "Events bulk size exceeded")
        )
        for _ in range(29):
            self.assertEqual(self.api.call("POST", "/events", {"events": ["a"]}).status, 200)
        limited = self.api.call("POST", "/events", {"events": ["a"]})
        self.assertEqual((limited.status, limited.json["error"]), (429, 6005))
        self.api.clock.advance(61)
        self.assertEqual(self.api.call("POST", "/events", {"events": ["a"]}).status, 200)
        wrong = self.api.call("POST", "/events", {"events": [1]})
        self.assertEqual(wrong.status, 400)

    def test_without_analysis_is_1017(self) -> None:
        """A master that runs no analysis answers 1017."""
        self.api.node.ruleset = None
        answer = self.api.call("POST", "/events", {"events": [LINE]})
        self.assertEqual((answer.status, answer.json["error"]), (500, 1017))

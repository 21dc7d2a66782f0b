"""Restarts and active responses through the API: the execd messages, who is asked, and
what fails (``PUT /agents/restart``, ``/agents/{id}/restart``, ``/agents/group/{id}/restart``,
``/agents/node/{id}/restart``, ``PUT /active-response``)."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness
from wazuhcluster.api.agent_commands import ar_message, restart_message, shell_escape


class MessageTests(SynchronousTestCase):
    """The execd messages, by agent version."""

    def test_restart(self) -> None:
        """JSON restart-wazuh0 from 4.2.0 on, restart-ossec0 before; both with the tail."""
        current = restart_message("Wazuh v4.14.7")
        self.assertTrue(current.startswith("#!-execd {"))
        self.assertTrue(current.endswith(" - null (from_the_server) (no_rule_id)"))
        body = json.loads(
            current[len("#!-execd ") : -len(" - null (from_the_server) (no_rule_id)")]
        )
        self.assertEqual(body["command"], "restart-wazuh0")
        self.assertEqual(body["parameters"], {"extra_args": [], "alert": {}})
        self.assertEqual(
            restart_message("Wazuh v4.1.5"),
            "#!-execd restart-ossec0 - null (from_the_server) (no_rule_id)",
        )

    def test_active_response(self) -> None:
        """JSON with origin, command, arguments and alert; the old form escapes arguments."""
        text = ar_message("Wazuh v4.9.0", "firewall-drop0", ["-", "1.2.3.4"], {"data": {}}, "w1")
        body = json.loads(text[len("#!-execd ") :])
        self.assertEqual(body["origin"], {"name": "w1", "module": "API"})
        self.assertEqual(body["command"], "firewall-drop0")
        self.assertEqual(body["parameters"]["extra_args"], ["-", "1.2.3.4"])
        self.assertEqual(body["parameters"]["alert"], {"data": {}})
        old = ar_message("Wazuh v3.13.1", "!custom.sh", ["a;b", "$x"], {}, None)
        self.assertEqual(old, "#!-execd !custom.sh a\\;b \\$x")
        self.assertEqual(ar_message("v4.0.0", "cmd0", [], {}, None), "#!-execd cmd0 - -")
        self.assertEqual(shell_escape("(x)"), "\\(x\\)")


class Reconnector:
    """The node's agents feature as the API reaches it: records each message and reports
    the agents in ``connected`` as reached (by node)."""

    def __init__(self, connected: dict[str, str]) -> None:
        self.connected = connected
        self.sent: list[tuple[str, list[str]]] = []

    async def send_to_agents(self, message: str, agents: list[str]) -> dict[str, list[str]]:
        """Record the message; the connected agents among ``agents``, by node."""
        self.sent.append((message, list(agents)))
        found: dict[str, list[str]] = {}
        for agent_id in agents:
            if agent_id in self.connected:
                found.setdefault(self.connected[agent_id], []).append(agent_id)
        return found

    async def reconnect(self, agents: list[str], count: int) -> dict[str, list[str]]:
        """Not used here."""
        return {}


class CommandEndpointTests(SynchronousTestCase):
    """The endpoints over a harness whose agents feature records what it sends."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        api = self.api
        api.store.create_group("web")
        self.new = api.enroll("new", "10.0.0.1", ("web",))
        self.old = api.enroll("old", "10.0.0.2", ("web",))
        self.off = api.enroll("off", "10.0.0.3")
        self.lost = api.enroll("lost", "10.0.0.4")
        api.report(self.new, "active", "w1", version="Wazuh v4.14.7")
        api.report(self.old, "active", "master", version="Wazuh v4.1.0")
        api.report(self.off, "disconnected", "w1", version="Wazuh v4.14.7")
        # Active in the registry, but reached by no node (it just left).
        api.report(self.lost, "active", "w1", version="Wazuh v4.14.7")
        self.reconnector = Reconnector({self.new: "w1", self.old: "master", self.off: "w1"})
        api.node.reconnector = self.reconnector

    def failed(self, answer: Any) -> dict[int, list[str]]:
        """The failed items of a 200 answer, by code."""
        self.assertEqual(answer.status, 200, answer.raw)
        return {item["error"]["code"]: item["id"] for item in answer.json["data"]["failed_items"]}

    def test_restart_listed_agents(self) -> None:
        """Each active agent gets the message of its version; inactive, unreached, unknown
        and 000 fail (1707, 1701, 1703)."""
        ids = f"000,{self.new},{self.old},{self.off},{self.lost},999"
        answer = self.api.call("PUT", f"/agents/restart?agents_list={ids}")
        self.assertEqual(answer.json["data"]["affected_items"], [self.new, self.old])
        self.assertEqual(
            self.failed(answer),
            {1701: ["999"], 1703: ["000"], 1707: sorted([self.off, self.lost])},
        )
        self.assertEqual(answer.json["error"], 2)
        messages = {message: agents for message, agents in self.reconnector.sent}
        self.assertEqual(messages[restart_message("Wazuh v4.1.0")], [self.old])
        self.assertEqual(messages[restart_message("Wazuh v4.14.7")], [self.new, self.lost])

    def test_restart_everyone_and_one(self) -> None:
        """Without a list, the agents that cannot be restarted are left out of the answer;
        one agent by its path."""
        answer = self.api.call("PUT", "/agents/restart")
        self.assertEqual(answer.json["data"]["affected_items"], [self.new, self.old])
        self.assertEqual((self.failed(answer), answer.json["error"]), ({}, 0))
        one = self.api.call("PUT", f"/agents/{self.off}/restart")
        self.assertEqual(self.failed(one), {1707: [self.off]})
        self.assertEqual(one.json["message"], "Restart command was not sent to any agent")

    def test_restart_by_group_and_node(self) -> None:
        """A group's agents; a node's agents; an unknown group is 404 (1710)."""
        group = self.api.call("PUT", "/agents/group/web/restart")
        self.assertEqual(group.json["data"]["affected_items"], [self.new, self.old])
        node = self.api.call("PUT", "/agents/node/master/restart")
        self.assertEqual(node.json["data"]["affected_items"], [self.old])
        ghost = self.api.call("PUT", "/agents/group/ghost/restart")
        self.assertEqual((ghost.status, ghost.json["error"]), (404, 1710))

    def test_active_response(self) -> None:
        """A command of ar.conf (or a '!script') goes to the listed active agents; 000 is
        left out; an unknown command is 1652, an empty one 1650."""
        (self.api.home.shared / "ar.conf").write_text(
            "restart-wazuh0 - restart-wazuh - 0\nfirewall-drop0 - firewall-drop - 0\n"
        )
        body = {"command": "firewall-drop0", "arguments": ["-", "1.2.3.4"]}
        answer = self.api.call(
            "PUT", f"/active-response?agents_list=000,{self.new},{self.off}", body
        )
        self.assertEqual(answer.json["data"]["affected_items"], [self.new])
        self.assertEqual(self.failed(answer), {1707: [self.off]})
        message, agents = self.reconnector.sent[-1]
        self.assertEqual(agents, [self.new])
        self.assertEqual(json.loads(message[len("#!-execd ") :])["command"], "firewall-drop0")
        custom = self.api.call("PUT", "/active-response", {"command": "!block.sh"})
        self.assertEqual(custom.json["data"]["affected_items"], [self.new, self.old])
        unknown = self.api.call("PUT", "/active-response", {"command": "nope0"})
        self.assertEqual((unknown.status, unknown.json["error"]), (400, 1652))
        empty = self.api.call("PUT", "/active-response", {"command": ""})
        self.assertEqual((empty.status, empty.json["error"]), (400, 1650))
        huge = self.api.call(
            "PUT", "/active-response", {"command": "!x", "arguments": ["a" * 7000]}
        )
        self.assertEqual(huge.status, 400)

    def test_without_a_node_channel_nothing_is_reached(self) -> None:
        """A master without an agents feature reaches no agent: all fail with 1707."""
        self.api.node.reconnector = None
        answer = self.api.call("PUT", f"/agents/{self.new}/restart")
        self.assertEqual(self.failed(answer), {1707: [self.new]})

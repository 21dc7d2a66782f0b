"""``GET /agents/{agent_id}/config/{component}/{configuration}`` and
``GET /agents/{agent_id}/stats/{component}``: questions to the agent itself, asked by the
node it is connected to (a worker stand-in whose agents answer as simulated 4.x agents)."""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness, WorkerStandIn, make_user
from wazuhcluster.agents import agent_counters as counted
from wazuhcluster.agents.requests import RequestTable
from wazuhcluster.api.agent_questions import config_data, stats_data
from wazuhcluster.api.errors import ApiError
from wazuhcluster.node.answers import AGENT_REQUEST_TIMEOUT


class AgentQuestionTests(SynchronousTestCase):
    """An active 4.14 agent on worker w1, an old one, and one never connected."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        link = self.api.connect_worker("w1")
        assert isinstance(link.protocol, WorkerStandIn)
        self.worker: WorkerStandIn = link.protocol
        self.active = self.api.enroll("web1")
        self.api.report(self.active, "active", "w1", version="Wazuh v4.14.7")
        self.old = self.api.enroll("old1")
        self.api.report(self.old, "active", "w1", version="Wazuh v3.6.0")
        self.never = self.api.enroll("never1")

    def test_config_asks_the_agent(self) -> None:
        """The agent's getconfig answer is the data; the worker asked it that."""
        answer = self.api.call("GET", f"/agents/{self.active}/config/agent/client")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.json["error"], 0)
        self.assertEqual(answer.json["data"]["client"]["server"][0]["port"], 1514)
        self.assertEqual(self.worker.agent_questions, [(self.active, "agent getconfig client")])

    def test_config_errors(self) -> None:
        """Wazuh's codes: 1740 not active, 1735 too old, 1701 unknown, 1116 an err answer,
        1117 a component the agent has no socket for, 400 a component not in the enum."""
        cases = [
            (f"/agents/{self.never}/config/agent/client", 400, 1740),
            (f"/agents/{self.old}/config/agent/client", 400, 1735),
            ("/agents/999/config/agent/client", 404, 1701),
            (f"/agents/{self.active}/config/agent/internal", 400, 1116),
            (f"/agents/{self.active}/config/auth/auth", 400, 1117),
        ]
        for path, status, code in cases:
            answer = self.api.call("GET", path)
            self.assertEqual((answer.status, answer.json.get("error")), (status, code), path)
        self.assertEqual(
            self.api.call("GET", f"/agents/{self.active}/config/nope/client").status, 400
        )

    def test_agent_on_a_node_not_connected(self) -> None:
        """An agent reported by a node that is gone: 1117."""
        self.api.report(self.active, "active", "ghost", version="Wazuh v4.14.7")
        answer = self.api.call("GET", f"/agents/{self.active}/config/agent/client")
        self.assertEqual((answer.status, answer.json["error"]), (400, 1117))

    def test_manager_config_is_the_masters(self) -> None:
        """Agent 000's configuration is the master's own active configuration."""
        answer = self.api.call("GET", "/agents/000/config/auth/auth")
        self.assertEqual(answer.status, 200)
        self.assertIn("auth", answer.json["data"])
        self.assertEqual(self.worker.agent_questions, [])

    def test_stats(self) -> None:
        """getstate's data is the affected item; 000, unknown and old agents fail."""
        answer = self.api.call("GET", f"/agents/{self.active}/stats/logcollector").json
        (item,) = answer["data"]["affected_items"]
        self.assertEqual(item["global"]["files"][0]["targets"], [{"name": "agent", "drops": 0}])
        self.assertEqual(self.worker.agent_questions, [(self.active, "logcollector getstate")])
        for agent_id, code in (("000", 1310), ("999", 1701), (self.old, 1735)):
            failed = self.api.call("GET", f"/agents/{agent_id}/stats/agent").json
            self.assertEqual(failed["error"], 1, agent_id)
            self.assertEqual(failed["data"]["failed_items"][0]["error"]["code"], code, agent_id)

    def test_rbac(self) -> None:
        """Without agent:read on the agent: 403 4000."""
        token = make_user(self.api, "clusteronly", "cluster_readonly")
        for path in (
            f"/agents/{self.active}/config/agent/client",
            f"/agents/{self.active}/stats/agent",
        ):
            refused = self.api.call("GET", path, token=token)
            self.assertEqual((refused.status, refused.json["error"]), (403, 4000), path)
        self.assertEqual(self.worker.agent_questions, [])


class AnswerParsingTests(SynchronousTestCase):
    """How agents' answers map to data and Wazuh's codes."""

    def test_config_answers(self) -> None:
        """ok JSON is data; err answers are 1117 (socket missing) or 1116."""
        self.assertEqual(config_data('ok {"a": 1}', "agent", "client"), {"a": 1})
        missing = self.assertRaises(
            ApiError, config_data, "err No such file or directory", "auth", "auth"
        )
        self.assertEqual(missing.code, 1117)
        other = self.assertRaises(
            ApiError, config_data, "err Could not get requested section", "agent", "x"
        )
        self.assertEqual(other.code, 1116)

    def test_state_answers(self) -> None:
        """The agent's times become the API's; an error state is 1117 with its message."""
        data = stats_data(
            '{"error":0,"data":{"status":"connected","last_keepalive":"2026-01-02 03:04:05",'
            '"last_ack":""}}'
        )
        self.assertEqual(data["last_keepalive"], "2026-01-02T03:04:05Z")
        self.assertEqual(data["last_ack"], "")
        error = self.assertRaises(
            ApiError, stats_data, '{"error":1,"data":{},"message":"Statistics unavailable"}'
        )
        self.assertEqual(error.code, 1117)
        self.assertIn("Statistics unavailable", error.detail)
        self.assertRaises(ApiError, stats_data, "err Disconnected")


class NodeSideTests(SynchronousTestCase):
    """The node question ``agent_request`` over a node's own request table."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.clock = Clock()
        self.sent: list[tuple[str, str]] = []
        self.table = RequestTable(
            lambda agent_id, message: (
                agent_id == "001" and not self.sent.append((agent_id, message))
            ),
            self.clock,
        )
        self.answers = self.api.node.answers
        self.answers.ask_agent = self.table.ask

    def ask(self, **arguments: object) -> Deferred[dict[str, object]]:
        """The node's answer to one agent_request."""
        return ensureDeferred(self.answers.answer("agent_request", arguments))

    def test_answer_comes_back(self) -> None:
        """The agent's answer text is the node's answer."""
        result = self.ask(agent_id="001", payload="agent getstate")
        counter = self.sent[0][1].split(" ")[1]
        self.table.answer("001", f"{counter} ok {{}}")
        self.assertEqual(self.successResultOf(result), {"answer": "ok {}"})

    def test_not_connected_and_timeout_are_1117(self) -> None:
        """An agent not connected here, or silent past the node's wait, is 1117."""
        self.assertEqual(
            self.failureResultOf(
                self.ask(agent_id="002", payload="agent getstate"), ApiError
            ).value.code,
            1117,
        )
        silent = self.ask(agent_id="001", payload="agent getstate")
        self.clock.advance(AGENT_REQUEST_TIMEOUT)
        self.assertEqual(self.failureResultOf(silent, ApiError).value.code, 1117)

    def test_bad_arguments(self) -> None:
        """A malformed question is refused before anything is sent."""
        for arguments in (
            {"agent_id": "x", "payload": "a"},
            {"agent_id": "001", "payload": "a\nb"},
            {},
        ):
            self.assertEqual(
                self.failureResultOf(self.ask(**arguments), ApiError).value.status, 400
            )
        self.assertEqual(self.sent, [])


class AgentDaemonStatsTests(SynchronousTestCase):
    """``GET /agents/{agent_id}/daemons/stats``: the counters of the node the agent reports
    to, in Wazuh's per-agent shapes."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        link = self.api.connect_worker("w1")
        assert isinstance(link.protocol, WorkerStandIn)
        self.worker: WorkerStandIn = link.protocol
        self.active = self.api.enroll("web1")
        self.api.report(self.active, "active", "w1", version="Wazuh v4.14.7")

    def test_counters_of_the_agents_node(self) -> None:
        """The worker's remoted counts and its intake's events per queue letter come back
        under each daemon, for this agent only; daemons_list filters."""
        for slot in (counted.KEEPALIVE, counted.CONTROL, counted.EVENT, counted.EVENT):
            self.worker.agent_counters.count(self.active, slot)
        self.worker.agent_counters.count("999", counted.EVENT)
        analysis = self.worker.analysis
        analysis.agent_queues[self.active] = {"8": 2, "1": 3, "p": 1}
        answer = self.api.call("GET", f"/agents/{self.active}/daemons/stats")
        self.assertEqual(answer.status, 200)
        remoted, analysisd = answer.json["data"]["affected_items"]
        self.assertEqual((remoted["name"], analysisd["name"]), ("wazuh-remoted", "wazuh-analysisd"))
        (agent,) = remoted["agents"]
        self.assertEqual(agent["id"], int(self.active))
        received = agent["metrics"]["messages"]["received_breakdown"]
        self.assertEqual((received["event"], received["control"]), (2, 1))
        self.assertEqual(received["control_breakdown"]["keepalive"], 1)
        events = analysisd["agents"][0]["metrics"]["events"]
        self.assertEqual(events["processed"], 6)
        modules = events["received_breakdown"]["decoded_breakdown"]["modules_breakdown"]
        self.assertEqual((modules["syscheck"], modules["sca"]), (2, 1))
        self.assertEqual(modules["logcollector_breakdown"]["others"], 3)
        only = self.api.call(
            "GET", f"/agents/{self.active}/daemons/stats?daemons_list=wazuh-analysisd"
        ).json["data"]["affected_items"]
        self.assertEqual([item["name"] for item in only], ["wazuh-analysisd"])
        self.assertIn("AskNode", self.worker.asked)

    def test_unknown_agent_and_rbac(self) -> None:
        """An unknown agent fails each daemon with 1701; without agent:read, 403 4000;
        an agent on a node that is gone fails with 1117."""
        unknown = self.api.call("GET", "/agents/999/daemons/stats").json
        self.assertEqual(unknown["error"], 1)
        self.assertEqual(unknown["data"]["failed_items"][0]["error"]["code"], 1701)
        token = make_user(self.api, "clusteronly", "cluster_readonly")
        refused = self.api.call("GET", f"/agents/{self.active}/daemons/stats", token=token)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))
        self.api.report(self.active, "active", "ghost", version="Wazuh v4.14.7")
        gone = self.api.call("GET", f"/agents/{self.active}/daemons/stats").json
        self.assertEqual(gone["error"], 1)
        self.assertEqual(gone["data"]["failed_items"][0]["error"]["code"], 1117)

    def test_agents_daemons_stats_arguments(self) -> None:
        """``agents_daemons_stats`` refuses a bad id or daemon list (400), and fails the
        daemons a node without counters cannot give."""
        answers = self.api.node.answers
        answers.agent_counters = None
        answers.agent_queues = None
        for arguments in (
            {"agent_id": "1; x", "daemons": ["wazuh-remoted"]},
            {"agent_id": "001", "daemons": "wazuh-remoted"},
            {"agent_id": "001", "daemons": ["a", "b", "c"]},
        ):
            refused = self.failureResultOf(
                ensureDeferred(answers.answer("agents_daemons_stats", arguments)), ApiError
            )
            self.assertEqual(refused.value.status, 400, arguments)
        answer = self.successResultOf(
            ensureDeferred(
                answers.answer(
                    "agents_daemons_stats",
                    {"agent_id": "001", "daemons": ["wazuh-remoted", "wazuh-analysisd"]},
                )
            )
        )
        self.assertEqual(
            (answer["items"], answer["failed"]), ([], ["wazuh-remoted", "wazuh-analysisd"])
        )

"""Restarts and active responses through the API reach agents connected to a worker.

A master process serving the API, a worker process and simulated agents reporting to the
worker (``wazuh-agent-sim``, which counts the ``#!-execd`` commands it receives): the
API's commands go from the master over the cluster link to the worker that holds each
agent, and from there over the agent's encrypted channel.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
import ssl
from pathlib import Path
from typing import Any

from tests.helpers import short_temp_dir
from tests.integration.common import DEADLINE, ClusterTestCase
from tests.test_api_fixtures import cheap_users
from wazuhcluster.config.api_settings import api_dir
from wazuhcluster.testing.devcluster import LocalCluster, wait_for

USER, PASSWORD = "ops", "integration-password"


class AgentCommandTests(ClusterTestCase):
    """PUT /agents/restart and PUT /active-response, end to end."""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One HTTPS request to the master's API (its self-signed certificate accepted)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=30)
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            headers["content-type"] = "application/json"
            data = json.dumps(body)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def agents_on_worker(self, count: int, prefix: str) -> tuple[Any, list[str]]:
        """A master with the API and worker1, ``count`` simulated agents active on worker1:
        the simulator process and the agents' ids."""
        cluster = LocalCluster(short_temp_dir(self), workers=["worker1"], with_api=True)
        cluster.write()
        master_home = cluster.home("master")
        users = api_dir(master_home) / "users.json"
        users.parent.mkdir(parents=True, exist_ok=True)
        cheap_users(users, {USER: PASSWORD})
        self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Successfully connected")
        self.port = cluster.node_ports("master")["api"]
        self.token = ""
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        def logged_in() -> bool:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context)
                conn.request(
                    "POST",
                    "/security/user/authenticate",
                    headers={"authorization": f"Basic {basic}"},
                )
                answer = conn.getresponse()
                if answer.status != 200:
                    return False
                self.token = json.loads(answer.read())["data"]["token"]
                return True
            except OSError:
                return False

        self.assertTrue(wait_for(logged_in, DEADLINE, 0.5), "the API did not answer")
        #: The simulator's summary lines, one every half second.
        self.reports = Path(self.mktemp())
        simulator = self.simulate_on(
            cluster,
            "worker1",
            "--agents",
            str(count),
            "--name-prefix",
            prefix,
            "--report-every",
            "0.5",
            output=self.reports,
        )

        def active() -> list[str]:
            status, answer = self.call("GET", "/agents?q=status=active;node_name=worker1")
            if status != 200:
                return []
            return [item["id"] for item in answer["data"]["affected_items"]]

        self.assertTrue(wait_for(lambda: len(active()) == count, DEADLINE, 0.5), active())
        return simulator, active()

    def test_commands_reach_agents_on_a_worker(self) -> None:
        """Three agents on worker1 get one restart and one active response each."""
        simulator, ids = self.agents_on_worker(3, "cmd-")
        status, restarted = self.call("PUT", "/agents/restart?agents_list=" + ",".join(ids))
        self.assertEqual((status, restarted["data"]["affected_items"]), (200, ids), restarted)
        status, ran = self.call(
            "PUT", "/active-response", {"command": "!noop.sh", "arguments": ["x"]}
        )
        self.assertEqual((status, sorted(ran["data"]["affected_items"])), (200, ids), ran)

        # Sent is not yet received: wait until the agents' own counters show both messages.
        self.assertTrue(
            wait_for(lambda: self.last_report().get("execd_received", 0) >= 6, DEADLINE, 0.5),
            self.last_report(),
        )
        simulator.send_signal(signal.SIGINT)
        simulator.wait(timeout=DEADLINE)
        self.assertEqual(self.last_report()["execd_received"], 6, self.last_report())

    def last_report(self) -> dict[str, Any]:
        """The simulator's latest whole summary line (empty before the first)."""
        try:
            lines = self.reports.read_text().splitlines()
        except FileNotFoundError:
            return {}
        for line in reversed(lines):
            try:
                found: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # a line being written, or a message that is not a summary
            return found
        return {}

    def test_questions_reach_agents_on_a_worker(self) -> None:
        """GET /agents/{id}/config/... and /stats/...: the master asks worker1, which asks
        the agent over its channel (#!-req), and the agent's own answer comes back; its
        daemons/stats are worker1's counters of it."""
        simulator, (agent_id,) = self.agents_on_worker(1, "ask-")
        status, config = self.call("GET", f"/agents/{agent_id}/config/agent/client")
        self.assertEqual(status, 200, config)
        server = config["data"]["client"]["server"][0]
        self.assertEqual((server["address"], server["protocol"]), ("127.0.0.1", "tcp"), config)
        status, files = self.call("GET", f"/agents/{agent_id}/config/logcollector/localfile")
        self.assertEqual(status, 200, files)
        self.assertTrue(files["data"]["localfile"], files)
        status, stats = self.call("GET", f"/agents/{agent_id}/stats/agent")
        self.assertEqual(status, 200, stats)
        (state,) = stats["data"]["affected_items"]
        self.assertEqual(state["status"], "connected", stats)
        self.assertRegex(state["last_keepalive"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        status, missing = self.call("GET", f"/agents/{agent_id}/config/auth/auth")
        self.assertEqual((status, missing["error"]), (400, 1117), missing)
        status, daemons = self.call("GET", f"/agents/{agent_id}/daemons/stats")
        self.assertEqual(status, 200, daemons)
        remoted, analysisd = daemons["data"]["affected_items"]
        (counted,) = remoted["agents"]
        received = counted["metrics"]["messages"]["received_breakdown"]
        self.assertEqual(counted["id"], int(agent_id), daemons)
        self.assertEqual(received["control_breakdown"]["startup"], 1, daemons)
        self.assertGreaterEqual(received["control_breakdown"]["request"], 4, daemons)
        self.assertGreaterEqual(counted["metrics"]["messages"]["sent_breakdown"]["ack"], 2)
        self.assertEqual(analysisd["name"], "wazuh-analysisd", daemons)

        simulator.send_signal(signal.SIGINT)
        simulator.wait(timeout=DEADLINE)
        self.assertEqual(self.last_report()["requests_answered"], 4, self.last_report())

"""The REST API over real HTTPS, on a real master with a real worker process.

The master runs in the test process (its whole service tree, the registry on its own
thread, the cluster listener with mutual TLS) so the API service can be attached to it
as the node will be once it is wired; the worker is a real ``twistd`` process that
connects to it. The test drives the API the way an operator's script does:
authenticate → list nodes → add agent → create and assign a group → healthcheck, and
checks that the agent's key reached the worker.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from xml.etree.ElementTree import fromstring

import attrs
from twisted.internet import defer, reactor, ssl, task
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from tests.helpers import short_temp_dir
from tests.test_api_fixtures import cheap_users
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.api.wiring import master_api
from wazuhcluster.config.api_settings import parse_api
from wazuhcluster.config.cluster import load_config
from wazuhcluster.config.sections import load_sections
from wazuhcluster.config.xmlconfig import Section
from wazuhcluster.master.integrity import INOTIFY_DEBOUNCE
from wazuhcluster.master.node import MasterService
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess

DEADLINE = 60.0
USER, PASSWORD = "ops", "integration-password"


@implementer(IBodyProducer)
class Body:
    """A small request body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802
        """Write everything at once."""
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        """Nothing to pause."""

    def stopProducing(self) -> None:  # noqa: N802
        """Nothing to stop."""


class ApiOverHttpsTests(TestCase):
    """A script's session against the API of a running master with a worker."""

    timeout = 120

    async def wait_until(self, condition: Any, what: str) -> None:
        """Poll ``condition`` on the reactor until true, or fail after the deadline."""
        end = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > end:
                self.fail(f"timed out waiting for {what}")
            await task.deferLater(reactor, 0.1, lambda: None)

    async def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        basic: str | None = None,
        xml: bytes | None = None,
    ) -> tuple[int, Any]:
        """One HTTPS request; returns the status and the decoded JSON body."""
        headers = Headers()
        if token:
            headers.addRawHeader(b"authorization", f"Bearer {token}".encode())
        if basic:
            headers.addRawHeader(b"authorization", f"Basic {basic}".encode())
        producer = None
        if body is not None:
            headers.addRawHeader(b"content-type", b"application/json")
            producer = Body(json.dumps(body).encode())
        if xml is not None:
            headers.addRawHeader(b"content-type", b"application/xml")
            producer = Body(xml)
        url = f"https://127.0.0.1:{self.port}{path}".encode()
        response = await self.agent.request(method.encode(), url, headers, producer)
        data = await readBody(response)
        return response.code, json.loads(data)

    async def test_operator_session(self) -> None:
        """authenticate → nodes → add agent → group → assign → agent.conf → healthcheck."""
        cluster = LocalCluster(short_temp_dir(self), workers=["worker1"])
        cluster.write()
        master_home = cluster.home("master")
        config = load_config(master_home.config_file, master_home, "master")
        master = MasterService(config, reactor, load_sections(config))
        api_xml = fromstring("<api><bind_addr>127.0.0.1</bind_addr></api>")
        parsed = parse_api(Section(api_xml, "test", "api"), master_home)
        settings = attrs.evolve(parsed, port=0, max_upload_size=4096)  # an ephemeral port
        cheap_users(settings.users_file, {USER: PASSWORD})
        api = master_api(config, master.node, master.node.manager, reactor, settings)
        assert api is not None
        api.setServiceParent(master)
        master.startService()
        # The master's inotify debounce is not cancelled on stop: let it fire first.
        self.addCleanup(task.deferLater, reactor, INOTIFY_DEBOUNCE + 0.2, lambda: None)
        self.addCleanup(master.stopService)
        listening = await api.listening
        self.port = listening.getHost().port
        trust = ssl.Certificate.loadPEM(settings.cert.read_bytes())
        self.agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))

        worker = NodeProcess(cluster.home("worker1"), "worker")
        worker.start()
        # SIGKILL: a SIGTERM'd worker waits on its link to this (then blocked) reactor.
        self.addCleanup(worker.kill)
        await self.wait_until(lambda: master.node.workers.get("worker1") is not None, "worker1")

        credentials = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        status, answer = await self.request(
            "POST", "/security/user/authenticate", basic=credentials
        )
        self.assertEqual(status, 200, answer)
        token = answer["data"]["token"]

        status, answer = await self.request("GET", "/cluster/nodes", token)
        self.assertEqual(status, 200, answer)
        names = [node["name"] for node in answer["data"]["affected_items"]]
        self.assertEqual(names, ["master", "worker1"])

        status, answer = await self.request(
            "POST", "/agents", token, {"name": "web-01", "ip": "10.1.2.3"}
        )
        self.assertEqual(status, 200, answer)
        agent_id = answer["data"]["id"]
        key_line = base64.b64decode(answer["data"]["key"]).decode()
        worker_keys = cluster.home("worker1").client_keys
        await self.wait_until(
            lambda: worker_keys.exists() and key_line in worker_keys.read_text(),
            "the key on worker1",
        )

        status, answer = await self.request("POST", "/groups", token, {"group_id": "web"})
        self.assertEqual(status, 200, answer)
        status, answer = await self.request("PUT", f"/agents/{agent_id}/group/web", token)
        self.assertEqual((status, answer["data"]["affected_items"]), (200, [agent_id]), answer)
        status, answer = await self.request(
            "GET", f"/agents?agents_list={agent_id}&select=group", token
        )
        self.assertEqual(answer["data"]["affected_items"][0]["group"], ["default", "web"])

        conf = (
            b"<agent_config>\n  <labels><label key='tier'>web</label></labels>\n</agent_config>\n"
        )
        status, answer = await self.request("PUT", "/groups/web/configuration", token, xml=conf)
        self.assertEqual(status, 200, answer)
        synced = cluster.home("worker1").shared / "web" / "agent.conf"
        await self.wait_until(
            lambda: synced.exists() and synced.read_bytes() == conf, "agent.conf on worker1"
        )

        status, answer = await self.request("GET", "/cluster/healthcheck", token)
        self.assertEqual(status, 200, answer)
        nodes = {item["info"]["name"]: item for item in answer["data"]["affected_items"]}
        self.assertEqual(set(nodes), {"master", "worker1"})
        self.assertIn("last_keep_alive", nodes["worker1"]["status"])
        self.assertIn(nodes["worker1"]["verdict"]["state"], ("ok", "lagging", "stale"))
        self.assertEqual(answer["data"]["n_connected_nodes"], 1)

        status, answer = await self.request("POST", "/agents", token, {"name": "x" * 10_000})
        self.assertEqual((status, answer["title"]), (413, "Request Entity Too Large"))
        status, answer = await self.request("GET", "/agents", None)
        self.assertEqual((status, answer["title"]), (401, "Unauthorized"))

    async def test_nodes_ruleset_and_logtest(self) -> None:
        """A worker answers /cluster/{node_id}/* over the link; a rule file PUT on the
        master reaches the worker, a broken one is refused and reaches nobody; logtest."""
        cluster = LocalCluster(short_temp_dir(self), workers=["worker1"])
        cluster.write()
        for name in ("master", "worker1"):
            install_default_ruleset(str(cluster.home(name).root))
        master_home = cluster.home("master")
        config = load_config(master_home.config_file, master_home, "master")
        master = MasterService(config, reactor, load_sections(config))
        api_xml = fromstring("<api><bind_addr>127.0.0.1</bind_addr></api>")
        parsed = parse_api(Section(api_xml, "test", "api"), master_home)
        settings = attrs.evolve(parsed, port=0)
        cheap_users(settings.users_file, {USER: PASSWORD})
        api = master_api(config, master.node, master.node.manager, reactor, settings)
        assert api is not None
        api.setServiceParent(master)
        master.startService()
        self.addCleanup(task.deferLater, reactor, INOTIFY_DEBOUNCE + 0.2, lambda: None)
        self.addCleanup(master.stopService)
        self.port = (await api.listening).getHost().port
        trust = ssl.Certificate.loadPEM(settings.cert.read_bytes())
        self.agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))
        worker = NodeProcess(cluster.home("worker1"), "worker")
        worker.start()
        self.addCleanup(worker.kill)
        await self.wait_until(lambda: master.node.workers.get("worker1") is not None, "worker1")
        credentials = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        status, answer = await self.request(
            "POST", "/security/user/authenticate", basic=credentials
        )
        token = answer["data"]["token"]

        status, answer = await self.request("GET", "/cluster/worker1/status", token)
        self.assertEqual(status, 200, answer)
        daemons = answer["data"]["affected_items"][0]
        self.assertEqual((daemons["wazuh-remoted"], daemons["wazuh-apid"]), ("running", "stopped"))
        status, answer = await self.request("GET", "/cluster/worker1/info", token)
        self.assertEqual(
            answer["data"]["affected_items"][0]["path"], str(cluster.home("worker1").root)
        )
        status, answer = await self.request("GET", "/cluster/worker1/logs?limit=5", token)
        self.assertEqual(status, 200, answer)
        self.assertGreater(answer["data"]["total_affected_items"], 0)
        status, answer = await self.request("GET", "/cluster/worker1/stats/analysisd", token)
        self.assertIn("events_received", answer["data"]["affected_items"][0])
        status, answer = await self.request("GET", "/cluster/worker1/daemons/stats", token)
        names = [item["name"] for item in answer["data"]["affected_items"]]
        self.assertEqual(names, ["wazuh-remoted", "wazuh-analysisd"], answer)
        path = "/cluster/worker1/configuration/com/cluster"
        status, answer = await self.request("GET", path, token)
        self.assertEqual(answer["data"]["affected_items"][0]["node_name"], "worker1", answer)
        status, answer = await self.request("GET", "/cluster/worker1/stats/hourly", token)
        self.assertEqual(len(answer["data"]["affected_items"][0]["averages"]), 24, answer)
        status, answer = await self.request("GET", "/manager/status", token)
        self.assertEqual(answer["data"]["affected_items"][0]["wazuh-apid"], "running")

        rule = (
            b'<group name="local,">\n  <rule id="100100" level="7">\n'
            b"    <if_sid>5716</if_sid>\n    <match>root</match>\n"
            b"    <description>Failed login for root.</description>\n  </rule>\n</group>\n"
        )
        status, answer = await self.request("PUT", "/rules/files/local.xml", token, xml=rule)
        self.assertEqual(status, 200, answer)
        synced = cluster.home("worker1").root / "etc" / "rules" / "local.xml"
        await self.wait_until(
            lambda: synced.exists() and synced.read_bytes() == rule, "local.xml on worker1"
        )
        broken = rule.replace(b'level="7"', b'level="99"')
        status, answer = await self.request("PUT", "/rules/files/broken.xml", token, xml=broken)
        self.assertEqual((status, answer["error"]), (400, 1113), answer)
        self.assertIn("etc/rules/broken.xml:2", answer["detail"])
        self.assertFalse((master_home.root / "etc" / "rules" / "broken.xml").exists())
        self.assertFalse((cluster.home("worker1").root / "etc" / "rules" / "broken.xml").exists())

        event = {
            "event": "Jan  2 10:00:00 host sshd[1]: Failed password for root from 10.0.0.9 "
            "port 22 ssh2",
            "log_format": "syslog",
            "location": "/var/log/auth.log",
        }
        status, answer = await self.request("PUT", "/logtest", token, event)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["data"]["output"]["rule"]["id"], "100100")

"""The REST API driven over real HTTPS by a Wazuh API client published on PyPI, unchanged.

The client is ``wazuh-api-client`` (installed with the ``test`` extras): its asynchronous
client logs in (``POST /security/user/authenticate`` with HTTP basic credentials), its
agents manager adds, lists and counts agents, and its generic request method reads the
groups, the cluster's nodes and the rules, as a script built on it would. The master runs
in the test process with a real worker process connected over the cluster link; the
client runs in a thread with its own event loop (it is httpx over asyncio).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from xml.etree.ElementTree import fromstring

import attrs
from twisted.internet import reactor, task, threads
from twisted.trial.unittest import SkipTest, TestCase

from tests.helpers import short_temp_dir
from tests.test_api_fixtures import cheap_users
from wazuhcluster import WAZUH_VERSION
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

try:
    from wazuh_api_client.client import AsyncWazuhClient
    from wazuh_api_client.managers import AgentsManager
except ImportError:  # pragma: no cover - the test extras are not installed
    AsyncWazuhClient = AgentsManager = None


class PublishedClientTests(TestCase):
    """A script on wazuh-api-client against a running master with a worker."""

    timeout = 180

    def setUp(self) -> None:
        if AsyncWazuhClient is None:
            raise SkipTest("wazuh-api-client is not installed (pip install -e '.[test]')")

    async def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll ``condition`` on the reactor until true, or fail after the deadline."""
        end = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > end:
                self.fail(f"timed out waiting for {what}")
            await task.deferLater(reactor, 0.1, lambda: None)

    async def start_cluster(self) -> tuple[LocalCluster, str, str]:
        """A master with its API (ephemeral port) and a connected worker1; the base URL and
        the API certificate's path."""
        cluster = LocalCluster(short_temp_dir(self), workers=["worker1"])
        cluster.write()
        install_default_ruleset(str(cluster.home("master").root))
        home = cluster.home("master")
        config = load_config(home.config_file, home, "master")
        master = MasterService(config, reactor, load_sections(config))
        api_xml = fromstring("<api><bind_addr>127.0.0.1</bind_addr></api>")
        settings = attrs.evolve(parse_api(Section(api_xml, "test", "api"), home), port=0)
        cheap_users(settings.users_file, {USER: PASSWORD})
        api = master_api(config, master.node, master.node.manager, reactor, settings)
        assert api is not None
        api.setServiceParent(master)
        master.startService()
        self.addCleanup(task.deferLater, reactor, INOTIFY_DEBOUNCE + 0.2, lambda: None)
        self.addCleanup(master.stopService)
        port = (await api.listening).getHost().port
        worker = NodeProcess(cluster.home("worker1"), "worker")
        worker.start()
        # SIGKILL: a SIGTERM'd worker waits on its link to this (then blocked) reactor.
        self.addCleanup(worker.kill)
        await self.wait_until(lambda: master.node.workers.get("worker1") is not None, "worker1")
        return cluster, f"https://127.0.0.1:{port}", str(settings.cert)

    async def test_script_session(self) -> None:
        """login → add and list agents → groups → cluster nodes → rules, through the client."""
        _, url, cert = await self.start_cluster()
        found = await threads.deferToThread(asyncio.run, _session(url, cert))

        self.assertEqual(found["added"]["error"], 0)
        agent_id = found["added"]["data"]["id"]
        listed = found["listed"]
        self.assertEqual(listed.error, 0)
        by_id = {item["id"]: item for item in listed.data["affected_items"]}
        self.assertEqual(by_id[agent_id]["name"], "client-web-01")
        self.assertEqual(by_id["000"]["version"], f"Wazuh v{WAZUH_VERSION}")
        statuses = found["summary"]["data"]["connection"]
        self.assertEqual(statuses["never_connected"], 1)

        assigned = found["assigned"]
        self.assertEqual(assigned["data"]["affected_items"], [agent_id])
        groups = {item["name"]: item["count"] for item in found["groups"]["data"]["affected_items"]}
        self.assertEqual(groups["client-web"], 1)

        nodes = [node["name"] for node in found["nodes"]["data"]["affected_items"]]
        self.assertEqual(nodes, ["master", "worker1"])
        self.assertTrue(all(v == WAZUH_VERSION for v in found["node_versions"]))

        rules = found["rules"]["data"]
        ids = [rule["id"] for rule in rules["affected_items"]]
        self.assertEqual((len(ids), ids), (5, sorted(ids)))
        self.assertGreater(rules["total_affected_items"], 5)
        self.assertEqual(found["unauthorized"], 401)


async def _session(url: str, cert: str) -> dict[str, Any]:
    """What a script on wazuh-api-client does; returns what it read."""
    from httpx import HTTPStatusError

    found: dict[str, Any] = {}
    async with AsyncWazuhClient(url, WAZUH_VERSION, USER, PASSWORD, verify=cert) as client:
        agents = AgentsManager(client)
        found["added"] = await client.request(
            "POST", client.build_endpoint("/agents"), json={"name": "client-web-01"}
        )
        # The client filters on group_config_status=synced unless told otherwise.
        found["listed"] = await agents.list(group_config_status=None, limit=100)
        found["summary"] = await client.request(
            "GET", client.build_endpoint("/agents/summary/status")
        )
        await client.request(
            "POST", client.build_endpoint("/groups"), json={"group_id": "client-web"}
        )
        agent_id = found["added"]["data"]["id"]
        found["assigned"] = await client.request(
            "PUT", client.build_endpoint(f"/agents/{agent_id}/group/client-web")
        )
        found["groups"] = await client.request("GET", client.build_endpoint("/groups"))
        found["nodes"] = await client.request("GET", client.build_endpoint("/cluster/nodes"))
        found["node_versions"] = [
            node["version"] for node in found["nodes"]["data"]["affected_items"]
        ]
        found["rules"] = await client.request(
            "GET", client.build_endpoint("/rules"), params={"limit": 5, "sort": "id"}
        )
    async with AsyncWazuhClient(url, WAZUH_VERSION, USER, PASSWORD, verify=cert) as other:
        other.client.headers["Authorization"] = "Bearer not-a-token"
        try:
            await other.request("GET", other.build_endpoint("/agents"))
        except HTTPStatusError as error:
            found["unauthorized"] = error.response.status_code
    return found

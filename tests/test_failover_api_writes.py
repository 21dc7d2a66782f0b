"""REST API writes on a master with ``<failover>``: agent additions (forced too), deletions
and group changes are stored in etcd before they are answered, and refused and undone when
etcd does not take them. Deterministic: the API in memory (ApiHarness), an in-memory etcd
with a real election and the real DurableAgents store."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.test_api_fixtures import ApiHarness
from tests.test_failover_election import MemoryEtcd
from tests.test_failover_roles import Node
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.interfaces import IRegistryFeature
from wazuhcluster.api.service import build_site
from wazuhcluster.failover.agents import DurableAgents
from wazuhcluster.master.durable_api import DurableRegistryFeature
from wazuhcluster.registry.service import AsyncRegistry
from wazuhcluster.util.threads import run_inline

PREFIX = "/wazuhcluster/wazuh/"


@implementer(IRegistryFeature)
class Feature:
    """The registry feature as the API needs it: the registry and key pushes (recorded)."""

    def __init__(self, registry: AsyncRegistry) -> None:
        self.registry = registry
        self.pushed: list[tuple[list[dict[str, str]], list[str]]] = []

    def push_keys(self, added: list[dict[str, str]], removed: list[str]) -> None:
        """Record the push."""
        self.pushed.append((added, removed))


class DurableApiWritesTests(SynchronousTestCase):
    """Each API write is in etcd when answered, or refused (503) and undone."""

    def setUp(self) -> None:
        """n1 leads on an in-memory etcd; the API's registry writes go through its store."""
        self.clock = Clock()
        self.etcd = MemoryEtcd(self.clock)
        self.leader = Node(self.etcd, self.clock, "n1").start(self)
        self.clock.advance(0)
        self.durable = DurableAgents(self.leader.leadership, self.etcd, PREFIX)
        self.api = ApiHarness(self, token_timeout=36000)
        provider = DurableRegistryFeature(Feature(self.api.registry), self.durable)
        self.api.site, self.api.resource = build_site(
            self.api.settings,
            self.api.node,
            provider,
            self.api.clock.seconds,
            run_inline,
            ApiHooks(),
            "api-host",
        )
        self.addCleanup(self.api.resource.endpoints.tokens.store.close)
        self.api.token()

    def etcd_agents(self) -> dict[str, dict[str, Any]]:
        """The agent records etcd holds, by id."""
        agents = PREFIX.encode() + b"agents/"
        return {
            key[len(agents) :].decode(): json.loads(kv.value)
            for key, kv in self.etcd.keys.items()
            if key.startswith(agents)
        }

    def next_id(self) -> int:
        """The next agent id etcd holds (0: none)."""
        kv = self.etcd.keys.get(PREFIX.encode() + b"agents-next-id")
        return 0 if kv is None else int(kv.value)

    def lose_leadership(self) -> None:
        """n1's lease is gone in etcd: its fenced writes are refused from now on."""
        self.etcd._drop_lease(self.leader.leadership._lease)  # type: ignore[arg-type]

    def test_added_agent_is_in_etcd_when_answered(self) -> None:
        """POST /agents: the answer's id and key are in etcd, and the next id follows it."""
        answer = self.api.call("POST", "/agents", {"name": "web1", "ip": "10.0.0.7"})
        self.assertEqual(answer.status, 200, answer.raw)
        agent_id = answer.json["data"]["id"]
        stored = self.etcd_agents()[agent_id]
        self.assertEqual((stored["name"], stored["ip"]), ("web1", "10.0.0.7"))
        [agent] = self.api.store.list_agents()
        self.assertEqual(stored["key"], agent.key)
        self.assertEqual(self.next_id(), int(agent_id) + 1)

    def test_added_agent_not_stored_is_refused_and_undone(self) -> None:
        """etcd refuses (this node no longer leads): 503, and the agent is not registered."""
        self.lose_leadership()
        answer = self.api.call("POST", "/agents", {"name": "web1"})
        self.assertEqual(answer.status, 503, answer.raw)
        self.assertIn("could not store it in etcd", answer.json["detail"])
        self.assertEqual(self.api.store.list_agents(), [])
        self.assertEqual(self.etcd_agents(), {})

    def test_forced_replacement_is_stored(self) -> None:
        """POST /agents with force replacing a same-IP agent: the old record leaves etcd
        and the new one is there, in one answer."""
        old = self.api.call("POST", "/agents", {"name": "web1", "ip": "10.0.0.7"}).json["data"]
        self.api.clock.advance(7200)
        answer = self.api.call("POST", "/agents", {"name": "web2", "ip": "10.0.0.7", "force": {}})
        self.assertEqual(answer.status, 200, answer.raw)
        new = answer.json["data"]["id"]
        self.assertEqual(list(self.etcd_agents()), [new])
        self.assertNotEqual(new, old["id"])

    def test_deletion_goes_to_etcd_first(self) -> None:
        """DELETE /agents: gone from etcd and the registry; when etcd refuses, 503 and the
        agent stays in both."""
        first = self.api.call("POST", "/agents", {"name": "web1"}).json["data"]["id"]
        second = self.api.call("POST", "/agents", {"name": "web2"}).json["data"]["id"]
        answer = self.api.call("DELETE", f"/agents?agents_list={first}&status=all&older_than=0s")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(list(self.etcd_agents()), [second])
        self.lose_leadership()
        answer = self.api.call("DELETE", f"/agents?agents_list={second}&status=all&older_than=0s")
        self.assertEqual(answer.status, 503, answer.raw)
        self.assertIn("not deleted", answer.json["detail"])
        self.assertEqual([a.id for a in self.api.store.list_agents()], [second])
        self.assertEqual(list(self.etcd_agents()), [second])

    def test_group_changes_are_stored_or_undone(self) -> None:
        """PUT /agents/{id}/group/{group}: etcd has the new group list; refused: 503, and
        the registry has the old list again."""
        agent_id = self.api.call("POST", "/agents", {"name": "web1"}).json["data"]["id"]
        self.api.store.create_group("web")
        self.api.store.create_group("db")
        answer = self.api.call("PUT", f"/agents/{agent_id}/group/web")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(self.etcd_agents()[agent_id]["groups"], ["default", "web"])
        self.lose_leadership()
        answer = self.api.call("PUT", f"/agents/{agent_id}/group/db")
        self.assertEqual(answer.status, 503, answer.raw)
        self.assertEqual(self.api.store.get_agent(agent_id).groups, ("default", "web"))  # type: ignore[union-attr]
        self.assertEqual(self.etcd_agents()[agent_id]["groups"], ["default", "web"])

    def test_group_deletion_stores_the_agents_new_groups(self) -> None:
        """DELETE /groups: the agents of the deleted group have their new lists in etcd."""
        agent_id = self.api.call("POST", "/agents", {"name": "web1"}).json["data"]["id"]
        self.api.store.create_group("web")
        self.api.call("PUT", f"/agents/{agent_id}/group/web?force_single_group=true")
        self.assertEqual(self.etcd_agents()[agent_id]["groups"], ["web"])
        answer = self.api.call("DELETE", "/groups?groups_list=web")
        self.assertEqual(answer.status, 200, answer.raw)
        groups = self.api.store.get_agent(agent_id).groups  # type: ignore[union-attr]
        self.assertNotIn("web", groups)
        self.assertEqual(self.etcd_agents()[agent_id]["groups"], list(groups))

    def test_reads_and_unchanged_writes_do_not_touch_etcd(self) -> None:
        """A read, and a group created (no agent changes), write nothing to etcd."""
        before = dict(self.etcd.keys)
        self.assertEqual(self.api.call("GET", "/agents").status, 200)
        self.assertEqual(self.api.call("POST", "/groups", {"group_id": "web"}).status, 200)
        self.assertEqual(self.etcd.keys, before)

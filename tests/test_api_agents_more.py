"""The agents' summaries, digests, keys, sync state, insertions and group removals
(``/agents/summary``, ``/agents/summary/os``, ``/agents/no_group``, ``/agents/outdated``,
``/agents/stats/distinct``, ``/agents/{id}/key``, ``/agents/{id}/group/is_sync``,
``DELETE /agents/{id}/group``, ``POST /agents/insert[/quick]``, ``/overview/agents``)."""

from __future__ import annotations

import base64
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ROLE_IDS, ApiHarness
from wazuhcluster import WAZUH_VERSION
from wazuhcluster.api.access import Access
from wazuhcluster.api.views import file_digest, merged_path

PASSWORD = "Str0ng-Passw0rd!"


class AgentSummaryTests(SynchronousTestCase):
    """Counts and digests over the agents the caller may read."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        api = self.api
        api.store.create_group("web")
        self.web1 = api.enroll("web1", "10.0.0.1", ("web",))
        self.web2 = api.enroll("web2", "10.0.0.2", ("web", "default"))
        self.db1 = api.enroll("db1", "10.0.0.3")
        api.report(self.web1, "active", "w1", os_platform="ubuntu", version="Wazuh v4.13.0")
        api.report(self.web2, "disconnected", "w1", os_platform="ubuntu", version="Wazuh v4.14.7")
        api.report(self.db1, "active", "w2", os_platform="centos", os_name="CentOS")

    def data(self, path: str) -> Any:
        """The ``data`` of a 200 answer."""
        answer = self.api.call("GET", path)
        self.assertEqual(answer.status, 200, answer.raw)
        return answer.json["data"]

    def test_summary_counts_status_os_and_groups(self) -> None:
        """GET /agents/summary counts the enrolled agents (not 000) three ways."""
        data = self.data("/agents/summary")
        self.assertEqual(
            data["status"], {"active": 2, "disconnected": 1, "never_connected": 0, "pending": 0}
        )
        self.assertEqual(data["os"], {"ubuntu": 2, "centos": 1})
        self.assertEqual(data["groups"], {"web": 2, "default": 2})
        only = self.data(f"/agents/summary?agents_list={self.db1},999")
        self.assertEqual(only["os"], {"centos": 1})
        self.assertEqual(sum(only["status"].values()), 1)

    def test_counts_from_the_registry_match_the_walk(self) -> None:
        """For a caller who may read every agent the summaries are counted in SQL; they
        answer as the walk over every agent's view does."""
        fast = [self.data(path) for path in ("/agents/summary", "/agents/summary/os")]
        self.patch(Access, "allows_every", lambda *args: False)
        slow = [self.data(path) for path in ("/agents/summary", "/agents/summary/os")]
        self.assertEqual(fast, slow)

    def test_summary_os_lists_each_platform_once(self) -> None:
        """GET /agents/summary/os: sorted platforms of the enrolled agents (not 000's)."""
        items = self.data("/agents/summary/os")["affected_items"]
        self.assertEqual(items, ["centos", "ubuntu"])

    def test_no_group_and_outdated(self) -> None:
        """no_group lists agents without a group; outdated those reporting another version."""
        self.assertEqual(self.data("/agents/no_group")["affected_items"], [])
        # The registry always puts an agent in default; a row without any group (older
        # data) is made by hand.
        with self.api.store._transaction() as db:
            db.execute("DELETE FROM memberships WHERE agent_id = ?", (int(self.db1),))
        ids = [item["id"] for item in self.data("/agents/no_group")["affected_items"]]
        self.assertEqual(ids, [self.db1])
        outdated = self.data("/agents/outdated?select=version")["affected_items"]
        self.assertEqual(outdated, [{"id": self.web1, "version": "Wazuh v4.13.0"}])
        self.assertNotIn(f"Wazuh v{WAZUH_VERSION}", str(outdated))

    def test_distinct_counts_combinations(self) -> None:
        """stats/distinct counts each combination; q filters agents, sort orders the rows."""
        data = self.data("/agents/stats/distinct?fields=os.platform&q=id!=000&sort=-count")
        self.assertEqual(
            data["affected_items"],
            [
                {"os": {"platform": "ubuntu"}, "count": 2},
                {"os": {"platform": "centos"}, "count": 1},
            ],
        )
        self.assertEqual(data["total_affected_items"], 2)
        nodes = self.data("/agents/stats/distinct?fields=node_name&q=id!=000&sort=node_name")
        self.assertEqual(
            [(row["node_name"], row["count"]) for row in nodes["affected_items"]],
            [("w1", 2), ("w2", 1)],
        )
        bad = self.api.call("GET", "/agents/stats/distinct?fields=nope")
        self.assertEqual((bad.status, bad.json["error"]), (400, 1724))

    def test_overview(self) -> None:
        """GET /overview/agents: nodes, groups, OS, status, versions, last registered."""
        data = self.data("/overview/agents")
        nodes = {row["node_name"]: row["count"] for row in data["nodes"]}
        self.assertEqual((nodes["w1"], nodes["w2"]), (2, 1))
        self.assertEqual({group["name"]: group["count"] for group in data["groups"]}["web"], 2)
        self.assertEqual(data["agent_status"]["connection"]["total"], 3)
        self.assertEqual(data["agent_status"]["connection"]["active"], 2)
        self.assertEqual(data["last_registered_agent"][0]["id"], self.db1)
        versions = {row["version"]: row["count"] for row in data["agent_version"]}
        self.assertEqual(versions["Wazuh v4.13.0"], 1)

    def test_readers_see_only_their_agents(self) -> None:
        """A user reading only agent 001 counts only it and gets 403 for another's key."""
        api = self.api
        created = api.call("POST", "/security/users", {"username": "reader", "password": PASSWORD})
        user_id = created.json["data"]["affected_items"][0]["id"]
        policy = {"actions": ["agent:read"], "resources": [f"agent:id:{self.web1}"]}
        made = api.call(
            "POST", "/security/policies", {"name": "one", "policy": {**policy, "effect": "allow"}}
        )
        policy_id = made.json["data"]["affected_items"][0]["id"]
        role_id = api.call("POST", "/security/roles", {"name": "one"}).json["data"][
            "affected_items"
        ][0]["id"]
        api.call("POST", f"/security/roles/{role_id}/policies?policy_ids={policy_id}")
        api.call("POST", f"/security/users/{user_id}/roles?role_ids={role_id}")
        api.clock.advance(1)
        token = api.login("reader", PASSWORD).json["data"]["token"]
        summary = api.call("GET", "/agents/summary", token=token).json["data"]
        self.assertEqual(summary["os"], {"ubuntu": 1})
        self.assertEqual(api.call("GET", f"/agents/{self.db1}/key", token=token).status, 403)
        self.assertEqual(api.call("GET", f"/agents/{self.web1}/key", token=token).status, 200)


class AgentSingleTests(SynchronousTestCase):
    """One agent's key, sync state and groups; insertions."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.api.store.create_group("web")
        self.api.store.create_group("db")
        self.agent = self.api.enroll("web1", "10.0.0.1", ("web", "db"))

    def failed(self, answer: Any) -> list[tuple[int, list[str]]]:
        """(code, ids) of the failed items of a 200 answer."""
        self.assertEqual(answer.status, 200, answer.raw)
        return [(item["error"]["code"], item["id"]) for item in answer.json["data"]["failed_items"]]

    def test_key_is_the_client_keys_line(self) -> None:
        """The key decodes to ``ID NAME IP KEY``; 000 and unknown agents are failed items."""
        answer = self.api.call("GET", f"/agents/{self.agent}/key")
        item = answer.json["data"]["affected_items"][0]
        stored = self.api.store.get_agent(self.agent)
        self.assertEqual(base64.b64decode(item["key"]).decode(), stored.key_line())
        self.assertEqual(self.failed(self.api.call("GET", "/agents/000/key")), [(1703, ["000"])])
        self.assertEqual(self.failed(self.api.call("GET", "/agents/999/key")), [(1701, ["999"])])

    def test_is_sync_compares_the_merged_checksum(self) -> None:
        """synced is true once the agent reports the merged.mg checksum of its groups."""
        path = f"/agents/{self.agent}/group/is_sync"
        self.assertFalse(self.api.call("GET", path).json["data"]["affected_items"][0]["synced"])
        agent = self.api.store.get_agent(self.agent)
        context = self.api.resource.endpoints.context
        expected = file_digest(merged_path(context.shared, context.multigroups, agent.groups))
        self.assertIsNotNone(expected)
        self.api.report(self.agent, "active", "w1", merged_sum=expected)
        self.assertTrue(self.api.call("GET", path).json["data"]["affected_items"][0]["synced"])
        self.assertEqual(
            self.failed(self.api.call("GET", "/agents/000/group/is_sync")), [(1703, ["000"])]
        )

    def test_leave_several_groups(self) -> None:
        """DELETE /agents/{id}/group: listed groups left, unknown ones failed; by default
        every group; an agent left in none is back in default."""
        answer = self.api.call("DELETE", f"/agents/{self.agent}/group?groups_list=web,ghost")
        self.assertEqual(answer.json["data"]["affected_items"], ["web"])
        self.assertEqual(self.failed(answer), [(1710, ["ghost"])])
        self.assertEqual(answer.json["error"], 2)
        self.assertEqual(self.api.store.get_agent(self.agent).groups, ("db",))
        every = self.api.call("DELETE", f"/agents/{self.agent}/group")
        self.assertEqual(every.json["data"]["affected_items"], ["db"])
        self.assertEqual(self.api.store.get_agent(self.agent).groups, ("default",))
        self.assertEqual(self.api.call("DELETE", "/agents/999/group").status, 404)

    def test_uninstall_permission(self) -> None:
        """GET /agents/uninstall says yes to holders of agent:uninstall, 403 to others."""
        allowed = self.api.call("GET", "/agents/uninstall")
        self.assertEqual(
            (allowed.status, allowed.json["message"]),
            (200, "User has permission to uninstall agents"),
        )
        api = self.api
        api.call("POST", "/security/users", {"username": "reader", "password": PASSWORD})
        user_id = api.call("GET", "/security/users").json["data"]["affected_items"][-1]["id"]
        api.call("POST", f"/security/users/{user_id}/roles?role_ids={ROLE_IDS['readonly']}")
        api.clock.advance(1)
        token = api.login("reader", PASSWORD).json["data"]["token"]
        refused = api.call("GET", "/agents/uninstall", token=token)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))

    def test_insert_with_id_and_key(self) -> None:
        """POST /agents/insert keeps the given id and key; later ids follow it; a taken id
        is 1708, a short key 1709; insert/quick registers by name."""
        key = "a1" * 32
        answer = self.api.call("POST", "/agents/insert", {"name": "moved", "id": "42", "key": key})
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(answer.json["data"]["id"], "042")
        line = base64.b64decode(answer.json["data"]["key"]).decode()
        self.assertEqual(line, f"042 moved any {key}")
        again = self.api.call("POST", "/agents/insert", {"name": "other", "id": "042"})
        self.assertEqual((again.status, again.json["error"]), (400, 1708))
        short = self.api.call("POST", "/agents/insert", {"name": "other", "key": "abc"})
        self.assertEqual((short.status, short.json["error"]), (400, 1709))
        quick = self.api.call("POST", "/agents/insert/quick?agent_name=quick")
        self.assertEqual(quick.json["data"]["id"], "043")
        taken = self.api.call("POST", "/agents/insert/quick?agent_name=quick")
        self.assertEqual((taken.status, taken.json["error"]), (400, 1705))
        self.assertIn("043", self.api.added)

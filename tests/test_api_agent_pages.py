"""GET /agents read page by page from the registry (every agent readable, no filter but a
q on registry fields, tested in SQL): the same answers as the full walk over every agent's
view."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness
from wazuhcluster.api import agent_summaries
from wazuhcluster.api.access import Access
from wazuhcluster.api.agent_endpoints import AgentEndpoints, required_equalities
from wazuhcluster.api.query import parse_q
from wazuhcluster.api.views import AGENT_FIELDS, file_digest, merged_path

QUERIES = [
    "",
    "limit=3",
    "offset=1&limit=4",
    "offset=7&limit=2&select=name,os.platform",
    "q=os.platform=UBUNTU",
    "q=status=active;group=web&limit=2",
    "q=status=active;group=web&offset=1&limit=2",
    "q=name=host-3",
    "q=os.platform=ubuntu,os.platform=centos",
    "q=version=Wazuh v4.14.7&select=version",
    "q=id=000",
    "q=id!=000&limit=3",
    "q=id!=000;status=active&offset=1&limit=2",
    "sort=id&limit=5",
    "q=name~HOST-1",
    "q=id<005",
    "q=id>003;status=active&limit=2",
    "q=os.platform=ubuntu,os.platform=centos&offset=1&limit=2",
    "q=lastKeepAlive<1d",
    "q=lastKeepAlive>1d",
    "q=dateAdd<1d;status!=never_connected",
    "q=(status=active,name~3);group!=web",
    "q=version=null",
    "q=ip~10.0.0.1",
    "q=group_config_status=synced",
]


class PageTests(SynchronousTestCase):
    """The registry page and the full walk agree."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.api.store.create_group("web")
        for n in range(1, 11):
            agent = self.api.enroll(f"host-{n}", f"10.0.0.{n}", ("web",) if n % 2 else ())
            if n % 3:
                platform = "Ubuntu" if n % 2 else "centos"
                self.api.report(
                    agent, "active", "w1", os_platform=platform, version="Wazuh v4.14.7"
                )

    def answer(self, query: str) -> Any:
        """The JSON of GET /agents?query."""
        found = self.api.call("GET", "/agents?" + query)
        self.assertEqual(found.status, 200, found.raw)
        return found.json

    def test_pages_match_the_full_walk(self) -> None:
        """Each query answers the same with the registry page and with the full walk (a
        no-op distinct=false forces the walk)."""
        pages: list[object] = []
        real = AgentEndpoints._plain_page

        async def counted(self: AgentEndpoints, *args: Any) -> Any:
            pages.append(args)
            return await real(self, *args)

        self.patch(AgentEndpoints, "_plain_page", counted)
        for query in QUERIES:
            fast = self.answer(query)
            slow = self.answer((query + "&" if query else "") + "distinct=false")
            self.assertEqual(fast, slow, query)
        self.assertEqual(self.answer("q=os.platform=ubuntu")["data"]["total_affected_items"], 3)
        self.assertEqual(self.answer("limit=1")["data"]["total_affected_items"], 11)
        # Every query but the one on group_config_status (not a registry field) took the
        # page path, and so did the two checks after the loop.
        self.assertEqual(len(pages), len(QUERIES) - 1 + 2)
        self.assertEqual(self.answer("q=id!=000")["data"]["total_affected_items"], 10)

    def limited_token(self) -> str:
        """A token of a user whose role allows agent:read on group web and agent 2 and 0
        (the manager), and denies agent 3, policy after policy in that order."""
        statements = [
            (["agent:group:web"], "allow"),
            (["agent:id:003"], "deny"),
            (["agent:id:2", "agent:id:0"], "allow"),
        ]
        policy_ids = []
        for number, (resources, effect) in enumerate(statements):
            body = {"actions": ["agent:read"], "resources": resources, "effect": effect}
            made = self.api.call(
                "POST", "/security/policies", {"name": f"p{number}", "policy": body}
            )
            self.assertEqual(made.status, 200, made.raw)
            policy_ids.append(str(made.json["data"]["affected_items"][0]["id"]))
        role = self.api.call("POST", "/security/roles", {"name": "web_team"}).json
        role_id = role["data"]["affected_items"][0]["id"]
        linked = self.api.call(
            "POST", f"/security/roles/{role_id}/policies?policy_ids={','.join(policy_ids)}"
        )
        self.assertEqual(linked.json["error"], 0, linked.raw)
        user = {"username": "webby", "password": "Str0ng-Passw0rd!"}
        created = self.api.call("POST", "/security/users", user).json
        user_id = created["data"]["affected_items"][0]["id"]
        self.api.call("POST", f"/security/users/{user_id}/roles?role_ids={role_id}")
        self.api.clock.advance(1)
        login = self.api.login("webby", "Str0ng-Passw0rd!")
        self.assertEqual(login.status, 200, login.raw)
        token: str = login.json["data"]["token"]
        return token

    def test_limited_caller_pages_in_sql(self) -> None:
        """A caller allowed some agents (by group and id, with a deny between) gets its
        pages from the registry, the same answers as the full walk, manager included."""
        token = self.limited_token()
        pages: list[object] = []
        real = AgentEndpoints._plain_page

        async def counted(self: AgentEndpoints, *args: Any) -> Any:
            pages.append(args)
            return await real(self, *args)

        self.patch(AgentEndpoints, "_plain_page", counted)
        for query in QUERIES:
            fast = self.api.call("GET", "/agents?" + query, token=token)
            slow = self.api.call(
                "GET", "/agents?" + (query + "&" if query else "") + "distinct=false", token=token
            )
            self.assertEqual((fast.status, fast.json), (slow.status, slow.json), query)
        self.assertEqual(len(pages), len(QUERIES) - 1)
        listed = self.api.call("GET", "/agents", token=token).json["data"]
        self.assertEqual(
            [agent["id"] for agent in listed["affected_items"]],
            ["000", "001", "002", "005", "007", "009"],
        )
        self.assertEqual(listed["total_affected_items"], 6)

    def test_overview_from_counts(self) -> None:
        """GET /overview/agents counted by the registry answers as the walk over every
        agent's view, for an administrator and for a caller limited to some agents
        (nodes, OS, versions, statuses, sync, last registered agent, manager included)."""
        context = self.api.resource.endpoints.context
        for agent_id in ("001", "004"):
            agent = self.api.store.get_agent(agent_id)
            assert agent is not None
            path = merged_path(context.shared, context.multigroups, agent.groups)
            self.api.report(agent_id, "disconnected", "w2", merged_sum=file_digest(path))
        limited = self.limited_token()
        for token in (None, limited):

            def overview(token: str | None = token) -> Any:
                found = self.api.call("GET", "/overview/agents", token=token or self.api.token())
                self.assertEqual(found.status, 200, found.raw)
                return found.json

            fast = overview()
            with patch.object(agent_summaries, "registry_scope", lambda *args: None):
                with patch.object(Access, "allows_every", lambda *args: False):
                    slow = overview()
            self.assertEqual(fast, slow)
            data = fast["data"]
            self.assertIn({"node_name": "w2", "count": 2 if token is None else 1}, data["nodes"])
            self.assertEqual(data["agent_status"]["configuration"]["synced"], 1 if token else 2)
            self.assertEqual(
                data["last_registered_agent"][0]["id"], "010" if token is None else "009"
            )

    def test_no_group_and_outdated_pages(self) -> None:
        """GET /agents/no_group and /agents/outdated read page by page from the registry
        answer as the walk, for an administrator and a limited caller."""
        self.api.report("002", "active", "w1", version="Wazuh v4.0.0")
        self.api.report("005", "active", "w1", version="wazuh v4.14.7")
        for number in (2, 3, 5):
            self.api.store.connection.execute(
                "DELETE FROM memberships WHERE agent_id = ?", (number,)
            )
        limited = self.limited_token()
        queries = ("", "limit=1", "offset=1&limit=1", "q=status=active", "q=name~HOST&select=name")
        pages: list[object] = []
        self.patch(agent_summaries, "registry_page", self.counting(pages))
        calls = [
            (token, f"{path}?{query}")
            for token in (self.api.token(), limited)
            for path in ("/agents/no_group", "/agents/outdated")
            for query in queries
        ]
        fast = [self.api.call("GET", path, token=token) for token, path in calls]
        with patch.object(agent_summaries, "plain_listing", lambda *args: False):
            slow = [self.api.call("GET", path, token=token) for token, path in calls]
        for (_, path), one, other in zip(calls, fast, slow, strict=True):
            self.assertEqual((one.status, one.json), (other.status, other.json), path)
        self.assertEqual(len(pages), 2 * 2 * len(queries))
        outdated = self.api.call("GET", "/agents/outdated").json["data"]["affected_items"]
        self.assertEqual([agent["id"] for agent in outdated], ["002", "005"])
        alone = self.api.call("GET", "/agents/no_group", token=limited).json["data"]
        self.assertEqual([agent["id"] for agent in alone["affected_items"]], ["002"])

    def test_distinct_counted_by_the_registry(self) -> None:
        """GET /agents/stats/distinct counted by the registry answers as the walk over
        every agent's view (fields, q, row sort and paging; administrator and limited)."""
        self.api.report("002", "disconnected", "w2", version="Wazuh v4.0.0")
        limited = self.limited_token()
        queries = (
            "fields=os.platform",
            "fields=status,node_name",
            "fields=version&sort=-count",
            "fields=os.platform,version&q=status=active&offset=1&limit=1",
            "fields=name&q=id<004",
            "fields=dateAdd,manager",
        )
        calls = [(token, q) for token in (self.api.token(), limited) for q in queries]
        seen: list[object] = []
        real = agent_summaries.AgentSummaryEndpoints._counted_distinct

        async def counted(self: Any, *args: Any) -> Any:
            seen.append(args)
            return await real(self, *args)

        self.patch(agent_summaries.AgentSummaryEndpoints, "_counted_distinct", counted)
        fast = [self.api.call("GET", f"/agents/stats/distinct?{q}", token=t) for t, q in calls]
        self.assertEqual(len(seen), len(calls))
        with patch.object(agent_summaries, "q_filters", lambda *args: None):
            slow = [self.api.call("GET", f"/agents/stats/distinct?{q}", token=t) for t, q in calls]
        for (_, query), one, other in zip(calls, fast, slow, strict=True):
            self.assertEqual(one.status, 200, one.raw)
            self.assertEqual(one.json, other.json, query)

    def counting(self, pages: list[object]) -> Any:
        """agent_pages.registry_page, noting each call in ``pages``."""
        from wazuhcluster.api.agent_pages import registry_page

        async def counted(*args: Any) -> Any:
            pages.append(args)
            return await registry_page(*args)

        return counted

    def test_status_summary_from_counts(self) -> None:
        """GET /agents/summary/status from the registry's counts answers as the walk over
        every agent: connection statuses, and agents whose merged.mg sum is their groups'."""
        context = self.api.resource.endpoints.context
        for agent_id in ("001", "002", "004"):
            agent = self.api.store.get_agent(agent_id)
            assert agent is not None
            path = merged_path(context.shared, context.multigroups, agent.groups)
            self.api.report(agent_id, "active", "w1", merged_sum=file_digest(path))
        fast = self.api.call("GET", "/agents/summary/status").json
        self.patch(Access, "allows_every", lambda *args: False)
        slow = self.api.call("GET", "/agents/summary/status").json
        self.assertEqual(fast, slow)
        self.assertEqual(fast["data"]["configuration"]["synced"], 3)
        self.assertEqual(fast["data"]["connection"]["total"], 10)

    def test_which_q_the_registry_tests(self) -> None:
        """Only and-ed equalities on the registry's fields with ASCII values are pushed."""

        def pushed(text: str) -> list[tuple[str, str]]:
            return required_equalities(parse_q(text, AGENT_FIELDS, now=0.0))

        self.assertEqual(
            pushed("status=active;os.platform=ubuntu"),
            [("status", "active"), ("os.platform", "ubuntu")],
        )
        self.assertEqual(pushed("status=active,os.platform=ubuntu"), [])
        self.assertEqual(pushed("name~web;status!=active"), [])
        self.assertEqual(pushed("os.name=Débian"), [])
        self.assertEqual(pushed("ip=10.0.0.1"), [])

    def test_every_agent_readable(self) -> None:
        """Only a kind:* allow with no deny after it (or black mode) skips per-agent checks."""
        allow = {"agent:read": {"agent:id:*": "allow"}}
        self.assertTrue(Access(allow).allows_every("agent:read", "agent:id"))
        denied = {"agent:read": {"agent:id:*": "allow", "agent:id:003": "deny"}}
        self.assertFalse(Access(denied).allows_every("agent:read", "agent:id"))
        some = {"agent:read": {"agent:id:001": "allow"}}
        self.assertFalse(Access(some).allows_every("agent:read", "agent:id"))
        self.assertTrue(Access({}, "black").allows_every("agent:read", "agent:id"))

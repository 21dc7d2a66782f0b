"""The API's q over agents, translated to SQL by the registry, keeps exactly the agents
the in-memory evaluation over their API views keeps (random agents, random queries)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.api.access import Access, group_members
from wazuhcluster.api.agent_filter import manager_allowed, registry_filter, registry_scope
from wazuhcluster.api.errors import ApiError
from wazuhcluster.api.query import Expression, parse_q
from wazuhcluster.api.views import (
    AGENT_DATE_FIELDS,
    AGENT_FIELDS,
    AGENT_LIST_FIELDS,
    agent_view,
)
from wazuhcluster.registry.agent_query import (
    FIELDS,
    MAX_GRANTS,
    AgentScope,
    AllOrAny,
    Grant,
    MomentTest,
    TextTest,
    UnknownField,
    scope_clause,
    where_clause,
)
from wazuhcluster.registry.store import Registry

NOW = 1_700_000_000.0
GROUPS = ("default", "web", "Web2", "db")
#: Texts that make matches likely: case, numbers, a prefix, the Kelvin sign and the dotted
#: capital I (which Python lowers to k, and to i and a combining dot, where SQLite's
#: NOCASE and lower() leave them), non-ASCII letters.
WORDS = (
    "",
    "a",
    "A",
    "ab",
    "Ubuntu",
    "ubuntu",
    "10",
    "9",
    "2.5",
    "k",
    "K",
    "\u212a",
    "i",
    "\u0130",
    "xI",
    "é",
    "É",
    "active",
    "disconnected",
    "001",
    "web",
    "4.14",
)
TEXT = st.one_of(st.sampled_from(WORDS), st.text(max_size=6))
#: A day before NOW (2023-11-13T22:13:20Z): agents seen around it sit on the edge of 1d.
EDGE = NOW - 86400
SECONDS = st.one_of(
    st.sampled_from((EDGE, EDGE - 0.5, EDGE + 0.5, EDGE - 1e-7, EDGE + 0.9999999, EDGE - 1)),
    st.floats(min_value=NOW - 400_000, max_value=NOW + 100, allow_nan=False),
    st.integers(min_value=int(NOW) - 400_000, max_value=int(NOW) + 100).map(float),
    st.integers(min_value=int(NOW) - 200_000, max_value=int(NOW)).map(lambda s: s + 0.9999999),
)
AGENT = st.fixed_dictionaries(
    {
        "name": st.sampled_from(WORDS),
        "ip": st.sampled_from(("any", "10.0.0.1", "10.0.0.10", "192.168.1.9")),
        "agent_ip": st.sampled_from(("", "10.0.0.1", "172.16.0.2")),
        "status": st.sampled_from(("active", "disconnected", "never_connected", "pending")),
        "register_time": SECONDS,
        "last_keepalive": st.one_of(st.none(), SECONDS),
        "disconnection_time": st.one_of(st.just(0.0), SECONDS),
        "version": st.one_of(st.just(""), st.sampled_from(("Wazuh v4.14.7", "Wazuh v3.9")), TEXT),
        "os_platform": TEXT,
        "os_name": TEXT,
        "os_version": st.sampled_from(("", "22.04", "9", "10", "2.5")),
        "node_name": st.sampled_from(("", "master", "worker1", "Worker1")),
        "config_sum": st.sampled_from(("", "ab12")),
        "groups": st.lists(st.sampled_from(GROUPS), unique=True, max_size=3),
    }
)
OPERATORS = ("=", "!=", "<", ">", "~")
RESOURCES = (
    "agent:id:*",
    "agent:id:1",
    "agent:id:001",
    "agent:id:0003",
    "agent:id:2",
    "agent:id:0",
    "agent:id:abc",
    "agent:group:*",
    "agent:group:web",
    "agent:group:Web2",
    "agent:group:db",
    "agent:group:WEB",
    "agent:group:none",
    "node:id:worker1",
    "agent:id:1&agent:group:web",
)
VALUES = st.one_of(
    TEXT.filter(lambda text: text and not set(text) & set(";,()")),
    st.sampled_from(
        (
            "null",
            "1d",
            "86400",
            "30m",
            "2h30m",
            "2023-11-14",
            "2023-11-13T22:13:20Z",
            "2023-11-13T22:13:19",
            "2023-11-13 22:13",
            "10.0.0.1",
            "172.16",
            "any",
            "master",
            "worker1",
            "Wazuh v4",
            "ab12",
            "22.04",
            "web2",
        )
    ),
)
CONDITION = st.builds(
    lambda field, operator, value: f"{field}{operator}{value}",
    st.sampled_from(AGENT_FIELDS),
    st.sampled_from(OPERATORS),
    VALUES,
)
QUERY = st.recursive(
    CONDITION,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"{a};{b}", inner, inner),
        st.builds(lambda a, b: f"{a},{b}", inner, inner),
        inner.map(lambda text: f"({text})"),
    ),
    max_leaves=5,
)


def _registry(agents: list[dict[str, Any]]) -> Registry:
    """An in-memory registry holding ``agents`` (fields written as reports would)."""
    registry = Registry.open(Path(":memory:"))
    for group in GROUPS[1:]:
        registry.create_group(group)
    for number, fields in enumerate(agents, start=1):
        registry.enroll(f"agent{number}", groups=fields["groups"] or ("default",))
        if not fields["groups"]:
            # In no group (the registry itself puts such agents back in default; an older
            # database may hold them).
            registry.connection.execute("DELETE FROM memberships WHERE agent_id = ?", (number,))
        ip = fields["ip"] if fields["ip"] == "any" else f"{fields['ip']}{number}"
        registry.connection.execute(
            "UPDATE agents SET name = ?, ip = ?, agent_ip = ?, connection_status = ?,"
            " register_time = ?, version = ?, os_platform = ?, os_name = ?, os_version = ?,"
            " node_name = ?, config_sum = ? WHERE id = ?",
            (
                f"{fields['name']}{number}",
                ip,
                fields["agent_ip"],
                fields["status"],
                fields["register_time"],
                fields["version"],
                fields["os_platform"],
                fields["os_name"],
                fields["os_version"],
                fields["node_name"],
                fields["config_sum"],
                number,
            ),
        )
        registry.connection.execute(
            "UPDATE agent_times SET last_keepalive = ?, disconnection_time = ? WHERE id = ?",
            (fields["last_keepalive"], fields["disconnection_time"], number),
        )
    return registry


def _parsed(query: str) -> Expression | None:
    """The expression of ``query``, or None when the API refuses it."""
    try:
        return parse_q(query, AGENT_FIELDS, AGENT_DATE_FIELDS, NOW, lists=AGENT_LIST_FIELDS)
    except ApiError:
        return None


class SqlMatchesMemoryTests(SynchronousTestCase):
    """SQL and in-memory evaluation of q agree."""

    @settings(max_examples=300, deadline=None)
    @given(agents=st.lists(AGENT, max_size=8), queries=st.lists(QUERY, min_size=1, max_size=4))
    def test_same_agents(self, agents: list[dict[str, Any]], queries: list[str]) -> None:
        """Every q the registry can test keeps the agents the views' evaluation keeps,
        and its count agrees; a q on a field the registry lacks is not translated."""
        registry = _registry(agents)
        self.addCleanup(registry.close)
        views = [agent_view(agent, lambda groups: None) for agent in registry.list_agents()]
        for query in queries:
            expression = _parsed(query)
            if expression is None:
                continue
            where = registry_filter(expression)
            if where is None:
                self.assertTrue(any(f"{name}" in query for name in _OUTSIDE), query)
                continue
            expected = [view["id"] for view in views if expression.matches(view)]
            found = [agent.id for agent in registry.list_agents(where=where)]
            self.assertEqual(found, expected, query)
            self.assertEqual(registry.count_agents(where=where), len(expected), query)

    @settings(max_examples=200, deadline=None)
    @given(
        agents=st.lists(AGENT, max_size=8),
        entries=st.lists(st.tuples(st.sampled_from(RESOURCES), st.booleans()), max_size=6),
        black=st.booleans(),
    )
    def test_same_scope(
        self, agents: list[dict[str, Any]], entries: list[tuple[str, bool]], black: bool
    ) -> None:
        """The agents a caller's permission entries allow (in order, ids and groups,
        allows and denies, white or black mode) are those the API's rule allows."""
        registry = _registry(agents)
        self.addCleanup(registry.close)
        listed = registry.list_agents()
        resources = {resource: "allow" if allow else "deny" for resource, allow in entries}
        access = Access({"agent:read": resources}, "black" if black else "white")
        members = group_members((agent.id, agent.groups) for agent in listed)
        expected = access.allowed("agent:read", "agent:id", [a.id for a in listed], members)
        scope = registry_scope(access, "agent:read")
        assert scope is not None
        found = [agent.id for agent in registry.list_agents(scope=scope)]
        self.assertEqual(found, sorted(expected))
        self.assertEqual(registry.count_agents(scope=scope), len(expected))
        manager = access.allowed("agent:read", "agent:id", ["000"], group_members(()))
        self.assertEqual(manager_allowed(access, "agent:read"), bool(manager))

    def test_every_pair_of_entries(self) -> None:
        """Every pair of permission entries (each resource, allow or deny, both modes)
        over agents in no group, one group and two: the same agents as the API's rule."""
        groups: list[list[str]] = [[], ["web"], ["db", "Web2"], ["default"]]
        registry = _registry([{**_PLAIN, "groups": chosen} for chosen in groups])
        self.addCleanup(registry.close)
        listed = registry.list_agents()
        ids = [agent.id for agent in listed]
        members = group_members((agent.id, agent.groups) for agent in listed)
        entries = [(resource, effect) for resource in RESOURCES for effect in ("allow", "deny")]
        for mode in ("white", "black"):
            for first in entries:
                for second in entries:
                    access = Access({"agent:read": dict([first, second])}, mode)
                    expected = access.allowed("agent:read", "agent:id", ids, members)
                    scope = registry_scope(access, "agent:read")
                    assert scope is not None
                    found = [agent.id for agent in registry.list_agents(scope=scope)]
                    self.assertEqual(found, sorted(expected), (mode, first, second))

    def test_scope_bounds(self) -> None:
        """Ids of non-ASCII digits and more grants than one query takes are not written
        into SQL (the API walks the agents then); other kinds of resource are ignored."""
        odd = Access({"agent:read": {"agent:id:\u0663": "allow"}})
        self.assertIsNone(registry_scope(odd, "agent:read"))
        many = Access({"agent:read": {f"agent:id:{n}": "allow" for n in range(MAX_GRANTS + 1)}})
        self.assertIsNone(registry_scope(many, "agent:read"))
        other = Access({"agent:read": {"node:id:w1": "allow", "agent:id:1&x:y:z": "allow"}})
        self.assertEqual(registry_scope(other, "agent:read"), AgentScope(False, ()))
        self.assertRaises(UnknownField, scope_clause, AgentScope(False, (Grant(True, "x", "1"),)))

    def test_edges_of_a_second(self) -> None:
        """Dates within a second of a query's moment (the API shows whole seconds; the
        moment of a time frame may fall between two), every date field, operator and
        kind of value, with a whole and a fractional now: SQL and memory agree."""
        offsets = (-1.0, -0.6, -0.5, -0.4, -1e-7, 0.0, 1e-7, 0.4, 0.5, 0.9999999, 1.0)
        agents = [
            {
                **_PLAIN,
                "status": "disconnected",
                "register_time": EDGE + offset,
                "last_keepalive": EDGE + 0.5 + offset,
                "disconnection_time": EDGE + offset,
            }
            for offset in offsets
        ]
        registry = _registry(agents)
        self.addCleanup(registry.close)
        views = [agent_view(agent, lambda groups: None) for agent in registry.list_agents()]
        values = ("1d", "86400", "2023-11-13T22:13:20Z", "2023-11-13T22:13:19", "2023-11-13")
        checked = 0
        for now in (NOW, NOW + 0.5):
            for field in AGENT_DATE_FIELDS:
                for operator in ("=", "!=", "<", ">"):
                    for value in values:
                        query = f"{field}{operator}{value}"
                        expression = parse_q(
                            query, AGENT_FIELDS, AGENT_DATE_FIELDS, now, lists=AGENT_LIST_FIELDS
                        )
                        where = registry_filter(expression)
                        assert where is not None
                        expected = [view["id"] for view in views if expression.matches(view)]
                        found = [agent.id for agent in registry.list_agents(where=where)]
                        self.assertEqual(found, expected, (now, query))
                        checked += len(expected)
        self.assertGreater(checked, 0)

    def test_case_folding_and_numbers(self) -> None:
        """Every tricky text (Kelvin sign, dotted capital I, accents, mixed case) against
        every other with =, !=, ~, < and >, on a column and on the group list, and ids
        against numbers and texts: SQL and memory agree."""
        tricky = (
            "k",
            "K",
            "\u212a",
            "i",
            "I",
            "\u0130",
            "xi",
            "XK",
            "é",
            "É",
            "ab",
            "AB",
            "9",
            "10",
        )
        groups = ("web", "Web2")
        agents = [
            {**_PLAIN, "os_name": text, "groups": [groups[n % 2]]} for n, text in enumerate(tricky)
        ]
        registry = _registry(agents)
        self.addCleanup(registry.close)
        views = [agent_view(agent, lambda groups: None) for agent in registry.list_agents()]
        queries = [
            f"{field}{operator}{value}"
            for field in ("os.name", "group")
            for operator in OPERATORS
            for value in (*tricky, "WEB", "eb2")
            if not (field == "group" and operator in "<>")
        ]
        queries += [
            f"id{operator}{value}"
            for operator in OPERATORS
            for value in ("2", "2.5", "002", "10", "-1", "abc", "0a")
        ]
        matched = 0
        for query in queries:
            expression = parse_q(
                query, AGENT_FIELDS, AGENT_DATE_FIELDS, NOW, lists=AGENT_LIST_FIELDS
            )
            where = registry_filter(expression)
            assert where is not None
            expected = [view["id"] for view in views if expression.matches(view)]
            found = [agent.id for agent in registry.list_agents(where=where)]
            self.assertEqual(found, expected, query)
            matched += len(expected)
        self.assertGreater(matched, 0)

    def test_relative_times(self) -> None:
        """lastKeepAlive<1d keeps agents seen within a day, >1d the others, and never an
        agent that has no keep-alive; status=disconnected;lastKeepAlive>1d both."""
        agents = [
            {**_PLAIN, "last_keepalive": NOW - 3600, "status": "active"},
            {**_PLAIN, "last_keepalive": NOW - 3 * 86400, "status": "disconnected"},
            {**_PLAIN, "last_keepalive": None},
        ]
        registry = _registry(agents)
        self.addCleanup(registry.close)

        def ids(query: str) -> list[str]:
            expression = _parsed(query)
            assert expression is not None
            where = registry_filter(expression)
            assert where is not None
            return [agent.id for agent in registry.list_agents(where=where)]

        self.assertEqual(ids("lastKeepAlive<1d"), ["001"])
        self.assertEqual(ids("lastKeepAlive>1d"), ["002"])
        self.assertEqual(ids("status=disconnected;lastKeepAlive>1d"), ["002"])
        self.assertEqual(ids("(name~agent,status=active);lastKeepAlive>2h"), ["002"])

    def test_fields_outside_the_registry_stay_in_memory(self) -> None:
        """labels, group_config_status and status_code are not translated, alone or
        inside an or."""
        for query in ("labels=x", "status=active,group_config_status=synced", "status_code=0"):
            expression = _parsed(query)
            assert expression is not None
            self.assertIsNone(registry_filter(expression), query)

    def test_no_injection(self) -> None:
        """Values are bound parameters (a quote or SQL in a value is just text); an
        unknown field or operator is refused, never written into the SQL."""
        registry = _registry([{**_PLAIN, "name": "x'; DROP TABLE agents; --"}])
        self.addCleanup(registry.close)
        where = TextTest("name", "~", "'; DROP TABLE agents; --")
        self.assertEqual([agent.id for agent in registry.list_agents(where=where)], ["001"])
        self.assertEqual(registry.count_agents(), 1)
        for bad in (
            TextTest("name) OR (1=1", "=", "x"),
            TextTest("name", "= 1 OR 1 =", "x"),
            MomentTest("lastKeepAlive", "<= 0 OR 1", 0.0, False),
            MomentTest("name", "<", 0.0, False),
            AllOrAny(True, ()),
        ):
            self.assertRaises(UnknownField, where_clause, bad)
        for value in ("x'y", "\u212ax'y"):
            sql, params = where_clause(TextTest("os.name", "=", value))
            self.assertNotIn(value, sql)
            self.assertEqual(params[-1], value)

    def test_functions_are_registered_per_connection(self) -> None:
        """A connection without the q functions cannot run a filter (they are installed
        by Registry.open, not globally)."""
        sql, params = where_clause(TextTest("name", "<", "x"))
        bare = sqlite3.connect(":memory:")
        self.addCleanup(bare.close)
        bare.execute("CREATE TABLE agents (id INTEGER, name TEXT)")
        self.assertRaises(
            sqlite3.OperationalError, bare.execute, f"SELECT 1 FROM agents WHERE {sql}", params
        )


#: The agent fields the registry does not hold.
_OUTSIDE = sorted(set(AGENT_FIELDS) - FIELDS)
_PLAIN: dict[str, Any] = {
    "name": "agent",
    "ip": "any",
    "agent_ip": "",
    "status": "never_connected",
    "register_time": NOW - 10,
    "last_keepalive": None,
    "disconnection_time": 0.0,
    "version": "",
    "os_platform": "",
    "os_name": "",
    "os_version": "",
    "node_name": "",
    "config_sum": "",
    "groups": [],
}

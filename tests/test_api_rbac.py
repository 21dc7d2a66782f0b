"""Role-based access control: the pure decision (per default role) and its enforcement.

The first cases call :mod:`wazuhcluster.api.rbac` directly: for each of Wazuh's default
roles, a table of operations allowed and refused. The others drive the API through the
in-memory harness (tests.test_api_fixtures): a table of (default role, operation) → allowed,
filtered or 403 for all seven roles over HTTP (:data:`ROLE_TABLE`), users with roles, 403
and 4000 failed items, token revocation when roles change, and revocations kept across a
restart.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import give_certificates, short_temp_dir
from tests.test_api_fixtures import PASSWORD, ROLE_IDS, STRONG, USER, ApiHarness, make_user
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.api import rbac
from wazuhcluster.api.service import build_site
from wazuhcluster.api.users import read_users
from wazuhcluster.util.threads import run_inline

BODIES = {policy.id: policy.body for policy in rbac.DEFAULT_POLICIES}
LINKS = {role_id: policies for role_id, _, policies in rbac.DEFAULT_ROLES}


def permissions_of(*roles: str) -> rbac.Permissions:
    """The processed permissions of default roles, by name."""
    ids = [ROLE_IDS[name] for name in roles]
    return rbac.process_policies(rbac.role_policies(ids, LINKS, BODIES))


#: (action, resource type or None for resourceless, value) per default role: allowed / refused.
OPERATIONS: dict[
    str, tuple[list[tuple[str, str | None, str]], list[tuple[str, str | None, str]]]
] = {
    "administrator": (
        [
            ("agent:create", None, ""),
            ("agent:read", "agent:id", "001"),
            ("agent:delete", "agent:id", "002"),
            ("group:create", None, ""),
            ("group:delete", "group:id", "web"),
            ("cluster:read", "node:id", "worker1"),
            ("cluster:status", None, ""),
            ("security:create_user", None, ""),
            ("security:update", "role:id", "100"),
            ("security:revoke", None, ""),
            ("logtest:run", None, ""),
        ],
        [("agent:read", None, ""), ("unknown:action", None, "")],
    ),
    "readonly": (
        [
            ("agent:read", "agent:id", "001"),
            ("group:read", "group:id", "default"),
            ("cluster:read", "node:id", "master"),
            ("cluster:status", None, ""),
            ("rules:read", "rule:file", "0010-rules_config.xml"),
            ("manager:read", None, ""),
        ],
        [
            ("agent:create", None, ""),
            ("agent:delete", "agent:id", "001"),
            ("group:create", None, ""),
            ("group:delete", "group:id", "web"),
            ("security:read", "user:id", "100"),
            ("security:revoke", None, ""),
            ("logtest:run", None, ""),
            ("cluster:restart", "node:id", "master"),
        ],
    ),
    "users_admin": (
        [
            ("security:create_user", None, ""),
            ("security:read", "user:id", "100"),
            ("security:delete", "user:id", "100"),
            ("security:edit_run_as", None, ""),
            ("security:revoke", None, ""),
        ],
        [
            ("security:read", "role:id", "1"),
            ("security:create", None, ""),
            ("agent:read", "agent:id", "001"),
        ],
    ),
    "agents_readonly": (
        [("agent:read", "agent:id", "001"), ("group:read", "group:id", "web")],
        [
            ("agent:create", None, ""),
            ("agent:delete", "agent:id", "001"),
            ("group:create", None, ""),
            ("cluster:read", "node:id", "master"),
        ],
    ),
    "agents_admin": (
        [
            ("agent:create", None, ""),
            ("agent:delete", "agent:id", "001"),
            ("agent:modify_group", "agent:id", "001"),
            ("group:create", None, ""),
            ("group:modify_assignments", "group:id", "web"),
            ("group:update_config", "group:id", "web"),
        ],
        [
            ("cluster:status", None, ""),
            ("security:create_user", None, ""),
            ("active-response:command", "agent:id", "001"),
        ],
    ),
    "cluster_readonly": (
        [("cluster:status", None, ""), ("cluster:read", "node:id", "worker1")],
        [
            ("cluster:restart", "node:id", "worker1"),
            ("manager:restart", None, ""),
            ("agent:read", "agent:id", "001"),
        ],
    ),
    "cluster_admin": (
        [
            ("cluster:status", None, ""),
            ("cluster:restart", "node:id", "worker1"),
            ("manager:restart", None, ""),
        ],
        [("agent:read", "agent:id", "001"), ("group:create", None, "")],
    ),
}


def decide(permissions: rbac.Permissions, action: str, kind: str | None, value: str) -> bool:
    """Whether one operation of the table is allowed."""
    if kind is None:
        return rbac.resourceless_allowed(permissions, action)
    return rbac.permitted(permissions, action, kind, value)


class DefaultRoleTests(SynchronousTestCase):
    """For each default role, operations allowed and refused (pure decisions)."""

    def test_every_default_role(self) -> None:
        """The table of OPERATIONS holds for every default role."""
        self.assertEqual(set(OPERATIONS), set(ROLE_IDS))
        for role, (allowed, refused) in OPERATIONS.items():
            permissions = permissions_of(role)
            for operation in allowed:
                self.assertTrue(decide(permissions, *operation), f"{role}: {operation}")
            for operation in refused:
                self.assertFalse(decide(permissions, *operation), f"{role}: {operation}")

    def test_administrator_holds_every_action(self) -> None:
        """The administrator's policies cover the whole catalogue of actions."""
        self.assertEqual(set(permissions_of("administrator")), set(rbac.ACTIONS))

    def test_default_ids(self) -> None:
        """Policies are numbered 1 to 35, roles 1 to 7, as Wazuh numbers them."""
        self.assertEqual([p.id for p in rbac.DEFAULT_POLICIES], list(range(1, 36)))
        self.assertEqual([r[0] for r in rbac.DEFAULT_ROLES], list(range(1, 8)))


class DecisionTests(SynchronousTestCase):
    """How policies combine and how resources match."""

    def test_later_entry_wins_and_wildcards_reset(self) -> None:
        """A deny after an allow refuses; a later wildcard replaces the entries it covers."""
        permissions = rbac.process_policies(
            [
                {"actions": ["agent:read"], "resources": ["agent:id:*"], "effect": "allow"},
                {"actions": ["agent:read"], "resources": ["agent:id:002"], "effect": "deny"},
            ]
        )
        self.assertEqual(
            rbac.allowed_values(permissions, "agent:read", "agent:id", ["001", "002"]), {"001"}
        )
        again = rbac.process_policies(
            [
                {"actions": ["agent:read"], "resources": ["agent:id:002"], "effect": "deny"},
                {"actions": ["agent:read"], "resources": ["agent:id:*"], "effect": "allow"},
            ]
        )
        self.assertEqual(again, {"agent:read": {"agent:id:*": "allow"}})

    def test_groups_and_resourceless(self) -> None:
        """agent:group:web grants its agents; *:*:* grants only resourceless actions."""
        permissions = rbac.process_policies(
            [
                {"actions": ["agent:read"], "resources": ["agent:group:web"], "effect": "allow"},
                {"actions": ["agent:read"], "resources": ["*:*:*"], "effect": "allow"},
            ]
        )
        members = {"web": ["003"]}.get
        found = rbac.allowed_values(
            permissions, "agent:read", "agent:id", ["001", "003"], lambda g: members(g) or []
        )
        self.assertEqual(found, {"003"})
        self.assertTrue(rbac.resourceless_allowed(permissions, "agent:read"))

    def test_black_mode(self) -> None:
        """In black mode everything is allowed unless denied."""
        permissions = rbac.process_policies(
            [{"actions": ["agent:read"], "resources": ["agent:id:001"], "effect": "deny"}]
        )
        found = rbac.allowed_values(
            permissions, "agent:read", "agent:id", ["001", "002"], mode="black"
        )
        self.assertEqual(found, {"002"})
        self.assertTrue(rbac.resourceless_allowed(permissions, "agent:create", "black"))

    def test_policy_normalisation(self) -> None:
        """Actions and resource types are lower-cased, values keep their case; junk is 4006."""
        body = rbac.normalize_policy(
            {"actions": ["Agent:Read"], "resources": ["Agent:Group:Web"], "effect": "ALLOW"}
        )
        self.assertEqual(
            body, {"actions": ["agent:read"], "resources": ["agent:group:Web"], "effect": "allow"}
        )
        for bad in (
            {"actions": ["agent"], "resources": ["agent:id:1"], "effect": "allow"},
            {"actions": ["agent:read"], "resources": ["agent:1"], "effect": "allow"},
            {"actions": ["agent:read"], "resources": ["agent:id:1"]},
        ):
            self.assertRaises(rbac.PolicyError, rbac.normalize_policy, bad)

    def test_security_rules(self) -> None:
        """MATCH, FIND, AND/OR/NOT and r'regex' values against an authorization context."""
        context = {"user": {"name": "amy", "groups": ["ops", "dev"]}, "realm": "corp"}
        self.assertTrue(rbac.rule_matches({"MATCH": {"realm": "corp"}}, context))
        self.assertFalse(rbac.rule_matches({"MATCH": {"name": "amy"}}, context))
        self.assertTrue(rbac.rule_matches({"FIND": {"name": "amy"}}, context))
        self.assertTrue(rbac.rule_matches({"FIND": {"groups": ["ops"]}}, context))
        self.assertFalse(rbac.rule_matches({"FIND$": {"groups": ["ops"]}}, context))
        self.assertTrue(rbac.rule_matches({"FIND": {"name": "r'^a.y$'"}}, context))
        rule = {"AND": [{"MATCH": {"realm": "corp"}}, {"NOT": [{"FIND": {"name": "bob"}}]}]}
        self.assertTrue(rbac.rule_matches(rule, context))
        deep: dict[str, Any] = {"MATCH": {"realm": "corp"}}
        for _ in range(20):
            deep = {"AND": [deep]}
        self.assertFalse(rbac.rule_matches(deep, context))


class ApiRbacTests(SynchronousTestCase):
    """Roles enforced on the API's endpoints."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)

    def basic(self, user: str, password: str) -> dict[str, str]:
        """HTTP basic credentials."""
        return {
            "authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    def make_user(self, name: str, *roles: str) -> str:
        """Create ``name`` through the API with default ``roles``; return a token of theirs."""
        password = "Str0ng-Passw0rd!"
        answer = self.api.call("POST", "/security/users", {"username": name, "password": password})
        self.assertEqual(answer.status, 200, answer.raw)
        user_id = answer.json["data"]["affected_items"][0]["id"]
        self.assertGreaterEqual(user_id, 100)
        if roles:
            ids = ",".join(str(ROLE_IDS[role]) for role in roles)
            linked = self.api.call("POST", f"/security/users/{user_id}/roles?role_ids={ids}")
            self.assertEqual(linked.json["error"], 0, linked.raw)
        self.api.clock.advance(1)
        login = self.api.call(
            "POST", "/security/user/authenticate", headers=self.basic(name, password), token=None
        )
        self.assertEqual(login.status, 200, login.raw)
        token: str = login.json["data"]["token"]
        return token

    def test_existing_users_are_administrators(self) -> None:
        """A users.json entry from before roles is an administrator, numbered from 100."""
        users = read_users(self.api.settings.users_file)
        self.assertEqual((users[USER].id, users[USER].roles), (100, (1,)))
        stored = json.loads(self.api.settings.users_file.read_text())["users"][USER]
        self.assertEqual((stored["id"], stored["roles"]), (100, [1]))
        me = self.api.call("GET", "/security/users/me").json["data"]["affected_items"][0]
        self.assertEqual((me["username"], me["roles"][0]["name"]), (USER, "administrator"))

    def test_readonly_reads_but_cannot_write(self) -> None:
        """readonly lists agents and groups but gets 403 (4000) on writes."""
        self.api.enroll("alpha")
        token = self.make_user("reader", "readonly")
        self.assertEqual(self.api.call("GET", "/agents", token=token).status, 200)
        self.assertEqual(self.api.call("GET", "/groups", token=token).status, 200)
        for method, path, body in (
            ("POST", "/agents", {"name": "beta"}),
            ("POST", "/groups", {"group_id": "web"}),
            ("DELETE", "/agents?agents_list=001&status=all", None),
            ("POST", "/security/users", {"username": "other", "password": "Str0ng-Pass!1"}),
            ("PUT", "/security/user/revoke", None),
        ):
            answer = self.api.call(method, path, body, token=token)
            self.assertEqual((answer.status, answer.json.get("error")), (403, 4000), path)
            self.assertEqual(answer.json["title"], "Permission Denied")

    def test_agents_filtered_by_id_and_group(self) -> None:
        """A role on agent:group:web sees its agents only; others named fail with 4000."""
        self.api.store.create_group("web")
        web = self.api.enroll("in-web", groups=("web",))
        other = self.api.enroll("elsewhere")
        policy = {"actions": ["agent:read"], "resources": ["agent:group:web"], "effect": "allow"}
        made = self.api.call("POST", "/security/policies", {"name": "web_agents", "policy": policy})
        self.assertEqual(made.status, 200, made.raw)
        policy_id = made.json["data"]["affected_items"][0]["id"]
        role = self.api.call("POST", "/security/roles", {"name": "web_team"}).json
        role_id = role["data"]["affected_items"][0]["id"]
        linked = self.api.call("POST", f"/security/roles/{role_id}/policies?policy_ids={policy_id}")
        self.assertEqual(linked.json["error"], 0, linked.raw)
        created = self.api.call(
            "POST", "/security/users", {"username": "webby", "password": "Str0ng-Passw0rd!"}
        ).json["data"]["affected_items"][0]["id"]
        self.api.call("POST", f"/security/users/{created}/roles?role_ids={role_id}")
        self.api.clock.advance(1)
        token = self.api.call(
            "POST",
            "/security/user/authenticate",
            headers=self.basic("webby", "Str0ng-Passw0rd!"),
            token=None,
        ).json["data"]["token"]
        listed = self.api.call("GET", "/agents", token=token).json["data"]
        self.assertEqual([a["id"] for a in listed["affected_items"]], [web])
        both = self.api.call("GET", f"/agents?agents_list={web},{other}", token=token).json
        self.assertEqual([a["id"] for a in both["data"]["affected_items"]], [web])
        self.assertEqual(both["data"]["failed_items"][0]["error"]["code"], 4000)
        self.assertEqual(both["data"]["failed_items"][0]["id"], [other])
        self.assertEqual(both["error"], 2)
        refused = self.api.call("GET", f"/agents?agents_list={other}", token=token)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))

    def test_role_change_revokes_tokens(self) -> None:
        """Adding a role to a user kills their tokens; a new login has the new role."""
        token = self.make_user("grower", "agents_readonly")
        self.assertEqual(self.api.call("GET", "/agents", token=token).status, 200)
        user_id = self.api.call("GET", "/security/users/me", token=token).json["data"][
            "affected_items"
        ][0]["id"]
        self.api.call("POST", f"/security/users/{user_id}/roles?role_ids=5")
        self.assertEqual(self.api.call("GET", "/agents", token=token).status, 401)

    def test_me_policies(self) -> None:
        """GET /security/users/me/policies answers the processed permissions and mode."""
        token = self.make_user("clusterer", "cluster_readonly")
        data = self.api.call("GET", "/security/users/me/policies", token=token).json["data"]
        self.assertEqual(data["rbac_mode"], "white")
        self.assertEqual(data["cluster:read"], {"node:id:*": "allow"})
        self.assertNotIn("agent:read", data)

    def failed(self, answer: Any) -> tuple[int, int, list[tuple[int, list[Any]]]]:
        """A 200 answer's status, error level and (code, ids) of its failed items."""
        data = answer.json["data"]
        items = [(item["error"]["code"], item["id"]) for item in data["failed_items"]]
        return answer.status, answer.json["error"], items

    def test_reserved_objects_refuse_changes(self) -> None:
        """Default roles cannot be renamed nor deleted: 4008 as a failed item, as Wazuh."""
        answer = self.api.call("PUT", "/security/roles/1", {"name": "boss"})
        self.assertEqual(self.failed(answer), (200, 1, [(4008, [1])]))
        self.assertEqual(answer.json["message"], "Role was not updated")
        deleted = self.api.call("DELETE", "/security/roles?role_ids=1").json
        self.assertEqual(deleted["data"]["failed_items"][0]["error"]["code"], 4008)

    def test_unknown_objects_are_failed_items(self) -> None:
        """Updating an unknown role, policy, rule or user answers 200, error 1, with the id
        (an integer, as Wazuh's security endpoints give it) as the failed item and Wazuh's
        code (no 404, which Wazuh's description lacks)."""
        policy = {"actions": ["agent:read"], "resources": ["agent:id:*"], "effect": "allow"}
        cases = [
            ("/security/roles/777", {"name": "x"}, 4002),
            ("/security/policies/777", {"policy": policy}, 4007),
            ("/security/rules/777", {"name": "x"}, 4022),
            ("/security/users/777", {"password": "Str0ng-Passw0rd!"}, 5001),
            ("/security/users/777/run_as?allow_run_as=true", None, 5001),
        ]
        for path, body, code in cases:
            answer = self.api.call("PUT", path, body)
            self.assertEqual(self.failed(answer), (200, 1, [(code, [777])]), path)
            self.assertEqual(answer.json["data"]["affected_items"], [], path)
        linked = self.api.call("POST", "/security/users/777/roles?role_ids=1")
        self.assertEqual(self.failed(linked), (200, 1, [(5001, [777])]))

    def test_conflicts_are_failed_items(self) -> None:
        """A taken name or an invalid rule is the failed item of a 200 (4005, 4013, 4003)."""
        self.api.call("POST", "/security/roles", {"name": "team"})
        again = self.api.call("POST", "/security/roles", {"name": "team"})
        self.assertEqual(self.failed(again), (200, 1, [(4005, ["team"])]))
        self.assertEqual(again.json["message"], "Role was not created")
        other = self.api.call("POST", "/security/roles", {"name": "other"}).json
        other_id = other["data"]["affected_items"][0]["id"]
        renamed = self.api.call("PUT", f"/security/roles/{other_id}", {"name": "team"})
        self.assertEqual(self.failed(renamed), (200, 1, [(4005, [other_id])]))
        bodies = [
            {"actions": ["agent:read"], "resources": ["agent:id:*"], "effect": "allow"},
            {"actions": ["agent:read"], "resources": ["agent:id:001"], "effect": "allow"},
        ]
        ids = [
            self.api.call("POST", "/security/policies", {"name": f"p{i}", "policy": body}).json[
                "data"
            ]["affected_items"][0]["id"]
            for i, body in enumerate(bodies)
        ]
        clash = self.api.call("PUT", f"/security/policies/{ids[1]}", {"name": "p0"})
        self.assertEqual(self.failed(clash), (200, 1, [(4013, [ids[1]])]))
        bad_rule = self.api.call("POST", "/security/rules", {"name": "r", "rule": {}})
        self.assertEqual(self.failed(bad_rule), (200, 1, [(4003, ["r"])]))

    def test_reserved_user_password_only_by_reserved_users(self) -> None:
        """A reserved user's password is changed only by a reserved user (5011; every user
        here has an id from 100, so no caller is reserved)."""
        token = self.make_user("helper", "administrator")
        answer = self.api.call(
            "PUT", "/security/users/1", {"password": "Str0ng-Passw0rd!"}, token=token
        )
        self.assertEqual((answer.status, answer.json["error"]), (400, 5011))

    def test_weak_password_and_duplicate_user(self) -> None:
        """Wazuh's password policy (5007, 5009) and a taken name (5000)."""
        weak = self.api.call("POST", "/security/users", {"username": "weak", "password": "short"})
        self.assertEqual(weak.json["error"], 5009)
        plain = self.api.call(
            "POST", "/security/users", {"username": "weak", "password": "longbutplain"}
        )
        self.assertEqual(plain.json["error"], 5007)
        taken = self.api.call(
            "POST", "/security/users", {"username": USER, "password": "Str0ng-Passw0rd!"}
        )
        self.assertEqual(taken.json["data"]["failed_items"][0]["error"]["code"], 5000)

    def test_run_as_login(self) -> None:
        """run_as gives the roles whose rules match the context, only if allowed."""
        self.make_user("dash", "readonly")
        user_id = self.api.call("GET", "/security/users?search=dash").json["data"][
            "affected_items"
        ][0]["id"]
        rule = self.api.call(
            "POST", "/security/rules", {"name": "ops_team", "rule": {"FIND": {"team": "ops"}}}
        ).json["data"]["affected_items"][0]["id"]
        role = self.api.call("POST", "/security/roles", {"name": "from_rule"}).json["data"][
            "affected_items"
        ][0]["id"]
        self.api.call("POST", f"/security/roles/{role}/policies?policy_ids=4")
        self.api.call("POST", f"/security/roles/{role}/rules?rule_ids={rule}")
        headers = {**self.basic("dash", "Str0ng-Passw0rd!"), "content-type": "application/json"}
        refused = self.api.call(
            "POST", "/security/user/authenticate/run_as", {"team": "ops"}, headers, token=None
        )
        self.assertEqual((refused.status, refused.json["error"]), (403, 6004))
        self.api.call("PUT", f"/security/users/{user_id}/run_as?allow_run_as=true")
        self.api.clock.advance(1)
        answer = self.api.call(
            "POST", "/security/user/authenticate/run_as", {"team": "ops"}, headers, token=None
        )
        token = answer.json["data"]["token"]
        policies = self.api.call("GET", "/security/users/me/policies", token=token).json["data"]
        self.assertIn("agent:read", policies)
        self.assertNotIn("group:read", policies)


ALLOWED, FILTERED, REFUSED = "allowed", "filtered", "403"
A, F, R = ALLOWED, FILTERED, REFUSED

#: What each default role may do over the API: read calls answer ``allowed`` (200 with
#: items) or ``filtered`` (200 with nothing: the caller named no list), writes ``allowed``
#: (2xx, error 0) or ``403`` (error 4000).
ROLE_TABLE_OPERATIONS = (
    "read agents",
    "add agent",
    "delete agent",
    "read groups",
    "create group",
    "read cluster nodes",
    "restart cluster",
    "read rules",
    "read security users",
    "create user",
    "run logtest",
)
ROLE_TABLE: dict[str, tuple[str, ...]] = {
    "administrator": (A, A, A, A, A, A, A, A, A, A, A),
    "readonly": (A, R, R, A, R, A, R, A, F, R, R),
    "users_admin": (F, R, R, F, R, F, R, F, A, A, R),
    "agents_readonly": (A, R, R, A, R, F, R, F, F, R, R),
    "agents_admin": (A, A, A, A, A, F, R, F, F, R, R),
    "cluster_readonly": (F, R, R, F, R, A, R, F, F, R, R),
    "cluster_admin": (F, R, R, F, R, A, A, F, F, R, R),
}


class RoleTableTests(SynchronousTestCase):
    """Each default role against the table, over HTTP through the in-memory API."""

    def mktemp(self) -> str:
        """A short home, so the control socket's path passes the restart's checks."""
        return str(short_temp_dir(self) / "h")

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        give_certificates(self.api.config)
        install_default_ruleset(str(self.api.home.root))
        self.api.store.create_group("web")
        self.api.enroll("web1", "10.0.0.1", ("web",))
        #: The restarts the master was asked for (the node does not really restart).
        self.restarts: list[float] = []
        self.api.node.answers.restart = self.restarts.append

    def token_of(self, name: str, role: str) -> str:
        """A token of a new user ``name`` holding the default ``role`` alone."""
        return make_user(self.api, name, role)

    def calls(self, role: str) -> list[tuple[str, str, Any]]:
        """The (method, path, body) of each table operation, with names of ``role``'s own."""
        victim = self.api.enroll(f"victim-{role}")
        logtest = {
            "event": "Dec  4 10:00:00 host sshd[1]: Failed password for root",
            "log_format": "syslog",
            "location": "/var/log/auth.log",
        }
        return [
            ("GET", "/agents", None),
            ("POST", "/agents", {"name": f"new-{role}"}),
            ("DELETE", f"/agents?agents_list={victim}&status=all&older_than=0s", None),
            ("GET", "/groups", None),
            ("POST", "/groups", {"group_id": f"team-{role}"}),
            ("GET", "/cluster/nodes", None),
            ("PUT", "/cluster/restart", None),
            ("GET", "/rules?limit=5", None),
            ("GET", "/security/users", None),
            ("POST", "/security/users", {"username": f"made-by-{role}", "password": STRONG}),
            ("PUT", "/logtest", logtest),
        ]

    def outcome(self, method: str, answer: Any) -> str:
        """The table's word for an answer (anything else is spelled out)."""
        body = answer.json
        if answer.status == 403 and body.get("error") == 4000:
            return REFUSED
        if 200 <= answer.status < 300 and body.get("error") == 0:
            if method != "GET":
                return ALLOWED
            return ALLOWED if body["data"]["total_affected_items"] else FILTERED
        return f"{answer.status} {answer.raw[:160]!r}"

    def test_each_default_role_over_http(self) -> None:
        """Every default role, every operation of the table: the answer the table says
        (the table is Wazuh's default policies as a Wazuh API applies them)."""
        found: dict[str, tuple[str, ...]] = {}
        for role in ROLE_TABLE:
            token = self.token_of(f"user-{role}", role)
            found[role] = tuple(
                self.outcome(method, self.api.call(method, path, body, token=token))
                for method, path, body in self.calls(role)
            )
        differ = {
            f"{role}: {operation}": (got, wanted)
            for role in ROLE_TABLE
            for operation, got, wanted in zip(
                ROLE_TABLE_OPERATIONS, found[role], ROLE_TABLE[role], strict=True
            )
            if got != wanted
        }
        self.assertEqual(differ, {}, "(answer, table) per role and operation")
        # administrator and cluster_admin restarted the cluster; no one else did.
        self.assertEqual(len(self.restarts), 2)


class DurableRevocationTests(SynchronousTestCase):
    """Revocations and the signing key outlive a restart (defect 11)."""

    def test_logged_out_token_stays_dead_after_restart(self) -> None:
        """A token revoked by logout is refused by a new API over the same home."""
        api = ApiHarness(self)
        token = api.login().json["data"]["token"]
        api.clock.advance(1)
        other = api.login().json["data"]["token"]
        api.call("DELETE", "/security/user/authenticate", token=other)
        api.resource.endpoints.tokens.store.close()
        api.site, api.resource = build_site(
            api.settings, api.node, api.registry, api.clock.seconds, run_inline
        )
        self.addCleanup(api.resource.endpoints.tokens.store.close)
        self.assertEqual(api.call("GET", "/", token=token).status, 401)
        api.clock.advance(1)
        fresh = api.login().json["data"]["token"]
        self.assertEqual(api.call("GET", "/", token=fresh).status, 200)

    def test_revoke_all_replaces_the_key(self) -> None:
        """PUT /security/user/revoke writes a new key: old tokens fail, also after restart."""
        api = ApiHarness(self)
        token = api.login().json["data"]["token"]
        before = api.settings.jwt_key_file.read_bytes()
        answer = api.call("PUT", "/security/user/revoke", token=token)
        self.assertEqual(answer.json["error"], 0)
        self.assertNotEqual(api.settings.jwt_key_file.read_bytes(), before)
        self.assertEqual(api.call("GET", "/", token=token).status, 401)
        self.assertEqual(api.login(USER, PASSWORD).status, 200)

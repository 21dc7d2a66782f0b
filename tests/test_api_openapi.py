"""The OpenAPI description shipped in wazuhcluster/api/openapi.json matches what is served.

Checked structurally: the same paths and methods, the same query and path parameters
(and which are required), and every answer of a scenario touching every route, in
success and in error, validates (jsonschema) against the schema the description gives
for its path, method, status and content type.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from typing import Any

import jsonschema
from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import PASSWORD, USER, Answer, ApiHarness
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.api import openapi
from wazuhcluster.master.agent_data import MasterAgentData
from wazuhcluster.node.alert_totals import add_to_day, totals_folder
from wazuhcluster.util.threads import run_inline

METHODS = ("get", "put", "post", "delete", "patch")


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: ``nullable: true`` becomes a null-accepting type."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


class OpenApiTests(SynchronousTestCase):
    """Served routes and answers against the OpenAPI description."""

    def setUp(self) -> None:
        self.spec = openapi()
        self.components = to_json_schema(copy.deepcopy(self.spec["components"]))
        self.api = ApiHarness(self, max_upload_size=4096)
        self.answers: list[tuple[str, str, Answer]] = []

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow one ``$ref`` into the components."""
        if "$ref" not in node:
            return node
        kind, name = node["$ref"].split("/")[-2:]
        found: dict[str, Any] = self.spec["components"][kind][name]
        return found

    def operation(self, method: str, template: str) -> dict[str, Any]:
        """The description of one operation."""
        found: dict[str, Any] = self.spec["paths"][template][method.lower()]
        return found

    def test_paths_and_methods_match(self) -> None:
        """The description lists exactly the routes the resource serves."""
        served = {(route.method, route.template) for route, _ in self.api.resource.routes}
        described = {
            (method.upper(), path)
            for path, item in self.spec["paths"].items()
            for method in item
            if method in METHODS
        }
        self.assertEqual(served, described)

    def test_parameters_match(self) -> None:
        """Each route accepts exactly the described query and path parameters."""
        for route, _ in self.api.resource.routes:
            parameters = [
                self.resolve(p) for p in self.operation(route.method, route.template)["parameters"]
            ]
            query = {p["name"] for p in parameters if p["in"] == "query"}
            path = {p["name"] for p in parameters if p["in"] == "path"}
            required = {p["name"] for p in parameters if p["in"] == "query" and p.get("required")}
            where = f"{route.method} {route.template}"
            self.assertEqual(query, set(route.params), where)
            self.assertEqual(path, set(route.path_params), where)
            self.assertEqual(required, set(route.required), where)
            described_body = "requestBody" in self.operation(route.method, route.template)
            self.assertEqual(described_body, route.body is not None, where)

    # --- answers ------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Answer:
        """Send a request and keep its answer for validation."""
        answer = self.api.call(method, path, body, **kwargs)
        self.answers.append((method, path, answer))
        return answer

    def template_of(self, method: str, path: str) -> str | None:
        """The route template serving ``path`` (for ``method`` first, else any), or None."""
        matching = [
            route
            for route, pattern in self.api.resource.routes
            if pattern.match(path.split("?")[0])
        ]
        for route in sorted(matching, key=lambda route: route.method != method):
            return route.template
        return None

    def check_answer(self, method: str, path: str, answer: Answer) -> None:
        """Validate one answer against the described response."""
        template = self.template_of(method, path)
        where = f"{method} {path} -> {answer.status}"
        if template is None or method.lower() not in self.spec["paths"][template]:
            self.assertIn(answer.status, (404, 405), where)
            jsonschema.validate(answer.json, self.components["schemas"]["Problem"])
            return
        responses = self.operation(method, template)["responses"]
        self.assertIn(str(answer.status), responses, where)
        response = self.resolve(responses[str(answer.status)])
        media = answer.content_type.split(";")[0].strip()
        self.assertIn(media, response["content"], where)
        schema = to_json_schema(response["content"][media]["schema"])
        if media in ("text/plain", "application/xml"):
            self.assertTrue(answer.raw, where)
            return
        root = {"components": self.components, "allOf": [schema]}
        jsonschema.Draft7Validator(root).validate(answer.json)

    def test_every_answer_matches_the_description(self) -> None:
        """A scenario over every route, in success and error, answers as described."""
        api = self.api
        api.connect_worker("w1", "192.0.2.21")
        self.call("GET", "/")
        self.call("GET", "/cluster/status")
        self.call("GET", "/cluster/local/info")
        self.call("GET", "/cluster/nodes?select=ip&sort=-name")
        self.call("GET", "/cluster/nodes?nodes_list=ghost")
        self.call("GET", "/cluster/healthcheck")
        api.clock.advance(200)
        self.call("GET", "/cluster/healthcheck?nodes_list=w1,ghost")
        self.call("GET", "/cluster/ruleset/synchronization")
        added = self.call("POST", "/agents", {"name": "web1", "ip": "10.0.0.1"}).json["data"]["id"]
        self.call("POST", "/agents", {"name": "web1"})
        self.call("POST", "/agents", {"name": "x" * 5000})
        self.call("POST", "/agents", b"{}", headers={"content-type": "text/plain"})
        other = api.enroll("web2")
        api.report(other, "active", "w1", os_platform="ubuntu", version="Wazuh v4.14.7")
        self.call("GET", f"/agents/{other}/config/agent/client")
        self.call("GET", f"/agents/{added}/config/agent/client")
        self.call("GET", f"/agents/{other}/stats/logcollector")
        self.call("GET", "/agents/999/stats/agent")
        self.call("GET", f"/agents/{other}/daemons/stats?daemons_list=wazuh-remoted")
        self.call("GET", "/agents/999/daemons/stats")
        self.call("GET", "/agents")
        self.call("GET", "/agents?select=os.platform,name&q=status=active")
        self.call("GET", "/agents?agents_list=999&sort=nope")
        self.call("GET", "/agents?agents_list=999")
        self.call("GET", "/agents/summary/status")
        self.call("PUT", f"/agents/reconnect?agents_list={added},{other},999")
        self.call("POST", "/groups", {"group_id": "web"})
        self.call("POST", "/groups", {"group_id": "web"})
        self.call("GET", "/groups?hash=sha1")
        self.call("GET", "/groups?groups_list=ghost")
        self.call("PUT", f"/agents/{added}/group/web")
        self.call("PUT", f"/agents/{added}/group/ghost")
        self.call("PUT", "/agents/999/group/web")
        self.call("DELETE", f"/agents/{added}/group/web")
        self.call("DELETE", f"/agents/{added}/group/web")
        self.call("PUT", f"/agents/group?group_id=web&agents_list={added},999")
        self.call("PUT", "/agents/group?group_id=ghost")
        self.call("DELETE", f"/agents/group?group_id=web&agents_list={added},{other}")
        self.call("DELETE", "/agents/group?agents_list=001")
        self.call("GET", "/groups/web/files")
        self.call("GET", "/groups/default/agents?select=name&status=never_connected")
        self.call("GET", "/groups/ghost/agents")
        self.call("GET", "/groups/ghost/files")
        conf = b"<agent_config></agent_config>"
        xml = {"content-type": "application/xml"}
        self.call("PUT", "/groups/web/configuration", conf, headers=xml)
        self.call("PUT", "/groups/web/configuration", b"<nope", headers=xml)
        self.call("PUT", "/groups/web/configuration", conf, headers={"content-type": "text/csv"})
        self.call("DELETE", "/groups?groups_list=web,default")
        self.call("DELETE", f"/agents?agents_list={added},999&status=all&older_than=0s")
        self.call("DELETE", "/agents?agents_list=all")
        self.call("GET", "/agents", token=None)
        self.call("GET", "/nowhere")
        self.call("PATCH", "/agents")
        self.call("POST", "/security/user/authenticate", token=None)
        self.call("POST", "/security/user/authenticate?raw=true", token=None)
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.call(
            "GET",
            "/security/user/authenticate",
            token=None,
            headers={"authorization": f"Basic {basic}"},
        )
        self.security_scenario()
        self.agents_scenario()
        self.manager_scenario()
        self.ruleset_scenario()
        self.logtest_scenario()

        self.agent_data_scenario()
        api.login()
        api.clock.advance(1)
        self.call("DELETE", "/security/user/authenticate")
        for method, path, answer in self.answers:
            self.check_answer(method, path, answer)
        succeeded = {
            (method, self.template_of(method, path))
            for method, path, answer in self.answers
            if answer.status in (200, 202)
        }
        served = {(route.method, route.template) for route, _ in api.resource.routes}
        served.discard(("POST", "/security/user/authenticate"))  # logged in through api.login()
        self.assertEqual(served - succeeded, set())

    def manager_scenario(self) -> None:
        """Every /manager and /cluster/{node_id} route, in success and in error."""
        self.api.home.cluster_log.write_text("2025/01/02 10:00:00 INFO: [Master] [Main] started\n")
        moment = time.strptime("2025-03-04 15", "%Y-%m-%d %H")
        add_to_day(totals_folder(self.api.home.root), moment, 40, {(5501, 3): 4}, 1, 0)
        for node in ("manager", "cluster/master"):
            self.call("GET", f"/{node}/info")
            self.call("GET", f"/{node}/status")
            self.call("GET", f"/{node}/configuration?section=cluster&field=node_name")
            self.call("GET", f"/{node}/configuration?raw=true")
            self.call("GET", f"/{node}/configuration?section=syscheck")
            self.call("GET", f"/{node}/logs?level=info&sort=-timestamp")
            self.call("GET", f"/{node}/logs?limit=900")
            self.call("GET", f"/{node}/logs/summary")
            self.call("GET", f"/{node}/stats/analysisd")
            self.call("GET", f"/{node}/stats/remoted")
            self.call("GET", f"/{node}/stats?date=2025-03-04")
            self.call("GET", f"/{node}/stats?date=2001-01-01")
            self.call("GET", f"/{node}/stats/hourly")
            self.call("GET", f"/{node}/stats/weekly")
            self.call("GET", f"/{node}/daemons/stats")
            self.call("GET", f"/{node}/daemons/stats?daemons_list=wazuh-remoted,wazuh-db")
            self.call("GET", f"/{node}/daemons/stats?daemons_list=nope")
            for pair in ("analysis/global", "request/remote", "auth/auth", "com/cluster"):
                self.call("GET", f"/{node}/configuration/{pair}")
            self.call("GET", f"/{node}/configuration/mail/global")
            self.call("GET", f"/{node}/configuration/analysis/rules")
            self.call("GET", f"/{node}/configuration/analysis/nope")
        self.call("GET", "/cluster/ghost/info")
        self.call("GET", "/cluster/local/config")
        self.call("GET", "/manager/api/config")
        self.call("GET", "/cluster/api/config?nodes_list=master,ghost")
        self.call("GET", "/cluster/ghost/stats/remoted")
        self.call("GET", "/cluster/ghost/daemons/stats")
        self.call("GET", "/manager/configuration/validation")
        self.call("GET", "/cluster/configuration/validation?nodes_list=master,ghost")
        self.call("PUT", "/cluster/analysisd/reload?nodes_list=ghost")
        octets = {"content-type": "application/octet-stream"}
        current = self.api.config.source.read_bytes()
        self.call("PUT", "/manager/configuration", b"<wazuh_config>", headers=octets)
        self.call("PUT", "/manager/configuration", b"\xff", headers=octets)
        self.call("PUT", "/cluster/ghost/configuration", current, headers=octets)
        self.call("PUT", "/cluster/master/configuration", current, headers=octets)
        self.call("GET", "/manager/version/check?force_query=true")
        self.call("PUT", "/manager/restart")  # refused: no TLS material in this home (1908)
        restarts: list[float] = []
        self.api.node.answers.restart = restarts.append
        self.api.node.answers.start_check = lambda: ""  # type: ignore[method-assign]
        self.call("PUT", "/manager/restart")
        self.call("PUT", "/cluster/restart?nodes_list=master,ghost")
        self.assertEqual(len(restarts), 2)
        self.call("PUT", "/manager/analysisd/reload")
        self.api.node.ruleset = _StatsOnly()  # type: ignore[assignment]
        self.call("GET", "/manager/stats/analysisd")
        self.call("GET", "/cluster/master/stats/analysisd")
        self.call("PUT", "/manager/analysisd/reload")

    def ruleset_scenario(self) -> None:
        """Every /rules, /decoders and /lists route, in success and in error."""
        install_default_ruleset(str(self.api.home.root))
        xml = {"content-type": "application/octet-stream"}
        self.call("GET", "/rules?level=3-5&select=id,level&sort=-id")
        self.call("GET", "/rules?sort=nope")
        self.call("GET", "/rules/groups?search=ssh")
        self.call("GET", "/rules/requirement/pci_dss")
        self.call("GET", "/decoders?decoder_names=sshd")
        self.call("GET", "/decoders/parents")
        self.call("GET", "/lists")
        for kind, name, good in (
            (
                "rules",
                "0100-sshd_rules.xml",
                b'<group name="a,"><rule id="100001" level="3">'
                b"<match>x</match><description>x</description></rule></group>",
            ),
            (
                "decoders",
                "0010-base_decoders.xml",
                b'<decoder name="x"><program_name>x</program_name></decoder>',
            ),
            ("lists", "admin-users", b"a:b"),
        ):
            mine = "mine" if kind == "lists" else "mine.xml"
            self.call("GET", f"/{kind}/files")
            self.call("GET", f"/{kind}/files/{name}")
            self.call("GET", f"/{kind}/files/{name}?raw=true")
            self.call("GET", f"/{kind}/files/{mine}")
            self.call("PUT", f"/{kind}/files/{mine}", good, headers=xml)
            self.call("PUT", f"/{kind}/files/{mine}", good, headers=xml)
            self.call("PUT", f"/{kind}/files/{mine}", b"<a", headers={"content-type": "text/csv"})
            self.call("DELETE", f"/{kind}/files/{mine}")
            self.call("DELETE", f"/{kind}/files/{mine}")

    def logtest_scenario(self) -> None:
        """/logtest and GET /groups/{group_id}/configuration, in success and in error."""
        event = {"event": "hello", "log_format": "syslog", "location": "/var/log/x"}
        token = self.call("PUT", "/logtest", event).json["data"]["token"]
        self.call("PUT", "/logtest", {**event, "token": token})
        self.call("PUT", "/logtest", {"event": "x"})
        self.call("DELETE", f"/logtest/sessions/{token}")
        self.call("DELETE", f"/logtest/sessions/{token}")
        self.call("GET", "/groups/default/configuration?limit=1")
        self.call("GET", "/groups/ghost/configuration")

    def agents_scenario(self) -> None:
        """The agents' summaries, keys, sync state, insertions and group removals."""
        api = self.api
        api.store.create_group("team")
        member = api.enroll("member", "10.0.9.1", ("team",))
        api.report(member, "active", "w1", os_platform="ubuntu", version="Wazuh v4.13.0")
        self.call("GET", "/agents/summary?agents_list=999")
        self.call("GET", "/agents/summary")
        self.call("GET", "/agents/summary/os")
        self.call("GET", "/agents/no_group?select=name")
        self.call("GET", "/agents/outdated?sort=-name")
        self.call("GET", "/agents/outdated?sort=nope")
        self.call("GET", "/agents/stats/distinct?fields=os.platform,group&sort=-count")
        self.call("GET", "/agents/stats/distinct?fields=nope")
        self.call("GET", f"/agents/{member}/key")
        self.call("GET", "/agents/999/key")
        self.call("GET", f"/agents/{member}/group/is_sync")
        self.call("GET", "/agents/000/group/is_sync")
        self.call("DELETE", f"/agents/{member}/group?groups_list=team,ghost")
        self.call("DELETE", "/agents/999/group")
        self.call("POST", "/agents/insert", {"name": "inserted", "id": "321", "key": "k" * 64})
        self.call("POST", "/agents/insert", {"name": "again", "id": "321", "key": "k" * 64})
        self.call("POST", "/agents/insert", {"name": "short", "key": "k"})
        self.call("POST", "/agents/insert/quick?agent_name=quick")
        self.call("POST", "/agents/insert/quick?agent_name=quick")
        self.call("GET", "/overview/agents")
        self.call("GET", "/agents/uninstall")
        self.call("GET", "/groups/team/files/agent.conf")
        self.call("GET", "/groups/team/files/agent.conf?raw=true")
        self.call("GET", "/groups/team/files/merged.mg?type=rcl")
        self.call("GET", "/groups/team/files/merged.mg?raw=true")
        self.call("GET", "/groups/team/files/nothing.txt")
        self.call("GET", "/groups/ghost/files/agent.conf")
        self.call("PUT", f"/agents/restart?agents_list=000,{member},999")
        self.call("PUT", f"/agents/{member}/restart")
        self.call("PUT", "/agents/group/team/restart")
        self.call("PUT", "/agents/group/ghost/restart")
        self.call("PUT", "/agents/node/master/restart")
        self.call("PUT", "/active-response", {"command": "!block.sh", "arguments": ["x"]})
        self.call("PUT", "/active-response", {"command": "nope0"})
        self.call("POST", "/events", {"events": ["Dec  4 10:00:00 host app: a line"]})
        self.call("POST", "/events", {"events": ["a"] * 101})

    def security_scenario(self) -> None:
        """Every /security route, in success and in error."""
        strong = "Str0ng-Passw0rd!"
        self.call("GET", "/security/users/me")
        self.call("GET", "/security/users/me/policies")
        self.call("GET", "/security/actions?endpoint=GET /security/users")
        self.call("GET", "/security/resources?resource=agent:id")
        self.call("GET", "/security/users?user_ids=100,999")
        self.call("GET", "/security/roles?select=name")
        self.call("GET", "/security/policies?limit=2")
        self.call("GET", "/security/rules")
        self.call("POST", "/security/users", {"username": "short"})
        user = self.call("POST", "/security/users", {"username": "carol", "password": strong})
        user_id = user.json["data"]["affected_items"][0]["id"]
        self.call("PUT", f"/security/users/{user_id}", {"password": strong + "2"})
        self.call("PUT", f"/security/users/{user_id}/run_as?allow_run_as=true")
        role = self.call("POST", "/security/roles", {"name": "team"})
        role_id = role.json["data"]["affected_items"][0]["id"]
        self.call("PUT", f"/security/roles/{role_id}", {"name": "team2"})
        self.call("PUT", "/security/roles/1", {"name": "boss"})
        policy = {"actions": ["agent:read"], "resources": ["agent:id:*"], "effect": "allow"}
        made = self.call("POST", "/security/policies", {"name": "read", "policy": policy})
        policy_id = made.json["data"]["affected_items"][0]["id"]
        self.call("POST", "/security/policies", {"name": "bad", "policy": {"actions": []}})
        policy["effect"] = "deny"
        self.call("PUT", f"/security/policies/{policy_id}", {"policy": policy})
        rule = self.call("POST", "/security/rules", {"name": "r", "rule": {"FIND": {"a": "b"}}})
        rule_id = rule.json["data"]["affected_items"][0]["id"]
        self.call("PUT", f"/security/rules/{rule_id}", {"name": "r2"})
        self.call("POST", f"/security/users/{user_id}/roles?role_ids={role_id},999&position=0")
        self.call("POST", f"/security/roles/{role_id}/policies?policy_ids={policy_id}")
        self.call("POST", f"/security/roles/{role_id}/rules?rule_ids={rule_id}")
        basic = base64.b64encode(f"carol:{strong}2".encode()).decode()
        self.call(
            "POST",
            "/security/user/authenticate/run_as",
            {"a": "b"},
            headers={"authorization": f"Basic {basic}"},
            token=None,
        )
        self.call("DELETE", f"/security/roles/{role_id}/rules?rule_ids={rule_id}")
        self.call("DELETE", f"/security/roles/{role_id}/policies?policy_ids={policy_id}")
        self.call("DELETE", f"/security/users/{user_id}/roles?role_ids={role_id}")
        self.call("DELETE", f"/security/users/999/roles?role_ids={role_id}")
        self.call("DELETE", f"/security/rules?rule_ids={rule_id}")
        self.call("DELETE", f"/security/policies?policy_ids={policy_id}")
        self.call("DELETE", f"/security/roles?role_ids={role_id}")
        self.call("DELETE", f"/security/users?user_ids={user_id}")
        self.call("GET", "/security/config")
        self.call("PUT", "/security/config", {"auth_token_exp_timeout": 900})
        self.api._token = None
        self.call("DELETE", "/security/config")
        self.api._token = None
        self.call("PUT", "/security/user/revoke")
        self.api._token = None

    def agent_data_scenario(self) -> None:
        """Every agent-data route (FIM, SCA, rootcheck, inventory; reads, scans and clears),
        in success and error."""
        node = self.api.node
        node.agent_data = MasterAgentData(
            "master", node.workers, self.api.home.agents_state, self.api.clock, run_inline
        )
        agent = self.api.enroll("data-agent")
        for route, _ in self.api.resource.routes:
            if route.template.startswith(("/syscheck", "/sca", "/rootcheck", "/syscollector")):
                self.call(route.method, route.template.format(agent_id=agent, policy_id="pol"))
        self.call("GET", "/syscheck/099")
        self.call("PUT", "/syscheck?agents_list=099,000")
        self.call("DELETE", "/rootcheck/099")
        self.call("GET", f"/syscheck/{agent}?sort=nope")

    def test_the_description_is_valid_json_with_examples_of_errors(self) -> None:
        """The shipped file parses and every operation describes 400, 401 (or login), 405, 429."""
        for path, item in self.spec["paths"].items():
            for method, operation in item.items():
                codes = set(operation["responses"])
                success = "202" if path in ("/manager/restart", "/cluster/restart") else "200"
                self.assertTrue({success, "400", "401", "405", "429"} <= codes, f"{method} {path}")
        json.dumps(self.spec)


class _StatsOnly:
    """A ruleset with intake numbers that reloads at once."""

    def intake(self) -> dict[str, Any]:
        """A few numbers."""
        return {"received": 1, "processed": 1, "queue_size": 8, "queue_length": 0}

    def reload(self) -> Any:
        """Reloaded."""
        from twisted.internet.defer import succeed

        return succeed(None)

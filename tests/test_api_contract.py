"""The API against Wazuh's own OpenAPI description (``WAZUH_API_SPEC``), with openapi-core.

The checks:

- every served operation exists in Wazuh's description (same method and path), and the
  README's table of provided and not provided operations is the comparison of the two
  (``python -m tests.test_api_contract --write-readme`` rewrites it);
- every served route needs the RBAC actions the description names (``x-rbac-actions``);
- a sweep calls every served operation (without a token, with an unknown parameter, with a
  wrong content type, and plainly with path values and bodies that exist), plus a few
  calls whose success needs a prepared body, and every answer, success or error, validates
  against the response Wazuh describes for that operation and status (openapi-core); each
  operation must have at least one validated 2xx;
- the same calls by a user without roles: 403 (4000) everywhere, validated, except where
  Wazuh needs no action or narrows an unnamed list to nothing (a 2xx).

Skipped, with the reason, when Wazuh's description is not there; it is never copied in.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import USER, Answer, ApiHarness
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.node.alert_totals import add_to_day, totals_folder
from wazuhcluster.testing.reference import CHECKOUT, missing_reason, wazuh_api_spec

METHODS = ("get", "put", "post", "delete", "patch")
HOST = "https://localhost:55000"
README = Path(CHECKOUT) / "README.md"
BEGIN = "<!-- api-operations:begin (python -m tests.test_api_contract --write-readme) -->"
END = "<!-- api-operations:end -->"
GOOD_CONF = (
    b"<agent_config>\n"
    b"  <localfile><location>/var/log/a.log</location></localfile>\n"
    b"</agent_config>\n"
)
AGENT_CONFIG = "/agents/{agent_id}/config/{component}/{configuration}"
AGENT_STATS = "/agents/{agent_id}/stats/{component}"
AGENT_DAEMONS = "/agents/{agent_id}/daemons/stats"
#: Path values of the sweep: things the harness holds (ids made by the sweep's own writes
#: for the security objects); any other path parameter gets "1".
PATH_VALUES = {
    "agent_id": "001",
    "group_id": "web",
    "node_id": "master",
    "user_id": "101",
    "role_id": "100",
    "policy_id": "100",
    "rule_id": "100",
    "requirement": "pci_dss",
    "component": "auth",
    "configuration": "auth",
}
#: Values of required query parameters in the sweep.
QUERY_VALUES = {
    "agents_list": "002",
    "status": "all",
    "group_id": "web",
    "groups_list": "gone",
    "role_ids": "100",
    "policy_ids": "100",
    "rule_ids": "100",
    # the user the sweep's preparation made to be deleted
    "user_ids": "101",
    "agent_name": "contract-quick",
}
STRONG = "Contract-Passw0rd!"
#: Bodies that make a write succeed, by operation.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/agents"): {"name": "contract-agent"},
    ("POST", "/agents/insert"): {"name": "contract-insert", "id": "050", "key": "k" * 64},
    ("POST", "/groups"): {"group_id": "contract"},
    ("PUT", "/groups/{group_id}/configuration"): GOOD_CONF,
    ("POST", "/security/users"): {"username": "contract", "password": STRONG},
    ("PUT", "/security/users/{user_id}"): {"password": STRONG + "2"},
    ("POST", "/security/roles"): {"name": "contract_role"},
    ("PUT", "/security/roles/{role_id}"): {"name": "contract_role2"},
    ("POST", "/security/rules"): {"name": "contract_rule", "rule": {"FIND": {"a": "b"}}},
    ("PUT", "/security/rules/{rule_id}"): {"name": "contract_rule2"},
    ("POST", "/security/policies"): {
        "name": "contract_policy",
        "policy": {"actions": ["agent:read"], "resources": ["agent:id:*"], "effect": "allow"},
    },
    ("PUT", "/security/policies/{policy_id}"): {"name": "contract_policy2"},
    ("PUT", "/security/config"): {"auth_token_exp_timeout": 900},
    ("PUT", "/active-response"): {"command": "!contract.sh", "arguments": ["-"]},
    ("POST", "/events"): {"events": ["Dec  4 10:00:00 host contract: a line"]},
    ("POST", "/security/user/authenticate/run_as"): {"team": "contract"},
    ("PUT", "/logtest"): {
        "event": "Dec  4 10:00:00 host contract: a line",
        "log_format": "syslog",
        "location": "/var/log/contract.log",
    },
    ("PUT", "/rules/files/{filename}"): (
        b'<group name="contract,">\n'
        b'  <rule id="100100" level="3">\n'
        b"    <match>contract</match>\n"
        b"    <description>Contract rule.</description>\n"
        b"  </rule>\n"
        b"</group>\n"
    ),
    ("PUT", "/decoders/files/{filename}"): (
        b'<decoder name="contract-decoder">\n  <prematch>^contract: </prematch>\n</decoder>\n'
    ),
    ("PUT", "/lists/files/{filename}"): b"alpha:1\nbeta:2\n",
}
#: Paths (with their query) of the sweep's plain call where the shared values do not fit:
#: the files the sweep's own PUTs write, an agent still in a group of its own when the
#: deletions come (DELETE /agents/group empties ``web`` before).
PATHS: dict[tuple[str, str], str] = {
    **{
        (method, f"/{kind}/files/{{filename}}"): f"/{kind}/files/{name}"
        for method in ("PUT", "DELETE")
        for kind, name in (
            ("rules", "contract_rules.xml"),
            ("decoders", "contract_decoders.xml"),
            ("lists", "contract-list"),
        )
    },
    ("DELETE", "/agents/{agent_id}/group/{group_id}"): "/agents/003/group/ops",
    ("GET", "/agents/{agent_id}/stats/{component}"): "/agents/001/stats/logcollector",
}
#: Operations needing an action that answer a user without roles a 2xx with nothing in it
#: rather than 403, as Wazuh's do: the caller named no list (agents, nodes, users, files),
#: so the framework narrows "all" to what they may see, or, for the broadcast commands
#: (restart, reconnect, active response, scans, reload), sends to no one.
#: PUT /cluster/restart is not one: the master's part is checked on its own (403).
FILTERED_FOR_NO_ROLES = {
    ("GET", "/agents"),
    ("GET", "/agents/no_group"),
    ("GET", "/agents/outdated"),
    ("GET", "/agents/stats/distinct"),
    ("GET", "/agents/summary"),
    ("GET", "/agents/summary/os"),
    ("GET", "/agents/summary/status"),
    ("GET", "/overview/agents"),
    ("PUT", "/agents/reconnect"),
    ("PUT", "/agents/restart"),
    ("PUT", "/active-response"),
    ("PUT", "/rootcheck"),
    ("PUT", "/syscheck"),
    ("GET", "/cluster/api/config"),
    ("GET", "/cluster/configuration/validation"),
    ("GET", "/cluster/healthcheck"),
    ("GET", "/cluster/nodes"),
    ("GET", "/cluster/ruleset/synchronization"),
    ("PUT", "/cluster/analysisd/reload"),
    ("GET", "/groups"),
    ("GET", "/rules"),
    ("GET", "/rules/files"),
    ("GET", "/rules/groups"),
    ("GET", "/rules/requirement/{requirement}"),
    ("GET", "/decoders"),
    ("GET", "/decoders/files"),
    ("GET", "/decoders/parents"),
    ("GET", "/lists"),
    ("GET", "/lists/files"),
    ("GET", "/security/users"),
    ("GET", "/security/roles"),
    ("GET", "/security/policies"),
    ("GET", "/security/rules"),
}
GROUP_FILE = "/groups/{group_id}/files/{file_name}"
ACTIVE = "/manager/configuration/{component}/{configuration}"
#: Calls whose error answers the plain sweep does not reach: (method, template, path, body).
ERROR_CALLS: list[tuple[str, str, str, Any]] = [
    ("PUT", "/security/roles/{role_id}", "/security/roles/777", {"name": "x"}),
    ("PUT", "/security/roles/{role_id}", "/security/roles/1", {"name": "x"}),
    ("PUT", "/security/rules/{rule_id}", "/security/rules/777", {"name": "x"}),
    ("PUT", "/security/policies/{policy_id}", "/security/policies/777", {"name": "x"}),
    ("PUT", "/security/users/{user_id}", "/security/users/777", {"password": STRONG}),
    ("PUT", "/security/users/{user_id}/run_as", "/security/users/777/run_as", None),
    ("POST", "/security/roles", "/security/roles", {"name": "contract_role2"}),
    ("GET", "/agents/{agent_id}/key", "/agents/999/key", None),
    ("GET", "/agents/{agent_id}/key", "/agents/000/key", None),
    ("GET", "/agents/{agent_id}/group/is_sync", "/agents/999/group/is_sync", None),
    ("GET", "/agents/stats/distinct", "/agents/stats/distinct?fields=nope", None),
    ("GET", "/agents/stats/distinct", "/agents/stats/distinct?fields=os.platform,version", None),
    ("GET", "/agents/no_group", "/agents/no_group?sort=nope", None),
    ("GET", "/agents/outdated", "/agents/outdated?q=name=web1&select=name", None),
    ("GET", "/agents/summary", "/agents/summary?agents_list=001,999", None),
    ("DELETE", "/agents/{agent_id}/group", "/agents/001/group?groups_list=web,gone", None),
    ("POST", "/agents/insert", "/agents/insert", {"name": "x1", "id": "050", "key": "k" * 64}),
    ("POST", "/agents/insert", "/agents/insert", {"name": "x2", "key": "short"}),
    ("POST", "/agents/insert/quick", "/agents/insert/quick?agent_name=web1", None),
    ("GET", GROUP_FILE, "/groups/web/files/agent.conf", None),
    ("GET", GROUP_FILE, "/groups/web/files/agent.conf?raw=true", None),
    ("GET", GROUP_FILE, "/groups/web/files/merged.mg", None),
    ("GET", GROUP_FILE, "/groups/web/files/merged.mg?raw=true", None),
    ("GET", GROUP_FILE, "/groups/web/files/agent.conf?type=rcl", None),
    ("GET", GROUP_FILE, "/groups/ghost/files/agent.conf", None),
    ("GET", GROUP_FILE, "/groups/web/files/..", None),
    ("PUT", "/agents/restart", "/agents/restart?agents_list=000,001,999", None),
    ("PUT", "/agents/group/{group_id}/restart", "/agents/group/ghost/restart", None),
    ("PUT", "/active-response", "/active-response", {"command": "nope0"}),
    ("PUT", "/active-response", "/active-response", {"command": ""}),
    ("POST", "/events", "/events", {"events": ["a"] * 101}),
    ("POST", "/events", "/events", {"events": ["x" * 70_000]}),
    ("GET", "/manager/stats", "/manager/stats?date=2001-01-01", None),
    ("GET", "/manager/stats", "/manager/stats?date=2001-02-30", None),
    ("GET", "/cluster/{node_id}/stats", "/cluster/master/stats?date=2001-01-01", None),
    ("GET", "/cluster/{node_id}/stats/hourly", "/cluster/ghost/stats/hourly", None),
    ("GET", "/cluster/{node_id}/stats/weekly", "/cluster/ghost/stats/weekly", None),
    ("GET", "/manager/daemons/stats", "/manager/daemons/stats?daemons_list=wazuh-maild", None),
    ("GET", "/manager/daemons/stats", "/manager/daemons/stats?daemons_list=wazuh-db", None),
    ("GET", "/cluster/{node_id}/daemons/stats", "/cluster/ghost/daemons/stats", None),
    ("GET", AGENT_CONFIG, "/agents/001/config/agent/client", None),
    ("GET", AGENT_CONFIG, "/agents/001/config/logcollector/localfile", None),
    ("GET", AGENT_CONFIG, "/agents/002/config/agent/client", None),
    ("GET", AGENT_CONFIG, "/agents/000/config/auth/auth", None),
    ("GET", AGENT_STATS, "/agents/001/stats/logcollector", None),
    ("GET", AGENT_STATS, "/agents/001/stats/agent", None),
    ("GET", AGENT_STATS, "/agents/000/stats/agent", None),
    ("GET", AGENT_STATS, "/agents/999/stats/agent", None),
    ("GET", AGENT_DAEMONS, "/agents/001/daemons/stats", None),
    ("GET", AGENT_DAEMONS, "/agents/000/daemons/stats?daemons_list=wazuh-remoted", None),
    ("GET", AGENT_DAEMONS, "/agents/999/daemons/stats", None),
    ("GET", ACTIVE, "/manager/configuration/syscheck/syscheck", None),
    ("GET", ACTIVE, "/manager/configuration/analysis/rules", None),
    ("GET", ACTIVE, "/manager/configuration/analysis/nope", None),
    ("GET", "/cluster/{node_id}" + ACTIVE[8:], "/cluster/ghost/configuration/com/cluster", None),
]
#: The shared answers of Wazuh's description for statuses any operation may give.
GENERIC = {
    400: "ResponseError",
    401: "UnauthorizedResponse",
    405: "InvalidHTTPMethodResponse",
    406: "WrongContentTypeResponse",
    413: "RequestTooLargeResponse",
    429: "TooManyRequestsResponse",
    # Wazuh's RBAC refuses any operation that needs an action, described there or not
    # (e.g. DELETE /security/users names no 403).
    403: "PermissionDeniedResponse",
}
#: The order of the sweep: reads, creations, changes, then deletions.
ORDER = {"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}


@functools.cache
def wazuh_spec() -> dict[str, Any]:
    """Wazuh's description, parsed once."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(wazuh_api_spec(), encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=loader)  # noqa: S506 (a safe loader)
    return loaded


@functools.cache
def wazuh_openapi() -> Any:
    """An openapi-core validator over Wazuh's description (the description checked once)."""
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(wazuh_spec())


def spec_operations() -> dict[tuple[str, str], str]:
    """Every operation of Wazuh's description: (METHOD, path) → its family (first tag)."""
    found = {}
    for path, item in wazuh_spec()["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                found[(method.upper(), path)] = (operation.get("tags") or ["Other"])[0]
    return found


def served_operations(api: ApiHarness) -> set[tuple[str, str]]:
    """Every (METHOD, template) the API serves."""
    return {(route.method, route.template) for route, _ in api.resource.routes}


def operations_table(served: Iterable[tuple[str, str]]) -> str:
    """The README table: per family of Wazuh's description, what is provided and what not."""
    served = set(served)
    families: dict[str, tuple[list[str], list[str]]] = {}
    for (method, path), family in sorted(spec_operations().items(), key=lambda i: i[0][::-1]):
        provided, missing = families.setdefault(family, ([], []))
        (provided if (method, path) in served else missing).append(f"`{method} {path}`")
    total = len(spec_operations())
    count = sum(len(provided) for provided, _ in families.values())
    lines = [
        BEGIN,
        f"{count} of the {total} operations of Wazuh {wazuh_spec()['info']['version']}'s "
        "API are provided (generated from the comparison with Wazuh's description).",
        "",
        "| Family | Provided | Not provided |",
        "|---|---|---|",
    ]
    for family in sorted(families):
        provided, missing = families[family]
        lines.append(
            f"| {family} ({len(provided)}/{len(provided) + len(missing)}) "
            f"| {'<br>'.join(provided) or '-'} | {'<br>'.join(missing) or '-'} |"
        )
    lines.append(END)
    return "\n".join(lines)


def readme_table(text: str) -> str | None:
    """The generated table as the README holds it (None when it has none)."""
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN) : text.index(END) + len(END)]


class ContractTests(SynchronousTestCase):
    """Served operations and answers against Wazuh's description."""

    def setUp(self) -> None:
        reason = missing_reason("WAZUH_API_SPEC")
        if reason is not None:
            self.skipTest(reason)
        self.api = ApiHarness(self, max_upload_size=4096, max_request_per_minute=100_000)
        self.failures: list[str] = []
        self.validated: dict[tuple[str, str], set[int]] = {}
        #: Ids of the objects the sweep created, by path parameter.
        self.made: dict[str, str] = {}

    # --- operations ---------------------------------------------------------------------
    def test_served_operations_are_wazuhs(self) -> None:
        """Every served method and path is an operation of Wazuh's description."""
        self.assertEqual(served_operations(self.api) - set(spec_operations()), set())

    def test_readme_table_is_the_comparison(self) -> None:
        """The README's provided / not provided table is the one the comparison gives."""
        expected = operations_table(served_operations(self.api))
        found = readme_table(README.read_text(encoding="utf-8"))
        hint = "run `python -m tests.test_api_contract --write-readme` to regenerate it"
        self.assertEqual(found, expected, hint)

    def test_route_actions_are_wazuhs(self) -> None:
        """Every served route needs the RBAC actions Wazuh's description names for that
        operation (its ``x-rbac-actions``, in order), so /security/actions lists them."""
        differ = {}
        for route, _ in self.api.resource.routes:
            operation = wazuh_spec()["paths"][route.template][route.method.lower()]
            wanted = tuple(
                reference["$ref"].rsplit("/", 1)[1]
                for reference in operation.get("x-rbac-actions", ())
            )
            if route.actions != wanted:
                differ[f"{route.method} {route.template}"] = (route.actions, wanted)
        self.assertEqual(differ, {}, "(ours, Wazuh's) actions per operation")
        answer = self.api.call("GET", "/security/actions?endpoint=GET /agents")
        self.assertEqual(list(answer.json["data"]), ["agent:read"])
        related = answer.json["data"]["agent:read"]["related_endpoints"]
        self.assertIn("GET /agents", related)
        self.assertIn("GET /groups/{group_id}/agents", related)

    # --- answers ------------------------------------------------------------------------
    def check(self, method: str, template: str, path: str, answer: Answer) -> None:
        """Validate one answer with openapi-core; keep any mismatch for the final report."""
        from openapi_core.templating.paths.exceptions import OperationNotFound
        from openapi_core.templating.responses.exceptions import ResponseNotFound
        from openapi_core.testing import MockRequest, MockResponse
        from openapi_schema_validator import OAS30Validator

        media = answer.content_type.split(";")[0].strip()
        # Errors are problem+json on the wire, as Wazuh's server sends them; its description
        # declares them as application/json.
        if media == "application/problem+json":
            media = "application/json"
        if media == "application/xml" and answer.status == 200:
            # openapi-core parses an XML body into an Element, which Wazuh's `type: string`
            # schema then refuses: check the media type is described and the text is XML.
            described = wazuh_spec()["paths"][template][method.lower()]["responses"]["200"]
            if media not in described.get("content", {}) or not answer.raw.lstrip().startswith(
                b"<"
            ):
                self.failures.append(f"{method} {path} -> 200: undescribed or not XML")
                return
            self.validated.setdefault((method, template), set()).add(answer.status)
            return
        request = MockRequest(HOST, method.lower(), path.split("?")[0], path_pattern=template)
        response = MockResponse(answer.raw, status_code=answer.status, content_type=media)
        try:
            wazuh_openapi().validate_response(request, response)
        except (OperationNotFound, ResponseNotFound) as error:
            # Wazuh's server answers these statuses for any operation (its middleware), but
            # the description lists them only for some: validate against the shared one.
            shared = GENERIC.get(answer.status)
            if shared is None:
                self.failures.append(f"{method} {path} -> {answer.status}: {error}")
                return
            described = wazuh_spec()["components"]["responses"][shared]["content"]
            root = {"components": wazuh_spec()["components"]}
            root.update(described["application/json"]["schema"])
            try:
                OAS30Validator(root).validate(json.loads(answer.raw))
            except Exception as invalid:
                self.failures.append(f"{method} {path} -> {answer.status}: {invalid}")
                return
        except Exception as error:
            detail = "; ".join(
                str(getattr(cause, "message", cause))[:300]
                for cause in getattr(error, "schema_errors", None) or [error.__cause__ or error]
            )
            self.failures.append(
                f"{method} {path} -> {answer.status}: {type(error).__name__}: {detail}\n"
                f"    {answer.raw[:300]!r}"
            )
            return
        self.validated.setdefault((method, template), set()).add(answer.status)

    def call(
        self, method: str, template: str, path: str, body: Any = None, **kwargs: Any
    ) -> Answer:
        """Send one request and validate its answer."""
        answer = self.api.call(method, path, body, **kwargs)
        if answer.status == 401 and kwargs.get("token", True) is True:
            # An earlier call ended every session (revoke, config change, logout): log in
            # again, a second later (a token issued in the second of a revocation is dead).
            self.api.clock.advance(1)
            self.api._token = None
            answer = self.api.call(method, path, body, **kwargs)
        self.check(method, template, path, answer)
        return answer

    def prepare(self) -> None:
        """The default ruleset, agents, groups, a worker, a user to delete (101) and run_as
        allowed to the harness's user, for the sweep's paths and bodies."""
        api = self.api
        install_default_ruleset(str(api.home.root))
        api.store.create_group("web")
        api.store.create_group("ops")
        first = api.enroll("web1", "10.0.0.1", ("web",))
        api.enroll("web2", "10.0.0.2")
        api.enroll("ops1", "10.0.0.3", ("ops",))
        doomed = api.call("POST", "/security/users", {"username": "doomed", "password": STRONG})
        self.assertEqual(doomed.json["data"]["affected_items"][0]["id"], 101, doomed.raw)
        allowed = api.call("PUT", "/security/users/100/run_as?allow_run_as=true")
        self.assertEqual(allowed.json["error"], 0, allowed.raw)
        # Changing run_as ended the user's sessions: the next call logs in again.
        api.clock.advance(1)
        api._token = None
        api.report(first, "active", "w1", os_platform="ubuntu", version="Wazuh v4.14.7")
        api.connect_worker("w1", "192.0.2.21")
        # Today's analysis totals, as the analysis keeps them (for /manager/stats).
        add_to_day(totals_folder(api.home.root), time.localtime(), 40, {(5501, 3): 4}, 1, 0)

    def sweep_calls(self) -> list[tuple[str, str, str, Any, dict[str, Any]]]:
        """The plain call of each served operation: (method, template, path, body, kwargs)."""
        calls = []
        for route, _ in sorted(
            self.api.resource.routes, key=lambda r: (ORDER.get(r[0].method, 4), r[0].template)
        ):
            path = self.fill(route.template)
            query = "&".join(f"{name}={QUERY_VALUES.get(name, '1')}" for name in route.required)
            full = PATHS.get((route.method, route.template), path + ("?" + query if query else ""))
            kwargs: dict[str, Any] = {}
            body = BODIES.get((route.method, route.template))
            if route.body == "json" and body is None:
                body = {}
            if route.body == "xml":
                kwargs["headers"] = {"content-type": "application/xml"}
                body = body or GOOD_CONF
            if not route.authenticated:
                kwargs["token"] = None
                if route.template.startswith("/security/user/authenticate"):
                    kwargs["headers"] = {**kwargs.get("headers", {}), **self.basic()}
            calls.append((route.method, route.template, full, body, kwargs))
        return calls

    @staticmethod
    def fill(template: str, made: dict[str, str] | None = None) -> str:
        """``template`` with its path parameters filled: ids the sweep made, else
        :data:`PATH_VALUES`, else "1"."""
        values = {**PATH_VALUES, **(made or {})}
        return re.sub(r"\{(\w+)\}", lambda found: values.get(found.group(1), "1"), template)

    def basic(self) -> dict[str, str]:
        """The harness user's HTTP basic credentials."""
        import base64

        from tests.test_api_fixtures import PASSWORD

        pair = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return {"authorization": f"Basic {pair}"}

    def test_every_answer_validates_against_wazuhs_description(self) -> None:
        """Each served operation, in success and in error, answers as Wazuh describes."""
        self.prepare()
        calls = self.sweep_calls()
        for method, template, path, body, kwargs in calls:
            route_needs_token = kwargs.get("token", True) is not None
            if route_needs_token:
                self.call(method, template, path, token=None)
            if "?" in path:
                self.call(method, template, path + "&nope=1", body, **kwargs)
            else:
                self.call(method, template, path + "?nope=1", body, **kwargs)
            if body is not None and not isinstance(body, bytes):
                text = json.dumps(body).encode()
                headers = {**kwargs.get("headers", {}), "content-type": "text/plain"}
                self.call(method, template, path, text, **{**kwargs, "headers": headers})
        created = {
            "/security/users": "user_id",
            "/security/roles": "role_id",
            "/security/policies": "policy_id",
            "/security/rules": "rule_id",
        }
        for method, template, _, body, kwargs in calls:
            path = PATHS.get(
                (method, template),
                self.fill(template, self.made) + "".join(_.partition("?")[1:]),
            )
            answer = self.call(method, template, path, body, **kwargs)
            if method == "POST" and template in created and answer.status == 200:
                self.made[created[template]] = str(answer.json["data"]["affected_items"][0]["id"])
            if (method, template) == ("PUT", "/logtest") and answer.status == 200:
                self.made["token"] = answer.json["data"]["token"]
        self.call("GET", "/agents", "/agents?q=lastKeepAlive<1d&select=name&pretty=true")
        self.call("GET", "/agents", "/agents?limit=0")
        self.call("GET", "/cluster/nodes", "/cluster/nodes?select=type&distinct=true")
        self.call("PATCH", "/agents", "/agents")
        # The sweep revoked every token (PUT /security/user/revoke): log in again, later.
        self.api.clock.advance(1)
        self.api._token = None
        for method, template, path, body in ERROR_CALLS:
            answer = self.call(method, template, path, body)
            self.assertNotEqual(answer.status, 401, path)
        self.failures and self.fail("\n".join(["answers not as Wazuh describes:", *self.failures]))
        self.assertEqual(
            {(m, t) for m, t, *_ in calls} - set(self.validated), set(), "operations not checked"
        )
        succeeded = {
            op for op, statuses in self.validated.items() if any(200 <= s < 300 for s in statuses)
        }
        missing = {(method, template) for method, template, *_ in calls} - succeeded
        self.assertEqual(missing, set(), "operations never validated with a 2xx answer")

    def test_a_user_without_roles_is_refused_as_wazuh_describes(self) -> None:
        """A user with no role calls every served operation: each answers a 403 (error
        4000) whose body validates against Wazuh's description, except the operations that
        need no action (a 2xx) and those where Wazuh narrows a list the caller did not name
        to what they may see (a 2xx with nothing in it: :data:`FILTERED_FOR_NO_ROLES`)."""
        self.prepare()
        made = self.api.call("POST", "/security/users", {"username": "nobody", "password": STRONG})
        self.assertEqual(made.json["error"], 0, made.raw)
        token = self.login("nobody")
        outcomes: dict[tuple[str, str], str] = {}
        for method, template, path, body, kwargs in self.sweep_calls():
            if kwargs.get("token", True) is None:
                continue
            answer = self.api.call(method, path, body, token=token, **kwargs)
            if answer.status == 401:
                # nobody's own logout (DELETE /security/user/authenticate) ended the session
                token = self.login("nobody")
                answer = self.api.call(method, path, body, token=token, **kwargs)
            self.check(method, template, path, answer)
            data = answer.json.get("data") if answer.status < 300 else None
            if answer.status == 403 and answer.json.get("error") == 4000:
                outcomes[(method, template)] = "refused"
            elif 200 <= answer.status < 300 and not (data or {}).get("total_affected_items"):
                outcomes[(method, template)] = "empty"
            else:
                outcomes[(method, template)] = f"{answer.status}: {answer.raw[:200]!r}"
        self.failures and self.fail("\n".join(["answers not as Wazuh describes:", *self.failures]))
        free = {
            (method.upper(), path)
            for path, item in wazuh_spec()["paths"].items()
            for method, operation in item.items()
            if method in METHODS and not operation.get("x-rbac-actions")
        }
        expected = {
            op: "empty" if op in free or op in FILTERED_FOR_NO_ROLES else "refused"
            for op in outcomes
        }
        # GET /security/users/me shows the caller themself (one item).
        expected[("GET", "/security/users/me")] = outcomes[("GET", "/security/users/me")]
        differ = {
            op: (outcomes[op], expected[op]) for op in outcomes if outcomes[op] != expected[op]
        }
        self.assertEqual(differ, {}, "(answer, expected) per operation")
        self.assertEqual(FILTERED_FOR_NO_ROLES - set(outcomes), set())

    def login(self, name: str) -> str:
        """A fresh token of user ``name`` (password :data:`STRONG`), a second later."""
        self.api.clock.advance(1)
        answer = self.api.login(name, STRONG)
        self.assertEqual(answer.status, 200, answer.raw)
        token: str = answer.json["data"]["token"]
        return token

    def test_too_many_requests_validates(self) -> None:
        """A 429 answers as Wazuh describes it."""
        api = ApiHarness(self, max_request_per_minute=2)
        token = api.token()
        answers = [api.call("GET", "/agents", token=token) for _ in range(3)]
        self.assertEqual(answers[-1].status, 429)
        self.check("GET", "/agents", "/agents", answers[-1])
        self.assertEqual(self.failures, [])


def main(arguments: list[str]) -> int:
    """Print the operations table, or with ``--write-readme`` put it in the README."""

    class Holder(SynchronousTestCase):
        def test_nothing(self) -> None:
            """Only here to give ApiHarness a test case."""

    reason = missing_reason("WAZUH_API_SPEC")
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    case = Holder("test_nothing")
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # the harness's home goes under the current directory
        try:
            table = operations_table(served_operations(ApiHarness(case)))
            case.doCleanups()
        finally:
            os.chdir(here)
    if "--write-readme" not in arguments:
        print(table)
        return 0
    text = README.read_text(encoding="utf-8")
    current = readme_table(text)
    if current is None:
        print(f"README.md has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    README.write_text(text.replace(current, table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

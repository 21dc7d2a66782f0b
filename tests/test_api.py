"""The REST API's endpoints, called through twisted.web's in-memory request helper.

Each test runs the real resource over a real master node (task.Clock) and a real SQLite
registry in a temporary home (see tests.test_api_fixtures).
"""

from __future__ import annotations

import base64
import hashlib
import platform

import attrs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from tests.test_api_fixtures import PASSWORD, USER, ApiHarness
from wazuhcluster import WAZUH_VERSION, __version__
from wazuhcluster.api.resource import BoundedRequest, bounded_site
from wazuhcluster.api.views import host_os_view
from wazuhcluster.api.wiring import master_api, registry_hooks
from wazuhcluster.registry.groups import AGENT_CONF, MERGED_NAME

GOOD_CONF = (
    b"<agent_config>\n"
    b"  <localfile><location>/var/log/app.log</location></localfile>\n"
    b"</agent_config>\n"
)


class InfoAndClusterTests(SynchronousTestCase):
    """GET /, /cluster/status, /cluster/local/info, /cluster/nodes."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)

    def test_root_describes_the_api(self) -> None:
        """GET / answers the API title, the Wazuh version followed and the host name."""
        answer = self.api.call("GET", "/")
        self.assertEqual(answer.status, 200)
        data = answer.json["data"]
        self.assertEqual(data["title"], "Wazuh API REST")
        self.assertEqual(data["api_version"], "4.14.7")
        self.assertEqual(data["wazuhcluster_version"], __version__)
        self.assertNotIn(__version__, data["revision"])
        self.assertEqual(data["hostname"], "api-host")
        self.assertTrue(data["timestamp"].endswith("Z"))
        self.assertEqual(answer.json["error"], 0)
        self.assertTrue(answer.content_type.startswith("application/json"))

    def test_a_failing_answer_still_answers_500(self) -> None:
        """When writing an endpoint's answer fails, the request still gets an answer: 500
        with Wazuh's internal-error problem, and the failure is logged."""

        def broken(reply: object, request: object, finished: list[bool]) -> None:
            raise RuntimeError("writing broken on purpose")

        token = self.api.token()
        self.api.resource._write = broken  # type: ignore[method-assign]
        answer = self.api.call("GET", "/", token=token)
        self.assertEqual(answer.status, 500)
        self.assertEqual(answer.content_type, "application/problem+json; charset=utf-8")
        self.assertEqual(answer.json["error"], 1000)
        self.assertEqual(answer.json["title"], "Wazuh Internal Error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_cluster_status(self) -> None:
        """GET /cluster/status says the cluster is enabled and running."""
        answer = self.api.call("GET", "/cluster/status")
        self.assertEqual(answer.json["data"], {"enabled": "yes", "running": "yes"})

    def test_local_info(self) -> None:
        """GET /cluster/local/info names this node, its cluster and its type."""
        data = self.api.call("GET", "/cluster/local/info").json["data"]
        self.assertEqual(
            data["affected_items"], [{"node": "master", "cluster": "wazuh", "type": "master"}]
        )
        self.assertEqual(data["total_affected_items"], 1)

    def test_nodes_lists_master_then_workers(self) -> None:
        """GET /cluster/nodes lists the master and every connected worker."""
        self.api.connect_worker("w1", "192.0.2.21")
        self.api.connect_worker("w2", "192.0.2.22")
        answer = self.api.call("GET", "/cluster/nodes")
        names = [row["name"] for row in answer.json["data"]["affected_items"]]
        self.assertEqual(names, ["master", "w1", "w2"])
        self.assertEqual(answer.json["message"], "All selected nodes information was returned")

    def test_nodes_speak_the_wazuh_version(self) -> None:
        """version is the Wazuh version the nodes speak; our own is wazuhcluster_version."""
        self.api.connect_worker("w1", "192.0.2.21")
        answer = self.api.call("GET", "/cluster/nodes")
        rows = answer.json["data"]["affected_items"]
        self.assertEqual({row["version"] for row in rows}, {WAZUH_VERSION})
        self.assertEqual({row["wazuhcluster_version"] for row in rows}, {__version__})
        answer = self.api.call("GET", "/cluster/nodes?q=version>3;type=worker")
        self.assertEqual([r["name"] for r in answer.json["data"]["affected_items"]], ["w1"])

    def test_nodes_filters_and_paging(self) -> None:
        """type, select, sort, offset and limit apply to the node list."""
        self.api.connect_worker("w1", "192.0.2.21")
        self.api.connect_worker("w2", "192.0.2.22")
        answer = self.api.call("GET", "/cluster/nodes?type=worker&select=ip&sort=-name&limit=1")
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], [{"ip": "192.0.2.22"}])
        self.assertEqual(data["total_affected_items"], 2)
        answer = self.api.call("GET", "/cluster/nodes?q=ip~21")
        self.assertEqual([r["name"] for r in answer.json["data"]["affected_items"]], ["w1"])
        answer = self.api.call("GET", "/cluster/nodes?type=Worker")
        self.assertEqual([r["name"] for r in answer.json["data"]["affected_items"]], ["w1", "w2"])

    def test_nodes_select_and_distinct(self) -> None:
        """select gives only the fields asked for; distinct=true drops repeated rows."""
        self.api.connect_worker("w1", "192.0.2.21")
        self.api.connect_worker("w2", "192.0.2.22")
        answer = self.api.call("GET", "/cluster/nodes?select=type")
        items = answer.json["data"]["affected_items"]
        self.assertEqual(items, [{"type": "master"}, {"type": "worker"}, {"type": "worker"}])
        answer = self.api.call("GET", "/cluster/nodes?select=type&distinct=true")
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], [{"type": "master"}, {"type": "worker"}])
        self.assertEqual(data["total_affected_items"], 2)

    def test_nodes_list_with_unknown_node(self) -> None:
        """An unknown name in nodes_list is a failed item with code 1730."""
        self.api.connect_worker("w1")
        data = self.api.call("GET", "/cluster/nodes?nodes_list=w1,ghost").json
        self.assertEqual([r["name"] for r in data["data"]["affected_items"]], ["w1"])
        self.assertEqual(data["data"]["failed_items"][0]["id"], ["ghost"])
        self.assertEqual(data["data"]["failed_items"][0]["error"]["code"], 1730)
        self.assertEqual(data["error"], 2)


class HealthcheckTests(SynchronousTestCase):
    """GET /cluster/healthcheck and /cluster/ruleset/synchronization."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        now = self.api.clock.seconds()
        self.synced = {
            "sync_integrity_free": True,
            "last_check_integrity": {"date_start_master": now - 1, "date_end_master": now},
            "last_sync_integrity": {
                "date_start_master": None,
                "date_end_master": None,
                "total_files": {"missing": 0, "shared": 0, "extra": 0},
                "deferred_files": 0,
                "last_error": None,
            },
        }

    def test_counts_active_agents_per_node_and_formats_dates(self) -> None:
        """n_active_agents counts active agents reporting to each node; dates are ISO text."""
        self.api.connect_worker("w1", **self.synced)
        first = self.api.enroll("web1")
        second = self.api.enroll("web2")
        self.api.enroll("web3")
        self.api.report(first, "active", "w1")
        self.api.report(second, "active", "w1")
        answer = self.api.call("GET", "/cluster/healthcheck")
        items = {i["info"]["name"]: i for i in answer.json["data"]["affected_items"]}
        self.assertEqual(items["w1"]["info"]["n_active_agents"], 2)
        self.assertEqual(items["master"]["info"]["n_active_agents"], 0)
        status = items["w1"]["status"]
        self.assertRegex(
            status["last_check_integrity"]["date_end_master"], r"^\d{4}-\d\d-\d\dT.*Z$"
        )
        self.assertEqual(status["last_sync_integrity"]["date_start_master"], "n/a")
        self.assertEqual(items["w1"]["verdict"], {"state": "ok", "reasons": []})
        self.assertEqual(items["master"]["verdict"], {"state": "ok", "reasons": []})
        self.assertRegex(status["last_keep_alive"], r"^\d{4}-\d\d-\d\dT.*Z$")
        self.assertEqual(answer.json["data"]["n_connected_nodes"], 1)
        self.assertEqual(answer.json["data"]["verdict"]["state"], "ok")

    def test_silent_worker_makes_the_cluster_stale(self) -> None:
        """The node's verdict is passed on: a worker silent past max_silence is stale."""
        self.api.connect_worker("w1", **self.synced)
        self.api.clock.advance(121)
        data = self.api.call("GET", "/cluster/healthcheck").json["data"]
        items = {i["info"]["name"]: i for i in data["affected_items"]}
        self.assertEqual(items["w1"]["verdict"]["state"], "stale")
        self.assertTrue(any("keep-alive" in reason for reason in items["w1"]["verdict"]["reasons"]))
        self.assertEqual(data["verdict"]["state"], "stale")

    def test_nodes_list_filters_the_report(self) -> None:
        """nodes_list keeps only the named nodes."""
        self.api.connect_worker("w1", **self.synced)
        data = self.api.call("GET", "/cluster/healthcheck?nodes_list=w1").json["data"]
        self.assertEqual([i["info"]["name"] for i in data["affected_items"]], ["w1"])

    def test_ruleset_synchronization(self) -> None:
        """A worker whose check found it in sync is synced; one mid-sync is not."""
        self.api.connect_worker("w1", **self.synced)
        self.api.connect_worker("w2", **{**self.synced, "sync_integrity_free": False})
        data = self.api.call("GET", "/cluster/ruleset/synchronization").json["data"]
        self.assertEqual(
            data["affected_items"],
            [
                {"name": "master", "synced": True},
                {"name": "w1", "synced": True},
                {"name": "w2", "synced": False},
            ],
        )


class AgentListTests(SynchronousTestCase):
    """GET /agents and GET /agents/summary/status."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.api.store.create_group("web")
        self.web1 = self.api.enroll("web1", "10.0.0.1", ("web",))
        self.web2 = self.api.enroll("web2", "10.0.0.2", ("default", "web"))
        self.db1 = self.api.enroll("db1", "10.0.0.3")
        self.api.report(self.web1, "active", "w1", os_platform="ubuntu", version="Wazuh v4.14.7")
        self.api.report(self.web2, "disconnected", "w2", os_platform="windows")

    def ids(self, path: str) -> list[str]:
        answer = self.api.call("GET", path)
        self.assertEqual(answer.status, 200, answer.raw)
        return [item["id"] for item in answer.json["data"]["affected_items"]]

    def test_lists_manager_and_agents(self) -> None:
        """Agent 000 (the manager) comes first, then the agents by id, in Wazuh's fields."""
        answer = self.api.call("GET", "/agents")
        items = answer.json["data"]["affected_items"]
        self.assertEqual([i["id"] for i in items], ["000", self.web1, self.web2, self.db1])
        manager = items[0]
        self.assertNotIn("group", manager)
        self.assertEqual(manager["os"]["arch"], platform.machine())
        self.assertTrue(manager["os"]["uname"].startswith(platform.system() + " |"))
        web1 = items[1]
        self.assertEqual(web1["name"], "web1")
        self.assertEqual(web1["registerIP"], "10.0.0.1")
        self.assertEqual(web1["status"], "active")
        self.assertEqual(web1["node_name"], "w1")
        self.assertEqual(web1["group"], ["web"])
        self.assertEqual(web1["os"], {"platform": "ubuntu"})
        self.assertIn("lastKeepAlive", web1)

    def test_complete_agent_info(self) -> None:
        """The reported IP is ``ip`` (registerIP stays), the OS object has major, minor and
        codename, labels (hidden ones left out) and both sums are shown and selectable."""
        self.api.report(
            self.db1,
            "active",
            "w1",
            agent_ip="192.0.2.30",
            os_name="Ubuntu",
            os_version="22.04.4 LTS",
            os_major="22",
            os_minor="04",
            os_codename="Jammy Jellyfish",
            os_platform="ubuntu",
            os_uname="Linux |db1 |5.15 |#1 |x86_64",
            labels=(("env", "prod"), ("!owner", "ops")),
            config_sum="c" * 32,
            merged_sum="m" * 32,
        )
        answer = self.api.call("GET", f"/agents?agents_list={self.db1}")
        [db1] = answer.json["data"]["affected_items"]
        self.assertEqual((db1["ip"], db1["registerIP"]), ("192.0.2.30", "10.0.0.3"))
        self.assertEqual(
            db1["os"],
            {
                "name": "Ubuntu",
                "platform": "ubuntu",
                "version": "22.04.4 LTS",
                "major": "22",
                "minor": "04",
                "codename": "Jammy Jellyfish",
                "uname": "Linux |db1 |5.15 |#1 |x86_64",
            },
        )
        self.assertEqual(db1["labels"], {"env": "prod"})
        self.assertEqual((db1["configSum"], db1["mergedSum"]), ("c" * 32, "m" * 32))
        self.assertEqual(self.ids("/agents?q=os.codename=Jammy Jellyfish"), [self.db1])
        picked = self.api.call("GET", f"/agents?select=os.major,ip&agents_list={self.db1}")
        self.assertEqual(
            picked.json["data"]["affected_items"],
            [{"id": self.db1, "ip": "192.0.2.30", "os": {"major": "22"}}],
        )
        self.assertEqual(self.ids("/agents?ip=192.0.2.30"), [self.db1])
        labels = self.api.call("GET", f"/agents?select=labels&agents_list={self.db1}")
        self.assertEqual(
            labels.json["data"]["affected_items"], [{"id": self.db1, "labels": {"env": "prod"}}]
        )

    def test_filters(self) -> None:
        """status, node_name, group and name filter the list."""
        self.assertEqual(self.ids("/agents?status=active"), ["000", self.web1])
        self.assertEqual(
            self.ids("/agents?status=never_connected,disconnected"), [self.web2, self.db1]
        )
        self.assertEqual(self.ids("/agents?node_name=w2"), [self.web2])
        self.assertEqual(self.ids("/agents?group=web"), [self.web1, self.web2])
        self.assertEqual(self.ids("/agents?name=db1"), [self.db1])
        self.assertEqual(self.ids("/agents?os.platform=windows"), [self.web2])

    def test_filter_values_ignore_case(self) -> None:
        """Filter and q values match in any case, as Wazuh's (status=AcTiVe, name=WEB1)."""
        self.assertEqual(self.ids("/agents?status=AcTiVe"), ["000", self.web1])
        self.assertEqual(
            self.ids("/agents?status=ACTIVE,Disconnected"), ["000", self.web1, self.web2]
        )
        self.assertEqual(self.ids("/agents?name=WEB1"), [self.web1])
        self.assertEqual(self.ids("/agents?node_name=W2"), [self.web2])
        self.assertEqual(self.ids("/agents?group=WEB"), [self.web1, self.web2])
        self.assertEqual(self.ids("/agents?os.platform=Windows"), [self.web2])
        self.assertEqual(self.ids("/agents?q=name=DB1"), [self.db1])
        self.assertEqual(self.ids("/agents?q=status!=ACTIVE"), [self.web2, self.db1])
        self.assertEqual(
            self.ids("/agents?group_config_status=NOT SYNCED&q=id!=000"),
            [self.web1, self.web2, self.db1],
        )

    def test_q_search_sort_select(self) -> None:
        """q, search (and its negation), sort and select behave as in Wazuh."""
        self.assertEqual(self.ids("/agents?q=status=active;id!=000"), [self.web1])
        self.assertEqual(
            self.ids("/agents?q=(name~web,name=db1);group=default"), [self.web2, self.db1]
        )
        self.assertEqual(self.ids("/agents?search=db"), [self.db1])
        self.assertNotIn(self.db1, self.ids("/agents?search=-db"))
        self.assertEqual(self.ids("/agents?sort=-name&q=id!=000"), [self.web2, self.web1, self.db1])
        answer = self.api.call("GET", "/agents?select=name,os.platform&agents_list=" + self.web1)
        self.assertEqual(
            answer.json["data"]["affected_items"],
            [{"id": self.web1, "name": "web1", "os": {"platform": "ubuntu"}}],
        )

    def test_offset_and_limit(self) -> None:
        """offset/limit page the list; the total counts every match."""
        answer = self.api.call("GET", "/agents?offset=1&limit=2")
        data = answer.json["data"]
        self.assertEqual([i["id"] for i in data["affected_items"]], [self.web1, self.web2])
        self.assertEqual(data["total_affected_items"], 4)

    def test_older_than(self) -> None:
        """older_than keeps agents whose last keep-alive (or registration) is old enough."""
        self.api.clock.advance(3600)
        self.api.report(self.web1, "active", "w1")
        self.assertEqual(self.ids("/agents?older_than=30m&q=id!=000"), [self.web2, self.db1])

    def test_agents_list_with_unknown_agent(self) -> None:
        """An unknown id in agents_list is a failed item with code 1701."""
        answer = self.api.call("GET", f"/agents?agents_list={self.web1},999")
        data = answer.json["data"]
        self.assertEqual([i["id"] for i in data["affected_items"]], [self.web1])
        self.assertEqual(data["failed_items"][0]["id"], ["999"])
        self.assertEqual(data["failed_items"][0]["error"]["code"], 1701)
        self.assertEqual(answer.json["message"], "Some agents information was not returned")

    def test_filtered_out_agents_are_not_failures(self) -> None:
        """An agent of agents_list that exists but does not match the filters is just absent."""
        answer = self.api.call("GET", f"/agents?agents_list={self.web2},000&status=active")
        data = answer.json["data"]
        self.assertEqual([item["id"] for item in data["affected_items"]], ["000"])
        self.assertEqual(data["failed_items"], [])
        self.assertEqual(self.ids("/agents?status=active&node_name=w1"), [self.web1])

    def test_bad_listing_parameters(self) -> None:
        """Unknown q fields, bad operators, sort/select fields and limits are 400 with codes."""
        cases = {
            "/agents?q=nope=1": 1408,
            "/agents?q=name==x": 1409,
            "/agents?q=name=": 1407,
            "/agents?sort=nope": 1403,
            "/agents?select=nope": 1724,
            "/agents?older_than=tomorrow": 1411,
            "/agents?q=group<web": 1409,
            "/agents?q=group>web": 1409,
            "/agents?offset=99999999999999999999": 2003,
        }
        for path, code in cases.items():
            answer = self.api.call("GET", path)
            self.assertEqual((answer.status, answer.json.get("error")), (400, code), path)
        for path in (
            "/agents?limit=0",
            "/agents?limit=100001",
            "/agents?offset=-1",
            "/agents?status=sleepy",
        ):
            answer = self.api.call("GET", path)
            self.assertEqual(answer.status, 400, path)
            self.assertEqual(answer.json["title"], "Bad Request")

    def test_q_relative_times(self) -> None:
        """q on lastKeepAlive with a time frame counts elapsed time, as Wazuh does."""
        self.api.clock.advance(2 * 86400)
        self.api.report(self.web1, "active", "w1")
        self.assertEqual(self.ids("/agents?q=lastKeepAlive<1d;id!=000"), [self.web1])
        self.assertEqual(self.ids("/agents?q=lastKeepAlive>1d"), [self.web2])
        self.assertEqual(self.ids("/agents?q=dateAdd>1d"), [self.web1, self.web2, self.db1])
        answer = self.api.call("GET", "/agents?q=lastKeepAlive<soon")
        self.assertEqual((answer.status, answer.json["error"]), (400, 1412))

    def test_distinct_agents(self) -> None:
        """distinct=true lists each selected combination once (without the id)."""
        answer = self.api.call("GET", "/agents?select=status&distinct=true&sort=status")
        data = answer.json["data"]
        statuses = [{"status": s} for s in ("active", "disconnected", "never_connected")]
        self.assertEqual(data["affected_items"], statuses)
        self.assertEqual(data["total_affected_items"], 3)

    def test_deeply_nested_q(self) -> None:
        """500 nested parentheses (within the length limit) answer, not a 500."""
        depth = 500
        self.assertEqual(
            self.ids("/agents?q=" + "(" * depth + "name=db1" + ")" * depth), [self.db1]
        )

    def test_summary_status(self) -> None:
        """The summary counts agents by connection status and by group-config sync."""
        merged = self.api.home.shared / "web" / MERGED_NAME
        digest = hashlib.md5(merged.read_bytes()).hexdigest()  # noqa: S324 (Wazuh's checksum)
        self.api.report(self.web1, "active", "w1", merged_sum=digest)
        data = self.api.call("GET", "/agents/summary/status").json["data"]
        self.assertEqual(
            data["connection"],
            {"active": 1, "disconnected": 1, "never_connected": 1, "pending": 0, "total": 3},
        )
        self.assertEqual(data["configuration"], {"synced": 1, "not_synced": 2, "total": 3})
        self.assertEqual(self.ids("/agents?group_config_status=synced&q=id!=000"), [self.web1])


class AgentWriteTests(SynchronousTestCase):
    """POST /agents, DELETE /agents, PUT /agents/reconnect."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)

    def test_add_agent_returns_id_and_key_line(self) -> None:
        """POST /agents registers the agent and answers its id and base64 client.keys line."""
        answer = self.api.call("POST", "/agents", {"name": "web1", "ip": "10.0.0.7"})
        self.assertEqual(answer.status, 200, answer.raw)
        data = answer.json["data"]
        line = base64.b64decode(data["key"]).decode()
        agent_id, name, ip, key = line.split(" ")
        self.assertEqual((agent_id, name, ip), (data["id"], "web1", "10.0.0.7"))
        self.assertEqual(len(key), 64)
        self.assertIn(line, self.api.home.client_keys.read_text())
        self.assertEqual(self.api.added, [data["id"]])

    def test_add_agent_defaults_to_any_ip(self) -> None:
        """Without an ip the agent is registered with 'any'."""
        data = self.api.call("POST", "/agents", {"name": "web1"}).json["data"]
        self.assertEqual(self.api.store.get_agent(data["id"]).ip, "any")

    def test_add_agent_refusals_change_nothing(self) -> None:
        """Duplicates, bad names, bad IPs, unknown fields and wrong types are refused."""
        self.api.call("POST", "/agents", {"name": "web1", "ip": "10.0.0.7"})
        cases = [
            ({"name": "web1"}, 400, 1705),
            ({"name": "web2", "ip": "10.0.0.7"}, 400, 1706),
            ({"name": "web2", "ip": "not-an-ip"}, 400, 1706),
            ({"name": "x" * 129}, 400, 1738),
            ({"name": "bad name!"}, 400, None),
            ({"name": "web2", "group": "x"}, 400, None),
            ({"name": 5}, 400, None),
            ({"ip": "10.0.0.8"}, 400, None),
            ([], 400, None),
        ]
        for body, status, code in cases:
            answer = self.api.call("POST", "/agents", body)
            self.assertEqual(answer.status, status, body)
            self.assertEqual(answer.json.get("error"), code, body)
            self.assertTrue(answer.content_type.startswith("application/problem+json"))
        self.assertEqual([a.name for a in self.api.store.list_agents()], ["web1"])

    def test_add_agent_force_replaces_per_its_rules(self) -> None:
        """Wazuh's force object replaces a same-name or same-IP agent when its rules allow."""
        self.api = ApiHarness(self, token_timeout=36000)  # the clock moves hours
        old = self.api.call("POST", "/agents", {"name": "web1", "ip": "10.0.0.7"}).json["data"]
        force = {
            "enabled": True,
            "disconnected_time": {"enabled": True, "value": "30m"},
            "after_registration_time": "1h",
        }
        answer = self.api.call("POST", "/agents", {"name": "web1", "force": force})
        self.assertEqual((answer.status, answer.json["error"]), (400, 1705))
        self.assertIn("registration time", answer.json["detail"])
        self.api.clock.advance(2 * 3600)
        answer = self.api.call("POST", "/agents", {"name": "web1", "force": force})
        self.assertEqual(answer.status, 200, answer.raw)
        new = answer.json["data"]["id"]
        self.assertNotEqual(new, old["id"])
        self.assertEqual([a.id for a in self.api.store.list_agents()], [new])
        self.assertEqual(self.api.removed, [old["id"]])
        self.assertEqual(self.api.added, [old["id"], new])
        # An active holder is replaced only without the disconnected_time condition.
        self.api.report(new, "active", "w1")
        self.api.clock.advance(2 * 3600)
        self.api.report(new, "active", "w1")
        answer = self.api.call("POST", "/agents", {"name": "web1", "force": force})
        self.assertEqual((answer.status, answer.json["error"]), (400, 1705))
        self.assertIn("not disconnected", answer.json["detail"])
        relaxed = {**force, "disconnected_time": {"enabled": False, "value": "1h"}}
        answer = self.api.call("POST", "/agents", {"name": "web1", "force": relaxed})
        self.assertEqual(answer.status, 200, answer.raw)

    def test_add_agent_force_by_ip_and_disabled(self) -> None:
        """A same-IP agent is replaced under force; force.enabled false refuses as before."""
        self.api = ApiHarness(self, token_timeout=36000)  # the clock moves hours
        old = self.api.call("POST", "/agents", {"name": "web1", "ip": "10.0.0.7"}).json["data"]
        self.api.clock.advance(7200)
        body = {"name": "web2", "ip": "10.0.0.7", "force": {"enabled": False}}
        answer = self.api.call("POST", "/agents", body)
        self.assertEqual((answer.status, answer.json["error"]), (400, 1706))
        body = {"name": "web2", "ip": "10.0.0.7", "force": {}}
        answer = self.api.call("POST", "/agents", body)
        self.assertEqual(answer.status, 200, answer.raw)
        agents = self.api.store.list_agents()
        self.assertEqual([(a.name, a.ip) for a in agents], [("web2", "10.0.0.7")])
        self.assertEqual(self.api.removed, [old["id"]])

    def test_add_agent_force_shape_is_checked(self) -> None:
        """A force object of the wrong shape is a 400 and changes nothing."""
        self.api = ApiHarness(self, token_timeout=36000)  # the clock moves hours
        self.api.call("POST", "/agents", {"name": "web1"})
        self.api.clock.advance(7200)
        for force in (
            {"enabled": "yes"},
            {"colour": True},
            {"disconnected_time": {"enabled": True, "value": "soon"}},
            {"disconnected_time": {"value": 5}},
            {"disconnected_time": True},
            {"after_registration_time": "1w"},
            [],
        ):
            answer = self.api.call("POST", "/agents", {"name": "web1", "force": force})
            self.assertEqual(answer.status, 400, force)
        self.assertEqual(len(self.api.store.list_agents()), 1)

    def test_add_agent_needs_json(self) -> None:
        """A body that is not JSON, or not declared as JSON, is refused."""
        answer = self.api.call("POST", "/agents", b"{nope", {"content-type": "application/json"})
        self.assertEqual(answer.status, 400)
        answer = self.api.call(
            "POST", "/agents", b'{"name": "web1"}', {"content-type": "text/plain"}
        )
        self.assertEqual((answer.status, answer.json["error"]), (406, 6002))
        self.assertEqual(self.api.store.list_agents(), [])

    def test_delete_agents(self) -> None:
        """DELETE /agents removes the listed agents matching status and older_than."""
        first = self.api.enroll("web1")
        second = self.api.enroll("web2")
        answer = self.api.call(
            "DELETE", f"/agents?agents_list={first},{second},777&status=all&older_than=0s"
        )
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], [first, second])
        self.assertEqual(data["failed_items"][0]["id"], ["777"])
        self.assertEqual(answer.json["message"], "Some agents were not deleted")
        self.assertEqual(self.api.store.list_agents(), [])
        self.assertEqual(self.api.removed, [first, second])
        self.assertNotIn("web1", self.api.home.client_keys.read_text())

    def test_delete_respects_status_and_default_older_than(self) -> None:
        """Without older_than only agents older than 7 days go; status narrows the choice."""
        first = self.api.enroll("web1")
        self.api.clock.advance(8 * 86400)
        second = self.api.enroll("web2")
        answer = self.api.call("DELETE", "/agents?agents_list=all&status=Never_Connected")
        self.assertEqual(answer.json["data"]["affected_items"], [first])
        self.api.report(second, "active", "w1")
        answer = self.api.call(
            "DELETE", "/agents?agents_list=all&status=disconnected&older_than=0s"
        )
        self.assertEqual(answer.json["data"]["affected_items"], [])
        self.assertEqual([a.id for a in self.api.store.list_agents()], [second])

    def test_delete_requires_its_parameters(self) -> None:
        """agents_list and status are required; agent 000 cannot be deleted."""
        self.assertEqual(self.api.call("DELETE", "/agents?agents_list=all").status, 400)
        self.assertEqual(self.api.call("DELETE", "/agents?status=all").status, 400)
        answer = self.api.call("DELETE", "/agents?agents_list=000&status=all")
        self.assertEqual(answer.json["data"]["failed_items"][0]["error"]["code"], 1703)
        self.assertEqual(answer.json["error"], 1)

    def test_reconnect_goes_through_the_hook(self) -> None:
        """PUT /agents/reconnect hands active agents to the node's hook; others fail."""
        first = self.api.enroll("web1")
        second = self.api.enroll("web2")
        self.api.report(first, "active", "w1")
        answer = self.api.call("PUT", f"/agents/reconnect?agents_list={first},{second}")
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], [first])
        self.assertEqual(data["failed_items"][0]["error"]["code"], 1707)
        self.assertEqual(self.api.reconnected, [[first]])
        answer = self.api.call("PUT", "/agents/reconnect")
        self.assertEqual(answer.json["message"], "Force reconnect command was sent to all agents")
        self.assertEqual(self.api.reconnected[-1], [first])


class GroupTests(SynchronousTestCase):
    """Groups and group assignments."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.agent = self.api.enroll("web1")

    def test_create_list_delete_group(self) -> None:
        """POST, GET and DELETE /groups create, list (with checksums) and delete groups."""
        answer = self.api.call("POST", "/groups", {"group_id": "web"})
        self.assertEqual(answer.json, {"message": "Group 'web' created.", "error": 0})
        self.assertTrue((self.api.home.shared / "web" / AGENT_CONF).is_file())
        data = self.api.call("GET", "/groups").json["data"]
        rows = {row["name"]: row for row in data["affected_items"]}
        self.assertEqual(rows["default"]["count"], 1)
        conf = (self.api.home.shared / "web" / AGENT_CONF).read_bytes()
        self.assertEqual(rows["web"]["configSum"], hashlib.md5(conf).hexdigest())  # noqa: S324
        answer = self.api.call("DELETE", "/groups?groups_list=web,default,ghost")
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], ["web"])
        codes = sorted(item["error"]["code"] for item in data["failed_items"])
        self.assertEqual(codes, [1710, 1712])
        self.assertFalse((self.api.home.shared / "web").exists())

    def test_create_group_refusals(self) -> None:
        """Existing, default, badly named and over-long group names are refused."""
        self.api.call("POST", "/groups", {"group_id": "web"})
        for body, code in (
            ({"group_id": "web"}, 1711),
            ({"group_id": "default"}, 1711),
            ({"group_id": "../etc"}, 1722),
            ({"group_id": "a" * 129}, None),
            ({"group_id": "ok", "extra": 1}, None),
        ):
            answer = self.api.call("POST", "/groups", body)
            self.assertEqual((answer.status, answer.json.get("error")), (400, code), body)
        self.assertEqual([g.name for g in self.api.store.list_groups()], ["default", "web"])

    def test_assign_and_unassign(self) -> None:
        """PUT and DELETE /agents/{id}/group/{group} change memberships."""
        self.api.store.create_group("web")
        answer = self.api.call("PUT", f"/agents/{self.agent}/group/web")
        self.assertEqual(answer.json["data"]["affected_items"], [self.agent])
        self.assertEqual(answer.json["message"], "All selected agents were assigned to web")
        self.assertEqual(self.api.store.get_agent(self.agent).groups, ("default", "web"))
        again = self.api.call("PUT", f"/agents/{self.agent}/group/web")
        self.assertEqual(again.json["data"]["failed_items"][0]["error"]["code"], 1751)
        answer = self.api.call("DELETE", f"/agents/{self.agent}/group/default")
        self.assertEqual(answer.json["message"], f"Agent '{self.agent}' removed from 'default'.")
        answer = self.api.call("DELETE", f"/agents/{self.agent}/group/web")
        self.assertIn("reassigned to group default", answer.json["message"])
        self.assertEqual(self.api.store.get_agent(self.agent).groups, ("default",))

    def test_bulk_assign_and_remove(self) -> None:
        """PUT and DELETE /agents/group work on several agents (all by default)."""
        self.api.store.create_group("web")
        other = self.api.enroll("web2")
        answer = self.api.call(
            "PUT", f"/agents/group?group_id=web&agents_list={self.agent},999,000"
        )
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], [self.agent])
        self.assertEqual(sorted(i["error"]["code"] for i in data["failed_items"]), [1701, 1703])
        answer = self.api.call("PUT", "/agents/group?group_id=web&force_single_group=true")
        self.assertEqual(answer.json["data"]["affected_items"], [self.agent, other])
        self.assertEqual(self.api.store.get_agent(other).groups, ("web",))
        answer = self.api.call("DELETE", f"/agents/group?group_id=default&agents_list={self.agent}")
        self.assertEqual(answer.json["data"]["failed_items"][0]["error"]["code"], 1734)
        answer = self.api.call("DELETE", "/agents/group?group_id=web")
        self.assertEqual(answer.json["data"]["affected_items"], [self.agent, other])
        self.assertEqual(answer.json["message"], "All selected agents were removed from group web")
        self.assertEqual(self.api.store.get_agent(other).groups, ("default",))
        self.assertEqual(self.api.call("PUT", "/agents/group?group_id=ghost").status, 404)
        self.assertEqual(self.api.call("PUT", "/agents/group").status, 400)

    def test_assign_single_group(self) -> None:
        """force_single_group=true leaves the agent in that group only."""
        self.api.store.create_group("web")
        self.api.call("PUT", f"/agents/{self.agent}/group/web?force_single_group=true")
        self.assertEqual(self.api.store.get_agent(self.agent).groups, ("web",))

    def test_assignment_errors(self) -> None:
        """Unknown group is 404; unknown agent a failed item; bad unassignments are 400/404."""
        answer = self.api.call("PUT", f"/agents/{self.agent}/group/ghost")
        self.assertEqual((answer.status, answer.json["error"]), (404, 1710))
        self.api.store.create_group("web")
        answer = self.api.call("PUT", "/agents/999/group/web")
        self.assertEqual(answer.json["data"]["failed_items"][0]["error"]["code"], 1701)
        self.assertEqual(self.api.call("DELETE", "/agents/999/group/web").status, 404)
        answer = self.api.call("DELETE", f"/agents/{self.agent}/group/web")
        self.assertEqual((answer.status, answer.json["error"]), (400, 1734))
        answer = self.api.call("DELETE", f"/agents/{self.agent}/group/default")
        self.assertEqual((answer.status, answer.json["error"]), (400, 1745))
        self.assertEqual(self.api.call("PUT", "/agents/abc/group/web").status, 400)

    def test_group_agents(self) -> None:
        """GET /groups/{group}/agents lists the group's agents (not agent 000); unknown: 404."""
        self.api.store.create_group("web")
        other = self.api.enroll("web2", groups=("web",))
        answer = self.api.call("GET", "/groups/web/agents")
        self.assertEqual([item["id"] for item in answer.json["data"]["affected_items"]], [other])
        answer = self.api.call("GET", "/groups/default/agents?select=name")
        self.assertEqual(
            answer.json["data"]["affected_items"], [{"id": self.agent, "name": "web1"}]
        )
        answer = self.api.call("GET", "/groups/ghost/agents")
        self.assertEqual((answer.status, answer.json["error"]), (404, 1710))

    def test_group_files(self) -> None:
        """GET /groups/{group}/files lists the group's files with their checksums."""
        self.api.store.create_group("web")
        self.api.store.flush_files()
        answer = self.api.call("GET", "/groups/web/files?hash=sha256")
        rows = {row["filename"]: row["hash"] for row in answer.json["data"]["affected_items"]}
        conf = (self.api.home.shared / "web" / AGENT_CONF).read_bytes()
        self.assertEqual(rows[AGENT_CONF], hashlib.sha256(conf).hexdigest())
        self.assertIn(MERGED_NAME, rows)
        missing = self.api.call("GET", "/groups/ghost/files").json
        self.assertEqual(missing["data"]["failed_items"][0]["error"]["code"], 1710)

    def test_put_configuration_writes_agent_conf_and_merged(self) -> None:
        """PUT /groups/{group}/configuration replaces agent.conf and rebuilds merged.mg."""
        self.api.store.create_group("web")
        answer = self.api.call(
            "PUT", "/groups/web/configuration", GOOD_CONF, {"content-type": "application/xml"}
        )
        self.assertEqual(answer.json["message"], "Agent configuration was successfully updated")
        folder = self.api.home.shared / "web"
        self.assertEqual((folder / AGENT_CONF).read_bytes(), GOOD_CONF)
        self.assertIn(GOOD_CONF, (folder / MERGED_NAME).read_bytes())

    def test_put_configuration_refusals_keep_the_old_file(self) -> None:
        """Bad XML, other roots, empty bodies, wrong types and unknown groups change nothing."""
        self.api.store.create_group("web")
        before = (self.api.home.shared / "web" / AGENT_CONF).read_bytes()
        xml = {"content-type": "application/xml"}
        cases = [
            ("web", b"<agent_config><oops></agent_config>", xml, 400, 1113),
            ("web", b"<wazuh_config/>", xml, 400, 1113),
            ("web", b"", xml, 400, 4001),
            ("web", GOOD_CONF, {"content-type": "application/json"}, 406, 6002),
            ("ghost", GOOD_CONF, xml, 404, 1710),
            (
                "web",
                b"<!DOCTYPE x [<!ENTITY a 'b'>]><agent_config>&a;</agent_config>",
                xml,
                400,
                1113,
            ),
        ]
        for group, body, headers, status, code in cases:
            answer = self.api.call("PUT", f"/groups/{group}/configuration", body, headers)
            self.assertEqual((answer.status, answer.json.get("error")), (status, code), body)
        self.assertEqual((self.api.home.shared / "web" / AGENT_CONF).read_bytes(), before)


class ProtocolTests(SynchronousTestCase):
    """Routing, authentication and bounds common to every call."""

    def setUp(self) -> None:
        self.api = ApiHarness(self, max_upload_size=2048, max_request_per_minute=50)

    def test_unknown_path_and_method(self) -> None:
        """Unknown paths are 404 and a known path with the wrong method is 405."""
        answer = self.api.call("GET", "/nowhere")
        self.assertEqual(answer.status, 404)
        self.assertEqual(answer.json["title"], "Not Found")
        self.assertEqual(self.api.call("PATCH", "/agents").status, 405)
        self.assertEqual(self.api.call("PUT", "/security/user/authenticate").status, 405)

    def test_calls_need_a_valid_token(self) -> None:
        """No token, a malformed token, a foreign signature: 401 in Wazuh's shape."""
        answer = self.api.call("GET", "/agents", token=None)
        self.assertEqual(answer.status, 401)
        self.assertEqual(
            answer.json, {"title": "Unauthorized", "detail": "No authorization token provided"}
        )
        self.assertEqual(self.api.call("GET", "/agents", token="abc.def.ghi").status, 401)
        forged = self.api.token()[:-4] + "AAAA"
        self.assertEqual(self.api.call("GET", "/agents", token=forged).status, 401)

    def test_unknown_and_empty_query_parameters(self) -> None:
        """Parameters not in the description, or empty, are 400."""
        answer = self.api.call("GET", "/agents?colour=blue")
        self.assertEqual(answer.status, 400)
        self.assertIn("colour", answer.json["detail"])
        self.assertEqual(self.api.call("GET", "/agents?limit=").status, 400)
        self.assertEqual(self.api.call("GET", "/agents?pretty=maybe").status, 400)

    def test_oversized_body_is_413(self) -> None:
        """A body over max_upload_size is refused before it is parsed."""
        body = {"name": "x" * 4096}
        answer = self.api.call("POST", "/agents", body)
        self.assertEqual(answer.status, 413)
        self.assertEqual(answer.json["title"], "Request Entity Too Large")
        self.assertEqual(self.api.store.list_agents(), [])

    def test_request_budget_is_429(self) -> None:
        """More than max_request_per_minute calls in a minute are 429 with code 6001 (the
        login spends the unauthenticated budget, so all 50 are the token's)."""
        token = self.api.token()
        statuses = [self.api.call("GET", "/", token=token).status for _ in range(55)]
        self.assertIn(429, statuses)
        self.assertEqual(statuses.count(200), 50)
        answer = self.api.call("GET", "/", token=token)
        self.assertEqual(answer.json["error"], 6001)
        self.assertEqual(answer.json["title"], "Wazuh Error")
        self.api.clock.advance(60)
        self.assertEqual(self.api.call("GET", "/", token=token).status, 200)

    def test_unauthenticated_flood_keeps_token_holders_served(self) -> None:
        """Requests without a valid token spend their own budget: once it is spent they get
        429, while a call with a valid token is still answered (they shared one budget)."""
        api = ApiHarness(self, max_request_per_minute=50, max_unauthenticated_request_per_minute=50)
        token = api.token()
        flood = [api.call("GET", "/", token=None).status for _ in range(60)]
        self.assertEqual(flood.count(429), 11)
        forged = [api.call("GET", "/agents", token="a.b.c").status for _ in range(3)]
        self.assertEqual(forged, [429] * 3)
        self.assertEqual(api.call("GET", "/agents", token=token).status, 200)

    def test_long_line_gets_431(self) -> None:
        """A request line over the line limit is answered 431 in the problem shape, then
        closed (twisted.web just hung up)."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.api.site.reactor = self.api.clock  # the channel's timers on the test clock
        channel = self.api.site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /" + b"a" * 100_000)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "), transport.value()[:80])
        self.assertIn(b"application/problem+json", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_token_admits_the_connection(self) -> None:
        """Under the listener limits a connection stays pending (and is dropped at the
        deadline) until a request with a valid token, or a successful login, arrives."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from wazuhcluster.util.limits import LimitedFactory, ListenerLimits
        from wazuhcluster.util.logs import ClusterLog

        self.api.site.reactor = self.api.clock  # the channels' timers on the test clock
        limited = LimitedFactory(
            self.api.site,
            self.api.clock,
            ClusterLog("T", "API"),
            limits=ListenerLimits(handshake_timeout=10),
            admit_on="protocol",
        )
        token = self.api.token()
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        def connect(header: str) -> StringTransport:
            address = IPv4Address("TCP", "10.0.0.1", 1)
            proto = limited.buildProtocol(address)
            transport = StringTransport(peerAddress=address)
            proto.makeConnection(transport)
            proto.dataReceived(f"GET / HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
            return transport

        anonymous = connect("")
        self.assertIn(b"401 Unauthorized", anonymous.value())
        self.assertEqual(limited.admitted, 0)
        connect(f"Authorization: Bearer {token}\r\n")
        self.assertEqual(limited.admitted, 1)
        address = IPv4Address("TCP", "10.0.0.2", 1)
        login = limited.buildProtocol(address)
        login.makeConnection(StringTransport(peerAddress=address))
        login.dataReceived(
            b"POST /security/user/authenticate HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Basic {basic}\r\n\r\n".encode()
        )
        self.assertEqual(limited.admitted, 2)
        self.api.clock.advance(10)
        self.assertEqual((limited.late, limited.admitted), (1, 2))

    def test_pretty_output(self) -> None:
        """pretty=true indents the JSON answer."""
        self.assertIn(b"\n    ", self.api.call("GET", "/?pretty=true").raw)
        self.assertNotIn(b"\n", self.api.call("GET", "/").raw)
        self.assertIn(b"\n    ", self.api.call("GET", "/?pretty=True").raw)
        self.assertIn(b"\n    ", self.api.call("GET", "/agents?limit=0&pretty=TRUE").raw)
        self.assertNotIn(b"\n", self.api.call("GET", "/?pretty=false").raw)
        self.assertNotIn(b"\n", self.api.call("GET", "/agents?q=name~pretty=true").raw)


class SecurityLinkTests(SynchronousTestCase):
    """Links of a role that does not exist, as Wazuh answers them."""

    def test_unknown_role_is_a_failed_item(self) -> None:
        """Linking to or unlinking from an unknown role is 200 with the role failed (4002)."""
        api = ApiHarness(self)
        for method in ("POST", "DELETE"):
            answer = api.call(method, "/security/roles/999/policies?policy_ids=1")
            self.assertEqual((answer.status, answer.json["error"]), (200, 1), method)
            failed = answer.json["data"]["failed_items"]
            self.assertEqual(failed[0]["error"]["code"], 4002, method)
            self.assertEqual(failed[0]["id"], [999], method)


class LoginTests(SynchronousTestCase):
    """POST /security/user/authenticate."""

    def setUp(self) -> None:
        self.api = ApiHarness(self, max_login_attempts=3, block_time=300, token_timeout=900)

    def test_login_gives_a_token_that_expires(self) -> None:
        """A valid login returns a token that works until auth_token_exp_timeout."""
        token = self.api.login().json["data"]["token"]
        self.assertEqual(self.api.call("GET", "/", token=token).status, 200)
        self.api.clock.advance(899)
        self.assertEqual(self.api.call("GET", "/", token=token).status, 200)
        self.api.clock.advance(2)
        answer = self.api.call("GET", "/", token=token)
        self.assertEqual((answer.status, answer.json["detail"]), (401, "Invalid token"))

    def test_deprecated_get_login(self) -> None:
        """GET /security/user/authenticate still logs in, as in Wazuh 4."""
        basic = base64.b64encode(b"wazuh-ops:correct horse battery").decode()
        answer = self.api.call(
            "GET",
            "/security/user/authenticate",
            headers={"authorization": f"Basic {basic}"},
            token=None,
        )
        self.assertEqual(answer.status, 200)
        self.assertIn("token", answer.json["data"])

    def test_logout_revokes_the_users_tokens(self) -> None:
        """DELETE /security/user/authenticate revokes the caller's tokens; new logins work."""
        token = self.api.login().json["data"]["token"]
        self.api.clock.advance(1)
        other = self.api.login().json["data"]["token"]
        answer = self.api.call("DELETE", "/security/user/authenticate", token=token)
        self.assertEqual(
            answer.json, {"message": "User wazuh-ops was successfully logged out", "error": 0}
        )
        self.assertEqual(self.api.call("GET", "/", token=token).status, 401)
        self.assertEqual(self.api.call("GET", "/", token=other).status, 401)
        self.api.clock.advance(1)
        fresh = self.api.login().json["data"]["token"]
        self.assertEqual(self.api.call("GET", "/", token=fresh).status, 200)

    def test_raw_login(self) -> None:
        """raw=true answers the bare token as text."""
        basic = base64.b64encode(b"wazuh-ops:correct horse battery").decode()
        answer = self.api.call(
            "POST",
            "/security/user/authenticate?raw=true",
            headers={"authorization": f"Basic {basic}"},
            token=None,
        )
        self.assertTrue(answer.content_type.startswith("text/plain"))
        self.assertEqual(self.api.call("GET", "/", token=answer.raw.decode()).status, 200)

    def test_bad_credentials_are_401_then_the_ip_is_blocked(self) -> None:
        """Wrong passwords are 401; then the IP gets 403 (6000) until block_time has passed."""
        for _ in range(3):
            answer = self.api.login(password="wrong password")
            self.assertEqual(
                answer.json, {"title": "Unauthorized", "detail": "Invalid credentials"}
            )
        blocked = self.api.login()
        self.assertEqual((blocked.status, blocked.json["error"]), (403, 6000))
        self.assertEqual(self.api.login(client="192.0.2.99").status, 200)
        self.api.clock.advance(300)
        self.assertEqual(self.api.login().status, 200)

    def test_malformed_basic_headers(self) -> None:
        """Missing, non-basic or undecodable credentials are 401."""
        for header in ({}, {"authorization": "Bearer x"}, {"authorization": "Basic !!!"}):
            answer = self.api.call(
                "POST", "/security/user/authenticate", headers=header, token=None
            )
            self.assertEqual(answer.status, 401, header)
        self.assertEqual(self.api.login(user="nobody", client="192.0.2.98").status, 401)


class BoundedRequestTests(SynchronousTestCase):
    """The server-side request keeps bodies bounded in memory."""

    def make(self) -> BoundedRequest:
        site = bounded_site(Resource(), 1000)
        request: BoundedRequest = site.requestFactory(DummyChannel())
        return request

    def test_declared_length_over_the_bound(self) -> None:
        """A Content-Length over the bound marks the request and stores nothing."""
        request = self.make()
        request.gotLength(5000)
        request.handleContentChunk(b"x" * 500)
        self.assertTrue(request.body_oversized)
        self.assertEqual(request.content.getvalue(), b"")

    def test_chunked_body_over_the_bound(self) -> None:
        """A body without a length is cut off once it passes the bound."""
        request = self.make()
        request.gotLength(None)
        for _ in range(5):
            request.handleContentChunk(b"x" * 300)
        self.assertTrue(request.body_oversized)
        self.assertLessEqual(len(request.content.getvalue()), 1000)

    def test_small_body_is_kept(self) -> None:
        """A body within the bound is kept whole, in memory."""
        request = self.make()
        request.gotLength(6)
        request.handleContentChunk(b"abc")
        request.handleContentChunk(b"def")
        self.assertFalse(request.body_oversized)
        self.assertEqual(request.content.getvalue(), b"abcdef")


class WiringTests(SynchronousTestCase):
    """master_api and the registry hooks it installs."""

    def test_no_api_block_no_service(self) -> None:
        """Without <api> in the configuration the master runs no API."""
        api = ApiHarness(self)
        self.assertIsNone(master_api(api.config, api.node, api.registry, api.clock))

    def test_service_with_settings(self) -> None:
        """With enabled settings a service is built, not yet listening."""
        api = ApiHarness(self)
        enabled = attrs.evolve(api.settings, enabled=True)
        service = master_api(api.config, api.node, api.registry, api.clock, enabled)
        self.assertIsNotNone(service)

    def test_hooks_push_keys_and_log_reconnections(self) -> None:
        """Agents added or removed through the API are pushed to the workers."""
        pushed: list[tuple[list[dict[str, str]], list[str]]] = []

        class Feature:
            def push_keys(self, added: list[dict[str, str]], removed: list[str]) -> None:
                pushed.append((added, removed))

        hooks = registry_hooks(Feature())
        api = ApiHarness(self)
        agent = api.store.enroll("web1", "any")
        assert hooks.agents_added is not None and hooks.agents_removed is not None
        assert hooks.reconnect is not None
        hooks.agents_added([agent])
        hooks.agents_removed(["001"])
        hooks.reconnect(["001"])
        self.assertEqual(
            pushed,
            [([{"id": "001", "name": "web1", "ip": "any", "key": agent.key}], []), ([], ["001"])],
        )

    def test_reconnect_hook_uses_the_node(self) -> None:
        """The reconnect hook asks the node, which reaches agents wherever they are."""
        asked: list[tuple[list[str], int]] = []

        class Node:
            reconnector = object()

            async def reconnect_agents(self, agents: list[str], count: int) -> dict[str, list[str]]:
                asked.append((agents, count))
                return {"w1": agents}

        hooks = registry_hooks(object(), Node())
        assert hooks.reconnect is not None
        done = hooks.reconnect(["001", "002"])
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(asked, [(["001", "002"], 0)])
        self.assertIsNone(registry_hooks(object()).reconnect(["001"]))  # type: ignore[misc]


class ManagerViewTests(SynchronousTestCase):
    """Agent 000's operating system, from the host's os-release and uname."""

    def test_host_os_view(self) -> None:
        """os-release gives name, platform and version; uname the arch and Wazuh's uname."""
        release = {"NAME": "Debian GNU/Linux", "ID": "debian", "VERSION_ID": "12"}
        uname = platform.uname_result("Linux", "host1", "6.1.0", "#1 SMP", "x86_64")
        self.assertEqual(
            host_os_view(release, uname),
            {
                "name": "Debian GNU/Linux",
                "platform": "debian",
                "version": "12",
                "arch": "x86_64",
                "uname": "Linux |host1 |6.1.0 |#1 SMP |x86_64",
            },
        )
        self.assertEqual(host_os_view({}, uname)["platform"], "linux")

"""The Manager family and /cluster/{node_id}/*: answers from the master itself and from a
worker asked over its link (the worker's side driven through its question feature)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.helpers import give_certificates, short_temp_dir
from tests.test_api_fixtures import STRONG, ApiHarness, make_user
from wazuhcluster.config.api_settings import api_dir
from wazuhcluster.node.answers import NodeAnswers, fit_answer, parse_log_line
from wazuhcluster.util import fatal, restart
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire.questions import AskNode
from wazuhcluster.worker.questions import WorkerQuestions

LOG = (
    "2025/01/02 10:00:00 INFO: [Master] [Main] Master master of cluster wazuh listening.\n"
    "2025/01/02 10:00:01 WARNING: [Master] [Agents] Agent 001 sent a bad message\n"
    "2025/01/02 10:00:02 ERROR: [Master] [API] API call failed\n"
    "Traceback line\n"
)


class FakeRuleset:
    """Intake numbers and reloads counted."""

    def __init__(self) -> None:
        self.reloads = 0

    def intake(self) -> dict[str, Any]:
        """Fixed numbers."""
        return {
            "received": 10,
            "decoded": 9,
            "processed": 9,
            "dropped": 1,
            "alerts_written": 3,
            "queue_length": 4,
            "queue_size": 16,
            "eps_10s": 2.5,
        }

    def reload(self) -> Deferred[None]:
        """Count one reload."""
        self.reloads += 1
        return succeed(None)

    def reopen_alerts(self) -> Deferred[None]:
        """Nothing."""
        return succeed(None)


class FeatureProtocol:
    """A worker link's protocol whose AskNode is answered by a worker's question feature."""

    def __init__(self, feature: WorkerQuestions | None) -> None:
        self.feature = feature
        self.asked: list[str] = []

    def callRemote(self, command: type, **arguments: Any) -> Deferred[Any]:  # noqa: N802
        """Answer AskNode through the feature (never, when it has none)."""
        assert command is AskNode
        self.asked.append(arguments["question"])
        if self.feature is None:
            return Deferred()
        feature = self.feature

        async def answer() -> dict[str, Any]:
            return {"reply": await feature.reply(arguments["question"], arguments["arguments"])}

        return ensureDeferred(answer())


class ManagerTests(SynchronousTestCase):
    """/manager/* about the master."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.ruleset = FakeRuleset()
        self.api.node.ruleset = self.ruleset  # type: ignore[assignment]
        self.api.home.cluster_log.write_text(LOG)

    def test_info_and_status(self) -> None:
        """Basic information and the daemons' status in Wazuh's shapes."""
        info = self.api.call("GET", "/manager/info").json
        item = info["data"]["affected_items"][0]
        self.assertEqual((item["version"], item["type"]), ("v4.14.7", "server"))
        self.assertEqual(item["path"], str(self.api.home.root))
        status = self.api.call("GET", "/manager/status").json["data"]["affected_items"][0]
        self.assertEqual(status["wazuh-clusterd"], "running")
        self.assertEqual(status["wazuh-maild"], "stopped")

    def test_configuration_whole_section_field_and_raw(self) -> None:
        """The file as JSON (cluster key hidden), one section, one field, or raw XML."""
        whole = self.api.call("GET", "/manager/configuration").json["data"]["affected_items"][0]
        self.assertEqual(whole["cluster"]["node_name"], "master")
        self.assertEqual(whole["cluster"]["key"], "*****")
        section = self.api.call("GET", "/manager/configuration?section=cluster").json
        self.assertEqual(list(section["data"]["affected_items"][0]), ["cluster"])
        field = self.api.call("GET", "/manager/configuration?section=cluster&field=node_type")
        self.assertEqual(
            field.json["data"]["affected_items"][0], {"cluster": {"node_type": "master"}}
        )
        raw = self.api.call("GET", "/manager/configuration?raw=true")
        self.assertTrue(raw.content_type.startswith("application/xml"))
        self.assertIn(b"<key>*****</key>", raw.raw)
        absent = self.api.call("GET", "/manager/configuration?section=syscheck")
        self.assertEqual((absent.status, absent.json["error"]), (400, 1106))
        bad = self.api.call("GET", "/manager/configuration?section=cluster&field=nope")
        self.assertEqual((bad.status, bad.json["error"]), (400, 1103))

    def test_logs_and_summary(self) -> None:
        """cluster.log records newest first, filtered; a summary per tag."""
        logs = self.api.call("GET", "/manager/logs").json["data"]
        self.assertEqual(logs["total_affected_items"], 3)
        first = logs["affected_items"][0]
        self.assertEqual((first["tag"], first["level"]), ("wazuh-apid", "error"))
        self.assertIn("Traceback line", first["description"])
        warned = self.api.call("GET", "/manager/logs?level=warning").json["data"]
        self.assertEqual([r["tag"] for r in warned["affected_items"]], ["wazuh-remoted"])
        tagged = self.api.call("GET", "/manager/logs?tag=wazuh-clusterd&limit=1").json["data"]
        self.assertEqual(tagged["total_affected_items"], 1)
        over = self.api.call("GET", "/manager/logs?limit=501")
        self.assertEqual(over.status, 400)
        summary = self.api.call("GET", "/manager/logs/summary").json["data"]["affected_items"]
        self.assertIn(
            {
                "wazuh-apid": {
                    "all": 1,
                    "info": 0,
                    "error": 1,
                    "critical": 0,
                    "warning": 0,
                    "debug": 0,
                }
            },
            summary,
        )

    def test_analysisd_stats_validation_and_reload(self) -> None:
        """Intake numbers in Wazuh's fields; the configuration validates; reload reloads."""
        stats = self.api.call("GET", "/manager/stats/analysisd").json["data"]["affected_items"]
        self.assertEqual(stats[0]["events_received"], 10.0)
        self.assertEqual(stats[0]["event_queue_usage"], 0.25)
        valid = self.api.call("GET", "/manager/configuration/validation").json
        self.assertEqual(valid["data"]["affected_items"], [{"name": "master", "status": "OK"}])
        self.api.config.source.write_text("<wazuh_config><cluster><port>nope</port></cluster>")
        broken = self.api.call("GET", "/manager/configuration/validation").json
        self.assertEqual(
            (broken["error"], broken["data"]["failed_items"][0]["error"]["code"]), (1, 1908)
        )
        reload = self.api.call("PUT", "/manager/analysisd/reload").json
        self.assertEqual(
            reload["data"]["affected_items"],
            [{"name": "master", "msg": "Ruleset reload requested."}],
        )
        self.assertEqual(self.ruleset.reloads, 1)

    def test_remoted_stats(self) -> None:
        """The agent channel's counters in Wazuh's remoted fields, with the analysis queue;
        a node without a channel answers 1017."""
        stats = self.api.channel_stats
        stats.events, stats.control, stats.dropped, stats.refused = 7, 2, 1, 1
        stats.recv_bytes, stats.sent_bytes, stats.tcp_sessions = 900, 300, 4
        item = self.api.call("GET", "/manager/stats/remoted").json["data"]["affected_items"][0]
        self.assertEqual(
            item,
            {
                "queue_size": 4.0,
                "total_queue_size": 16.0,
                "tcp_sessions": 4.0,
                "evt_count": 7.0,
                "ctrl_msg_count": 2.0,
                "discarded_count": 2.0,
                "sent_bytes": 300.0,
                "recv_bytes": 900.0,
                "dequeued_after_close": 0.0,
            },
        )
        self.api.node.answers.remoted = None
        answer = self.api.call("GET", "/cluster/master/stats/remoted")
        self.assertEqual((answer.status, answer.json["error"]), (500, 1017))

    def test_cluster_and_api_config(self) -> None:
        """The <cluster> block with the key hidden; the API's settings for the master, and
        workers marked as serving none; readers of one node see only it."""
        local = self.api.call("GET", "/cluster/local/config").json["data"]["affected_items"][0]
        cluster = self.api.config.cluster
        self.assertEqual((local["name"], local["node_type"]), (cluster.name, "master"))
        self.assertEqual((local["key"], local["port"], local["disabled"]), ("*****", 1516, False))
        self.assertNotIn(cluster.key, json.dumps(local))
        mine = self.api.call("GET", "/manager/api/config").json["data"]["affected_items"][0]
        config = mine["node_api_config"]
        self.assertEqual(config["port"], self.api.settings.port)
        self.assertEqual(config["access"]["max_request_per_minute"], 300)
        self.api.connect_worker("w1")
        every = self.api.call("GET", "/cluster/api/config?nodes_list=master,w1,ghost").json
        items = {
            item["node_name"]: item["node_api_config"] for item in every["data"]["affected_items"]
        }
        self.assertEqual(items["w1"], {"enabled": False})
        self.assertEqual(items["master"], config)
        self.assertEqual(every["data"]["failed_items"][0]["id"], ["ghost"])
        token = make_user(self.api, "reader", "readonly")
        self.assertEqual(self.api.call("GET", "/cluster/local/config", token=token).status, 200)
        self.assertEqual(self.api.call("GET", "/cluster/api/config", token=token).status, 200)
        agents_only = make_user(self.api, "agentsonly", "agents_readonly")
        refused = self.api.call("GET", "/manager/api/config", token=agents_only)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))

    def test_no_analysis_is_1017(self) -> None:
        """A node without analysis answers 1017 for its statistics."""
        self.api.node.ruleset = None
        answer = self.api.call("GET", "/manager/stats/analysisd")
        self.assertEqual((answer.status, answer.json["error"]), (500, 1017))

    def test_readonly_reads_but_cannot_reload(self) -> None:
        """readonly reads /manager/* but a reload is refused (403, 4000)."""
        token = make_user(self.api, "reader", "readonly")
        self.assertEqual(self.api.call("GET", "/manager/info", token=token).status, 200)
        refused = self.api.call("PUT", "/manager/analysisd/reload", token=token)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))
        agents_only = make_user(self.api, "agentsonly", "agents_readonly")
        denied = self.api.call("GET", "/manager/status", token=agents_only)
        self.assertEqual(denied.status, 403)


class ClusterNodeTests(SynchronousTestCase):
    """/cluster/{node_id}/* for the master and a worker."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.api.home.cluster_log.write_text(LOG)
        worker_home = self.api.config  # the worker answers from a config of its own
        self.worker_answers = NodeAnswers(
            worker_home, run_inline, intake=FakeRuleset().intake, running=("wazuh-remoted",)
        )
        self.feature = WorkerQuestions(self.worker_answers, ClusterLog("Worker w1", "Questions"))
        self.protocol = FeatureProtocol(self.feature)
        link = self.api.connect_worker("w1")
        link.protocol = self.protocol  # type: ignore[assignment]

    def test_worker_is_asked_over_its_link(self) -> None:
        """A worker's info, status, logs and stats come from its own answers."""
        status = self.api.call("GET", "/cluster/w1/status").json["data"]["affected_items"][0]
        self.assertEqual((status["wazuh-remoted"], status["wazuh-apid"]), ("running", "stopped"))
        logs = self.api.call("GET", "/cluster/w1/logs?sort=+timestamp&limit=2").json["data"]
        self.assertEqual(logs["affected_items"][0]["tag"], "wazuh-clusterd")
        stats = self.api.call("GET", "/cluster/w1/stats/analysisd").json
        self.assertEqual(stats["data"]["affected_items"][0]["alerts_written"], 3.0)
        self.assertEqual(self.protocol.asked, ["status", "logs", "analysisd"])
        master = self.api.call("GET", "/cluster/master/info").json["data"]["affected_items"][0]
        self.assertEqual(master["type"], "server")

    def test_worker_remoted_stats(self) -> None:
        """A worker's agent channel counters come over its link."""
        self.worker_answers.remoted = lambda: {"evt_count": 5, "tcp_sessions": 2}
        item = self.api.call("GET", "/cluster/w1/stats/remoted").json["data"]["affected_items"][0]
        self.assertEqual((item["evt_count"], item["tcp_sessions"]), (5.0, 2.0))
        self.assertEqual(item["total_queue_size"], 16.0)
        self.assertEqual(self.protocol.asked, ["remoted"])

    def test_refusals_cross_the_link(self) -> None:
        """A worker's refusal arrives with its Wazuh code."""
        answer = self.api.call("GET", "/cluster/w1/configuration?section=syscheck")
        self.assertEqual((answer.status, answer.json["error"]), (400, 1106))
        bad_sort = self.api.call("GET", "/cluster/w1/logs?sort=+nope")
        self.assertEqual(bad_sort.json["error"], 1403)

    def test_unknown_node_and_silent_worker(self) -> None:
        """An unknown node fails with 1730; a worker that never answers with 3020."""
        ghost = self.api.call("GET", "/cluster/ghost/info").json
        self.assertEqual(
            (ghost["error"], ghost["data"]["failed_items"][0]["error"]["code"]), (1, 1730)
        )
        self.protocol.feature = None
        request = DummyRequest([])
        request.method = b"GET"
        request.uri = b"/cluster/w1/info"
        request.requestHeaders.setRawHeaders(
            b"authorization", [f"Bearer {self.api.token()}".encode()]
        )
        self.api.resource.render(request)
        self.assertEqual(request.finished, 0)
        self.api.clock.advance(16)
        self.assertEqual(request.finished, 1)
        body = json.loads(b"".join(request.written))
        self.assertEqual(body["data"]["failed_items"][0]["error"]["code"], 3020)

    def test_cluster_validation_and_reload(self) -> None:
        """Every node validated; a reload of a listed unknown node fails with 1730."""
        valid = self.api.call("GET", "/cluster/configuration/validation").json["data"]
        self.assertEqual([i["name"] for i in valid["affected_items"]], ["master", "w1"])
        reload = self.api.call("PUT", "/cluster/analysisd/reload?nodes_list=ghost").json
        self.assertEqual(reload["data"]["failed_items"][0]["error"]["code"], 1730)

    def test_cluster_read_is_per_node(self) -> None:
        """A role limited to node:id:master reads the master only."""
        token = make_user(self.api, "clusterer", "cluster_readonly")
        self.assertEqual(self.api.call("GET", "/cluster/w1/info", token=token).status, 200)
        agents = make_user(self.api, "agentsonly", "agents_readonly")
        self.assertEqual(self.api.call("GET", "/cluster/w1/info", token=agents).status, 403)


class AnswerUnitTests(SynchronousTestCase):
    """Pieces of the node answers."""

    def test_log_line_parsing(self) -> None:
        """A cluster.log line becomes Wazuh's record; other lines are not records."""
        record = parse_log_line("2025/01/02 10:00:00 DEBUG: [Worker w1] [Agents] hello")
        assert record is not None
        self.assertEqual((record["level"], record["tag"]), ("debug", "wazuh-remoted"))
        self.assertTrue(record["timestamp"].endswith("Z"))
        self.assertIsNone(parse_log_line("  continuation"))

    def test_answers_are_cut_to_fit(self) -> None:
        """Items are dropped from the end until the answer fits; a raw text is truncated."""
        answer = {"items": [{"description": "x" * 1000} for _ in range(200)], "total": 200}
        fitted = fit_answer(answer, 60_000)
        self.assertLess(len(fitted["items"]), 60)
        self.assertEqual(fitted["cut"], 200 - len(fitted["items"]))
        self.assertEqual(len(fit_answer({"raw": "y" * 100_000}, 60_000)["raw"]), 59_800)


class ConfigurationUpdateTests(SynchronousTestCase):
    """PUT /manager/configuration and PUT /cluster/{node_id}/configuration."""

    def mktemp(self) -> str:
        """A short home, so the control socket's path passes the start checks."""
        return str(short_temp_dir(self) / "h")

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.source = Path(self.api.config.source)
        self.before = self.source.read_bytes()
        give_certificates(self.api.config)

    def put(self, path: str, body: bytes, **kwargs: Any) -> Any:
        """PUT ``body`` as an octet stream."""
        headers = {"content-type": "application/octet-stream"}
        return self.api.call("PUT", path, body, headers=headers, **kwargs)

    def test_a_file_that_loads_replaces_the_configuration(self) -> None:
        """A valid file is written whole in place of the old one, nothing else left over."""
        new = self.before.replace(b"</wazuh_config>", b"<!-- edited --></wazuh_config>")
        self.assertNotEqual(new, self.before)
        answer = self.put("/manager/configuration", new)
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.json["data"]["affected_items"], ["master"])
        self.assertEqual(answer.json["error"], 0)
        self.assertEqual(
            answer.json["message"], "Configuration was successfully updated in specified node"
        )
        self.assertEqual(self.source.read_bytes(), new)
        self.assertEqual(sorted(p.name for p in self.source.parent.glob(".*.new")), [])

    def test_a_file_that_does_not_load_is_refused_with_its_reason(self) -> None:
        """Bad XML and a bad option are failed items (1125) naming the reason; the file
        on disk is unchanged and no temporary file is left."""
        for body, reason in (
            (b"<wazuh_config><cluster>", "wazuh-manager.conf"),
            (self.before.replace(b"<port>1516</port>", b"<port>nope</port>"), "<port>"),
            (self.before.replace(b">master</node_type", b">boss</node_type"), "node_type"),
            (b"   ", "empty"),
        ):
            answer = self.put("/manager/configuration", body).json
            self.assertEqual(answer["error"], 1, body)
            error = answer["data"]["failed_items"][0]["error"]
            self.assertEqual(error["code"], 1125)
            self.assertTrue(error["message"].startswith("Invalid ossec configuration: "))
            self.assertIn(reason, error["message"])
            self.assertEqual(self.source.read_bytes(), self.before)
            self.assertEqual(list(self.source.parent.glob(".*.new")), [])

    def test_body_bounds_and_encoding(self) -> None:
        """A body that is not UTF-8 is 400 (1911); one too large to cross the link fails."""
        bad = self.put("/manager/configuration", b"\xff\xfe<wazuh_config/>")
        self.assertEqual((bad.status, bad.json["error"]), (400, 1911))
        big = self.before.replace(
            b"</wazuh_config>", b"<!--" + b'"' * 40_000 + b"--></wazuh_config>"
        )
        answer = self.api.call(
            "PUT",
            "/manager/configuration",
            big,
            headers={"content-type": "application/octet-stream"},
        )
        if answer.status == 200:
            self.assertEqual(answer.json["data"]["failed_items"][0]["error"]["code"], 1125)
        else:
            self.assertEqual(answer.status, 413)
        self.assertEqual(self.source.read_bytes(), self.before)

    def test_a_file_that_would_not_start_for_lack_of_certificates_is_refused(self) -> None:
        """The TLS material is checked as at a start: without the CA, the file is refused."""
        Path(self.api.config.cluster.tls.ca_cert).unlink()
        new = self.before + b"\n"
        error = self.put("/manager/configuration", new).json["data"]["failed_items"][0]["error"]
        self.assertIn("CA certificate", error["message"])
        self.assertEqual(self.source.read_bytes(), self.before)

    def test_needs_update_config(self) -> None:
        """readonly may not replace the configuration (403, 4000)."""
        token = make_user(self.api, "reader", "readonly")
        refused = self.put("/manager/configuration", self.before, token=token)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))
        refused = self.put("/cluster/master/configuration", self.before, token=token)
        self.assertEqual(refused.status, 403)
        self.assertEqual(self.source.read_bytes(), self.before)

    def test_a_worker_is_asked_over_its_link(self) -> None:
        """PUT /cluster/w1/configuration is the worker's own answer; an unknown node 1730."""
        worker_home = self.api.config
        answers = NodeAnswers(worker_home, run_inline)
        feature = WorkerQuestions(answers, ClusterLog("Worker w1", "Questions"))
        protocol = FeatureProtocol(feature)
        link = self.api.connect_worker("w1")
        link.protocol = protocol  # type: ignore[assignment]
        refused = self.put("/cluster/w1/configuration", b"<wazuh_config>").json
        self.assertEqual(refused["data"]["failed_items"][0]["error"]["code"], 1125)
        self.assertEqual(refused["message"], "Could not update configuration in specified node")
        new = self.before + b"\n"
        done = self.put("/cluster/w1/configuration", new).json
        self.assertEqual(done["data"]["affected_items"], ["w1"])
        self.assertEqual(protocol.asked, ["update_configuration", "update_configuration"])
        self.assertEqual(self.source.read_bytes(), new)
        ghost = self.put("/cluster/ghost/configuration", new).json
        self.assertEqual(ghost["data"]["failed_items"][0]["error"]["code"], 1730)


class RestartTests(SynchronousTestCase):
    """PUT /manager/restart and PUT /cluster/restart."""

    def mktemp(self) -> str:
        """A short home, so the control socket's path passes the start checks."""
        return str(short_temp_dir(self) / "h")

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        give_certificates(self.api.config)
        #: (node, delay) of each restart asked, in order.
        self.restarts: list[tuple[str, float]] = []
        self.api.node.answers.restart = lambda delay: self.restarts.append(("master", delay))

    def add_worker(self) -> FeatureProtocol:
        """A worker w1 that answers over its link (sharing the master's home)."""
        answers = NodeAnswers(
            self.api.config, run_inline, restart=lambda delay: self.restarts.append(("w1", delay))
        )
        protocol = FeatureProtocol(WorkerQuestions(answers, ClusterLog("Worker w1", "Q")))
        link = self.api.connect_worker("w1")
        link.protocol = protocol  # type: ignore[assignment]
        return protocol

    def test_manager_restart_is_accepted_then_done_later(self) -> None:
        """202 with the master as affected item; the node is asked to restart after a delay."""
        answer = self.api.call("PUT", "/manager/restart")
        self.assertEqual(answer.status, 202)
        self.assertEqual(answer.json["data"]["affected_items"], ["master"])
        self.assertEqual(answer.json["message"], "Restart request sent to all specified nodes")
        self.assertEqual(self.restarts, [("master", 3.0)])

    def test_a_configuration_that_would_not_start_is_refused(self) -> None:
        """A broken configuration file: failed item 1908 with the reason, no restart."""
        source = Path(self.api.config.source)
        source.write_bytes(source.read_bytes().replace(b"<port>1516", b"<port>nope"))
        body = self.api.call("PUT", "/manager/restart").json
        self.assertEqual(body["error"], 1)
        error = body["data"]["failed_items"][0]["error"]
        self.assertEqual(error["code"], 1908)
        self.assertIn("<port>", error["message"])
        self.assertEqual(self.restarts, [])

    def test_cluster_restart_workers_first_master_last(self) -> None:
        """Every node restarts, workers asked first and stopping sooner than the master."""
        protocol = self.add_worker()
        body = self.api.call("PUT", "/cluster/restart").json
        self.assertEqual(body["data"]["affected_items"], ["w1", "master"])
        self.assertEqual(self.restarts, [("w1", 1.0), ("master", 3.0)])
        self.assertEqual(protocol.asked, ["restart"])
        listed = self.api.call("PUT", "/cluster/restart?nodes_list=w1,ghost").json
        self.assertEqual(listed["error"], 2)
        self.assertEqual(listed["data"]["failed_items"][0]["error"]["code"], 1730)

    def test_needs_restart_permission(self) -> None:
        """Neither readonly nor cluster_readonly may restart (403)."""
        token = make_user(self.api, "reader", "readonly")
        refused = self.api.call("PUT", "/manager/restart", token=token)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))
        self.add_worker()
        viewer = make_user(self.api, "viewer", "cluster_readonly")
        answer = self.api.call("PUT", "/cluster/restart", token=viewer)
        self.assertEqual(answer.status, 403)
        self.assertEqual(self.restarts, [])

    def user_with_policy(self, name: str, policy: dict[str, Any] | None) -> str:
        """A token of a new user holding only ``policy`` (no role at all when None)."""
        if policy is None:
            return make_user(self.api, name)
        made = self.api.call("POST", "/security/users", {"username": name, "password": STRONG})
        user_id = made.json["data"]["affected_items"][0]["id"]
        policy_id = self.api.call(
            "POST", "/security/policies", {"name": f"{name}_policy", "policy": policy}
        ).json["data"]["affected_items"][0]["id"]
        role_id = self.api.call("POST", "/security/roles", {"name": f"{name}_role"}).json["data"][
            "affected_items"
        ][0]["id"]
        self.api.call("POST", f"/security/roles/{role_id}/policies?policy_ids={policy_id}")
        self.api.call("POST", f"/security/users/{user_id}/roles?role_ids={role_id}")
        self.api.clock.advance(1)
        login = self.api.login(name, STRONG)
        self.assertEqual(login.status, 200, login.raw)
        token: str = login.json["data"]["token"]
        return token

    def test_the_master_needs_its_own_permission(self) -> None:
        """As Wazuh (which checks the master's part on its own, not as one of a broadcast):
        a caller who may not restart the master gets 403 (4000) when the master is meant
        (no list, or named) and nothing restarts; a role-less caller too (not a 202 with
        nothing); the workers they may restart, named alone, restart."""
        self.add_worker()
        nobody = self.user_with_policy("nobody", None)
        refused = self.api.call("PUT", "/cluster/restart", token=nobody)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))
        policy = {
            "actions": ["cluster:read", "cluster:restart"],
            "resources": ["node:id:w1"],
            "effect": "allow",
        }
        token = self.user_with_policy("w1_admin", policy)
        for path in ("/cluster/restart", "/cluster/restart?nodes_list=w1,master"):
            answer = self.api.call("PUT", path, token=token)
            self.assertEqual((answer.status, answer.json["error"]), (403, 4000), path)
        self.assertEqual(self.restarts, [])
        alone = self.api.call("PUT", "/cluster/restart?nodes_list=w1", token=token)
        self.assertEqual(alone.status, 202, alone.raw)
        self.assertEqual(alone.json["data"]["affected_items"], ["w1"])
        self.assertEqual(self.restarts, [("w1", 1.0)])


class RestartInPlaceTests(SynchronousTestCase):
    """wazuhcluster.util.restart: stop after a delay, then the same command line again."""

    def test_stop_after_delay_then_exec_same_command(self) -> None:
        """The reactor stops after the delay; the exit hook execs the original command."""
        clock = Clock()
        stopped: list[bool] = []
        clock.stop = lambda: stopped.append(True)  # type: ignore[attr-defined]
        execs: list[tuple[str, list[str]]] = []
        self.patch(restart, "requested", False)
        self.patch(restart, "_cwd", str(Path.cwd()))
        self.patch(restart.os, "execv", lambda path, argv: execs.append((path, list(argv))))
        restart._reexec()
        self.assertEqual(execs, [])  # no restart asked: a plain exit
        restart.restart_node(clock, ClusterLog("Master", "Main"), 2.0)
        clock.advance(1.9)
        self.assertEqual(stopped, [])
        clock.advance(0.2)
        self.assertEqual(stopped, [True])
        restart._reexec()
        self.assertEqual(execs, [(sys.executable, restart.restart_command())])
        self.assertEqual(restart.restart_command(), list(sys.orig_argv))

    def test_no_restart_after_a_fault(self) -> None:
        """A node that stopped for a fault exits (status 1) rather than starting again."""
        execs: list[object] = []
        self.patch(restart, "requested", True)
        self.patch(fatal, "failures", ["broken"])
        self.patch(restart.os, "execv", lambda *args: execs.append(args))
        restart._reexec()
        self.assertEqual(execs, [])


class VersionCheckTests(SynchronousTestCase):
    """GET /manager/version/check: Wazuh's answer with the update check disabled."""

    def test_update_check_disabled_answer_with_a_kept_uid(self) -> None:
        """No release information, update_check false, and one uid kept across calls."""
        api = ApiHarness(self)
        first = api.call("GET", "/manager/version/check")
        self.assertEqual(first.status, 200)
        data = first.json["data"]
        self.assertEqual(
            {key: value for key, value in data.items() if key != "uuid"},
            {
                "last_check_date": "",
                "current_version": "v4.14.7",
                "update_check": False,
                "last_available_major": {},
                "last_available_minor": {},
                "last_available_patch": {},
            },
        )
        self.assertEqual(str(uuid.UUID(data["uuid"])), data["uuid"])
        again = api.call("GET", "/manager/version/check?force_query=true").json["data"]
        self.assertEqual(again["uuid"], data["uuid"])
        kept = api_dir(api.home) / "installation_uid"
        self.assertEqual(kept.read_text(), data["uuid"])
        kept.write_text("damaged")
        fresh = api.call("GET", "/manager/version/check").json["data"]["uuid"]
        self.assertNotEqual(fresh, data["uuid"])
        self.assertEqual(kept.read_text(), fresh)

    def test_any_authenticated_user(self) -> None:
        """Wazuh's operation has no RBAC action: any user with a token; none without."""
        api = ApiHarness(self)
        token = make_user(api, "agentsonly", "agents_readonly")
        self.assertEqual(api.call("GET", "/manager/version/check", token=token).status, 200)
        self.assertEqual(api.call("GET", "/manager/version/check", token=None).status, 401)

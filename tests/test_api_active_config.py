"""``GET /manager/configuration/{component}/{configuration}`` and its
``/cluster/{node_id}/...`` counterpart: the settings a node runs with, in Wazuh's shapes."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness
from tests.test_api_manager import FakeRuleset, FeatureProtocol
from wazuhcluster.node.answers import NodeAnswers
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline
from wazuhcluster.worker.questions import WorkerQuestions


class ActiveConfigurationTests(SynchronousTestCase):
    """The kept pairs answer from the loaded settings; the others fail as Wazuh's do."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        worker = NodeAnswers(self.api.config, run_inline, intake=FakeRuleset().intake)
        self.protocol = FeatureProtocol(WorkerQuestions(worker, ClusterLog("W", "Q")))
        link = self.api.connect_worker("w1")
        link.protocol = self.protocol  # type: ignore[assignment]

    def item(self, path: str) -> dict[str, Any]:
        """The one affected item of a successful read."""
        answer = self.api.call("GET", path).json
        self.assertEqual(answer["error"], 0, answer)
        self.assertEqual(
            answer["message"], "Active configuration was successfully read in specified node"
        )
        found: dict[str, Any] = answer["data"]["affected_items"][0]
        return found

    def test_kept_pairs_in_wazuhs_shapes(self) -> None:
        """analysis global/alerts, request remote/global, auth auth and com cluster."""
        alerts = self.item("/manager/configuration/analysis/alerts")["alerts"]
        self.assertEqual(alerts["log_alert_level"], 3)
        settings = self.item("/manager/configuration/analysis/global")["global"]
        self.assertEqual((settings["logall"], settings["eps"]["maximum"]), ("no", 0))
        remote = self.item("/manager/configuration/request/remote")["remote"][0]
        self.assertEqual((remote["connection"], remote["protocol"]), ("secure", ["TCP"]))
        self.assertEqual(remote["port"], "1514")
        timing = self.item("/manager/configuration/request/global")["global"]["remoted"]
        self.assertEqual(timing["agents_disconnection_time"], 900)
        auth = self.item("/manager/configuration/auth/auth")["auth"]
        self.assertEqual((auth["port"], auth["use_password"]), (1515, "no"))
        self.assertNotIn("authd.pass", auth)
        cluster = self.item("/manager/configuration/com/cluster")
        self.assertEqual((cluster["node_name"], cluster["key"]), ("master", "*****"))

    def test_settings_come_from_the_node_asked(self) -> None:
        """A worker answers over its link; the master through its own path too."""
        cluster = self.item("/cluster/w1/configuration/com/cluster")
        self.assertEqual(cluster["node_type"], "master")  # the harness' config, shared
        self.assertEqual(self.protocol.asked, ["active_configuration"])
        self.item("/cluster/master/configuration/AUTH/auth")

    def test_not_kept_and_refused(self) -> None:
        """A component without kept settings: 1121; a configuration not kept: 1116; a
        value outside Wazuh's lists: 400; an unknown node: 1730."""
        absent = self.api.call("GET", "/manager/configuration/syscheck/syscheck").json
        self.assertEqual(absent["error"], 1)
        self.assertEqual(absent["data"]["failed_items"][0]["error"]["code"], 1121)
        self.assertEqual(absent["data"]["failed_items"][0]["id"], ["master"])
        rules = self.api.call("GET", "/manager/configuration/analysis/rules").json
        self.assertEqual(rules["data"]["failed_items"][0]["error"]["code"], 1116)
        bad = self.api.call("GET", "/manager/configuration/nope/global")
        self.assertEqual(bad.status, 400)
        bad = self.api.call("GET", "/manager/configuration/analysis/nope")
        self.assertEqual(bad.status, 400)
        ghost = self.api.call("GET", "/cluster/ghost/configuration/auth/auth").json["data"]
        self.assertEqual(ghost["failed_items"][0]["error"]["code"], 1730)

"""``GET /manager/daemons/stats`` and ``/cluster/{node_id}/daemons/stats``: Wazuh 4.4's
per-daemon statistics filled from the node's own counters."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness
from tests.test_api_manager import FakeRuleset, FeatureProtocol
from wazuhcluster.node.answers import NodeAnswers
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline
from wazuhcluster.worker.questions import WorkerQuestions


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The affected items by daemon name."""
    return {item["name"]: item for item in data["affected_items"]}


class DaemonStatsTests(SynchronousTestCase):
    """The master's daemons and a worker's, with their real numbers."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.api.node.ruleset = FakeRuleset()  # type: ignore[assignment]
        self.api.node.answers.remoted = lambda: {
            "tcp_sessions": 2,
            "evt_count": 40,
            "ctrl_msg_count": 7,
            "discarded_count": 1,
            "recv_bytes": 900,
            "sent_bytes": 300,
            "dequeued_after_close": 0,
        }
        self.worker = NodeAnswers(
            self.api.config,
            run_inline,
            intake=FakeRuleset().intake,
            running=("wazuh-analysisd", "wazuh-remoted"),
            remoted=lambda: {"evt_count": 5},
        )
        self.protocol = FeatureProtocol(WorkerQuestions(self.worker, ClusterLog("W", "Q")))
        link = self.api.connect_worker("w1")
        link.protocol = self.protocol  # type: ignore[assignment]

    def test_master_daemons_in_wazuhs_shape(self) -> None:
        """All three daemons by default, from the channel's and the analysis' numbers."""
        answer = self.api.call("GET", "/manager/daemons/stats").json
        self.assertEqual(answer["error"], 0)
        items = by_name(answer["data"])
        self.assertEqual(list(items), ["wazuh-remoted", "wazuh-analysisd", "wazuh-db"])
        remoted = items["wazuh-remoted"]["metrics"]
        self.assertEqual(remoted["bytes"], {"received": 900, "sent": 300})
        received = remoted["messages"]["received_breakdown"]
        self.assertEqual(
            (received["event"], received["control"], received["discarded"]), (40, 7, 1)
        )
        self.assertEqual(remoted["queues"]["received"], {"size": 16, "usage": 4})
        self.assertEqual(remoted["tcp_sessions"], 2)
        analysisd = items["wazuh-analysisd"]["metrics"]
        events = analysisd["events"]
        self.assertEqual((events["received"], events["processed"]), (10, 9))
        self.assertEqual(events["written_breakdown"]["alerts"], 3)
        self.assertEqual(events["received_breakdown"]["dropped_breakdown"]["agent"], 1)
        self.assertEqual(analysisd["queues"]["processed"], {"size": 16, "usage": 25})
        self.assertRegex(items["wazuh-db"]["uptime"], r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

    def test_daemons_list_and_the_worker(self) -> None:
        """``daemons_list`` picks; a worker runs no wazuh-db (failed with 1017); the worker
        is asked over its link; the master's path gives the same."""
        one = self.api.call("GET", "/manager/daemons/stats?daemons_list=wazuh-analysisd").json
        self.assertEqual(list(by_name(one["data"])), ["wazuh-analysisd"])
        worker = self.api.call("GET", "/cluster/w1/daemons/stats").json
        self.assertEqual(worker["error"], 2)
        self.assertEqual(list(by_name(worker["data"])), ["wazuh-remoted", "wazuh-analysisd"])
        failed = worker["data"]["failed_items"][0]
        self.assertEqual((failed["error"]["code"], failed["id"]), (1017, ["wazuh-db"]))
        remoted = by_name(worker["data"])["wazuh-remoted"]["metrics"]
        self.assertEqual(remoted["messages"]["received_breakdown"]["event"], 5)
        self.assertEqual(self.protocol.asked, ["daemons_stats"])
        only_db = self.api.call("GET", "/cluster/w1/daemons/stats?daemons_list=wazuh-db").json
        self.assertEqual((only_db["error"], only_db["data"]["total_affected_items"]), (1, 0))
        master = self.api.call("GET", "/cluster/master/daemons/stats").json["data"]
        self.assertEqual(master["total_affected_items"], 3)

    def test_refusals(self) -> None:
        """An unknown daemon name is a 400; an unknown node a failed item (1730)."""
        bad = self.api.call("GET", "/manager/daemons/stats?daemons_list=wazuh-maild")
        self.assertEqual(bad.status, 400)
        ghost = self.api.call("GET", "/cluster/ghost/daemons/stats").json["data"]
        self.assertEqual(ghost["failed_items"][0]["error"]["code"], 1730)

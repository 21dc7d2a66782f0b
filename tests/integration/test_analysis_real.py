"""Agent events analysed on a real worker, and a custom rule from the master without restart."""

from __future__ import annotations

import json
import signal

from tests.integration.common import DEADLINE, ClusterTestCase, control
from wazuhcluster.testing.devcluster import wait_for

EVENTS = (
    "Nov 26 10:00:00 web1 sshd[123]: Failed password for invalid user admin from 198.51.100.7 "
    "port 5555 ssh2\n"
    "Nov 26 10:00:00 web1 myapp: CUSTOM-MARKER something happened\n"
)
CUSTOM_RULE = (
    '<group name="local,">\n  <rule id="100100" level="7">\n    <match>CUSTOM-MARKER</match>\n'
    "    <description>Custom marker seen</description>\n  </rule>\n</group>\n"
)


class AnalysisTests(ClusterTestCase):
    """Events from a simulated agent on worker1."""

    def test_alerts_and_custom_rule_after_sync(self) -> None:
        """The sshd event gives rule 5710 in worker1's alerts.json; a rule added on the master
        fires on the worker after the next sync, with no restart."""
        cluster = self.make_cluster(["worker1"])
        self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Successfully connected")
        events = cluster.base / "events.txt"
        events.write_text(EVENTS)
        simulator = self.start_simulator(
            "--home",
            str(cluster.home("worker1").root),
            "--agents",
            "2",
            "--keepalive",
            "1",
            "--events",
            str(events),
            "--eps",
            "4",
        )
        alerts_file = cluster.home("worker1").alerts_dir / "alerts.json"

        def rule_ids() -> set[str]:
            if not alerts_file.exists():
                return set()
            return {
                json.loads(line)["rule"]["id"]
                for line in alerts_file.read_text().splitlines()
                if line.strip()
            }

        self.assertTrue(wait_for(lambda: "5710" in rule_ids(), DEADLINE), rule_ids())
        self.assertNotIn("100100", rule_ids())
        pid = worker.process.pid  # type: ignore[union-attr]
        (cluster.home("master").etc / "rules" / "local_rules.xml").write_text(CUSTOM_RULE)
        self.assertTrue(wait_for(lambda: "100100" in rule_ids(), DEADLINE), rule_ids())
        self.assertEqual(worker.process.pid, pid)  # type: ignore[union-attr]
        self.assertTrue(worker.running())
        [alert] = [
            json.loads(line) for line in alerts_file.read_text().splitlines() if '"100100"' in line
        ][:1]
        self.assertEqual(alert["rule"]["description"], "Custom marker seen")
        self.assertEqual(alert["cluster"]["node"], "worker1")
        asked = control(cluster.home("worker1").root, "-i", "more", "--json")
        analysis = json.loads(asked.stdout)["analysis"]
        self.assertEqual(analysis["node"], "worker1")
        self.assertGreater(analysis["processed"], 0)
        self.assertEqual(len(analysis["processes"]), analysis["workers"])
        simulator.send_signal(signal.SIGINT)
        simulator.communicate(timeout=DEADLINE)

    def test_module_queues_through_a_real_channel(self) -> None:
        """FIM (queue 8) and SCA (queue p) messages from simulated agents alert on the worker
        with the default ruleset (554, 19007) in Wazuh's shapes; the SCA check alerts once
        per agent although it is sent again and again (its result never changes)."""
        cluster = self.make_cluster(["worker1"])
        self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Successfully connected")
        fim = {
            "type": "event",
            "data": {
                "path": "/etc/ssh/sshd_config",
                "mode": "realtime",
                "type": "added",
                "attributes": {"type": "file", "size": 3312, "perm": "rw-r--r--"},
            },
        }
        check = {
            "type": "check",
            "id": 1402771825,
            "policy": "Demo policy",
            "policy_id": "demo",
            "check": {"id": 28612, "title": "Root login is off.", "result": "failed"},
        }
        events = cluster.base / "module-events.txt"
        events.write_text(f"8:syscheck:{json.dumps(fim)}\np:sca:{json.dumps(check)}\n")
        simulator = self.start_simulator(
            "--home",
            str(cluster.home("worker1").root),
            "--agents",
            "2",
            "--keepalive",
            "1",
            "--events",
            str(events),
            "--eps",
            "8",
        )
        alerts_file = cluster.home("worker1").alerts_dir / "alerts.json"

        def alerts() -> list[dict]:
            if not alerts_file.exists():
                return []
            return [json.loads(line) for line in alerts_file.read_text().splitlines() if line]

        def fim_count() -> int:
            return sum(1 for alert in alerts() if alert["rule"]["id"] == "554")

        # Several rounds of both messages from both agents.
        self.assertTrue(wait_for(lambda: fim_count() >= 6, DEADLINE), alerts())
        found = alerts()
        fim_alert = next(alert for alert in found if alert["rule"]["id"] == "554")
        self.assertEqual(fim_alert["syscheck"]["path"], "/etc/ssh/sshd_config")
        self.assertEqual(fim_alert["location"], "syscheck")
        sca = [alert for alert in found if alert["rule"]["id"] == "19007"]
        self.assertEqual(len({alert["agent"]["id"] for alert in sca}), len(sca), sca)
        self.assertGreaterEqual(len(sca), 1)
        self.assertEqual(sca[0]["data"]["sca"]["check"]["title"], "Root login is off.")
        simulator.send_signal(signal.SIGINT)
        simulator.communicate(timeout=DEADLINE)

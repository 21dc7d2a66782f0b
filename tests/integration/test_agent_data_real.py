"""An agent's FIM (entries and last scan), SCA and inventory asked of a real master while
the agent reports to a real worker: the master asks the worker over the cluster link
(``wazuh-cluster-control --agent-data``, answered by the same code as the REST API's
``/syscheck``, ``/sca``, ``/syscollector`` endpoints)."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.integration.common import DEADLINE, ClusterTestCase, control
from wazuhcluster.testing.devcluster import wait_for

FIM = {
    "type": "event",
    "data": {
        "path": "/etc/ssh/sshd_config",
        "mode": "realtime",
        "type": "added",
        "timestamp": 1718022911,
        "attributes": {"type": "file", "size": 3312, "perm": "rw-r--r--", "checksum": "c" * 40},
    },
}
CHECK = {
    "type": "check",
    "id": 1402771825,
    "policy": "Demo policy",
    "policy_id": "demo",
    "check": {"id": 28612, "title": "Root login is off.", "result": "failed"},
}
USER = {
    "type": "dbsync_users",
    "operation": "INSERTED",
    "data": {"user_name": "alice", "user_id": 1000, "user_home": "/home/alice"},
}
SCAN_START = {"type": "scan_start", "data": {"timestamp": 1718020000}}
SCAN_END = {"type": "scan_end", "data": {"timestamp": 1718020100}}
PACKAGE = {
    "type": "dbsync_packages",
    "operation": "INSERTED",
    "data": {"name": "openssh-server", "version": "1:8.9p1", "item_id": "p1", "checksum": "x"},
}


class AgentDataTests(ClusterTestCase):
    """Simulated agents on worker1; questions on the master (and relayed from worker1)."""

    def test_master_answers_for_an_agent_on_a_worker(self) -> None:
        """Once the master knows the agent reports to worker1, --agent-data on the master
        (and on worker1, relayed to the master) returns worker1's FIM entry, SCA check and
        package; the state is in worker1's var/db/agents, not the master's."""
        cluster = self.make_cluster(["worker1"])
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Successfully connected")
        events = cluster.base / "module-events.txt"
        events.write_text(
            f"8:syscheck:{json.dumps(SCAN_START)}\n8:syscheck:{json.dumps(FIM)}\n"
            f"8:syscheck:{json.dumps(SCAN_END)}\np:sca:{json.dumps(CHECK)}\n"
            f"d:syscollector:{json.dumps(USER)}\nd:syscollector:{json.dumps(PACKAGE)}\n"
        )
        simulator = self.start_simulator(
            "--home",
            str(cluster.home("worker1").root),
            "--agents",
            "1",
            "--keepalive",
            "1",
            "--events",
            str(events),
            "--eps",
            "6",
        )
        master_home = cluster.home("master").root

        def agent_on_worker() -> str | None:
            asked = control(master_home, "-a", "--json")
            if asked.returncode != 0:
                return None
            for agent in json.loads(asked.stdout):
                if agent["id"] != "000" and agent["node_name"] == "worker1":
                    return str(agent["id"])
            return None

        self.assertTrue(
            wait_for(lambda: agent_on_worker() is not None, DEADLINE), master.log_text()[-2000:]
        )
        agent_id = agent_on_worker()
        assert agent_id is not None

        def ask(home: Any, kind: str, *extra: str) -> list[dict[str, Any]]:
            asked = control(home, "--agent-data", agent_id, kind, "--json", *extra)
            if asked.returncode != 0:
                return []
            found: list[dict[str, Any]] = json.loads(asked.stdout)
            return found

        self.assertTrue(
            wait_for(lambda: bool(ask(master_home, "syscollector/packages")), DEADLINE),
            master.log_text()[-2000:],
        )
        [entry] = ask(master_home, "syscheck")
        self.assertEqual(entry["file"], "/etc/ssh/sshd_config")
        self.assertEqual(entry["size"], 3312)
        [check] = ask(master_home, "sca_checks", "--policy", "demo")
        self.assertEqual((check["id"], check["result"]), (28612, "failed"))
        [package] = ask(master_home, "syscollector/packages")
        self.assertEqual(package["name"], "openssh-server")
        [user] = ask(master_home, "syscollector/users")
        self.assertEqual(user["user"], {"name": "alice", "id": 1000, "home": "/home/alice"})
        [scan] = ask(master_home, "syscheck_last_scan")
        self.assertEqual(scan, {"start": "2024-06-10T11:46:40Z", "end": "2024-06-10T11:48:20Z"})
        [relayed] = ask(cluster.home("worker1").root, "syscheck")
        self.assertEqual(relayed["file"], "/etc/ssh/sshd_config")
        self.assertTrue((cluster.home("worker1").agents_state / f"{agent_id}.db").exists())
        self.assertFalse((cluster.home("master").agents_state / f"{agent_id}.db").exists())
        refused = control(master_home, "--agent-data", "999", "syscheck")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("does not exist", refused.stdout + refused.stderr)
        simulator.send_signal(signal.SIGINT)
        simulator.communicate(timeout=DEADLINE)

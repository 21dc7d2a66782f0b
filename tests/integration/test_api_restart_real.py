"""A real cluster restarted through the API: ``PUT /cluster/restart`` on a master and a
worker (``twistd -n``), each node stops cleanly and starts again in the same process (same
pid, the same command line), the worker links up again and the API answers again.
A configuration written through ``PUT /manager/configuration`` is used from that restart.
Under the SysV init script (twistd daemonized) ``PUT /manager/restart`` gives a new pid in the
same pidfile.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from typing import Any

from tests.helpers import short_temp_dir
from tests.integration.common import DEADLINE, ClusterTestCase
from tests.integration.test_init_script import NodeUnderTest, process_alive
from tests.test_api_fixtures import cheap_users
from wazuhcluster.config.api_settings import api_dir
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

USER, PASSWORD = "ops", "integration-password"
#: The master's line when its cluster port is open (once per start).
MASTER_UP = "listening on 127.0.0.1:"
#: The worker's line when it has linked to the master (once per link).
WORKER_UP = "Successfully connected"


class ApiClient:
    """The master's API over HTTPS, as the ``ops`` user."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.token = ""

    def call(
        self, method: str, path: str, body: bytes | None = None, auth: str = ""
    ) -> tuple[int, Any]:
        """One HTTPS request to the master's API (its self-signed certificate accepted);
        (0, None) while it cannot be reached."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=30)
        headers = {"authorization": auth or f"Bearer {self.token}"}
        if body is not None:
            headers["content-type"] = "application/octet-stream"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        except OSError:
            return 0, None
        finally:
            conn.close()

    def log_in(self) -> bool:
        """Get a token; False while the API does not answer."""
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        status, answer = self.call("POST", "/security/user/authenticate", auth=f"Basic {basic}")
        if status != 200:
            return False
        self.token = answer["data"]["token"]
        return True


class ApiRestartTests(ClusterTestCase):
    """PUT /manager/configuration then PUT /cluster/restart, end to end."""

    def count(self, node: NodeProcess, text: str) -> int:
        """How often ``text`` appears in the node's cluster.log."""
        return node.log_text().count(text)

    def test_cluster_restart_through_the_api(self) -> None:
        """Both nodes restart in place and come back; the new configuration is in use."""
        cluster = LocalCluster(short_temp_dir(self), workers=["worker1"], with_api=True)
        cluster.write()
        master_home = cluster.home("master")
        users = api_dir(master_home) / "users.json"
        users.parent.mkdir(parents=True, exist_ok=True)
        cheap_users(users, {USER: PASSWORD})
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, WORKER_UP)
        api = ApiClient(cluster.node_ports("master")["api"])
        self.assertTrue(wait_for(api.log_in, DEADLINE, 0.5), "the API did not answer")
        assert master.process is not None and worker.process is not None
        pids = (master.process.pid, worker.process.pid)

        # A refused file changes nothing; a good one is written and used from the restart.
        source = master_home.config_file
        before = source.read_bytes()
        status, refused = api.call("PUT", "/manager/configuration", b"<wazuh_config>")
        self.assertEqual((status, refused["error"]), (200, 1), refused)
        self.assertEqual(source.read_bytes(), before)
        marker = b"<!-- written through the API -->"
        status, done = api.call(
            "PUT",
            "/manager/configuration",
            before.replace(b"</wazuh_config>", marker + b"\n</wazuh_config>"),
        )
        self.assertEqual((status, done["error"]), (200, 0), done)
        worker_source = cluster.home("worker1").config_file
        worker_before = worker_source.read_bytes()
        status, refused = api.call("PUT", "/cluster/worker1/configuration", b"<wazuh_config/>")
        self.assertEqual((status, refused["error"]), (200, 1), refused)
        self.assertEqual(worker_source.read_bytes(), worker_before)
        worker_new = worker_before.replace(b"</wazuh_config>", marker + b"\n</wazuh_config>")
        status, done = api.call("PUT", "/cluster/worker1/configuration", worker_new)
        self.assertEqual((status, done["data"]["affected_items"]), (200, ["worker1"]), done)
        self.assertEqual(worker_source.read_bytes(), worker_new)

        status, answer = api.call("PUT", "/cluster/restart")
        self.assertEqual(status, 202, answer)
        self.assertEqual(sorted(answer["data"]["affected_items"]), ["master", "worker1"])

        def back() -> bool:
            return (
                self.count(master, MASTER_UP) >= 2
                and self.count(worker, WORKER_UP) >= 2
                and api.log_in()
            )

        self.assertTrue(
            wait_for(back, 3 * DEADLINE, 0.5),
            f"not back:\n{master.log_text()[-2000:]}\n{worker.log_text()[-2000:]}",
        )
        self.assertEqual((master.process.pid, worker.process.pid), pids)
        self.assertIsNone(master.died())
        self.assertIsNone(worker.died())
        self.assertIn("Restart requested", master.log_text())
        status, raw = api.call("GET", "/cluster/worker1/status")
        self.assertEqual(status, 200, raw)
        self.assertIn(marker, source.read_bytes())


class InitScriptRestartTests(NodeUnderTest):
    """PUT /manager/restart on a master the SysV init script daemonized."""

    def setUp(self) -> None:
        """A standalone master home that serves the API, run through etc/init.d."""
        base = short_temp_dir(self)
        self.cluster = LocalCluster(base, workers=[], with_api=True)
        self.cluster.write()
        self.home = self.cluster.home("master")
        users = api_dir(self.home) / "users.json"
        users.parent.mkdir(parents=True, exist_ok=True)
        cheap_users(users, {USER: PASSWORD})
        self.defaults = base / "default"
        self.pidfile = self.home.var_run / "wazuhcluster.pid"
        self.twistd_log = self.home.logs / "twistd.log"
        self.write_defaults()
        self.pids: set[int] = set()
        self.addCleanup(self.kill_leftovers)

    def test_restart_through_the_api_under_the_init_script(self) -> None:
        """The daemon restarts itself: a new pid in the same pidfile, the init script's
        status sees it running, the API answers again, and stop ends it."""
        self.assert_action("start", 0)
        pid = self.running_pid()
        api = ApiClient(self.cluster.node_ports("master")["api"])
        self.assertTrue(wait_for(api.log_in, DEADLINE, 0.5), "the API did not answer")
        status, answer = api.call("PUT", "/manager/restart")
        self.assertEqual((status, answer["data"]["affected_items"]), (202, ["master"]), answer)

        def restarted() -> bool:
            new = self.read_pid()
            if new is None or new == pid or not process_alive(new):
                return False
            self.pids.add(new)
            return api.log_in()

        self.assertTrue(
            wait_for(restarted, 3 * DEADLINE, 0.5),
            f"not back: pid {self.read_pid()}\n{self.twistd_log.read_text(errors='replace')}",
        )
        self.assertFalse(process_alive(pid), f"old pid {pid} still running")
        self.assert_action("status", 0)
        self.assert_stopped(self.running_pid())

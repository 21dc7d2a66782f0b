"""The control socket protocol, the CLI's table, the twistd options and the plugin."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

from twisted.application.service import IServiceCollection
from twisted.plugin import IPlugin, getPlugins
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import InMemoryCluster, short_temp_dir, write_config
from wazuhcluster import WAZUH_VERSION, __version__
from wazuhcluster.control import commands
from wazuhcluster.control.server import ControlProtocol
from wazuhcluster.scripts.control import format_agents, format_analysis, format_nodes
from wazuhcluster.tap import Options, build_service
from wazuhcluster.testing.devcluster import LocalCluster
from wazuhcluster.worker.node import WorkerNode


class ControlTests(SynchronousTestCase):
    """Control requests answered by the master, relayed by a worker."""

    def ask(self, backend: object, command: type[amp.Command], *pumps: object) -> object:
        """Send ``command`` to a ControlProtocol over iosim; return its result or failure.

        ``pumps`` are flushed too (e.g. the cluster link a worker relays over).
        """
        client, server, pump = connectedServerAndClient(
            lambda: ControlProtocol(backend),  # type: ignore[arg-type]
            amp.AMP,
        )
        outcome: list[object] = []
        client.callRemote(command).addBoth(outcome.append)
        for _ in range(3):
            pump.flush()
            for other in pumps:
                other.flush()  # type: ignore[attr-defined]
        self.assertEqual(len(outcome), 1, "no answer")
        return outcome[0]

    def test_nodes_from_master_and_worker(self) -> None:
        """-l gives the same table on the master and, relayed, on a worker."""
        cluster = InMemoryCluster(self.mktemp())
        link = cluster.add_worker("worker1")
        cluster.connect(link)
        on_master = self.ask(cluster.master, commands.ListNodes)
        worker = WorkerNode(write_config(cluster.base, "worker1", "worker"), link)
        on_worker = self.ask(worker, commands.ListNodes, *cluster.pumps)
        self.assertEqual(on_master, on_worker)
        self.assertEqual([n["name"] for n in on_master["nodes"]], ["master", "worker1"])  # type: ignore[index]
        rows: list[dict[str, str]] = on_master["nodes"]  # type: ignore[index]
        self.assertEqual({row["version"] for row in rows}, {WAZUH_VERSION})
        self.assertEqual({row["wazuhcluster_version"] for row in rows}, {__version__})

    def test_nodes_table(self) -> None:
        """The -l table has Wazuh's header and columns padded to the longest cell plus two."""
        nodes = [
            {"name": "master", "type": "master", "version": "0.1.0", "ip": "10.0.0.1"},
            {"name": "worker-long-name", "type": "worker", "version": "0.1.1", "ip": "10.0.0.2"},
        ]
        self.assertEqual(
            format_nodes(nodes).splitlines(),
            [
                "NAME              TYPE    VERSION  ADDRESS",
                "master            master  0.1.0    10.0.0.1",
                "worker-long-name  worker  0.1.1    10.0.0.2",
            ],
        )

    def test_agents_table(self) -> None:
        """The -a table has Wazuh's columns, unknown values printed as such."""
        agents = [
            {
                "id": "001",
                "name": "web-1",
                "ip": "any",
                "status": "active",
                "version": "Wazuh v4.14.7",
                "node_name": "worker1",
            },
            {
                "id": "002",
                "name": "db",
                "ip": "10.0.0.9",
                "status": "never_connected",
                "version": "unknown",
                "node_name": "unknown",
            },
        ]
        self.assertEqual(
            format_agents(agents).splitlines(),
            [
                "ID   NAME   IP        STATUS           VERSION        NODE NAME",
                "001  web-1  any       active           Wazuh v4.14.7  worker1",
                "002  db     10.0.0.9  never_connected  unknown        unknown",
            ],
        )

    def test_disconnected_worker_says_so(self) -> None:
        """A worker without a master link answers with NotConnected's reason."""
        cluster = InMemoryCluster(self.mktemp())
        link = cluster.add_worker("worker1")
        worker = WorkerNode(write_config(cluster.base, "worker1", "worker"), link)
        failure = self.ask(worker, commands.ListNodes)
        self.assertIsInstance(failure, Failure)
        self.assertIn("not connected to master", failure.getErrorMessage())  # type: ignore[attr-defined]

    def test_analysis_stats(self) -> None:
        """The node's intake numbers cross the socket with its name; without analysis the
        node says so."""
        cluster = InMemoryCluster(self.mktemp())
        failure = self.ask(cluster.master, commands.AnalysisStats)
        self.assertIn("runs no analysis", failure.getErrorMessage())  # type: ignore[attr-defined]

        class Ruleset:
            def intake(self) -> dict[str, object]:
                return {"received": 7}

        cluster.master.ruleset = Ruleset()  # type: ignore[assignment]
        answer = self.ask(cluster.master, commands.AnalysisStats)
        self.assertEqual(answer, {"stats": {"node": "master", "received": 7}})

    def test_analysis_text(self) -> None:
        """-i more prints the counters, the queue, the EPS windows and each process."""
        stats = {
            "node": "worker1",
            "received": 120,
            "decoded": 99,
            "processed": 100,
            "failed": 1,
            "dropped": 20,
            "lost": 0,
            "alerts_written": 40,
            "queue_length": 0,
            "queue_size": 131072,
            "eps_10s": 10.0,
            "eps_1m": 1.7,
            "received_eps_10s": 12.0,
            "received_eps_1m": 2.0,
            "eps_limit": {"maximum": 500, "timeframe": 10, "held_back": 3},
            "dropped_by_agent": {"002": 20},
            "outputs": {
                "cluster.log": {"failure": None, "lost": 0},
                "alerts.json": {"failure": "[Errno 28] No space left on device", "lost": 7},
            },
            "processes": [
                {
                    "lane": 0,
                    "pid": 321,
                    "running": True,
                    "queued": 0,
                    "in_flight": 0,
                    "processed": 100,
                    "alerts": 40,
                    "failed": 1,
                    "lost": 0,
                    "restarts": 1,
                    "eps_10s": 10.0,
                    "eps_1m": 1.7,
                }
            ],
        }
        text = format_analysis(stats)
        self.assertIn("received 120 | decoded 99 | processed 100 | failed 1 | dropped 20", text)
        self.assertIn("Queue: 0 of 131072.", text)
        self.assertIn("EPS limit: 500 per second over 10 s (held back 3 times).", text)
        self.assertIn("Dropped by agent (top 10): 002: 20.", text)
        self.assertIn("0 (pid 321): running | processed 100 | alerts 40", text)
        self.assertIn("restarts 1.", text)
        self.assertIn(
            "Outputs: cluster.log written; alerts.json CANNOT be written "
            "([Errno 28] No space left on device), 7 lines dropped.",
            text,
        )


class OptionsTests(SynchronousTestCase):
    """twistd's command line: checks before the reactor starts."""

    def setUp(self) -> None:
        self.local = LocalCluster(short_temp_dir(self), workers=["worker1"])
        self.local.write()

    def parse(self, *argv: str) -> tuple[int | None, str]:
        """Parse ``argv``; return the exit code (None if parsing succeeded) and the output."""
        options = Options()
        out = io.StringIO()
        try:
            with redirect_stdout(out), redirect_stderr(out):
                options.parseOptions(list(argv))
        except SystemExit as stop:
            return int(stop.code or 0), out.getvalue()
        self.options = options
        return None, out.getvalue()

    def test_test_config_ok(self) -> None:
        """--test-config prints a verdict and exits 0 for a good config."""
        code, out = self.parse("--home", str(self.local.home("master").root), "--test-config")
        self.assertEqual(code, 0)
        self.assertIn("OK (master master of wazuh)", out)

    def test_role_mismatch_exits_1(self) -> None:
        """--role worker on a master's config is one error line and exit 1."""
        code, out = self.parse("--home", str(self.local.home("master").root), "--role", "worker")
        self.assertEqual(code, 1)
        self.assertEqual(len(out.strip().splitlines()), 1)
        self.assertIn("--role says 'worker'", out)

    def test_missing_certificate_exits_1(self) -> None:
        """A node without its certificate cannot start."""
        home = self.local.home("worker1")
        (home.certs / "node.pem").unlink()
        code, out = self.parse("--home", str(home.root))
        self.assertEqual(code, 1)
        self.assertIn("node certificate", out)

    def test_service_tree(self) -> None:
        """makeService builds the log service and the role's services."""
        code, _ = self.parse("--home", str(self.local.home("master").root), "--role", "master")
        self.assertIsNone(code)
        from twisted.internet.testing import MemoryReactorClock

        top = build_service(self.options.node_config, MemoryReactorClock())
        from wazuhcluster.master.node import MasterService
        from wazuhcluster.util.signals import SignalHandlers

        kinds = [type(child) for child in top]
        self.assertIn(SignalHandlers, kinds)
        [master] = [child for child in top if isinstance(child, MasterService)]
        self.assertTrue(IServiceCollection.providedBy(master))
        names = {child.name for child in master}  # type: ignore[attr-defined]
        self.assertTrue({"cluster-listener", "keep-alive reaper", "control-socket"} <= names)


class PluginTests(SynchronousTestCase):
    """twistd finds the plugin."""

    def test_plugin_discovered(self) -> None:
        """getPlugins lists a service maker called wazuhcluster pointing at wazuhcluster.tap."""
        makers = [p for p in getPlugins(IPlugin) if getattr(p, "tapname", None) == "wazuhcluster"]
        self.assertEqual(len(makers), 1)
        self.assertEqual(makers[0].module, "wazuhcluster.tap")

"""Asking about an agent's stored data: the reader's Wazuh shapes, the answer computed where
the data is, the master asking the worker the agent reports to over the cluster link
(bounded in time), and the REST API endpoints over it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import InMemoryCluster, short_temp_dir, write_config
from tests.test_api_fixtures import ApiHarness, WorkerStandIn
from wazuhcluster.analysis.state_reader import read_items
from wazuhcluster.analysis.state_store import SqliteState
from wazuhcluster.api.agent_data import AgentDataUnavailable, answer_locally, listing_to_json
from wazuhcluster.api.query import Listing
from wazuhcluster.config.sections import load_sections
from wazuhcluster.master.agent_data import CONTROL_PAGE_BYTES, MasterAgentData
from wazuhcluster.master.workers import WorkerDirectory, WorkerLink
from wazuhcluster.node.builder import NodeServices
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire.agent_data import MAX_ANSWER_BYTES
from wazuhcluster.wire.commands import ControlError
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.worker import agent_data as worker_agent_data
from wazuhcluster.worker import agents as worker_agents
from wazuhcluster.worker.agent_data import WorkerAgentData, encoded_answer
from wazuhcluster.worker.link import MasterLink


def fill(directory: Path, agent_id: str = "001", packages: int = 3) -> None:
    """Store FIM, SCA, rootcheck and inventory data of ``agent_id`` in ``directory``."""
    state = SqliteState(directory)
    state.fim_save(
        agent_id,
        "/etc/passwd",
        {
            "path": "/etc/passwd",
            "timestamp": 1718022911,
            "attributes": {
                "type": "file",
                "size": 1024,
                "perm": "rw-r--r--",
                "uid": "0",
                "user_name": "root",
                "inode": "42",
                "mtime": 1718022900,
                "hash_md5": "a" * 32,
            },
        },
    )
    check = {
        "type": "check",
        "id": 5,
        "policy_id": "pol",
        "check": {
            "id": 100,
            "title": "Ensure something",
            "result": "failed",
            "compliance": {"cis": "1.1"},
            "rules": ["f:/etc/passwd"],
        },
    }
    state.sca_save_check(agent_id, "100", "failed", check)
    state.sca_save_scan(
        agent_id,
        "pol",
        {"name": "Policy", "passed": 1, "failed": 1, "score": 50.0, "start_time": 1718022000},
    )
    state.rootcheck_seen(agent_id, "File '/tmp/x' is owned by root.", 1718022000.0)
    state.rootcheck_seen(agent_id, "Ending rootcheck scan.", 1718022010.0)
    state.inventory_apply(
        agent_id,
        "osinfo",
        "INSERTED",
        {
            "os_name": "Ubuntu",
            "os_major": "22",
            "sysname": "Linux",
            "scan_time": "2024/06/10 12:40:02",
        },
    )
    for number in range(packages):
        state.inventory_apply(
            agent_id,
            "packages",
            "INSERTED",
            {
                "name": f"pkg{number:05d}",
                "version": "1.0",
                "item_id": f"i{number}",
                "groups": "net",
            },
        )
    state.inventory_apply(
        agent_id,
        "network_address",
        "INSERTED",
        {"iface": "eth0", "proto": "ipv4", "address": "10.0.0.5", "item_id": "n1"},
    )
    state.close()


def request(kind: str, agent_id: str = "001", **listing: Any) -> dict[str, Any]:
    """An agent-data request."""
    return {"agent_id": agent_id, "kind": kind, "listing": listing_to_json(Listing(**listing))}


class ReaderTests(SynchronousTestCase):
    """The items in Wazuh's shapes, and the query applied where the data is."""

    def setUp(self) -> None:
        """One agent's data in a temporary directory."""
        self.directory = Path(self.mktemp())
        fill(self.directory)

    def test_shapes(self) -> None:
        """FIM, SCA, rootcheck and inventory items look like Wazuh's API's."""
        [entry] = read_items(self.directory, "001", "syscheck")
        self.assertEqual(entry["file"], "/etc/passwd")
        self.assertEqual(entry["size"], 1024)
        self.assertEqual(entry["inode"], 42)
        self.assertEqual(entry["uname"], "root")
        self.assertEqual(entry["date"], "2024-06-10T12:35:11Z")
        self.assertEqual(entry["changes"], 1)
        [policy] = read_items(self.directory, "001", "sca")
        self.assertEqual(
            (policy["policy_id"], policy["name"], policy["score"]), ("pol", "Policy", 50)
        )
        [check] = read_items(self.directory, "001", "sca_checks", "pol")
        self.assertEqual(check["id"], 100)
        self.assertEqual(check["result"], "failed")
        self.assertEqual(check["compliance"], [{"key": "cis", "value": "1.1"}])
        self.assertEqual(check["rules"], [{"type": "file", "rule": "f:/etc/passwd"}])
        [finding] = read_items(self.directory, "001", "rootcheck")
        self.assertEqual(finding["status"], "outstanding")
        self.assertEqual(finding["log"], "File '/tmp/x' is owned by root.")
        [os_item] = read_items(self.directory, "001", "syscollector/os")
        self.assertEqual(os_item["os"], {"name": "Ubuntu", "major": "22"})
        self.assertEqual(os_item["scan"]["time"], "2024-06-10T12:40:02Z")
        self.assertEqual(os_item["agent_id"], "001")
        packages = read_items(self.directory, "001", "syscollector/packages")
        self.assertEqual(packages[0]["section"], "net")
        self.assertEqual(read_items(self.directory, "009", "syscheck"), [])

    def test_listing_and_filters(self) -> None:
        """Sort, offset, limit, select, q and equality filters are applied on the node."""
        answer = answer_locally(
            self.directory,
            request(
                "syscollector/packages", sort=(("name", True),), limit=1, offset=1, select=("name",)
            ),
        )
        self.assertEqual(answer["total"], 3)
        self.assertEqual(answer["items"], [{"name": "pkg00001"}])
        answer = answer_locally(self.directory, request("syscollector/packages", q="name=pkg00002"))
        self.assertEqual([item["name"] for item in answer["items"]], ["pkg00002"])
        filtered = dict(request("syscollector/netaddr"), filters={"proto": "ipv6"})
        self.assertEqual(answer_locally(self.directory, filtered)["total"], 0)
        bad = answer_locally(self.directory, request("syscheck", sort=(("nope", False),)))
        self.assertEqual(bad["error"]["code"], 1403)
        self.assertIn("error", answer_locally(self.directory, request("nonsense")))

    def test_answer_too_big_is_an_error(self) -> None:
        """A page bigger than the link carries is refused with a hint, not sent."""
        directory = Path(self.mktemp())
        fill(directory, packages=3)
        answer = json.loads(encoded_answer(directory, request("syscollector/packages")))
        self.assertEqual(answer["total"], 3)
        self.patch(worker_agent_data, "MAX_ANSWER_BYTES", 100)
        answer = json.loads(encoded_answer(directory, request("syscollector/packages")))
        self.assertIn("limit", answer["error"]["detail"])
        self.assertGreater(MAX_ANSWER_BYTES, 1 << 20)


class ClusterTests(SynchronousTestCase):
    """The master asks the worker over an in-memory cluster link."""

    def setUp(self) -> None:
        """A master and worker w1 whose state holds agent 001's data (many packages, so
        the answer spans several AMP values)."""
        self.cluster = InMemoryCluster(self.mktemp())
        link = self.cluster.add_worker(
            "w1", features=lambda link, home: [WorkerAgentData(home.agents_state, run_inline)]
        )
        self.cluster.connect(link)
        self.cluster.settle()
        self.addCleanup(link.stopService)
        fill(self.cluster.worker_home("w1").agents_state, packages=2000)
        master = self.cluster.master
        self.asker = MasterAgentData(
            "master",
            master.workers,
            master.config.home.agents_state,
            self.cluster.reactor,
            run_inline,
        )

    def ask(self, node: str, wanted: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Start a question and move the bytes."""
        asked = Deferred.fromCoroutine(self.asker.ask(node, wanted))
        self.cluster.settle()
        return asked

    def test_worker_answers_over_the_link(self) -> None:
        """Agent 001 reports to w1: the master gets w1's page, above 64 KiB."""
        answer = self.successResultOf(self.ask("w1", request("syscollector/packages", limit=2000)))
        self.assertEqual(answer["total"], 2000)
        self.assertEqual(len(answer["items"]), 2000)
        self.assertGreater(len(json.dumps(answer)), 65536)

    def test_master_answers_its_own_agents(self) -> None:
        """An agent that reports to the master (or never reported) is read locally."""
        fill(self.cluster.master.config.home.agents_state, "002")
        answer = self.successResultOf(self.ask("", request("syscheck", "002")))
        self.assertEqual(answer["total"], 1)

    def test_command_sent_over_the_link(self) -> None:
        """The scan command crosses the link as SendToAgents; the worker's channel says whom
        it reached, and an agent it did not reach fails with 1707."""
        channel = RecordingChannel(("001",))
        link = self.cluster.add_worker(
            "w2",
            features=lambda link, home: [ChannelFeature(channel)],  # type: ignore[arg-type]
        )
        self.cluster.connect(link)
        self.cluster.settle()
        self.addCleanup(link.stopService)
        sending = Deferred.fromCoroutine(
            self.asker.send_command({"w2": ["001", "002"]}, "syscheck restart")
        )
        self.cluster.settle()
        self.assertEqual(self.successResultOf(sending), (["001"], {1707: ["002"]}))
        self.assertEqual(channel.sent, [("001", "#!-syscheck restart")])
        refused = Deferred.fromCoroutine(self.asker.send_command({"w2": ["001"]}, "restart"))
        self.failureResultOf(refused, ValueError)

    def test_unknown_node(self) -> None:
        """A node that is not connected is a clear failure."""
        failure = self.failureResultOf(self.ask("w9", request("syscheck")))
        failure.trap(AgentDataUnavailable)
        self.assertIn("w9 is not connected", str(failure.value))
        self.assertEqual(failure.value.code, 3022)


class MovesTests(SynchronousTestCase):
    """Agents that moved have their old node's state emptied."""

    def test_moved_agent_is_forgotten_on_its_old_node(self) -> None:
        """Agent 001 was on w1 and the master's agent 002 on the master: once they report
        elsewhere, both old copies are emptied (the files stay for their writers); agent 003,
        which did not move, keeps its state."""
        cluster = InMemoryCluster(self.mktemp())
        link = cluster.add_worker(
            "w1", features=lambda link, home: [WorkerAgentData(home.agents_state, run_inline)]
        )
        cluster.connect(link)
        cluster.settle()
        self.addCleanup(link.stopService)
        worker_dir = cluster.worker_home("w1").agents_state
        master_dir = cluster.master.config.home.agents_state
        fill(worker_dir, "001")
        fill(worker_dir, "003")
        fill(master_dir, "002")
        where = {"001": "w1", "002": "master", "003": "w1"}

        async def agent_nodes() -> dict[str, str]:
            return dict(where)

        asker = MasterAgentData(
            "master",
            cluster.master.workers,
            master_dir,
            cluster.reactor,
            run_inline,
            agent_nodes=agent_nodes,
        )
        [task] = asker.services()
        self.assertEqual(task.interval, 60.0)

        def look() -> dict[str, list[str]]:
            looked = Deferred.fromCoroutine(asker.check_moves())
            cluster.settle()
            return self.successResultOf(looked)

        self.assertEqual(look(), {})  # the first look only remembers
        where.update({"001": "w2", "002": "w1"})
        self.assertEqual(look(), {"w1": ["001"], "master": ["002"]})
        self.assertEqual(read_items(worker_dir, "001", "syscheck"), [])
        self.assertTrue((worker_dir / "001.db").exists())
        self.assertEqual(read_items(master_dir, "002", "syscollector/packages"), [])
        self.assertEqual(len(read_items(worker_dir, "003", "syscheck")), 1)
        self.assertEqual(look(), {})


class SilentPeer:
    """A link whose peer never answers."""

    transport = None

    def callRemote(self, command: Any, **arguments: Any) -> Deferred[Any]:  # noqa: N802
        """Never fires (until cancelled)."""
        return Deferred()


class TimeoutTests(SynchronousTestCase):
    """A worker that does not answer in time."""

    def test_timeout(self) -> None:
        """After the timeout the question fails with the node's name."""
        clock = Clock()
        workers = WorkerDirectory()
        workers.add(WorkerLink("w1", "0", "192.0.2.1", SilentPeer(), 0.0, 0.0))  # type: ignore[arg-type]
        asker = MasterAgentData("master", workers, Path(self.mktemp()), clock, run_inline, 5.0)
        asked = Deferred.fromCoroutine(asker.ask("w1", request("syscheck")))
        self.assertNoResult(asked)
        clock.advance(5.0)
        failure = self.failureResultOf(asked)
        self.assertIn("w1 did not answer", str(failure.value))


class ApiTests(SynchronousTestCase):
    """The endpoints with Wazuh's paths and envelopes."""

    def setUp(self) -> None:
        """An API harness whose master answers from its own agent databases."""
        self.api = ApiHarness(self)
        node = self.api.node
        node.agent_data = MasterAgentData(
            "master", node.workers, self.api.home.agents_state, self.api.clock, run_inline
        )
        self.agent = self.api.enroll("web01")
        self.api.report(self.agent, "active", "master")
        fill(self.api.home.agents_state, self.agent)

    def get(self, path: str) -> Any:
        """GET and return the answer."""
        return self.api.call("GET", path)

    def test_endpoints(self) -> None:
        """Each family answers Wazuh's envelope with its items."""
        answer = self.get(f"/syscheck/{self.agent}")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(answer.json["data"]["total_affected_items"], 1)
        self.assertEqual(answer.json["data"]["affected_items"][0]["file"], "/etc/passwd")
        self.assertEqual(answer.json["message"], "All selected syscheck information was returned")
        answer = self.get(f"/sca/{self.agent}")
        self.assertEqual(answer.json["data"]["affected_items"][0]["policy_id"], "pol")
        answer = self.get(f"/sca/{self.agent}/checks/pol?result=failed&select=title")
        self.assertEqual(answer.json["data"]["affected_items"], [{"title": "Ensure something"}])
        answer = self.get(f"/rootcheck/{self.agent}?status=all")
        self.assertEqual(answer.json["data"]["total_affected_items"], 1)
        answer = self.get(f"/rootcheck/{self.agent}?status=solved")
        self.assertEqual(answer.json["data"]["total_affected_items"], 0)
        answer = self.get(f"/syscollector/{self.agent}/os")
        self.assertEqual(answer.json["data"]["affected_items"][0]["os"]["name"], "Ubuntu")
        answer = self.get(f"/syscollector/{self.agent}/packages?limit=2&sort=-name")
        names = [item["name"] for item in answer.json["data"]["affected_items"]]
        self.assertEqual(names, ["pkg00002", "pkg00001"])
        self.assertEqual(answer.json["data"]["total_affected_items"], 3)
        answer = self.get(f"/syscollector/{self.agent}/netaddr?proto=ipv4")
        self.assertEqual(answer.json["data"]["affected_items"][0]["address"], "10.0.0.5")

    def test_errors(self) -> None:
        """An unknown agent is 1701; a bad sort field 1403; a node that is not connected 3022
        (400, as Wazuh turns an unknown node of a forwarded request into its own error)."""
        answer = self.get("/syscheck/099")
        self.assertEqual((answer.status, answer.json["error"]), (404, 1701))
        answer = self.get(f"/syscheck/{self.agent}?sort=nope")
        self.assertEqual((answer.status, answer.json["error"]), (400, 1403))
        self.api.report(self.agent, "active", "w7")
        answer = self.get(f"/syscheck/{self.agent}")
        self.assertEqual((answer.status, answer.json["error"]), (400, 3022))
        self.assertIn("w7", answer.json["detail"])


class HarnessWorkerTests(SynchronousTestCase):
    """The API harness's master asks the worker an agent reports to, over its link."""

    def test_worker_answers_from_its_own_state(self) -> None:
        """An agent on w1 is answered from w1's state folder, not the master's; a worker
        that does not answer in time is 3020."""
        api = ApiHarness(self)
        link = api.connect_worker("w1")
        worker = link.protocol
        assert isinstance(worker, WorkerStandIn)
        agent = api.enroll("web01")
        api.report(agent, "active", "w1")
        fill(worker.config.home.agents_state, agent)
        answer = api.call("GET", f"/syscheck/{agent}")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(answer.json["data"]["affected_items"][0]["file"], "/etc/passwd")
        self.assertEqual(worker.asked, ["GetAgentData"])
        worker.answering = False
        asked = Deferred.fromCoroutine(
            api.node.agent_data.ask("w1", request("syscheck", agent))  # type: ignore[union-attr]
        )
        api.clock.advance(30.0)
        self.assertEqual(self.failureResultOf(asked, AgentDataUnavailable).value.code, 3020)


class ControlPageTests(SynchronousTestCase):
    """``wazuh-cluster-control --agent-data`` pages, trimmed for the control socket."""

    def setUp(self) -> None:
        """Agent 001 reports to the master and has many packages."""
        self.directory = Path(self.mktemp())
        fill(self.directory, packages=600)

        async def locate(agent_id: str) -> str | None:
            return "" if agent_id == "001" else None

        self.asker = MasterAgentData(
            "master", WorkerDirectory(), self.directory, Clock(), run_inline, locate=locate
        )

    def page(self, **arguments: Any) -> Any:
        """One control page (or its failure)."""
        return Deferred.fromCoroutine(self.asker.control_page(arguments))

    def test_pages_fit_a_control_answer(self) -> None:
        """A page never exceeds what one control answer carries; the total is kept."""
        page = self.successResultOf(
            self.page(agent_id="001", kind="syscollector/packages", limit=500)
        )
        self.assertEqual(page["total"], 600)
        self.assertLessEqual(len(json.dumps(page["items"])), CONTROL_PAGE_BYTES)
        self.assertGreater(len(page["items"]), 0)

    def test_refusals(self) -> None:
        """An unknown agent or kind is a ControlError with the reason."""
        failure = self.failureResultOf(self.page(agent_id="002", kind="syscheck"))
        failure.trap(ControlError)
        self.assertIn("does not exist", str(failure.value))
        failure = self.failureResultOf(self.page(agent_id="001", kind="nope"))
        failure.trap(ControlError)


class RemovedAgentTests(SynchronousTestCase):
    """A node empties the state of agents removed from its keys."""

    def test_removed_agents_are_forgotten(self) -> None:
        """Keys that remove agent 001 empty its database; agent 002's stays."""
        config = write_config(str(short_temp_dir(self)), "master", "master")
        shared = NodeServices(config, load_sections(config), MemoryReactorClock(), "Master")  # type: ignore[arg-type]
        shared.run_in_thread = run_inline
        directory = config.home.agents_state
        fill(directory, "001")
        fill(directory, "002")
        shared.key_rows_changed([], ["001"])
        self.assertEqual(read_items(directory, "001", "syscheck"), [])
        self.assertEqual(len(read_items(directory, "002", "syscheck")), 1)


class ChannelFeature(LinkFeature[MasterLink]):
    """A worker feature answering the master's SendToAgents (and ReconnectAgents) with the
    worker's own responders, over ``channel``."""

    def __init__(self, channel: RecordingChannel) -> None:
        self.channel = channel

    def locator(self, link: MasterLink) -> amp.CommandLocator:
        """The worker's responders of the agent commands."""
        return worker_agents.agent_commands_locator(self)  # type: ignore[arg-type]


class RecordingChannel:
    """An agent channel that reaches the agents in ``connected`` and records what it sent."""

    def __init__(self, connected: tuple[str, ...] = ()) -> None:
        self.connected = connected
        self.sent: list[tuple[str, str]] = []

    def send_message(self, agent_ids: list[str], message: str) -> list[str]:
        """Record ``message`` for the connected ones; the ids reached."""
        reached = [agent for agent in agent_ids if agent in self.connected]
        self.sent.extend((agent, message) for agent in reached)
        return reached


def fill_more(directory: Path, agent_id: str = "001") -> None:
    """Registry FIM entries, scan marks and the 4.x inventory kinds of ``agent_id``."""
    state = SqliteState(directory)
    for path, kind in (
        ("HKEY_LOCAL_MACHINE\\Software\\k", "registry_key"),
        ("HKEY_LOCAL_MACHINE\\Software\\k\\v", "registry_value"),
        ("c:\\windows\\win.ini", "file"),
    ):
        state.fim_save(agent_id, path, {"path": path, "attributes": {"type": kind}})
    state.fim_scan(agent_id, "start_scan", 1718020000.0)
    state.fim_scan(agent_id, "end_scan", 1718020100.0)
    state.rootcheck_seen(agent_id, "Starting rootcheck scan.", 1718021000.0)
    state.rootcheck_seen(agent_id, "Ending rootcheck scan.", 1718021200.0)
    rows = {
        "users": {
            "user_name": "root",
            "user_id": 0,
            "user_home": "/root",
            "user_shell": "/bin/bash",
            "user_password_status": "locked",
            "login_tty": "pts/0",
            "process_pid": 0,
            "host_ip": "10.0.0.9",
            "checksum": "c1",
        },
        "groups": {"group_name": "wheel", "group_id": 10, "group_users": "root", "checksum": "c2"},
        "services": {
            "service_id": "sshd.service",
            "service_name": "OpenSSH",
            "service_state": "active",
            "service_starts_on_mount": 0,
            "process_pid": 812,
            "process_working_dir": "/",
            "file_path": "/usr/lib/systemd/system/sshd.service",
            "log_file_path": "/var/log/sshd.log",
            "item_id": "s1",
        },
        "browser_extensions": {
            "browser_name": "chrome",
            "user_id": "1000",
            "browser_profile_path": "/home/a/.config/google-chrome/Default",
            "package_name": "uBlock",
            "package_version": "1.58",
            "package_enabled": 1,
            "file_hash_sha256": "f" * 64,
            "item_id": "b1",
        },
    }
    for table, row in rows.items():
        state.inventory_apply(agent_id, table, "INSERTED", row)
    state.close()


class MoreKindsTests(SynchronousTestCase):
    """Last scans, the 4.x inventory kinds, the FIM type filter and clearing."""

    def setUp(self) -> None:
        """One agent's data in a temporary directory."""
        self.directory = Path(self.mktemp())
        fill(self.directory)
        fill_more(self.directory)

    def test_last_scans(self) -> None:
        """Start and end of the last FIM and rootcheck scans; no end while one runs, nulls
        for an agent with nothing stored."""
        found = read_items(self.directory, "001", "syscheck_last_scan")
        self.assertEqual(found, [{"start": "2024-06-10T11:46:40Z", "end": "2024-06-10T11:48:20Z"}])
        found = read_items(self.directory, "001", "rootcheck_last_scan")
        self.assertEqual(found, [{"start": "2024-06-10T12:03:20Z", "end": "2024-06-10T12:06:40Z"}])
        state = SqliteState(self.directory)
        state.fim_scan("001", "start_scan", 1718030000.0)
        state.rootcheck_seen("001", "Starting rootcheck scan.", 1718030000.0)
        state.close()
        for kind in ("syscheck_last_scan", "rootcheck_last_scan"):
            found = read_items(self.directory, "001", kind)
            self.assertEqual(found, [{"start": "2024-06-10T14:33:20Z", "end": None}], kind)
            self.assertEqual(
                read_items(self.directory, "002", kind), [{"start": None, "end": None}]
            )

    def test_inventory_kinds_in_wazuh_shapes(self) -> None:
        """users, groups, services and browser extensions nest their columns as Wazuh's API."""
        users = read_items(self.directory, "001", "syscollector/users")
        self.assertEqual(
            users[0]["user"],
            {
                "name": "root",
                "id": 0,
                "home": "/root",
                "shell": "/bin/bash",
                "password_status": "locked",
            },
        )
        self.assertEqual(users[0]["login"], {"tty": "pts/0"})
        self.assertEqual((users[0]["host_ip"], users[0]["agent_id"]), ("10.0.0.9", "001"))
        groups = read_items(self.directory, "001", "syscollector/groups")
        self.assertEqual(groups[0]["group"], {"name": "wheel", "id": 10, "users": "root"})
        services = read_items(self.directory, "001", "syscollector/services")[0]
        self.assertEqual(services["service"]["id"], "sshd.service")
        self.assertIs(services["service"]["starts_on_mount"], False)
        self.assertEqual(services["process"], {"pid": 812, "working_directory": "/"})
        self.assertEqual(services["file"], {"path": "/usr/lib/systemd/system/sshd.service"})
        self.assertEqual(services["log_file"], {"path": "/var/log/sshd.log"})
        extension = read_items(self.directory, "001", "syscollector/browser_extensions")[0]
        self.assertEqual(extension["browser"]["name"], "chrome")
        self.assertEqual(extension["package"]["name"], "uBlock")
        self.assertIs(extension["package"]["enabled"], True)
        self.assertEqual(extension["file_hash"], {"sha256": "f" * 64})

    def test_fim_type_filter_tells_registry_keys_values_and_files_apart(self) -> None:
        """``type`` is the stored kind: file, registry_key or registry_value."""
        for kind, count in (("registry_key", 1), ("registry_value", 1), ("file", 2)):
            answer = answer_locally(
                self.directory, {**request("syscheck"), "filters": {"type": kind}}
            )
            self.assertEqual(answer["total"], count, kind)
            self.assertEqual({item["type"] for item in answer["items"]}, {kind})

    def test_clear(self) -> None:
        """A clear empties one kind of state where it is kept and nothing else."""
        answer = answer_locally(
            self.directory, {"agent_id": "001", "kind": "syscheck", "clear": True}
        )
        self.assertEqual(answer, {"items": ["001"], "total": 1})
        self.assertEqual(read_items(self.directory, "001", "syscheck"), [])
        last = read_items(self.directory, "001", "syscheck_last_scan")
        self.assertEqual(last, [{"start": None, "end": None}])
        self.assertEqual(len(read_items(self.directory, "001", "rootcheck")), 1)
        answer_locally(self.directory, {"agent_id": "001", "kind": "rootcheck", "clear": True})
        self.assertEqual(read_items(self.directory, "001", "rootcheck"), [])
        self.assertEqual(len(read_items(self.directory, "001", "syscollector/users")), 1)
        refused = answer_locally(self.directory, {"agent_id": "001", "kind": "sca", "clear": True})
        self.assertEqual(refused["error"]["code"], 1000)


class ScanAndClearApiTests(SynchronousTestCase):
    """PUT /syscheck, PUT /rootcheck, DELETE and last_scan over the API harness."""

    def setUp(self) -> None:
        """An active agent on the master (connected there), an active one on w1, one that
        is disconnected."""
        self.api = ApiHarness(self)
        self.worker = self.api.connect_worker("w1").protocol
        assert isinstance(self.worker, WorkerStandIn)
        self.local = self.api.enroll("local01")
        self.remote = self.api.enroll("remote01")
        self.gone = self.api.enroll("gone01")
        self.api.report(self.local, "active", "master")
        self.api.report(self.remote, "active", "w1")
        self.api.report(self.gone, "disconnected", "master")
        self.channel = RecordingChannel((self.local,))
        assert self.api.node.agent_data is not None
        self.api.node.agent_data.local_channel = self.channel  # type: ignore[assignment]
        fill(self.api.home.agents_state, self.local)
        fill_more(self.api.home.agents_state, self.local)
        fill(self.worker.config.home.agents_state, self.remote)

    def test_run_scan_reaches_agents_where_they_are(self) -> None:
        """Each active agent is told '#!-syscheck restart' by the node it is connected to;
        unknown, manager and inactive ids fail with Wazuh's codes."""
        ids = ",".join((self.local, self.remote, self.gone, "099", "000"))
        answer = self.api.call("PUT", f"/syscheck?agents_list={ids}")
        self.assertEqual(answer.status, 200, answer.raw)
        data = answer.json["data"]
        self.assertEqual(data["affected_items"], [self.local, self.remote])
        failed = {item["error"]["code"]: item["id"] for item in data["failed_items"]}
        self.assertEqual(failed, {1701: ["099"], 1703: ["000"], 1707: [self.gone]})
        self.assertEqual(answer.json["message"], "Syscheck scan was not restarted on some agents")
        self.assertEqual(self.channel.sent, [(self.local, "#!-syscheck restart")])
        self.assertEqual(self.worker.told, [(self.remote, "#!-syscheck restart")])
        answer = self.api.call("PUT", "/rootcheck")
        self.assertEqual(answer.json["data"]["affected_items"], [self.local, self.remote])
        self.assertEqual(answer.json["message"], "Rootcheck scan was restarted on returned agents")
        self.worker.answering = False
        asker = self.api.node.agent_data
        assert asker is not None
        sending = Deferred.fromCoroutine(
            asker.send_command({"w1": [self.remote]}, "syscheck restart")
        )
        self.api.clock.advance(30.0)
        self.assertEqual(self.successResultOf(sending), ([], {3020: [self.remote]}))

    def test_agent_not_connected_where_it_reports(self) -> None:
        """An agent the registry says is active but that has no connection there: 1707."""
        self.channel.connected = ()
        answer = self.api.call("PUT", f"/syscheck?agents_list={self.local}")
        self.assertEqual(answer.json["data"]["failed_items"][0]["error"]["code"], 1707)
        self.assertEqual(answer.json["error"], 1)

    def test_last_scan_and_clear(self) -> None:
        """last_scan answers the stored dates; DELETE empties the state where it is kept."""
        answer = self.api.call("GET", f"/syscheck/{self.local}/last_scan")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(
            answer.json["data"]["affected_items"],
            [{"start": "2024-06-10T11:46:40Z", "end": "2024-06-10T11:48:20Z"}],
        )
        self.assertEqual(answer.json["message"], "Last syscheck scan of the agent was returned")
        answer = self.api.call("GET", f"/rootcheck/{self.remote}/last_scan")
        self.assertEqual(answer.json["data"]["affected_items"], [{"start": None, "end": None}])
        for module in ("syscheck", "rootcheck"):
            for agent in (self.local, self.remote):
                answer = self.api.call("DELETE", f"/{module}/{agent}")
                self.assertEqual(answer.json["data"]["affected_items"], [agent], answer.raw)
                found = self.api.call("GET", f"/{module}/{agent}")
                self.assertEqual(found.json["data"]["total_affected_items"], 0)
        answer = self.api.call("GET", f"/syscollector/{self.local}/users?select=user.name")
        self.assertEqual(answer.json["data"]["affected_items"], [{"user": {"name": "root"}}])
        answer = self.api.call("DELETE", "/rootcheck/099")
        self.assertEqual(answer.json["data"]["failed_items"][0]["error"]["code"], 1701)
        self.assertEqual(answer.json["message"], "No rootcheck database was cleared")


class ScanAndClearRbacTests(SynchronousTestCase):
    """The scan and clear operations need syscheck:run / :clear (rootcheck:...) on the agent."""

    def test_readonly_reads_last_scan_but_cannot_scan_or_clear(self) -> None:
        """A readonly user gets the dates but 403 (4000) for PUT and DELETE."""
        import base64

        api = ApiHarness(self)
        agent = api.enroll("web01")
        api.report(agent, "active", "master")
        password = "Str0ng-Passw0rd!"
        made = api.call("POST", "/security/users", {"username": "reader", "password": password})
        user_id = made.json["data"]["affected_items"][0]["id"]
        roles = api.call("GET", "/security/roles?search=readonly").json["data"]["affected_items"]
        role_id = next(role["id"] for role in roles if role["name"] == "readonly")
        api.call("POST", f"/security/users/{user_id}/roles?role_ids={role_id}")
        api.clock.advance(1)
        basic = base64.b64encode(f"reader:{password}".encode()).decode()
        login = api.call(
            "POST",
            "/security/user/authenticate",
            headers={"authorization": f"Basic {basic}"},
            token=None,
        )
        token = login.json["data"]["token"]
        for module in ("syscheck", "rootcheck"):
            found = api.call("GET", f"/{module}/{agent}/last_scan", token=token)
            self.assertEqual(found.status, 200, found.raw)
            for method, path in (
                ("PUT", f"/{module}?agents_list={agent}"),
                ("DELETE", f"/{module}/{agent}"),
            ):
                answer = api.call(method, path, token=token)
                self.assertEqual((answer.status, answer.json.get("error")), (403, 4000), path)


class AgentMessagesToApiTests(SynchronousTestCase):
    """The users, groups, services and browser extensions an agent sends, as the API reads
    them: deltas (queue d) and synchronisation rows (queue 5)."""

    def test_deltas_and_state_rows_reach_the_reader(self) -> None:
        """dbsync_users / dbsync_services deltas and syscollector_groups /
        syscollector_browser_extensions state rows are stored per agent and read nested."""
        from tests.analysis_data import make_engine
        from wazuhcluster.analysis.engine import parse_queue_message

        engine = make_engine(self.mktemp())
        directory = Path(self.mktemp())
        state = SqliteState(directory)
        engine.agent_state = state
        prefix = "[007] (web07) any->"
        messages = [
            (
                "d",
                "syscollector",
                {
                    "type": "dbsync_users",
                    "operation": "INSERTED",
                    "data": {"user_name": "alice", "user_id": 1000, "login_tty": "pts/1"},
                },
            ),
            (
                "d",
                "syscollector",
                {
                    "type": "dbsync_services",
                    "operation": "INSERTED",
                    "data": {"service_id": "cron", "service_state": "active", "item_id": "s9"},
                },
            ),
            (
                "5",
                "syscollector",
                {
                    "component": "syscollector_groups",
                    "type": "state",
                    "data": {"index": "staff", "attributes": {"group_name": "staff"}},
                },
            ),
            (
                "5",
                "syscollector",
                {
                    "component": "syscollector_browser_extensions",
                    "type": "state",
                    "data": {
                        "index": "b7",
                        "attributes": {"browser_name": "firefox", "package_visible": 0},
                    },
                },
            ),
        ]
        for queue, location, body in messages:
            line = f"{queue}:{prefix}{location}:{json.dumps(body)}"
            engine.process(parse_queue_message(line, timestamp=1718022911.0))
        state.close()
        users = read_items(directory, "007", "syscollector/users")
        self.assertEqual(users[0]["user"], {"name": "alice", "id": 1000})
        self.assertEqual(users[0]["login"], {"tty": "pts/1"})
        services = read_items(directory, "007", "syscollector/services")
        self.assertEqual(services[0]["service"], {"id": "cron", "state": "active"})
        groups = read_items(directory, "007", "syscollector/groups")
        self.assertEqual(groups[0]["group"], {"name": "staff"})
        extensions = read_items(directory, "007", "syscollector/browser_extensions")
        self.assertEqual(extensions[0]["browser"], {"name": "firefox"})
        self.assertIs(extensions[0]["package"]["visible"], False)

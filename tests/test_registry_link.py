"""Enrollment forwarded by workers, key pushes and relayed management, in memory."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import InMemoryCluster
from wazuhcluster.agents.enrollment import parse_reply, parse_request
from wazuhcluster.config.auth_settings import default_auth
from wazuhcluster.config.home import Home
from wazuhcluster.control.commands import ControlError
from wazuhcluster.master.registry import PUSH_DELAY, MasterRegistry
from wazuhcluster.registry.keys import KeysDelta, KeysFile, read_client_keys
from wazuhcluster.registry.service import AsyncRegistry, synchronous_runner
from wazuhcluster.registry.store import Registry, RegistryFiles
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire import registry as wire
from wazuhcluster.worker.link import MasterLink
from wazuhcluster.worker.node import WorkerNode
from wazuhcluster.worker.registry import WorkerRegistry


class _SyncRegistryService:
    """Stands in for RegistryService: a registry on a temp file, run synchronously."""

    def __init__(self, home: Home) -> None:
        files = RegistryFiles(home.client_keys, home.shared, home.root / "var" / "multigroups")
        self.registry = AsyncRegistry(
            Registry.open(home.var_db / "global.db", files), synchronous_runner
        )


class RegistryLinkTests(SynchronousTestCase):
    """The master decides; workers forward, receive keys and relay management."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())
        home = self.cluster.master_home
        self.master = MasterRegistry(
            home,
            default_auth(home.root),
            self.cluster.master,
            self.cluster.reactor,
            registry_service=_SyncRegistryService(home),
        )
        self.cluster.master.features.add(self.master)
        self.workers: dict[str, WorkerRegistry] = {}
        self.links: dict[str, MasterLink] = {}

    def join(self, name: str, connect: bool = True) -> WorkerRegistry:
        """Add worker ``name`` with its registry feature (connected unless told otherwise)."""

        def features(link: MasterLink, home: Home) -> list[WorkerRegistry]:
            feature = WorkerRegistry(
                home.client_keys,
                default_auth(home.root),
                link,
                self.cluster.reactor,
                run_in_thread=run_inline,
            )
            self.workers[name] = feature
            return [feature]

        self.links[name] = self.cluster.add_worker(name, features=features)
        if connect:
            self.cluster.connect(self.links[name])
        return self.workers[name]

    def enroll_through(self, worker: WorkerRegistry, line: str) -> str:
        """Send an enrollment line through ``worker`` and return the agent's reply (the
        master's key push delivered too)."""
        reply = ensureDeferred(worker.forward(parse_request(line), "10.0.0.5"))
        self.cluster.settle()
        self.deliver_pushes()
        return str(self.successResultOf(reply))

    def deliver_pushes(self) -> None:
        """Let the master's push delay pass and the pushes reach the workers."""
        self.cluster.reactor.advance(PUSH_DELAY)
        self.cluster.settle()

    def keys_of(self, name: str) -> dict[str, str]:
        """name → id in worker ``name``'s client.keys."""
        path = self.cluster.worker_home(name).client_keys
        return {entry.name: entry.id for entry in read_client_keys(path)} if path.exists() else {}

    def test_enrollment_through_worker_reaches_every_worker(self) -> None:
        """An agent enrolled through worker1 is in worker2's client.keys right after."""
        worker1, _ = self.join("worker1"), self.join("worker2")
        reply = self.enroll_through(worker1, "OSSEC A:'web-1' G:'default'")
        entry = parse_reply(reply)
        self.assertEqual((entry.id, entry.name), ("001", "web-1"))
        self.assertEqual(self.keys_of("worker1"), {"web-1": "001"})
        self.assertEqual(self.keys_of("worker2"), {"web-1": "001"})
        master_keys = read_client_keys(self.cluster.master_home.client_keys)
        self.assertEqual([e.key for e in master_keys], [entry.key])

    def test_changes_within_the_delay_share_a_push(self) -> None:
        """Key changes made within the push delay reach a worker together, once the delay
        has passed, as their net effect in pieces that fit AMP values: 450 added and one
        removed (an id added then removed in the same window) give one removal piece and
        three addition pieces."""
        worker1 = self.join("worker1")
        calls: list[tuple[int, list[str]]] = []
        original = worker1.apply_push

        async def counting(added: list[dict[str, str]], removed: list[str]) -> None:
            calls.append((len(added), list(removed)))
            await original(added, removed)

        self.patch(worker1, "apply_push", counting)
        key = "ab" * 32
        entries = [
            {"id": f"{n:03d}", "name": f"agent-{n}", "ip": "any", "key": key} for n in range(1, 452)
        ]
        for entry in entries:
            self.master.push_keys([entry], [])
        self.master.push_keys([], ["451"])
        self.cluster.settle()
        self.assertEqual(calls, [])
        self.deliver_pushes()
        self.assertEqual(calls, [(0, ["451"]), (200, []), (200, []), (50, [])])
        self.assertEqual(len(self.keys_of("worker1")), 450)
        self.assertNotIn("agent-451", self.keys_of("worker1"))

    def test_refusals_are_relayed(self) -> None:
        """The master's refusal reaches the agent unchanged (a duplicate name here: the
        second request asks for another IP, so it is no retry of the first)."""
        worker = self.join("worker1")
        self.enroll_through(worker, "OSSEC A:'web-1'")
        reply = self.enroll_through(worker, "OSSEC A:'web-1' IP:'10.1.1.1'")
        self.assertTrue(reply.startswith("ERROR: "), reply)
        self.assertIn("Duplicate", reply)

    def test_no_master_link(self) -> None:
        """Without a master link the agent is told the master cannot be reached."""
        worker = self.join("worker1", connect=False)
        reply = self.enroll_through(worker, "OSSEC A:'web-1'")
        self.assertEqual(reply, "ERROR: Cannot communicate with master. Unable to add agent")

    def test_relayed_management_and_deletion(self) -> None:
        """A worker's control requests are answered by the master; deletions reach workers."""
        worker = self.join("worker1")
        self.join("worker2")
        for name in ("a1", "a2", "a3"):
            self.enroll_through(worker, f"OSSEC A:'{name}'")
        node = WorkerNode(self.cluster.master.config, self.links["worker1"])  # config unused
        listing = ensureDeferred(node.manage("list_agents", {"offset": 1, "limit": 1}))
        self.cluster.settle()
        page = self.successResultOf(listing)
        self.assertEqual(page["total"], 3)
        self.assertEqual([a["name"] for a in page["agents"]], ["a2"])
        deleted = ensureDeferred(node.manage("delete_agents", {"ids": ["002", "999"]}))
        self.cluster.settle()
        self.assertEqual(self.successResultOf(deleted), {"removed": ["002"], "not_found": ["999"]})
        self.deliver_pushes()
        self.assertEqual(self.keys_of("worker2"), {"a1": "001", "a3": "003"})

    def test_group_management(self) -> None:
        """Groups are created, agents assigned, and bad requests refused with a reason."""
        self.join("worker1")
        manage = self.master.manage
        self.successResultOf(ensureDeferred(manage("create_group", {"name": "web"})))
        self.assertTrue((self.cluster.master_home.shared / "web" / "agent.conf").exists())
        self.enroll_through(self.workers["worker1"], "OSSEC A:'a1'")
        groups = self.successResultOf(
            ensureDeferred(manage("assign", {"agent": "001", "group": "web"}))
        )
        self.assertEqual(groups, {"groups": ["default", "web"]})
        failure = self.failureResultOf(
            ensureDeferred(manage("assign", {"agent": "001", "group": "nope"})), ControlError
        )
        self.assertIn("nope", failure.getErrorMessage())
        self.failureResultOf(ensureDeferred(manage("explode", {})), ControlError)

    def test_malformed_push_ignored(self) -> None:
        """A key push with bad fields changes nothing on the worker."""
        self.join("worker1")
        link = self.cluster.master.workers.get("worker1")
        assert link is not None
        outcome: list[Any] = []
        link.protocol.callRemote(wire.KeysUpdate, added=[{"id": "001"}], removed=[]).addBoth(
            outcome.append
        )
        self.cluster.settle()
        self.assertEqual(outcome, [{}])
        self.assertEqual(self.keys_of("worker1"), {})

    def test_group_files_follow_operator_edits(self) -> None:
        """After an operator edits a group's agent.conf, the rebuild puts it in merged.mg."""
        shared = self.cluster.master_home.shared
        self.successResultOf(ensureDeferred(self.master.manage("create_group", {"name": "db"})))
        (shared / "db" / "agent.conf").write_text("<agent_config><!-- tuned --></agent_config>\n")
        self.successResultOf(self.master.rebuild_group_files())
        self.assertIn("<!-- tuned -->", (shared / "db" / "merged.mg").read_text())
        before = (shared / "db" / "merged.mg").stat().st_mtime_ns
        self.successResultOf(self.master.rebuild_group_files())
        self.assertEqual((shared / "db" / "merged.mg").stat().st_mtime_ns, before)


class KeyPushBatchTests(SynchronousTestCase):
    """Key pushes on a worker: merged in order, and a burst written once."""

    def test_pushes_merge_in_order(self) -> None:
        """Removals, additions and a name taken over by a new id end as the master decided,
        and the delta names exactly what changed."""
        from pathlib import Path

        path = Path(self.mktemp())
        key = "k" * 64
        delta = KeysFile(path).merge(
            [
                ([{"id": "001", "name": "agent-a", "ip": "any", "key": key},
                  {"id": "002", "name": "agent-b", "ip": "any", "key": key}], []),
                ([{"id": "003", "name": "agent-a", "ip": "any", "key": key}], ["002"]),
            ],
        )  # fmt: skip
        self.assertEqual(delta.count, 1)
        self.assertEqual([(e.id, e.name) for e in read_client_keys(path)], [("003", "agent-a")])
        self.assertEqual([(e.id, e.name) for e in delta.added], [("003", "agent-a")])
        self.assertEqual(delta.removed, ("001", "002"))

    def test_burst_written_once(self) -> None:
        """Pushes arriving while a merge runs wait for it, then share one more write; each
        push's caller resumes only once its keys are written."""
        from pathlib import Path
        from types import SimpleNamespace

        from twisted.internet.defer import Deferred
        from twisted.internet.task import Clock

        writes: list[tuple[Deferred[int], list[Any]]] = []

        def run_in_thread(function: Any, batch: list[Any]) -> Deferred[Any]:
            done: Deferred[Any] = Deferred()
            writes.append((done, list(batch)))
            return done

        link = SimpleNamespace(cluster=SimpleNamespace(node_name="w1"))
        home = Home(Path(self.mktemp()))
        feature = WorkerRegistry(
            home.client_keys, default_auth(home.root), link, Clock(), run_in_thread=run_in_thread
        )
        entry = {"id": "001", "name": "agent-a", "ip": "any", "key": "k" * 64}
        first = ensureDeferred(feature.apply_push([entry], []))
        second = ensureDeferred(feature.apply_push([], ["007"]))
        third = ensureDeferred(feature.apply_push([], ["008"]))
        self.assertEqual(len(writes), 1)
        writes[0][0].callback(KeysDelta((), (), 1))
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(len(writes), 2)
        self.assertEqual(writes[1][1], [([], ["007"]), ([], ["008"])])
        writes[1][0].callback(KeysDelta((), (), 1))
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(len(writes), 2)

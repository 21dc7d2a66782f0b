"""Agents durable in etcd: the records and their fenced writes, the registry made to match
them at a promotion, and the master that acknowledges an enrollment or deletion only once
etcd holds it. Deterministic: fakes for etcd, a synchronous registry, an in-memory cluster."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests import test_registry_link as link_tests
from tests.test_failover_election import KEY, TTL, MemoryEtcd
from tests.test_failover_roles import Node
from wazuhcluster.agents.enrollment import parse_reply
from wazuhcluster.config.home import Home
from wazuhcluster.control.commands import ControlError
from wazuhcluster.failover.agents import (
    MAX_OPS,
    BadRecord,
    DurableAgents,
    decode_record,
    encode_record,
)
from wazuhcluster.failover.election import NotLeader
from wazuhcluster.failover.kv import KeyValue, Op, RangeResult, TxnResult
from wazuhcluster.registry.model import DurableAgent, InvalidValue
from wazuhcluster.roles.promotion import open_registry, take_over_agents
from wazuhcluster.roles.switcher import MASTER, WORKER
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline

PREFIX = "/wazuhcluster/wazuh/"
KEY_HEX = "ab" * 32


def record(agent_id: str, name: str, ip: str = "any", groups: list[str] | None = None) -> dict:
    """An agent record as etcd holds it."""
    return {
        "id": agent_id,
        "name": name,
        "ip": ip,
        "key": KEY_HEX,
        "groups": groups or ["default"],
        "register_time": 1_800_000_000.0,
    }


class FakeFenced:
    """Records each fenced transaction's operations; can refuse them."""

    def __init__(self) -> None:
        self.transactions: list[list[Op]] = []
        self.refuse: Exception | None = None
        #: When set, each transaction waits for the test to fire the Deferred it appends.
        self.holds: list[Deferred[None]] | None = None

    async def fenced_txn(self, success: Sequence[Op]) -> TxnResult:
        """Record, or raise ``refuse``; wait first when held."""
        self.transactions.append(list(success))
        if self.holds is not None:
            hold: Deferred[None] = Deferred()
            self.holds.append(hold)
            await hold
        if self.refuse is not None:
            raise self.refuse
        return TxnResult(True, 1, (), None)


class FakeReader:
    """Serves keys from a dict in pages, as etcd's range does."""

    def __init__(self, keys: Mapping[bytes, bytes]) -> None:
        self.keys = dict(sorted(keys.items()))
        self.requests: list[tuple[bytes, int, int]] = []

    async def range(
        self,
        key: bytes | str,
        range_end: bytes | str | None = None,
        limit: int = 0,
        revision: int = 0,
    ) -> RangeResult:
        """The keys in [key, range_end), at most ``limit``."""
        start = key if isinstance(key, bytes) else key.encode()
        self.requests.append((start, limit, revision))
        if range_end is None:
            found = [k for k in self.keys if k == start]
        else:
            end = range_end if isinstance(range_end, bytes) else range_end.encode()
            found = [k for k in self.keys if start <= k < end]
        page = found[:limit] if limit else found
        kvs = tuple(KeyValue(k, self.keys[k], 1, 1, 1, 0) for k in page)
        return RangeResult(kvs, len(found), len(found) > len(page), 7)


def _puts(ops: list[Op]) -> dict[str, Any]:
    """The keys a list of operations puts, with their (decoded) values."""
    import base64

    found = {}
    for op in ops:
        if op.kind == "request_put":
            key = base64.b64decode(op.body["key"]).decode()
            found[key] = base64.b64decode(op.body["value"]).decode()
    return found


class DurableAgentsTests(SynchronousTestCase):
    """The records and how they are written and read back."""

    def test_save_is_one_fenced_transaction(self) -> None:
        """An enrollment with a replaced agent: one transaction deleting the old key,
        writing the new record and the next id."""
        fenced = FakeFenced()
        store = DurableAgents(fenced, FakeReader({}), PREFIX)
        self.successResultOf(ensureDeferred(store.save([record("007", "web")], ["003"], next_id=8)))
        [ops] = fenced.transactions
        self.assertEqual(
            [op.kind for op in ops], ["request_delete_range", "request_put", "request_put"]
        )
        puts = _puts(ops)
        self.assertEqual(json.loads(puts[PREFIX + "agents/007"]), record("007", "web"))
        self.assertEqual(puts[PREFIX + "agents-next-id"], "8")

    def test_long_writes_are_split(self) -> None:
        """More operations than etcd takes in one transaction go in several."""
        fenced = FakeFenced()
        store = DurableAgents(fenced, FakeReader({}), PREFIX)
        ids = [f"{n:03d}" for n in range(1, 300)]
        self.successResultOf(ensureDeferred(store.save([], ids)))
        self.assertEqual([len(ops) for ops in fenced.transactions], [MAX_OPS, MAX_OPS, 59])

    def test_saves_asked_meanwhile_travel_together(self) -> None:
        """While one transaction is in flight, the saves asked meanwhile wait and then go in
        one transaction; one touching a key already in it waits for the next; the next id
        written only grows."""
        fenced = FakeFenced()
        fenced.holds = []
        store = DurableAgents(fenced, FakeReader({}), PREFIX)
        first = ensureDeferred(store.save([record("010", "a10")], [], next_id=11))
        later = [
            ensureDeferred(store.save([record("012", "a12")], [], next_id=13)),
            ensureDeferred(store.save([record("011", "a11")], [], next_id=12)),
            ensureDeferred(store.save([], ["012"])),  # same key as the first of the batch
        ]
        self.assertEqual(len(fenced.transactions), 1)
        fenced.holds.pop(0).callback(None)
        self.successResultOf(first)
        self.assertEqual(len(fenced.transactions), 2)
        second = _puts(fenced.transactions[1])
        self.assertEqual(
            sorted(second),
            [PREFIX + "agents-next-id", PREFIX + "agents/011", PREFIX + "agents/012"],
        )
        self.assertEqual(second[PREFIX + "agents-next-id"], "13")
        fenced.holds.pop(0).callback(None)
        fenced.holds.pop(0).callback(None)
        for done in later:
            self.successResultOf(done)
        self.assertEqual(len(fenced.transactions), 3)
        self.assertEqual([op.kind for op in fenced.transactions[2]], ["request_delete_range"])
        lower = ensureDeferred(store.save([record("005", "a5")], [], next_id=6))
        fenced.holds.pop(0).callback(None)
        self.successResultOf(lower)
        self.assertNotIn(PREFIX + "agents-next-id", _puts(fenced.transactions[3]))

    def test_a_refused_batch_fails_every_save_in_it(self) -> None:
        """Each save of a refused transaction gets the refusal; the next batch goes on."""
        fenced = FakeFenced()
        fenced.holds = []
        store = DurableAgents(fenced, FakeReader({}), PREFIX)
        first = ensureDeferred(store.save([record("001", "a1")], []))
        batch = [ensureDeferred(store.save([record(f"00{n}", f"a{n}")], [])) for n in (2, 3)]
        fenced.refuse = NotLeader("no longer")
        fenced.holds.pop(0).callback(None)
        self.failureResultOf(first, NotLeader)
        fenced.refuse = None
        fenced.holds.pop(0).callback(None)
        for done in batch:
            self.successResultOf(done)

    def test_refused_write_raises(self) -> None:
        """A node that no longer leads gets NotLeader: nothing was written."""
        fenced = FakeFenced()
        fenced.refuse = NotLeader("no longer")
        store = DurableAgents(fenced, FakeReader({}), PREFIX)
        self.failureResultOf(ensureDeferred(store.save([record("001", "a")], [])), NotLeader)

    def test_load_reads_pages_at_one_revision(self) -> None:
        """Every record, page after page at the first page's revision; records that are
        not ours are skipped and named; the next id."""
        from wazuhcluster.failover import agents as module

        self.patch(module, "PAGE", 2)
        keys = {
            (PREFIX + f"agents/{n:03d}").encode(): encode_record(record(f"{n:03d}", f"a{n}"))
            for n in range(1, 6)
        }
        keys[(PREFIX + "agents/009").encode()] = b"{broken"
        keys[(PREFIX + "agents-next-id").encode()] = b"12"
        reader = FakeReader(keys)
        store = DurableAgents(FakeFenced(), reader, PREFIX)
        records, next_id = self.successResultOf(ensureDeferred(store.load()))
        self.assertEqual([r["name"] for r in records], ["a1", "a2", "a3", "a4", "a5"])
        self.assertEqual(next_id, 12)
        self.assertEqual([key for key, _ in store.skipped], [PREFIX + "agents/009"])
        self.assertEqual({revision for _, _, revision in reader.requests[1:]}, {7})

    def test_records_are_checked(self) -> None:
        """A record must be an object with every field of its type; the registry checks
        the values again (names, IPs, keys, groups)."""
        for bad in (
            b"[]",
            b"{}",
            json.dumps({**record("001", "a"), "id": "x"}).encode(),
            json.dumps({**record("001", "a"), "groups": [1]}).encode(),
            b"x" * 9000,
        ):
            self.assertRaises(BadRecord, decode_record, bad)
        self.assertEqual(decode_record(encode_record(record("001", "a"))), record("001", "a"))
        for field, value in (
            ("name", "bad name"),
            ("ip", "300.1.1.1"),
            ("key", "no key!"),
            ("groups", ["../etc"]),
            ("id", "0"),
        ):
            self.assertRaises(
                InvalidValue, DurableAgent.from_record, {**record("001", "a"), field: value}
            )
        self.assertEqual(DurableAgent.from_record(record("1", "ab")).id, "001")


class ReplaceAgentsTests(SynchronousTestCase):
    """A new master's registry made to match etcd's agents."""

    def setUp(self) -> None:
        """A registry in a temporary home."""
        base = Path(self.mktemp())
        self.home = Home(base)
        self.home.make_dirs()
        self.registry = open_registry(self.home)
        self.addCleanup(self.registry.close)

    def test_matches_etcd(self) -> None:
        """Agents etcd holds are kept (with their status) or added with their groups and
        key; agents it does not hold, or holds with other facts, are removed; the next id
        is at least etcd's; client.keys follows."""
        kept = self.registry.enroll("kept", key=KEY_HEX)
        self.registry.enroll("gone")
        changed = self.registry.enroll("changed")
        self.registry.connection.execute("UPDATE agents SET node_name = 'w1' WHERE id = 1")
        agents = [
            DurableAgent.from_record(record(kept.id, "kept")),
            DurableAgent.from_record(record(changed.id, "changed", ip="10.0.0.3")),
            DurableAgent.from_record(record("009", "new", groups=["web", "default"])),
        ]
        self.assertEqual(self.registry.replace_agents(agents, next_id=20), (1, 2, 2))
        self.registry.flush_files()
        found = {agent.name: agent for agent in self.registry.list_agents()}
        self.assertEqual(sorted(found), ["changed", "kept", "new"])
        self.assertEqual(found["kept"].node_name, "w1")
        self.assertEqual(found["changed"].ip, "10.0.0.3")
        self.assertEqual(found["new"].groups, ("web", "default"))
        self.assertEqual(found["new"].key, KEY_HEX)
        self.assertEqual(self.registry.next_agent_id(), 20)
        self.assertIn("009 new any " + KEY_HEX, self.home.client_keys.read_text())
        self.assertNotIn(" gone ", self.home.client_keys.read_text())
        self.assertEqual(self.registry.enroll("later").id, "020")


class FakeDurable:
    """IDurableAgents in memory."""

    def __init__(self, records: list[dict] | None = None, next_id: int = 0) -> None:
        self.records = {r["id"]: r for r in records or []}
        self.next_id = next_id
        self.saves: list[tuple[list[str], list[str], int | None]] = []
        self.refuse: Exception | None = None
        self.hold: Deferred[None] | None = None

    async def save(
        self, added: Sequence[Mapping[str, Any]], removed: Sequence[str], next_id: int | None = None
    ) -> None:
        """Apply, or raise ``refuse``; wait for ``hold`` first when set."""
        if self.hold is not None:
            await self.hold
        if self.refuse is not None:
            raise self.refuse
        self.saves.append(([r["id"] for r in added], list(removed), next_id))
        for agent_id in removed:
            self.records.pop(agent_id, None)
        for r in added:
            self.records[r["id"]] = dict(r)
        if next_id is not None:
            self.next_id = max(self.next_id, next_id)

    async def load(self) -> tuple[list[dict[str, Any]], int]:
        """Every record and the next id."""
        return list(self.records.values()), self.next_id


class TakeOverTests(SynchronousTestCase):
    """What a new master does before its services start."""

    def setUp(self) -> None:
        """A home with two local agents."""
        self.home = Home(Path(self.mktemp()))
        self.home.make_dirs()
        registry = open_registry(self.home)
        registry.enroll("local-1")
        registry.enroll("local-2")
        registry.close()
        self.log = ClusterLog("Master", "Failover")

    def names(self) -> list[str]:
        """The agents of the home's registry."""
        registry = open_registry(self.home)
        try:
            return [agent.name for agent in registry.list_agents()]
        finally:
            registry.close()

    def test_etcd_without_agents_is_seeded(self) -> None:
        """The first master of a cluster with failover just turned on publishes its agents
        (and its next id) instead of losing them."""
        durable = FakeDurable()
        self.successResultOf(
            ensureDeferred(take_over_agents(durable, self.home, run_inline, self.log))
        )
        self.assertEqual(
            sorted(r["name"] for r in durable.records.values()), ["local-1", "local-2"]
        )
        self.assertEqual(durable.next_id, 3)
        self.assertEqual(self.names(), ["local-1", "local-2"])

    def test_etcd_is_the_truth(self) -> None:
        """With agents in etcd the local registry is made to match; a record whose name
        another already holds is skipped and logged."""
        durable = FakeDurable(
            [record("004", "remote"), record("005", "remote"), record("006", "bad name")], 9
        )
        self.successResultOf(
            ensureDeferred(take_over_agents(durable, self.home, run_inline, self.log))
        )
        self.assertEqual(self.names(), ["remote"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class MasterDurableTests(link_tests.RegistryLinkTests):
    """The master stores enrollments and deletions in etcd before acknowledging them (the
    registry link tests all run again with a durable store that accepts everything)."""

    def setUp(self) -> None:
        """The in-memory cluster of the registry link tests, with a durable store."""
        super().setUp()
        self.durable = FakeDurable()
        self.master.durable = self.durable

    def test_enrollment_waits_for_etcd(self) -> None:
        """The agent's answer leaves only once etcd holds its record."""
        worker = self.join("worker1")
        self.durable.hold = Deferred()
        from wazuhcluster.agents.enrollment import parse_request

        reply = ensureDeferred(worker.forward(parse_request("OSSEC A:'web-1'"), "10.0.0.5"))
        self.cluster.settle()
        self.deliver_pushes()
        self.assertNoResult(reply)
        self.assertEqual(self.durable.records, {})
        self.durable.hold.callback(None)
        self.durable.hold = None
        self.cluster.settle()
        self.deliver_pushes()
        entry = parse_reply(str(self.successResultOf(reply)))
        self.assertEqual(self.durable.records[entry.id]["key"], entry.key)
        self.assertEqual(self.durable.records[entry.id]["groups"], ["default"])

    def test_enrollment_not_stored_is_refused_and_undone(self) -> None:
        """etcd refuses (this node no longer leads): the agent gets an error, not a key, and
        the master's registry and the workers do not keep it."""
        worker = self.join("worker1")
        self.durable.refuse = NotLeader("no longer the leader")
        reply = self.enroll_through(worker, "OSSEC A:'web-1'")
        self.assertTrue(reply.startswith("ERROR: "), reply)
        self.assertIn("could not store", reply)
        self.assertEqual(self.keys_of("worker1"), {})
        self.assertEqual(read_names(self.cluster.master_home), [])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_deletion_goes_to_etcd_first(self) -> None:
        """A deletion is made in etcd before the registry; when etcd refuses nothing is
        deleted and the requester is told why."""
        worker = self.join("worker1")
        entry = parse_reply(self.enroll_through(worker, "OSSEC A:'web-1'"))
        self.durable.refuse = NotLeader("no longer the leader")
        refused = ensureDeferred(self.master.manage("delete_agents", {"ids": [entry.id]}))
        self.assertIn(
            "etcd did not take the deletion", str(self.failureResultOf(refused, ControlError).value)
        )
        self.assertEqual(read_names(self.cluster.master_home), ["web-1"])
        self.durable.refuse = None
        done = self.successResultOf(
            ensureDeferred(self.master.manage("delete_agents", {"ids": [entry.id]}))
        )
        self.assertEqual(done["removed"], [entry.id])
        self.assertEqual(self.durable.records, {})


class DurableGroupsTests(link_tests.RegistryLinkTests):
    """Group assignments through the control socket are stored in etcd; when etcd does not
    take one it is undone."""

    def setUp(self) -> None:
        """The in-memory cluster of the registry link tests, with a durable store."""
        super().setUp()
        self.durable = FakeDurable()
        self.master.durable = self.durable

    def manage(self, action: str, arguments: dict[str, Any]) -> Any:
        """One management request, synchronously."""
        return self.successResultOf(ensureDeferred(self.master.manage(action, arguments)))

    def test_assignments_are_stored_or_undone(self) -> None:
        """assign and unassign write the agent's new group list; a refused one leaves the
        registry as it was and says why."""
        worker = self.join("worker1")
        entry = parse_reply(self.enroll_through(worker, "OSSEC A:'web-1'"))
        self.manage("create_group", {"name": "web"})
        self.assertEqual(
            self.manage("assign", {"agent": entry.id, "group": "web"})["groups"], ["default", "web"]
        )
        self.assertEqual(self.durable.records[entry.id]["groups"], ["default", "web"])
        self.assertEqual(self.durable.next_id, 2)  # an update does not move the next id
        self.manage("unassign", {"agent": entry.id, "group": "default"})
        self.assertEqual(self.durable.records[entry.id]["groups"], ["web"])
        self.durable.refuse = NotLeader("no longer the leader")
        refused = ensureDeferred(
            self.master.manage("assign", {"agent": entry.id, "group": "default"})
        )
        self.assertIn("it is undone", str(self.failureResultOf(refused, ControlError).value))
        agent = self.successResultOf(self.master.registry.get_agent(entry.id))
        self.assertEqual(agent.groups, ("web",))  # type: ignore[union-attr]
        self.assertEqual(self.durable.records[entry.id]["groups"], ["web"])


def read_names(home: Home) -> list[str]:
    """The agent names of a home's client.keys."""
    from wazuhcluster.registry.keys import read_client_keys

    return [e.name for e in read_client_keys(home.client_keys)] if home.client_keys.exists() else []


class PromotionTests(SynchronousTestCase):
    """The switcher runs the take-over before the master's services; a failed take-over
    gives the leadership up."""

    def test_master_starts_after_the_take_over(self) -> None:
        """Elected: the worker stops, the take-over runs, then the master starts."""
        clock = Clock()
        node = Node(MemoryEtcd(clock), clock, "n1")
        held: Deferred[None] = Deferred()
        node.switcher.prepare_master = lambda: held
        node.start(self)
        clock.advance(0)
        self.assertIsNone(node.switcher.role)
        self.assertEqual(node.log[-1], ("worker", "stopped"))
        held.callback(None)
        self.assertEqual(node.switcher.role, MASTER)

    def test_failed_take_over_resigns(self) -> None:
        """The take-over fails: the node resigns (its lease revoked: the other candidate
        leads at once), runs as a worker, and does not campaign again for a TTL."""
        clock = Clock()
        etcd = MemoryEtcd(clock)
        n1 = Node(etcd, clock, "n1")

        async def fail() -> None:
            raise OSError("etcd read failed")

        n1.switcher.prepare_master = fail
        n1.start(self)
        clock.advance(0)
        self.assertEqual(n1.switcher.role, WORKER)
        self.assertFalse(n1.leadership.is_leader)
        self.assertNotIn(KEY.encode(), etcd.keys)
        clock.advance(TTL / 3)  # held off: it does not campaign again at once
        self.assertNotIn(KEY.encode(), etcd.keys)
        n2 = Node(etcd, clock, "n2").start(self)
        clock.advance(0)
        self.assertEqual(n2.switcher.role, MASTER)
        clock.advance(TTL / 3)
        self.assertEqual(n1.follows(), ["10.0.0.2:1516"])
        self.assertEqual(n1.switcher.role, WORKER)


class BrokenMasterTests(SynchronousTestCase):
    """A master that cannot be built gives the leadership up and the node works on."""

    def test_master_that_cannot_start_resigns(self) -> None:
        """make_master raises: logged, the node resigns and runs as a worker again."""
        clock = Clock()
        etcd = MemoryEtcd(clock)
        node = Node(etcd, clock, "n1")

        def broken() -> Any:
            raise OSError("certificate missing")

        node.switcher.make_master = broken
        node.start(self)
        clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(node.switcher.role, WORKER)
        self.assertNotIn(KEY.encode(), etcd.keys)
        self.assertEqual(node.switcher.failover_status()["promotions"], 0)


class DurableInterfaceTests(SynchronousTestCase):
    """DurableAgents provides what the master and the take-over are handed."""

    def test_provides(self) -> None:
        """verifyObject on the etcd-backed store."""
        from zope.interface.verify import verifyObject

        from wazuhcluster.failover.interfaces import IDurableAgents

        self.assertTrue(
            verifyObject(IDurableAgents, DurableAgents(FakeFenced(), FakeReader({}), PREFIX))
        )

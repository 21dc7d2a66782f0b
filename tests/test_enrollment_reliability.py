"""Enrollment under faults, in memory: the key is usable everywhere before the answer, a
retry gets its key back, a full disk is a clear refusal with the link kept, rates are
limited (issue 17, items 2, 3, 5 and 9)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import InMemoryCluster
from tests.test_registry_link import _SyncRegistryService
from wazuhcluster.agents.enrollment import EnrollmentRequest, parse_reply, parse_request
from wazuhcluster.config.auth_settings import RateLimit, default_auth
from wazuhcluster.config.home import Home
from wazuhcluster.control.commands import ControlError
from wazuhcluster.master.enrollment_authority import (
    EnrollmentAuthority,
    EnrollmentPolicy,
    EnrollmentRates,
    describe_storage_error,
)
from wazuhcluster.master.registry import KEYS_ACK_WAIT, PUSH_DELAY, MasterRegistry
from wazuhcluster.registry import store
from wazuhcluster.registry.keys import KeysDelta, read_client_keys
from wazuhcluster.registry.service import AsyncRegistry, synchronous_runner
from wazuhcluster.registry.store import Registry, RegistryFiles
from wazuhcluster.util.threads import run_inline
from wazuhcluster.worker.link import MasterLink
from wazuhcluster.worker.registry import WorkerRegistry


class LogLines:
    """Collects the formatted text of every log event while a test runs."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.lines: list[str] = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: LogEvent) -> None:
        self.lines.append(formatEvent(event))

    def matching(self, text: str) -> list[str]:
        """The lines containing ``text``."""
        return [line for line in self.lines if text in line]


class EnrollmentClusterCase(SynchronousTestCase):
    """A master with its registry feature and workers with theirs, in memory."""

    def setUp(self) -> None:
        self.cluster = InMemoryCluster(self.mktemp())
        home = self.cluster.master_home
        self.service = _SyncRegistryService(home)
        self.master = MasterRegistry(
            home,
            default_auth(home.root),
            self.cluster.master,
            self.cluster.reactor,
            registry_service=self.service,
        )
        self.cluster.master.features.add(self.master)
        self.workers: dict[str, WorkerRegistry] = {}
        self.links: dict[str, MasterLink] = {}
        #: What each node's agent channel was handed, in order: node → agent names.
        self.usable: dict[str, list[str]] = {"master": []}
        self.master.on_keys_changed.append(
            lambda added, removed: self.usable["master"].extend(row["name"] for row in added)
        )
        self.log = LogLines(self)

    def join(self, name: str) -> WorkerRegistry:
        """Add and connect worker ``name``; its agent channel is a recorder."""

        def features(link: MasterLink, home: Home) -> list[WorkerRegistry]:
            feature = WorkerRegistry(
                home.client_keys,
                default_auth(home.root),
                link,
                self.cluster.reactor,
                run_in_thread=run_inline,
            )
            self.usable[name] = []
            feature.on_keys_changed.append(
                lambda delta: self.usable[name].extend(entry.name for entry in delta.added)
            )
            self.workers[name] = feature
            return [feature]

        self.links[name] = self.cluster.add_worker(name, features=features)
        self.cluster.connect(self.links[name])
        return self.workers[name]

    def forward(self, worker: WorkerRegistry, line: str, ip: str = "10.0.0.5") -> Deferred[str]:
        """Start an enrollment through ``worker``; the Deferred of the agent's reply."""
        return ensureDeferred(worker.forward(parse_request(line), ip))


class KeyBeforeAnswerTests(EnrollmentClusterCase):
    """Item 2: ``OSSEC K:`` only once every node can use the key."""

    def test_every_node_uses_the_key_before_the_answer(self) -> None:
        """When the agent gets its key through worker1, the master's agent channel and both
        workers' already hold it, without waiting for any gathering delay."""
        worker1, _ = self.join("worker1"), self.join("worker2")
        seen_at_answer: list[dict[str, list[str]]] = []
        reply = self.forward(worker1, "OSSEC A:'web-1'")
        reply.addCallback(
            lambda line: seen_at_answer.append({k: list(v) for k, v in self.usable.items()}) or line
        )
        self.cluster.settle()
        entry = parse_reply(self.successResultOf(reply))
        self.assertEqual(entry.name, "web-1")
        self.assertEqual(
            seen_at_answer, [{"master": ["web-1"], "worker1": ["web-1"], "worker2": ["web-1"]}]
        )

    def test_answer_waits_for_a_slow_agent_channel(self) -> None:
        """A worker acknowledges a push only once its agent channel can use the keys (its
        hook's Deferred fired), and the agent's answer waits for that."""
        worker1 = self.join("worker1")
        ready: Deferred[None] = Deferred()
        worker1.on_keys_changed.append(lambda delta: ready)
        reply = self.forward(worker1, "OSSEC A:'web-1'")
        self.cluster.settle()
        self.assertNoResult(reply)
        ready.callback(None)
        self.cluster.settle()
        self.assertTrue(self.successResultOf(reply).startswith("OSSEC K:"))

    def test_answer_waits_for_the_masters_own_channel(self) -> None:
        """On the master's 1515 too: a keys hook still reloading holds the answer back."""
        ready: Deferred[None] = Deferred()
        self.master.on_keys_changed.append(lambda added, removed: ready)
        reply = self.master.authority.register(EnrollmentRequest("local-1"), "10.0.0.9")
        self.cluster.settle()
        self.assertNoResult(reply)
        ready.callback(None)
        self.cluster.settle()
        self.assertTrue(self.successResultOf(reply).startswith("OSSEC K:"))

    def test_silent_worker_bounded_wait(self) -> None:
        """A worker that does not acknowledge holds the answer at most KEYS_ACK_WAIT (a
        WARNING names it); later enrollments do not wait for it until it has caught up, then
        they wait for it again."""
        worker1, worker2 = self.join("worker1"), self.join("worker2")
        held: list[Deferred[None]] = []
        original = worker2.apply_push

        def stalled(added: list[dict[str, str]], removed: list[str]) -> Deferred[None]:
            done: Deferred[None] = Deferred()
            held.append(done)
            return done

        self.patch(worker2, "apply_push", stalled)
        first = self.forward(worker1, "OSSEC A:'web-1'")
        self.cluster.settle()
        self.assertNoResult(first)
        self.cluster.reactor.advance(KEYS_ACK_WAIT)
        self.cluster.settle()
        self.assertTrue(self.successResultOf(first).startswith("OSSEC K:"))
        [warning] = self.log.matching("not acknowledged by worker2")
        self.assertIn(f"within {KEYS_ACK_WAIT:g} s", warning)
        second = self.forward(worker1, "OSSEC A:'web-2'")
        self.cluster.settle()
        self.assertTrue(self.successResultOf(second).startswith("OSSEC K:"))
        # worker2 catches up: it is waited for again.
        self.patch(worker2, "apply_push", original)
        for done in held:
            done.callback(None)
        self.cluster.settle()
        self.assertEqual(len(self.log.matching("worker2 acknowledges key pushes again")), 1)
        self.patch(worker2, "apply_push", stalled)
        third = self.forward(worker1, "OSSEC A:'web-3'")
        self.cluster.settle()
        self.assertNoResult(third)
        self.cluster.reactor.advance(KEYS_ACK_WAIT)
        self.cluster.settle()
        self.assertTrue(self.successResultOf(third).startswith("OSSEC K:"))

    def test_burst_shares_pushes(self) -> None:
        """Twenty enrollments in one burst reach a worker in a few pushes, not twenty (what
        arrives while a push is out travels in the next one)."""
        worker1 = self.join("worker1")
        calls: list[int] = []
        original = worker1.apply_push

        async def counting(added: list[dict[str, str]], removed: list[str]) -> None:
            calls.append(len(added))
            await original(added, removed)

        self.patch(worker1, "apply_push", counting)
        replies = [self.forward(worker1, f"OSSEC A:'agent-{n}'") for n in range(20)]
        self.cluster.settle()
        for reply in replies:
            self.assertTrue(self.successResultOf(reply).startswith("OSSEC K:"))
        self.assertEqual(sum(calls), 20)
        self.assertLess(len(calls), 20)

    def test_deletions_still_gathered(self) -> None:
        """Changes nobody waits for (a management deletion) still wait PUSH_DELAY."""
        worker1 = self.join("worker1")
        first = self.forward(worker1, "OSSEC A:'web-1'")
        self.cluster.settle()
        self.successResultOf(first)
        calls: list[list[str]] = []
        original = worker1.apply_push

        async def counting(added: list[dict[str, str]], removed: list[str]) -> None:
            calls.append(list(removed))
            await original(added, removed)

        self.patch(worker1, "apply_push", counting)
        self.master.push_keys([], ["001"])
        self.cluster.settle()
        self.assertEqual(calls, [])
        self.cluster.reactor.advance(PUSH_DELAY)
        self.cluster.settle()
        self.assertEqual(calls, [["001"]])


class WorkerAcknowledgementTests(SynchronousTestCase):
    """The worker's side of item 2: a push is acknowledged once the keys are usable."""

    def test_ack_after_hooks_even_for_merged_pushes(self) -> None:
        """A push merged together with an earlier one is acknowledged only after the
        listeners have both (not as soon as the merge is written)."""
        writes: list[Deferred[KeysDelta]] = []

        def run_in_thread(function: Any, batch: list[Any]) -> Deferred[Any]:
            done: Deferred[Any] = Deferred()
            writes.append(done)
            return done

        link = SimpleNamespace(cluster=SimpleNamespace(node_name="w1"))
        home = Home(Path(self.mktemp()))
        feature = WorkerRegistry(
            home.client_keys, default_auth(home.root), link, Clock(), run_in_thread=run_in_thread
        )
        usable: Deferred[None] = Deferred()
        feature.on_keys_changed.append(lambda delta: usable if len(writes) == 2 else None)
        first = ensureDeferred(feature.apply_push([], ["001"]))
        second = ensureDeferred(feature.apply_push([], ["002"]))
        third = ensureDeferred(feature.apply_push([], ["003"]))
        writes[0].callback(KeysDelta((), ("001",), 0))
        self.successResultOf(first)
        writes[1].callback(KeysDelta((), ("002", "003"), 0))
        self.assertNoResult(second)
        self.assertNoResult(third)
        usable.callback(None)
        self.successResultOf(second)
        self.successResultOf(third)


class RetryTests(EnrollmentClusterCase):
    """Item 3: committed but not answered, then retried."""

    def test_retry_after_lost_answer_gets_the_same_key(self) -> None:
        """The master commits the agent but its answer is lost (the link to the worker drops
        before it): the agent, told "Cannot communicate with master", retries with the same
        name and gets the committed key back; every worker holds it."""
        worker1 = self.join("worker1")
        self.join("worker2")
        decided = self.master.authority.decide(EnrollmentRequest("lost-1"), "10.0.0.5")
        self.cluster.settle()
        committed = self.successResultOf(decided)
        assert committed.agent is not None
        reply = self.forward(worker1, "OSSEC A:'lost-1'")
        self.cluster.settle()
        entry = parse_reply(self.successResultOf(reply))
        self.assertEqual((entry.id, entry.key), (committed.agent.id, committed.agent.key))
        self.assertEqual(self.usable["worker2"], ["lost-1"])
        held = read_client_keys(self.cluster.worker_home("worker2").client_keys)
        self.assertEqual([(e.id, e.key) for e in held], [(entry.id, entry.key)])
        self.assertEqual(len(read_client_keys(self.cluster.master_home.client_keys)), 1)


class DiskFullTests(EnrollmentClusterCase):
    """Item 5: the master's disk is full or read-only."""

    def test_database_full_is_a_clear_refusal_and_the_link_stays(self) -> None:
        """SQLite cannot commit: the agent gets an explained refusal, the master logs a
        dated ERROR that says why, the worker's link stays up, and enrollment works again
        once the database can be written."""
        worker1 = self.join("worker1")
        original = Registry.write_batch

        def full(registry: Registry, writes: list[Any]) -> Any:
            return [(None, sqlite3.OperationalError("database or disk is full"))] * len(
                writes
            ), None

        self.patch(Registry, "write_batch", full)
        reply = self.forward(worker1, "OSSEC A:'web-1'")
        self.cluster.settle()
        line = self.successResultOf(reply)
        self.assertTrue(line.startswith("ERROR: Internal manager error adding agent: web-1"), line)
        self.assertIn("could not store it", line)
        [error] = self.log.matching("Could not enroll 'web-1'")
        self.assertIn("database or disk is full", error)
        self.assertTrue(self.links["worker1"].connected)
        self.assertIsNotNone(self.cluster.master.workers.get("worker1"))
        self.patch(Registry, "write_batch", original)
        again = self.forward(worker1, "OSSEC A:'web-1'")
        self.cluster.settle()
        self.assertTrue(self.successResultOf(again).startswith("OSSEC K:"))

    def test_client_keys_unwritable_then_retry(self) -> None:
        """The agent is committed but client.keys cannot be written (no space): the agent is
        refused with a reason; once space returns its retry gets the committed key and
        client.keys is written (the failed flush is tried again, not forgotten)."""
        worker1 = self.join("worker1")
        original = store.write_atomically

        def no_space(*args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))

        self.patch(store, "write_atomically", no_space)
        reply = self.forward(worker1, "OSSEC A:'web-1'")
        self.cluster.settle()
        self.assertIn("could not store it", self.successResultOf(reply))
        [error] = self.log.matching("Could not enroll 'web-1'")
        self.assertIn("No space left on device", error)
        self.assertTrue(self.links["worker1"].connected)
        self.patch(store, "write_atomically", original)
        again = self.forward(worker1, "OSSEC A:'web-1'")
        self.cluster.settle()
        entry = parse_reply(self.successResultOf(again))
        self.assertEqual(entry.id, "001")
        self.assertEqual(read_client_keys(self.cluster.master_home.client_keys), [entry])

    def test_relayed_management_on_full_disk(self) -> None:
        """A relayed deletion that cannot be written is a ControlError with the reason."""
        self.join("worker1")

        def full(registry: Registry, writes: list[Any]) -> Any:
            return [(None, sqlite3.OperationalError("database or disk is full"))] * len(
                writes
            ), None

        self.patch(Registry, "write_batch", full)
        failure = self.failureResultOf(
            ensureDeferred(self.master.manage("delete_agents", {"ids": ["001"]})), ControlError
        )
        self.assertIn("database or disk is full", failure.getErrorMessage())


class StorageErrorTests(SynchronousTestCase):
    """SQLite says "disk I/O error" when the disk turned read-only: the reason the file system
    gives is added to what the operator reads."""

    def opaque(self, name: str) -> sqlite3.OperationalError:
        """An error as SQLite raises it, with its error class ``name``."""
        error = sqlite3.OperationalError("disk I/O error")
        error.sqlite_errorname = name  # type: ignore[attr-defined]
        return error

    def test_file_system_reason_added(self) -> None:
        """An I/O error whose directory cannot be written gets the file system's reason
        in the ERROR's text."""
        missing = Path(self.mktemp()) / "db"
        error = self.opaque("SQLITE_IOERR_WRITE")
        store.note_file_system_reason(error, missing)
        self.assertEqual(
            describe_storage_error(error),
            f"the agent database cannot be written (disk I/O error: {missing} cannot be "
            "written: No such file or directory)",
        )

    def test_nothing_added_when_writable_or_explicit(self) -> None:
        """A directory that can be written adds nothing (a real I/O error, and no probe file
        is left); neither does an error that already says why (disk full)."""
        directory = Path(self.mktemp())
        directory.mkdir()
        error = self.opaque("SQLITE_IOERR_FSYNC")
        store.note_file_system_reason(error, directory)
        self.assertEqual(
            describe_storage_error(error), "the agent database cannot be written (disk I/O error)"
        )
        self.assertEqual(list(directory.iterdir()), [])
        full = self.opaque("SQLITE_FULL")
        store.note_file_system_reason(full, Path(self.mktemp()))
        self.assertNotIn(":", describe_storage_error(full).partition("(")[2])


class RateLimitTests(SynchronousTestCase):
    """Item 9: enrollment rate limits per address and overall."""

    def setUp(self) -> None:
        home = Path(self.mktemp())
        files = RegistryFiles(
            home / "etc" / "client.keys", home / "etc" / "shared", home / "var" / "multigroups"
        )
        registry = Registry.open(home / "var" / "db" / "global.db", files)
        self.addCleanup(registry.close)
        self.clock = Clock()
        self.clock.advance(1000)
        self.log = LogLines(self)

        def authority(limits: RateLimit) -> EnrollmentAuthority:
            return EnrollmentAuthority(
                AsyncRegistry(registry, synchronous_runner),
                EnrollmentPolicy(),
                self.clock.seconds,
                rates=EnrollmentRates(limits, self.clock.seconds),
            )

        self.authority = authority

    def enroll(self, authority: EnrollmentAuthority, name: str, ip: str) -> str:
        """One enrollment's reply."""
        return self.successResultOf(authority.register(EnrollmentRequest(name), ip))

    def test_one_address_is_limited(self) -> None:
        """500 requests from one address at once: the first max_per_ip are granted, the rest
        refused with a clear message (logged once); another address still enrolls; the
        address gets tokens back at max_per_ip per timeframe."""
        authority = self.authority(RateLimit(max_per_ip=300, max_total=0, timeframe=60))
        replies = [self.enroll(authority, f"a{n}", "10.0.0.1") for n in range(500)]
        granted = [r for r in replies if r.startswith("OSSEC K:")]
        refused = [r for r in replies if not r.startswith("OSSEC K:")]
        self.assertEqual((len(granted), len(refused)), (300, 200))
        self.assertEqual(
            set(refused),
            {
                "ERROR: Too many enrollment requests from 10.0.0.1, try again later. "
                "Unable to add agent"
            },
        )
        self.assertEqual(len(self.log.matching("Enrollment rate limit reached")), 1)
        self.assertTrue(self.enroll(authority, "other", "10.0.0.2").startswith("OSSEC K:"))
        self.clock.advance(1.0)  # 5 per second come back
        replies = [self.enroll(authority, f"b{n}", "10.0.0.1") for n in range(6)]
        self.assertEqual(sum(r.startswith("OSSEC K:") for r in replies), 5)
        self.assertEqual(len(self.log.matching("accepted again")), 1)

    def test_overall_limit(self) -> None:
        """Requests from many addresses share max_total."""
        authority = self.authority(RateLimit(max_per_ip=10, max_total=50, timeframe=60))
        replies = [self.enroll(authority, f"a{n}", f"10.0.{n // 5}.{n % 5 + 1}") for n in range(80)]
        self.assertEqual(sum(r.startswith("OSSEC K:") for r in replies), 50)
        self.assertIn("ERROR: Too many enrollment requests, try again later", replies[-1])

    def test_limits_off(self) -> None:
        """0 turns both limits off."""
        authority = self.authority(RateLimit(max_per_ip=0, max_total=0, timeframe=60))
        replies = [self.enroll(authority, f"a{n}", "10.0.0.1") for n in range(400)]
        self.assertTrue(all(r.startswith("OSSEC K:") for r in replies))

    def test_many_addresses_are_forgotten(self) -> None:
        """Addresses whose bucket is full again are pruned, so the table stays bounded."""
        rates = EnrollmentRates(
            RateLimit(max_per_ip=2, max_total=0, timeframe=1), self.clock.seconds
        )
        for n in range(EnrollmentRates.PRUNE_AT + 1):
            rates.check(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        self.clock.advance(2)
        rates.check("192.0.2.1")
        self.assertLessEqual(len(rates._addresses), 2)

"""A node with ``<failover>``: the role follows the election (RoleSwitcher), and a worker's
link moves to the new master. Deterministic: an in-memory etcd, task.Clock, fake roles,
and iosim for the link."""

from __future__ import annotations

from typing import Any

from attrs import define
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers import short_temp_dir, write_config
from tests.test_failover_election import KEY, TTL, MemoryEtcd
from wazuhcluster.control.interfaces import IFailoverView
from wazuhcluster.failover.election import Address, LeadershipService
from wazuhcluster.failover.kv import EtcdUnavailable
from wazuhcluster.master.node import MasterNode
from wazuhcluster.node.interfaces import IMasterFollower
from wazuhcluster.roles.switcher import MASTER, WORKER, RoleSwitcher, RoleTag
from wazuhcluster.util.logs import ClusterLog, format_line
from wazuhcluster.worker.link import MasterLink
from wazuhcluster.worker.target import MasterTarget


class FakeRole(Service):
    """A role service that records its starts and stops; its stop may be held."""

    def __init__(self, kind: str, log: list[Any], running: list[FakeRole]) -> None:
        self.kind = kind
        self.log = log
        self.all_running = running
        self.hold: Deferred[None] | None = None

    def startService(self) -> None:
        """Record the start; no two roles of a node may run at once."""
        super().startService()
        self.log.append((self.kind, "start"))
        self.all_running.append(self)
        assert len(self.all_running) == 1, "two roles running at once"

    def stopService(self) -> Deferred[None]:
        """Record the stop; finish it now or when the test releases ``hold``."""
        super().stopService()
        self.log.append((self.kind, "stop"))

        def gone(_: object) -> None:
            self.all_running.remove(self)
            self.log.append((self.kind, "stopped"))

        done = self.hold if self.hold is not None else succeed(None)
        return done.addCallback(gone)


@implementer(IMasterFollower)
class FakeWorker(FakeRole):
    """A worker role that records where it was told the master is."""

    def follow_master(self, name: str, host: str, port: int) -> None:
        """Record the move."""
        self.log.append(("worker", "follow", name, f"{host}:{port}"))


class Node:
    """One node: its election on the shared etcd, its switcher, what its roles did."""

    def __init__(self, etcd: MemoryEtcd, clock: Clock, name: str, candidate: bool = True):
        self.log: list[Any] = []
        self.running: list[FakeRole] = []
        self.roles: list[FakeRole] = []
        #: Its cluster.log tag, as the wiring makes it: what it runs when a line is written.
        self.tag = RoleTag(name, candidate)
        self.leadership = LeadershipService(
            etcd,
            KEY,
            name,
            TTL,
            clock,
            ClusterLog(self.tag, "Failover"),
            candidate=candidate,
            address=Address(f"10.0.0.{name[-1]}", 1516) if candidate else None,
        )
        self.switcher = RoleSwitcher(
            self.leadership,
            lambda: self._make(FakeRole, "master"),
            lambda: self._make(FakeWorker, "worker"),
            ("n1", "n2"),
            clock,
            ClusterLog(self.tag, "Failover"),
            tag=self.tag,
        )

    def _make(self, kind: type[FakeRole], name: str) -> FakeRole:
        role = kind(name, self.log, self.running)
        self.roles.append(role)
        return role

    def start(self, case: SynchronousTestCase) -> Node:
        """Start the switcher; stop it at the end of the test."""
        self.switcher.startService()
        case.addCleanup(lambda: self.switcher.running and self.switcher.stopService())
        return self

    def follows(self) -> list[str]:
        """The masters its workers were told to follow, in order."""
        return [entry[3] for entry in self.log if entry[1] == "follow"]


class RoleSwitcherTests(SynchronousTestCase):
    """Elected → the master's services; stepped down → stopped at once, a worker again;
    leader changed → the worker follows the new master."""

    def setUp(self) -> None:
        """An in-memory etcd on a clock."""
        self.clock = Clock()
        self.etcd = MemoryEtcd(self.clock)

    def test_elected_candidate_runs_the_master(self) -> None:
        """The first candidate is elected: its worker stops, then its master starts. The
        other stays a worker and follows the master at its published address."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        n2 = Node(self.etcd, self.clock, "n2").start(self)
        self.assertEqual((n1.switcher.role, n2.switcher.role), (WORKER, WORKER))
        self.clock.advance(0)
        self.assertEqual(n1.switcher.role, MASTER)
        self.assertEqual(
            n1.log,
            [("worker", "start"), ("worker", "stop"), ("worker", "stopped"), ("master", "start")],
        )
        self.assertEqual(n2.switcher.role, WORKER)
        self.assertEqual(n2.follows(), ["10.0.0.1:1516"])
        self.assertEqual(n2.log[0], ("worker", "start"))
        for _ in range(6):
            self.clock.advance(TTL / 3)
        self.assertEqual((n1.switcher.role, n2.switcher.role), (MASTER, WORKER))
        self.assertEqual(n2.follows(), ["10.0.0.1:1516"])  # told once, not every round

    def test_stepped_down_master_stops_at_once_and_works_again(self) -> None:
        """The leader's lease is lost: the other candidate becomes master; the old one
        stops its master's services at its next round and runs as a worker following the
        new master."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        n2 = Node(self.etcd, self.clock, "n2").start(self)
        self.clock.advance(0)
        term = n1.leadership.term
        self.etcd._drop_lease(n1.leadership._lease)  # type: ignore[arg-type]
        with capturedLogs() as events:
            self.clock.advance(0)
        self.assertIn(
            f"Master for term {n2.leadership.term}: starting the master's services.",
            [formatEvent(event) for event in events],
        )
        self.assertEqual(n2.switcher.role, MASTER)
        self.assertEqual(n1.switcher.role, MASTER)  # it has not noticed yet
        n1.log.clear()
        with capturedLogs() as events:
            self.clock.advance(TTL / 3)
        lines = [formatEvent(event) for event in events]
        self.assertIn(f"Stepped down as master (term {term}): the lease expired", lines)
        self.assertIn(
            f"No longer master (term {term}: the lease expired): stopping the master's "
            "services and running as a worker.",
            lines,
        )
        self.assertEqual(n1.switcher.role, WORKER)
        self.assertEqual(
            n1.log,
            [
                ("master", "stop"),
                ("master", "stopped"),
                ("worker", "start"),
                ("worker", "follow", "n2", "10.0.0.2:1516"),
            ],
        )
        status = n1.switcher.failover_status()
        self.assertEqual((status["promotions"], status["demotions"]), (1, 1))
        self.assertEqual(status["master"], "n2")

    def test_lines_tagged_with_the_role_of_the_moment(self) -> None:
        """A candidate's election and switch lines carry what it runs when written: the
        election won while a worker says ``[Worker n1]``, the demotion while still master
        ``[Master]``, the switch between roles ``[Candidate n1]``; its master's and worker's
        own lines are theirs (``[Master]``, ``[Worker n1]``)."""
        hold: Deferred[None] = Deferred()
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        n2 = Node(self.etcd, self.clock, "n2").start(self)

        def tagged(events: list[Any]) -> list[str]:
            return [format_line(event).split(": ", 1)[1] for event in events]

        with capturedLogs() as events:
            self.clock.advance(0)
        lines = tagged(events)
        term = n1.leadership.term
        self.assertIn(
            f"[Worker n1] [Failover] Elected master (term {term}, lease TTL {TTL} s)", lines
        )
        self.assertIn(
            f"[Worker n1] [Failover] Master for term {term}: starting the master's services.",
            lines,
        )
        self.assertFalse([line for line in lines if line.startswith("[Master]")], lines)
        n1.roles[-1].hold = hold  # the master's stop takes a while
        self.etcd._drop_lease(n1.leadership._lease)  # type: ignore[arg-type]
        self.clock.advance(0)
        with capturedLogs() as events:
            self.clock.advance(TTL / 3)
            self.assertEqual(n1.tag(), "Candidate n1")  # between the two roles
            n1.switcher.log.info("switching")
            hold.callback(None)
        lines = tagged(events)
        self.assertIn(
            f"[Master] [Failover] Stepped down as master (term {term}): the lease expired", lines
        )
        self.assertIn("[Candidate n1] [Failover] switching", lines)
        self.assertEqual((n1.switcher.role, n2.switcher.role), (WORKER, MASTER))
        self.assertEqual((n1.tag(), n2.tag()), ("Worker n1", "Master"))

    def test_follower_relinks_when_the_master_changes(self) -> None:
        """A node that is not a candidate is always a worker; it follows each new master."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        n2 = Node(self.etcd, self.clock, "n2").start(self)
        w1 = Node(self.etcd, self.clock, "w1", candidate=False).start(self)
        self.clock.advance(0)
        self.assertEqual(w1.follows(), ["10.0.0.1:1516"])
        n1.switcher.stopService()  # a clean stop revokes the lease: n2 takes over at once
        self.clock.advance(0)
        self.assertEqual(n2.switcher.role, MASTER)
        self.clock.advance(TTL / 3)
        self.assertEqual(w1.follows(), ["10.0.0.1:1516", "10.0.0.2:1516"])
        self.assertEqual([entry for entry in w1.log if entry[1] != "follow"], [("worker", "start")])
        self.assertFalse(w1.leadership.candidate)

    def test_master_stops_before_the_lease_is_revoked(self) -> None:
        """At a node's stop its master's services stop first; only then is the lease
        revoked, so no other candidate leads while they still run."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        self.clock.advance(0)
        master = n1.roles[-1]
        master.hold = Deferred()
        stopped = n1.switcher.stopService()
        self.assertNoResult(stopped)
        self.assertIn(KEY.encode(), self.etcd.keys)
        master.hold.callback(None)
        self.successResultOf(stopped)
        self.assertNotIn(KEY.encode(), self.etcd.keys)

    def test_demotion_during_a_promotion(self) -> None:
        """The lease is lost while the worker is still stopping for a promotion: the
        switch ends in the role the election says now, never two roles at once."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        worker = n1.roles[0]
        worker.hold = Deferred()
        self.clock.advance(0)
        self.assertIsNone(n1.switcher.role)
        self.assertEqual(n1.switcher.failover_status()["role"], "switching")
        self.etcd._drop_lease(n1.leadership._lease)  # type: ignore[arg-type]
        lost: list[int] = []
        n1.leadership.subscribe(lost=lambda term, reason: lost.append(term))
        self.clock.advance(TTL / 3)  # the keepalive finds the lease gone: stepped down
        self.assertEqual(len(lost), 1)
        worker.hold.callback(None)
        self.clock.advance(0)
        self.assertIn(n1.switcher.role, (WORKER, MASTER))  # re-elected at once is allowed
        self.assertEqual(len(n1.running), 1)
        self.assertEqual(n1.switcher.role == MASTER, n1.leadership.is_leader)

    def test_sighup_reaches_the_current_role(self) -> None:
        """SIGHUP runs the reload actions of whichever role runs now."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        self.clock.advance(0)
        reloaded: list[str] = []
        n1.roles[-1].reload_actions = [lambda: reloaded.append("master")]  # type: ignore[attr-defined]
        self.successResultOf(n1.switcher.reload())
        self.assertEqual(reloaded, ["master"])

    def test_status_for_operators(self) -> None:
        """failover_status says who leads, where, since when, and the candidates."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        w1 = Node(self.etcd, self.clock, "w1", candidate=False).start(self)
        self.clock.advance(5)
        self.assertTrue(verifyObject(IFailoverView, w1.switcher))
        status = w1.switcher.failover_status()
        term = n1.leadership.term
        self.assertEqual(
            status,
            {
                "node": "w1",
                "candidate": False,
                "role": WORKER,
                "master": "n1",
                "master_address": "10.0.0.1:1516",
                "term": term,
                "last_election": 5.0,
                "candidates": ["n1", "n2"],
                "lease_ttl": TTL,
                "etcd": "ok",
                "read_only": False,
                "promotions": 0,
                "demotions": 0,
            },
        )
        self.etcd.down = True
        self.clock.advance(TTL / 3)
        self.assertIn("connection refused", w1.switcher.failover_status()["etcd"])


class CutEtcd:
    """One node's way to a shared etcd, which the test can cut (a partition)."""

    def __init__(self, etcd: MemoryEtcd) -> None:
        self.etcd = etcd
        self.cut = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.etcd, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise EtcdUnavailable("connection refused", endpoint="http://cut")
            return target(*args, **kwargs)

        return call


class ReadOnlyMasterTests(SynchronousTestCase):
    """A master that loses etcd keeps its services read-only; it runs as a worker once
    etcd names another master, and restarts them through the take-over when re-elected."""

    def setUp(self) -> None:
        """An in-memory etcd on a clock."""
        self.clock = Clock()
        self.etcd = MemoryEtcd(self.clock)

    def lose_etcd(self, node: Node) -> list[str]:
        """Let a whole TTL pass without etcd; the log lines of that time."""
        with capturedLogs() as events:
            for _ in range(4):
                self.clock.advance(TTL / 3)
        return [formatEvent(event) for event in events]

    def test_etcd_down_keeps_the_master_read_only(self) -> None:
        """etcd down: the term ends (fenced writes refused) but the master's services keep
        running, read-only; etcd back with the old lease expired: elected again, the
        master's services restart through the take-over."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        taken: list[int] = []
        n1.switcher.prepare_master = lambda: succeed(taken.append(1))
        self.clock.advance(0)
        self.assertEqual((n1.switcher.role, taken), (MASTER, [1]))
        n1.log.clear()
        self.etcd.down = True
        lines = self.lose_etcd(n1)
        self.assertFalse(n1.leadership.is_leader)
        self.assertEqual((n1.switcher.role, n1.switcher.read_only), (MASTER, True))
        self.assertEqual(n1.log, [])  # nothing stopped
        self.assertTrue(any("keep serving read-only" in line for line in lines), lines)
        status = n1.switcher.failover_status()
        self.assertEqual((status["role"], status["read_only"]), (MASTER, True))
        self.assertIsNone(status["master"])
        self.assertIn("connection refused", status["etcd"])
        self.etcd.down = False
        for _ in range(3):
            self.clock.advance(TTL / 3)
        self.assertTrue(n1.leadership.is_leader)
        self.assertEqual((n1.switcher.role, n1.switcher.read_only), (MASTER, False))
        self.assertEqual(n1.log, [("master", "stop"), ("master", "stopped"), ("master", "start")])
        self.assertEqual(taken, [1, 1])

    def test_cut_off_master_steps_down_when_etcd_names_another(self) -> None:
        """n1 cut off from etcd: read-only; n2 is elected once n1's lease expires; n1 stays
        read-only while it cannot see that, and runs as a worker following n2 as soon as
        etcd answers it."""
        way = CutEtcd(self.etcd)
        n1 = Node(way, self.clock, "n1").start(self)  # type: ignore[arg-type]
        n2 = Node(self.etcd, self.clock, "n2").start(self)
        self.clock.advance(0)
        self.assertEqual(n1.switcher.role, MASTER)
        way.cut = True
        self.lose_etcd(n1)
        self.assertTrue(n1.switcher.read_only)
        for _ in range(3):
            self.clock.advance(TTL / 3)
        self.assertEqual(n2.switcher.role, MASTER)
        self.assertEqual((n1.switcher.role, n1.switcher.read_only), (MASTER, True))
        way.cut = False
        with capturedLogs() as events:
            self.clock.advance(TTL / 3)
        lines = [formatEvent(event) for event in events]
        self.assertTrue(any("etcd names n2 master" in line for line in lines), lines)
        self.assertEqual((n1.switcher.role, n1.switcher.read_only), (WORKER, False))
        self.assertEqual(n1.follows(), ["10.0.0.2:1516"])

    def test_refused_write_still_demotes(self) -> None:
        """A master whose etcd answers but names another term is a worker at once (only
        silence from etcd keeps the services read-only)."""
        n1 = Node(self.etcd, self.clock, "n1").start(self)
        n2 = Node(self.etcd, self.clock, "n2").start(self)
        self.clock.advance(0)
        self.etcd._drop_lease(n1.leadership._lease)  # type: ignore[arg-type]
        self.clock.advance(0)
        self.clock.advance(TTL / 3)
        self.assertEqual(n2.switcher.role, MASTER)
        self.assertEqual((n1.switcher.role, n1.switcher.read_only), (WORKER, False))


@define
class LinkWorld:
    """Two masters listening in memory (master-a on 1516, master-b on 1517) and a worker's
    link, not yet started, whose target names no master yet."""

    reactor: MemoryReactorClock
    first: MasterNode
    second: MasterNode
    completer: ConnectionCompleter
    target: MasterTarget
    link: MasterLink
    #: The addresses the target made an endpoint for, in order.
    made: list[tuple[str, int]]

    @classmethod
    def build(cls, case: SynchronousTestCase) -> LinkWorld:
        """The world of one test (its homes under a temporary folder of ``case``)."""
        base = str(short_temp_dir(case))
        reactor = MemoryReactorClock()
        first = MasterNode(write_config(base, "master-a", "master"), reactor)
        second = MasterNode(write_config(base, "master-b", "master"), reactor)
        reactor.listenTCP(1516, first.build_factory(lambda transport: {"worker1"}))
        reactor.listenTCP(1517, second.build_factory(lambda transport: {"worker1"}))
        made: list[tuple[str, int]] = []

        def make(host: str, port: int) -> TCP4ClientEndpoint:
            made.append((host, port))
            return TCP4ClientEndpoint(reactor, host, port)

        target = MasterTarget(make)
        cluster = write_config(base, "worker1", "worker").cluster
        link = MasterLink(cluster, target, reactor, jitter=lambda: 0)
        case.addCleanup(link.stopService)
        completer = ConnectionCompleter(reactor)
        return cls(reactor, first, second, completer, target, link, made)

    def connect(self, greet: bool = True) -> IOPump:
        """Complete the link's pending dial (with ``greet`` False, nothing is delivered
        yet: the handshake is still in flight)."""
        pump = self.completer.succeedOnce(greet=greet)
        assert pump is not None, "the link dialled nothing"
        return pump


def errors_in(events: list[dict[str, Any]]) -> list[str]:
    """The captured log events at level error or above, formatted."""
    return [formatEvent(event) for event in events if event["log_level"] >= LogLevel.error]


class RelinkTests(SynchronousTestCase):
    """A worker's link follows the master the election names."""

    def test_link_moves_to_the_new_master(self) -> None:
        """No master known: no dial. Told of one: it dials it at once and joins. Told of
        another: it drops the first link and joins the second at once."""
        world = LinkWorld.build(self)
        link, target, reactor = world.link, world.target, world.reactor
        with capturedLogs() as events:
            link.startService()
        [waiting] = [e for e in events if "no master elected yet" in formatEvent(e)]
        self.assertEqual(waiting["log_level"], LogLevel.info)  # normal before an election
        self.assertEqual(reactor.tcpClients, [])
        self.assertEqual(link.last_error, "no master elected yet")

        self.assertTrue(target.move("127.0.0.1", 1516))
        link.relink()
        self.assertEqual([client[1] for client in reactor.tcpClients], [1516])
        pump = world.connect()
        pump.flush()
        self.assertEqual(link.master_name, "master-a")
        self.assertEqual(world.first.workers.names(), ["worker1"])

        self.assertFalse(target.move("127.0.0.1", 1516))  # no move, no relink needed
        self.assertTrue(target.move("127.0.0.1", 1517))
        moved = link.relink()
        pump.flush()
        self.successResultOf(moved)
        self.assertEqual(world.first.workers.names(), [])
        self.assertEqual([client[1] for client in reactor.tcpClients], [1517])
        world.connect().flush()
        self.assertTrue(link.connected)
        self.assertEqual(link.master_name, "master-b")
        self.assertEqual(world.second.workers.names(), ["worker1"])
        self.assertEqual(world.made, [("127.0.0.1", 1516), ("127.0.0.1", 1517)])  # once each

    def test_link_moves_while_its_handshake_is_in_flight(self) -> None:
        """Told of another master while the first one has not yet answered the handshake:
        the half-made link is dropped (no error from the connection machine) and the worker
        joins the new master at once."""
        world = LinkWorld.build(self)
        link = world.link
        link.startService()
        self.assertTrue(world.target.move("127.0.0.1", 1516))
        link.relink()
        pump = world.connect(greet=False)  # the Challenge is written, not yet delivered
        self.assertFalse(link.connected)

        self.assertTrue(world.target.move("127.0.0.1", 1517))
        with capturedLogs() as events:
            moved = link.relink()
            pump.flush()
            self.successResultOf(moved)
            world.connect().flush()
        self.assertEqual(errors_in(events), [])
        self.assertTrue(link.connected)
        self.assertEqual(link.master_name, "master-b")
        self.assertEqual(world.first.workers.names(), [])
        self.assertEqual(world.second.workers.names(), ["worker1"])

    def test_stop_while_the_handshake_is_in_flight(self) -> None:
        """A worker stopped before the master answered its handshake aborts the half-made
        link; the stop completes once that connection has ended, with no error."""
        world = LinkWorld.build(self)
        world.target.move("127.0.0.1", 1516)
        world.link.startService()
        pump = world.connect(greet=False)
        with capturedLogs() as events:
            stopped = world.link.stopService()
            self.assertNoResult(stopped)  # the aborted connection has not ended yet
            pump.flush()
            self.successResultOf(stopped)
        self.assertEqual(errors_in(events), [])
        self.assertFalse(world.link.connected)
        self.assertEqual(world.first.workers.names(), [])
        self.assertEqual(world.reactor.tcpClients, [])  # no dial after the stop

    def test_master_closing_during_the_handshake_means_a_retry(self) -> None:
        """A master that closes the connection before it answered the handshake is an
        ordinary failed attempt: the worker logs why, dials again after the retry delay and
        joins (no error from the connection machine)."""
        world = LinkWorld.build(self)
        link = world.link
        world.target.move("127.0.0.1", 1516)
        with capturedLogs() as events:
            link.startService()
            pump = world.connect(greet=False)
            pump.serverIO.loseConnection()
            pump.flush()
            self.assertFalse(link.connected)
            self.assertEqual(world.reactor.tcpClients, [])  # the retry waits for its delay
            world.reactor.advance(link.timings.reconnect)
            world.connect().flush()
        self.assertTrue(link.connected)
        self.assertEqual(world.first.workers.names(), ["worker1"])
        errors = errors_in(events)
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("Could not connect to master", errors[0])


FAILOVER_BLOCK = (
    "    <failover>\n"
    "      <etcd><endpoint>http://127.0.0.1:2379</endpoint></etcd>\n"
    "      <lease_ttl>3s</lease_ttl>\n"
    "      <candidates><node>master</node><node>master-b</node></candidates>\n"
    "    </failover>\n"
)


class WiringTests(SynchronousTestCase):
    """The node's service tree with and without ``<failover>``."""

    def config(self, name: str, role: str, failover: bool) -> Any:
        """A node's configuration in a temporary home."""
        from wazuhcluster.config.cluster import load_config
        from wazuhcluster.config.home import Home
        from wazuhcluster.testing.devcluster import cluster_config, install_certificates
        from wazuhcluster.util.tls import create_ca

        home = Home(short_temp_dir(self) / name)
        home.make_dirs()
        install_certificates(home, create_ca(), name)
        text = cluster_config(
            name, role, "k" * 32, 1516, cluster_extra=FAILOVER_BLOCK if failover else ""
        )
        home.config_file.write_text(text)
        return load_config(home.config_file, home)

    def test_failover_node_runs_the_switcher(self) -> None:
        """With ``<failover>`` the role is a RoleSwitcher: a candidate publishes its
        ``<nodes><node>`` address and port, a plain worker only follows. Without it the
        tree holds the fixed role, as before."""
        from wazuhcluster.master.node import MasterService
        from wazuhcluster.tap import build_service

        reactor = MemoryReactorClock()
        top = build_service(self.config("master", "master", True), reactor)  # type: ignore[arg-type]
        switcher = top.getServiceNamed("role-switcher")
        assert isinstance(switcher, RoleSwitcher)
        self.assertTrue(switcher.leadership.candidate)
        self.assertEqual(switcher.leadership.address, Address("127.0.0.1", 1516))
        self.assertEqual(switcher.candidates, ("master", "master-b"))
        worker_top = build_service(self.config("w1", "worker", True), reactor)  # type: ignore[arg-type]
        follower = worker_top.getServiceNamed("role-switcher")
        assert isinstance(follower, RoleSwitcher)
        self.assertFalse(follower.leadership.candidate)
        self.assertIsNone(follower.leadership.address)
        plain = build_service(self.config("master", "master", False), reactor)  # type: ignore[arg-type]
        self.assertEqual([type(s) for s in plain][-1], MasterService)
        self.assertRaises(KeyError, plain.getServiceNamed, "role-switcher")

    def test_candidate_lines_say_what_it_is(self) -> None:
        """A candidate configured as ``master`` tags its election's, its switches' and its
        SIGHUP lines with what it runs when each is written: ``Master`` only while it runs
        the master's services, ``Worker <name>`` while a worker, ``Candidate <name>``
        between the two. A node that is not a candidate is always ``Worker <name>``, and
        a node without ``<failover>`` keeps its fixed tag."""
        from wazuhcluster.tap import build_service
        from wazuhcluster.util.signals import SignalHandlers

        reactor = MemoryReactorClock()
        top = build_service(self.config("master", "master", True), reactor)  # type: ignore[arg-type]
        switcher = top.getServiceNamed("role-switcher")
        assert isinstance(switcher, RoleSwitcher)
        [hup] = [service for service in top if isinstance(service, SignalHandlers)]
        logs = [switcher.log, switcher.leadership.log, hup.log]  # type: ignore[attr-defined]

        def tags() -> set[str]:
            with capturedLogs() as events:
                for log in logs:
                    log.info("a line")
            return {format_line(event).split("] ")[0].split("[")[1] for event in events}

        self.assertEqual(tags(), {"Candidate master"})  # not started: neither role yet
        switcher.role = WORKER
        self.assertEqual(tags(), {"Worker master"})
        switcher.role = MASTER
        self.assertEqual(tags(), {"Master"})
        switcher.role = None
        self.assertEqual(tags(), {"Candidate master"})
        follower = build_service(self.config("w1", "worker", True), reactor)  # type: ignore[arg-type]
        switcher = follower.getServiceNamed("role-switcher")
        assert isinstance(switcher, RoleSwitcher)
        self.assertEqual(switcher.log.tag, "Worker w1")
        switcher.role = WORKER
        self.assertEqual(switcher.log.tag, "Worker w1")
        plain = build_service(self.config("master", "master", False), reactor)  # type: ignore[arg-type]
        [hup] = [service for service in plain if isinstance(service, SignalHandlers)]
        self.assertEqual(hup.log.tag, "Master")

    def test_worker_follows_what_it_is_told(self) -> None:
        """A real WorkerService built to follow: no master until told, then the one named;
        the control socket's answers come from the election's view."""
        from wazuhcluster.config.sections import load_sections
        from wazuhcluster.worker.node import WorkerService

        config = self.config("w1", "worker", True)
        reactor = MemoryReactorClock()
        worker = WorkerService(config, reactor, load_sections(config), follow=True)  # type: ignore[arg-type]
        self.assertTrue(verifyObject(IMasterFollower, worker))
        assert worker.target is not None
        self.assertFalse(worker.target.known)
        worker.follow_master("m1", "10.0.0.1", 1600)  # not running: nothing to drop
        self.assertEqual((worker.target.host, worker.target.port), ("10.0.0.1", 1600))
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(worker.node.local_info()))["ip"],
            "10.0.0.1:1600",
        )
        relinks: list[str] = []
        self.patch(worker.link, "relink", lambda: relinks.append("relink"))
        worker.follow_master("m1", "10.0.0.1", 1600)  # elected again where it was: dial now
        self.assertEqual(relinks, ["relink"])
        worker.link.protocol = object()  # type: ignore[assignment]
        worker.follow_master("m1", "10.0.0.1", 1600)  # linked already: nothing to do
        self.assertEqual(relinks, ["relink"])
        worker.link.protocol = None
        fixed = WorkerService(config, reactor, load_sections(config))  # type: ignore[arg-type]
        assert fixed.target is not None
        self.assertEqual((fixed.target.host, fixed.target.port), ("127.0.0.1", 1516))

"""RoleSwitcher: a node with ``<failover>`` runs the master's or the worker's services as
the election says.

A candidate runs as a worker linked to the current master until it is elected; it then
stops its worker services and starts the master's. When it steps down (lease lost, key
gone, a fenced write refused) it stops the master's services at once (the cluster
listener, enrollments, the API) and runs as a worker again. A node that is not a candidate
only follows: it is always a worker, linked to whoever leads. Each role is built fresh by
the existing constructors (handed in as factories), so nothing here knows either role and
master/ and worker/ stay independent; one switch runs at a time, the old role's services
fully stopped before the new one's start (they share ports and the control socket).

A master that steps down only because etcd does not answer (the lease could not be renewed
in time: etcd down, or cut off from it) keeps its services running **read-only** instead:
its fenced writes are refused, so enrollments, deletions and API writes fail with a clear
error, while agents, workers and API reads are still served. It runs as a worker as soon
as etcd names another master; when etcd answers and elects it again, its master's
services are restarted through the take-over (another master may have led meanwhile).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wazuhcluster.control.interfaces import IFailoverView
from wazuhcluster.failover.election import (
    Address,
    ElectedCallback,
    LeaderCallback,
    LostCallback,
    Term,
)
from wazuhcluster.node.interfaces import IMasterFollower
from wazuhcluster.util.logs import ClusterLog

MASTER = "master"
WORKER = "worker"


class Leadership(Protocol):
    """What the switcher uses of :class:`~wazuhcluster.failover.election.LeadershipService`."""

    node_name: str
    candidate: bool
    ttl: int
    leader: Term | None
    term: int | None
    last_election: float | None
    address: Address | None

    @property
    def etcd_problem(self) -> str | None:
        """Why etcd did not answer the last round (None: it answers)."""

    def subscribe(
        self,
        elected: ElectedCallback | None = None,
        lost: LostCallback | None = None,
        leader_changed: LeaderCallback | None = None,
    ) -> None:
        """Be told of elections, demotions and leader changes."""

    def resign(self, reason: str) -> None:
        """Give up leading now."""

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        """Start campaigning or following."""

    def stopService(self) -> Deferred[None]:  # noqa: N802 - Twisted's name
        """Stop (a leader revokes its lease)."""


class RoleTag:
    """The cluster.log tag of a node with ``<failover>`` when a line is written: what the
    node is at that moment. ``Master`` while it runs the master's services (as a node
    without ``<failover>`` says), ``Worker <name>`` while it runs as a worker (always, for a
    node that is not a candidate), ``Candidate <name>`` between the two (taking over the
    cluster's state, or stopping one role for the other). The switcher it describes is
    set once built (:class:`RoleSwitcher` does it); the loggers are made before."""

    def __init__(self, node_name: str, candidate: bool) -> None:
        self.node_name = node_name
        self.candidate = candidate
        self.switcher: RoleSwitcher | None = None

    def __call__(self) -> str:
        role = None if self.switcher is None else self.switcher.role
        if role == MASTER:
            return "Master"
        if role == WORKER or not self.candidate:
            return f"Worker {self.node_name}"
        return f"Candidate {self.node_name}"


@implementer(IFailoverView)
class RoleSwitcher(Service):
    """Owns the election and, at any time, at most one role: a master or a worker.

    ``make_master()`` and ``make_worker()`` build a new, unstarted role service each time
    they are called; the worker must provide :class:`IMasterFollower`.
    """

    def __init__(
        self,
        leadership: Leadership,
        make_master: Callable[[], IService],
        make_worker: Callable[[], IService],
        candidates: Sequence[str],
        clock: IReactorTime,
        log: ClusterLog,
        prepare_master: Callable[[], Awaitable[object]] | None = None,
        tag: RoleTag | None = None,
    ) -> None:
        self.setName("role-switcher")
        #: The tag of this node's cluster.log lines that are not the role's own (the
        #: election's, the switches', SIGHUP's): it follows ``role``.
        self.tag = tag or RoleTag(leadership.node_name, leadership.candidate)
        self.tag.switcher = self
        #: Run after the old role stopped and before the master's services start (a new
        #: master loads the cluster's durable state); when it fails this node resigns.
        self.prepare_master = prepare_master
        self.leadership = leadership
        self.make_master = make_master
        self.make_worker = make_worker
        self.candidates = tuple(candidates)
        self.clock = clock
        self.log = log
        #: The role service running now (None between two roles or when stopped).
        self.current: IService | None = None
        #: MASTER or WORKER while ``current`` runs, else None.
        self.role: str | None = None
        #: The role the election asks for.
        self.wanted = WORKER
        #: How many times this node became master, and stepped down, since it started.
        self.promotions = 0
        self.demotions = 0
        #: A master kept serving reads while etcd does not answer (see module docstring).
        self.read_only = False
        self._restart = False
        self._switching: Deferred[None] | None = None
        self._again = False
        leadership.subscribe(
            elected=self._elected, lost=self._lost, leader_changed=self._leader_changed
        )

    # -- the service -----------------------------------------------------------------------

    def startService(self) -> None:
        """Run as a worker at once, then start the election."""
        super().startService()
        self._converge()
        self.leadership.startService()

    def stopService(self) -> Deferred[None]:
        """Stop the role first (no master's services outlive the lease), then the election,
        which revokes a leader's lease so another candidate takes over at once."""
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._switching is not None:
            await self._switching
        current, self.current, self.role = self.current, None, None
        if current is not None:
            await maybeDeferred(current.stopService)
        await maybeDeferred(self.leadership.stopService)

    def reload(self) -> Deferred[Any]:
        """SIGHUP: run the current role's reload actions (fails if one of them does)."""
        actions: Sequence[Callable[[], object]] = getattr(self.current, "reload_actions", ())
        return gatherResults([maybeDeferred(action) for action in actions], consumeErrors=True)

    # -- what the election says ------------------------------------------------------------

    def _elected(self, term: int) -> None:
        self.wanted = MASTER
        if self.read_only:
            # Elected anew after etcd came back: the state may have moved meanwhile.
            self.read_only, self._restart = False, True
        self.log.info("Master for term {term}: starting the master's services.", term=term)
        self._converge()

    def _lost(self, term: int, reason: str) -> None:
        self.wanted = WORKER
        problem = self.leadership.etcd_problem
        if self.running and self.role == MASTER and problem is not None:
            self.read_only = True
            self.log.warn(
                "etcd does not answer ({problem}): the master's services keep serving "
                "read-only (term {term} ended: {reason}); enrollments, deletions and API "
                "writes are refused until etcd answers.",
                problem=problem,
                term=term,
                reason=reason,
            )
            return
        self.read_only = False
        if self.running:
            self.log.warn(
                "No longer master (term {term}: {reason}): stopping the master's services "
                "and running as a worker.",
                term=term,
                reason=reason,
            )
        self._converge()

    def _leader_changed(self, leader: Term | None) -> None:
        if self.read_only and leader is not None and leader.leader != self.leadership.node_name:
            self.read_only = False
            self.log.warn(
                "etcd names {name} master (term {term}): the read-only master's services "
                "stop; running as a worker.",
                name=leader.leader,
                term=leader.number,
            )
            self._converge()
            return
        if self.role == WORKER and self.current is not None:
            self._follow(self.current, leader)

    def _follow(self, worker: IService, leader: Term | None) -> None:
        if leader is None or leader.leader == self.leadership.node_name:
            return
        if leader.address is None:
            self.log.warn(
                "The master {name} (term {term}) published no address; cannot link to it.",
                name=leader.leader,
                term=leader.number,
            )
            return
        follower = IMasterFollower(worker)
        follower.follow_master(leader.leader, leader.address.host, leader.address.port)

    # -- switching -------------------------------------------------------------------------

    def _converge(self) -> None:
        """Bring the running role in line with the wanted one; one switch at a time."""
        if not self.running:
            return
        if self._switching is not None:
            self._again = True
            return
        switching = self._switching = Deferred.fromCoroutine(self._switch())

        def done(_: object) -> None:
            self._switching = None
            if self._again:
                self._again = False
                self._converge()

        switching.addErrback(lambda failure: self.log.failure("Role switch failed", failure))
        switching.addBoth(done)

    async def _switch(self) -> None:
        while self.running and (self.role != self.wanted or self._restart):
            if self.read_only:
                return  # kept as it is until etcd answers (see module docstring)
            self._restart = False
            current, previous = self.current, self.role
            self.current = self.role = None
            if current is not None:
                await maybeDeferred(current.stopService)
            if previous == MASTER:
                self.demotions += 1
            if not self.running:
                return
            wanted = self.wanted
            if wanted == MASTER and not await self._prepared():
                continue
            try:
                service = self.make_master() if wanted == MASTER else self.make_worker()
                if wanted == WORKER:
                    self._follow(service, self.leadership.leader)
                self.current, self.role = service, wanted
                service.startService()
            except Exception as error:
                if wanted == WORKER:
                    raise  # logged by _converge; nothing else to run
                self.log.failure("Could not start the master's services")
                self.current = self.role = None
                self.leadership.resign(f"could not start the master's services ({error})")
                continue
            if wanted == MASTER:
                self.promotions += 1

    async def _prepared(self) -> bool:
        """Run ``prepare_master``; False (and this node resigns) when it fails or the
        leadership was lost meanwhile."""
        if self.prepare_master is not None:
            try:
                await self.prepare_master()
            except Exception as error:
                reason = f"could not take over the cluster's state ({error})"
                self.log.error("Giving up the leadership: {reason}.", reason=reason)
                self.leadership.resign(reason)
                return False
        return bool(self.running) and self.wanted == MASTER

    def idle(self) -> Deferred[None]:
        """Fires once no switch is in progress (for tests and orderly stops)."""
        return succeed(None) if self._switching is None else self._switching

    # -- what operators see ----------------------------------------------------------------

    def failover_status(self) -> dict[str, Any]:
        """The election as this node sees it (times as POSIX seconds)."""
        leadership = self.leadership
        leader = leadership.leader
        return {
            "node": leadership.node_name,
            "candidate": leadership.candidate,
            "role": self.role or "switching",
            "master": None if leader is None else leader.leader,
            "master_address": None
            if leader is None or leader.address is None
            else str(leader.address),
            "term": None if leader is None else leader.number,
            "last_election": (
                leader.since
                if leader is not None and leader.since is not None
                else leadership.last_election
            ),
            "candidates": list(self.candidates),
            "lease_ttl": leadership.ttl,
            "etcd": leadership.etcd_problem or "ok",
            "read_only": self.read_only,
            "promotions": self.promotions,
            "demotions": self.demotions,
        }

"""The master's election through etcd, with fenced writes.

Every candidate holds a lease of ``ttl`` seconds, renewed every ``ttl / 3``. It campaigns with
one transaction: *if the leader key does not exist, create it with my name, bound to my
lease*. The one whose transaction succeeds is the leader; its **term** is the revision that
created the key, which only grows from one election to the next. Nobody else can create the
key while it exists, and it disappears with the leader's lease: revoked at a clean stop,
expired when the leader dies or loses etcd.

The leader steps down (and says why in cluster.log) when:

- a keepalive says its lease is gone (expired or revoked),
- the leader key is missing or was created by someone else (another term),
- it could not renew its lease for a whole TTL: the deadline is counted from the moment the
  last successful keepalive was *sent*, so the leader always gives up before etcd lets the
  lease expire and another candidate can be elected,
- a fenced write finds the leader key no longer its own.

Every durable write of the master goes through :meth:`LeadershipService.fenced_txn` (or
:meth:`~LeadershipService.fenced_put`): a transaction that applies only if the leader key
still has this term's create revision and this node's lease, so a deposed or partitioned
master can commit nothing, whatever its own clock believes. A fenced write that gets no
answer (a member died or hangs) is sent again to the next member until the term ends; a
marker set in the same transaction makes it apply exactly once (see
:mod:`wazuhcluster.failover.fenced`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from wazuhcluster.failover.fenced import (
    MAX_RESYNCS,
    Applied,
    Deposed,
    FencedWrite,
    MarkerSlots,
    marker_prefix,
    new_nonce,
)
from wazuhcluster.failover.kv import (
    Compare,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    TxnResult,
    WatchResponse,
    to_bytes,
)
from wazuhcluster.util.logs import ClusterLog

ElectedCallback = Callable[[int], object]
LostCallback = Callable[[int, str], object]
LeaderCallback = Callable[["Term | None"], object]


class NotLeader(Exception):
    """A fenced write refused: this node is not (or no longer) the leader."""


class WatchLike(Protocol):
    """What the election uses of a watch."""

    ended: Deferred[Any]

    def stop(self) -> None:
        """End the watch."""


class EtcdLike(Protocol):
    """What the election uses of :class:`~wazuhcluster.failover.client.EtcdClient`."""

    async def grant(self, ttl: int) -> Lease:
        """A new lease."""

    async def keepalive(self, lease: int, timeout: float | None = None) -> Lease:
        """Renew a lease (LeaseNotFound when gone), trying the next member on no answer."""

    async def revoke(self, lease: int) -> None:
        """End a lease."""

    async def get(self, key: bytes | str, timeout: float | None = None) -> KeyValue | None:
        """One key, trying the next member on no answer."""

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
        timeout: float | None = None,
        retry: bool = False,
    ) -> TxnResult:
        """A transaction (with ``retry``, repeated on the next member on no answer)."""

    def watch(
        self,
        key: bytes | str,
        on_response: Callable[[WatchResponse], None],
        range_end: bytes | str | None = None,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> WatchLike:
        """Watch a key."""


#: The longest leader value read back (a name and an address are far shorter).
MAX_LEADER_VALUE = 1024
_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")


@frozen
class Address:
    """Where the cluster's nodes reach a node: its cluster address and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@frozen
class Term:
    """Who leads, since which revision (the term), as this node last saw it, and where the
    leader said it can be reached (None: it did not say, or said it badly)."""

    leader: str
    number: int
    lease: int
    address: Address | None = None
    #: When the leader campaigned for this term, by its own clock (None: not said).
    since: float | None = None


def leader_value(node_name: str, address: Address | None, since: float | None = None) -> bytes:
    """The leader key's value: the node's name, with its address (and the time it
    campaigned) when it has one."""
    if address is None:
        return node_name.encode()
    record: dict[str, Any] = {"node": node_name, "host": address.host, "port": address.port}
    if since is not None:
        record["since"] = since
    return json.dumps(record, sort_keys=True).encode()


def leader_since(value: bytes) -> float | None:
    """When the leader says it campaigned (from :func:`leader_value`'s JSON), or None."""
    if len(value) > MAX_LEADER_VALUE or not value.startswith(b"{"):
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return None
    since = record.get("since") if isinstance(record, dict) else None
    if isinstance(since, bool) or not isinstance(since, (int, float)) or since < 0:
        return None
    return float(since)


def parse_leader_value(value: bytes) -> tuple[str, Address | None]:
    """The leader's name and address from the key's value (a bare name, or the JSON object
    :func:`leader_value` writes); a value that is neither gives its text and no address."""
    if len(value) > MAX_LEADER_VALUE:
        return "<oversized leader value>", None
    text = value.decode("utf-8", "replace")
    if not text.startswith("{"):
        return text, None
    try:
        record = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(record, dict):
        return text, None
    name, host, port = record.get("node"), record.get("host"), record.get("port")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return text, None
    if (
        not isinstance(host, str)
        or not _HOST.fullmatch(host)
        or not isinstance(port, int)
        or isinstance(port, bool)
        or not 0 < port < 65536
    ):
        return name, None
    return name, Address(host, port)


class LeadershipService(Service):
    """Campaigns for (or, with ``candidate=False``, only follows) the leader key.

    Callbacks registered with :meth:`subscribe` run on the reactor: ``elected(term)`` when
    this node becomes leader, ``lost(term, reason)`` when it stops being leader (including
    at stop), ``leader_changed(term or None)`` whenever the leader this node sees changes.
    """

    def __init__(
        self,
        client: EtcdLike,
        key: str,
        node_name: str,
        ttl: int,
        clock: IReactorTime,
        log: ClusterLog,
        candidate: bool = True,
        address: Address | None = None,
    ) -> None:
        if ttl < 2:
            raise ValueError("the lease TTL must be at least 2 seconds")
        self.setName("leadership")
        self.client = client
        self.key = key
        self.node_name = node_name
        self.ttl = ttl
        self.clock = clock
        self.log = log
        self.candidate = candidate
        #: Where this node is reached when it leads (written into the leader key).
        self.address = address
        #: Seconds between keepalives and campaign attempts.
        self.interval = ttl / 3
        #: The longest wait for one member's answer to a keepalive or a read: a member that
        #: hangs is passed over for the next one while the lease has time left.
        self.request_timeout = self.interval
        #: The pause before a fenced write no member answered is sent round them again.
        self.write_pause = min(0.5, self.interval / 4)
        self._markers = MarkerSlots(marker_prefix(key, node_name))
        self._nonce = new_nonce()
        self._writes = 0
        #: The leader as last seen (None: no leader, or not known).
        self.leader: Term | None = None
        #: Our own term while we lead.
        self.term: int | None = None
        #: When this node last saw an election (clock seconds), or None.
        self.last_election: float | None = None
        self._lease: int | None = None
        #: Lease revokes on their way (a resignation's), waited for at stop.
        self._revokes: set[Deferred[None]] = set()
        self._lease_deadline = 0.0
        self._deadline_call: IDelayedCall | None = None
        self._next_call: IDelayedCall | None = None
        self._running_tick: Deferred[None] | None = None
        self._again = False
        self._watch: WatchLike | None = None
        self._unreachable: str | None = None
        #: No campaign before this clock time (after resigning).
        self._hold_off_until = 0.0
        self._elected: list[ElectedCallback] = []
        self._lost: list[LostCallback] = []
        self._leader_changed: list[LeaderCallback] = []

    # -- what the roles use --------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this node leads now (and its lease has not run out by its own clock)."""
        return self.term is not None and self.clock.seconds() < self._lease_deadline

    @property
    def etcd_problem(self) -> str | None:
        """Why etcd did not answer the last round (None: it answered)."""
        return self._unreachable

    def subscribe(
        self,
        elected: ElectedCallback | None = None,
        lost: LostCallback | None = None,
        leader_changed: LeaderCallback | None = None,
    ) -> None:
        """Be told of elections, demotions and leader changes."""
        if elected is not None:
            self._elected.append(elected)
        if lost is not None:
            self._lost.append(lost)
        if leader_changed is not None:
            self._leader_changed.append(leader_changed)

    async def fenced_txn(
        self,
        success: Sequence[Op],
        compare: Sequence[Compare] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Run ``success`` only while this node still leads (and ``compare`` holds), once.

        A member that does not answer is passed over for the next one after
        :attr:`request_timeout`, round the members again while the term lasts: the write
        applies exactly once however many attempts it took (:mod:`~wazuhcluster.failover.
        fenced`). Raises :class:`NotLeader` when this node does not lead, or etcd says it no
        longer does and the write did not apply (this node then steps down); an
        :class:`EtcdUnavailable` when no member answered before the term ended (the write
        may or may not be in etcd). When only the caller's ``compare`` fails the result has
        ``succeeded`` False and ``failure`` ran. A write found applied by an attempt whose
        answer was lost has no ``ranges`` nor ``deleted`` counts.
        """
        term, lease = self._require_leader()
        slot = await self._markers.take()
        try:
            return await self._write(
                term, lease, slot, tuple(success), tuple(compare), tuple(failure)
            )
        finally:
            self._markers.release(slot)

    async def _write(
        self,
        term: int,
        lease: int,
        slot: int,
        success: tuple[Op, ...],
        compare: tuple[Compare, ...],
        failure: tuple[Op, ...],
    ) -> TxnResult:
        self._writes += 1
        write_id = f"{self._nonce}.{term}.{self._writes}".encode()
        resyncs = 0
        unanswered = 0
        while True:
            write = FencedWrite(
                to_bytes(self.key),
                term,
                lease,
                self._markers.key(slot),
                self._markers.revisions.get(slot, 0),
                write_id,
            )
            try:
                result = await self.client.txn(
                    *write.request(compare, success, failure),
                    timeout=self.request_timeout,
                    retry=True,
                )
            except EtcdUnavailable as error:
                if self.term != term or self.clock.seconds() >= self._lease_deadline:
                    raise EtcdUnavailable(
                        f"no etcd member answered a write before term {term} ended (it may "
                        f"or may not be stored): {error}"
                    ) from None
                unanswered += 1
                if unanswered == 1:
                    self.log.warn(
                        "No etcd member answered a write ({reason}); sending it again (it "
                        "applies once)",
                        reason=str(error),
                    )
                await deferLater(self.clock, self.write_pause)
                continue
            outcome = write.outcome(result)
            if isinstance(outcome, Applied):
                self._markers.revisions[slot] = outcome.result.revision
                if outcome.recovered:
                    self.log.info(
                        "A write's answer was lost; etcd holds it (applied once, at revision "
                        "{revision})",
                        revision=outcome.result.revision,
                    )
                if not outcome.still_leader:
                    self._step_down(term, "a fenced write found the leader key no longer ours")
                return outcome.result
            if isinstance(outcome, Deposed):
                self._step_down(term, "a fenced write found the leader key no longer ours")
                raise NotLeader(f"{self.node_name} is no longer the leader (term {term})")
            # An older write whose answer was lost landed in this slot: nothing of this one
            # applied, and its attempts so far never will (they expect the old revision).
            self._markers.revisions[slot] = outcome.revision
            resyncs += 1
            if resyncs > MAX_RESYNCS:
                raise EtcdError(
                    f"the write marker {write.marker.decode('utf-8', 'replace')} keeps "
                    "changing: does another process run as this node?"
                )

    async def fenced_put(self, key: bytes | str, value: bytes | str) -> int:
        """Set ``key`` only while this node leads; returns the revision of the write."""
        result = await self.fenced_txn([Op.put(key, value)])
        return result.revision

    # -- the service ---------------------------------------------------------------------

    def startService(self) -> None:
        """Start campaigning (or following) at once."""
        super().startService()
        self._schedule(0)

    def stopService(self) -> Deferred[None]:
        """Stop; a leader revokes its lease so another candidate takes over at once."""
        super().stopService()
        for call in (self._next_call, self._deadline_call):
            if call is not None and call.active():
                call.cancel()
        self._next_call = self._deadline_call = None
        self._stop_watch()
        if self._running_tick is not None:
            self._running_tick.cancel()  # its request is abandoned, not left in the pool
        if self.term is not None:
            self._step_down(self.term, "this node is stopping")
        lease, self._lease = self._lease, None
        if lease is not None:
            self._revoke(lease, "at stop")
        # A revoke still on its way (a resignation's) is waited for too.
        pending = list(self._revokes)
        if not pending:
            return succeed(None)
        return DeferredList(pending).addCallback(lambda _: None)

    def _revoke(self, lease: int, when: str) -> Deferred[None]:
        """Revoke ``lease`` (kept in :attr:`_revokes` until it is done; a failure is a
        warning: the lease expires by itself)."""
        revoked = Deferred.fromCoroutine(self.client.revoke(lease))
        revoked.addErrback(
            lambda failure: self.log.warn(
                "Could not revoke the lease {when} ({reason}); it expires by itself",
                when=when,
                reason=failure.getErrorMessage(),
            )
        )
        done = revoked.addCallback(lambda _: None)
        self._revokes.add(done)

        def forget(result: object) -> object:
            self._revokes.discard(done)
            return result

        return done.addBoth(forget)

    def resign(self, reason: str) -> None:
        """Give up leading now (this node cannot serve as master: ``reason``): step down,
        revoke the lease so another candidate can be elected at once, and campaign again
        only after a TTL."""
        term, lease = self.term, self._lease
        if term is None:
            return
        self._lease = None
        self._hold_off_until = self.clock.seconds() + self.ttl
        self._step_down(term, reason)
        if lease is None:
            return
        self._revoke(lease, "on resigning")

    def nudge(self) -> None:
        """Check and campaign now rather than at the next interval."""
        if not self.running:
            return
        if self._running_tick is not None:
            self._again = True
            return
        self._schedule(0)

    # -- the loop ------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._next_call is not None and self._next_call.active():
            self._next_call.cancel()
        self._next_call = self.clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._next_call = None
        if not self.running:
            return
        tick = self._running_tick = Deferred.fromCoroutine(self._tick())
        tick.addErrback(self._round_failed)

        def next_round(_: object) -> None:
            self._running_tick = None
            if self.running:
                again, self._again = self._again, False
                self._schedule(0 if again else self.interval)

        tick.addBoth(next_round)

    def _round_failed(self, failure: Failure) -> None:
        if self.running:
            self.log.failure("Election round failed", failure)

    async def _tick(self) -> None:
        try:
            if self.candidate:
                await self._renew_lease()
            if self.term is not None:
                await self._check_own_key()
            elif (
                self.candidate
                and self._lease is not None
                and self.clock.seconds() >= self._hold_off_until
            ):
                await self._campaign()
            else:
                await self._follow()
        except EtcdError as error:
            self._etcd_trouble(error)
        else:
            if self._unreachable is not None:
                self.log.info("etcd answers again")
                self._unreachable = None

    def _etcd_trouble(self, error: EtcdError) -> None:
        if not self.running:
            return  # a round cancelled by the stop
        reason = str(error)
        if self._unreachable is None:
            detail = (
                f"; still leader until {self._lease_deadline - self.clock.seconds():.1f} s "
                "pass without a renewed lease"
                if self.term is not None
                else ""
            )
            self.log.warn("etcd unreachable: {reason}{detail}", reason=reason, detail=detail)
        self._unreachable = reason

    async def _renew_lease(self) -> None:
        sent_at = self.clock.seconds()
        if self._lease is None:
            lease = await self.client.grant(self.ttl)
            self._lease = lease.id
            self._lease_deadline = sent_at + lease.ttl
            return
        try:
            lease = await self.client.keepalive(self._lease, timeout=self.request_timeout)
        except LeaseNotFound:
            self._lease = None
            if self.term is not None:
                self._step_down(self.term, "the lease expired")
            lease = await self.client.grant(self.ttl)
            self._lease = lease.id
        self._lease_deadline = sent_at + lease.ttl
        if self.term is not None:
            self._arm_deadline()

    def _arm_deadline(self) -> None:
        """Step down when the lease may have run out without a renewal."""
        delay = max(0.0, self._lease_deadline - self.clock.seconds())
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.reset(delay)
        else:
            self._deadline_call = self.clock.callLater(delay, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline_call = None
        if self.term is not None:
            # No renewal in a whole TTL is etcd not answering, even before a call failed.
            self._unreachable = self._unreachable or "no answer within the lease TTL"
            self._step_down(
                self.term,
                f"no lease renewal for {self.ttl} s (etcd unreachable: "
                f"{self._unreachable or 'no answer'})",
            )
            self._lease = None  # it has expired in etcd too, or will before anyone can win

    async def _campaign(self) -> None:
        assert self._lease is not None
        lease = self._lease
        # Safe to repeat on the next member: a campaign applied whose answer was lost makes
        # the repeat fail with the key held by our own lease, which is recognised below.
        result = await self.client.txn(
            [Compare.create_revision(self.key, "=", 0)],
            [
                Op.put(
                    self.key,
                    leader_value(self.node_name, self.address, self.clock.seconds()),
                    lease=lease,
                )
            ],
            [Op.get(self.key)],
            timeout=self.request_timeout,
            retry=True,
        )
        if result.succeeded:
            self._become_leader(result.revision, lease)
            return
        holder = result.ranges[0].first if result.ranges else None
        if holder is None:
            self.nudge()  # deleted between the compare and now: try again at once
            return
        if holder.lease == lease:
            # Our own earlier campaign succeeded but its answer was lost.
            self._become_leader(holder.create_revision, lease)
            return
        self._see_leader(holder)
        self._ensure_watch(result.revision + 1)

    async def _follow(self) -> None:
        holder = await self.client.get(self.key, timeout=self.request_timeout)
        if holder is None:
            self._set_leader(None)
        else:
            self._see_leader(holder)

    async def _check_own_key(self) -> None:
        term = self.term
        assert term is not None
        holder = await self.client.get(self.key, timeout=self.request_timeout)
        if self.term != term:
            return
        if holder is None:
            self._step_down(term, "the leader key is gone")
        elif holder.create_revision != term or holder.lease != self._lease:
            self._step_down(term, f"the leader key now belongs to term {holder.create_revision}")
            self._see_leader(holder)

    # -- transitions ---------------------------------------------------------------------

    def _become_leader(self, term: int, lease: int) -> None:
        self._stop_watch()
        self.term = term
        self.last_election = self.clock.seconds()
        self._arm_deadline()
        self.log.info("Elected master (term {term}, lease TTL {ttl} s)", term=term, ttl=self.ttl)
        self._set_leader(Term(self.node_name, term, lease, self.address, self.last_election))
        for callback in list(self._elected):
            self._call(callback, term)

    def _step_down(self, term: int, reason: str) -> None:
        if self.term != term:
            return
        self.term = None
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None
        self.log.warn("Stepped down as master (term {term}): {reason}", term=term, reason=reason)
        if self.leader is not None and self.leader.number == term:
            self._set_leader(None)
        for callback in list(self._lost):
            self._call(callback, term, reason)
        self.nudge()

    def _see_leader(self, holder: KeyValue) -> None:
        name, address = parse_leader_value(holder.value)
        since = leader_since(holder.value)
        self._set_leader(Term(name, holder.create_revision, holder.lease, address, since))

    def _set_leader(self, leader: Term | None) -> None:
        if leader == self.leader:
            return
        previous, self.leader = self.leader, leader
        if leader is not None and (previous is None or previous.number != leader.number):
            self.last_election = self.clock.seconds()
            if leader.leader != self.node_name:
                self.log.info(
                    "The master is {leader} (term {term}){where}",
                    leader=leader.leader,
                    term=leader.number,
                    where=f" at {leader.address}" if leader.address else "",
                )
        for callback in list(self._leader_changed):
            self._call(callback, leader)

    def _call(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            result = callback(*args)
        except Exception:
            self.log.failure("A leadership callback failed")
            return
        if isinstance(result, Deferred):
            result.addErrback(
                lambda failure: self.log.failure("A leadership callback failed", failure)
            )

    # -- watching the leader key ---------------------------------------------------------

    def _ensure_watch(self, start_revision: int) -> None:
        if self._watch is not None:
            return
        watch = self._watch = self.client.watch(
            self.key, self._key_changed, start_revision=start_revision
        )

        def ended(_: object) -> None:
            if self._watch is watch:
                self._watch = None

        watch.ended.addBoth(ended)

    def _key_changed(self, response: WatchResponse) -> None:
        if any(event.type == "DELETE" for event in response.events):
            self._set_leader(None)
            self.nudge()

    def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()

    def _require_leader(self) -> tuple[int, int]:
        term, lease = self.term, self._lease
        if term is None or lease is None:
            raise NotLeader(f"{self.node_name} is not the leader")
        if self.clock.seconds() >= self._lease_deadline:
            self._unreachable = self._unreachable or "no answer within the lease TTL"
            self._step_down(term, "the lease may have expired (no renewal in time)")
            raise NotLeader(f"{self.node_name} is no longer the leader (term {term})")
        return term, lease

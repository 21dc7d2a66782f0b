"""Fenced writes that may be sent again to another etcd member and still apply exactly once.

A fenced write whose answer never came (the member died, hangs, or the connection broke)
may or may not have been applied, and may even be applied later: etcd can commit a
proposal after the client gave up on it. So the transaction carries its own proof:

- **Marker slots.** The leader owns a few *marker keys*, ``<leader key>-writes/<node>/<n>``
  (:data:`WRITE_SLOTS` of them). A write in flight holds one slot for itself; the slot's
  last known ``mod_revision`` is remembered between writes.
- **The request.** *If the leader key is still this term's (create revision and lease) and
  the slot is still at the remembered revision*, run the caller's transaction and set the
  slot to this write's unique id (with ``+`` or ``-``: which branch of the caller's
  comparison ran). Otherwise read the leader key and the slot back.
- Every attempt of a write is the very same request. Whichever attempt applies first moves
  the slot past the remembered revision, so every other attempt (sent again, or still
  travelling) fails its comparison, now or whenever it arrives: **at most once**.
- An attempt that fails tells the leader which of three things happened: the slot holds
  this write's id (an earlier attempt applied, under this term since the fence was part of
  it: the write is done and durable, even if the term has ended since); the leader key is
  no longer this term's and the slot is not ours (nothing applied, and nothing ever will,
  since a create revision never comes back: refused, as any write of a deposed leader);
  or the slot moved for another reason (an older write whose outcome was never learnt
  landed late): nothing of this write applied, so it is sent again against the new
  revision. Repeating until one of the first two answers is **at least once** while the
  term lasts.

Why slots and not one marker per write: markers must not pile up. A slot is overwritten
by each write that uses it, so a node owns at most :data:`WRITE_SLOTS` keys whatever the
number of writes and terms. They are not bound to the lease on purpose: a write applied
just before the lease ran out must still be recognised afterwards. Deleting them by hand
while a write is in flight voids the guarantee for that write (nothing else does).
"""

from __future__ import annotations

import heapq
import secrets

from attrs import frozen
from twisted.internet.defer import Deferred

from wazuhcluster.failover.kv import (
    Compare,
    EtcdProtocolError,
    KeyValue,
    Op,
    TxnResult,
    to_bytes,
)

#: Fenced writes in flight at once (one marker slot each); more wait for a free slot. The
#: master's stores write one transaction at a time each, so a handful is plenty.
WRITE_SLOTS = 16
#: How many times one write is sent again after finding its slot moved by an older write.
MAX_RESYNCS = 3


def marker_prefix(leader_key: str, node_name: str) -> bytes:
    """Where ``node_name`` keeps its marker slots (beside the leader key, outside any
    prefix the stores write or delete)."""
    return to_bytes(f"{leader_key}-writes/{node_name}/")


class MarkerSlots:
    """The slots of one node: which are free, and each one's last known ``mod_revision``
    (0, an absent key, until learnt otherwise: a wrong guess costs one resend)."""

    def __init__(self, prefix: bytes, size: int = WRITE_SLOTS) -> None:
        self.prefix = prefix
        self.revisions: dict[int, int] = {}
        self._free = list(range(size))
        self._waiting: list[Deferred[int]] = []

    def key(self, slot: int) -> bytes:
        """The marker key of ``slot``."""
        return self.prefix + str(slot).encode()

    async def take(self) -> int:
        """A free slot (the lowest, so few keys are ever used), waiting for one if needed."""
        if self._free:
            return heapq.heappop(self._free)

        def forget(waiter: Deferred[int]) -> None:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

        waiter: Deferred[int] = Deferred(forget)
        self._waiting.append(waiter)
        return await waiter

    def release(self, slot: int) -> None:
        """Give ``slot`` back (to the longest waiting write, if any)."""
        while self._waiting:
            waiter = self._waiting.pop(0)
            if not waiter.called:
                waiter.callback(slot)
                return
        heapq.heappush(self._free, slot)

    @property
    def free(self) -> int:
        """How many slots are free now."""
        return len(self._free)


def new_nonce() -> str:
    """A random part of write ids: two processes never share ids, even with one node name."""
    return secrets.token_hex(4)


@frozen
class Applied:
    """The write is in etcd: ``result`` is the caller's transaction outcome. ``recovered``:
    found applied by an earlier attempt whose answer was lost (its ``ranges`` and
    ``deleted`` are then unknown and empty). ``still_leader``: the fence held when etcd
    last answered."""

    result: TxnResult
    recovered: bool
    still_leader: bool


@frozen
class Deposed:
    """Nothing of the write applied, and nothing ever will: the leader key is not ours."""

    holder: KeyValue | None


@frozen
class SlotMoved:
    """Nothing of the write applied: the slot is now at ``revision`` (send it again)."""

    revision: int


Outcome = Applied | Deposed | SlotMoved


@frozen
class FencedWrite:
    """One fenced write of ``term`` (holding ``lease``) through marker ``marker`` expected
    at ``expected``, identified by ``write_id``."""

    leader_key: bytes
    term: int
    lease: int
    marker: bytes
    expected: int
    write_id: bytes

    def request(
        self, compare: tuple[Compare, ...], success: tuple[Op, ...], failure: tuple[Op, ...]
    ) -> tuple[list[Compare], list[Op], list[Op]]:
        """The transaction to send (every attempt the same): fence and slot checked, then
        the caller's transaction with the marker set in whichever branch runs; else the
        leader key and the marker read back."""
        fence = [
            Compare.create_revision(self.leader_key, "=", self.term),
            Compare.lease(self.leader_key, "=", self.lease),
            Compare.mod_revision(self.marker, "=", self.expected),
        ]
        caller = Op.txn(
            compare,
            [*success, Op.put(self.marker, self.write_id + b"+")],
            [*failure, Op.put(self.marker, self.write_id + b"-")],
        )
        return fence, [caller], [Op.get(self.leader_key), Op.get(self.marker)]

    def outcome(self, result: TxnResult) -> Outcome:
        """What etcd's answer to :meth:`request` says happened."""
        if result.succeeded:
            if result.nested is None:
                raise EtcdProtocolError("a fenced write's answer lacks its inner transaction")
            return Applied(result.nested, recovered=False, still_leader=True)
        if len(result.ranges) != 2:
            raise EtcdProtocolError("a refused fenced write's answer lacks its two reads")
        holder, marker = result.ranges[0].first, result.ranges[1].first
        ours = (
            holder is not None
            and holder.create_revision == self.term
            and holder.lease == self.lease
        )
        if marker is not None and marker.value[:-1] == self.write_id:
            # Applied by an earlier attempt: the marker is set in the same transaction as
            # the caller's operations, under the fence, so they are in etcd, in our term.
            recovered = TxnResult(
                succeeded=marker.value.endswith(b"+"),
                revision=marker.mod_revision,
                ranges=(),
                deleted=(),
            )
            return Applied(recovered, recovered=True, still_leader=ours)
        if not ours:
            return Deposed(holder)
        now = marker.mod_revision if marker is not None else 0
        if now == self.expected:
            raise EtcdProtocolError("etcd refused a fenced write whose conditions all held")
        return SlotMoved(now)

"""The agents of the cluster in etcd, where the next master finds them.

One key per agent, ``<prefix>agents/<id>``, holds its durable facts as a JSON object:
``id``, ``name``, ``ip`` (the IP rule), ``key``, ``groups`` and ``register_time``. Beside
them ``<prefix>agents-next-id`` holds the next id to issue, so ids are never issued twice
across masters. Every write goes through the leader's fenced transaction: a master that
lost the leadership writes nothing. Volatile facts (status, keep-alives, agent-info) are
not kept here: the workers report them again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from attrs import define
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.failover.interfaces import IDurableAgents
from wazuhcluster.failover.kv import Op, RangeResult, TxnResult, prefix_end, to_bytes

#: etcd refuses a transaction of more than 128 operations by default (--max-txn-ops).
MAX_OPS = 120
#: Keys read per request when loading (each record is a few hundred bytes: far below the
#: client's 8 MiB answer bound).
PAGE = 2000
#: The largest record accepted back from etcd.
MAX_RECORD = 8192
_FIELDS = {"id": str, "name": str, "ip": str, "key": str, "groups": list, "register_time": float}


class Fenced(Protocol):
    """What the store uses of the election: a transaction that applies only while leading."""

    async def fenced_txn(self, success: Sequence[Op]) -> TxnResult:
        """Run ``success`` only while this node leads."""


class Reader(Protocol):
    """What the store uses of the etcd client to read."""

    async def range(
        self,
        key: bytes | str,
        range_end: bytes | str | None = None,
        limit: int = 0,
        revision: int = 0,
    ) -> RangeResult:
        """Keys in a range."""


@define
class _Save:
    """One asked-for write: its operations, the agent ids it touches, its next id."""

    ops: list[Op]
    keys: set[str]
    next_id: int | None
    done: Deferred[None]


class BadRecord(ValueError):
    """A record in etcd that is not an agent record of ours."""


def encode_record(record: Mapping[str, Any]) -> bytes:
    """The stored form of one agent record (checked first)."""
    return json.dumps(check_record(record), sort_keys=True, separators=(",", ":")).encode()


def check_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields, each of its type; :class:`BadRecord` otherwise. Names, IPs and
    keys are validated again by the registry that imports them."""
    clean: dict[str, Any] = {}
    for field, kind in _FIELDS.items():
        value = record.get(field)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise BadRecord(f"field {field!r} is missing or not a {kind.__name__}")
        clean[field] = value
    if not all(isinstance(group, str) for group in clean["groups"]):
        raise BadRecord("groups must be names")
    if not clean["id"].isdigit():
        raise BadRecord(f"id {clean['id']!r} is not a number")
    return clean


def decode_record(value: bytes) -> dict[str, Any]:
    """One stored record; :class:`BadRecord` when it is not one."""
    if len(value) > MAX_RECORD:
        raise BadRecord(f"{len(value)} bytes, more than {MAX_RECORD}")
    try:
        record = json.loads(value)
    except ValueError as error:
        raise BadRecord(f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object")
    return check_record(record)


@implementer(IDurableAgents)
class DurableAgents:
    """Agent records under ``prefix``, written through ``fenced`` and read with ``reader``."""

    def __init__(self, fenced: Fenced, reader: Reader, prefix: str) -> None:
        self.fenced = fenced
        self.reader = reader
        self.prefix = prefix
        self.agents_prefix = prefix + "agents/"
        self.next_id_key = prefix + "agents-next-id"
        #: Records found in etcd that were not agent records, at the last load.
        self.skipped: list[tuple[str, str]] = []
        self._queue: list[_Save] = []
        self._writing = False
        #: The highest next id this store has written (it never writes a lower one).
        self._next_written = 0

    def _key(self, agent_id: str) -> str:
        return self.agents_prefix + agent_id

    async def save(
        self,
        added: Sequence[Mapping[str, Any]],
        removed: Sequence[str],
        next_id: int | None = None,
    ) -> None:
        """Write ``added`` and delete ``removed``; with ``next_id``, the next id to issue
        becomes at least that. Fires once etcd holds it (a fenced write: NotLeader or an
        etcd error when it does not).

        Saves are written one transaction at a time, in the order they were asked for;
        those asked while one is in flight travel together in the next (up to
        :data:`MAX_OPS` operations, never two touching the same key), so a burst of
        enrollments costs few round trips and the next id only ever grows. A save larger
        than one transaction (a long deletion) goes alone, in several."""
        ops = [Op.delete(self._key(agent_id)) for agent_id in removed]
        ops += [Op.put(self._key(record["id"]), encode_record(record)) for record in added]
        keys = {str(agent_id) for agent_id in removed} | {str(r["id"]) for r in added}
        done: Deferred[None] = Deferred()
        self._queue.append(_Save(ops, keys, next_id, done))
        self._write_next()
        await done

    def _write_next(self) -> None:
        if self._writing or not self._queue:
            return
        batch = [self._queue.pop(0)]
        size, keys = len(batch[0].ops) + 1, set(batch[0].keys)
        while self._queue:
            following = self._queue[0]
            if size + len(following.ops) + 1 > MAX_OPS or keys & following.keys:
                break
            batch.append(self._queue.pop(0))
            size += len(following.ops) + 1
            keys |= following.keys
        self._writing = True
        written = Deferred.fromCoroutine(self._write(batch))

        def next_batch(_: object) -> None:
            self._writing = False
            self._write_next()

        written.addBoth(next_batch)

    async def _write(self, batch: list[_Save]) -> None:
        ops = [op for save in batch for op in save.ops]
        wanted = [save.next_id for save in batch if save.next_id is not None]
        next_id = max(wanted) if wanted else None
        if next_id is not None and next_id > self._next_written:
            ops.append(Op.put(self.next_id_key, str(next_id)))
        try:
            for start in range(0, len(ops), MAX_OPS):
                await self.fenced.fenced_txn(ops[start : start + MAX_OPS])
        except Exception:
            failure = Failure()
            for save in batch:
                save.done.errback(failure)
            return
        if next_id is not None:
            self._next_written = max(self._next_written, next_id)
        for save in batch:
            save.done.callback(None)

    async def load(self) -> tuple[list[dict[str, Any]], int]:
        """Every record (in pages read at one revision) and the next id; records that are
        not ours are skipped and listed in :attr:`skipped`."""
        records: list[dict[str, Any]] = []
        self.skipped = []
        start: bytes = to_bytes(self.agents_prefix)
        end = prefix_end(self.agents_prefix)
        revision = 0
        while True:
            page = await self.reader.range(start, end, limit=PAGE, revision=revision)
            revision = revision or page.revision
            for kv in page.kvs:
                try:
                    records.append(decode_record(kv.value))
                except BadRecord as error:
                    self.skipped.append((kv.key.decode("utf-8", "replace"), str(error)))
            if not page.more or not page.kvs:
                break
            start = page.kvs[-1].key + b"\0"
        stored = (await self.reader.range(self.next_id_key, revision=revision)).first
        next_id = 0
        if stored is not None and stored.value.isdigit():
            next_id = int(stored.value)
        return records, next_id

"""etcd's v3 data in our terms, and its JSON gateway form; pure, no network.

The gateway speaks protobuf messages as JSON: byte fields (keys, values) in base64, 64-bit
integers as strings, and fields at their zero value (0, false, empty) left out. This module
turns our records into request bodies and the gateway's answers back into records, refusing
answers of the wrong shape with :class:`EtcdProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

#: Compare operators as etcd names them.
_COMPARE_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}


class EtcdError(Exception):
    """etcd answered with an error, or could not be asked.

    ``code`` is the gRPC status code etcd gives (0 when there is none), ``endpoint`` the URL
    that was asked.
    """

    def __init__(self, message: str, code: int = 0, endpoint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.endpoint = endpoint

    def __str__(self) -> str:
        where = f" ({self.endpoint})" if self.endpoint else ""
        return f"{self.message}{where}"


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached, the connection broke, or etcd cannot serve now (no
    quorum). The request may or may not have been applied."""


class EtcdTimeout(EtcdUnavailable):
    """No complete answer within the client's timeout."""


class EtcdProtocolError(EtcdError):
    """An answer that is not what the gateway sends: not JSON, wrong shape, too large."""


class LeaseNotFound(EtcdError):
    """The lease is unknown to etcd: it expired or was revoked."""


def encode_bytes(value: bytes | str) -> str:
    """A key or value in the gateway's base64 form (text is taken as UTF-8)."""
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def to_bytes(value: bytes | str) -> bytes:
    """A key or value as bytes (text is taken as UTF-8)."""
    return value.encode() if isinstance(value, str) else value


def prefix_end(prefix: bytes | str) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(to_bytes(prefix))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


def _decode_bytes(value: object, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise EtcdProtocolError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EtcdProtocolError(f"{what} is not valid base64") from None


def _int(value: object, what: str) -> int:
    """A 64-bit integer field: a string of digits, a JSON number, or absent (zero)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise EtcdProtocolError(f"{what} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise EtcdProtocolError(f"{what} is not an integer")


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EtcdProtocolError(f"{what} is not an object")
    return value


def _list(value: object, what: str) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EtcdProtocolError(f"{what} is not a list")
    return value


def header_revision(body: Mapping[str, Any]) -> int:
    """The store revision an answer was taken at (its header's ``revision``)."""
    return _int(_mapping(body.get("header"), "header").get("revision"), "header.revision")


@frozen
class KeyValue:
    """One key as etcd stores it."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_json(cls, body: object) -> KeyValue:
        """Decode a gateway ``kv`` object."""
        fields = _mapping(body, "kv")
        return cls(
            key=_decode_bytes(fields.get("key"), "kv.key"),
            value=_decode_bytes(fields.get("value"), "kv.value"),
            create_revision=_int(fields.get("create_revision"), "kv.create_revision"),
            mod_revision=_int(fields.get("mod_revision"), "kv.mod_revision"),
            version=_int(fields.get("version"), "kv.version"),
            lease=_int(fields.get("lease"), "kv.lease"),
        )


@frozen
class RangeResult:
    """The keys of a range (or get), and the revision it was read at."""

    kvs: tuple[KeyValue, ...]
    count: int
    more: bool
    revision: int

    @property
    def first(self) -> KeyValue | None:
        """The first key found, or None."""
        return self.kvs[0] if self.kvs else None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], revision: int | None = None) -> RangeResult:
        """Decode a range answer (``revision`` overrides its header, for txn parts)."""
        kvs = tuple(KeyValue.from_json(kv) for kv in _list(body.get("kvs"), "kvs"))
        return cls(
            kvs=kvs,
            count=_int(body.get("count"), "count"),
            more=bool(body.get("more", False)),
            revision=header_revision(body) if revision is None else revision,
        )


@frozen
class Lease:
    """A lease granted (or kept alive) with its TTL in seconds; ``ttl`` 0 means it is gone."""

    id: int
    ttl: int


@frozen
class Compare:
    """One condition of a transaction: ``target`` of ``key`` compared with a value."""

    key: bytes
    target: str
    result: str
    value: int | bytes

    @classmethod
    def _make(cls, key: bytes | str, target: str, op: str, value: int | bytes) -> Compare:
        if op not in _COMPARE_RESULTS:
            raise ValueError(f"unknown comparison {op!r}: use one of {', '.join(_COMPARE_RESULTS)}")
        return cls(to_bytes(key), target, _COMPARE_RESULTS[op], value)

    @classmethod
    def create_revision(cls, key: bytes | str, op: str, revision: int) -> Compare:
        """Compare the revision that created ``key`` (0 when the key does not exist)."""
        return cls._make(key, "CREATE", op, revision)

    @classmethod
    def mod_revision(cls, key: bytes | str, op: str, revision: int) -> Compare:
        """Compare the revision of ``key``'s last change (0 when it does not exist)."""
        return cls._make(key, "MOD", op, revision)

    @classmethod
    def version(cls, key: bytes | str, op: str, version: int) -> Compare:
        """Compare how many times ``key`` was written since it was created."""
        return cls._make(key, "VERSION", op, version)

    @classmethod
    def value_of(cls, key: bytes | str, op: str, value: bytes | str) -> Compare:
        """Compare ``key``'s value."""
        return cls._make(key, "VALUE", op, to_bytes(value))

    @classmethod
    def lease(cls, key: bytes | str, op: str, lease: int) -> Compare:
        """Compare the lease ``key`` is bound to (0 when none)."""
        return cls._make(key, "LEASE", op, lease)

    def to_json(self) -> dict[str, Any]:
        """The gateway form."""
        body: dict[str, Any] = {
            "key": encode_bytes(self.key),
            "target": self.target,
            "result": self.result,
        }
        if self.target == "VALUE":
            assert isinstance(self.value, bytes)
            body["value"] = encode_bytes(self.value)
        else:
            field = {"CREATE": "create_revision", "MOD": "mod_revision"}.get(
                self.target, self.target.lower()
            )
            body[field] = str(self.value)
        return body


@frozen
class Op:
    """One operation of a transaction: put, get (range) or delete."""

    kind: str
    body: Mapping[str, Any]

    @classmethod
    def put(cls, key: bytes | str, value: bytes | str, lease: int = 0) -> Op:
        """Set ``key`` to ``value`` (bound to ``lease`` when not 0)."""
        body: dict[str, Any] = {"key": encode_bytes(key), "value": encode_bytes(value)}
        if lease:
            body["lease"] = str(lease)
        return cls("request_put", body)

    @classmethod
    def get(cls, key: bytes | str, range_end: bytes | str | None = None) -> Op:
        """Read ``key`` (or every key in ``[key, range_end)``)."""
        return cls("request_range", range_body(key, range_end))

    @classmethod
    def delete(cls, key: bytes | str, range_end: bytes | str | None = None) -> Op:
        """Delete ``key`` (or every key in ``[key, range_end)``)."""
        return cls("request_delete_range", range_body(key, range_end))

    @classmethod
    def txn(cls, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> Op:
        """A nested transaction (etcd 3.3 and newer)."""
        return cls(
            "request_txn",
            {
                "compare": [item.to_json() for item in compare],
                "success": [op.to_json() for op in success],
                "failure": [op.to_json() for op in failure],
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The gateway form."""
        return {self.kind: dict(self.body)}


def range_body(key: bytes | str, range_end: bytes | str | None = None) -> dict[str, Any]:
    """The ``key``/``range_end`` fields of a range or delete request."""
    body: dict[str, Any] = {"key": encode_bytes(key)}
    if range_end is not None:
        body["range_end"] = encode_bytes(range_end)
    return body


@frozen
class TxnResult:
    """A transaction's outcome: which branch ran, its revision, and what each op answered.

    ``ranges`` holds, in order, the answers of the branch's get operations.
    """

    succeeded: bool
    revision: int
    ranges: tuple[RangeResult, ...]
    deleted: tuple[int, ...]
    #: The answer of the branch's first nested transaction, if it had one.
    nested: TxnResult | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], revision: int | None = None) -> TxnResult:
        """Decode a txn answer (``revision`` overrides its header, for nested ones)."""
        revision = header_revision(body) if revision is None else revision
        ranges: list[RangeResult] = []
        deleted: list[int] = []
        nested: TxnResult | None = None
        for response in _list(body.get("responses"), "responses"):
            part = _mapping(response, "response")
            if "response_range" in part:
                ranges.append(
                    RangeResult.from_json(_mapping(part["response_range"], "range"), revision)
                )
            elif "response_delete_range" in part:
                answer = _mapping(part["response_delete_range"], "delete")
                deleted.append(_int(answer.get("deleted"), "deleted"))
            elif "response_txn" in part and nested is None:
                nested = cls.from_json(_mapping(part["response_txn"], "txn"), revision)
        return cls(
            succeeded=bool(body.get("succeeded", False)),
            revision=revision,
            ranges=tuple(ranges),
            deleted=tuple(deleted),
            nested=nested,
        )


@frozen
class WatchEvent:
    """One change seen by a watch: ``PUT`` or ``DELETE`` of ``kv`` (``prev`` when asked)."""

    type: str
    kv: KeyValue
    prev: KeyValue | None = None

    @classmethod
    def from_json(cls, body: object) -> WatchEvent:
        """Decode a gateway watch event (a PUT has no ``type``: it is the zero value)."""
        fields = _mapping(body, "event")
        kind = fields.get("type", "PUT")
        if kind not in ("PUT", "DELETE"):
            raise EtcdProtocolError(f"unknown watch event type {kind!r}")
        prev = fields.get("prev_kv")
        return cls(
            type=kind,
            kv=KeyValue.from_json(fields.get("kv")),
            prev=KeyValue.from_json(prev) if prev is not None else None,
        )


@frozen
class WatchResponse:
    """One message of a watch stream."""

    revision: int
    created: bool
    canceled: bool
    cancel_reason: str
    compact_revision: int
    events: tuple[WatchEvent, ...]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WatchResponse:
        """Decode one ``{"result": ...}`` line of the stream (an ``error`` line raises)."""
        if "error" in body:
            error = _mapping(body["error"], "error")
            raise error_from_json(error, "watch stream")
        result = _mapping(body.get("result"), "result")
        return cls(
            revision=header_revision(result),
            created=bool(result.get("created", False)),
            canceled=bool(result.get("canceled", False)),
            cancel_reason=str(result.get("cancel_reason", "")),
            compact_revision=_int(result.get("compact_revision"), "compact_revision"),
            events=tuple(WatchEvent.from_json(e) for e in _list(result.get("events"), "events")),
        )


#: gRPC codes etcd uses when it cannot serve now: unavailable, deadline exceeded, aborted.
UNAVAILABLE_CODES = frozenset({14, 4, 10})
#: gRPC NOT_FOUND.
NOT_FOUND = 5


def error_from_json(body: Mapping[str, Any], endpoint: str, status: int = 0) -> EtcdError:
    """The error a gateway error body (``{"error", "message", "code"}``) stands for."""
    message = str(body.get("message") or body.get("error") or f"HTTP status {status}")
    try:
        code = int(body.get("code", 0))
    except (TypeError, ValueError):
        code = 0
    if code == NOT_FOUND and "lease not found" in message:
        return LeaseNotFound(message, code, endpoint)
    if code in UNAVAILABLE_CODES or status in (502, 503, 504):
        return EtcdUnavailable(message, code, endpoint)
    return EtcdError(message, code, endpoint)

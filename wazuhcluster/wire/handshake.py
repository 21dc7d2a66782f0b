"""Pure rules of the cluster handshake: key proofs, version compatibility, Hello checks.

The worker proves it holds the cluster key with an HMAC over both sides' nonces and its
identity; the master answers with its own HMAC, so the key never crosses the wire and a
recorded handshake cannot be replayed. Rejection reasons reuse Wazuh's error codes where
Wazuh has one, so operators can search for them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Collection

from attrs import frozen

NONCE_BYTES = 32
NODE_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def make_nonce() -> bytes:
    """A fresh random nonce for one handshake."""
    return os.urandom(NONCE_BYTES)


def _proof(
    label: bytes,
    key: str,
    master_nonce: bytes,
    worker_nonce: bytes,
    node_name: str,
    cluster_name: str,
) -> bytes:
    message = b"\0".join(
        (label, master_nonce, worker_nonce, node_name.encode(), cluster_name.encode())
    )
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()


def worker_proof(
    key: str, master_nonce: bytes, worker_nonce: bytes, node_name: str, cluster_name: str
) -> bytes:
    """The HMAC a worker sends in Hello."""
    return _proof(
        b"wazuhcluster worker v1", key, master_nonce, worker_nonce, node_name, cluster_name
    )


def master_proof(
    key: str, master_nonce: bytes, worker_nonce: bytes, node_name: str, cluster_name: str
) -> bytes:
    """The HMAC the master answers Hello with."""
    return _proof(
        b"wazuhcluster master v1", key, master_nonce, worker_nonce, node_name, cluster_name
    )


def proofs_match(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of two proofs."""
    return hmac.compare_digest(expected, received)


def versions_compatible(ours: str, theirs: str) -> bool:
    """Nodes work together when their software differs at most in patch level."""
    mine = _VERSION_RE.match(ours)
    other = _VERSION_RE.match(theirs)
    if mine is None or other is None:
        return False
    return mine.group(1, 2) == other.group(1, 2)


@frozen
class HelloRequest:
    """What a worker claims in its Hello."""

    node_name: str
    cluster_name: str
    node_type: str
    version: str
    protocol_version: int
    nonce: bytes
    proof: bytes


@frozen
class MasterIdentity:
    """What the master checks a Hello against."""

    node_name: str
    cluster_name: str
    version: str
    protocol_version: int
    key: str


def check_hello(
    hello: HelloRequest,
    master: MasterIdentity,
    master_nonce: bytes | None,
    certificate_names: Collection[str] | None,
    connected: Collection[str],
) -> str | None:
    """Return why the master must refuse ``hello``, or None to accept it.

    ``certificate_names`` are the names in the worker's TLS certificate (None when the
    link has no certificate, which is refused); ``connected`` are the worker names already
    on the cluster.
    """
    if not NODE_NAME_RE.fullmatch(hello.node_name):
        return "Error 3060 - Invalid node name format"
    if hello.node_type != "worker":
        return f"Error 3004 - Invalid node type {hello.node_type!r}: only workers dial the master"
    if master_nonce is None:
        return "Error 3025 - Hello sent without a Challenge first"
    expected = worker_proof(
        master.key, master_nonce, hello.nonce, hello.node_name, hello.cluster_name
    )
    if len(hello.nonce) != NONCE_BYTES or not proofs_match(expected, hello.proof):
        return "Error 3025 - Wrong cluster key: the key proof did not verify"
    if certificate_names is None or hello.node_name not in certificate_names:
        return (
            f"Error 3061 - Node name {hello.node_name!r} does not match its certificate "
            f"({', '.join(sorted(certificate_names or ())) or 'no certificate'})"
        )
    if hello.cluster_name != master.cluster_name:
        return "Error 3030 - Worker does not belong to the same cluster"
    if hello.protocol_version != master.protocol_version:
        return (
            f"Error 3031 - Incompatible cluster protocol: worker {hello.protocol_version}, "
            f"master {master.protocol_version}"
        )
    if not versions_compatible(master.version, hello.version):
        return (
            f"Error 3031 - Worker and master versions are not compatible: worker "
            f"{hello.version}, master {master.version} (only patch levels may differ)"
        )
    if hello.node_name == master.node_name:
        return "Error 3029 - Connected worker with same name as the master"
    if hello.node_name in connected:
        return f"Error 3028 - Worker node ID already exists: {hello.node_name}"
    return None

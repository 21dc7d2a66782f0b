"""The AMP commands of the cluster link (worker ↔ master) and the errors that may cross it.

Schemas only: behaviour lives in wazuhcluster.master and wazuhcluster.worker. Every command
named here is initiated by the side its docstring says. New arguments must be optional so
that nodes one patch level apart keep working together.
"""

from __future__ import annotations

from twisted.protocols import amp

from wazuhcluster.wire.arguments import Json

#: Bumped on any incompatible change of the commands below or of what they carry (2: the sync
#: stream's blocks of small files); the handshake refuses a mismatch.
PROTOCOL_VERSION = 2


class ClusterError(Exception):
    """Base class of the errors that travel over the link; ``str()`` is the reason."""


class HandshakeRejected(ClusterError):
    """The master refused a worker's Hello; the connection is closed after the answer."""


class NotAuthenticated(ClusterError):
    """A command other than Challenge/Hello arrived before a successful Hello."""


class ControlError(Exception):
    """A management request that could not be served; ``str()`` is the reason for the user.

    Raised on the master for a request relayed from a worker's control socket, and by the
    control socket itself, so it lives with the other errors that cross a wire.
    """


class NotConnected(ClusterError):
    """A worker was asked something only the master can answer, while not connected to it."""


class Challenge(amp.Command):
    """Worker → master, first command on a new link: get a fresh nonce to prove the key with."""

    arguments = []
    response = [(b"nonce", amp.String())]
    errors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class Hello(amp.Command):
    """Worker → master: who the worker is, plus an HMAC proof that it holds the cluster key.

    ``proof`` is HMAC-SHA256(key, master nonce ‖ worker nonce ‖ node name ‖ cluster name); the
    master answers with its own proof over the same data, so each side knows the other has the
    key, and the key itself never crosses the wire.
    """

    arguments = [
        (b"node_name", amp.Unicode()),
        (b"cluster_name", amp.Unicode()),
        (b"node_type", amp.Unicode()),
        (b"version", amp.Unicode()),
        (b"protocol_version", amp.Integer()),
        (b"nonce", amp.String()),
        (b"proof", amp.String()),
    ]
    response = [
        (b"master_name", amp.Unicode()),
        (b"master_version", amp.Unicode()),
        (b"proof", amp.String()),
    ]
    errors = {HandshakeRejected: b"HANDSHAKE_REJECTED"}
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class KeepAlive(amp.Command):
    """Worker → master, every keep_alive seconds; refreshes the worker's last-seen time."""

    arguments = [(b"payload", amp.Unicode())]
    response = [(b"payload", amp.Unicode())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class GetNodes(amp.Command):
    """Worker → master: the cluster's node list, for a control request made on the worker."""

    arguments = []
    response = [(b"nodes", Json())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class GetHealth(amp.Command):
    """Worker → master: the cluster's health report, for a control request made on the worker."""

    arguments = []
    response = [(b"health", Json())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}

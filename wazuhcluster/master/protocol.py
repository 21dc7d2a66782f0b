"""The master's end of one worker link: an AMP protocol per connected worker.

Nothing but Challenge and Hello is served until the worker has proved the cluster key and
its name was checked against its certificate; the worker is registered only after every
check passed, so a rejected worker never appears in the node list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, ITransport
from twisted.internet.main import CONNECTION_DONE
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.master.interfaces import IMasterNode
from wazuhcluster.master.workers import WorkerLink
from wazuhcluster.util.nodelay import send_without_delay
from wazuhcluster.wire import commands
from wazuhcluster.wire.features import locate_in
from wazuhcluster.wire.handshake import HelloRequest, check_hello, make_nonce, master_proof
from wazuhcluster.wire.interfaces import IPeer
from wazuhcluster.wire.stream_endpoint import StreamEndpoint, StreamResponders

#: Commands a worker may send before it has authenticated.
_OPEN_COMMANDS = {b"Challenge", b"Hello"}

_CLOSED = Failure(CONNECTION_DONE)

#: The names in a connection's TLS peer certificate (None without a certificate).
PeerNames = Callable[[ITransport | None], "set[str] | None"]


def _refuse_unauthenticated(box: amp.AmpBox) -> Deferred[amp.AmpBox]:
    return fail(amp.RemoteAmpError(b"NOT_AUTHENTICATED", "Say Hello first", fatal=True))


@implementer(IPeer)
class MasterProtocol(StreamResponders, amp.AMP):
    """Serves one worker's commands on the master; features answer their own commands."""

    def __init__(self, node: IMasterNode, peer_names: PeerNames) -> None:
        super().__init__()
        self.node = node
        self.peer_names = peer_names
        self.link: WorkerLink | None = None
        self.peer_ip = "unknown"
        self._nonce: bytes | None = None
        self._auth_deadline: IDelayedCall | None = None
        self._locators: list[amp.CommandLocator] = []
        self.log = node.log
        self.streams = StreamEndpoint(
            self.callRemote,
            node.clock,
            node.features.stream_kinds(),
            self._stream_received,
            call_timeout=node.timings.request_timeout,
        )

    def _stream_received(self, kind: str, stream_id: str, result: object) -> object:
        assert self.link is not None  # streams are refused before Hello
        return self.node.features.owner_of(kind).on_stream(self.link, kind, stream_id, result)

    def connectionMade(self) -> None:
        """Log the connection and give the peer a deadline to authenticate."""
        super().connectionMade()
        assert self.transport is not None
        send_without_delay(self.transport)
        peer = self.transport.getPeer()
        self.peer_ip = getattr(peer, "host", "unknown")
        self.log.info(
            "Connection from ('{ip}', {port})", ip=self.peer_ip, port=getattr(peer, "port", 0)
        )
        self._auth_deadline = self.node.clock.callLater(
            self.node.timings.request_timeout, self._handshake_timed_out
        )

    def _handshake_timed_out(self) -> None:
        self._auth_deadline = None
        self.log.warn(
            "Closing connection from {ip}: no successful Hello within {seconds} s",
            ip=self.peer_ip,
            seconds=self.node.timings.request_timeout,
        )
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    def locateResponder(self, name: bytes) -> Any:  # noqa: N802 - Twisted's name
        """Refuse every command but the handshake until the worker has authenticated."""
        if not name.isascii():
            # Twisted's locator would raise UnicodeDecodeError out of dataReceived.
            self.log.warn("Refused a command with a non-ASCII name from {ip}", ip=self.peer_ip)
            return None
        if self.link is None and name not in _OPEN_COMMANDS:
            self.log.warn(
                "Refused command {command} from {ip}: not authenticated",
                command=name.decode("ascii", "replace"),
                ip=self.peer_ip,
            )
            return _refuse_unauthenticated
        return super().locateResponder(name) or locate_in(self._locators, name)

    @commands.Challenge.responder
    def challenge(self) -> dict[str, bytes]:
        """Hand out a fresh nonce for the key proof."""
        self._nonce = make_nonce()
        return {"nonce": self._nonce}

    @commands.Hello.responder
    def hello(
        self,
        node_name: str,
        cluster_name: str,
        node_type: str,
        version: str,
        protocol_version: int,
        nonce: bytes,
        proof: bytes,
    ) -> dict[str, Any]:
        """Check the worker's identity and key proof; register it only when all checks pass."""
        if self.link is not None:
            raise commands.HandshakeRejected("Hello already received on this link")
        request = HelloRequest(
            node_name, cluster_name, node_type, version, protocol_version, nonce, proof
        )
        master_nonce, self._nonce = self._nonce, None
        reason = check_hello(
            request,
            self.node.identity,
            master_nonce,
            self.peer_names(self.transport),
            self.node.workers.names(),
        )
        if reason is not None:
            self._log_refusal(node_name, reason)
            raise commands.HandshakeRejected(reason)
        now = self.node.clock.seconds()
        self.link = WorkerLink(node_name, version, self.peer_ip, self, now, now)
        self.node.workers.add(self.link)
        self._locators = self.node.features.locators(self.link)
        if self._auth_deadline is not None and self._auth_deadline.active():
            self._auth_deadline.cancel()
        self._auth_deadline = None
        self.log = self.node.log.child("Main", tag=f"Worker {node_name}")
        self.log.info(
            "Worker {name} connected from {ip} (version {version}).",
            name=node_name,
            ip=self.peer_ip,
            version=version,
        )
        self.node.worker_connected(self.link)
        identity = self.node.identity
        return {
            "master_name": identity.node_name,
            "master_version": identity.version,
            "proof": master_proof(
                identity.key, master_nonce or b"", nonce, node_name, cluster_name
            ),
        }

    def _log_refusal(self, name: str, reason: str) -> None:
        """One line per worker and change of reason (DEBUG for the repeats); a worker that
        reconnects before its previous link from the same address was closed is INFO."""
        current = self.node.workers.get(name)
        benign = reason.startswith("Error 3028") and (
            current is not None and current.address == self.peer_ip
        )
        if not self.node.workers.refusal_is_new(name, self.peer_ip, f"{benign}:{reason}"):
            self.log.debug(
                "Refused worker {name!r} from {ip} again: {reason}.",
                name=name,
                ip=self.peer_ip,
                reason=reason,
            )
        elif benign:
            self.log.info(
                "Refused worker {name!r} from {ip}: {reason}; its previous link from the same "
                "address is still open (a reconnect ahead of the old link's close). It is "
                "closed at the latest when its keep-alives stop.",
                name=name,
                ip=self.peer_ip,
                reason=reason,
            )
        else:
            self.log.error(
                "Refused worker {name!r} from {ip}: {reason}. Logged again only if the reason "
                "changes.",
                name=name,
                ip=self.peer_ip,
                reason=reason,
            )

    @commands.KeepAlive.responder
    def keep_alive(self, payload: str) -> dict[str, str]:
        """Refresh the worker's last keep-alive time."""
        assert self.link is not None
        self.link.last_keepalive = self.node.clock.seconds()
        self.log.child("Keep alive").debug("Received keep alive.")
        return {"payload": payload}

    @commands.GetNodes.responder
    def get_nodes(self) -> dict[str, Any]:
        """The node list, for a control request made on the worker."""
        return {"nodes": self.node.nodes()}

    @commands.GetHealth.responder
    def get_health(self) -> dict[str, Any]:
        """The health report, for a control request made on the worker."""
        return {"health": self.node.health()}

    def connectionLost(self, reason: Failure = _CLOSED) -> None:
        """Forget the worker and cancel the handshake deadline."""
        super().connectionLost(reason)
        self.streams.connection_lost(reason.getErrorMessage())
        if self._auth_deadline is not None and self._auth_deadline.active():
            self._auth_deadline.cancel()
        self._auth_deadline = None
        if self.link is None:
            self.log.warn(
                "Connection from {ip} closed before it authenticated: {reason}",
                ip=self.peer_ip,
                reason=reason.getErrorMessage(),
            )
        elif self.node.workers.remove(self.link, self.node.clock.seconds()):
            self.log.info(
                "Disconnected {name}: {reason}",
                name=self.link.name,
                reason=reason.getErrorMessage(),
            )
            self.node.worker_disconnected(self.link)

"""The control socket server: AMP over a UNIX socket under HOME/var/run (mode 0660).

The role hands in a backend (:class:`~.interfaces.IControlBackend`); the master answers
from its own state and a worker relays what only the master knows over the cluster link.

The socket is guarded by Twisted's lock file beside it (``cluster.sock.lock``, a symlink
naming the owner's pid). Twisted takes the lock over only when that pid is dead; after a
``kill -9`` the pid may be alive again as another process (or as this very process, in a
container that restarts the node with the same pid), and the socket would stay closed.
:func:`clear_stale_lock` therefore decides itself, before listening: a lock whose owner
is gone, is this process, or no longer answers on the socket is removed (and logged).
A node that still cannot listen logs a dated ERROR and stops: without its control socket
it cannot be managed.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUNIX
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.python.failure import Failure

from wazuhcluster.control import commands
from wazuhcluster.control.interfaces import IControlBackend, IFailoverView
from wazuhcluster.util.limits import LimitedFactory, ListenerLimits, peer_uid, stop_serving
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.wire.arguments import describe, refuse_bad_arguments

#: Connections the kernel queues on the control socket before the node accepts them
#: (Linux caps it at net.core.somaxconn, 4096 by default).
ACCEPT_BACKLOG = 1024


class ControlProtocol(amp.AMP):
    """One control client's connection."""

    def __init__(
        self,
        backend: IControlBackend,
        log: ClusterLog | None = None,
        failover: IFailoverView | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.log = log or ClusterLog("Cluster", "Control")
        self.failover = failover

    def locateResponder(self, name: bytes) -> Any:  # noqa: N802 - Twisted's name
        """Our commands, with arguments AMP cannot parse refused; a non-ASCII name is unknown."""
        if not name.isascii():
            # Twisted's locator would raise UnicodeDecodeError out of dataReceived.
            self.log.warn("Refused a control command with a non-ASCII name.")
            return None
        responder = super().locateResponder(name)
        if responder is None:
            return None
        command = name.decode("ascii")

        def bad(error: Exception) -> None:
            self.log.warn(
                "Refused control command {command}: bad arguments ({error}).",
                command=command,
                error=describe(error),
            )

        return refuse_bad_arguments(responder, bad)

    @commands.ListNodes.responder
    async def list_nodes(self) -> dict[str, Any]:
        """Answer ListNodes from the backend."""
        return {"nodes": await self.backend.list_nodes()}

    @commands.LocalInfo.responder
    async def local_info(self) -> dict[str, Any]:
        """Answer LocalInfo from the backend."""
        return {"info": await self.backend.local_info()}

    @commands.FailoverStatus.responder
    def failover_status(self) -> dict[str, Any]:
        """Answer FailoverStatus: the election as this node sees it, or None without one."""
        return {"status": None if self.failover is None else self.failover.failover_status()}

    @commands.ClusterHealth.responder
    async def cluster_health(self) -> dict[str, Any]:
        """Answer ClusterHealth from the backend."""
        return {"health": await self.backend.cluster_health()}

    @commands.ReloadRuleset.responder
    async def reload_ruleset(self) -> dict[str, Any]:
        """Answer ReloadRuleset from the backend."""
        return {"message": await self.backend.reload()}

    @commands.AnalysisStats.responder
    async def analysis_stats(self) -> dict[str, Any]:
        """Answer AnalysisStats from the backend."""
        return {"stats": await self.backend.analysis_stats()}

    @commands.ReconnectAgents.responder
    async def reconnect_agents(self, agents: Any, count: int) -> dict[str, Any]:
        """Answer ReconnectAgents from the backend."""
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise commands.ControlError("agents must be a list of ids")
        return {"reconnected": await self.backend.reconnect_agents(agents, count)}

    @commands.Manage.responder
    async def manage(self, action: str, arguments: Any) -> dict[str, Any]:
        """Answer a management request from the backend."""
        if not isinstance(arguments, dict):
            raise commands.ControlError("arguments must be a JSON object")
        return {"result": await self.backend.manage(action, arguments)}


class ControlSocketBusy(Exception):
    """Another live process serves the control socket (a second node on the same home)."""


def lock_path(path: Path) -> Path:
    """Twisted's lock file beside the socket at ``path``."""
    return path.with_name(path.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on the UNIX socket at ``path``.

    Only a refused connection or a missing file count as silence; anything else (a full
    backlog, a permission error) may be a live server, so it counts as an answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True
        return True


def _remove_socket_file(path: Path) -> None:
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass


def clear_stale_lock(path: Path, own_pid: int | None = None) -> str | None:
    """Remove the control socket's lock (and the socket file) when no live node owns them.

    Returns why something was removed, or None when there was nothing stale. Raises
    :class:`ControlSocketBusy` when a live process answers on the socket, and ``OSError``
    when the files cannot be read or removed. A lock that is not Twisted's (not a symlink
    naming a pid) is left alone: listening then fails and says why.
    """
    own_pid = os.getpid() if own_pid is None else own_pid
    lock = lock_path(path)
    try:
        target = os.readlink(lock)
    except FileNotFoundError:
        if path.exists() and not socket_answers(path):
            _remove_socket_file(path)
            return f"a control socket without its lock was left at {path}"
        return None
    except OSError as error:
        if error.errno == errno.EINVAL:  # not a symlink: not Twisted's lock
            return None
        raise
    if not target.isdigit():
        return None
    pid = int(target)
    if pid == own_pid:
        reason = f"it names pid {pid}, this process, which did not take it"
    elif not _pid_alive(pid):
        reason = f"its owner, pid {pid}, is not running"
    elif socket_answers(path):
        raise ControlSocketBusy(f"pid {pid} holds {lock} and answers on {path}")
    else:
        reason = f"pid {pid} is running but does not answer on the socket (a reused pid)"
    lock.unlink()
    _remove_socket_file(path)
    return reason


class ControlService(Service):
    """Listens on the control socket while the node runs.

    It listens in ``startService`` (not ``privilegedStartService``), so the node's
    cluster.log is open by then and every line about the socket lands in it. When the
    socket cannot be opened, ``on_failure`` gets the reason (the node passes a callable that
    logs it as an ERROR and stops the node; by default the reason is only logged).
    """

    def __init__(
        self,
        path: Path,
        backend: IControlBackend,
        reactor: IReactorUNIX,
        log: ClusterLog | None = None,
        on_failure: Callable[[str], object] | None = None,
        limits: ListenerLimits | None = None,
        failover: IFailoverView | None = None,
    ) -> None:
        self.path = path
        self.backend = backend
        self.reactor = reactor
        self.log = log or ClusterLog("Cluster", "Control")
        self.on_failure = on_failure or self._log_failure
        self.port: IListeningPort | None = None
        factory: Factory[Any] = Factory.forProtocol(
            lambda: ControlProtocol(backend, self.log, failover)
        )
        if limits is not None and IReactorTime.providedBy(reactor):
            # The socket's mode is the credential: a client is admitted by its first command,
            # which must come within the handshake deadline; the caps count clients in all
            # and per uid (every client of a UNIX socket has the same address).
            factory = LimitedFactory(
                factory,
                reactor,
                self.log,
                limits=limits,
                admit_on="data",
                credential="command",
                address=peer_uid,
            )
        self.factory = factory
        self.setName("control-socket")

    def _log_failure(self, reason: str) -> None:
        self.log.error("{reason}", reason=reason)

    def startService(self) -> None:
        """Clear a stale lock, then listen; report any failure through ``on_failure``."""
        super().startService()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            removed = clear_stale_lock(self.path)
        except ControlSocketBusy as busy:
            self._failed(f"another node is running on this home ({busy})")
            return
        except OSError as error:
            self._failed(f"{error.strerror or error} ({error.filename or self.path})")
            return
        if removed is not None:
            self.log.warn(
                "Removed a stale control-socket lock {lock}: {reason}.",
                lock=lock_path(self.path),
                reason=removed,
            )
        # wantPID: Twisted guards the socket with the lock file checked above. A UNIX
        # connect to a full accept queue fails at once (EAGAIN), so a flood of connects
        # must not fill Twisted's default 50 before the node accepts them.
        endpoint = UNIXServerEndpoint(
            self.reactor, str(self.path), backlog=ACCEPT_BACKLOG, mode=0o660, wantPID=True
        )
        endpoint.listen(self.factory).addCallbacks(self._listening, self._listen_failed)

    def _listening(self, port: IListeningPort) -> None:
        if not self.running:  # stopped before the listen finished
            port.stopListening()
            return
        self.port = port
        self.log.info("Control socket listening on {path}.", path=self.path)

    def _listen_failed(self, failure: Failure) -> None:
        self._failed(failure.getErrorMessage())

    def _failed(self, reason: str) -> None:
        self.on_failure(f"Could not open the control socket {self.path}: {reason}.")

    def stopService(self) -> Deferred[None]:
        """Stop listening (Twisted removes the socket file and its lock) and close the
        clients' connections."""
        super().stopService()
        port, self.port = self.port, None
        return stop_serving(port, self.factory)

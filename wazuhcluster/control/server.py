"""The control socket server: AMP over a UNIX socket under HOME/var/run (mode 0660).

The role hands in a backend (:class:`~.interfaces.IControlBackend`); the master answers
from its own state and a worker relays what only the master knows over the cluster link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import IReactorTime, IReactorUNIX
from twisted.internet.protocol import Factory
from twisted.protocols import amp

from wazuhcluster.control import commands
from wazuhcluster.control.interfaces import IControlBackend
from wazuhcluster.util.limits import LimitedFactory, ListenerLimits
from wazuhcluster.util.logs import ClusterLog


class ControlProtocol(amp.AMP):
    """One control client's connection."""

    def __init__(self, backend: IControlBackend) -> None:
        super().__init__()
        self.backend = backend

    @commands.ListNodes.responder
    async def list_nodes(self) -> dict[str, Any]:
        """Answer ListNodes from the backend."""
        return {"nodes": await self.backend.list_nodes()}

    @commands.LocalInfo.responder
    async def local_info(self) -> dict[str, Any]:
        """Answer LocalInfo from the backend."""
        return {"info": await self.backend.local_info()}

    @commands.ClusterHealth.responder
    async def cluster_health(self) -> dict[str, Any]:
        """Answer ClusterHealth from the backend."""
        return {"health": await self.backend.cluster_health()}

    @commands.ReloadRuleset.responder
    async def reload_ruleset(self) -> dict[str, Any]:
        """Answer ReloadRuleset from the backend."""
        return {"message": await self.backend.reload()}

    @commands.ReconnectAgents.responder
    async def reconnect_agents(self, agents: Any, count: int) -> dict[str, Any]:
        """Answer ReconnectAgents from the backend."""
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise commands.ControlError("agents must be a list of ids")
        return {"reconnected": await self.backend.reconnect_agents(agents, count)}

    @commands.Manage.responder
    async def manage(self, action: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Answer a management request from the backend."""
        return {"result": await self.backend.manage(action, arguments)}


class ControlService(StreamServerEndpointService):
    """Listens on the control socket while the node runs."""

    def __init__(
        self,
        path: Path,
        backend: IControlBackend,
        reactor: IReactorUNIX,
        limits: ListenerLimits | None = None,
        log: ClusterLog | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # wantPID lets Twisted remove a socket left behind by a killed node.
        endpoint = UNIXServerEndpoint(reactor, str(path), mode=0o660, wantPID=True)
        factory: Factory[Any] = Factory.forProtocol(lambda: ControlProtocol(backend))
        if limits is not None and IReactorTime.providedBy(reactor):
            # The socket's mode is the credential: a client is admitted by its first command,
            # which must come within the handshake deadline; the caps count clients in all.
            factory = LimitedFactory(
                factory,
                reactor,
                log or ClusterLog("Node", "Control"),
                limits=limits,
                admit_on="data",
                credential="command",
            )
        super().__init__(endpoint, factory)
        self.setName("control-socket")

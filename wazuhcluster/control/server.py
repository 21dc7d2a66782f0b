"""The control socket server: AMP over a UNIX socket under HOME/var/run (mode 0660).

The role hands in a backend (:class:`~.interfaces.IControlBackend`); the master answers
from its own state and a worker relays what only the master knows over the cluster link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import IReactorUNIX
from twisted.internet.protocol import Factory
from twisted.protocols import amp

from wazuhcluster.control import commands
from wazuhcluster.control.interfaces import IControlBackend


class ControlProtocol(amp.AMP):
    """One control client's connection."""

    def __init__(self, backend: IControlBackend) -> None:
        super().__init__()
        self.backend = backend

    @commands.ListNodes.responder
    def list_nodes(self) -> Deferred[dict[str, Any]]:
        """Answer ListNodes from the backend."""
        return ensureDeferred(self._list_nodes())

    async def _list_nodes(self) -> dict[str, Any]:
        return {"nodes": await self.backend.list_nodes()}

    @commands.LocalInfo.responder
    def local_info(self) -> Deferred[dict[str, Any]]:
        """Answer LocalInfo from the backend."""
        return ensureDeferred(self._local_info())

    async def _local_info(self) -> dict[str, Any]:
        return {"info": await self.backend.local_info()}

    @commands.ClusterHealth.responder
    def cluster_health(self) -> Deferred[dict[str, Any]]:
        """Answer ClusterHealth from the backend."""
        return ensureDeferred(self._cluster_health())

    async def _cluster_health(self) -> dict[str, Any]:
        return {"health": await self.backend.cluster_health()}

    @commands.ReloadRuleset.responder
    def reload_ruleset(self) -> Deferred[dict[str, Any]]:
        """Answer ReloadRuleset from the backend."""
        return ensureDeferred(self._reload())

    async def _reload(self) -> dict[str, Any]:
        return {"message": await self.backend.reload()}

    @commands.ReconnectAgents.responder
    def reconnect_agents(self, agents: Any, count: int) -> Deferred[dict[str, Any]]:
        """Answer ReconnectAgents from the backend."""
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise commands.ControlError("agents must be a list of ids")
        return ensureDeferred(self._reconnect(agents, count))

    async def _reconnect(self, agents: list[str], count: int) -> dict[str, Any]:
        return {"reconnected": await self.backend.reconnect_agents(agents, count)}

    @commands.Manage.responder
    def manage(self, action: str, arguments: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Answer a management request from the backend."""
        return ensureDeferred(self._manage(action, arguments))

    async def _manage(self, action: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"result": await self.backend.manage(action, arguments)}


class ControlService(StreamServerEndpointService):
    """Listens on the control socket while the node runs."""

    def __init__(self, path: Path, backend: IControlBackend, reactor: IReactorUNIX) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # wantPID lets Twisted remove a socket left behind by a killed node.
        endpoint = UNIXServerEndpoint(reactor, str(path), mode=0o660, wantPID=True)
        super().__init__(endpoint, Factory.forProtocol(lambda: ControlProtocol(backend)))
        self.setName("control-socket")

"""The reactor a node runs on, as the Twisted interfaces its parts need together.

zope.interface has no intersection type, so each combination a part needs is one small
interface here, and :class:`INodeReactor` extends them all: a value typed ``INodeReactor``
can be handed to every part. The global reactor provides each member interface; it does
not declare these combinations, so the one place it enters (``wazuhcluster.tap``) casts it.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorFromThreads,
    IReactorPluggableNameResolver,
    IReactorSSL,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
)


class IReactorTCPTime(IReactorTCP, IReactorTime):
    """A TCP listener with timers (the agent channel)."""


class IReactorAgentChannel(IReactorTCPTime, IReactorUDP):
    """TCP and UDP listeners with timers (the agent channel: ``<protocol>tcp,udp``)."""


class IReactorUNIXTime(IReactorUNIX, IReactorTime):
    """A UNIX-socket client with timers (wazuh-cluster-control)."""


class IReactorSSLTime(IReactorSSL, IReactorTime):
    """A TLS listener or client with timers (the REST API, agent enrollment)."""


class IReactorCoreTime(IReactorCore, IReactorTime):
    """Timers and stopping the reactor (restarting the node in place)."""


class IReactorWebClient(IReactorTCPTime, IReactorPluggableNameResolver):
    """What an HTTP client (``twisted.web.client.Agent``) connects through: TCP, timers and
    the name resolver (etcd's client)."""


class INodeReactor(
    IReactorAgentChannel,
    IReactorSSLTime,
    IReactorCoreTime,
    IReactorWebClient,
    IReactorUNIX,
    IReactorFromThreads,
    IReactorFDSet,
    IReactorCore,
):
    """Everything a node's service tree asks of its reactor."""


class IScriptReactor(INodeReactor, IReactorCore):
    """A console script's reactor: a node's, plus running and stopping itself."""

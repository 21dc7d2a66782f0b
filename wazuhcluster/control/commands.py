"""AMP commands spoken on the local control socket (HOME/var/run/cluster.sock).

The control socket is local and unencrypted, protected by its file mode (0660). A worker
answers what it knows and relays the rest to the master over the cluster link.
"""

from __future__ import annotations

from twisted.protocols import amp

from wazuhcluster.wire.arguments import Json
from wazuhcluster.wire.commands import ControlError, NotConnected

__all__ = ["ControlError"]


_ERRORS = {NotConnected: b"NOT_CONNECTED", ControlError: b"CONTROL_ERROR"}


class ListNodes(amp.Command):
    """The cluster's nodes, master first: ``[{name, type, version, ip}]``."""

    arguments = []
    response = [(b"nodes", Json())]
    errors = _ERRORS


class LocalInfo(amp.Command):
    """This node's own identity: ``{name, type, version, ip, cluster}``."""

    arguments = []
    response = [(b"info", Json())]
    errors = _ERRORS


class Manage(amp.Command):
    """A management request (agents, groups...) answered by the master.

    ``action`` names the request and ``arguments`` holds its parameters; the result is
    JSON. Large listings are paged by the caller (``offset``/``limit``) so each answer stays
    under AMP's 64 KiB.
    """

    arguments = [(b"action", amp.Unicode()), (b"arguments", Json())]
    response = [(b"result", Json())]
    errors = _ERRORS


class ClusterHealth(amp.Command):
    """The cluster's health report with verdicts (answered by the master)."""

    arguments = []
    response = [(b"health", Json())]
    errors = _ERRORS


class ReconnectAgents(amp.Command):
    """Ask agents to reconnect (``#!-force_reconnect``): the listed ids wherever they are
    connected, plus ``count`` more of the asked node's own agents."""

    arguments = [(b"agents", Json()), (b"count", amp.Integer())]
    response = [(b"reconnected", Json())]
    errors = _ERRORS


class AnalysisStats(amp.Command):
    """This node's analysis intake: received, processed, dropped, queue, EPS, per process."""

    arguments = []
    response = [(b"stats", Json())]
    errors = _ERRORS


class ReloadRuleset(amp.Command):
    """Rebuild the node's analysis engine from the ruleset on disk (as SIGHUP does)."""

    arguments = []
    response = [(b"message", amp.Unicode())]
    errors = _ERRORS


class FailoverStatus(amp.Command):
    """The election as this node sees it (``status`` None: no ``<failover>`` configured)."""

    arguments = []
    response = [(b"status", Json())]
    errors = _ERRORS

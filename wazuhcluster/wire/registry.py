"""AMP commands of the agent registry: enrollment forwarded by workers, keys pushed to them,
and management requests relayed from a worker's control socket to the master.
"""

from __future__ import annotations

from twisted.protocols import amp

from wazuhcluster.wire.arguments import Json
from wazuhcluster.wire.commands import ControlError, NotAuthenticated

_FATAL: dict[type[Exception], bytes] = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class EnrollAgent(amp.Command):
    """Worker → master: an agent's enrollment line as the worker received it; the reply line
    (``OSSEC K:'...'`` or ``ERROR: ...``) goes back to the agent unchanged."""

    arguments = [(b"line", amp.Unicode()), (b"source_ip", amp.Unicode())]
    response = [(b"reply", amp.Unicode())]
    fatalErrors = _FATAL


class EnrollUndelivered(amp.Command):
    """Worker → master: the agent never got this key reply; the master removes that agent."""

    arguments = [(b"line", amp.Unicode()), (b"reply", amp.Unicode())]
    response = []
    fatalErrors = _FATAL


class KeysUpdate(amp.Command):
    """Master → worker: agents added (``[{id, name, ip, key}]``) and removed (ids) just now, so
    every node accepts a new agent within a second instead of at the next integrity cycle."""

    arguments = [(b"added", Json()), (b"removed", Json())]
    response = []


class RelayManage(amp.Command):
    """Worker → master: a management request made on the worker's control socket."""

    arguments = [(b"action", amp.Unicode()), (b"arguments", Json())]
    response = [(b"result", Json())]
    errors = {ControlError: b"CONTROL_ERROR"}
    fatalErrors = _FATAL

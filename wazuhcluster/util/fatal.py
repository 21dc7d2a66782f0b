"""Stopping a node that cannot run healthy: one dated ERROR in cluster.log, then a clean stop.

A part of the node that finds it cannot work (the control socket cannot be opened, say) calls
:func:`stop_node`: the reason goes to cluster.log as an ERROR, and the reactor stops, which
stops the whole service tree through ``stopService`` as SIGTERM would.

twistd itself exits 0 after a clean stop. So that a service manager sees the failure
(systemd's ``Restart=on-failure``, an init script's status), the twistd entry point calls
:func:`exit_non_zero_after_failure` once: when the process ends after a :func:`stop_node`,
its exit status is then 1.
"""

from __future__ import annotations

import atexit
import os
import sys

from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore

from wazuhcluster.util.logs import ClusterLog

#: The reasons given to :func:`stop_node` in this process, oldest first.
failures: list[str] = []

_hooked = False


def stop_node(reactor: IReactorCore, log: ClusterLog, reason: str) -> None:
    """Log ``reason`` (plain text, one sentence) as an ERROR and stop the node.

    The stop is scheduled for when the reactor runs, so calling this from ``startService``
    (before ``reactor.run`` has finished starting up) works too.
    """
    log.error("{reason} Stopping the node.", reason=reason)
    failures.append(reason)
    reactor.callWhenRunning(_stop, reactor)


def _stop(reactor: IReactorCore) -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:  # already stopping: nothing more to do
        pass


def exit_non_zero_after_failure() -> None:
    """Make this process exit with status 1 if :func:`stop_node` was called (twistd only)."""
    global _hooked
    if not _hooked:
        _hooked = True
        atexit.register(_exit_status)


def _exit_status() -> None:
    if failures:
        # twistd has finished (services stopped, its log closed) by the time atexit runs;
        # os._exit is the only way left to change the status it is about to return.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(1)

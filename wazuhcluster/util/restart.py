"""Restarting the node in place, as ``PUT /manager/restart`` and ``PUT /cluster/restart`` ask.

:func:`restart_node` stops the reactor after a short delay (so the API's answer leaves first),
which stops the whole service tree through ``stopService`` as SIGTERM would. Once twistd has
finished (services stopped, its pidfile removed, its log closed), the hook that the twistd
entry point installed with :func:`reexec_after_restart` replaces the process with a new one run
with the very same command line (``sys.orig_argv``, from the directory it was started in).

So the command line, environment, user and open-file limits stay those the service manager
gave. In the foreground (``twistd -n``, systemd's unit) the pid is kept: systemd's MAINPID and
a supervisor's pid stay right. Daemonized (the SysV init script), twistd forks again as at
any start: the pid changes and the new daemon writes it to the same pidfile, which the init
script reads. A node that stopped for a fault (:mod:`wazuhcluster.util.fatal`) exits 1
instead of restarting.
"""

from __future__ import annotations

import atexit
import os
import sys

from twisted.internet.error import ReactorNotRunning

from wazuhcluster.util import fatal
from wazuhcluster.util.interfaces import IReactorCoreTime
from wazuhcluster.util.logs import ClusterLog

#: Whether a restart was asked in this process.
requested = False
_hooked = False
_cwd = ""


def restart_node(reactor: IReactorCoreTime, log: ClusterLog, delay: float) -> None:
    """Stop the node in ``delay`` seconds and start it again (see the module docstring)."""
    log.info("Restart requested: the node stops in {delay:g} s and starts again", delay=delay)
    reactor.callLater(delay, _stop, reactor)


def _stop(reactor: IReactorCoreTime) -> None:
    global requested
    try:
        reactor.stop()
    except ReactorNotRunning:  # already stopping: nothing more to do
        pass
    requested = True


def reexec_after_restart() -> None:
    """Install, once, the hook that starts the process again after a requested restart
    (twistd entry point only; call it before twistd changes directory)."""
    global _hooked, _cwd
    if not _hooked:
        _hooked = True
        _cwd = os.getcwd()
        atexit.register(_reexec)


def restart_command() -> list[str]:
    """The command line this process was started with (interpreter included)."""
    return list(getattr(sys, "orig_argv", []) or [sys.executable, *sys.argv])


def _reexec() -> None:
    if not requested or fatal.failures:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.chdir(_cwd)
    os.execv(sys.executable, restart_command())

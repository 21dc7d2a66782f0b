"""Notice changes under the synced directories with inotify, so a rescan follows promptly.

The periodic local-integrity scan stays the safety net: inotify can overflow, and some file
systems do not report every change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall
from twisted.python.filepath import FilePath

from wazuhcluster.integrity.table import SYNC_ITEMS
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.logs import ClusterLog

if TYPE_CHECKING:  # Linux only: imported when the service starts
    from twisted.internet.inotify import INotify

#: Delay before watching again after a watched directory was deleted.
RESTART_DELAY = 0.1


class SyncedTreeWatcher(Service):
    """Calls ``on_change()`` whenever something under a synced directory changes."""

    def __init__(
        self, home: Path, on_change: Callable[[], None], reactor: INodeReactor, log: ClusterLog
    ) -> None:
        self.home = home
        self.on_change = on_change
        self.reactor = reactor
        self.log = log
        self._notifier: INotify | None = None
        #: ``twisted.internet.inotify``, once imported (None where it is not available).
        self._inotify: ModuleType | None = None
        self._restart_call: IDelayedCall | None = None

    def startService(self) -> None:
        """Start watching; without inotify support, only the periodic scan remains."""
        super().startService()
        try:
            from twisted.internet import inotify
        except ImportError:
            self.log.info("inotify is not available: relying on the periodic scan only.")
            return
        self._inotify = inotify
        self._watch_all()

    def _mask(self) -> int:
        inotify = self._inotify
        assert inotify is not None  # only called once it is imported
        return int(
            inotify.IN_MODIFY
            | inotify.IN_CREATE
            | inotify.IN_DELETE
            | inotify.IN_MOVED_FROM
            | inotify.IN_MOVED_TO
            | inotify.IN_CLOSE_WRITE
            | inotify.IN_ATTRIB
        )

    def _watch_all(self) -> None:
        assert self._inotify is not None  # only called once it is imported
        try:
            notifier = self._notifier = self._inotify.INotify(self.reactor)
            notifier.startReading()
            for item in SYNC_ITEMS:
                directory = self.home / item.directory
                directory.mkdir(parents=True, exist_ok=True)
                notifier.watch(
                    FilePath(str(directory)),
                    mask=self._mask(),
                    autoAdd=item.recursive,
                    recursive=item.recursive,
                    callbacks=[self._changed],
                )
        except Exception as error:
            self.log.warn("Could not watch the synced directories: {error}", error=error)

    def _changed(self, watch: object, path: FilePath[str], mask: int) -> None:
        inotify = self._inotify
        assert inotify is not None  # only called once it is imported
        if mask & inotify.IN_DELETE_SELF:
            # Twisted's INotify closes the whole notifier after a watched directory is
            # deleted: start a fresh one over the directories that remain.
            if self._restart_call is None or not self._restart_call.active():
                self._restart_call = self.reactor.callLater(RESTART_DELAY, self._restart)
        elif mask & inotify.IN_MOVED_TO and mask & inotify.IN_ISDIR and self._notifier:
            # Twisted adds watches for directories created in place, not for renamed-in ones.
            try:
                self._notifier.watch(
                    path, mask=self._mask(), autoAdd=True, recursive=True, callbacks=[self._changed]
                )
            except Exception as error:
                self.log.warn("Could not watch {path}: {error}", path=path.path, error=error)
        self.on_change()

    def _restart(self) -> None:
        self._restart_call = None
        if not self.running:
            return
        old, self._notifier = self._notifier, None
        if old is not None:
            old.loseConnection()
        self._watch_all()
        self.on_change()

    def stopService(self) -> None:
        """Stop watching."""
        super().stopService()
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        self._restart_call = None
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None

"""Notice changes under the synced directories with inotify, so a rescan follows promptly.

The periodic local-integrity scan stays the safety net: inotify can overflow, and some file
systems do not report every change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.python.filepath import FilePath

from wazuhcluster.integrity.table import SYNC_ITEMS
from wazuhcluster.logs import ClusterLog


class SyncedTreeWatcher(Service):
    """Calls ``on_change()`` whenever something under a synced directory changes."""

    def __init__(
        self, home: Path, on_change: Callable[[], None], reactor: Any, log: ClusterLog
    ) -> None:
        self.home = home
        self.on_change = on_change
        self.reactor = reactor
        self.log = log
        self._notifier: Any = None

    def startService(self) -> None:
        """Start watching; without inotify support, only the periodic scan remains."""
        super().startService()
        try:
            from twisted.internet import inotify
        except ImportError:
            self.log.info("inotify is not available: relying on the periodic scan only.")
            return
        mask = (
            inotify.IN_MODIFY
            | inotify.IN_CREATE
            | inotify.IN_DELETE
            | inotify.IN_MOVED_FROM
            | inotify.IN_MOVED_TO
            | inotify.IN_CLOSE_WRITE
            | inotify.IN_ATTRIB
            | inotify.IN_DELETE_SELF
        )
        try:
            self._notifier = inotify.INotify(self.reactor)
            self._notifier.startReading()
            for item in SYNC_ITEMS:
                directory = self.home / item.directory
                directory.mkdir(parents=True, exist_ok=True)
                self._notifier.watch(
                    FilePath(str(directory)),
                    mask=mask,
                    autoAdd=item.recursive,
                    recursive=item.recursive,
                    callbacks=[self._changed],
                )
        except Exception as error:
            self.log.warn("Could not watch the synced directories: {error}", error=error)

    def _changed(self, watch: Any, path: FilePath[str], mask: int) -> None:
        self.on_change()

    def stopService(self) -> None:
        """Stop watching."""
        super().stopService()
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None

"""The master's synced files published to etcd once it has noticed them.

Which files: group folders under ``etc/shared`` (agent.conf and the rest, not the
``merged.mg`` the registry builds from them) and ``etc/rules``, ``etc/decoders``,
``etc/lists``, ``etc/sca``: what a new master could not rebuild. ``client.keys`` and
``var/multigroups`` are derived from the agents, which etcd keeps on their own.

:class:`FilePublisher` is handed each table the local integrity scan makes (after every
periodic scan, and promptly after inotify reports a change): files whose checksum
differs from what etcd holds are read (in a thread) and published, removed ones
deleted, through the fenced store. API and control writes of groups call
:meth:`FilePublisher.publish_now`, so they are answered only once etcd holds them.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from twisted.internet.defer import DeferredLock

from wazuhcluster.failover.files import MAX_FILE, FileTooLarge
from wazuhcluster.failover.interfaces import IDurableFiles
from wazuhcluster.integrity.scan import FileMeta, checksum_bytes
from wazuhcluster.master.durable_api import not_stored
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

#: The synced directories kept in etcd.
DURABLE_DIRECTORIES = ("etc/shared/", "etc/rules/", "etc/decoders/", "etc/lists/", "etc/sca/")
#: Names the master builds itself (never kept).
DERIVED_NAMES = frozenset({"merged.mg"})


def is_durable(relpath: str) -> bool:
    """Whether a synced file's path is one kept in etcd."""
    return relpath.startswith(DURABLE_DIRECTORIES) and relpath.rsplit("/", 1)[-1] not in (
        DERIVED_NAMES
    )


def read_files(
    home: str, relpaths: list[str]
) -> tuple[dict[str, bytes], list[str], list[FileTooLarge]]:
    """The current bytes of ``relpaths`` (blocking); paths gone since the scan, and files
    above the bound (not read), are listed apart."""
    found: dict[str, bytes] = {}
    gone: list[str] = []
    large: list[FileTooLarge] = []
    for relpath in relpaths:
        path = os.path.join(home, relpath)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            gone.append(relpath)
            continue
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            large.append(FileTooLarge(relpath, os.stat(path).st_size))
            continue
        found[relpath] = data
    return found, gone, large


class FilePublisher:
    """Keeps etcd's copy of the durable synced files equal to the master's disk."""

    def __init__(
        self,
        store: IDurableFiles,
        home: Path,
        run_in_thread: RunInThread,
        log: ClusterLog,
    ) -> None:
        self.store = store
        self.home = str(home)
        self.run_in_thread = run_in_thread
        self.log = log
        #: Asks the local integrity task for a fresh table and waits for its publication
        #: (set by the master; raises when that publication failed).
        self.rescan: Callable[[], Awaitable[None]] | None = None
        self._lock = DeferredLock()
        #: Paths refused as too large, with the checksum refused (logged once per change).
        self._refused: dict[str, str] = {}
        self.published_files = 0

    async def publish_now(self) -> None:
        """Rescan and publish now; raises when etcd does not hold the files after it."""
        if self.rescan is not None:
            await self.rescan()

    async def publish_for_api(self) -> None:
        """:meth:`publish_now` for an API call: a 503 ApiError when not published."""
        try:
            await self.publish_now()
        except Exception as error:
            raise not_stored(
                "The change is made on this master only (a new master would not have it)", error
            ) from None

    async def table_scanned(self, table: Mapping[str, FileMeta]) -> None:
        """Publish what differs between ``table`` and etcd; raises when not published."""
        await self._lock.acquire()
        try:
            await self._publish(table)
        finally:
            self._lock.release()

    async def _publish(self, table: Mapping[str, FileMeta]) -> None:
        known = self.store.known
        if known is None:
            stored, _ = await self.store.load()
            known = {relpath: checksum_bytes(data) for relpath, data in stored.items()}
            self.store.known = known
        wanted = {path: meta.checksum for path, meta in table.items() if is_durable(path)}
        changed = sorted(
            path
            for path, checksum in wanted.items()
            if known.get(path) != checksum and self._refused.get(path) != checksum
        )
        removed = sorted(set(known) - set(wanted))
        if not changed and not removed:
            return
        contents, gone, large = await self.run_in_thread(read_files, self.home, changed)
        for error in large:
            # Logged once per content; the other files are published all the same.
            self._refused[error.relpath] = wanted[error.relpath]
            self.log.error("Not kept in etcd: {error}", error=error)
        removed = sorted(set(removed) | {path for path in gone if path in known})
        await self.store.publish(contents, removed)
        for path, data in contents.items():
            known[path] = checksum_bytes(data)
        for path in removed:
            known.pop(path, None)
        self.published_files += len(contents)
        self.log.info(
            "Published {count} changed synced files to etcd and removed {removed}.",
            count=len(contents),
            removed=len(removed),
        )
        if large:
            raise large[0]

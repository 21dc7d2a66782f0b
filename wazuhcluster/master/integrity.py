"""The master's side of the integrity sync: local integrity, checks and file streams per worker.

The master keeps one cached table of its synced files (re-hashing only files whose stat
changed), refreshed every ``local_integrity`` seconds and promptly after inotify reports a
change. A worker whose digest matches costs one string comparison. Otherwise the worker
streams its table, the master classifies missing / shared / extra and streams the files to
create or update plus the list to delete — one sync per worker at a time, a bounded number at
once, and at most a byte budget per cycle so a huge change set is spread over cycles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from attrs import define
from twisted.application.service import IService
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall
from twisted.protocols import amp

from wazuhcluster.integrity.compare import Plan, compare, split_plan
from wazuhcluster.integrity.pack import iter_pack, packed_size
from wazuhcluster.integrity.scan import FileTable, ScanStats, master_digest, scan_with_digest
from wazuhcluster.integrity.table_codec import decode_table
from wazuhcluster.master.interfaces import IMasterNode
from wazuhcluster.master.workers import WorkerLink
from wazuhcluster.util.background import BackgroundWork
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import CallOnStop, PeriodicTask
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire import integrity as wire
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.wire.stream_consumers import BytesConsumer
from wazuhcluster.wire.stream_receiver import StreamKind
from wazuhcluster.wire.stream_sources import ThreadedSource

#: Largest worker table accepted (about 500,000 files).
MAX_TABLE_BYTES = 128 * 1024 * 1024
#: Content bytes sent to one worker per cycle; the rest follows in the next cycles.
SYNC_BUDGET_BYTES = 512 * 1024 * 1024
#: Syncs the master streams at once; other workers answer "busy" and retry next cycle.
MAX_CONCURRENT_SYNCS = 4
#: StreamChunk calls in flight for a files stream (16 x 60 KiB). The worker writes the files
#: in a thread; with a window of 4, each round trip waited for its reactor thread to win the GIL
#: back, and the round trips, not the disk or the CPU, bounded a cold sync.
FILES_WINDOW = 16
#: How long inotify events are gathered before one rescan.
INOTIFY_DEBOUNCE = 0.3


@define
class WorkerIntegrityState:
    """What the master knows about one worker's integrity (for health reports and locks)."""

    syncing: bool = False
    locked_at: float = 0.0
    last_check_start: float | None = None
    last_check_end: float | None = None
    last_sync_start: float | None = None
    last_sync_end: float | None = None
    last_counts: tuple[int, int, int] = (0, 0, 0)
    deferred_files: int = 0
    bytes_sent: int = 0
    last_error: str | None = None


class MasterIntegrity(LinkFeature[WorkerLink]):
    """Local integrity plus the master's half of each worker's integrity check and sync."""

    def __init__(
        self,
        home: Path,
        node: IMasterNode,
        run_in_thread: RunInThread = run_in_reactor_pool,
        budget_bytes: int = SYNC_BUDGET_BYTES,
    ) -> None:
        self.home = str(home)
        self.node = node
        self.clock = node.clock
        self.run_in_thread = run_in_thread
        self.budget_bytes = budget_bytes
        self.table: FileTable | None = None
        self.digest: str | None = None
        self.generation = 0
        self.log = ClusterLog("Master", "Local integrity")
        self._ready: list[Deferred[None]] = []
        self._syncs = DeferredSemaphore(MAX_CONCURRENT_SYNCS)
        self.task = PeriodicTask(
            "local integrity",
            node.timings.local_integrity,
            self.refresh,
            self.clock,
            self.log,
        )
        self._inotify_call: IDelayedCall | None = None
        self._rescan_after = False
        #: Handed each fresh table (with <failover>: publishes the durable files to etcd).
        self.on_table: Callable[[FileTable], Awaitable[None]] | None = None
        #: What ``on_table`` raised at the last scan (None: it succeeded).
        self.on_table_error: Exception | None = None
        #: File streams to workers, cancelled when the node stops.
        self.background = BackgroundWork(self.log, "integrity sends")

    # --- local integrity -----------------------------------------------------------------
    async def refresh(self) -> None:
        """Rescan the synced files (in a thread) and tell workers when the digest changed."""
        started = self.clock.seconds()
        stats = ScanStats()
        table, digest = await self.run_in_thread(
            scan_with_digest, self.home, self.table, stats, master_digest
        )
        changed = digest != self.digest
        self.table, self.digest = table, digest
        for error in stats.errors[:10]:
            self.log.error("Could not read {path}: {reason}", path=error[0], reason=error[1])
        self.log.info(
            "Finished in {seconds:.3f}s. Calculated metadata of {count} files.",
            seconds=self.clock.seconds() - started,
            count=len(table),
        )
        waiting, self._ready = self._ready, []
        for waiter in waiting:
            waiter.callback(None)
        if self._rescan_after:
            self._rescan_after = False
            self.notice_change()
        if changed:
            self.generation += 1
            self._announce(digest)
        if self.on_table is not None:
            try:
                await self.on_table(table)
                self.on_table_error = None
            except Exception as error:
                self.on_table_error = error
                self.log.error("Could not publish the synced files: {error}", error=error)

    async def rescan_now(self) -> None:
        """Scan again now (after a scan in flight, which may have missed a change) and
        raise what ``on_table`` raised for that scan."""
        if self.task.busy:
            await self.task.run_now()
        await self.task.run_now()
        if self.on_table_error is not None:
            raise self.on_table_error

    def _announce(self, digest: str) -> None:
        for link in self.node.workers:
            try:
                # IntegrityChanged needs no answer: there is no Deferred to keep.
                link.protocol.callRemote(wire.IntegrityChanged, digest=digest)
            except Exception as error:  # a link going down must not stop the others
                self.log.warn(
                    "Could not tell {name} about the change: {error}", name=link.name, error=error
                )

    def notice_change(self) -> None:
        """Something under a synced directory changed: rescan soon (debounced)."""
        if self._inotify_call is not None and self._inotify_call.active():
            return
        self._inotify_call = self.clock.callLater(INOTIFY_DEBOUNCE, self._rescan)

    def _rescan(self) -> None:
        self._inotify_call = None
        if self.task.busy:
            # The scan in flight may have read the file before it changed: scan once more after.
            self._rescan_after = True
            return
        self.task.run_now()

    async def current_table(self) -> FileTable:
        """The cached table, waiting for the first scan if it has not finished yet."""
        if self.table is None:
            waiter: Deferred[None] = Deferred()
            self._ready.append(waiter)
            await waiter
        assert self.table is not None
        return self.table

    # --- per worker ----------------------------------------------------------------------
    def state(self, link: WorkerLink) -> WorkerIntegrityState:
        """The integrity state the master keeps for ``link``."""
        found: WorkerIntegrityState = link.state.setdefault("integrity", WorkerIntegrityState())
        return found

    def locator(self, link: WorkerLink) -> amp.CommandLocator:
        """Answers IntegrityCheck for ``link``."""
        return _IntegrityLocator(self, link)

    async def check(self, link: WorkerLink, digest: str, files: int) -> str:
        """Compare a worker's digest with ours; say whether it must send its table."""
        state = self.state(link)
        log = ClusterLog(f"Worker {link.name}", "Integrity check")
        if state.syncing:
            locked_for = self.clock.seconds() - state.locked_at
            if locked_for <= self.node.timings.max_locked_integrity:
                return wire.BUSY
            log.warn(
                "Releasing the integrity lock of {name} after {seconds:.0f}s.",
                name=link.name,
                seconds=locked_for,
            )
            state.syncing = False
        state.last_check_start = self.clock.seconds()
        await self.current_table()
        if digest == self.digest:
            state.last_check_end = self.clock.seconds()
            log.info(
                "Finished in {seconds:.3f}s. Received metadata of {count} files. "
                "Sync not required.",
                seconds=state.last_check_end - state.last_check_start,
                count=files,
            )
            return wire.IN_SYNC
        state.syncing = True
        state.locked_at = self.clock.seconds()
        return wire.SEND_TABLE

    def stream_kinds(self) -> Mapping[str, StreamKind]:
        """Workers send their tables as one stream each."""
        return {wire.TABLE_KIND: StreamKind(MAX_TABLE_BYTES, lambda size: BytesConsumer())}

    def on_stream(self, link: WorkerLink, kind: str, stream_id: str, result: object) -> object:
        """A worker's table arrived: classify, answer with the counts, stream the files."""
        assert isinstance(result, bytes)
        return Deferred.fromCoroutine(self._plan_for(link, result))

    async def _plan_for(self, link: WorkerLink, data: bytes) -> str:
        state = self.state(link)
        log = ClusterLog(f"Worker {link.name}", "Integrity check")
        try:
            worker_table = await self.run_in_thread(decode_table, data)
            master_table = await self.current_table()
            plan: Plan = await self.run_in_thread(compare, master_table, worker_table)
        except Exception as error:
            state.syncing = False
            state.last_error = str(error)
            log.error("Invalid file table from {name}: {error}", name=link.name, error=error)
            raise
        state.last_check_end = self.clock.seconds()
        if plan.is_empty:
            state.syncing = False
            log.info(
                "Finished in {seconds:.3f}s. Received metadata of {count} files. "
                "Sync not required.",
                seconds=state.last_check_end - (state.last_check_start or state.last_check_end),
                count=len(worker_table),
            )
            return "Sync not required."
        log.info(
            "Finished in {seconds:.3f}s. Received metadata of {count} files. Sync required.",
            seconds=state.last_check_end - (state.last_check_start or state.last_check_end),
            count=len(worker_table),
        )
        split = split_plan(plan, self.budget_bytes)
        state.deferred_files = len(split.deferred.files)
        self.background.track(
            self._send(link, split.now, split.deferred_bytes), f"Integrity sync of {link.name}"
        )
        return split.now.describe()

    async def _send(self, link: WorkerLink, plan: Plan, deferred_bytes: int) -> None:
        state = self.state(link)
        log = ClusterLog(f"Worker {link.name}", "Integrity sync")
        await self._syncs.acquire()
        try:
            state.last_sync_start = started = self.clock.seconds()
            log.info("Starting.")
            log.info(
                "Files to create in worker: {a} | Files to update in worker: {b} | "
                "Files to delete in worker: {c}",
                a=len(plan.missing),
                b=len(plan.shared),
                c=len(plan.extra),
            )
            if deferred_bytes:
                log.warn(
                    "Sync budget of {budget} bytes reached: {count} files ({size} bytes) "
                    "will follow in the next cycles.",
                    budget=self.budget_bytes,
                    count=state.deferred_files,
                    size=deferred_bytes,
                )
            size = await self.run_in_thread(packed_size, plan)
            result = await link.protocol.streams.send(
                wire.FILES_KIND,
                ThreadedSource(iter_pack(self.home, plan), self.run_in_thread),
                size=size,
                end_timeout=self.node.timings.receive_file_timeout,
                window=FILES_WINDOW,
            )
            state.bytes_sent += size
            state.last_counts = plan.counts
            state.last_sync_end = self.clock.seconds()
            state.last_error = None
            log.info(
                "Finished in {seconds:.3f}s. Worker reports: {reply}",
                seconds=state.last_sync_end - started,
                reply=result.reply,
            )
        except CancelledError:
            state.last_error = "cancelled: the node is stopping"
            raise
        except Exception as error:
            state.last_error = str(error)
            log.error("Error synchronizing files: {error}", error=str(error) or repr(error))
        finally:
            state.syncing = False
            self._syncs.release()

    def link_down(self, link: WorkerLink) -> None:
        """Forget a gone worker's lock (its streams were aborted with the connection)."""
        self.state(link).syncing = False

    def cancel_pending(self) -> None:
        """Cancel a rescan scheduled by inotify (the node is stopping)."""
        if self._inotify_call is not None and self._inotify_call.active():
            self._inotify_call.cancel()
        self._inotify_call = None

    def services(self) -> Iterable[IService]:
        """The local integrity task, the cancelling of a pending rescan at stop, and the sends
        to workers (cancelled at stop)."""
        return (self.task, CallOnStop(self.cancel_pending), self.background)

    def health(self, link: WorkerLink) -> Mapping[str, Any]:
        """Last check and sync times, counts, bytes sent and whether a sync is running."""
        state = self.state(link)
        create, update, delete = state.last_counts
        return {
            "sync_integrity_free": not state.syncing,
            "last_check_integrity": {
                "date_start_master": state.last_check_start,
                "date_end_master": state.last_check_end,
            },
            "last_sync_integrity": {
                "date_start_master": state.last_sync_start,
                "date_end_master": state.last_sync_end,
                "total_files": {"missing": create, "shared": update, "extra": delete},
                "deferred_files": state.deferred_files,
                "bytes_sent": state.bytes_sent,
                "last_error": state.last_error,
            },
        }


class _IntegrityLocator(amp.CommandLocator):
    """IntegrityCheck responder bound to one worker link."""

    def __init__(self, feature: MasterIntegrity, link: WorkerLink) -> None:
        self.feature = feature
        self.link = link

    @wire.IntegrityCheck.responder
    async def integrity_check(self, digest: str, files: int) -> dict[str, str]:
        """Answer whether the worker must send its table."""
        return {"verdict": await self.feature.check(self.link, digest, files)}

"""The worker's side of the integrity sync: check every cycle, receive and apply the master's files.

Every ``sync_integrity`` seconds (and at once when the master announces a change) the worker
rescans its synced files, incrementally and in a thread, and sends the digest. Only when it
differs does the table travel; the master then streams the files, which are written to temp
files in their target directories as they arrive and renamed into place only once the whole
stream verified. A sync that touched rules, decoders or lists fires the ruleset-changed hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from attrs import define
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.protocols import amp

from wazuhcluster.integrity.apply import ApplyResult, apply_plan, cleanup_temp_files
from wazuhcluster.integrity.scan import FileTable, ScanStats, scan_with_digest
from wazuhcluster.integrity.staging import Staged
from wazuhcluster.integrity.table_codec import encode_table
from wazuhcluster.integrity.unpack import Received, Unpacker
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import CallOnStart, CallOnStop, PeriodicTask
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire import integrity as wire
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.wire.stream_consumers import ThreadedConsumer
from wazuhcluster.wire.stream_receiver import StreamKind
from wazuhcluster.worker.link import MasterLink

#: Largest sync stream accepted from the master (the master's budget keeps it well below).
MAX_SYNC_STREAM = 2 * 1024 * 1024 * 1024


@define
class IntegrityStatus:
    """The worker's own view of its last integrity check and sync."""

    last_check_start: float | None = None
    last_check_end: float | None = None
    last_sync_start: float | None = None
    last_sync_end: float | None = None
    last_result: str | None = None
    last_error: str | None = None
    syncs: int = 0


class WorkerIntegrity(LinkFeature[MasterLink]):
    """Checks the worker's synced files against the master's and applies what it sends."""

    def __init__(
        self,
        home: Path,
        link: MasterLink,
        run_in_thread: RunInThread = run_in_reactor_pool,
    ) -> None:
        self.home = str(home)
        self.link = link
        self.clock = link.clock
        self.run_in_thread = run_in_thread
        self.table: FileTable | None = None
        #: Digest of ``table`` (None before the first scan).
        self.digest: str | None = None
        self.status = IntegrityStatus()
        #: The check asked for the next reactor turn (on joining, or after a busy check).
        self._next_check: IDelayedCall | None = None
        self.on_ruleset_changed: list[Callable[[], object]] = []
        #: Called with the paths a sync created, updated or deleted.
        self.on_files_changed: list[Callable[[set[str]], object]] = []
        tag = f"Worker {link.cluster.node_name}"
        self.check_log = ClusterLog(tag, "Integrity check")
        self.sync_log = ClusterLog(tag, "Integrity sync")
        self._awaiting: Deferred[None] | None = None
        self._check_again = False
        #: Starts the write-out of a sync's data early (see Unpacker), never waited for.
        self.syncer = ThreadPoolExecutor(1, thread_name_prefix="integrity-syncer")
        self.task = PeriodicTask(
            "integrity",
            link.timings.sync_integrity,
            self.check,
            self.clock,
            self.check_log,
            run_at_start=False,
        )

    def remove_leftovers(self) -> None:
        """Remove temp files an interrupted sync left (at start, before any sync runs)."""
        removed = cleanup_temp_files(self.home)
        if removed:
            self.sync_log.info(
                "Removed {count} temp files of an interrupted sync.", count=len(removed)
            )

    def check_soon(self) -> None:
        """Check now; if a check is running, check again as soon as it ends (its scan may
        predate the change the master announced)."""
        if self.task.busy:
            self._check_again = True
            return
        self.task.run_now()

    async def check(self) -> None:
        """One integrity check: digest, then table and files only if they differ."""
        try:
            await self._check()
        finally:
            if self._check_again:
                self._check_again = False
                self._check_next_turn()

    async def _check(self) -> None:
        if not self.link.connected or self._awaiting is not None:
            return
        started = self.status.last_check_start = self.clock.seconds()
        stats = ScanStats()
        self.table, self.digest = await self.run_in_thread(
            scan_with_digest, self.home, self.table, stats
        )
        digest = self.digest
        answer = await self.link.call(wire.IntegrityCheck, digest=digest, files=len(self.table))
        verdict = answer["verdict"]
        if verdict == wire.BUSY:
            self.check_log.debug("The master is busy with this worker's last sync.")
            return
        if verdict == wire.IN_SYNC:
            self.status.last_check_end = self.clock.seconds()
            self.check_log.info(
                "Finished in {seconds:.3f}s. Sync not required.",
                seconds=self.status.last_check_end - started,
            )
            return
        self.check_log.debug("Sending the table of {count} files.", count=len(self.table))
        self._awaiting = Deferred()
        awaiting = self._awaiting
        timeout = self.link.timings.receive_file_timeout
        try:
            data = await self.run_in_thread(encode_table, self.table)
            protocol = self.link.protocol
            if protocol is None:
                raise ConnectionError("the link to the master is down")
            sent = await protocol.streams.send(wire.TABLE_KIND, data, size=len(data))
            self.status.last_check_end = self.clock.seconds()
            if sent.reply == "Sync not required.":
                self.check_log.info(
                    "Finished in {seconds:.3f}s. Sync not required.",
                    seconds=self.status.last_check_end - started,
                )
                return
            self.check_log.info(
                "Finished in {seconds:.3f}s. Sync required.",
                seconds=self.status.last_check_end - started,
            )
            # The files stream follows; its arrival (or a timeout) ends this cycle.
            await awaiting.addTimeout(timeout, self.clock)
        finally:
            self._awaiting = None

    def stream_kinds(self) -> Mapping[str, StreamKind]:
        """The master's file streams, unpacked into temp files as they arrive, in a thread."""
        return {
            wire.FILES_KIND: StreamKind(
                MAX_SYNC_STREAM,
                lambda size: ThreadedConsumer(
                    Unpacker(
                        self.home,
                        max_total_bytes=MAX_SYNC_STREAM,
                        syncer=self.syncer,
                        on_abort=self._report_unremoved,
                    ),
                    self.run_in_thread,
                ),
            )
        }

    def on_stream(self, link: MasterLink, kind: str, stream_id: str, result: object) -> object:
        """A verified files stream: apply it atomically in a thread, then report."""
        assert isinstance(result, Received)
        return Deferred.fromCoroutine(self._apply(result))

    async def _apply(self, received: Received) -> str:
        started = self.status.last_sync_start = self.clock.seconds()
        self.sync_log.info("Starting.")
        self.sync_log.info("{summary}", summary=received.header.describe())
        try:
            result: ApplyResult = await self.run_in_thread(
                apply_plan, self.home, received.plan, received.staged
            )
        except Exception as error:
            received.staged.discard()
            self._report_unremoved(received.staged)
            self.status.last_error = str(error)
            self.sync_log.error("Error synchronizing files: {error}", error=error)
            self._finish_waiting()
            raise
        self._report_unremoved(received.staged)
        self.status.last_sync_end = self.clock.seconds()
        self.status.last_result = result.describe()
        self.status.syncs += 1
        if result.failed:
            self.status.last_error = f"{len(result.failed)} files failed"
            for path, reason in sorted(result.failed.items())[:20]:
                self.sync_log.error("Could not apply {path}: {reason}", path=path, reason=reason)
        else:
            self.status.last_error = None
        if result.resend:
            self.sync_log.info(
                "{count} files changed on the master while it sent them; the next cycle sends "
                "them again: {paths}",
                count=len(result.resend),
                paths=", ".join(result.resend[:20]),
            )
        self.sync_log.info(
            "Finished in {seconds:.3f}s.", seconds=self.status.last_sync_end - started
        )
        changed = {*result.created, *result.updated, *result.deleted}
        for files_hook in list(self.on_files_changed):
            try:
                files_hook(changed)
            except Exception:
                self.sync_log.failure("A files-changed hook failed")
        if result.ruleset_changed:
            for hook in list(self.on_ruleset_changed):
                try:
                    hook()
                except Exception:
                    self.sync_log.failure("A ruleset-changed hook failed")
        self._finish_waiting()
        return result.describe()

    def _report_unremoved(self, staged: Staged) -> None:
        """Warn of the temp directories a sync could not remove (the start-up cleanup tries
        again), once each."""
        for path, error in sorted(staged.unremoved.items()):
            self.sync_log.warn(
                "Could not remove the temp directory {path}: {error}", path=path, error=error
            )
        staged.unremoved.clear()

    def _finish_waiting(self) -> None:
        if self._awaiting is not None and not self._awaiting.called:
            self._awaiting.callback(None)

    def locator(self, link: MasterLink) -> amp.CommandLocator:
        """Answers the master's change announcements."""
        return _ChangedLocator(self)

    def link_up(self, link: MasterLink) -> None:
        """Check right after joining instead of waiting a full cycle."""
        self._check_next_turn()

    def _check_next_turn(self) -> None:
        """Run the check at the next reactor turn (once, however often asked)."""
        if self._next_check is None or not self._next_check.active():
            self._next_check = self.clock.callLater(0, self._check_now)

    def _check_now(self) -> None:
        self._next_check = None
        self.task.run_now()

    def _cancel_next_check(self) -> None:
        if self._next_check is not None and self._next_check.active():
            self._next_check.cancel()
        self._next_check = None

    def link_down(self, link: MasterLink) -> None:
        """A cycle waiting for files will not get them."""
        if self._awaiting is not None and not self._awaiting.called:
            self._awaiting.errback(ConnectionError("the link to the master was lost"))

    def services(self) -> Iterable[IService]:
        """The start-up cleanup of leftover temp files, the integrity task, and the syncer's
        shutdown at stop."""
        return (
            CallOnStart(self.remove_leftovers),
            self.task,
            CallOnStop(lambda: self.syncer.shutdown(wait=False)),
            CallOnStop(self._cancel_next_check),
        )


class _ChangedLocator(amp.CommandLocator):
    """Answers IntegrityChanged by checking at once."""

    def __init__(self, feature: WorkerIntegrity) -> None:
        self.feature = feature

    @wire.IntegrityChanged.responder
    def integrity_changed(self, digest: str) -> dict[str, Any]:
        """The master's files changed: check now, or right after the check in flight."""
        if self.feature.digest != digest:
            self.feature.check_soon()
        return {}

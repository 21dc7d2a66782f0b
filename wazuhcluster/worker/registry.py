"""The worker's side of the registry: enrollment forwarded to the master, keys pushed back.

The worker never decides an enrollment: it relays the agent's line to the master over the
cluster link and relays the master's answer. Keys the master pushes are merged into the
worker's client.keys at once (the integrity sync would bring them too, a cycle later), and
what changed is handed to the agent channel, which updates its keys without re-reading the
file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import CancelledError, Deferred, DeferredLock
from twisted.protocols import amp
from twisted.python.failure import Failure

from wazuhcluster.agents.enrollment import (
    CANNOT_REACH_MASTER,
    EnrollmentRequest,
    EnrollmentServerFactory,
    error_reply,
)
from wazuhcluster.agents.enrollment_tls import enrollment_listener, ensure_manager_certificate
from wazuhcluster.config.auth_settings import AuthSettings
from wazuhcluster.registry.keys import (
    ClientKeysError,
    KeysDelta,
    KeysFile,
    Push,
    pushed_entry,
)
from wazuhcluster.util.background import BackgroundWork
from wazuhcluster.util.interfaces import IReactorSSLTime
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire import registry as wire
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.worker.link import MasterLink


class WorkerRegistry(LinkFeature[MasterLink]):
    """Forwards enrollment to the master and keeps client.keys current with its pushes."""

    def __init__(
        self,
        client_keys: Path,
        auth: AuthSettings,
        link: MasterLink,
        reactor: IReactorSSLTime,
        run_in_thread: RunInThread = run_in_reactor_pool,
    ) -> None:
        self.client_keys = client_keys
        self.auth = auth
        self.link = link
        self.reactor = reactor
        self.run_in_thread = run_in_thread
        self.log = ClusterLog(f"Worker {link.cluster.node_name}", "Registry")
        #: Called with each merge's :class:`KeysDelta` once it is on disk.
        self.on_keys_changed: list[Callable[[KeysDelta], object]] = []
        self.keys_file = KeysFile(client_keys)
        self._lock = DeferredLock()
        self._pending: list[Push] = []
        #: Reports of undelivered keys to the master, cancelled when the node stops.
        self.background = BackgroundWork(self.log, "registry reports")

    # --- enrollment ------------------------------------------------------------------------
    async def forward(self, request: EnrollmentRequest, source_ip: str) -> str:
        """Relay an enrollment to the master; the agent gets the master's answer."""
        if not self.link.connected:
            # The agent is told and retries; the lost master link is logged by the link itself.
            self.log.warn(
                "Enrollment of {name!r} refused: not connected to the master.", name=request.name
            )
            return error_reply(CANNOT_REACH_MASTER)
        self.log.info(
            "Dispatching request to master node: {name!r} from {ip}.",
            name=request.name,
            ip=source_ip,
        )
        try:
            answer = await self.link.call(
                wire.EnrollAgent, line=request.to_line(), source_ip=source_ip
            )
        except Exception as error:
            self.log.error(
                "Could not forward the enrollment of {name!r}: {error}",
                name=request.name,
                error=str(error) or repr(error),
            )
            return error_reply(CANNOT_REACH_MASTER)
        reply: str = answer["reply"]
        return reply

    def undelivered(self, request: EnrollmentRequest, reply: str) -> None:
        """The agent never got its key: ask the master to remove it."""
        if not self.link.connected:
            return
        done = self.link.call(wire.EnrollUndelivered, line=request.to_line(), reply=reply)
        done.addErrback(self._report_failed)
        self.background.track(done, f"Reporting the undelivered key of {request.name!r}")

    def _report_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            failure.raiseException()  # the node is stopping: let the tracker see it
        self.log.warn(
            "Could not report an undelivered key: {error}", error=failure.getErrorMessage()
        )

    def enrollment_service(self) -> IService:
        """The worker's 1515 listener."""
        ensure_manager_certificate(self.auth.ssl_manager_cert, self.auth.ssl_manager_key)
        factory = EnrollmentServerFactory(
            lambda request, ip: Deferred.fromCoroutine(self.forward(request, ip)),
            self.reactor,
            undelivered=self.undelivered,
        )
        return enrollment_listener(self.reactor, self.auth, factory, self.log)

    def services(self) -> Iterable[IService]:
        """The reports to the master (cancelled at stop) and the 1515 listener, unless
        enrollment is disabled."""
        yield self.background
        if self.auth.listening:
            yield self.enrollment_service()

    # --- pushed keys -----------------------------------------------------------------------
    def locator(self, link: MasterLink) -> amp.CommandLocator:
        """Answers the master's key pushes."""
        return _KeysLocator(self)

    async def apply_push(self, added: list[dict[str, str]], removed: list[str]) -> None:
        """Merge a push into client.keys (in a thread) and hand it to the listeners; returns
        once the push is on disk and usable by the agent channel (the master answers the
        agent only then). Pushes that arrive while a merge runs are merged together in the
        next one: one rewrite of client.keys for a burst of enrollments, not one per agent."""
        self._pending.append((added, removed))
        await self._lock.acquire()
        try:
            batch, self._pending = self._pending, []
            if not batch:
                return  # an earlier merge already wrote this push (and its hooks ran)
            delta = await self.run_in_thread(self.keys_file.merge, batch)
            self.log.info(
                "Keys updated by the master: {added} added, {removed} removed ({count} agents).",
                added=len(delta.added),
                removed=len(delta.removed),
                count=delta.count,
            )
            # Still under the lock: a push merged in this batch is acknowledged only once
            # the listeners have it.
            for hook in list(self.on_keys_changed):
                try:
                    result = hook(delta)
                    if isinstance(result, Deferred):
                        await result
                except Exception:
                    self.log.failure("A keys-changed hook failed")
        finally:
            self._lock.release()


def _valid_push(added: Any, removed: Any) -> bool:
    if not isinstance(added, list) or not isinstance(removed, list):
        return False
    if not all(isinstance(item, str) and item.isdigit() for item in removed):
        return False
    try:
        for item in added:
            if not isinstance(item, dict):
                return False
            pushed_entry(item)
    except ClientKeysError:
        return False
    return True


class _KeysLocator(amp.CommandLocator):
    """KeysUpdate responder."""

    def __init__(self, feature: WorkerRegistry) -> None:
        self.feature = feature

    @wire.KeysUpdate.responder
    async def keys_update(self, added: Any, removed: Any) -> dict[str, Any]:
        """Apply a key push; malformed pushes are logged and ignored, a failed one logged."""
        if not _valid_push(added, removed):
            self.feature.log.error("Ignored a malformed key push from the master.")
            return {}
        try:
            await self.feature.apply_push(added, removed)
        except Exception:
            self.feature.log.failure("Could not apply pushed keys")
        return {}

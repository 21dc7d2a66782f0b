"""The worker's link to the master: dial, authenticate, keep alive, reconnect with back-off."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, cast

from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionClosed, ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import LogLevel
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster import __version__
from wazuhcluster.config.cluster import ClusterConfig
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import PeriodicTask
from wazuhcluster.wire import commands
from wazuhcluster.wire.calls import call_with_timeout
from wazuhcluster.wire.features import FeatureSet
from wazuhcluster.wire.handshake import make_nonce, master_proof, proofs_match, worker_proof
from wazuhcluster.worker.protocol import WorkerProtocol
from wazuhcluster.worker.target import NoMasterKnown

#: The master's refusal of a name it still lists (Wazuh's 3028).
DUPLICATE_NAME = "Error 3028"


class HandshakeFailed(Exception):
    """The master refused us, or could not prove it holds the cluster key."""


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """Wraps an endpoint to remember why the last connection attempt failed."""

    def __init__(self, endpoint: IStreamClientEndpoint, link: MasterLink) -> None:
        self.endpoint = endpoint
        self.link = link

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        def failed(failure: Failure) -> Failure:
            self.link.last_failure = failure
            return failure

        return self.endpoint.connect(factory).addErrback(failed)


class MasterLink(MultiService):
    """Keeps one authenticated AMP connection to the master while the worker runs."""

    def __init__(
        self,
        cluster: ClusterConfig,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        jitter: Callable[[], float] | None = None,
        features: FeatureSet[MasterLink] | None = None,
    ) -> None:
        super().__init__()
        self.features: FeatureSet[MasterLink] = features or FeatureSet()
        self.cluster = cluster
        self.timings = cluster.timings
        self.clock = clock
        self.log = ClusterLog(f"Worker {cluster.node_name}", "Main")
        self.protocol: WorkerProtocol[MasterLink] | None = None
        self.master_name: str | None = None
        self.master_version: str | None = None
        self.connected_since: float | None = None
        self.last_failure: Failure | None = None
        #: Why the last attempt to join the master failed, kept for health reports and tests.
        self.last_error: str | None = None
        self.failed_keepalives = 0
        #: Failed attempts in a row since the last authenticated link. ClientService counts
        #: attempts too, but resets its count whenever TCP and TLS succeed, which they do for
        #: a worker the master refuses: its own count would keep every retry at the first
        #: delay forever.
        self.failed_attempts = 0
        self._lost_at: float | None = None
        self._reported: tuple[LogLevel, str] | None = None
        jitter = jitter or (lambda: random.uniform(0, self.timings.reconnect / 10))
        ceiling = max(self.timings.reconnect, self.timings.reconnect_max)

        def policy(attempt: int) -> float:
            # First retry after `reconnect` seconds (Wazuh's 10 s), then 1.5x more each time,
            # never more than `reconnect_max` (jitter aside).
            delay = min(self.timings.reconnect * 1.5 ** max(attempt - 1, 0), ceiling)
            return float(delay + jitter())

        def retry_policy(attempt: int) -> float:
            self.failed_attempts += 1
            delay: float = policy(self.failed_attempts)
            failure, self.last_failure = self.last_failure, None
            if failure is not None:
                self.last_error = failure.getErrorMessage()
            if failure is None:
                self.log.info("Reconnecting to master in {delay:.1f} seconds.", delay=delay)
                return delay
            self._report_failure(failure, delay)
            return delay

        self.client = ClientService(
            _ReportingEndpoint(endpoint, self),
            Factory.forProtocol(self._new_protocol),
            retryPolicy=retry_policy,
            clock=clock,
            prepareConnection=self._handshake,
        )
        self.client.setServiceParent(self)
        self.keepalive = PeriodicTask(
            "keep-alive",
            self.timings.keep_alive,
            self.send_keepalive,
            clock,
            self.log.child("Keep Alive"),
            run_at_start=False,
        )
        self.keepalive.setServiceParent(self)

    def _report_failure(self, failure: Failure, delay: float) -> None:
        """Log why joining the master failed, once per change of reason (and of level): a
        worker refused for hours writes one line, not one per attempt."""
        reason = failure.getErrorMessage().rstrip(".")
        if failure.check(ConnectionRefusedError):
            reason = "connection refused"
        level = LogLevel.error
        if failure.check(NoMasterKnown):
            level = LogLevel.info  # a worker with <failover> before the first election
        if DUPLICATE_NAME in reason and self._lost_at is not None:
            # Our previous link may still be open on the master (a stalled network): the
            # master drops it within max_silence plus one reaper round. A race, not a fault.
            grace = self.timings.max_silence + self.timings.reaper_interval
            if self.clock.seconds() - self._lost_at <= grace:
                level = LogLevel.info
        if self._reported == (level, reason):
            self.log.debug(
                "Could not connect to master: {reason}. Trying again in {delay:.1f} seconds.",
                reason=reason,
                delay=delay,
            )
            return
        self._reported = (level, reason)
        emit = self.log.info if level == LogLevel.info else self.log.error
        emit(
            "Could not connect to master: {reason}. Trying again in {delay:.1f} seconds "
            "(backing off to every {ceiling:g} s; logged again when the reason changes).",
            reason=reason,
            delay=delay,
            ceiling=max(self.timings.reconnect, self.timings.reconnect_max),
        )

    def _new_protocol(self) -> WorkerProtocol[MasterLink]:
        return WorkerProtocol(
            self._connection_lost, self.features, self.clock, self, self.timings.request_timeout
        )

    @property
    def connected(self) -> bool:
        """True while an authenticated connection to the master is up."""
        return self.protocol is not None

    async def _authenticate(self, protocol: amp.AMP) -> dict[str, Any]:
        cluster = self.cluster
        timeout = self.timings.request_timeout
        challenge = await call_with_timeout(protocol, commands.Challenge, timeout, self.clock)
        nonce = make_nonce()
        answer = await call_with_timeout(
            protocol,
            commands.Hello,
            timeout,
            self.clock,
            node_name=cluster.node_name,
            cluster_name=cluster.name,
            node_type="worker",
            version=__version__,
            protocol_version=commands.PROTOCOL_VERSION,
            nonce=nonce,
            proof=worker_proof(
                cluster.key, challenge["nonce"], nonce, cluster.node_name, cluster.name
            ),
        )
        expected = master_proof(
            cluster.key, challenge["nonce"], nonce, cluster.node_name, cluster.name
        )
        if not proofs_match(expected, answer["proof"]):
            raise HandshakeFailed("the master could not prove it holds the cluster key")
        return answer

    def _handshake(self, proxy: IProtocol) -> Deferred[None]:
        """ClientService's prepareConnection: authenticate before the link is used."""
        # ClientService hands a proxy of the protocol our factory built (a WorkerProtocol).
        protocol = cast("WorkerProtocol[MasterLink]", getattr(proxy, "_protocol", proxy))
        done = Deferred.fromCoroutine(self._authenticate(protocol))

        def accepted(answer: dict[str, Any]) -> None:
            self.protocol = protocol
            self.master_name = answer["master_name"]
            self.master_version = answer["master_version"]
            self.connected_since = self.clock.seconds()
            self.failed_keepalives = 0
            self.last_failure = None
            self.failed_attempts = 0
            self._reported = None
            self.log.info(
                "Successfully connected to master {name} (version {version}).",
                name=self.master_name,
                version=self.master_version,
            )
            protocol.locators = self.features.locators(self)
            self.features.link_up(self)

        def refused(failure: Failure) -> Deferred[None] | None:
            # Drop the connection rather than failing prepareConnection: ClientService then
            # sees an ordinary disconnect and schedules the retry through its policy, which
            # logs this reason.
            if protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
            if failure.check(CancelledError):
                # ClientService is stopping (a relink, or the worker's stop) and waits for
                # this attempt to end: it ends with the connection just aborted. Calling it
                # made would be an input the stopping state has no transition for.
                return Deferred()
            self.last_failure = failure
            return None

        return done.addCallbacks(accepted, refused)

    def _connection_lost(self, protocol: WorkerProtocol[MasterLink], reason: Failure) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        self.connected_since = None
        self._lost_at = self.clock.seconds()
        self.features.link_down(self)
        if reason.check(ConnectionDone):
            self.log.info("The master closed the connection.")
        else:
            self.log.warn(
                "Connection with the master lost: {reason}. Reconnecting...",
                reason=reason.getErrorMessage().rstrip("."),
            )

    def relink(self) -> Deferred[None]:
        """Drop the link (if any) and dial again at once: the master moved. The attempt goes
        to wherever the endpoint points now; the back-off starts over."""
        if not self.running:
            return succeed(None)
        self.failed_attempts = 0
        self._reported = None
        stopped = self.client.stopService()

        def dial_again(_: object) -> None:
            if self.running and not self.client.running:
                self.client.startService()

        return stopped.addCallback(dial_again)

    def call(self, command: type[amp.Command], **arguments: Any) -> Deferred[dict[str, Any]]:
        """Send ``command`` to the master with the request timeout; fails if not connected."""
        if self.protocol is None:
            raise commands.NotConnected("Worker node is not connected to master")
        call = call_with_timeout(
            self.protocol, command, self.timings.request_timeout, self.clock, **arguments
        )
        return call.addErrback(_link_lost)

    async def send_keepalive(self) -> None:
        """One keep-alive; after max_failed_keepalives failures in a row, drop the link."""
        if self.protocol is None:
            return
        log = self.log.child("Keep Alive")
        protocol = self.protocol
        try:
            answer = await self.call(commands.KeepAlive, payload="keepalive")
        except Exception as error:
            if protocol is not self.protocol:
                return
            self.failed_keepalives += 1
            log.error("Error sending keep alive: {error}", error=str(error) or repr(error))
            if self.failed_keepalives >= self.timings.max_failed_keepalives:
                log.error("Maximum number of failed keep alives reached. Disconnecting.")
                self.failed_keepalives = 0
                if protocol.transport is not None:
                    protocol.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self.failed_keepalives = 0
        log.info("Successful response from master: {payload}", payload=answer["payload"])


def _link_lost(failure: Failure) -> Failure:
    """A call the link closed under (cleanly or not: a master that was killed closes either
    way) fails as NotConnected, which says what happened, rather than as the transport's
    own error."""
    if failure.check(ConnectionClosed):
        raise commands.NotConnected(
            f"the link to the master was lost during the call ({failure.getErrorMessage()})"
        )
    return failure

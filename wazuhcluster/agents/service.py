"""The agent channel of a node (1514, TCP and/or UDP): listeners, sessions, key reloads,
status checks.

Every node runs one. The role hands in what differs: where events go (``event_sink``),
where status changes go, and which merged.mg an agent should have (``merged_for``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs
from twisted.application.internet import UDPServer
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from zope.interface import implementer

from wazuhcluster.agents import secure
from wazuhcluster.agents.channel import (
    AgentChannelFactory,
    remoted_numbers,
)
from wazuhcluster.agents.datagram import AgentDatagramProtocol
from wazuhcluster.agents.interfaces import IAgentChannel, IEventSink, IMergedFiles
from wazuhcluster.agents.sessions import SessionTable
from wazuhcluster.config.remote_settings import AgentsSettings, RemoteSettings
from wazuhcluster.util.interfaces import IReactorAgentChannel
from wazuhcluster.util.limits import LimitedFactory, ListenerService
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import PeriodicTask
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool

#: How often client.keys is checked for changes and agents for missed keep-alives (remoted: 10 s).
CHECK_INTERVAL = 10.0


@implementer(IAgentChannel)
class AgentChannelService(MultiService):
    """Serves agents on the node's ``<remote>`` port (TCP, UDP or both, as ``<protocol>``
    says; one set of keys, counters and sessions for both) and keeps their sessions."""

    def __init__(
        self,
        client_keys: Path,
        remote: RemoteSettings,
        agents: AgentsSettings,
        node_name: str,
        event_sink: IEventSink,
        reactor: IReactorAgentChannel,
        log: ClusterLog,
        merged_for: IMergedFiles | None = None,
        manager_version: str | None = None,
        run_in_thread: RunInThread = run_in_reactor_pool,
    ) -> None:
        super().__init__()
        self.client_keys = client_keys
        self.log = log
        self.run_in_thread = run_in_thread
        self.sessions = SessionTable(
            reactor, node_name, agents.disconnection_time, merged_for=merged_for
        )
        self.factory = AgentChannelFactory(
            secure.KeyStore([]),
            self.sessions,
            event_sink,
            reactor,
            log=log,
            overtake_time=remote.connection_overtake_time,
            manager_version=manager_version,
            run_in_thread=run_in_thread,
        )
        self._keys_stamp: tuple[int, int, int] | None = None
        self._reload_lock = DeferredLock()
        endpoint_type = TCP6ServerEndpoint if remote.ipv6 else TCP4ServerEndpoint
        interface = remote.local_ip or ("::" if remote.ipv6 else "0.0.0.0")
        if remote.tcp:
            # An agent silent for the disconnection time is disconnected anyway: close its
            # socket too (unless <remote><idle_timeout> says otherwise). A connection counts
            # as an agent's from its first valid encrypted message; before that it has a
            # deadline and its own caps, so silent or slow strangers cannot hold descriptors.
            limits = remote.limits
            if limits.idle_timeout is None:
                limits = attrs.evolve(limits, idle_timeout=agents.disconnection_time)
            limited = LimitedFactory(
                self.factory,
                reactor,
                log,
                limits=limits,
                admit_on="protocol",
                credential="valid agent message",
            )
            listener = ListenerService(
                endpoint_type(reactor, remote.port, interface=interface), limited
            )
            listener.setName("agent-channel")
            listener.setServiceParent(self)
        #: The UDP side (None without ``udp`` in ``<protocol>``).
        self.datagrams: AgentDatagramProtocol | None = None
        if remote.udp:
            self.datagrams = AgentDatagramProtocol(self.factory)
            # One listener socket for every UDP agent; a datagram up to 64 KiB fits.
            udp = UDPServer(
                remote.port,
                self.datagrams,
                interface=interface,
                maxPacketSize=secure.MAX_FRAME,
                reactor=reactor,
            )
            udp.setName("agent-channel-udp")
            udp.setServiceParent(self)
        PeriodicTask("agent keys", CHECK_INTERVAL, self.reload_keys, reactor, log).setServiceParent(
            self
        )
        PeriodicTask(
            "agent disconnections",
            CHECK_INTERVAL,
            self.factory.check_disconnections,
            reactor,
            log,
            run_at_start=False,
        ).setServiceParent(self)

    def startService(self) -> None:
        """Load the keys before the first agent can connect, then listen."""
        self._load_now()
        super().startService()

    def _stamp(self) -> tuple[int, int, int]:
        try:
            info = os.stat(self.client_keys)
        except OSError:
            return (0, 0, 0)
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def _load_now(self) -> None:
        stamp = self._stamp()
        try:
            store = (
                secure.KeyStore.load(str(self.client_keys))
                if stamp != (0, 0, 0)
                else secure.KeyStore([])
            )
        except secure.KeyFileError as error:
            self.log.error("Unable to read agent keys: {error}", error=str(error))
            return
        self._keys_stamp = stamp
        self.factory.set_keys(store)

    def reload_keys(self, force: bool = False) -> Deferred[None]:
        """Reload client.keys in a thread if it changed (always when ``force``: the file was
        replaced by a writer whose changes the store has not seen); one reload at a time."""
        return ensureDeferred(self._reload(force))

    def apply_key_changes(
        self, added: Iterable[tuple[str, str, str, str]], removed: Iterable[str]
    ) -> Deferred[None] | None:
        """Update the keys in memory after this node's own write of client.keys.

        ``added`` holds ``(id, name, ip, key)`` entries, ``removed`` ids. The file already
        holds them, so its new stamp is taken as seen and the periodic check does not parse
        it again; the keys are usable when this returns None. While a reload runs, a forced
        reload is queued behind it instead, and the returned Deferred fires once that
        reload has made them usable.
        """
        if self._reload_lock.locked:
            reloaded = self.reload_keys(force=True)
            reloaded.addErrback(
                lambda failure: self.log.failure("Could not reload agent keys", failure)
            )
            return reloaded
        current = self.factory.keys
        entries = []
        for agent_id, name, ip, key in added:
            known = current.get(agent_id)
            if known is not None and (known.name, known.ip, known.key) == (name, ip, key):
                continue
            try:
                entries.append(secure.AgentKey(agent_id, name, ip, key))
            except ValueError as error:
                self.log.error("Ignored an invalid agent key: {error}", error=str(error))
        gone = list(removed)
        store = current.updated(entries, gone)
        self._keys_stamp = self._stamp()
        self.factory.set_keys(store, changed=[entry.agent_id for entry in entries] + gone)
        return None

    async def _reload(self, force: bool = False) -> None:
        await self._reload_lock.acquire()
        try:
            stamp = self._stamp()
            if stamp == self._keys_stamp and not force:
                return
            try:
                if stamp == (0, 0, 0):
                    store = secure.KeyStore([])
                else:
                    store = await self.run_in_thread(
                        secure.KeyStore.load, str(self.client_keys), previous=self.factory.keys
                    )
            except secure.KeyFileError as error:
                self.log.error("Unable to reload agent keys: {error}", error=str(error))
                return
            self._keys_stamp = stamp
            self.factory.set_keys(store)
            self.log.info(
                "(1410): Reading authentication keys file. {count} agents.", count=len(store)
            )
        finally:
            self._reload_lock.release()

    def remoted_numbers(self) -> dict[str, int]:
        """The channel's counters in Wazuh's remoted statistics fields."""
        return remoted_numbers(self.factory.stats)

    def send_message(self, agent_ids: list[str], message: str) -> list[str]:
        """Send ``message`` to each of the given agents connected here (an active-response
        or restart command of the API); the ids it was sent to."""
        sent = [agent_id for agent_id in agent_ids if self.factory.send_to_agent(agent_id, message)]
        if sent:
            self.log.info(
                "Sent {what} to {count} agents.", what=message.split(" ", 2)[:2], count=len(sent)
            )
        return sent

    def ask_agent(self, agent_id: str, payload: str, timeout: float | None = None) -> Deferred[str]:
        """Ask a connected agent a question (``#!-req``); see
        :class:`~wazuhcluster.agents.requests.RequestTable`."""
        return self.factory.requests.ask(agent_id, payload, timeout)

    def reconnect(self, agent_ids: list[str], count: int = 0) -> list[str]:
        """Ask agents to reconnect (``#!-force_reconnect``): the given ids that are connected
        here, plus up to ``count`` more of this node's agents (to rebalance after an outage).
        Returns the ids asked."""
        connected = self.factory.connected_ids()
        chosen = [agent_id for agent_id in agent_ids if agent_id in set(connected)]
        extra = [agent_id for agent_id in connected if agent_id not in set(chosen)]
        chosen += extra[: max(count, 0)]
        asked = [agent_id for agent_id in chosen if self.factory.force_reconnect(agent_id)]
        if asked:
            self.log.info("Asked {count} agents to reconnect.", count=len(asked))
        return asked

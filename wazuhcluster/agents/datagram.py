"""The agent channel over UDP (``<protocol>udp``): each datagram is one payload, answered at
its source address, from the same keys, counters and sessions as the TCP connections."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.interfaces import IUDPTransport
from twisted.internet.protocol import DatagramProtocol

from wazuhcluster.agents import control, secure
from wazuhcluster.agents.channel import AgentChannelFactory, AgentPeer
from wazuhcluster.util.limits import host_text


class DatagramPeer(AgentPeer):
    """A UDP agent, as the source address of its last datagram: answers go there, unframed
    (Wazuh's UDP messages are one payload per datagram)."""

    datagram = True

    def __init__(
        self, factory: AgentChannelFactory, transport: IUDPTransport, address: tuple[str, int]
    ) -> None:
        self.factory = factory
        self.transport = transport
        self.address = address
        self.peer_ip = normal_ip(address[0])
        self.agent: secure.AgentKey | None = None
        self.closing = False

    def write_payload(self, payload: bytes) -> None:
        """Send one payload to the agent's address."""
        self._write(payload)

    def write_pong(self) -> None:
        """``#pong`` to the sender."""
        self._write(control.PONG)

    def _write(self, data: bytes) -> None:
        try:
            self.transport.write(data, self.address)
        except OSError as error:
            # ICMP errors of earlier datagrams surface here (ECONNREFUSED...): nothing to do.
            self.factory.log.debug(
                "Could not send to {ip}: {error}", ip=self.peer_ip, error=str(error)
            )

    def close(self) -> None:
        """Forget this address as the agent's (nothing to close for UDP)."""
        self.closing = True
        if self.agent is not None:
            self.factory._release(self.agent.agent_id, self)


class AgentDatagramProtocol(DatagramProtocol):
    """The agent channel over UDP: each datagram is one payload, from the same keys,
    counters and sessions as the TCP connections; answers go to the datagram's source.

    A datagram that cannot be used is dropped and counted (``stats.dropped``); nothing a
    datagram holds can stop the listener.
    """

    def __init__(self, factory: AgentChannelFactory) -> None:
        self.factory = factory

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:  # noqa: N802
        """Handle one datagram as one agent message."""
        stats = self.factory.stats
        stats.datagrams += 1
        stats.recv_bytes += len(datagram)
        if self.transport is None:
            return
        if not datagram or len(datagram) > self.factory.max_frame:
            stats.dropped += 1
            return
        stats.frames += 1
        peer = DatagramPeer(self.factory, self.transport, (str(addr[0]), int(addr[1])))
        try:
            peer.handle_payload(datagram)
        except Exception:
            stats.dropped += 1
            self.factory.log.failure(
                "Unexpected error on a datagram from {ip}; dropped", ip=peer.peer_ip
            )


def normal_ip(host: str) -> str:
    """A datagram's source as the TCP side names peers (:func:`~wazuhcluster.util.limits.
    host_text`): an IPv4-mapped IPv6 address as plain IPv4, no zone."""
    return host_text(SimpleNamespace(host=host))

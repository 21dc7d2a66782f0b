"""Settings of the agent channel: ``<remote>`` and ``<global><agents_disconnection_time>``.

Only the "secure" connection is served (agents' events on 1514, over TCP, UDP or both as
``<protocol>`` says). A ``<remote>`` block
with ``<connection>syslog</connection>`` parses, so a config may keep one, but the node
does not listen for syslog; :func:`secure_remote` picks the secure block.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from attrs import frozen

from wazuhcluster.config.listener_settings import AGENT_LIMITS, parse_limits
from wazuhcluster.config.xmlconfig import ConfigError, Section
from wazuhcluster.util.limits import ListenerLimits

DEFAULT_PORT = 1514
DEFAULT_QUEUE_SIZE = 131072
MAX_QUEUE_SIZE = 262144
DEFAULT_OVERTAKE_TIME = 60.0
DEFAULT_DISCONNECTION_TIME = 900.0


@frozen
class RemoteSettings:
    """One ``<remote>`` block."""

    connection: str = "secure"
    port: int = DEFAULT_PORT
    #: ``tcp``, ``udp`` or ``tcp,udp``.
    protocol: str = "tcp"
    queue_size: int = DEFAULT_QUEUE_SIZE
    local_ip: str | None = None
    ipv6: bool = False
    connection_overtake_time: float = DEFAULT_OVERTAKE_TIME
    #: Connection limits of 1514 (idle_timeout None: the agents' disconnection time).
    limits: ListenerLimits = AGENT_LIMITS

    @property
    def tcp(self) -> bool:
        """Whether agents are served over TCP."""
        return "tcp" in self.protocol.split(",")

    @property
    def udp(self) -> bool:
        """Whether agents are served over UDP."""
        return "udp" in self.protocol.split(",")


@frozen
class AgentsSettings:
    """Agent options of ``<global>``."""

    disconnection_time: float = DEFAULT_DISCONNECTION_TIME
    disconnection_alert_time: float = 0.0


def _check_ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def parse_remote(section: Section) -> RemoteSettings:
    """Parse one ``<remote>`` block; raises :class:`ConfigError` for bad values.

    ``<protocol>`` takes ``tcp``, ``udp`` or both, comma-separated (any case, any order);
    Wazuh's default is ``tcp``.
    """
    connection = section.choice("connection", "secure", ("secure", "syslog"))
    protocols = {p.strip().lower() for p in section.text("protocol", "tcp").split(",")}
    protocols.discard("")
    if not protocols or not protocols <= {"tcp", "udp"}:
        raise section.error(
            "protocol", f"expected tcp, udp or tcp,udp, got {','.join(sorted(protocols))}"
        )
    local_ip = section.raw("local_ip")
    if local_ip is not None:
        section.checked("local_ip", local_ip, _check_ip)
    overtake = section.integer("connection_overtake_time", int(DEFAULT_OVERTAKE_TIME), 0, 3600)
    if connection == "syslog" and section.raw("queue_size") is not None:
        raise section.error("queue_size", "only valid for secure connections")
    return RemoteSettings(
        connection=connection,
        port=section.integer("port", DEFAULT_PORT, 1, 65535),
        protocol=",".join(sorted(protocols)),
        queue_size=section.integer("queue_size", DEFAULT_QUEUE_SIZE, 1, MAX_QUEUE_SIZE),
        local_ip=local_ip,
        ipv6=section.boolean("ipv6", False),
        connection_overtake_time=float(overtake),
        limits=parse_limits(section, AGENT_LIMITS),
    )


def secure_remote(sections: Sequence[Section]) -> RemoteSettings:
    """The secure ``<remote>`` among all blocks (the default when there is none).

    Two secure blocks are an error, as in Wazuh.
    """
    secure = [
        s for s in (parse_remote(section) for section in sections) if s.connection == "secure"
    ]
    if len(secure) > 1:
        raise ConfigError(sections[0].source, "remote", "more than one secure connection")
    return secure[0] if secure else RemoteSettings()


def parse_global_agents(section: Section) -> AgentsSettings:
    """Parse ``<global><agents_disconnection_time>`` (900 s default, at least 1 s)."""
    return AgentsSettings(
        disconnection_time=section.duration(
            "agents_disconnection_time", DEFAULT_DISCONNECTION_TIME, minimum=1.0
        ),
        disconnection_alert_time=section.duration(
            "agents_disconnection_alert_time", 0.0, minimum=0.0
        ),
    )

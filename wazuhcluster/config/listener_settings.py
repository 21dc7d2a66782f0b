"""Connection limits of the listeners, read from the section each listener already reads.

Every listener takes the same six options, children of its section (``<remote>`` for 1514,
``<auth>`` for 1515, ``<cluster>`` for 1516, ``<api>`` for the REST API and
``<cluster><control_socket>`` for the control socket)::

    <handshake_timeout>10s</handshake_timeout>       from connect to the credential
    <idle_timeout>60s</idle_timeout>                 silence allowed once admitted (0: none)
    <max_connections>1024</max_connections>          admitted connections in all
    <max_connections_per_ip>256</max_connections_per_ip>
    <max_pending_connections>4096</max_pending_connections>   before the credential
    <max_pending_per_ip>512</max_pending_per_ip>

``max_connections_per_ip`` is Wazuh's name (the cluster's ``MAX_CONNECTIONS_PER_IP``); the
others are ours. What admits a connection (its credential) depends on the listener: the
TLS handshake with a client certificate on 1516, the TLS handshake on 1515, the first valid
encrypted message on 1514, the first authenticated request on the API, the first command
on the control socket. On the control socket the ``_per_ip`` options count per client uid.
The defaults below are documented in the README.
"""

from __future__ import annotations

from wazuhcluster.config.xmlconfig import Section
from wazuhcluster.util.limits import ENROLLMENT_PER_ADDRESS, ListenerLimits

#: 1514: agents behind one NAT address share it, so the admitted caps are wide; the idle
#: timeout is ``<global><agents_disconnection_time>`` unless ``<remote>`` sets one. Every
#: admitted connection is an agent, so ``max_connections`` is the most agents a node holds:
#: Wazuh's remoted has no cap of its own (only its descriptor limit). At 8,192 a node refused
#: the 8,193rd agent, where a Wazuh manager takes tens of thousands.
#:
#: Every pending cap is at least twice its admitted one, on every listener: after a restart
#: every agent (all those behind one NAT address too) reconnects at once and is pending for a
#: moment, and strangers flooding beside them must push out the oldest strangers, not the
#: agents. A pending connection lives at most ``handshake_timeout``, so holding 131,072 of
#: them takes over 13,000 connects a second, kept up. The shipped systemd unit's descriptor
#: limit (``LimitNOFILE``, 262,144) covers 1514's admitted and pending caps with room for the
#: other listeners and the node's files.
AGENT_LIMITS = ListenerLimits(
    handshake_timeout=10.0,
    idle_timeout=None,
    max_connections=65536,
    max_per_address=8192,
    max_pending=131072,
    max_pending_per_address=16384,
)
#: 1515: the enrollment protocol answers within 10 s of the request timeout (30 s for the
#: decision); the idle timeout is only a backstop.
ENROLLMENT_LIMITS = ListenerLimits(
    handshake_timeout=10.0,
    idle_timeout=60.0,
    max_connections=1024,
    max_per_address=ENROLLMENT_PER_ADDRESS,
    max_pending=4096,
    max_pending_per_address=512,
)
#: 1516: ten admitted connections per address as in Wazuh; the keep-alive reaper closes
#: silent workers, so there is no idle timeout.
CLUSTER_LIMITS = ListenerLimits(
    handshake_timeout=10.0,
    idle_timeout=None,
    max_connections=512,
    max_per_address=10,
    max_pending=1024,
    max_pending_per_address=64,
)
#: The REST API: 10 s like the Wazuh API's ``request_timeout``; dashboards keep a few
#: connections per address.
API_LIMITS = ListenerLimits(
    handshake_timeout=10.0,
    idle_timeout=60.0,
    max_connections=256,
    max_per_address=64,
    max_pending=1024,
    max_pending_per_address=128,
)
#: The control socket (a UNIX socket): its "address" is the client's uid (SO_PEERCRED), so
#: one local account (the socket's mode lets its group in) can take at most half the slots.
CONTROL_LIMITS = ListenerLimits(
    handshake_timeout=10.0,
    idle_timeout=600.0,
    max_connections=64,
    max_per_address=32,
    max_pending=256,
    max_pending_per_address=128,
)

MAX_COUNT = 1_000_000


def parse_limits(section: Section, defaults: ListenerLimits) -> ListenerLimits:
    """The six limit options of ``section`` (see module docstring); ConfigError when bad."""

    def seconds(option: str, default: float | None, allow_off: bool) -> float | None:
        value = section.duration(option, default or 0.0, minimum=0.0)
        if value == 0.0:
            if not allow_off:
                raise section.error(option, "must be more than 0")
            return None
        return value

    def count(option: str, default: int) -> int:
        return section.integer(option, default, 0, MAX_COUNT)

    return ListenerLimits(
        handshake_timeout=seconds("handshake_timeout", defaults.handshake_timeout, False),
        idle_timeout=seconds("idle_timeout", defaults.idle_timeout, True),
        max_connections=count("max_connections", defaults.max_connections),
        max_per_address=count("max_connections_per_ip", defaults.max_per_address),
        max_pending=count("max_pending_connections", defaults.max_pending),
        max_pending_per_address=count("max_pending_per_ip", defaults.max_pending_per_address),
    )

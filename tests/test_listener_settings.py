"""The connection limits each listener reads from its section (config/listener_settings.py)."""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import fromstring

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.config.api_settings import parse_api
from wazuhcluster.config.auth_settings import parse_auth
from wazuhcluster.config.cluster import load_config
from wazuhcluster.config.home import Home
from wazuhcluster.config.listener_settings import (
    AGENT_LIMITS,
    API_LIMITS,
    CLUSTER_LIMITS,
    CONTROL_LIMITS,
    ENROLLMENT_LIMITS,
)
from wazuhcluster.config.remote_settings import parse_remote
from wazuhcluster.config.xmlconfig import ConfigError, Section
from wazuhcluster.util.limits import ListenerLimits

KEY = "c98b62a9b6169ac5f67dae55ae4a9088"
OPTIONS = (
    "<handshake_timeout>3s</handshake_timeout><idle_timeout>2m</idle_timeout>"
    "<max_connections>7</max_connections><max_connections_per_ip>5</max_connections_per_ip>"
    "<max_pending_connections>70</max_pending_connections>"
    "<max_pending_per_ip>50</max_pending_per_ip>"
)
SET = ListenerLimits(3.0, 120.0, 7, 5, 70, 50)


def section(name: str, body: str) -> Section:
    """A section ``<name>`` holding ``body``."""
    return Section(fromstring(f"<{name}>{body}</{name}>"), "test.conf", name)


class ListenerSettingsTests(SynchronousTestCase):
    """Defaults when absent, the six options when given, one clear error when bad."""

    def test_defaults_pending_caps_larger(self) -> None:
        """Every listener has a handshake deadline and admitted caps, in all and per address;
        its pending caps are strictly larger, in all and per address (1514 had 65,536
        pending and 65,536 admitted, 1,024 pending and 8,192 admitted per address)."""
        for limits in (AGENT_LIMITS, ENROLLMENT_LIMITS, CLUSTER_LIMITS, API_LIMITS, CONTROL_LIMITS):
            self.assertIsNotNone(limits.handshake_timeout)
            self.assertGreater(limits.max_connections, 0)
            self.assertGreater(limits.max_per_address, 0)
            self.assertGreater(limits.max_pending, limits.max_connections)
            self.assertGreater(limits.max_pending_per_address, limits.max_per_address)

    def test_each_section(self) -> None:
        """<remote>, <auth>, <api> read the same options; absent means the defaults."""
        home = Path(self.mktemp())
        self.assertEqual(parse_remote(section("remote", "")).limits, AGENT_LIMITS)
        self.assertEqual(parse_remote(section("remote", OPTIONS)).limits, SET)
        self.assertEqual(parse_auth(section("auth", ""), home).limits, ENROLLMENT_LIMITS)
        self.assertEqual(parse_auth(section("auth", OPTIONS), home).limits, SET)
        self.assertEqual(parse_api(section("api", ""), Home(home)).limits, API_LIMITS)
        self.assertEqual(parse_api(section("api", OPTIONS), Home(home)).limits, SET)

    def test_cluster_and_control_socket(self) -> None:
        """<cluster> holds 1516's options (max_connections_per_ip as before) and
        <cluster><control_socket> the control socket's."""
        home = Home(Path(self.mktemp()))
        home.etc.mkdir(parents=True)
        home.config_file.write_text(
            f"<wazuh_config><cluster><key>{KEY}</key>{OPTIONS}"
            "<control_socket><max_connections>3</max_connections>"
            "<idle_timeout>0</idle_timeout></control_socket></cluster></wazuh_config>"
        )
        cluster = load_config(home.config_file, home).cluster
        self.assertEqual(cluster.limits, SET)
        self.assertEqual(cluster.max_connections_per_ip, 5)
        self.assertEqual(cluster.control_limits.max_connections, 3)
        self.assertIsNone(cluster.control_limits.idle_timeout)
        home.config_file.write_text(
            f"<wazuh_config><cluster><key>{KEY}</key></cluster></wazuh_config>"
        )
        cluster = load_config(home.config_file, home).cluster
        self.assertEqual((cluster.limits, cluster.control_limits), (CLUSTER_LIMITS, CONTROL_LIMITS))

    def test_bad_values(self) -> None:
        """A zero deadline, a negative or non-numeric cap is a ConfigError naming the option."""
        for body, option in (
            ("<handshake_timeout>0</handshake_timeout>", "handshake_timeout"),
            ("<max_pending_per_ip>-1</max_pending_per_ip>", "max_pending_per_ip"),
            ("<max_connections>many</max_connections>", "max_connections"),
            ("<idle_timeout>soon</idle_timeout>", "idle_timeout"),
        ):
            with self.assertRaises(ConfigError) as caught:
                parse_remote(section("remote", body))
            self.assertIn(option, str(caught.exception))


class ControlSocketLimitsTests(SynchronousTestCase):
    """The control socket is served under <cluster><control_socket>'s limits."""

    def test_control_service_limited(self) -> None:
        """With limits, a client is admitted by its first command and must send it within
        the deadline; the caps count clients in all."""
        from twisted.internet.address import UNIXAddress
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from wazuhcluster.control.server import ControlService
        from wazuhcluster.util.limits import LimitedFactory

        reactor = MemoryReactorClock()
        path = Path(self.mktemp()) / "run" / "cluster.sock"
        service = ControlService(path, object(), reactor, limits=CONTROL_LIMITS)  # type: ignore[arg-type]
        factory = service.factory
        self.assertIsInstance(factory, LimitedFactory)
        assert isinstance(factory, LimitedFactory)
        proto = factory.buildProtocol(UNIXAddress(None))
        transport = StringTransport()
        proto.makeConnection(transport)
        reactor.advance(10)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.late, 1)

    def test_control_clients_counted_per_uid(self) -> None:
        """The control socket counts its clients per uid (SO_PEERCRED): one account past
        its 32 admitted and 128 pending is refused or pushed out while another still gets
        in (every client counted as ``unknown``: the per-address caps were one global cap)."""
        import struct

        from twisted.internet.address import UNIXAddress
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from wazuhcluster.control.server import ControlService
        from wazuhcluster.util.limits import LimitedFactory

        reactor = MemoryReactorClock()
        path = Path(self.mktemp()) / "run" / "cluster.sock"
        service = ControlService(path, object(), reactor, limits=CONTROL_LIMITS)  # type: ignore[arg-type]
        factory = service.factory
        assert isinstance(factory, LimitedFactory)

        class Handle:
            """A UNIX socket as SO_PEERCRED sees it: pid, uid, gid."""

            def __init__(self, uid: int) -> None:
                self.uid = uid

            def getsockopt(self, level: int, option: int, size: int) -> bytes:
                return struct.pack("3i", 4242, self.uid, self.uid)

        class Transport(StringTransport):
            """A client's end with its credentials."""

            def __init__(self, uid: int) -> None:
                super().__init__()
                self.handle = Handle(uid)

            def getHandle(self) -> Handle:  # noqa: N802 - Twisted's name
                return self.handle

        def connect(uid: int, command: bool) -> Transport:
            transport = Transport(uid)
            proto = factory.buildProtocol(UNIXAddress(None))
            proto.makeConnection(transport)
            if command:
                proto.dataReceived(b"\x00")
            return transport

        admitted = [connect(1000, True) for _ in range(33)]
        self.assertEqual([t.disconnecting for t in admitted], [False] * 32 + [True])
        silent = [connect(1000, False) for _ in range(129)]
        self.assertTrue(silent[0].disconnecting)
        self.assertFalse(any(t.disconnecting for t in silent[1:]))
        root = connect(0, True)
        self.assertFalse(root.disconnecting)
        self.assertEqual(factory.counts, {"uid 1000": 32, "uid 0": 1})

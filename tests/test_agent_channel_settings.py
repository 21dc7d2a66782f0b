"""Tests for wazuhcluster.config.remote_settings: <remote> and <global> agent options."""

from __future__ import annotations

from defusedxml import ElementTree
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.config.remote_settings import (
    AgentsSettings,
    RemoteSettings,
    parse_global_agents,
    parse_remote,
    secure_remote,
)
from wazuhcluster.config.xmlconfig import ConfigError, Section


def _section(xml: str, name: str = "remote") -> Section:
    return Section(ElementTree.fromstring(xml), "etc/wazuh-manager.conf", name)


class RemoteTests(SynchronousTestCase):
    """<remote> parsing."""

    def test_defaults(self) -> None:
        """An empty block, or no block at all, gives Wazuh's defaults."""
        self.assertEqual(parse_remote(_section("<remote/>")), RemoteSettings())
        self.assertEqual(parse_remote(Section(None, "f", "remote")).port, 1514)
        self.assertEqual(RemoteSettings().queue_size, 131072)

    def test_values(self) -> None:
        """Every supported option is read."""
        settings = parse_remote(
            _section(
                "<remote><connection>secure</connection><port>11514</port>"
                "<protocol>TCP</protocol><queue_size>1000</queue_size>"
                "<local_ip>10.0.0.1</local_ip><ipv6>yes</ipv6>"
                "<connection_overtake_time>0</connection_overtake_time></remote>"
            )
        )
        self.assertEqual(
            settings,
            RemoteSettings("secure", 11514, "tcp", 1000, "10.0.0.1", True, 0.0),
        )

    def test_protocols(self) -> None:
        """``tcp`` (the default), ``udp`` or both, in any case and order; nothing else."""
        for text, expected, tcp, udp in (
            ("tcp", "tcp", True, False),
            ("UDP", "udp", False, True),
            ("udp, tcp", "tcp,udp", True, True),
            ("TCP,UDP", "tcp,udp", True, True),
        ):
            settings = parse_remote(_section(f"<remote><protocol>{text}</protocol></remote>"))
            self.assertEqual((settings.protocol, settings.tcp, settings.udp), (expected, tcp, udp))
        for bad in (",", "tcp,sctp", "http"):
            self.assertRaises(
                ConfigError, parse_remote, _section(f"<remote><protocol>{bad}</protocol></remote>")
            )

    def test_bad_values(self) -> None:
        """Bad values raise ConfigError naming the option."""
        bad = {
            "port": "<port>70000</port>",
            "protocol": "<protocol>sctp</protocol>",
            "queue_size": "<queue_size>0</queue_size>",
            "connection": "<connection>weird</connection>",
            "local_ip": "<local_ip>nope</local_ip>",
            "connection_overtake_time": "<connection_overtake_time>4000</connection_overtake_time>",
        }
        for option, xml in bad.items():
            error = self.assertRaises(
                ConfigError, parse_remote, _section(f"<remote>{xml}</remote>")
            )
            self.assertIn(option, str(error))

    def test_secure_remote(self) -> None:
        """The secure block is picked among several; two secure blocks are an error."""
        syslog = _section("<remote><connection>syslog</connection><port>514</port></remote>")
        secure = _section("<remote><port>1600</port></remote>")
        self.assertEqual(secure_remote([syslog, secure]).port, 1600)
        self.assertEqual(secure_remote([syslog]), RemoteSettings())
        self.assertRaises(ConfigError, secure_remote, [secure, secure])
        self.assertRaises(
            ConfigError,
            parse_remote,
            _section("<remote><connection>syslog</connection><queue_size>5</queue_size></remote>"),
        )


class GlobalAgentsTests(SynchronousTestCase):
    """<global><agents_disconnection_time>."""

    def test_default_and_suffixes(self) -> None:
        """900 s by default; Wazuh's suffixes are accepted."""
        self.assertEqual(parse_global_agents(_section("<global/>", "global")), AgentsSettings())
        parsed = parse_global_agents(
            _section(
                "<global><agents_disconnection_time>15m</agents_disconnection_time>"
                "<agents_disconnection_alert_time>1h</agents_disconnection_alert_time></global>",
                "global",
            )
        )
        self.assertEqual(parsed, AgentsSettings(900.0, 3600.0))

    def test_bad(self) -> None:
        """Zero or garbage raise ConfigError."""
        for value in ("0", "abc", "-5"):
            xml = f"<global><agents_disconnection_time>{value}</agents_disconnection_time></global>"
            self.assertRaises(ConfigError, parse_global_agents, _section(xml, "global"))

"""Reading and validating etc/wazuh-manager.conf."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.config.cluster import Timings, load_config
from wazuhcluster.config.home import Home
from wazuhcluster.config.xmlconfig import ConfigError

GOOD_KEY = "c98b62a9b6169ac5f67dae55ae4a9088"


def cluster_block(**options: str) -> str:
    """A ``<cluster>`` block with the given options (None values left out)."""
    defaults = {"name": "wazuh", "node_name": "node01", "node_type": "master", "key": GOOD_KEY}
    defaults.update(options)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in defaults.items() if v is not None)
    return f"<wazuh_config><cluster>{body}</cluster></wazuh_config>"


class LoadConfigTests(SynchronousTestCase):
    """load_config: defaults, overrides and one clear error per bad value."""

    def setUp(self) -> None:
        self.home = Home(Path(self.mktemp()))
        self.home.etc.mkdir(parents=True)

    def load(self, text: str, role: str | None = None) -> object:
        """Write ``text`` as the config file and load it."""
        self.home.config_file.write_text(text)
        return load_config(self.home.config_file, self.home, role)

    def error(self, text: str, role: str | None = None) -> str:
        """The one-line message of the ConfigError that loading ``text`` raises."""
        self.home.config_file.write_text(text)
        with self.assertRaises(ConfigError) as caught:
            load_config(self.home.config_file, self.home, role)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(str(self.home.config_file)), message)
        return message

    def test_defaults(self) -> None:
        """Missing options take Wazuh's defaults; TLS files default under HOME/etc/certs."""
        config = self.load(f"<wazuh_config><cluster><key>{GOOD_KEY}</key></cluster></wazuh_config>")
        cluster = config.cluster  # type: ignore[attr-defined]
        self.assertEqual(
            (cluster.name, cluster.node_name, cluster.node_type, cluster.port),
            ("wazuh", "node01", "master", 1516),
        )
        self.assertEqual(cluster.master_address, "127.0.0.1")
        self.assertFalse(cluster.hidden)
        self.assertFalse(cluster.disabled)
        self.assertEqual(cluster.tls.ca_cert, self.home.certs / "ca.pem")
        self.assertEqual(cluster.timings, Timings())
        self.assertEqual(cluster.timings.keep_alive, 60.0)
        self.assertEqual(cluster.timings.max_silence, 120.0)

    def test_several_config_blocks(self) -> None:
        """Several root blocks are merged and the last <cluster> wins, as in Wazuh."""
        text = (
            "<?xml version='1.0'?>"
            + cluster_block(node_name="first")
            + "<ossec_config><global/></ossec_config>"
            + cluster_block(node_name="second")
        )
        self.assertEqual(self.load(text).cluster.node_name, "second")  # type: ignore[attr-defined]

    def test_timings_override(self) -> None:
        """<timings> overrides intervals, with unit suffixes."""
        config = self.load(
            cluster_block(timings="<keep_alive>2s</keep_alive><max_silence>1m</max_silence>")
        )
        timings = config.cluster.timings  # type: ignore[attr-defined]
        self.assertEqual((timings.keep_alive, timings.max_silence), (2.0, 60.0))
        self.assertEqual(timings.reconnect, 10.0)

    def test_only_first_node_used(self) -> None:
        """More than one <node> is accepted with a warning; the first is the master."""
        config = self.load(cluster_block(nodes="<node>10.0.0.1</node><node>10.0.0.2</node>"))
        self.assertEqual(config.cluster.master_address, "10.0.0.1")  # type: ignore[attr-defined]
        self.assertIn("only the first", config.cluster.warnings[0])  # type: ignore[attr-defined]

    def test_client_is_worker(self) -> None:
        """Wazuh 4.x's old node type name 'client' means worker."""
        self.assertEqual(self.load(cluster_block(node_type="client")).cluster.node_type, "worker")  # type: ignore[attr-defined]

    def test_role_fills_missing_node_type(self) -> None:
        """--role decides when the file has no node_type."""
        config = self.load(cluster_block(node_type=None), role="worker")  # type: ignore[arg-type]
        self.assertEqual(config.cluster.node_type, "worker")  # type: ignore[attr-defined]

    def test_missing_file(self) -> None:
        """A missing file is one line naming it."""
        with self.assertRaises(ConfigError) as caught:
            load_config(self.home.etc / "nope.conf", self.home)
        self.assertIn("No such file", str(caught.exception))

    def test_bad_xml(self) -> None:
        """Malformed XML is reported, not raised as a traceback."""
        self.assertIn("invalid XML", self.error("<wazuh_config><cluster></wazuh_config>"))

    def test_entities_refused(self) -> None:
        """Entity declarations (billion laughs, external entities) are refused."""
        text = (
            '<!DOCTYPE x [<!ENTITY a "aaaa">]>'
            "<wazuh_config><cluster><name>&a;</name></cluster></wazuh_config>"
        )
        self.assertIn("invalid XML", self.error(text))

    def test_no_root_block(self) -> None:
        """A file without <wazuh_config> is refused."""
        self.assertIn("no <wazuh_config>", self.error("<other/>"))

    def test_bad_node_type(self) -> None:
        """An unknown node type names the option."""
        message = self.error(cluster_block(node_type="boss"))
        self.assertIn("<cluster><node_type>", message)
        self.assertIn("invalid node type 'boss'", message)

    def test_role_disagrees(self) -> None:
        """--role and node_type must agree."""
        message = self.error(cluster_block(node_type="master"), role="worker")
        self.assertIn("--role says 'worker'", message)

    def test_bad_ports(self) -> None:
        """Ports must be integers in range."""
        self.assertIn("expected an integer", self.error(cluster_block(port="http")))
        self.assertIn("outside 1..65535", self.error(cluster_block(port="70000")))

    def test_bad_keys(self) -> None:
        """The key is required and must be 32 alphanumerics."""
        self.assertIn("unspecified key", self.error(cluster_block(key=None)))  # type: ignore[arg-type]
        self.assertIn("32 alphanumeric", self.error(cluster_block(key="short")))
        self.assertIn("32 alphanumeric", self.error(cluster_block(key="!" * 32)))

    def test_disabled_needs_no_key(self) -> None:
        """A disabled cluster does not need a key."""
        config = self.load(cluster_block(key=None, disabled="yes"))  # type: ignore[arg-type]
        self.assertTrue(config.cluster.disabled)  # type: ignore[attr-defined]

    def test_bad_names(self) -> None:
        """Node and cluster names are restricted to safe characters."""
        self.assertIn("<cluster><node_name>", self.error(cluster_block(node_name="../etc")))
        self.assertIn("<cluster><name>", self.error(cluster_block(name="a b")))

    def test_bad_master_address(self) -> None:
        """Addresses a worker cannot reach are refused, like Wazuh does."""
        message = self.error(cluster_block(nodes="<node>localhost</node>"))
        self.assertIn("cannot be reached", message)
        self.assertIn("neither an IP", self.error(cluster_block(nodes="<node>a b</node>")))

    def test_bad_booleans_and_timings(self) -> None:
        """yes/no options and timings are checked."""
        self.assertIn("expected yes or no", self.error(cluster_block(hidden="maybe")))
        self.assertIn("unknown timing", self.error(cluster_block(timings="<typo>1</typo>")))
        self.assertIn(
            "expected a duration", self.error(cluster_block(timings="<keep_alive>x</keep_alive>"))
        )

"""``<cluster><failover>``: parsed, validated, and checked by ``--test-config``."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import short_temp_dir
from wazuhcluster.config.cluster import load_config
from wazuhcluster.config.failover_settings import FailoverSettings
from wazuhcluster.config.home import Home
from wazuhcluster.config.xmlconfig import ConfigError
from wazuhcluster.tap import Options
from wazuhcluster.testing.devcluster import LocalCluster

KEY = "0123456789abcdef0123456789abcdef"


def config_text(failover: str, node: str = "m1", node_type: str = "master") -> str:
    """A node's configuration with ``failover`` inside ``<cluster>``."""
    return (
        "<wazuh_config><cluster>"
        f"<name>prod</name><node_name>{node}</node_name><node_type>{node_type}</node_type>"
        f"<key>{KEY}</key><nodes><node>10.0.0.1</node></nodes>"
        f"{failover}</cluster></wazuh_config>"
    )


CANDIDATES = "<candidates><node>m1</node><node>m2</node></candidates>"


class FailoverSettingsTests(SynchronousTestCase):
    """The parser."""

    def setUp(self) -> None:
        """A home with etcd client material under etc/etcd."""
        self.home = Home(short_temp_dir(self) / "node")
        self.home.make_dirs()
        etcd = self.home.root / "etc" / "etcd"
        etcd.mkdir(parents=True)
        for name in ("ca.pem", "client.pem", "client.key"):
            (etcd / name).write_text("x")

    def load(self, failover: str, **kwargs: str) -> tuple[FailoverSettings | None, tuple[str, ...]]:
        """Load a config with ``failover``; its failover settings and warnings."""
        path = self.home.config_file
        path.write_text(config_text(failover, **kwargs))
        cluster = load_config(path, self.home).cluster
        return cluster.failover, cluster.warnings

    def error(self, failover: str, **kwargs: str) -> str:
        """The one-line error a bad block gives."""
        with self.assertRaises(ConfigError) as caught:
            self.load(failover, **kwargs)
        return str(caught.exception)

    def test_absent_means_off(self) -> None:
        """Without the block there is no failover and no warning."""
        self.assertEqual(self.load(""), (None, ()))

    def test_full_block(self) -> None:
        """Endpoints, TLS paths (from the home), TTL, candidates and the key prefix."""
        settings, warnings = self.load(
            "<failover><etcd>"
            "<endpoint>https://10.0.0.11:2379</endpoint><endpoint>https://etcd2:2379/</endpoint>"
            "<ca>etc/etcd/ca.pem</ca><cert>etc/etcd/client.pem</cert>"
            "<key>etc/etcd/client.key</key></etcd>"
            f"<lease_ttl>15s</lease_ttl>{CANDIDATES}</failover>"
        )
        assert settings is not None
        self.assertEqual(settings.endpoints, ("https://10.0.0.11:2379", "https://etcd2:2379"))
        self.assertEqual(settings.tls.ca, self.home.root / "etc/etcd/ca.pem")
        self.assertEqual(settings.tls.key, self.home.root / "etc/etcd/client.key")
        self.assertEqual(settings.lease_ttl, 15)
        self.assertEqual(settings.candidates, ("m1", "m2"))
        self.assertEqual(settings.leader_key, "/wazuhcluster/prod/leader")
        self.assertEqual(warnings, ())

    def test_defaults_and_warnings(self) -> None:
        """TTL 10 s by default; plain http and a single candidate are warned about."""
        settings, warnings = self.load(
            "<failover><etcd><endpoint>http://127.0.0.1:2379</endpoint></etcd>"
            "<candidates><node>m1</node></candidates></failover>"
        )
        assert settings is not None
        self.assertEqual(settings.lease_ttl, 10)
        self.assertEqual(len(warnings), 2)
        self.assertIn("plain http", warnings[0])
        self.assertIn("only master candidate", warnings[1])

    def test_errors(self) -> None:
        """Each mistake is one line naming the option."""
        http = "<etcd><endpoint>http://127.0.0.1:2379</endpoint></etcd>"
        cases = {
            f"<failover>{CANDIDATES}</failover>": "<cluster><failover><etcd><endpoint>",
            f"<failover><etcd><endpoint>127.0.0.1:2379</endpoint></etcd>{CANDIDATES}</failover>": (
                "http:// or https://"
            ),
            "<failover><etcd><endpoint>http://h:2379/v3</endpoint></etcd>"
            f"{CANDIDATES}</failover>": ("just scheme://host:port"),
            f"<failover><etcd><endpoint>http://h</endpoint></etcd>{CANDIDATES}</failover>": (
                "names no port"
            ),
            "<failover><etcd><endpoint>http://a:1</endpoint><endpoint>https://b:1</endpoint>"
            f"</etcd>{CANDIDATES}</failover>": "every endpoint or for none",
            "<failover><etcd><endpoint>https://a:1</endpoint><ca>etc/etcd/none.pem</ca></etcd>"
            f"{CANDIDATES}</failover>": "not a readable file",
            "<failover><etcd><endpoint>https://a:1</endpoint><cert>etc/etcd/client.pem</cert>"
            f"</etcd>{CANDIDATES}</failover>": "both <cert> and <key>",
            "<failover><etcd><endpoint>http://a:1</endpoint><ca>etc/etcd/ca.pem</ca></etcd>"
            f"{CANDIDATES}</failover>": "endpoints are http://",
            f"<failover>{http}<lease_ttl>1s</lease_ttl>{CANDIDATES}</failover>": "minimum",
            f"<failover>{http}<lease_ttl>2.5</lease_ttl>{CANDIDATES}</failover>": "whole seconds",
            f"<failover>{http}<lease_ttl>10m</lease_ttl>{CANDIDATES}</failover>": "whole seconds",
            f"<failover>{http}</failover>": "at least one master candidate",
            f"<failover>{http}<candidates><node>m1</node><node>m1</node></candidates></failover>": (
                "listed twice"
            ),
            f"<failover>{http}<candidates><node>m 2</node></candidates></failover>": "invalid node",
            f"<failover>{http}<candidates><node>m2</node></candidates></failover>": (
                "is a master but not among the candidates"
            ),
            f"<failover>{http}{CANDIDATES}<prefix>nope</prefix></failover>": "<prefix>",
        }
        for block, expected in cases.items():
            self.assertIn(expected, self.error(block), block)

    def test_worker_need_not_be_candidate(self) -> None:
        """A worker outside the candidates is fine: it only follows the master."""
        settings, _ = self.load(
            "<failover><etcd><endpoint>http://127.0.0.1:2379</endpoint></etcd>"
            f"{CANDIDATES}</failover>",
            node="w1",
            node_type="worker",
        )
        assert settings is not None
        self.assertNotIn("w1", settings.candidates)


class TestConfigTests(SynchronousTestCase):
    """``twistd wazuhcluster --test-config`` checks the block."""

    def check(self, failover: str) -> tuple[int, str]:
        """Run --test-config on a master whose <cluster> holds ``failover``."""
        local = LocalCluster(short_temp_dir(self), workers=[])
        local.write()
        home = local.home("master")
        text = home.config_file.read_text()
        home.config_file.write_text(text.replace("</cluster>", failover + "</cluster>"))
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(out), self.assertRaises(SystemExit) as stop:
            Options().parseOptions(["--home", str(home.root), "--test-config"])
        return int(stop.exception.code or 0), out.getvalue()

    def test_good_and_bad(self) -> None:
        """A good block passes (with its warnings); a bad one is one error line, exit 1."""
        good = (
            "<failover><etcd><endpoint>http://127.0.0.1:2379</endpoint></etcd>"
            "<candidates><node>master</node><node>master2</node></candidates></failover>"
        )
        code, out = self.check(good)
        self.assertEqual(code, 0, out)
        self.assertIn("plain http", out)
        code, out = self.check(good.replace("http://127.0.0.1:2379", "etcd"))
        self.assertEqual(code, 1)
        self.assertEqual(len(out.strip().splitlines()), 1)
        self.assertIn("<cluster><failover><etcd><endpoint>", out)

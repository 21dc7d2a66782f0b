"""Tests for wazuhcluster.config.auth_settings: the <auth> section and the password file."""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import fromstring

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.config.auth_settings import (
    DEFAULT_CIPHERS,
    AuthSettings,
    ForceRules,
    RateLimit,
    default_auth,
    load_password,
    parse_auth,
)
from wazuhcluster.config.xmlconfig import ConfigError, Section
from wazuhcluster.master.enrollment_authority import EnrollmentPolicy

HOME = Path("/var/wazuh-manager")


def auth(xml: str) -> AuthSettings:
    """Parse an <auth> element given as text."""
    return parse_auth(Section(fromstring(xml), "wazuh-manager.conf", "auth"), HOME)


class ParseAuthTests(SynchronousTestCase):
    """parse_auth defaults, values and errors."""

    def test_defaults(self) -> None:
        """Without <auth>, Wazuh's defaults apply, with paths under HOME/etc."""
        settings = default_auth(HOME)
        self.assertEqual(settings.port, 1515)
        self.assertFalse(settings.use_password)
        self.assertFalse(settings.use_source_ip)
        self.assertEqual(settings.password_file, HOME / "etc" / "authd.pass")
        self.assertEqual(settings.ssl_manager_cert, HOME / "etc" / "sslmanager.cert")
        self.assertEqual(settings.ssl_manager_key, HOME / "etc" / "sslmanager.key")
        self.assertEqual(settings.ciphers, DEFAULT_CIPHERS)
        self.assertEqual(settings.force, ForceRules(True, True, True, 3600.0, 3600.0))
        self.assertEqual(settings.rate_limit, RateLimit(300, 3000, 60.0))
        self.assertTrue(settings.listening)

    def test_rate_limit(self) -> None:
        """<rate_limit> is read (0 turns a limit off); bad values are config errors."""
        settings = auth(
            "<auth><rate_limit><max_per_ip>0</max_per_ip><max_total>50</max_total>"
            "<timeframe>10s</timeframe></rate_limit></auth>"
        )
        self.assertEqual(settings.rate_limit, RateLimit(0, 50, 10.0))
        for xml, option in {
            "<auth><rate_limit><max_per_ip>-1</max_per_ip></rate_limit></auth>": "max_per_ip",
            "<auth><rate_limit><max_total>lots</max_total></rate_limit></auth>": "max_total",
            "<auth><rate_limit><timeframe>0</timeframe></rate_limit></auth>": "timeframe",
        }.items():
            error = self.assertRaises(ConfigError, auth, xml)
            self.assertEqual(error.option, f"auth><rate_limit><{option}", xml)

    def test_every_option(self) -> None:
        """Every documented option is read."""
        settings = auth(
            """<auth>
                 <disabled>no</disabled><remote_enrollment>no</remote_enrollment>
                 <port>11515</port><ipv6>yes</ipv6><use_source_ip>yes</use_source_ip>
                 <purge>yes</purge><use_password>yes</use_password><ciphers>HIGH</ciphers>
                 <ssl_agent_ca>/etc/ca.pem</ssl_agent_ca><ssl_verify_host>yes</ssl_verify_host>
                 <ssl_manager_cert>etc/my.cert</ssl_manager_cert>
                 <ssl_manager_key>/abs/my.key</ssl_manager_key>
                 <ssl_auto_negotiate>yes</ssl_auto_negotiate>
                 <force>
                   <enabled>no</enabled><key_mismatch>no</key_mismatch>
                   <disconnected_time enabled="no">2h</disconnected_time>
                   <after_registration_time>10m</after_registration_time>
                 </force>
                 <agents><allow_higher_versions>yes</allow_higher_versions></agents>
               </auth>"""
        )
        self.assertEqual(
            (
                settings.port,
                settings.ipv6,
                settings.use_source_ip,
                settings.purge,
                settings.use_password,
                settings.ciphers,
                settings.ssl_verify_host,
                settings.ssl_auto_negotiate,
                settings.allow_higher_versions,
                settings.listening,
            ),
            (11515, True, True, True, True, "HIGH", True, True, True, False),
        )
        self.assertEqual(settings.ssl_agent_ca, Path("/etc/ca.pem"))
        self.assertEqual(settings.ssl_manager_cert, HOME / "etc" / "my.cert")
        self.assertEqual(settings.ssl_manager_key, Path("/abs/my.key"))
        self.assertEqual(settings.force, ForceRules(False, False, False, 7200.0, 600.0))

    def test_legacy_force_options(self) -> None:
        """Without <force>, force_insert/force_time map onto the force rules."""
        settings = auth("<auth><force_insert>no</force_insert><force_time>0</force_time></auth>")
        self.assertEqual(settings.force.enabled, False)
        self.assertEqual(settings.force.disconnected_time_enabled, False)
        settings = auth("<auth><force_time>120</force_time></auth>")
        self.assertEqual(
            (settings.force.disconnected_time_enabled, settings.force.disconnected_time),
            (True, 120.0),
        )

    def test_bad_values_are_config_errors(self) -> None:
        """Bad values raise ConfigError naming the option."""
        disconnected = "<disconnected_time enabled='x'>1h</disconnected_time>"
        registration = "<after_registration_time>1y</after_registration_time>"
        cases = {
            "<auth><port>0</port></auth>": "auth><port",
            "<auth><port>http</port></auth>": "auth><port",
            "<auth><use_password>maybe</use_password></auth>": "auth><use_password",
            "<auth><force><enabled>sure</enabled></force></auth>": "auth><force><enabled",
            f"<auth><force>{disconnected}</force></auth>": "auth><force><disconnected_time",
            f"<auth><force>{registration}</force></auth>": "auth><force><after_registration_time",
        }
        for xml, option in cases.items():
            error = self.assertRaises(ConfigError, auth, xml)
            self.assertEqual(error.option, option, xml)

    def test_policy_from_settings(self) -> None:
        """The decision policy takes the password only when use_password is on."""
        on = auth("<auth><use_password>yes</use_password><use_source_ip>yes</use_source_ip></auth>")
        self.assertEqual(EnrollmentPolicy.from_settings(on, "pw").password, "pw")
        self.assertTrue(EnrollmentPolicy.from_settings(on, "pw").use_source_ip)
        self.assertIsNone(EnrollmentPolicy.from_settings(default_auth(HOME), "pw").password)


class PasswordTests(SynchronousTestCase):
    """load_password."""

    def settings(self, use_password: bool = True) -> AuthSettings:
        """Settings whose password file lives in a temporary home."""
        home = Path(self.mktemp())
        xml = f"<auth><use_password>{'yes' if use_password else 'no'}</use_password></auth>"
        return parse_auth(Section(fromstring(xml), "conf", "auth"), home)

    def test_disabled(self) -> None:
        """No password when use_password is off, and no file is created."""
        settings = self.settings(use_password=False)
        self.assertEqual(load_password(settings), (None, False))
        self.assertFalse(settings.password_file.exists())

    def test_read_first_line(self) -> None:
        """The first line of authd.pass is the password."""
        settings = self.settings()
        settings.password_file.parent.mkdir(parents=True)
        settings.password_file.write_text("s3cret pass\nignored\n")
        self.assertEqual(load_password(settings), ("s3cret pass", False))

    def test_generated_when_missing(self) -> None:
        """A missing file gets a random password, stored with mode 0640."""
        settings = self.settings()
        password, generated = load_password(settings)
        self.assertTrue(generated)
        self.assertRegex(password or "", r"^[0-9a-f]{32}$")
        self.assertEqual(settings.password_file.read_text(), f"{password}\n")
        self.assertEqual(settings.password_file.stat().st_mode & 0o777, 0o640)
        self.assertEqual(load_password(settings), (password, False))

    def test_empty_or_oversized_refused(self) -> None:
        """An empty, oversized or non-UTF-8 file is a ConfigError."""
        settings = self.settings()
        settings.password_file.parent.mkdir(parents=True)
        for content in (b"", b"\n", b"x" * 5000, b"\xff\xfe"):
            settings.password_file.write_bytes(content)
            self.assertRaises(ConfigError, load_password, settings)

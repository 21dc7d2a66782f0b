"""The ``<auth>`` section of wazuh-manager.conf: the enrollment service's settings.

Options and defaults follow wazuh-authd 4.14 (``src/config/authd-config.c``)::

    <auth>
      <disabled>no</disabled>
      <remote_enrollment>yes</remote_enrollment>
      <port>1515</port>
      <ipv6>no</ipv6>
      <use_source_ip>no</use_source_ip>
      <purge>no</purge>
      <use_password>no</use_password>
      <ciphers>HIGH:!ADH:!EXP:!MD5:!RC4:!3DES:!CAMELLIA:@STRENGTH</ciphers>
      <ssl_agent_ca></ssl_agent_ca>
      <ssl_verify_host>no</ssl_verify_host>
      <ssl_manager_cert>etc/sslmanager.cert</ssl_manager_cert>
      <ssl_manager_key>etc/sslmanager.key</ssl_manager_key>
      <ssl_auto_negotiate>no</ssl_auto_negotiate>
      <force>
        <enabled>yes</enabled>
        <key_mismatch>yes</key_mismatch>
        <disconnected_time enabled="yes">1h</disconnected_time>
        <after_registration_time>1h</after_registration_time>
      </force>
      <agents><allow_higher_versions>no</allow_higher_versions></agents>
      <rate_limit>                       <!-- ours: authd has none -->
        <max_per_ip>300</max_per_ip>     <!-- requests from one address per timeframe -->
        <max_total>3000</max_total>      <!-- requests in all per timeframe -->
        <timeframe>60</timeframe>        <!-- seconds; 0 in a max turns that limit off -->
      </rate_limit>
    </auth>

The legacy ``<force_insert>``/``<force_time>`` pair is honoured when ``<force>`` is
absent, as Wazuh does. Relative paths are taken from HOME. ``purge`` is parsed for
compatibility only: the registry always drops a removed agent's client.keys line.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from xml.etree.ElementTree import Element

from attrs import frozen

from wazuhcluster.config.listener_settings import ENROLLMENT_LIMITS, parse_limits
from wazuhcluster.config.xmlconfig import ConfigError, Section
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.limits import ListenerLimits

DEFAULT_PORT = 1515
DEFAULT_CIPHERS = "HIGH:!ADH:!EXP:!MD5:!RC4:!3DES:!CAMELLIA:@STRENGTH"
#: Longest enrollment password accepted from authd.pass.
MAX_PASSWORD = 1024


@frozen
class ForceRules:
    """When an enrollment may replace an existing agent with the same name or IP.

    All conditions must hold: ``enabled``; if ``disconnected_time_enabled``, the old
    agent has been disconnected for at least ``disconnected_time`` seconds (or never
    connected); it was registered at least ``after_registration_time`` seconds ago (0:
    no condition); and with ``key_mismatch``, an agent that sent the hash of its key
    does not hold the manager's current key.
    """

    enabled: bool = True
    key_mismatch: bool = True
    disconnected_time_enabled: bool = True
    disconnected_time: float = 3600.0
    after_registration_time: float = 3600.0


@frozen
class RateLimit:
    """How many enrollment requests are taken per ``timeframe`` seconds, from one address
    (``max_per_ip``) and in all (``max_total``); 0 turns that limit off. The defaults follow
    the Wazuh API's ``max_request_per_minute`` (300) for one address."""

    max_per_ip: int = 300
    max_total: int = 3000
    timeframe: float = 60.0


@frozen
class AuthSettings:
    """Every ``<auth>`` option, validated, with paths resolved against HOME."""

    password_file: Path
    ssl_manager_cert: Path
    ssl_manager_key: Path
    disabled: bool = False
    remote_enrollment: bool = True
    port: int = DEFAULT_PORT
    #: Address the enrollment port listens on (ours; Wazuh always listens on every address).
    bind_addr: str | None = None
    ipv6: bool = False
    use_source_ip: bool = False
    purge: bool = False
    use_password: bool = False
    ciphers: str = DEFAULT_CIPHERS
    ssl_agent_ca: Path | None = None
    ssl_verify_host: bool = False
    ssl_auto_negotiate: bool = False
    force: ForceRules = ForceRules()
    allow_higher_versions: bool = False
    rate_limit: RateLimit = RateLimit()
    #: Connection limits of 1515 (see config/listener_settings.py).
    limits: ListenerLimits = ENROLLMENT_LIMITS

    @property
    def listening(self) -> bool:
        """Whether this node should listen on the enrollment port at all."""
        return not self.disabled and self.remote_enrollment


def default_auth(home: Path) -> AuthSettings:
    """The settings used when wazuh-manager.conf has no ``<auth>`` section."""
    return parse_auth(Section(None, "<defaults>", "auth"), home)


def parse_auth(section: Section, home: Path) -> AuthSettings:
    """Parse an ``<auth>`` section; raise :class:`ConfigError` on any bad value."""

    def path_option(option: str, default: str) -> Path:
        return section.path(option, home / default, home)

    agent_ca = section.raw("ssl_agent_ca")
    return AuthSettings(
        password_file=home / "etc" / "authd.pass",
        ssl_manager_cert=path_option("ssl_manager_cert", "etc/sslmanager.cert"),
        ssl_manager_key=path_option("ssl_manager_key", "etc/sslmanager.key"),
        disabled=section.boolean("disabled", False),
        remote_enrollment=section.boolean("remote_enrollment", True),
        port=section.integer("port", DEFAULT_PORT, 1, 65535),
        bind_addr=section.raw("bind_addr"),
        ipv6=section.boolean("ipv6", False),
        use_source_ip=section.boolean("use_source_ip", False),
        purge=section.boolean("purge", False),
        use_password=section.boolean("use_password", False),
        ciphers=section.text("ciphers", DEFAULT_CIPHERS),
        ssl_agent_ca=(path_option("ssl_agent_ca", agent_ca) if agent_ca else None),
        ssl_verify_host=section.boolean("ssl_verify_host", False),
        ssl_auto_negotiate=section.boolean("ssl_auto_negotiate", False),
        force=_parse_force(section),
        allow_higher_versions=_child(section, "agents").boolean("allow_higher_versions", False),
        rate_limit=_parse_rate_limit(_child(section, "rate_limit")),
        limits=parse_limits(section, ENROLLMENT_LIMITS),
    )


def _parse_rate_limit(section: Section) -> RateLimit:
    """The ``<rate_limit>`` block (defaults when absent)."""
    defaults = RateLimit()
    return RateLimit(
        max_per_ip=section.integer("max_per_ip", defaults.max_per_ip, 0, 10**9),
        max_total=section.integer("max_total", defaults.max_total, 0, 10**9),
        timeframe=section.duration("timeframe", defaults.timeframe, minimum=1.0),
    )


def _child(section: Section, name: str) -> Section:
    """The nested ``<name>`` element of ``section`` (last one wins) as a Section."""
    element: Element | None = None
    if section.element is not None:
        found = section.element.findall(name)
        element = found[-1] if found else None
    return Section(element, section.source, f"{section.name}><{name}")


def _parse_force(section: Section) -> ForceRules:
    """The ``<force>`` block, or the legacy force_insert/force_time options."""
    force = _child(section, "force")
    if force.element is None:
        legacy_insert = section.boolean("force_insert", True)
        legacy_time = section.integer("force_time", -1, -1, 2**31 - 1)
        if legacy_time < 0:
            return ForceRules(enabled=legacy_insert)
        return ForceRules(
            enabled=legacy_insert,
            disconnected_time_enabled=legacy_time > 0,
            disconnected_time=float(legacy_time),
        )
    disconnected_enabled = True
    tags = force.element.findall("disconnected_time") if force.element is not None else []
    if tags:
        flag = tags[-1].get("enabled", "yes").strip().lower()
        if flag not in ("yes", "no"):
            raise force.error("disconnected_time", f"enabled must be yes or no, got {flag!r}")
        disconnected_enabled = flag == "yes"
    return ForceRules(
        enabled=force.boolean("enabled", True),
        key_mismatch=force.boolean("key_mismatch", True),
        disconnected_time_enabled=disconnected_enabled,
        disconnected_time=force.duration("disconnected_time", 3600.0, minimum=0.0),
        after_registration_time=force.duration("after_registration_time", 3600.0, minimum=0.0),
    )


def load_password(settings: AuthSettings) -> tuple[str | None, bool]:
    """The enrollment password, and whether it was just generated.

    Returns ``(None, False)`` when ``use_password`` is off. When the file is missing a
    random password is generated and stored there (mode 0640), as wazuh-authd does, so
    the operator can hand it to agents; an empty or oversized file is a ConfigError.
    """
    if not settings.use_password:
        return None, False
    path = settings.password_file
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PASSWORD + 2)
    except FileNotFoundError:
        password = secrets.token_hex(16)
        write_atomically(path, f"{password}\n".encode(), mode=0o640, skip_identical=True)
        return password, True
    except OSError as error:
        raise ConfigError(str(path), "auth><use_password", f"cannot read: {error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), "auth><use_password", "password is not UTF-8") from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise ConfigError(str(path), "auth><use_password", "the password file is empty")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(str(path), "auth><use_password", f"password over {MAX_PASSWORD} bytes")
    return password, False

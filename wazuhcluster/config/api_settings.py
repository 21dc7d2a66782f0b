"""The ``<api>`` block of wazuh-manager.conf: where and how the master serves its REST API.

Example::

    <api>
      <disabled>no</disabled>
      <bind_addr>0.0.0.0</bind_addr>
      <port>55000</port>
      <cert>etc/api/server.crt</cert>
      <key>etc/api/server.key</key>
      <auth_token_exp_timeout>900</auth_token_exp_timeout>
      <max_login_attempts>50</max_login_attempts>
      <block_time>300</block_time>
      <max_request_per_minute>300</max_request_per_minute>
      <max_unauthenticated_request_per_minute>300</max_unauthenticated_request_per_minute>
      <max_upload_size>1048576</max_upload_size>
    </api>

Without an ``<api>`` block the API is off, so nodes that share a host (tests, the demo)
do not fight over port 55000; any ``<api>`` block turns it on unless it says
``<disabled>yes</disabled>``. Defaults follow the Wazuh API's ``api.yaml``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from attrs import frozen

from wazuhcluster.config.home import Home
from wazuhcluster.config.listener_settings import API_LIMITS, parse_limits
from wazuhcluster.config.xmlconfig import Section
from wazuhcluster.util.limits import ListenerLimits

DEFAULT_PORT = 55000
DEFAULT_TOKEN_TIMEOUT = 900
DEFAULT_MAX_LOGIN_ATTEMPTS = 50
DEFAULT_BLOCK_TIME = 300
DEFAULT_MAX_REQUESTS = 300
DEFAULT_MAX_UPLOAD = 1024 * 1024


@frozen
class ApiSettings:
    """The validated ``<api>`` block, with every path made absolute."""

    enabled: bool
    bind_addr: str
    port: int
    cert: Path
    key: Path
    api_dir: Path
    token_timeout: int = DEFAULT_TOKEN_TIMEOUT
    max_login_attempts: int = DEFAULT_MAX_LOGIN_ATTEMPTS
    block_time: int = DEFAULT_BLOCK_TIME
    max_request_per_minute: int = DEFAULT_MAX_REQUESTS
    #: Requests without a valid token (logins, probes) have their own budget (ours).
    max_unauthenticated_request_per_minute: int = DEFAULT_MAX_REQUESTS
    max_upload_size: int = DEFAULT_MAX_UPLOAD
    #: Connection limits of the API port (see config/listener_settings.py).
    limits: ListenerLimits = API_LIMITS

    @property
    def users_file(self) -> Path:
        """HOME/etc/api/users.json: API users and their password hashes."""
        return self.api_dir / "users.json"

    @property
    def jwt_key_file(self) -> Path:
        """HOME/etc/api/jwt.key: the HS256 signing key of the API tokens (mode 0600)."""
        return self.api_dir / "jwt.key"


def api_dir(home: Home) -> Path:
    """HOME/etc/api, where the API keeps its users, signing key and certificate."""
    return home.etc / "api"


def _check_bind(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def parse_api(section: Section, home: Home) -> ApiSettings:
    """Validate the ``<api>`` block (see module docstring); raise ConfigError when bad."""
    folder = api_dir(home)
    present = section.element is not None
    return ApiSettings(
        enabled=present and not section.boolean("disabled", False),
        bind_addr=section.checked("bind_addr", "0.0.0.0", _check_bind),
        port=section.integer("port", DEFAULT_PORT, 1, 65535),
        cert=section.path("cert", base=home.root, default=folder / "server.crt"),
        key=section.path("key", base=home.root, default=folder / "server.key"),
        api_dir=folder,
        token_timeout=section.integer(
            "auth_token_exp_timeout", DEFAULT_TOKEN_TIMEOUT, 30, 7 * 24 * 3600
        ),
        max_login_attempts=section.integer(
            "max_login_attempts", DEFAULT_MAX_LOGIN_ATTEMPTS, 1, 100_000
        ),
        block_time=section.integer("block_time", DEFAULT_BLOCK_TIME, 1, 7 * 24 * 3600),
        max_request_per_minute=section.integer(
            "max_request_per_minute", DEFAULT_MAX_REQUESTS, 0, 1_000_000
        ),
        max_unauthenticated_request_per_minute=section.integer(
            "max_unauthenticated_request_per_minute", DEFAULT_MAX_REQUESTS, 0, 1_000_000
        ),
        max_upload_size=section.integer(
            "max_upload_size", DEFAULT_MAX_UPLOAD, 1024, 64 * 1024 * 1024
        ),
        limits=parse_limits(section, API_LIMITS),
    )

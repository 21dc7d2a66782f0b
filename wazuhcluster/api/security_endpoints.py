"""The Security family: logging in with HTTP basic credentials and logging out.

Login answers a JWT; password checks are costly (scrypt), so they run in threads, a few
at a time, and addresses that fail too often are blocked by the login throttle.
"""

from __future__ import annotations

import base64
import binascii

from twisted.internet.defer import DeferredSemaphore

from wazuhcluster.api import params as p
from wazuhcluster.api.auth import LoginThrottle, TokenAuthority
from wazuhcluster.api.errors import unauthorized, wazuh_error
from wazuhcluster.api.replies import TEXT, Reply
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.users import UserStore
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

#: Password checks running at once.
MAX_CONCURRENT_LOGINS = 2


class SecurityEndpoints:
    """``/security/user/authenticate`` (see module docstring)."""

    def __init__(
        self,
        tokens: TokenAuthority,
        users: UserStore,
        throttle: LoginThrottle,
        run_in_thread: RunInThread,
        log: ClusterLog,
    ) -> None:
        self.tokens = tokens
        self.users = users
        self.throttle = throttle
        self.run_in_thread = run_in_thread
        self.log = log
        # Each password check costs tens of MiB and milliseconds of CPU: a few at a time.
        self._login_slots = DeferredSemaphore(MAX_CONCURRENT_LOGINS)

    async def login(self, call: Call) -> Reply:
        """POST /security/user/authenticate: HTTP basic credentials → a JWT."""
        ip = call.client_ip
        if self.throttle.blocked(ip):
            raise wazuh_error(6000)
        name, password = _basic(call.authorization)
        valid = name is not None and await self._login_slots.run(
            self.run_in_thread, self.users.check, name, password
        )
        if not valid:
            self.throttle.failed(ip)
            self.log.warn("API login refused for {user!r} from {ip}", user=name, ip=ip)
            raise unauthorized("Invalid credentials")
        assert name is not None
        token = self.tokens.issue(name)
        if call.params.get("raw"):
            return Reply(token, content_type=TEXT)
        return Reply({"data": {"token": token}, "error": 0})

    async def logout(self, call: Call) -> Reply:
        """DELETE /security/user/authenticate: revoke every token of the calling user."""
        assert call.user is not None
        self.tokens.revoke(call.user)
        message = f"User {call.user} was successfully logged out"
        return Reply({"message": message, "error": 0})

    def routes(self) -> list[Route]:
        """The routes of this family."""
        return [
            Route(
                "POST",
                "/security/user/authenticate",
                self.login,
                {"raw": p.boolean},
                authenticated=False,
            ),
            Route("DELETE", "/security/user/authenticate", self.logout, {}),
            # Deprecated in Wazuh 4 but still used by older scripts (curl -X GET ... -u).
            Route(
                "GET",
                "/security/user/authenticate",
                self.login,
                {"raw": p.boolean},
                authenticated=False,
            ),
        ]


def _basic(header: bytes | None) -> tuple[str | None, str]:
    """The name and password of an HTTP basic ``Authorization`` header (no name: refused)."""
    if not header or len(header) > 4096:
        return None, ""
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None, ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    name, sep, password = decoded.partition(":")
    return (name, password) if sep and name else (None, "")

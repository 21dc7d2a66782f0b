"""The Security family: logging in and out, the caller, the RBAC catalogue and the settings.

Login answers a JWT; password checks are costly (scrypt), so they run in threads, a few
at a time, and addresses that fail too often are blocked by the login throttle. The
run_as login gives the roles whose security rules match the JSON "authorization context"
the client sends. ``/security/users/me`` shows the caller, ``/security/actions`` and
``/security/resources`` what policies can name, and ``/security/config`` the RBAC mode
and token lifetime (a change revokes every token).

:class:`SecurityEndpoints` also composes the other security families over one
:class:`~wazuhcluster.api.security_common.SecurityContext`: the users
(:mod:`wazuhcluster.api.security_users`) and the roles, policies and rules
(:mod:`wazuhcluster.api.security_roles`), and lists their routes.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import DeferredSemaphore

from wazuhcluster.api import params as p
from wazuhcluster.api import rbac
from wazuhcluster.api.auth import LoginThrottle, TokenAuthority
from wazuhcluster.api.errors import ApiError, bad_request, unauthorized, wazuh_error
from wazuhcluster.api.replies import TEXT, Reply, envelope, same_message
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.security_common import SecurityContext, route
from wazuhcluster.api.security_roles import RoleEndpoints
from wazuhcluster.api.security_store import SecurityDatabase
from wazuhcluster.api.security_users import UserEndpoints
from wazuhcluster.api.users import User, UserStore
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

#: Password checks running at once.
MAX_CONCURRENT_LOGINS = 2
#: The largest run_as authorization context, in bytes of JSON (as Wazuh's limit).
MAX_AUTH_CONTEXT = 8192


class SecurityEndpoints:
    """``/security/...`` (see module docstring)."""

    def __init__(
        self,
        tokens: TokenAuthority,
        users: UserStore,
        throttle: LoginThrottle,
        run_in_thread: RunInThread,
        log: ClusterLog,
        actions_of: Callable[[], list[tuple[str, str, tuple[str, ...]]]] = list,
    ) -> None:
        self.context = SecurityContext(tokens, users, run_in_thread, log)
        self.throttle = throttle
        self.actions_of = actions_of
        self.user_endpoints = UserEndpoints(self.context)
        self.role_endpoints = RoleEndpoints(self.context)
        # Each password check costs tens of MiB and milliseconds of CPU: a few at a time.
        self._login_slots = DeferredSemaphore(MAX_CONCURRENT_LOGINS)

    # --- logging in and out -------------------------------------------------------------
    async def _credentials(self, call: Call) -> User:
        ip = call.client_ip
        if self.throttle.blocked(ip):
            raise wazuh_error(6000)
        name, password = _basic(call.authorization)
        valid = name is not None and await self._login_slots.run(
            self.context.run_in_thread, self.context.users.check, name, password
        )
        user = self.context.users.get(name) if name is not None else None
        if not valid or user is None:
            self.throttle.failed(ip)
            self.context.log.warn("API login refused for {user!r} from {ip}", user=name, ip=ip)
            raise unauthorized("Invalid credentials")
        return user

    @staticmethod
    def _token_reply(call: Call, token: str) -> Reply:
        if call.params.get("raw"):
            return Reply(token, content_type=TEXT)
        return Reply({"data": {"token": token}, "error": 0})

    async def login(self, call: Call) -> Reply:
        """POST /security/user/authenticate: HTTP basic credentials → a JWT."""
        user = await self._credentials(call)
        return self._token_reply(call, self.context.tokens.issue(user.name, list(user.roles)))

    async def run_as_login(self, call: Call) -> Reply:
        """POST /security/user/authenticate/run_as: roles from the matching security rules."""
        context = call.body
        if not isinstance(context, dict):
            raise bad_request("the authorization context must be a JSON object")
        if len(repr(context)) > MAX_AUTH_CONTEXT:
            raise ApiError(413, "Request Entity Too Large", "Content size exceeded.", 413)
        user = await self._credentials(call)
        if not context:
            return self._token_reply(
                call, self.context.tokens.issue(user.name, list(user.roles), True)
            )
        if not user.allow_run_as:
            raise wazuh_error(6004)
        roles = self.context.state.roles_for_context(context, user.id)
        return self._token_reply(call, self.context.tokens.issue(user.name, roles, True))

    async def logout(self, call: Call) -> Reply:
        """DELETE /security/user/authenticate: revoke every token of the calling user."""
        assert call.user is not None
        await self.context.tokens.revoke(call.user)
        message = f"User {call.user} was successfully logged out"
        return Reply({"message": message, "error": 0})

    async def revoke_all(self, call: Call) -> Reply:
        """PUT /security/user/revoke: a new signing key; every token stops working."""
        call.access.require("security:revoke")
        await self.context.tokens.rotate(self.context.run_in_thread)
        self.context.log.info("Every API token was revoked by {user}", user=call.user)
        return Reply({"message": "User tokens were successfully revoked", "error": 0})

    def _me(self, call: Call) -> User:
        user = self.context.users.get(call.user or "")
        if user is None:
            raise unauthorized("Invalid token")
        return user

    async def users_me(self, call: Call) -> Reply:
        """GET /security/users/me: the caller, with their token's roles spelled out."""
        user = self._me(call)
        view = user.public()
        roles = call.claims.get("rbac_roles", list(user.roles))
        view["roles"] = [
            self.context.role_view(r, deep=True) for r in roles if r in self.context.state.roles
        ]
        message = "Current user information was returned"
        return Reply(envelope([view], {}, *same_message(message)))

    async def users_me_policies(self, call: Call) -> Reply:
        """GET /security/users/me/policies: the caller's processed permissions."""
        data: dict[str, Any] = dict(self.context.tokens.permissions(dict(call.claims)))
        data["rbac_mode"] = call.claims.get("rbac_mode", self.context.state.rbac_mode)
        message = "Current user processed policies information was returned"
        return Reply({"data": data, "message": message, "error": 0})

    async def actions(self, call: Call) -> Reply:
        """GET /security/actions: every RBAC action, what it acts on and which calls need it."""
        endpoint = call.params.get("endpoint")
        related: dict[str, list[str]] = {}
        for method, template, actions in self.actions_of():
            for action in actions:
                related.setdefault(action, []).append(f"{method} {template}")
        data: dict[str, Any] = {}
        for action, kinds in rbac.ACTIONS.items():
            calls = related.get(action, [])
            if endpoint is not None and endpoint not in calls:
                continue
            data[action] = {
                "description": f"The {action.replace(':', ' action ')} permission",
                "resources": list(kinds),
                "example": {
                    "actions": [action],
                    "resources": [f"{kinds[0]}:*" if kinds[0] != "*:*" else rbac.RESOURCELESS],
                    "effect": rbac.ALLOW,
                },
                "related_endpoints": calls,
            }
        return Reply({"data": data, "error": 0})

    async def resources(self, call: Call) -> Reply:
        """GET /security/resources: the resource types policies can name."""
        wanted = call.params.get("resource")
        data = {k: v for k, v in rbac.RESOURCES.items() if wanted is None or k == wanted}
        return Reply({"data": data, "error": 0})

    # --- configuration ------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "auth_token_exp_timeout": self.context.tokens.timeout,
            "rbac_mode": self.context.state.rbac_mode,
        }

    async def get_config(self, call: Call) -> Reply:
        """GET /security/config: token lifetime and RBAC mode."""
        call.access.require("security:read_config")
        return Reply({"data": self._config(), "error": 0})

    async def put_config(self, call: Call) -> Reply:
        """PUT /security/config: change the RBAC mode or token lifetime; every token dies."""
        call.access.require("security:update_config")
        body = p.check_body(
            call.body, {"auth_token_exp_timeout": (int, False, 0), "rbac_mode": (str, False, 8)}
        )
        if not body:
            raise bad_request("the body needs auth_token_exp_timeout or rbac_mode")
        mode = body.get("rbac_mode")
        timeout = body.get("auth_token_exp_timeout")
        if mode is not None and mode not in ("white", "black"):
            raise bad_request(f"'{mode}' is not one of ['white', 'black'] ('rbac_mode')")
        if timeout is not None and not 30 <= timeout <= 2**31 - 1:
            raise bad_request(f"{timeout} is less than the minimum of 30")
        await self._apply_config(mode, timeout)
        message = "Configuration was successfully updated"
        return Reply({"message": message, "error": 0})

    async def delete_config(self, call: Call) -> Reply:
        """DELETE /security/config: back to white mode and the configured token lifetime."""
        call.access.require("security:update_config")
        await self._apply_config(None, None, reset=True)
        return Reply({"message": "Configuration was successfully restored", "error": 0})

    async def _apply_config(
        self, mode: str | None, timeout: int | None, reset: bool = False
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            if reset or mode is not None:
                SecurityDatabase.set_setting(db, "rbac_mode", mode)
            if reset or timeout is not None:
                SecurityDatabase.set_setting(
                    db, "auth_token_exp_timeout", None if timeout is None else str(timeout)
                )

        await self.context.change(write)
        self.context.tokens.apply_settings()
        await self.context.tokens.rotate(self.context.run_in_thread)

    # --- routes -------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The routes of every security family, their groups interleaved in one fixed order."""
        users, roles = self.user_endpoints, self.role_endpoints
        return [
            *self._session_routes(),
            *users.run_as_routes(),
            *self._catalogue_routes(),
            *users.routes(),
            *roles.routes(),
            *users.role_routes(),
            *roles.link_routes(),
            *self._config_routes(),
        ]

    def _session_routes(self) -> list[Route]:
        common = p.COMMON
        raw = {"raw": p.boolean}
        return [
            route("POST", "/security/user/authenticate", self.login, raw, authenticated=False),
            route("DELETE", "/security/user/authenticate", self.logout, {}),
            # Deprecated in Wazuh 4 but still used by older scripts (curl -X GET ... -u).
            route("GET", "/security/user/authenticate", self.login, raw, authenticated=False),
            route(
                "POST",
                "/security/user/authenticate/run_as",
                self.run_as_login,
                raw,
                authenticated=False,
                body="json",
            ),
            route("GET", "/security/users/me", self.users_me, common),
            route(
                "GET", "/security/users/me/policies", self.users_me_policies, {"pretty": p.boolean}
            ),
            route("PUT", "/security/user/revoke", self.revoke_all, {}, "security:revoke"),
        ]

    def _catalogue_routes(self) -> list[Route]:
        return [
            route(
                "GET",
                "/security/actions",
                self.actions,
                {"pretty": p.boolean, "endpoint": p.text},
            ),
            route(
                "GET",
                "/security/resources",
                self.resources,
                {"pretty": p.boolean, "resource": p.choice(*rbac.RESOURCES)},
            ),
        ]

    def _config_routes(self) -> list[Route]:
        common = p.COMMON
        return [
            route("GET", "/security/config", self.get_config, common, "security:read_config"),
            route(
                "PUT",
                "/security/config",
                self.put_config,
                common,
                "security:update_config",
                body="json",
            ),
            route(
                "DELETE", "/security/config", self.delete_config, common, "security:update_config"
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


__all__ = ["SecurityEndpoints"]

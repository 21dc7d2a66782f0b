"""The Security family: logging in and out, and Wazuh's RBAC objects (``/security/...``).

Login answers a JWT; password checks are costly (scrypt), so they run in threads, a few
at a time, and addresses that fail too often are blocked by the login throttle. The
run_as login gives the roles whose security rules match the JSON "authorization context"
the client sends.

Users live in users.json (:mod:`wazuhcluster.api.users`), roles, policies and rules in
the security store (:mod:`wazuhcluster.api.security_store`); both are written in
threads. Objects with ids up to 99 are Wazuh's defaults and refuse changes (4008).
Every change that alters what a token grants revokes the tokens concerned: a user's
password, roles or run_as flag (that user's), a role's name or policies, a policy or a
rule (the roles holding it), the links of rules (every run_as token).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import DeferredSemaphore

from wazuhcluster.api import params as p
from wazuhcluster.api import rbac
from wazuhcluster.api.auth import LoginThrottle, TokenAuthority
from wazuhcluster.api.errors import ApiError, bad_request, unauthorized, wazuh_error
from wazuhcluster.api.query import apply_listing, check_listing
from wazuhcluster.api.replies import TEXT, Reply, add_failure, envelope, same_message
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.security_store import SecurityConflict, SecurityDatabase, SecurityState
from wazuhcluster.api.users import (
    MAX_USERS,
    User,
    UsersError,
    UserStore,
    add_user,
    delete_user,
    drop_role,
    hash_password,
    update_user,
    user_name_problem,
)
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

#: Password checks running at once.
MAX_CONCURRENT_LOGINS = 2
#: The largest run_as authorization context, in bytes of JSON (as Wazuh's limit).
MAX_AUTH_CONTEXT = 8192

USER_FIELDS = ("id", "username", "allow_run_as", "roles")
ROLE_FIELDS = ("id", "name", "policies", "users", "rules")
POLICY_FIELDS = ("id", "name", "policy", "roles")
RULE_FIELDS = ("id", "name", "rule", "roles")
_NAME = re.compile(r"[\w\-.@ ]{1,64}")


def password_code(password: str) -> int | None:
    """The Wazuh error of a password that its policy refuses (5009 length, 5007 kinds)."""
    if not 8 <= len(password) <= 64:
        return 5009
    kinds = (r"[a-z]", r"[A-Z]", r"\d", r"[^a-zA-Z\d]")
    if not all(re.search(kind, password) for kind in kinds):
        return 5007
    return None


def _ids(name: str, value: str) -> int:
    if not re.fullmatch(r"\d{1,9}", value):
        raise bad_request(f"'{value[:64]}' is not a valid id ('{name}')")
    return int(value)


def _ids_or_all(name: str, value: str) -> int | str:
    return "all" if value == "all" else _ids(name, value)


ID_LIST = p.comma_list(_ids)
ID_LIST_ALL = p.comma_list(_ids_or_all)
ID_PATH: p.Parser = _ids


def _name(body: dict[str, Any], key: str = "name") -> str:
    value = body[key]
    if _NAME.fullmatch(value) is None:
        raise bad_request(f"'{value[:64]}' is not a valid '{key}'")
    return str(value)


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
        self.tokens = tokens
        self.users = users
        self.throttle = throttle
        self.run_in_thread = run_in_thread
        self.log = log
        self.actions_of = actions_of
        # Each password check costs tens of MiB and milliseconds of CPU: a few at a time.
        self._login_slots = DeferredSemaphore(MAX_CONCURRENT_LOGINS)

    @property
    def state(self) -> SecurityState:
        """The security store's current snapshot."""
        return self.tokens.store.state

    # --- logging in and out -------------------------------------------------------------
    async def _credentials(self, call: Call) -> User:
        ip = call.client_ip
        if self.throttle.blocked(ip):
            raise wazuh_error(6000)
        name, password = _basic(call.authorization)
        valid = name is not None and await self._login_slots.run(
            self.run_in_thread, self.users.check, name, password
        )
        user = self.users.get(name) if name is not None else None
        if not valid or user is None:
            self.throttle.failed(ip)
            self.log.warn("API login refused for {user!r} from {ip}", user=name, ip=ip)
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
        return self._token_reply(call, self.tokens.issue(user.name, list(user.roles)))

    async def run_as_login(self, call: Call) -> Reply:
        """POST /security/user/authenticate/run_as: roles from the matching security rules."""
        context = call.body
        if not isinstance(context, dict):
            raise bad_request("the authorization context must be a JSON object")
        if len(repr(context)) > MAX_AUTH_CONTEXT:
            raise ApiError(413, "Request Entity Too Large", "Content size exceeded.", 413)
        user = await self._credentials(call)
        if not context:
            return self._token_reply(call, self.tokens.issue(user.name, list(user.roles), True))
        if not user.allow_run_as:
            raise wazuh_error(6004)
        roles = self.state.roles_for_context(context, user.id)
        return self._token_reply(call, self.tokens.issue(user.name, roles, True))

    async def logout(self, call: Call) -> Reply:
        """DELETE /security/user/authenticate: revoke every token of the calling user."""
        assert call.user is not None
        await self.tokens.revoke(call.user)
        message = f"User {call.user} was successfully logged out"
        return Reply({"message": message, "error": 0})

    async def revoke_all(self, call: Call) -> Reply:
        """PUT /security/user/revoke: a new signing key; every token stops working."""
        call.access.require("security:revoke")
        await self.tokens.rotate(self.run_in_thread)
        self.log.info("Every API token was revoked by {user}", user=call.user)
        return Reply({"message": "User tokens were successfully revoked", "error": 0})

    # --- the caller ---------------------------------------------------------------------
    def _role_view(self, role_id: int, deep: bool = False) -> dict[str, Any]:
        state = self.state
        users = sorted(u.id for u in self.users.users().values() if role_id in u.roles)
        policies: list[Any] = list(state.role_policies.get(role_id, ()))
        rules: list[Any] = list(state.role_rules.get(role_id, ()))
        if deep:
            policies = [self._policy_view(pid) for pid in policies if pid in state.policies]
            rules = [self._rule_view(rid) for rid in rules if rid in state.rules]
        return {
            "id": role_id,
            "name": state.roles[role_id],
            "policies": policies,
            "users": users,
            "rules": rules,
        }

    def _policy_view(self, policy_id: int) -> dict[str, Any]:
        name, body = self.state.policies[policy_id]
        roles = sorted(r for r, held in self.state.role_policies.items() if policy_id in held)
        return {"id": policy_id, "name": name, "policy": body, "roles": roles}

    def _rule_view(self, rule_id: int) -> dict[str, Any]:
        name, body = self.state.rules[rule_id]
        roles = sorted(r for r, held in self.state.role_rules.items() if rule_id in held)
        return {"id": rule_id, "name": name, "rule": body, "roles": roles}

    def _me(self, call: Call) -> User:
        user = self.users.get(call.user or "")
        if user is None:
            raise unauthorized("Invalid token")
        return user

    async def users_me(self, call: Call) -> Reply:
        """GET /security/users/me: the caller, with their token's roles spelled out."""
        user = self._me(call)
        view = user.public()
        roles = call.claims.get("rbac_roles", list(user.roles))
        view["roles"] = [self._role_view(r, deep=True) for r in roles if r in self.state.roles]
        message = "Current user information was returned"
        return Reply(envelope([view], {}, *same_message(message)))

    async def users_me_policies(self, call: Call) -> Reply:
        """GET /security/users/me/policies: the caller's processed permissions."""
        data: dict[str, Any] = dict(self.tokens.permissions(dict(call.claims)))
        data["rbac_mode"] = call.claims.get("rbac_mode", self.state.rbac_mode)
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

    # --- listings -----------------------------------------------------------------------
    def _list(
        self,
        call: Call,
        views: list[dict[str, Any]],
        ids_param: str,
        kind: str,
        missing_code: int,
        fields: Sequence[str],
        what: str,
    ) -> Reply:
        listing = p.listing(call.params)
        check_listing(listing, fields)
        requested = call.params.get(ids_param)
        known = {str(view["id"]) for view in views}
        failed: dict[int, list[str]] = {}
        wanted = [str(i) for i in requested] if requested else sorted(known, key=int)
        kept = call.access.select("security:read", kind, wanted, failed, bool(requested))
        for value in kept:
            if value not in known:
                add_failure(failed, missing_code, value)
        kept_set = set(kept)
        shown = [view for view in views if str(view["id"]) in kept_set]
        page, total = apply_listing(shown, listing, fields, ("id",))
        msgs = (
            f"All specified {what} were returned",
            f"Some {what} were not returned",
            f"No {what} were returned",
        )
        return Reply(envelope(page, failed, *msgs, total))

    async def list_users(self, call: Call) -> Reply:
        """GET /security/users."""
        views = sorted((u.public() for u in self.users.users().values()), key=lambda v: v["id"])
        return self._list(call, views, "user_ids", "user:id", 5001, USER_FIELDS, "users")

    async def list_roles(self, call: Call) -> Reply:
        """GET /security/roles."""
        views = [self._role_view(role_id) for role_id in self.state.roles]
        return self._list(call, views, "role_ids", "role:id", 4002, ROLE_FIELDS, "roles")

    async def list_policies(self, call: Call) -> Reply:
        """GET /security/policies."""
        views = [self._policy_view(pid) for pid in self.state.policies]
        return self._list(call, views, "policy_ids", "policy:id", 4007, POLICY_FIELDS, "policies")

    async def list_rules(self, call: Call) -> Reply:
        """GET /security/rules."""
        views = [self._rule_view(rid) for rid in self.state.rules]
        return self._list(call, views, "rule_ids", "rule:id", 4022, RULE_FIELDS, "security rules")

    # --- users --------------------------------------------------------------------------
    async def _users_file(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.run_in_thread(function, self.users.path, *args, **kwargs)
        except UsersError as error:
            raise bad_request(str(error)) from None

    async def create_user(self, call: Call) -> Reply:
        """POST /security/users: a user with no role yet."""
        call.access.require("security:create_user")
        body = p.check_body(call.body, {"username": (str, True, 64), "password": (str, True, 64)})
        name, password = body["username"], body["password"]
        if len(name) < 4 or user_name_problem(name) is not None:
            raise bad_request(f"'{name[:64]}' is not a valid 'username'")
        code = password_code(password)
        if code is not None:
            raise wazuh_error(code)
        msgs = (
            "User was successfully created",
            "User could not be created",
            "User could not be created",
        )
        if self.users.get(name) is not None or len(self.users.users()) >= MAX_USERS:
            return Reply(envelope([], {5000: [name]}, *msgs))
        hashed = await self.run_in_thread(hash_password, password)
        user = await self._users_file(add_user, name, password, self.tokens.clock, (), hashed)
        self.log.info("API user {name} created by {by}", name=name, by=call.user)
        return Reply(envelope([user.public()], {}, *msgs))

    def _user(self, user_id: int) -> User:
        user = self.users.by_id(user_id)
        if user is None:
            raise wazuh_error(5001, str(user_id), status=404)
        return user

    async def update_user(self, call: Call) -> Reply:
        """PUT /security/users/{user_id}: a new password (the user's tokens are revoked)."""
        user_id = int(call.path["user_id"])
        call.access.require_one("security:update", "user:id", str(user_id))
        body = p.check_body(call.body, {"password": (str, False, 64)})
        if "password" not in body:
            raise wazuh_error(4001)
        user = self._user(user_id)
        code = password_code(body["password"])
        if code is not None:
            raise wazuh_error(code)
        hashed = await self.run_in_thread(hash_password, body["password"])
        updated = await self._users_file(
            update_user, user.name, hash=hashed, changed=self.tokens.clock()
        )
        await self.tokens.revoke(user.name)
        return Reply(
            envelope([updated.public()], {}, *same_message("User was successfully updated"))
        )

    async def edit_run_as(self, call: Call) -> Reply:
        """PUT /security/users/{user_id}/run_as: allow or forbid run_as logins."""
        call.access.require("security:edit_run_as")
        user = self._user(int(call.path["user_id"]))
        allow = bool(call.params.get("allow_run_as", False))
        updated = await self._users_file(update_user, user.name, allow_run_as=allow)
        await self.tokens.revoke(user.name)
        message = "Parameter allow_run_as has been updated for all selected users"
        return Reply(envelope([updated.public()], {}, *same_message(message)))

    async def delete_users(self, call: Call) -> Reply:
        """DELETE /security/users: delete users (not yourself; their tokens die with them)."""
        requested: tuple[int | str, ...] = call.params["user_ids"]
        everyone = "all" in requested
        known = {str(u.id): u for u in self.users.users().values()}
        wanted = sorted(known, key=int) if everyone else [str(i) for i in requested]
        failed: dict[int, list[str]] = {}
        kept = call.access.select("security:delete", "user:id", wanted, failed, not everyone)
        deleted: list[dict[str, Any]] = []
        for value in kept:
            user = known.get(value)
            if user is None:
                add_failure(failed, 5001, value)
            elif user.id <= rbac.MAX_RESERVED_ID:
                add_failure(failed, 5004, value)
            elif user.name == call.user:
                add_failure(failed, 5008, value)
            else:
                await self._users_file(delete_user, user.name)
                await self.tokens.revoke(user.name)
                deleted.append(user.public())
        msgs = (
            "Users were successfully deleted",
            "Some users were not deleted",
            "No user was deleted",
        )
        return Reply(envelope(deleted, failed, *msgs))

    async def link_user_roles(self, call: Call) -> Reply:
        """POST /security/users/{user_id}/roles: give a user roles (at ``position``)."""
        user_id = int(call.path["user_id"])
        call.access.require_one("security:update", "user:id", str(user_id))
        user = self._user(user_id)
        if user.id <= rbac.MAX_RESERVED_ID:
            raise wazuh_error(4008)
        failed: dict[int, list[str]] = {}
        wanted = [str(i) for i in call.params["role_ids"]]
        kept = call.access.select("security:update", "role:id", wanted, failed, True)
        roles = list(user.roles)
        at = call.params.get("position", len(roles))
        for value in kept:
            role_id = int(value)
            if role_id not in self.state.roles:
                add_failure(failed, 4002, value)
            elif role_id in roles:
                add_failure(failed, 4017, value)
            else:
                roles.insert(min(at, len(roles)), role_id)
                at += 1
        msgs = (
            f"All roles were linked to user {user.name}",
            f"Some roles were not linked to user {user.name}",
            f"No link was created to user {user.name}",
        )
        if tuple(roles) == user.roles:
            return Reply(envelope([], failed, *msgs))
        updated = await self._users_file(update_user, user.name, roles=tuple(roles))
        await self.tokens.revoke(user.name)
        return Reply(envelope([updated.public()], failed, *msgs))

    async def unlink_user_roles(self, call: Call) -> Reply:
        """DELETE /security/users/{user_id}/roles: take roles from a user."""
        user_id = int(call.path["user_id"])
        call.access.require_one("security:delete", "user:id", str(user_id))
        user = self._user(user_id)
        if user.id <= rbac.MAX_RESERVED_ID:
            raise wazuh_error(4008)
        requested = call.params["role_ids"]
        everyone = "all" in requested
        wanted = [str(r) for r in user.roles] if everyone else [str(i) for i in requested]
        failed: dict[int, list[str]] = {}
        kept = call.access.select("security:delete", "role:id", wanted, failed, not everyone)
        roles = list(user.roles)
        for value in kept:
            role_id = int(value)
            if role_id not in self.state.roles:
                add_failure(failed, 4002, value)
            elif role_id not in roles:
                add_failure(failed, 4016, value)
            else:
                roles.remove(role_id)
        msgs = (
            f"All roles were unlinked from user {user.name}",
            f"Some roles were not unlinked from user {user.name}",
            f"No role was unlinked from user {user.name}",
        )
        if tuple(roles) == user.roles:
            return Reply(envelope([], failed, *msgs))
        updated = await self._users_file(update_user, user.name, roles=tuple(roles))
        await self.tokens.revoke(user.name)
        return Reply(envelope([updated.public()], failed, *msgs))

    # --- roles, policies, rules ---------------------------------------------------------
    async def _change(self, function: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            return await self.tokens.store.change(function)
        except SecurityConflict as conflict:
            raise wazuh_error(conflict.code, str(conflict)) from None

    async def create_role(self, call: Call) -> Reply:
        """POST /security/roles."""
        call.access.require("security:create")
        body = p.check_body(call.body, {"name": (str, True, 64)})
        name, now = _name(body), self.tokens.clock()
        role_id = await self._change(lambda db: SecurityDatabase.add_role(db, name, now))
        message = "Role was successfully created"
        return Reply(envelope([self._role_view(role_id)], {}, *same_message(message)))

    async def update_role(self, call: Call) -> Reply:
        """PUT /security/roles/{role_id}: rename a role (its tokens are revoked)."""
        role_id = int(call.path["role_id"])
        call.access.require_one("security:update", "role:id", str(role_id))
        body = p.check_body(call.body, {"name": (str, False, 64)})
        if "name" not in body:
            raise wazuh_error(4001)
        name = _name(body)
        self._require_custom(role_id, self.state.roles, 4002)
        await self._change(lambda db: SecurityDatabase.rename_role(db, role_id, name))
        await self.tokens.revoke_roles([role_id])
        message = "Role was successfully updated"
        return Reply(envelope([self._role_view(role_id)], {}, *same_message(message)))

    @staticmethod
    def _require_custom(object_id: int, known: Any, missing: int) -> None:
        if object_id not in known:
            raise wazuh_error(missing, str(object_id), status=404)
        if object_id <= rbac.MAX_RESERVED_ID:
            raise wazuh_error(4008)

    async def _delete_objects(
        self, call: Call, param: str, kind: str, table: str, known: Any, missing: int, what: str
    ) -> tuple[list[int], Reply]:
        requested = call.params[param]
        everyone = "all" in requested
        wanted = [str(i) for i in known] if everyone else [str(i) for i in requested]
        failed: dict[int, list[str]] = {}
        kept = call.access.select("security:delete", kind, wanted, failed, not everyone)
        deleted: list[int] = []
        views: list[dict[str, Any]] = []
        for value in kept:
            object_id = int(value)
            if object_id not in known:
                add_failure(failed, missing, value)
            elif object_id <= rbac.MAX_RESERVED_ID:
                if not everyone:
                    add_failure(failed, 4008, value)
            else:
                views.append(self._view_of(table, object_id))
                deleted.append(object_id)
        if deleted:

            def remove(db: sqlite3.Connection) -> None:
                for object_id in deleted:
                    SecurityDatabase.delete(db, table, object_id)

            await self._change(remove)
        msgs = (
            f"All specified {what} were deleted",
            f"Some {what} were not deleted",
            f"No {what} were deleted",
        )
        return deleted, Reply(envelope(views, failed, *msgs))

    def _view_of(self, table: str, object_id: int) -> dict[str, Any]:
        if table == "roles":
            return self._role_view(object_id)
        if table == "policies":
            return self._policy_view(object_id)
        return self._rule_view(object_id)

    async def delete_roles(self, call: Call) -> Reply:
        """DELETE /security/roles: delete roles; users lose them and their tokens."""
        deleted, reply = await self._delete_objects(
            call, "role_ids", "role:id", "roles", self.state.roles, 4002, "roles"
        )
        if deleted:
            await self.tokens.revoke_roles(deleted)
            await self._users_file(drop_role, deleted)
        return reply

    async def create_policy(self, call: Call) -> Reply:
        """POST /security/policies."""
        call.access.require("security:create")
        body = p.check_body(call.body, {"name": (str, True, 64), "policy": (dict, True, 0)})
        name, policy, now = _name(body), _policy(body["policy"]), self.tokens.clock()
        policy_id = await self._change(
            lambda db: SecurityDatabase.add_body(db, "policies", name, policy, now)
        )
        message = "Policy was successfully created"
        return Reply(envelope([self._policy_view(policy_id)], {}, *same_message(message)))

    async def update_policy(self, call: Call) -> Reply:
        """PUT /security/policies/{policy_id}: the roles holding it lose their tokens."""
        policy_id = int(call.path["policy_id"])
        call.access.require_one("security:update", "policy:id", str(policy_id))
        body = p.check_body(call.body, {"name": (str, False, 64), "policy": (dict, False, 0)})
        if not body:
            raise wazuh_error(4001)
        self._require_custom(policy_id, self.state.policies, 4007)
        name = _name(body) if "name" in body else None
        policy = _policy(body["policy"]) if "policy" in body else None
        await self._change(
            lambda db: SecurityDatabase.update_body(db, "policies", policy_id, name, policy)
        )
        await self._revoke_holders(self.state.role_policies, policy_id)
        message = "Policy was successfully updated"
        return Reply(envelope([self._policy_view(policy_id)], {}, *same_message(message)))

    async def _revoke_holders(self, links: Any, object_id: int) -> None:
        holders = [role for role, held in links.items() if object_id in held]
        if holders:
            await self.tokens.revoke_roles(holders)

    async def delete_policies(self, call: Call) -> Reply:
        """DELETE /security/policies: the roles holding them lose their tokens."""
        links = dict(self.state.role_policies)
        deleted, reply = await self._delete_objects(
            call, "policy_ids", "policy:id", "policies", self.state.policies, 4007, "policies"
        )
        for policy_id in deleted:
            await self._revoke_holders(links, policy_id)
        return reply

    async def create_rule(self, call: Call) -> Reply:
        """POST /security/rules."""
        call.access.require("security:create")
        body = p.check_body(call.body, {"name": (str, True, 64), "rule": (dict, True, 0)})
        name, rule, now = _name(body), body["rule"], self.tokens.clock()
        if not rbac.valid_rule(rule):
            raise wazuh_error(4003)
        rule_id = await self._change(
            lambda db: SecurityDatabase.add_body(db, "rules", name, rule, now)
        )
        message = "Security rule was successfully created"
        return Reply(envelope([self._rule_view(rule_id)], {}, *same_message(message)))

    async def update_rule(self, call: Call) -> Reply:
        """PUT /security/rules/{rule_id}: the roles linked to it lose their tokens."""
        rule_id = int(call.path["rule_id"])
        call.access.require_one("security:update", "rule:id", str(rule_id))
        body = p.check_body(call.body, {"name": (str, False, 64), "rule": (dict, False, 0)})
        if not body:
            raise wazuh_error(4001)
        self._require_custom(rule_id, self.state.rules, 4022)
        name = _name(body) if "name" in body else None
        rule = body.get("rule")
        if rule is not None and not rbac.valid_rule(rule):
            raise wazuh_error(4003)
        await self._change(
            lambda db: SecurityDatabase.update_body(db, "rules", rule_id, name, rule)
        )
        await self._revoke_holders(self.state.role_rules, rule_id)
        message = "Security rule was successfully updated"
        return Reply(envelope([self._rule_view(rule_id)], {}, *same_message(message)))

    async def delete_rules(self, call: Call) -> Reply:
        """DELETE /security/rules: the roles linked to them lose their tokens."""
        links = dict(self.state.role_rules)
        deleted, reply = await self._delete_objects(
            call, "rule_ids", "rule:id", "rules", self.state.rules, 4022, "security rules"
        )
        for rule_id in deleted:
            await self._revoke_holders(links, rule_id)
        return reply

    async def _link(
        self,
        call: Call,
        param: str,
        kind: str,
        known: Any,
        missing: int,
        link: Callable[[sqlite3.Connection, int, int], None],
        linking: bool,
    ) -> tuple[list[int], dict[int, list[str]]]:
        role_id = int(call.path["role_id"])
        action = "security:update" if linking else "security:delete"
        call.access.require_one(action, "role:id", str(role_id))
        if role_id not in self.state.roles:
            # Wazuh answers 200 with the role as the failed item (its description has no 404).
            return [], {4002: [str(role_id)]}
        requested = call.params[param]
        everyone = "all" in requested
        if everyone:
            held = self.state.role_policies if kind == "policy:id" else self.state.role_rules
            wanted = [str(i) for i in held.get(role_id, ())]
        else:
            wanted = [str(i) for i in requested]
        failed: dict[int, list[str]] = {}
        kept = call.access.select(action, kind, wanted, failed, not everyone)
        done: list[int] = []
        for value in kept:
            object_id = int(value)
            reserved = role_id if kind == "policy:id" else object_id
            if object_id not in known:
                add_failure(failed, missing, value)
            elif reserved <= rbac.MAX_RESERVED_ID:
                add_failure(failed, 4008, value)
            else:
                try:
                    await self.tokens.store.change(
                        functools.partial(_link_one, link, role_id, object_id)
                    )
                except SecurityConflict as conflict:
                    add_failure(failed, conflict.code, value)
                else:
                    done.append(object_id)
        return done, failed

    async def link_role_policies(self, call: Call) -> Reply:
        """POST /security/roles/{role_id}/policies (at ``position``)."""
        position = call.params.get("position")
        state = self.state
        counter = [position]

        def link(db: sqlite3.Connection, role_id: int, policy_id: int) -> None:
            SecurityDatabase.link_policy(db, role_id, policy_id, counter[0])
            if counter[0] is not None:
                counter[0] += 1

        done, failed = await self._link(
            call, "policy_ids", "policy:id", state.policies, 4007, link, True
        )
        return await self._role_links_reply(call, done, failed, "policies", "linked to", True)

    async def unlink_role_policies(self, call: Call) -> Reply:
        """DELETE /security/roles/{role_id}/policies."""
        done, failed = await self._link(
            call,
            "policy_ids",
            "policy:id",
            self.state.policies,
            4007,
            SecurityDatabase.unlink_policy,
            False,
        )
        return await self._role_links_reply(call, done, failed, "policies", "unlinked from", True)

    async def link_role_rules(self, call: Call) -> Reply:
        """POST /security/roles/{role_id}/rules."""
        done, failed = await self._link(
            call, "rule_ids", "rule:id", self.state.rules, 4022, SecurityDatabase.link_rule, True
        )
        return await self._role_links_reply(
            call, done, failed, "security rules", "linked to", False
        )

    async def unlink_role_rules(self, call: Call) -> Reply:
        """DELETE /security/roles/{role_id}/rules."""
        done, failed = await self._link(
            call,
            "rule_ids",
            "rule:id",
            self.state.rules,
            4022,
            SecurityDatabase.unlink_rule,
            False,
        )
        return await self._role_links_reply(
            call, done, failed, "security rules", "unlinked from", False
        )

    async def _role_links_reply(
        self,
        call: Call,
        done: list[int],
        failed: dict[int, list[str]],
        what: str,
        verb: str,
        policies: bool,
    ) -> Reply:
        role_id = int(call.path["role_id"])
        if done:
            if policies:
                await self.tokens.revoke_roles([role_id])
            else:
                await self.tokens.revoke_run_as()
        msgs = (
            f"All {what} were {verb} role {role_id}",
            f"Some {what} were not {verb} role {role_id}",
            f"No {what} were {verb} role {role_id}",
        )
        items = [self._role_view(role_id)] if done else []
        return Reply(envelope(items, failed, *msgs))

    # --- configuration ------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {"auth_token_exp_timeout": self.tokens.timeout, "rbac_mode": self.state.rbac_mode}

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

        await self._change(write)
        self.tokens.apply_settings()
        await self.tokens.rotate(self.run_in_thread)

    # --- routes -------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        listing = {**common, **p.LISTING}
        raw = {"raw": p.boolean}
        user_path = {"user_id": ID_PATH}
        role_path = {"role_id": ID_PATH}
        position = {"position": p.integer(0, 2**31 - 1)}

        def route(
            method: str, template: str, handler: Any, params: Any, *actions: str, **kw: Any
        ) -> Route:
            return Route(method, template, handler, params, actions=actions, **kw)

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
            route(
                "PUT",
                "/security/users/{user_id}/run_as",
                self.edit_run_as,
                {**common, "allow_run_as": p.boolean},
                "security:edit_run_as",
                path_params=user_path,
            ),
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
            route(
                "GET",
                "/security/users",
                self.list_users,
                {**listing, "user_ids": ID_LIST},
                "security:read",
            ),
            route(
                "POST",
                "/security/users",
                self.create_user,
                common,
                "security:create_user",
                body="json",
            ),
            route(
                "DELETE",
                "/security/users",
                self.delete_users,
                {**common, "user_ids": ID_LIST_ALL},
                "security:delete",
                required=("user_ids",),
            ),
            route(
                "PUT",
                "/security/users/{user_id}",
                self.update_user,
                common,
                "security:update",
                path_params=user_path,
                body="json",
            ),
            route(
                "GET",
                "/security/roles",
                self.list_roles,
                {**listing, "role_ids": ID_LIST},
                "security:read",
            ),
            route(
                "POST", "/security/roles", self.create_role, common, "security:create", body="json"
            ),
            route(
                "DELETE",
                "/security/roles",
                self.delete_roles,
                {**common, "role_ids": ID_LIST_ALL},
                "security:delete",
                required=("role_ids",),
            ),
            route(
                "PUT",
                "/security/roles/{role_id}",
                self.update_role,
                common,
                "security:update",
                path_params=role_path,
                body="json",
            ),
            route(
                "GET",
                "/security/rules",
                self.list_rules,
                {**listing, "rule_ids": ID_LIST},
                "security:read",
            ),
            route(
                "POST", "/security/rules", self.create_rule, common, "security:create", body="json"
            ),
            route(
                "DELETE",
                "/security/rules",
                self.delete_rules,
                {**common, "rule_ids": ID_LIST_ALL},
                "security:delete",
                required=("rule_ids",),
            ),
            route(
                "PUT",
                "/security/rules/{rule_id}",
                self.update_rule,
                common,
                "security:update",
                path_params={"rule_id": ID_PATH},
                body="json",
            ),
            route(
                "GET",
                "/security/policies",
                self.list_policies,
                {**listing, "policy_ids": ID_LIST},
                "security:read",
            ),
            route(
                "POST",
                "/security/policies",
                self.create_policy,
                common,
                "security:create",
                body="json",
            ),
            route(
                "DELETE",
                "/security/policies",
                self.delete_policies,
                {**common, "policy_ids": ID_LIST_ALL},
                "security:delete",
                required=("policy_ids",),
            ),
            route(
                "PUT",
                "/security/policies/{policy_id}",
                self.update_policy,
                common,
                "security:update",
                path_params={"policy_id": ID_PATH},
                body="json",
            ),
            route(
                "POST",
                "/security/users/{user_id}/roles",
                self.link_user_roles,
                {**common, **position, "role_ids": ID_LIST},
                "security:update",
                path_params=user_path,
                required=("role_ids",),
            ),
            route(
                "DELETE",
                "/security/users/{user_id}/roles",
                self.unlink_user_roles,
                {**common, "role_ids": ID_LIST_ALL},
                "security:delete",
                path_params=user_path,
                required=("role_ids",),
            ),
            route(
                "POST",
                "/security/roles/{role_id}/policies",
                self.link_role_policies,
                {**common, **position, "policy_ids": ID_LIST},
                "security:update",
                path_params=role_path,
                required=("policy_ids",),
            ),
            route(
                "DELETE",
                "/security/roles/{role_id}/policies",
                self.unlink_role_policies,
                {**common, "policy_ids": ID_LIST_ALL},
                "security:delete",
                path_params=role_path,
                required=("policy_ids",),
            ),
            route(
                "POST",
                "/security/roles/{role_id}/rules",
                self.link_role_rules,
                {**common, "rule_ids": ID_LIST},
                "security:update",
                path_params=role_path,
                required=("rule_ids",),
            ),
            route(
                "DELETE",
                "/security/roles/{role_id}/rules",
                self.unlink_role_rules,
                {**common, "rule_ids": ID_LIST_ALL},
                "security:delete",
                path_params=role_path,
                required=("rule_ids",),
            ),
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


def _link_one(
    link: Callable[[sqlite3.Connection, int, int], None],
    role_id: int,
    object_id: int,
    db: sqlite3.Connection,
) -> None:
    link(db, role_id, object_id)


def _policy(body: Any) -> dict[str, Any]:
    try:
        return rbac.normalize_policy(body)
    except rbac.PolicyError as error:
        raise wazuh_error(4006, str(error)) from None


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


__all__ = ["SecurityEndpoints", "password_code"]

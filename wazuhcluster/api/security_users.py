"""The users of the API: their accounts and the roles linked to them (``/security/users``).

Users live in users.json (:mod:`wazuhcluster.api.users`), written in threads over the
:class:`~wazuhcluster.api.security_common.SecurityContext`; password hashing (scrypt) runs
in a thread too. Users with ids up to 99 are Wazuh's defaults and refuse role changes
and deletion. A user's new password, roles or run_as flag revokes that user's tokens.
"""

from __future__ import annotations

import re
from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api import rbac
from wazuhcluster.api.errors import bad_request, wazuh_error
from wazuhcluster.api.replies import Reply, add_failure, envelope, numeric_ids
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.security_common import (
    ID_LIST,
    ID_LIST_ALL,
    ID_PATH,
    SecurityContext,
    route,
)
from wazuhcluster.api.users import (
    MAX_USERS,
    User,
    add_user,
    delete_user,
    hash_password,
    update_user,
    user_name_problem,
)

USER_FIELDS = ("id", "username", "allow_run_as", "roles")


def password_code(password: str) -> int | None:
    """The Wazuh error of a password that its policy refuses (5009 length, 5007 kinds)."""
    if not 8 <= len(password) <= 64:
        return 5009
    kinds = (r"[a-z]", r"[A-Z]", r"\d", r"[^a-zA-Z\d]")
    if not all(re.search(kind, password) for kind in kinds):
        return 5007
    return None


class UserEndpoints:
    """``/security/users...`` except ``/security/users/me`` (see module docstring)."""

    def __init__(self, context: SecurityContext) -> None:
        self.context = context

    async def list_users(self, call: Call) -> Reply:
        """GET /security/users."""
        views = sorted(
            (u.public() for u in self.context.users.users().values()), key=lambda v: v["id"]
        )
        return self.context.list_reply(
            call, views, "user_ids", "user:id", 5001, USER_FIELDS, "users"
        )

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
        if self.context.users.get(name) is not None or len(self.context.users.users()) >= MAX_USERS:
            return Reply(envelope([], {5000: [name]}, *msgs))
        hashed = await self.context.run_in_thread(hash_password, password)
        user = await self.context.users_file(
            add_user, name, password, self.context.tokens.clock, (), hashed
        )
        self.context.log.info("API user {name} created by {by}", name=name, by=call.user)
        return Reply(envelope([user.public()], {}, *msgs))

    def _user(self, user_id: int) -> User:
        user = self.context.users.by_id(user_id)
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
        code = password_code(body["password"])
        if code is not None:
            raise wazuh_error(code)
        if user_id <= rbac.MAX_RESERVED_ID:
            caller = self.context.users.get(call.user) if call.user else None
            if caller is None or caller.id > rbac.MAX_RESERVED_ID:
                raise wazuh_error(5011)
        msgs = ("User was successfully updated", "User could not be updated")
        user = self.context.users.by_id(user_id)
        if user is None:
            # Wazuh answers an unknown user as the failed item of a 200 (no 404 described).
            return Reply(envelope([], {5001: [user_id]}, msgs[0], msgs[1], msgs[1]))
        hashed = await self.context.run_in_thread(hash_password, body["password"])
        updated = await self.context.users_file(
            update_user, user.name, hash=hashed, changed=self.context.tokens.clock()
        )
        await self.context.tokens.revoke(user.name)
        return Reply(envelope([updated.public()], {}, msgs[0], msgs[1], msgs[1]))

    async def edit_run_as(self, call: Call) -> Reply:
        """PUT /security/users/{user_id}/run_as: allow or forbid run_as logins."""
        call.access.require("security:edit_run_as")
        user_id = int(call.path["user_id"])
        allow = bool(call.params.get("allow_run_as", False))
        word = "enabled" if allow else "disabled"
        done = f"Parameter allow_run_as has been {word} for the user"
        none = f"The parameter allow_run_as could not be {word} for the user"
        user = self.context.users.by_id(user_id)
        if user is None:
            return Reply(envelope([], {5001: [user_id]}, done, none, none))
        updated = await self.context.users_file(update_user, user.name, allow_run_as=allow)
        await self.context.tokens.revoke(user.name)
        return Reply(envelope([updated.public()], {}, done, none, none))

    async def delete_users(self, call: Call) -> Reply:
        """DELETE /security/users: delete users (not yourself; their tokens die with them)."""
        requested: tuple[int | str, ...] = call.params["user_ids"]
        everyone = "all" in requested
        known = {str(u.id): u for u in self.context.users.users().values()}
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
                await self.context.users_file(delete_user, user.name)
                await self.context.tokens.revoke(user.name)
                deleted.append(user.public())
        msgs = (
            "Users were successfully deleted",
            "Some users were not deleted",
            "No user was deleted",
        )
        return Reply(envelope(deleted, numeric_ids(failed), *msgs))

    async def link_user_roles(self, call: Call) -> Reply:
        """POST /security/users/{user_id}/roles: give a user roles (at ``position``)."""
        user_id = int(call.path["user_id"])
        call.access.require_one("security:update", "user:id", str(user_id))
        user = self.context.users.by_id(user_id)
        name = user.name if user is not None else "unknown"
        msgs = (
            f"All roles were linked to user {name}",
            f"Some roles were not linked to user {name}",
            f"No link was created to user {name}",
        )
        if user is None or user.id <= rbac.MAX_RESERVED_ID:
            # Wazuh answers both as the user's failed item in a 200.
            return Reply(envelope([], {5001 if user is None else 4008: [user_id]}, *msgs))
        failed: dict[int, list[str]] = {}
        wanted = [str(i) for i in call.params["role_ids"]]
        kept = call.access.select("security:update", "role:id", wanted, failed, True)
        roles = list(user.roles)
        at = call.params.get("position", len(roles))
        for value in kept:
            role_id = int(value)
            if role_id not in self.context.state.roles:
                add_failure(failed, 4002, value)
            elif role_id in roles:
                add_failure(failed, 4017, value)
            else:
                roles.insert(min(at, len(roles)), role_id)
                at += 1
        if tuple(roles) == user.roles:
            return Reply(envelope([], numeric_ids(failed), *msgs))
        updated = await self.context.users_file(update_user, user.name, roles=tuple(roles))
        await self.context.tokens.revoke(user.name)
        return Reply(envelope([updated.public()], numeric_ids(failed), *msgs))

    async def unlink_user_roles(self, call: Call) -> Reply:
        """DELETE /security/users/{user_id}/roles: take roles from a user."""
        user_id = int(call.path["user_id"])
        call.access.require_one("security:delete", "user:id", str(user_id))
        user = self._user(user_id)
        msgs = (
            f"All roles were unlinked from user {user.name}",
            f"Some roles were not unlinked from user {user.name}",
            f"No role was unlinked from user {user.name}",
        )
        if user.id <= rbac.MAX_RESERVED_ID:
            return Reply(envelope([], {4008: [user_id]}, *msgs))
        requested = call.params["role_ids"]
        everyone = "all" in requested
        wanted = [str(r) for r in user.roles] if everyone else [str(i) for i in requested]
        failed: dict[int, list[str]] = {}
        kept = call.access.select("security:delete", "role:id", wanted, failed, not everyone)
        roles = list(user.roles)
        for value in kept:
            role_id = int(value)
            if role_id not in self.context.state.roles:
                add_failure(failed, 4002, value)
            elif role_id not in roles:
                add_failure(failed, 4016, value)
            else:
                roles.remove(role_id)
        if tuple(roles) == user.roles:
            return Reply(envelope([], numeric_ids(failed), *msgs))
        updated = await self.context.users_file(update_user, user.name, roles=tuple(roles))
        await self.context.tokens.revoke(user.name)
        return Reply(envelope([updated.public()], numeric_ids(failed), *msgs))

    # --- routes -------------------------------------------------------------------------
    def run_as_routes(self) -> list[Route]:
        """The route that allows or forbids a user's run_as logins."""
        common = p.COMMON
        user_path = {"user_id": ID_PATH}
        return [
            route(
                "PUT",
                "/security/users/{user_id}/run_as",
                self.edit_run_as,
                {**common, "allow_run_as": p.boolean},
                "security:edit_run_as",
                path_params=user_path,
            ),
        ]

    def routes(self) -> list[Route]:
        """The routes that list, create, delete and update users."""
        common = p.COMMON
        listing = {**common, **p.LISTING}
        user_path = {"user_id": ID_PATH}
        return [
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
        ]

    def role_routes(self) -> list[Route]:
        """The routes that link roles to a user and unlink them."""
        common = p.COMMON
        user_path = {"user_id": ID_PATH}
        position = {"position": p.integer(0, 2**31 - 1)}
        return [
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
        ]


__all__ = ["UserEndpoints", "password_code"]

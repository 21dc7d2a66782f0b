"""Wazuh's RBAC objects: roles, policies and security rules, and the links between them.

They live in the security store (:mod:`wazuhcluster.api.security_store`), changed in
threads over the :class:`~wazuhcluster.api.security_common.SecurityContext`. Objects with
ids up to 99 are Wazuh's defaults and refuse changes (4008). Every change that alters
what a token grants revokes the tokens concerned: a role's name or policies, a policy
or a rule (the roles holding it), the links of rules (every run_as token).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable
from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api import rbac
from wazuhcluster.api.errors import bad_request, wazuh_error
from wazuhcluster.api.replies import Reply, add_failure, envelope, numeric_ids
from wazuhcluster.api.routes import Call, Handler, Route
from wazuhcluster.api.security_common import (
    ID_LIST,
    ID_LIST_ALL,
    ID_PATH,
    SecurityContext,
    route,
)
from wazuhcluster.api.security_store import SecurityConflict, SecurityDatabase
from wazuhcluster.api.users import drop_role

ROLE_FIELDS = ("id", "name", "policies", "users", "rules")
POLICY_FIELDS = ("id", "name", "policy", "roles")
RULE_FIELDS = ("id", "name", "rule", "roles")
_NAME = re.compile(r"[\w\-.@ ]{1,64}")


def _name(body: dict[str, Any], key: str = "name") -> str:
    value = body[key]
    if _NAME.fullmatch(value) is None:
        raise bad_request(f"'{value[:64]}' is not a valid '{key}'")
    return str(value)


class RoleEndpoints:
    """``/security/roles``, ``/security/policies``, ``/security/rules`` (see module docstring)."""

    def __init__(self, context: SecurityContext) -> None:
        self.context = context

    async def list_roles(self, call: Call) -> Reply:
        """GET /security/roles."""
        views = [self.context.role_view(role_id) for role_id in self.context.state.roles]
        return self.context.list_reply(
            call, views, "role_ids", "role:id", 4002, ROLE_FIELDS, "roles"
        )

    async def list_policies(self, call: Call) -> Reply:
        """GET /security/policies."""
        views = [self.context.policy_view(pid) for pid in self.context.state.policies]
        return self.context.list_reply(
            call, views, "policy_ids", "policy:id", 4007, POLICY_FIELDS, "policies"
        )

    async def list_rules(self, call: Call) -> Reply:
        """GET /security/rules."""
        views = [self.context.rule_view(rid) for rid in self.context.state.rules]
        return self.context.list_reply(
            call, views, "rule_ids", "rule:id", 4022, RULE_FIELDS, "security rules"
        )

    async def create_role(self, call: Call) -> Reply:
        """POST /security/roles."""
        call.access.require("security:create")
        body = p.check_body(call.body, {"name": (str, True, 64)})
        name, now = _name(body), self.context.tokens.clock()
        return await self._one(
            name,
            None,
            lambda db: SecurityDatabase.add_role(db, name, now),
            self.context.role_view,
            ("Role was successfully created", "Role was not created"),
        )

    async def update_role(self, call: Call) -> Reply:
        """PUT /security/roles/{role_id}: rename a role (its tokens are revoked)."""
        role_id = int(call.path["role_id"])
        call.access.require_one("security:update", "role:id", str(role_id))
        body = p.check_body(call.body, {"name": (str, False, 64)})
        if "name" not in body:
            raise wazuh_error(4001)
        name = _name(body)
        reply = await self._one(
            role_id,
            _custom_failure(role_id, self.context.state.roles, 4002),
            lambda db: SecurityDatabase.rename_role(db, role_id, name),
            lambda _: self.context.role_view(role_id),
            ("Role was successfully updated", "Role was not updated"),
        )
        if not reply.body["error"]:
            await self.context.tokens.revoke_roles([role_id])
        return reply

    async def _one(
        self,
        item: str | int,
        refused: int | None,
        change: Callable[[sqlite3.Connection], Any],
        view: Callable[[Any], dict[str, Any]],
        messages: tuple[str, str],
    ) -> Reply:
        """Create or change one object as Wazuh does: a refusal (``refused``, or a conflict
        of the store) is the failed ``item`` (a name, or an object's integer id) of a 200
        answer with error 1, not an error."""
        done, none = messages
        if refused is None:
            try:
                made = await self.context.tokens.store.change(change)
            except SecurityConflict as conflict:
                refused = conflict.code
            else:
                return Reply(envelope([view(made)], {}, done, none, none))
        return Reply(envelope([], {refused: [item]}, done, none, none))

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

            await self.context.change(remove)
        msgs = (
            f"All specified {what} were deleted",
            f"Some {what} were not deleted",
            f"No {what} were deleted",
        )
        return deleted, Reply(envelope(views, numeric_ids(failed), *msgs))

    def _view_of(self, table: str, object_id: int) -> dict[str, Any]:
        if table == "roles":
            return self.context.role_view(object_id)
        if table == "policies":
            return self.context.policy_view(object_id)
        return self.context.rule_view(object_id)

    async def delete_roles(self, call: Call) -> Reply:
        """DELETE /security/roles: delete roles; users lose them and their tokens."""
        deleted, reply = await self._delete_objects(
            call, "role_ids", "role:id", "roles", self.context.state.roles, 4002, "roles"
        )
        if deleted:
            await self.context.tokens.revoke_roles(deleted)
            await self.context.users_file(drop_role, deleted)
        return reply

    async def create_policy(self, call: Call) -> Reply:
        """POST /security/policies."""
        call.access.require("security:create")
        body = p.check_body(call.body, {"name": (str, True, 64), "policy": (dict, True, 0)})
        name, policy, now = _name(body), _policy(body["policy"]), self.context.tokens.clock()
        return await self._one(
            name,
            None,
            lambda db: SecurityDatabase.add_body(db, "policies", name, policy, now),
            self.context.policy_view,
            ("Policy was successfully created", "Policy was not created"),
        )

    async def update_policy(self, call: Call) -> Reply:
        """PUT /security/policies/{policy_id}: the roles holding it lose their tokens."""
        policy_id = int(call.path["policy_id"])
        call.access.require_one("security:update", "policy:id", str(policy_id))
        body = p.check_body(call.body, {"name": (str, False, 64), "policy": (dict, False, 0)})
        if not body:
            raise wazuh_error(4001)
        name = _name(body) if "name" in body else None
        policy = _policy(body["policy"]) if "policy" in body else None
        reply = await self._one(
            policy_id,
            _custom_failure(policy_id, self.context.state.policies, 4007),
            lambda db: SecurityDatabase.update_body(db, "policies", policy_id, name, policy),
            lambda _: self.context.policy_view(policy_id),
            ("Policy was successfully updated", "Policy was not updated"),
        )
        if not reply.body["error"]:
            await self._revoke_holders(self.context.state.role_policies, policy_id)
        return reply

    async def _revoke_holders(self, links: Any, object_id: int) -> None:
        holders = [role for role, held in links.items() if object_id in held]
        if holders:
            await self.context.tokens.revoke_roles(holders)

    async def delete_policies(self, call: Call) -> Reply:
        """DELETE /security/policies: the roles holding them lose their tokens."""
        links = dict(self.context.state.role_policies)
        deleted, reply = await self._delete_objects(
            call,
            "policy_ids",
            "policy:id",
            "policies",
            self.context.state.policies,
            4007,
            "policies",
        )
        for policy_id in deleted:
            await self._revoke_holders(links, policy_id)
        return reply

    async def create_rule(self, call: Call) -> Reply:
        """POST /security/rules."""
        call.access.require("security:create")
        body = p.check_body(call.body, {"name": (str, True, 64), "rule": (dict, True, 0)})
        name, rule, now = _name(body), body["rule"], self.context.tokens.clock()
        return await self._one(
            name,
            None if rbac.valid_rule(rule) else 4003,
            lambda db: SecurityDatabase.add_body(db, "rules", name, rule, now),
            self.context.rule_view,
            ("Security rule was successfully created", "Security rule was not created"),
        )

    async def update_rule(self, call: Call) -> Reply:
        """PUT /security/rules/{rule_id}: the roles linked to it lose their tokens."""
        rule_id = int(call.path["rule_id"])
        call.access.require_one("security:update", "rule:id", str(rule_id))
        body = p.check_body(call.body, {"name": (str, False, 64), "rule": (dict, False, 0)})
        if not body:
            raise wazuh_error(4001)
        name = _name(body) if "name" in body else None
        rule = body.get("rule")
        refused = _custom_failure(rule_id, self.context.state.rules, 4022)
        if refused is None and rule is not None and not rbac.valid_rule(rule):
            refused = 4003
        reply = await self._one(
            rule_id,
            refused,
            lambda db: SecurityDatabase.update_body(db, "rules", rule_id, name, rule),
            lambda _: self.context.rule_view(rule_id),
            ("Security rule was successfully updated", "Security rule was not updated"),
        )
        if not reply.body["error"]:
            await self._revoke_holders(self.context.state.role_rules, rule_id)
        return reply

    async def delete_rules(self, call: Call) -> Reply:
        """DELETE /security/rules: the roles linked to them lose their tokens."""
        links = dict(self.context.state.role_rules)
        deleted, reply = await self._delete_objects(
            call, "rule_ids", "rule:id", "rules", self.context.state.rules, 4022, "security rules"
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
        if role_id not in self.context.state.roles:
            # Wazuh answers 200 with the role as the failed item (its description has no 404).
            return [], {4002: [str(role_id)]}
        requested = call.params[param]
        everyone = "all" in requested
        if everyone:
            held = (
                self.context.state.role_policies
                if kind == "policy:id"
                else self.context.state.role_rules
            )
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
                    await self.context.tokens.store.change(
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
        state = self.context.state
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
            self.context.state.policies,
            4007,
            SecurityDatabase.unlink_policy,
            False,
        )
        return await self._role_links_reply(call, done, failed, "policies", "unlinked from", True)

    async def link_role_rules(self, call: Call) -> Reply:
        """POST /security/roles/{role_id}/rules."""
        done, failed = await self._link(
            call,
            "rule_ids",
            "rule:id",
            self.context.state.rules,
            4022,
            SecurityDatabase.link_rule,
            True,
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
            self.context.state.rules,
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
                await self.context.tokens.revoke_roles([role_id])
            else:
                await self.context.tokens.revoke_run_as()
        msgs = (
            f"All {what} were {verb} role {role_id}",
            f"Some {what} were not {verb} role {role_id}",
            f"No {what} were {verb} role {role_id}",
        )
        items = [self.context.role_view(role_id)] if done else []
        return Reply(envelope(items, numeric_ids(failed), *msgs))

    # --- routes -------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The routes that list, create, delete and update roles, rules and policies."""
        return [
            *_object_routes(
                "roles",
                "role",
                self.list_roles,
                self.create_role,
                self.delete_roles,
                self.update_role,
            ),
            *_object_routes(
                "rules",
                "rule",
                self.list_rules,
                self.create_rule,
                self.delete_rules,
                self.update_rule,
            ),
            *_object_routes(
                "policies",
                "policy",
                self.list_policies,
                self.create_policy,
                self.delete_policies,
                self.update_policy,
            ),
        ]

    def link_routes(self) -> list[Route]:
        """The routes that link policies and rules to a role and unlink them."""
        common = p.COMMON
        role_path = {"role_id": ID_PATH}
        position = {"position": p.integer(0, 2**31 - 1)}
        return [
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
        ]


def _link_one(
    link: Callable[[sqlite3.Connection, int, int], None],
    role_id: int,
    object_id: int,
    db: sqlite3.Connection,
) -> None:
    link(db, role_id, object_id)


def _custom_failure(object_id: int, known: Any, missing: int) -> int | None:
    """Why an object may not be changed: ``missing`` when unknown, 4008 for Wazuh's own."""
    if object_id not in known:
        return missing
    if object_id <= rbac.MAX_RESERVED_ID:
        return 4008
    return None


def _policy(body: Any) -> dict[str, Any]:
    try:
        return rbac.normalize_policy(body)
    except rbac.PolicyError as error:
        raise wazuh_error(4006, str(error)) from None


__all__ = ["RoleEndpoints"]


def _object_routes(
    plural: str,
    singular: str,
    list_handler: Handler,
    create: Handler,
    delete: Handler,
    update: Handler,
) -> list[Route]:
    """The four routes of one kind of security object, as Wazuh lays them out: list, create,
    delete some (``<singular>_ids``, required, ``all`` allowed) and update one."""
    common = p.COMMON
    ids = f"{singular}_ids"
    return [
        route(
            "GET",
            f"/security/{plural}",
            list_handler,
            {**common, **p.LISTING, ids: ID_LIST},
            "security:read",
        ),
        route("POST", f"/security/{plural}", create, common, "security:create", body="json"),
        route(
            "DELETE",
            f"/security/{plural}",
            delete,
            {**common, ids: ID_LIST_ALL},
            "security:delete",
            required=(ids,),
        ),
        route(
            "PUT",
            f"/security/{plural}/{{{singular}_id}}",
            update,
            common,
            "security:update",
            path_params={f"{singular}_id": ID_PATH},
            body="json",
        ),
    ]

"""What the security families share: their context, the RBAC objects' views and the id parsers.

:class:`SecurityContext` holds the token authority (and through it the security store),
the user store, the thread runner and the log; it writes users.json and the store in
threads, shows roles, policies and rules as the API answers them, and builds the
listing replies of ``GET /security/users|roles|policies|rules``. The session
(:mod:`wazuhcluster.api.security_endpoints`), the users
(:mod:`wazuhcluster.api.security_users`) and the roles, policies and rules
(:mod:`wazuhcluster.api.security_roles`) all work over one.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from attrs import define

from wazuhcluster.api import params as p
from wazuhcluster.api.auth import TokenAuthority
from wazuhcluster.api.errors import bad_request, wazuh_error
from wazuhcluster.api.query import apply_listing, check_listing
from wazuhcluster.api.replies import Reply, add_failure, envelope, numeric_ids
from wazuhcluster.api.routes import Call, Handler, Route
from wazuhcluster.api.security_store import SecurityConflict, SecurityState
from wazuhcluster.api.users import UsersError, UserStore
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

T = TypeVar("T")


def _ids(name: str, value: str) -> int:
    if not re.fullmatch(r"\d{1,9}", value):
        raise bad_request(f"'{value[:64]}' is not a valid id ('{name}')")
    return int(value)


def _ids_or_all(name: str, value: str) -> int | str:
    return "all" if value == "all" else _ids(name, value)


#: A comma-separated list of object ids.
ID_LIST = p.comma_list(_ids)
#: A comma-separated list of object ids, or ``all``.
ID_LIST_ALL = p.comma_list(_ids_or_all)
#: One object id in the path.
ID_PATH: p.Parser = _ids


def route(
    method: str,
    template: str,
    handler: Handler,
    params: Mapping[str, p.Parser],
    *actions: str,
    **kw: Any,
) -> Route:
    """A :class:`~wazuhcluster.api.routes.Route` needing the RBAC ``actions``."""
    return Route(method, template, handler, params, actions=actions, **kw)


@define
class SecurityContext:
    """The stores and helpers shared by the security families (see module docstring)."""

    tokens: TokenAuthority
    users: UserStore
    run_in_thread: RunInThread
    log: ClusterLog

    @property
    def state(self) -> SecurityState:
        """The security store's current snapshot."""
        return self.tokens.store.state

    def role_view(self, role_id: int, deep: bool = False) -> dict[str, Any]:
        """A role as the API shows it (``deep``: its policies and rules spelled out)."""
        state = self.state
        users = sorted(u.id for u in self.users.users().values() if role_id in u.roles)
        policies: list[Any] = list(state.role_policies.get(role_id, ()))
        rules: list[Any] = list(state.role_rules.get(role_id, ()))
        if deep:
            policies = [self.policy_view(pid) for pid in policies if pid in state.policies]
            rules = [self.rule_view(rid) for rid in rules if rid in state.rules]
        return {
            "id": role_id,
            "name": state.roles[role_id],
            "policies": policies,
            "users": users,
            "rules": rules,
        }

    def policy_view(self, policy_id: int) -> dict[str, Any]:
        """A policy as the API shows it, with the roles holding it."""
        name, body = self.state.policies[policy_id]
        roles = sorted(r for r, held in self.state.role_policies.items() if policy_id in held)
        return {"id": policy_id, "name": name, "policy": body, "roles": roles}

    def rule_view(self, rule_id: int) -> dict[str, Any]:
        """A security rule as the API shows it, with the roles linked to it."""
        name, body = self.state.rules[rule_id]
        roles = sorted(r for r, held in self.state.role_rules.items() if rule_id in held)
        return {"id": rule_id, "name": name, "rule": body, "roles": roles}

    def list_reply(
        self,
        call: Call,
        views: list[dict[str, Any]],
        ids_param: str,
        kind: str,
        missing_code: int,
        fields: Sequence[str],
        what: str,
    ) -> Reply:
        """The listing reply of ``views`` the caller may read (``ids_param`` picks ids)."""
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
        return Reply(envelope(page, numeric_ids(failed), *msgs, total))

    async def users_file(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``function`` over users.json in a thread (its refusals answer 400)."""
        try:
            result = await self.run_in_thread(function, self.users.path, *args, **kwargs)
        except UsersError as error:
            raise bad_request(str(error)) from None
        await self.tokens.store.changed()
        return result

    async def change(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function`` as one change of the security store (conflicts answer its code)."""
        try:
            return await self.tokens.store.change(function)
        except SecurityConflict as conflict:
            raise wazuh_error(conflict.code, str(conflict)) from None

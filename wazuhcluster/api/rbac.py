"""Role-based access control as Wazuh's API decides it: pure functions, no I/O.

A *policy* is ``{"actions": [...], "resources": [...], "effect": "allow"|"deny"}``; a
*role* holds policies in order; a user holds roles in order. :func:`process_policies`
folds the policies of a user's roles into *permissions*: per action, an ordered map of
resource → effect in which a resource named again replaces its earlier entry and moves
last, and a wildcard (``agent:id:*``) drops the earlier entries it covers. There is no
"deny beats allow": the later entry wins.

A request is then checked against the permissions:

* :func:`resourceless_allowed` for actions on things that do not exist yet
  (``agent:create`` on ``*:*:*``);
* :func:`allowed_values` for actions on named things (``agent:read`` on ``agent:id:001``):
  the user's entries for that action are replayed in order over the requested values,
  ``allow`` adding and anything else removing; a wildcard covers every requested value,
  and ``agent:group:web`` covers the agents currently in group ``web``. ``*:*:*`` is not
  a global wildcard: it only grants resourceless actions.

In ``black`` mode every requested value starts allowed and only ``deny`` entries remove.

:func:`rule_matches` evaluates a *security rule* (the run_as login's matcher) against the
authorization context a client sends. The default policies, roles and rules are the ones
Wazuh 4.14 ships (same ids, names, actions and resources).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import frozen

#: Permissions: per action, the ordered resource → effect map of the user's policies.
Permissions = dict[str, dict[str, str]]

ALLOW = "allow"
DENY = "deny"
RESOURCELESS = "*:*:*"
#: Objects with an id up to this one are Wazuh's defaults and cannot be changed.
MAX_RESERVED_ID = 99
#: The first id given to objects created through the API.
FIRST_USER_ID = 100

ADMINISTRATOR = 1

_ACTION = re.compile(r"[a-zA-Z_\-]+:[a-zA-Z_\-]+")
_RESOURCE = re.compile(r"[a-zA-Z_\-*]+:[\w\-*]+:[\w\-/.*]+")
#: How deep a security rule may nest before it is ignored (as Wazuh does).
MAX_RULE_DEPTH = 8
_REGEX_VALUE = re.compile(r"r'(.*)'\Z", re.DOTALL)

#: Every action, with the resource types a policy may name for it (``*:*`` = none).
ACTIONS: dict[str, tuple[str, ...]] = {
    "active-response:command": ("agent:id", "agent:group"),
    "agent:create": ("*:*",),
    "agent:read": ("agent:id", "agent:group"),
    "agent:delete": ("agent:id", "agent:group"),
    "agent:modify_group": ("agent:id", "agent:group"),
    "agent:upgrade": ("agent:id", "agent:group"),
    "agent:reconnect": ("agent:id", "agent:group"),
    "agent:restart": ("agent:id", "agent:group"),
    "agent:uninstall": ("*:*",),
    "group:create": ("*:*",),
    "group:read": ("group:id",),
    "group:update_config": ("group:id",),
    "group:delete": ("group:id",),
    "group:modify_assignments": ("group:id",),
    "ciscat:read": ("agent:id", "agent:group"),
    "cluster:read": ("node:id",),
    "cluster:update_config": ("node:id",),
    "cluster:read_api_config": ("*:*",),
    "cluster:restart": ("node:id",),
    "cluster:status": ("*:*",),
    "manager:read": ("*:*",),
    "manager:update_config": ("*:*",),
    "manager:read_api_config": ("*:*",),
    "manager:restart": ("*:*",),
    "mitre:read": ("*:*",),
    "decoders:read": ("decoder:file",),
    "decoders:update": ("*:*",),
    "decoders:delete": ("decoder:file",),
    "lists:read": ("list:file",),
    "lists:update": ("*:*",),
    "lists:delete": ("list:file",),
    "logtest:run": ("*:*",),
    "rootcheck:read": ("agent:id", "agent:group"),
    "rootcheck:clear": ("agent:id", "agent:group"),
    "rootcheck:run": ("agent:id", "agent:group"),
    "rules:read": ("rule:file",),
    "rules:update": ("*:*",),
    "rules:delete": ("rule:file",),
    "sca:read": ("agent:id", "agent:group"),
    "security:create": ("*:*",),
    "security:create_user": ("*:*",),
    "security:edit_run_as": ("*:*",),
    "security:read_config": ("*:*",),
    "security:update_config": ("*:*",),
    "security:revoke": ("*:*",),
    "security:read": ("policy:id", "role:id", "user:id", "rule:id"),
    "security:update": ("policy:id", "role:id", "user:id", "rule:id"),
    "security:delete": ("policy:id", "role:id", "user:id", "rule:id"),
    "syscheck:read": ("agent:id", "agent:group"),
    "syscheck:clear": ("agent:id", "agent:group"),
    "syscheck:run": ("agent:id", "agent:group"),
    "syscollector:read": ("agent:id", "agent:group"),
    "task:status": ("*:*",),
    "event:ingest": ("*:*",),
}

#: What each resource type names.
RESOURCES: dict[str, str] = {
    "*:*": "Actions on things that do not exist yet (resourceless)",
    "agent:group": "Agents named by a group they belong to (agent:group:web)",
    "agent:id": "Agents named by id (agent:id:001)",
    "group:id": "Agent groups named by name (group:id:default)",
    "node:id": "Cluster nodes named by name (node:id:worker1)",
    "decoder:file": "Decoder files named by file name",
    "list:file": "CDB list files named by file name",
    "rule:file": "Rule files named by file name",
    "policy:id": "Security policies named by id (policy:id:1)",
    "role:id": "Security roles named by id (role:id:1)",
    "rule:id": "Security rules named by id (rule:id:1)",
    "user:id": "API users named by id (user:id:100)",
}


@frozen
class DefaultPolicy:
    """One policy Wazuh ships: id, name and body (actions, resources, allow)."""

    id: int
    name: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]

    @property
    def body(self) -> dict[str, Any]:
        """The policy body."""
        return {"actions": list(self.actions), "resources": list(self.resources), "effect": ALLOW}


_AGENTS = ("agent:id:*", "agent:group:*")
_ANY_AGENT = ("agent:id:*",)
_SECURITY = ("role:id:*", "policy:id:*", "user:id:*", "rule:id:*")

#: Wazuh's default policies (ids as Wazuh numbers them; all allow).
DEFAULT_POLICIES: tuple[DefaultPolicy, ...] = (
    DefaultPolicy(
        1,
        "agents_all_resourceless",
        ("agent:create", "group:create", "agent:uninstall"),
        (RESOURCELESS,),
    ),
    DefaultPolicy(
        2,
        "agents_all_agents",
        (
            "agent:read",
            "agent:delete",
            "agent:modify_group",
            "agent:reconnect",
            "agent:restart",
            "agent:upgrade",
        ),
        _AGENTS,
    ),
    DefaultPolicy(
        3,
        "agents_all_groups",
        ("group:read", "group:delete", "group:update_config", "group:modify_assignments"),
        ("group:id:*",),
    ),
    DefaultPolicy(4, "agents_read_agents", ("agent:read",), _AGENTS),
    DefaultPolicy(5, "agents_read_groups", ("group:read",), ("group:id:*",)),
    DefaultPolicy(6, "agents_commands_agents", ("active-response:command",), _ANY_AGENT),
    DefaultPolicy(
        7,
        "security_all_resourceless",
        (
            "security:create",
            "security:create_user",
            "security:read_config",
            "security:update_config",
            "security:revoke",
            "security:edit_run_as",
        ),
        (RESOURCELESS,),
    ),
    DefaultPolicy(
        8,
        "security_all_security",
        ("security:read", "security:update", "security:delete"),
        _SECURITY,
    ),
    DefaultPolicy(
        9,
        "users_all_resourceless",
        ("security:create_user", "security:revoke", "security:edit_run_as"),
        (RESOURCELESS,),
    ),
    DefaultPolicy(
        10,
        "users_all_users",
        ("security:read", "security:update", "security:delete"),
        ("user:id:*",),
    ),
    DefaultPolicy(11, "users_modify_run_as_flag", ("security:edit_run_as",), (RESOURCELESS,)),
    DefaultPolicy(12, "ciscat_read_ciscat", ("ciscat:read",), _ANY_AGENT),
    DefaultPolicy(13, "decoders_read_decoders", ("decoders:read",), ("decoder:file:*",)),
    DefaultPolicy(
        14, "decoders_all_files", ("decoders:read", "decoders:delete"), ("decoder:file:*",)
    ),
    DefaultPolicy(15, "decoders_all_resourceless", ("decoders:update",), (RESOURCELESS,)),
    DefaultPolicy(16, "mitre_read_mitre", ("mitre:read",), (RESOURCELESS,)),
    DefaultPolicy(17, "lists_read_rules", ("lists:read",), ("list:file:*",)),
    DefaultPolicy(18, "lists_all_rules", ("lists:read", "lists:delete"), ("list:file:*",)),
    DefaultPolicy(19, "lists_all_resourceless", ("lists:update",), (RESOURCELESS,)),
    DefaultPolicy(20, "rootcheck_read_rootcheck", ("rootcheck:read",), _ANY_AGENT),
    DefaultPolicy(
        21,
        "rootcheck_all_rootcheck",
        ("rootcheck:clear", "rootcheck:read", "rootcheck:run"),
        _ANY_AGENT,
    ),
    DefaultPolicy(22, "rules_read_rules", ("rules:read",), ("rule:file:*",)),
    DefaultPolicy(23, "rules_all_files", ("rules:read", "rules:delete"), ("rule:file:*",)),
    DefaultPolicy(24, "rules_all_resourceless", ("rules:update",), (RESOURCELESS,)),
    DefaultPolicy(25, "sca_read_sca", ("sca:read",), _ANY_AGENT),
    DefaultPolicy(26, "syscheck_read_syscheck", ("syscheck:read",), _ANY_AGENT),
    DefaultPolicy(
        27,
        "syscheck_all_syscheck",
        ("syscheck:clear", "syscheck:read", "syscheck:run"),
        _ANY_AGENT,
    ),
    DefaultPolicy(28, "syscollector_read_syscollector", ("syscollector:read",), _ANY_AGENT),
    DefaultPolicy(
        29,
        "cluster_all_resourceless",
        (
            "cluster:status",
            "manager:read",
            "manager:read_api_config",
            "manager:update_config",
            "manager:restart",
        ),
        (RESOURCELESS,),
    ),
    DefaultPolicy(
        30,
        "cluster_all_nodes",
        ("cluster:read_api_config", "cluster:read", "cluster:restart", "cluster:update_config"),
        ("node:id:*",),
    ),
    DefaultPolicy(
        31,
        "cluster_read_resourceless",
        ("cluster:status", "manager:read", "manager:read_api_config"),
        (RESOURCELESS,),
    ),
    DefaultPolicy(
        32, "cluster_read_nodes", ("cluster:read_api_config", "cluster:read"), ("node:id:*",)
    ),
    DefaultPolicy(33, "logtest_all_logtest", ("logtest:run",), (RESOURCELESS,)),
    DefaultPolicy(34, "task_status_task", ("task:status",), (RESOURCELESS,)),
    DefaultPolicy(35, "events_ingest_resourceless", ("event:ingest",), (RESOURCELESS,)),
)

#: Wazuh's default roles: id, name and policy ids in level order.
DEFAULT_ROLES: tuple[tuple[int, str, tuple[int, ...]], ...] = (
    (
        1,
        "administrator",
        (1, 2, 3, 6, 7, 8, 29, 30, 12, 14, 15, 18, 19, 21, 23, 24, 16, 25, 27, 28, 33, 34, 35),
    ),
    (2, "readonly", (4, 5, 12, 31, 32, 13, 17, 20, 22, 16, 25, 26, 28)),
    (3, "users_admin", (9, 10)),
    (4, "agents_readonly", (4, 5)),
    (5, "agents_admin", (1, 2, 3)),
    (6, "cluster_readonly", (31, 32)),
    (7, "cluster_admin", (29, 30)),
)

#: Wazuh's default security rules (linked to administrator; used by dashboards' run_as).
DEFAULT_RULES: tuple[tuple[int, str, dict[str, Any]], ...] = (
    (1, "wui_elastic_admin", {"FIND": {"username": "elastic"}}),
    (2, "wui_opensearch_admin", {"FIND": {"user_name": "admin"}}),
)
DEFAULT_ROLE_RULES: tuple[tuple[int, int], ...] = ((1, 1), (1, 2))


class PolicyError(ValueError):
    """A policy body Wazuh refuses (its error 4006)."""


def normalize_policy(body: Any) -> dict[str, Any]:
    """A policy body checked and normalised as Wazuh stores it, or :class:`PolicyError`.

    Actions and effect are lower-cased; in each resource the type and attribute are
    lower-cased and the value keeps its case.
    """
    if not isinstance(body, Mapping) or set(body) != {"actions", "resources", "effect"}:
        raise PolicyError("a policy has exactly actions, resources and effect")
    actions, resources, effect = body["actions"], body["resources"], body["effect"]
    if not isinstance(actions, list) or not isinstance(resources, list):
        raise PolicyError("actions and resources are lists")
    if not isinstance(effect, str) or not actions or not resources:
        raise PolicyError("effect is a string; actions and resources are not empty")
    normal_actions = []
    for action in actions:
        if not isinstance(action, str) or _ACTION.fullmatch(action) is None:
            raise PolicyError(f"{str(action)[:64]!r} is not an action")
        normal_actions.append(action.lower())
    normal_resources = []
    for resource in resources:
        if not isinstance(resource, str):
            raise PolicyError("a resource is a string")
        pieces = []
        for piece in resource.split("&"):
            if _RESOURCE.fullmatch(piece) is None:
                raise PolicyError(f"{piece[:64]!r} is not a resource")
            kind, attribute, value = piece.split(":", 2)
            pieces.append(f"{kind.lower()}:{attribute.lower()}:{value}")
        normal_resources.append("&".join(pieces))
    return {"actions": normal_actions, "resources": normal_resources, "effect": effect.lower()}


def process_policies(policies: Iterable[Mapping[str, Any]]) -> Permissions:
    """Fold policy bodies, in order, into permissions (see module docstring)."""
    permissions: Permissions = {}
    for policy in policies:
        effect = str(policy.get("effect", DENY))
        for action in policy.get("actions", ()):
            entries = permissions.setdefault(str(action), {})
            for resource in policy.get("resources", ()):
                resource = str(resource)
                kind, _, rest = resource.partition(":")
                attribute, _, value = rest.partition(":")
                if value == "*" and "&" not in resource and resource != RESOURCELESS:
                    prefix = f"{kind}:{attribute}:"
                    covers_groups = kind == "agent"
                    for earlier in list(entries):
                        if "&" in earlier:
                            continue
                        if earlier.startswith(prefix) or (
                            covers_groups and earlier.startswith("agent:group:")
                        ):
                            del entries[earlier]
                entries.pop(resource, None)
                entries[resource] = effect
    return permissions


def resourceless_allowed(permissions: Permissions, action: str, mode: str = "white") -> bool:
    """Whether ``action`` on ``*:*:*`` is allowed (the last entry for it decides)."""
    decision = mode == "black"
    for resource, effect in permissions.get(action, {}).items():
        if resource == RESOURCELESS:
            decision = effect == ALLOW
    return decision


def _same_value(kind: str, held: str, wanted: str) -> bool:
    if kind == "agent:id" and held.isdigit() and wanted.isdigit():
        return int(held) == int(wanted)
    return held == wanted


def allowed_values(
    permissions: Permissions,
    action: str,
    kind: str,
    requested: Iterable[str],
    group_agents: Callable[[str], Iterable[str]] | None = None,
    mode: str = "white",
) -> set[str]:
    """The ``requested`` values of resource type ``kind`` that ``action`` may act on.

    ``group_agents(group)`` names the agents of a group (``*``: of any group), so
    ``agent:group:<g>`` entries can grant agent ids.
    """
    wanted = list(dict.fromkeys(requested))
    allowed: set[str] = set(wanted) if mode == "black" else set()
    for resource, effect in permissions.get(action, {}).items():
        if "&" in resource:
            continue
        entry_kind, _, value = resource.rpartition(":")
        if entry_kind == kind:
            covered = {v for v in wanted if value == "*" or _same_value(kind, value, v)}
        elif kind == "agent:id" and entry_kind == "agent:group" and group_agents is not None:
            members = set(group_agents(value))
            covered = {v for v in wanted if v in members}
        else:
            continue
        if effect == ALLOW:
            allowed |= covered
        else:
            allowed -= covered
    return allowed


def permitted(
    permissions: Permissions,
    action: str,
    kind: str,
    value: str,
    group_agents: Callable[[str], Iterable[str]] | None = None,
    mode: str = "white",
) -> bool:
    """Whether ``action`` may act on the one resource ``kind:value``."""
    return bool(allowed_values(permissions, action, kind, [value], group_agents, mode))


def role_policies(
    role_ids: Sequence[int], links: Mapping[int, Sequence[int]], bodies: Mapping[int, Any]
) -> list[Any]:
    """The policy bodies of ``role_ids``, role by role, each role's in level order."""
    found: list[Any] = []
    for role_id in role_ids:
        found.extend(bodies[pid] for pid in links.get(role_id, ()) if pid in bodies)
    return found


# --- security rules ------------------------------------------------------------------------


def _value_matches(rule_value: Any, held: Any) -> bool:
    if isinstance(rule_value, str):
        pattern = _REGEX_VALUE.match(rule_value)
        if pattern is not None:
            try:
                return isinstance(held, str) and re.search(pattern.group(1), held) is not None
            except re.error:
                return False
    return bool(rule_value == held)


def _fragment_in(fragment: Any, context: Any, exact: bool) -> bool:
    """Whether the rule ``fragment`` is found in ``context`` at this level."""
    if isinstance(fragment, Mapping):
        if not isinstance(context, Mapping):
            return False
        for key, wanted in fragment.items():
            keys = [key] if key in context else []
            pattern = _REGEX_VALUE.match(key) if isinstance(key, str) else None
            if pattern is not None:
                try:
                    keys = [k for k in context if re.search(pattern.group(1), str(k))]
                except re.error:
                    keys = []
            if not any(_fragment_in(wanted, context[k], exact) for k in keys):
                return False
        return True
    if isinstance(fragment, list):
        if not isinstance(context, list):
            return False
        if exact and len(fragment) != len(context):
            return False
        return all(any(_fragment_in(item, held, exact) for held in context) for item in fragment)
    if isinstance(context, list) and not exact:
        return any(_value_matches(fragment, held) for held in context)
    return _value_matches(fragment, context)


def _find(fragment: Any, context: Any, exact: bool) -> bool:
    if _fragment_in(fragment, context, exact):
        return True
    if isinstance(context, Mapping):
        return any(_find(fragment, value, exact) for value in context.values())
    if isinstance(context, list):
        return any(_find(fragment, value, exact) for value in context)
    return False


def _rule(rule: Any, context: Any, depth: int) -> bool:
    if depth > MAX_RULE_DEPTH:
        raise RecursionError("security rule nested too deep")
    if not isinstance(rule, Mapping) or len(rule) != 1:
        return False
    ((operator, operand),) = rule.items()
    if operator in ("AND", "OR", "NOT"):
        parts = operand if isinstance(operand, list) else [operand]
        results = [_rule(part, context, depth + 1) for part in parts]
        if operator == "AND":
            return all(results)
        if operator == "OR":
            return any(results)
        return not all(results)
    if operator in ("MATCH", "MATCH$"):
        return _fragment_in(operand, context, operator.endswith("$"))
    if operator in ("FIND", "FIND$"):
        return _find(operand, context, operator.endswith("$"))
    return False


def rule_matches(rule: Any, context: Any) -> bool:
    """Whether security ``rule`` matches the authorization ``context`` (too deep: no)."""
    try:
        return _rule(rule, context, 0)
    except RecursionError:
        return False


def valid_rule(rule: Any) -> bool:
    """Whether ``rule`` is a rule body Wazuh accepts (an object; otherwise error 4003)."""
    return isinstance(rule, Mapping) and bool(rule)

"""A parsed ``q`` over agents, and a caller's rights on agents, as registry filters, so
the registry tests them in SQL.

:func:`registry_filter` translates the API's expression tree
(:mod:`wazuhcluster.api.query`) into :mod:`wazuhcluster.registry.agent_query`'s, or
answers None when the ``q`` names a field the registry does not hold (the caller then
filters the agent views in memory); :func:`registry_scope` does the same for the
``agent:id`` and ``agent:group`` permission entries of an action.
"""

from __future__ import annotations

from wazuhcluster.api import rbac
from wazuhcluster.api.access import Access, group_members
from wazuhcluster.api.query import Condition, DateCondition, Expression, Junction
from wazuhcluster.registry.agent_query import (
    DATE_FIELDS,
    FIELDS,
    MAX_GRANTS,
    AgentFilter,
    AgentScope,
    AllOrAny,
    Grant,
    MomentTest,
    TextTest,
)


def registry_filter(expression: Expression) -> AgentFilter | None:
    """The registry filter equal to ``expression`` on registered agents, or None."""
    if isinstance(expression, Junction):
        parts = [registry_filter(part) for part in expression.parts]
        if any(part is None for part in parts):
            return None
        return AllOrAny(expression.all_of, tuple(part for part in parts if part is not None))
    if expression.field not in FIELDS:
        return None
    if isinstance(expression, DateCondition):
        if expression.field not in DATE_FIELDS:
            return None
        return MomentTest(
            expression.field, expression.operator, expression.moment, expression.elapsed
        )
    assert isinstance(expression, Condition)
    return TextTest(expression.field, expression.operator, expression.value)


def registry_scope(access: Access, action: str) -> AgentScope | None:
    """The agents ``action`` is allowed on for this caller, as a registry scope (the
    permission entries on ``agent:id`` and ``agent:group``, in order, as
    :func:`wazuhcluster.api.rbac.allowed_values` reads them), or None when they cannot
    be written as one (too many, or an id of digits that is not a number)."""
    grants: list[Grant] = []
    for resource, effect in access.permissions.get(action, {}).items():
        if "&" in resource:
            continue
        kind, _, value = resource.rpartition(":")
        if kind not in _KINDS:
            continue
        if kind == "agent:id" and value.isdigit() and not value.isascii():
            return None
        grants.append(Grant(effect == rbac.ALLOW, _KINDS[kind], value))
    if len(grants) > MAX_GRANTS:
        return None
    return AgentScope(access.mode == "black", tuple(grants))


def manager_allowed(access: Access, action: str) -> bool:
    """Whether ``action`` is allowed on agent 000 (in no group)."""
    return "000" in access.allowed(action, "agent:id", ["000"], group_members(()))


_KINDS = {"agent:id": "id", "agent:group": "group"}

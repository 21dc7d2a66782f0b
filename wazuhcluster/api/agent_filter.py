"""A parsed ``q`` over agents as a registry filter, so the registry tests it in SQL.

:func:`registry_filter` translates the API's expression tree
(:mod:`wazuhcluster.api.query`) into :mod:`wazuhcluster.registry.agent_query`'s, or
answers None when the ``q`` names a field the registry does not hold (the caller then
filters the agent views in memory).
"""

from __future__ import annotations

from wazuhcluster.api.query import Condition, DateCondition, Expression, Junction
from wazuhcluster.registry.agent_query import (
    DATE_FIELDS,
    FIELDS,
    AgentFilter,
    AllOrAny,
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

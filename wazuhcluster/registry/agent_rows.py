"""How the registry reads agents in SQL: the columns of an agent row, the row made an
:class:`~wazuhcluster.registry.model.Agent`, and the case-blind field tests of
``Registry.list_agents``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wazuhcluster.registry.agent_query import AgentFilter, AgentScope, scope_clause, where_clause
from wazuhcluster.registry.model import Agent, format_agent_id

#: An agent's columns, from agents joined with agent_times (a row missing there, e.g.
#: inserted by another tool, reads as never reported).
AGENT_COLUMNS = (
    "id, name, ip, key, register_time, connection_status, last_keepalive, "
    "COALESCE(disconnection_time, 0), version, os_name, os_version, os_platform, os_arch, "
    "os_uname, labels, config_sum, merged_sum, node_name, COALESCE(status_time, 0), "
    "COALESCE(status_seq, 0), os_major, os_minor, os_build, os_codename, agent_ip"
)
AGENTS_JOINED = "agents LEFT JOIN agent_times USING (id)"


#: The agent fields ``list_agents(same_text=...)`` can test, by the API's names.
TEXT_FIELDS = {
    "status": "connection_status",
    "name": "name",
    "node_name": "node_name",
    "version": "version",
    "os.platform": "os_platform",
    "os.name": "os_name",
    "os.version": "os_version",
    "group": "group_name",
}


def text_clauses(
    same_text: Sequence[tuple[str, str]],
    where: AgentFilter | None = None,
    scope: AgentScope | None = None,
) -> tuple[list[str], list[Any]]:
    """SQL tests, ignoring ASCII case, of (field, value) pairs on :data:`TEXT_FIELDS`,
    and the SQL of the ``where`` filter and of the ``scope``."""
    clauses: list[str] = []
    params: list[Any] = []
    if scope is not None:
        sql, values = scope_clause(scope)
        clauses.append(sql)
        params.extend(values)
    if where is not None:
        sql, values = where_clause(where)
        clauses.append(sql)
        params.extend(values)
    for field_name, value in same_text:
        column = TEXT_FIELDS[field_name]
        if column == "group_name":
            clauses.append(
                "id IN (SELECT agent_id FROM memberships WHERE group_name = ? COLLATE NOCASE)"
            )
        else:
            clauses.append(f"{column} = ? COLLATE NOCASE")
        params.append(value)
    return clauses, params


def agent_from_row(row: tuple[Any, ...], groups: tuple[str, ...]) -> Agent:
    """Build an :class:`Agent` from a row of ``AGENT_COLUMNS``."""
    labels = json.loads(row[14]) if row[14] else {}
    return Agent(
        id=format_agent_id(row[0]),
        name=row[1],
        ip=row[2],
        key=row[3],
        register_time=row[4],
        groups=groups,
        connection_status=row[5],
        last_keepalive=row[6],
        disconnection_time=row[7],
        version=row[8],
        os_name=row[9],
        os_version=row[10],
        os_platform=row[11],
        os_arch=row[12],
        os_uname=row[13],
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        config_sum=row[15],
        merged_sum=row[16],
        node_name=row[17],
        status_time=row[18],
        status_seq=row[19],
        os_major=row[20],
        os_minor=row[21],
        os_build=row[22],
        os_codename=row[23],
        agent_ip=row[24],
    )

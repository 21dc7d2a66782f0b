"""Questions to an agent itself: its active configuration
(``GET /agents/{agent_id}/config/{component}/{configuration}``) and its components'
statistics (``GET /agents/{agent_id}/stats/{component}``), and the counters the node it
reports to keeps about it (``GET /agents/{agent_id}/daemons/stats``, node question
``agents_daemons_stats``).

As Wazuh's remoted does, the node the agent is connected to sends it ``#!-req <counter>
<component> getconfig <configuration>`` (or ``<component> getstate``) and hands back its
answer (:mod:`wazuhcluster.agents.requests`); the master asks that node over the cluster
link (node question ``agent_request``), bounded in time and size. Agent 000's
configuration is the master's own active configuration.

Wazuh's rules: the configuration needs an active agent (1740) of version 3.7.0 or later
(1735); the statistics need version 4.2.0 or later (1735) and fail per agent (1701 unknown,
1310 for the agent component of 000, 1117 when the agent cannot be reached). An ``err``
answer of the agent is 1116 (1117 when the component cannot be reached).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.access import group_members
from wazuhcluster.api.agent_listing import normal_id
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.api.manager_endpoints import COMPONENTS, CONFIGURATIONS
from wazuhcluster.api.replies import Reply, add_failure, envelope
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.registry.model import Agent

#: The oldest agent that answers ``getconfig`` (Wazuh's ``ACTIVE_CONFIG_VERSION``).
CONFIG_VERSION = (3, 7, 0)
#: The oldest agent that answers ``getstate``, by component.
STATS_VERSIONS = {"logcollector": (4, 2, 0), "agent": (4, 2, 0)}
#: The agent's state times, as it writes them and as the API shows them.
_AGENT_TIME = "%Y-%m-%d %H:%M:%S"
_API_TIME = "%Y-%m-%dT%H:%M:%SZ"
_STATS_MESSAGES = (
    "Statistical information for each agent was successfully read",
    "Could not read statistical information for some agents",
    "Could not read statistical information for any agent",
)

#: The daemons ``/agents/{agent_id}/daemons/stats`` reads, in Wazuh's order.
AGENT_STATS_DAEMONS = ("wazuh-remoted", "wazuh-analysisd")
_DAEMON_MESSAGES = (
    "Statistical information for each daemon was successfully read",
    "Could not read statistical information for some daemons",
    "Could not read statistical information for any daemon",
)

_VERSION = re.compile(r"(?:Wazuh )?v?(\d+)\.(\d+)(?:\.(\d+))?")


def version_tuple(text: str) -> tuple[int, int, int] | None:
    """``"Wazuh v4.14.7"`` → (4, 14, 7); None when the text holds no version."""
    found = _VERSION.match(text.strip())
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def _version_text(version: tuple[int, int, int]) -> str:
    return "v" + ".".join(str(part) for part in version)


def config_data(answer: str, component: str, configuration: str) -> Any:
    """The JSON of an agent's ``ok {json}`` answer to ``getconfig``; its ``err`` answer
    raises 1117 (component unreachable) or 1116 (anything else), as Wazuh maps them."""
    status, _, rest = answer.partition(" ")
    if status == "ok":
        try:
            return json.loads(rest)
        except ValueError:
            pass
    where = f"{component}:{configuration}"
    if "No such file or directory" in rest or "Cannot send request" in rest:
        raise wazuh_error(1117, where)
    raise wazuh_error(1116, where)


def _api_time(value: Any) -> Any:
    """``2024-01-02 03:04:05`` → ``2024-01-02T03:04:05Z``; anything else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return time.strftime(_API_TIME, time.strptime(value, _AGENT_TIME))
    except ValueError:
        return value


def stats_data(answer: str) -> dict[str, Any]:
    """The ``data`` of an agent's ``getstate`` answer (``{"error": 0, "data": {...}}``);
    an error answer, or one that is not such JSON, raises 1117 with its message."""
    try:
        state = json.loads(answer)
    except ValueError:
        raise wazuh_error(1117, answer[:200]) from None
    if not isinstance(state, dict) or not isinstance(state.get("data"), dict):
        raise wazuh_error(1117, answer[:200])
    if state.get("error", 0) != 0:
        raise wazuh_error(1117, str(state.get("message", ""))[:200])
    data: dict[str, Any] = state["data"]
    for key in ("last_keepalive", "last_ack"):
        if key in data:
            data[key] = _api_time(data[key])
    return data


class AgentQuestionEndpoints:
    """An agent's active configuration and component statistics (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    async def _agent(self, call: Call) -> tuple[str, Agent | None]:
        """The path's agent id and record (None for 000 or an unknown id); 403 without
        ``agent:read`` on it."""
        agent_id = normal_id(call.path["agent_id"])
        agent = None if agent_id == "000" else await self.context.registry.get_agent(agent_id)
        groups = [(agent.id, agent.groups)] if agent is not None else []
        call.access.require_one("agent:read", "agent:id", agent_id, group_members(groups))
        return agent_id, agent

    async def _ask(self, agent: Agent, payload: str) -> str:
        """The agent's answer to ``payload``, through the node it is connected to."""
        if not agent.node_name:
            raise wazuh_error(1117, f"agent {agent.id} is not connected to any node")
        try:
            reply = await self.context.node.ask_node(
                agent.node_name, "agent_request", {"agent_id": agent.id, "payload": payload}
            )
        except ApiError as error:
            if error.code == 1730:
                raise wazuh_error(1117, f"node {agent.node_name} is not connected") from None
            raise
        answer = reply.get("answer")
        if not isinstance(answer, str):
            raise wazuh_error(1117, "the node gave no answer")
        return answer

    async def config(self, call: Call) -> Reply:
        """GET /agents/{agent_id}/config/{component}/{configuration}."""
        agent_id, agent = await self._agent(call)
        component = call.path["component"]
        configuration = call.path["configuration"]
        if agent_id == "000":
            master = self.context.node.config.cluster.node_name
            own = await self.context.node.ask_node(
                master,
                "active_configuration",
                {"component": component, "configuration": configuration},
            )
            if "error" in own:
                raise wazuh_error(int(own["error"]))
            return Reply({"data": own.get("item", {}), "error": 0})
        if agent is None:
            raise wazuh_error(1701, agent_id)
        if agent.connection_status != "active":
            raise wazuh_error(1740)
        version = version_tuple(agent.version) if agent.version else None
        if version is None or version < CONFIG_VERSION:
            raise wazuh_error(
                1735, f"Minimum required version is Wazuh {_version_text(CONFIG_VERSION)}"
            )
        answer = await self._ask(agent, f"{component} getconfig {configuration}")
        return Reply({"data": config_data(answer, component, configuration), "error": 0})

    async def stats(self, call: Call) -> Reply:
        """GET /agents/{agent_id}/stats/{component}."""
        agent_id, agent = await self._agent(call)
        component = call.path["component"]
        failed: dict[int, list[str]] = {}
        items: list[dict[str, Any]] = []
        if agent_id == "000":
            # The manager runs no agent daemon and this master no logcollector.
            add_failure(failed, 1310 if component == "agent" else 1117, agent_id)
        elif agent is None:
            add_failure(failed, 1701, agent_id)
        else:
            try:
                items.append(await self._agent_stats(agent, component))
            except ApiError as error:
                add_failure(failed, error.code or 1117, agent_id)
        return Reply(envelope(items, failed, *_STATS_MESSAGES))

    async def _agent_stats(self, agent: Agent, component: str) -> dict[str, Any]:
        required = STATS_VERSIONS[component]
        version = version_tuple(agent.version) if agent.version else None
        if version is None:
            raise wazuh_error(1015)
        if version < required:
            raise wazuh_error(1735, f"Minimum required version is {_version_text(required)}")
        return stats_data(await self._ask(agent, f"{component} getstate"))

    async def daemons_stats(self, call: Call) -> Reply:
        """GET /agents/{agent_id}/daemons/stats: remoted's and analysisd's counters for the
        agent, asked of the node it reports to (the master for one that never connected)."""
        agent_id, agent = await self._agent(call)
        daemons = list(dict.fromkeys(call.params.get("daemons_list") or AGENT_STATS_DAEMONS))
        failed: dict[int, list[str]] = {}
        if agent is None and agent_id != "000":
            for name in daemons:
                add_failure(failed, 1701, name)
            return Reply(envelope([], failed, *_DAEMON_MESSAGES))
        master = self.context.node.config.cluster.node_name
        node = (agent.node_name if agent is not None else "") or master
        try:
            reply = await self.context.node.ask_node(
                node, "agents_daemons_stats", {"agent_id": agent_id, "daemons": daemons}
            )
        except ApiError as error:
            # A node that is not connected (1730) leaves the agent unreachable, as Wazuh says.
            code = 1117 if error.code in (None, 1730) else error.code
            for name in daemons:
                add_failure(failed, code, name)
            return Reply(envelope([], failed, *_DAEMON_MESSAGES))
        items = [
            {
                "timestamp": reply.get("timestamp"),
                "name": item.get("name"),
                "agents": [
                    {"uptime": item.get("uptime"), "id": int(agent_id), "metrics": item["metrics"]}
                ],
            }
            for item in reply.get("items", [])
            if isinstance(item, dict) and isinstance(item.get("metrics"), dict)
        ]
        for name in reply.get("failed", []):
            add_failure(failed, 1017, str(name))
        return Reply(envelope(items, failed, *_DAEMON_MESSAGES))

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        return [
            Route(
                "GET",
                "/agents/{agent_id}/config/{component}/{configuration}",
                self.config,
                common,
                {
                    "agent_id": p.agent_id,
                    "component": p.choice(*COMPONENTS),
                    "configuration": p.choice(*CONFIGURATIONS),
                },
                actions=("agent:read",),
            ),
            Route(
                "GET",
                "/agents/{agent_id}/stats/{component}",
                self.stats,
                common,
                {"agent_id": p.agent_id, "component": p.choice(*STATS_VERSIONS)},
                actions=("agent:read",),
            ),
            Route(
                "GET",
                "/agents/{agent_id}/daemons/stats",
                self.daemons_stats,
                {**common, "daemons_list": p.comma_list(p.choice(*AGENT_STATS_DAEMONS))},
                {"agent_id": p.agent_id},
                actions=("agent:read",),
            ),
        ]

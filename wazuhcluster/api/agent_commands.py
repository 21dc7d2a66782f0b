"""Commands sent to agents: restarts (``PUT /agents/restart``, ``/agents/{agent_id}/restart``,
``/agents/group/{group_id}/restart``, ``/agents/node/{node_id}/restart``) and active
responses (``PUT /active-response``).

As Wazuh's manager does, each becomes an execd message on the agent's channel
(``#!-execd ...``): JSON for agents from 4.2.0 on, the older text form for older ones. The
node sends it through the channel of the node the agent is connected to
(:meth:`IApiNode.send_to_agents`); only active agents are asked (others fail with 1707),
and an agent the message did not reach fails with 1707 too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.access import group_members
from wazuhcluster.api.agent_listing import named_agents, normal_id
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import bad_request, wazuh_error
from wazuhcluster.api.replies import Reply, add_failure, envelope
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.registry.model import Agent

EXECD = "#!-execd "
#: Agents from this version on take JSON execd messages (Wazuh's AR_LEGACY_VERSION).
JSON_FROM = (4, 2, 0)
#: The longest message an agent is sent (Wazuh's OS_MAXSTR).
MAX_MESSAGE = 6144
#: What follows a restart command on the agent's queue line.
RESTART_TAIL = " - null (from_the_server) (no_rule_id)"
_SHELL_SPECIAL = "\"'\t;`><|#*[]{}&$!:()"
_VERSION = re.compile(r"(?:Wazuh )?v?(\d+)\.(\d+)(?:\.(\d+))?")
_RESTARTED = (
    "Restart command was sent to all agents",
    "Restart command was not sent to some agents",
    "Restart command was not sent to any agent",
)


def agent_version(text: str | None) -> tuple[int, int, int]:
    """``"Wazuh v4.7.2"`` → (4, 7, 2); an unknown version counts as current (JSON)."""
    found = _VERSION.match(text or "")
    if found is None:
        return (99, 0, 0)
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def shell_escape(text: str) -> str:
    """An argument of the text form, its shell-special characters escaped."""
    return "".join("\\" + char if char in _SHELL_SPECIAL else char for char in text)


def restart_message(version: str | None) -> str:
    """The execd message that restarts an agent of ``version``."""
    if agent_version(version) < JSON_FROM:
        return EXECD + "restart-ossec0" + RESTART_TAIL
    body = {
        "version": 1,
        "origin": {"module": "API"},
        "command": "restart-wazuh0",
        "parameters": {"extra_args": [], "alert": {}},
    }
    return EXECD + json.dumps(body) + RESTART_TAIL


def ar_message(
    version: str | None,
    command: str,
    arguments: Sequence[str],
    alert: dict[str, Any],
    node: str | None,
) -> str:
    """The execd message of an active response for an agent of ``version``."""
    if agent_version(version) < JSON_FROM:
        tail = " ".join(shell_escape(str(arg)) for arg in arguments) if arguments else "- -"
        return f"{EXECD}{command} {tail}"
    body = {
        "version": 1,
        "origin": {"name": node, "module": "API"},
        "command": command,
        "parameters": {"extra_args": list(arguments), "alert": alert},
    }
    return EXECD + json.dumps(body)


def ar_commands(shared: Path) -> set[str]:
    """The commands ``etc/shared/ar.conf`` defines (``name - script - timeout`` lines)."""
    try:
        text = shared.joinpath("ar.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {line.split(" - ")[0].strip() for line in text.splitlines()[:10_000] if line.strip()}


class AgentCommandEndpoints:
    """Restarts and active responses (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    async def _send(
        self,
        chosen: Iterable[Agent],
        message_of: Callable[[Agent], str],
        failed: dict[int, list[str]],
    ) -> list[str]:
        """Send each active agent of ``chosen`` its message (``message_of(agent)``); the
        ids reached. Inactive or unreached agents fail with 1707."""
        by_message: dict[str, list[str]] = {}
        for agent in chosen:
            if agent.connection_status != "active":
                add_failure(failed, 1707, agent.id)
                continue
            by_message.setdefault(message_of(agent), []).append(agent.id)
        reached: list[str] = []
        for message, ids in by_message.items():
            if len(message.encode("utf-8")) > MAX_MESSAGE:
                raise bad_request(f"the command is longer than {MAX_MESSAGE} bytes")
            sent = await self.context.node.send_to_agents(message, ids)
            done = {agent_id for node_ids in sent.values() for agent_id in node_ids}
            for agent_id in ids:
                if agent_id in done:
                    reached.append(agent_id)
                else:
                    add_failure(failed, 1707, agent_id)
        return sorted(reached, key=int)

    async def _chosen(
        self,
        call: Call,
        action: str,
        wanted: Sequence[str] | None,
        failed: dict[int, list[str]],
        agents: list[Agent] | None = None,
    ) -> tuple[list[Agent], bool]:
        """The agents of ``wanted`` (all when None) the caller may ``action``; unknown ids
        fail with 1701 and 000 with 1703. Also whether the list was explicit."""
        everyone = await self.context.registry.list_agents()
        pool = everyone if agents is None else agents
        members = group_members((agent.id, agent.groups) for agent in everyone)
        by_id = {agent.id: agent for agent in pool}
        explicit = wanted is not None
        ids = [normal_id(i) for i in wanted] if wanted is not None else sorted(by_id, key=int)
        kept = call.access.select(action, "agent:id", ids, failed, explicit, members)
        return named_agents(kept, by_id, failed), explicit

    async def _restart(
        self, call: Call, wanted: Sequence[str] | None, agents: list[Agent] | None = None
    ) -> Reply:
        failed: dict[int, list[str]] = {}
        chosen, explicit = await self._chosen(call, "agent:restart", wanted, failed, agents)
        reached = await self._send(chosen, lambda agent: restart_message(agent.version), failed)
        if not explicit:
            # As Wazuh: with no list, agents that could not be restarted are left out.
            failed = {code: ids for code, ids in failed.items() if code not in (1701, 1703, 1707)}
        if reached:
            self.context.log.info(
                "Restart sent through the API to agents {ids}", ids=", ".join(reached)
            )
        return Reply(envelope(reached, failed, *_RESTARTED))

    async def restart_agents(self, call: Call) -> Reply:
        """PUT /agents/restart: restart the listed agents (every agent by default)."""
        return await self._restart(call, call.params.get("agents_list"))

    async def restart_agent(self, call: Call) -> Reply:
        """PUT /agents/{agent_id}/restart."""
        return await self._restart(call, [call.path["agent_id"]])

    async def restart_group(self, call: Call) -> Reply:
        """PUT /agents/group/{group_id}/restart: restart the agents of a group."""
        group = call.path["group_id"]
        call.access.require_one("group:read", "group:id", group)
        await self.context.require_group(group)
        agents = [a for a in await self.context.registry.list_agents() if group in a.groups]
        return await self._restart(call, None, agents)

    async def restart_node(self, call: Call) -> Reply:
        """PUT /agents/node/{node_id}/restart: restart the agents reporting to a node."""
        node = call.path["node_id"]
        call.access.require_one("cluster:read", "node:id", node)
        agents = [a for a in await self.context.registry.list_agents() if a.node_name == node]
        return await self._restart(call, None, agents)

    async def active_response(self, call: Call) -> Reply:
        """PUT /active-response: run an active-response command on the listed agents (every
        agent by default; 000 is left out, as Wazuh does)."""
        fields = {
            "command": (str, True, 1024),
            "arguments": (list, False, 0),
            "alert": (dict, False, 0),
        }
        body = p.check_body(call.body, fields)
        command: str = body["command"]
        arguments = body.get("arguments", [])
        if not all(isinstance(arg, str) for arg in arguments):
            raise bad_request("'arguments' must be a list of strings")
        alert: dict[str, Any] = body.get("alert", {})
        if not command:
            raise wazuh_error(1650)
        if not command.startswith("!"):
            known = await self.context.run_in_thread(ar_commands, self.context.shared)
            if command not in known:
                raise wazuh_error(1652, command[:64])
        wanted = call.params.get("agents_list")
        failed: dict[int, list[str]] = {}
        if wanted is not None:
            wanted = [i for i in wanted if normal_id(i) != "000"]
        chosen, _ = await self._chosen(call, "active-response:command", wanted, failed)
        cluster = self.context.node.config.cluster
        node = None if cluster.disabled else cluster.node_name
        reached = await self._send(
            chosen,
            lambda agent: ar_message(agent.version, command, arguments, alert, node),
            failed,
        )
        if reached:
            self.context.log.info(
                "Active response {command} sent through the API to agents {ids}",
                command=command,
                ids=", ".join(reached),
            )
        msgs = (
            "AR command was sent to all agents",
            "AR command was not sent to some agents",
            "AR command was not sent to any agent",
        )
        return Reply(envelope(reached, failed, *msgs))

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        agents = {"agents_list": p.comma_list(p.agent_id)}
        restart = ("agent:restart",)
        return [
            Route(
                "PUT",
                "/agents/restart",
                self.restart_agents,
                {**common, **agents},
                actions=restart,
            ),
            Route(
                "PUT",
                "/agents/{agent_id}/restart",
                self.restart_agent,
                common,
                {"agent_id": p.agent_id},
                actions=restart,
            ),
            Route(
                "PUT",
                "/agents/group/{group_id}/restart",
                self.restart_group,
                common,
                {"group_id": p.group_name},
                actions=restart,
            ),
            Route(
                "PUT",
                "/agents/node/{node_id}/restart",
                self.restart_node,
                common,
                {"node_id": p.names},
                actions=("cluster:read", "agent:restart"),
            ),
            Route(
                "PUT",
                "/active-response",
                self.active_response,
                {**common, **agents},
                body="json",
                actions=("active-response:command",),
            ),
        ]

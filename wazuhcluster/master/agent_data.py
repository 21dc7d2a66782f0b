"""Asking the node an agent reports to about its stored data (the master's side).

Like Wazuh's distributed API: an agent's FIM entries, SCA results, rootcheck findings and
inventory live only on the node that analyses its events, which the master knows from the
agent-info reports (the registry's ``node_name``). :meth:`MasterAgentData.ask` answers a
request of :mod:`wazuhcluster.api.agent_data` from the master's own databases when the
agent reports to the master (or has never reported), else sends it to that worker with
:class:`~wazuhcluster.wire.agent_data.GetAgentData` and waits at most :attr:`timeout`
seconds. Only the node the agent reports to now is asked; and every
:data:`MOVES_INTERVAL` seconds the master compares where agents report with what it saw last
time and tells each node an agent left to empty that agent's state
(:class:`~wazuhcluster.wire.agent_data.ForgetAgentData`), so a copy from an earlier stay is
never served should the agent come back before it resynchronised. :meth:`send_command`
sends agents a command (a scan now) through the node each is connected to
(:class:`~wazuhcluster.wire.agents.SendToAgents`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wazuhcluster.agents.control import CONTROL_HEADER
from wazuhcluster.agents.interfaces import IAgentChannel
from wazuhcluster.analysis.state_reader import KINDS
from wazuhcluster.analysis.state_store import forget_agents
from wazuhcluster.api.agent_data import AgentDataUnavailable, answer_locally
from wazuhcluster.api.interfaces import IAgentDataAsker
from wazuhcluster.master.workers import WorkerDirectory, WorkerLink
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import PeriodicTask
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire.agent_data import ForgetAgentData, GetAgentData
from wazuhcluster.wire.agents import MAX_SEND_IDS, SendToAgents
from wazuhcluster.wire.commands import ControlError
from wazuhcluster.wire.features import LinkFeature

#: The commands the API may send agents through :meth:`MasterAgentData.send_command`
#: (``#!-syscheck restart``: run a FIM and rootcheck scan now, as Wazuh's API asks).
AGENT_COMMANDS = frozenset(("syscheck restart",))
#: Seconds a worker has to answer.
TIMEOUT = 30.0
#: Bytes of items one control answer carries (the control socket's AMP values stay < 64 KiB).
CONTROL_PAGE_BYTES = 48_000

#: Seconds between two looks for agents that moved to another node.
MOVES_INTERVAL = 60.0
#: Every agent's node (``id`` → ``node_name``), from the registry.
AgentNodes = Callable[[], Awaitable[dict[str, str]]]

#: Where an agent reports: its ``node_name``, ``""`` when it never reported, None when the
#: agent does not exist.
Locate = Callable[[str], Awaitable[str | None]]


@implementer(IAgentDataAsker)
class MasterAgentData(LinkFeature[WorkerLink]):
    """Answers agent-data requests wherever the data is (see module docstring)."""

    def __init__(
        self,
        node_name: str,
        workers: WorkerDirectory,
        state_dir: Path,
        clock: IReactorTime,
        run_in_thread: RunInThread = run_in_reactor_pool,
        timeout: float = TIMEOUT,
        locate: Locate | None = None,
        agent_nodes: AgentNodes | None = None,
        local_channel: IAgentChannel | None = None,
    ) -> None:
        self.node_name = node_name
        self.workers = workers
        self.state_dir = state_dir
        self.clock = clock
        self.run_in_thread = run_in_thread
        self.timeout = timeout
        self.locate = locate
        self.agent_nodes = agent_nodes
        self.local_channel = local_channel
        #: Where each agent reported at the last look (None before the first).
        self.seen: dict[str, str] | None = None
        self.log = ClusterLog("Master", "Agent data")

    async def ask(self, node_name: str, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to ``request`` from ``node_name`` (this master when empty)."""
        if not node_name or node_name in (self.node_name, "unknown"):
            answer: dict[str, Any] = await self.run_in_thread(
                answer_locally, self.state_dir, request
            )
            return answer
        link = self.workers.get(node_name)
        if link is None or link.protocol is None:
            raise AgentDataUnavailable(f"node {node_name} is not connected", 3022)
        call = link.protocol.callRemote(GetAgentData, request=request)
        call.addTimeout(self.timeout, self.clock)
        try:
            result = await call
        except Exception as error:
            self.log.warn(
                "Node {node} did not answer a request for agent data: {error}",
                node=node_name,
                error=repr(error),
            )
            code = 3020 if isinstance(error, defer.TimeoutError) else 1000
            raise AgentDataUnavailable(f"node {node_name} did not answer", code) from error
        found = json.loads(result["answer"])
        if not isinstance(found, dict):
            raise AgentDataUnavailable(f"node {node_name} answered nonsense")
        return found

    async def send_command(
        self, by_node: dict[str, list[str]], command: str
    ) -> tuple[list[str], dict[int, list[str]]]:
        """Send ``#!-<command>`` to agents, each through the node it reports to (``""``:
        this master). Returns the ids reached and, by Wazuh error code, those not: 1707
        for an agent not connected where it reports, 3022 or 3020 for a node that is not
        connected or did not answer."""
        if command not in AGENT_COMMANDS:
            raise ValueError(f"not a command for agents: {command[:32]!r}")
        sent: list[str] = []
        failed: dict[int, list[str]] = {}
        for node_name, agents in by_node.items():
            if not node_name or node_name in (self.node_name, "unknown"):
                channel = self.local_channel
                reached = channel.send_message(agents, CONTROL_HEADER + command) if channel else []
            else:
                try:
                    reached = await self._send_remote(node_name, agents, command)
                except AgentDataUnavailable as error:
                    failed.setdefault(error.code, []).extend(agents)
                    continue
            done = set(reached)
            sent.extend(agent for agent in agents if agent in done)
            missed = [agent for agent in agents if agent not in done]
            if missed:
                failed.setdefault(1707, []).extend(missed)
        return sorted(sent), failed

    async def _send_remote(self, node_name: str, agents: list[str], command: str) -> list[str]:
        link = self.workers.get(node_name)
        if link is None or link.protocol is None:
            raise AgentDataUnavailable(f"node {node_name} is not connected", 3022)
        reached: list[str] = []
        try:
            for start in range(0, len(agents), MAX_SEND_IDS):
                call = link.protocol.callRemote(
                    SendToAgents,
                    message=CONTROL_HEADER + command,
                    agents=agents[start : start + MAX_SEND_IDS],
                )
                call.addTimeout(self.timeout, self.clock)
                result = await call
                reached.extend(str(agent) for agent in result.get("sent") or [])
        except Exception as error:
            self.log.warn(
                "Node {node} did not send {command!r} to agents: {error}",
                node=node_name,
                command=command,
                error=repr(error),
            )
            code = 3020 if isinstance(error, defer.TimeoutError) else 1000
            raise AgentDataUnavailable(f"node {node_name} did not answer", code) from error
        return reached

    def services(self) -> Iterable[IService]:
        """The periodic look for agents that moved (when the registry is known)."""
        if self.agent_nodes is None:
            return ()
        return (
            PeriodicTask(
                "agent data moves",
                MOVES_INTERVAL,
                self.check_moves,
                self.clock,
                self.log,
                run_at_start=False,
            ),
        )

    async def check_moves(self) -> dict[str, list[str]]:
        """Tell every node that agents left since the last look to empty their state; the
        agents told, by node."""
        if self.agent_nodes is None:
            return {}
        now = await self.agent_nodes()
        before, self.seen = self.seen, now
        if before is None:
            return {}
        left: dict[str, list[str]] = {}
        for agent_id, node in before.items():
            current = now.get(agent_id)
            if node and node != "unknown" and current and current != node:
                left.setdefault(node, []).append(agent_id)
        told: dict[str, list[str]] = {}
        for node, agents in left.items():
            if node == self.node_name:
                await self.run_in_thread(forget_agents, self.state_dir, agents)
                told[node] = agents
                continue
            link = self.workers.get(node)
            if link is None:
                continue  # the worker will hear nothing: its copy stays until a resync
            call = link.protocol.callRemote(ForgetAgentData, agents=agents)
            call.addTimeout(self.timeout, self.clock)
            try:
                await call
            except Exception as error:
                self.log.warn(
                    "Could not tell {node} that {count} agents moved: {error}",
                    node=node,
                    count=len(agents),
                    error=repr(error),
                )
                continue
            told[node] = agents
        if told:
            self.log.info("Agents moved to other nodes; their old state emptied: {told}", told=told)
        return told

    async def control_page(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """``wazuh-cluster-control --agent-data``: one page of an agent's data, trimmed to
        what one control answer carries (the tool asks again from where it stopped); a
        request that cannot be served is a :class:`ControlError`."""
        try:
            return await self._control_page(arguments)
        except (ValueError, TypeError, AgentDataUnavailable) as error:
            raise ControlError(str(error)) from None

    async def _control_page(self, arguments: dict[str, Any]) -> dict[str, Any]:
        agent_id = str(arguments.get("agent_id", ""))
        kind = str(arguments.get("kind", ""))
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind[:32]!r}; one of {', '.join(KINDS)}")
        node_name = "" if agent_id == "000" else None
        if node_name is None and self.locate is not None:
            node_name = await self.locate(agent_id)
        if node_name is None:
            raise ValueError(f"agent {agent_id[:16]} does not exist")
        listing = {
            "offset": max(0, int(arguments.get("offset", 0))),
            "limit": min(500, max(1, int(arguments.get("limit", 100)))),
            "q": arguments.get("q") or None,
        }
        request: dict[str, Any] = {"agent_id": agent_id, "kind": kind, "listing": listing}
        if arguments.get("policy_id"):
            request["policy_id"] = str(arguments["policy_id"])
        answer = await self.ask(node_name, request)
        if isinstance(answer.get("error"), dict):
            raise ValueError(str(answer["error"].get("detail")))
        items = list(answer.get("items") or [])
        while len(items) > 1 and len(json.dumps(items)) > CONTROL_PAGE_BYTES:
            items = items[: len(items) // 2]
        return {"items": items, "total": int(answer.get("total") or 0), "node": node_name}

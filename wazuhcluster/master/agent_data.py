"""Asking the node an agent reports to about its stored data (the master's side).

Like Wazuh's distributed API: an agent's FIM entries, SCA results, rootcheck findings and
inventory live only on the node that analyses its events, which the master knows from the
agent-info reports (the registry's ``node_name``). :meth:`MasterAgentData.ask` answers a
request of :mod:`wazuhcluster.api.agent_data` from the master's own databases when the
agent reports to the master (or has never reported), else sends it to that worker with
:class:`~wazuhcluster.wire.agent_data.GetAgentData` and waits at most :attr:`timeout`
seconds. Only the node the agent reports to now is asked, so the copy a node kept from an
earlier stay is never served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime

from wazuhcluster.api.agent_data import answer_locally
from wazuhcluster.master.workers import WorkerDirectory, WorkerLink
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire.agent_data import GetAgentData
from wazuhcluster.wire.features import LinkFeature

#: Seconds a worker has to answer.
TIMEOUT = 30.0


class AgentDataUnavailable(Exception):
    """The node that holds an agent's data could not answer; ``str()`` says why."""


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
    ) -> None:
        self.node_name = node_name
        self.workers = workers
        self.state_dir = state_dir
        self.clock = clock
        self.run_in_thread = run_in_thread
        self.timeout = timeout
        self.log = ClusterLog("Master", "Agent data")

    async def ask(self, node_name: str, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to ``request`` from ``node_name`` (this master when empty)."""
        if not node_name or node_name in (self.node_name, "unknown"):
            answer: dict[str, Any] = await self.run_in_thread(
                answer_locally, self.state_dir, request
            )
            return answer
        link = self.workers.get(node_name)
        if link is None:
            raise AgentDataUnavailable(f"node {node_name} is not connected")
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
            raise AgentDataUnavailable(f"node {node_name} did not answer") from error
        found = json.loads(result["answer"])
        if not isinstance(found, dict):
            raise AgentDataUnavailable(f"node {node_name} answered nonsense")
        return found

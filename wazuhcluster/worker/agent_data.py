"""Answering the master's questions about the data of agents analysed on this worker.

:class:`~wazuhcluster.wire.agent_data.GetAgentData` carries a request of
:mod:`wazuhcluster.api.agent_data`; it is answered from this node's agent databases in a
thread (SQLite never runs on the reactor), one page at most;
:class:`~wazuhcluster.wire.agent_data.ForgetAgentData` empties the databases of agents that
moved to another node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols import amp

from wazuhcluster.analysis.state_store import forget_agents
from wazuhcluster.api.agent_data import answer_locally
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool
from wazuhcluster.wire.agent_data import MAX_ANSWER_BYTES, ForgetAgentData, GetAgentData
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.worker.link import MasterLink


def encoded_answer(state_dir: Path, request: Any) -> bytes:
    """The JSON answer to ``request``, or an error when it would be too big to send."""
    if not isinstance(request, dict):
        answer: dict[str, Any] = {"error": {"code": 1000, "detail": "not a request"}}
    else:
        answer = answer_locally(state_dir, request)
    data = json.dumps(answer, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_ANSWER_BYTES:
        detail = f"the page is {len(data)} bytes; ask for fewer items (limit)"
        data = json.dumps({"error": {"code": 1000, "detail": detail}}).encode("utf-8")
    return data


class WorkerAgentData(LinkFeature[MasterLink]):
    """Answers :class:`GetAgentData` and :class:`ForgetAgentData` from the master."""

    def __init__(self, state_dir: Path, run_in_thread: RunInThread = run_in_reactor_pool) -> None:
        self.state_dir = state_dir
        self.run_in_thread = run_in_thread

    def locator(self, link: MasterLink) -> amp.CommandLocator:
        """The responder of :class:`GetAgentData`."""
        return _AgentDataLocator(self)


class _AgentDataLocator(amp.CommandLocator):
    def __init__(self, feature: WorkerAgentData) -> None:
        self.feature = feature

    @GetAgentData.responder
    def get_agent_data(self, request: Any) -> Deferred[dict[str, Any]]:
        """Answer in a thread."""
        done: Deferred[bytes] = self.feature.run_in_thread(
            encoded_answer, self.feature.state_dir, request
        )
        return done.addCallback(lambda data: {"answer": data})

    @ForgetAgentData.responder
    def forget_agent_data(self, agents: Any) -> Deferred[dict[str, Any]]:
        """Empty the state of agents that report elsewhere now (in a thread)."""
        if not isinstance(agents, list):
            agents = []
        ids = [str(agent) for agent in agents][:100_000]
        done: Deferred[int] = self.feature.run_in_thread(forget_agents, self.feature.state_dir, ids)
        return done.addCallback(lambda count: {"forgotten": count})

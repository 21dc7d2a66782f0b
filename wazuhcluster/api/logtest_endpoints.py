"""The Logtest family: ``PUT /logtest`` and ``DELETE /logtest/sessions/{token}``.

As Wazuh's logtest endpoint (the dashboards' ruleset test page): an event is analysed
against the master's ruleset and the answer carries the alert record (``output``),
whether it would alert, and a session ``token``. A session keeps its correlation state
(frequency counters, histories) between calls with the same token; at most
:data:`MAX_SESSIONS` live at once (the least recently used goes first) and one unused
for :data:`SESSION_TIMEOUT` seconds is closed. The engine is loaded in a thread from
the master's ruleset and loaded again after a ruleset file changes through the API.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Any

from attrs import define, field

from wazuhcluster.analysis.agentstate import MemoryState
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import RulesetError, load_engine
from wazuhcluster.analysis.rules import RuleState
from wazuhcluster.api import params as p
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import wazuh_error
from wazuhcluster.api.replies import Reply
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.ruleset_files import RulesetFiles

#: Sessions kept at once (Wazuh's default max_sessions).
MAX_SESSIONS = 64
#: Seconds an unused session lives (Wazuh's default session_timeout).
SESSION_TIMEOUT = 900.0
#: The largest event accepted.
MAX_EVENT = 64 * 1024


@define
class Session:
    """One logtest session's correlation state."""

    state: RuleState = field(factory=RuleState)
    agent_state: MemoryState = field(factory=MemoryState)
    used: float = 0.0


class LogtestEndpoints:
    """``/logtest`` (see module docstring)."""

    def __init__(self, context: EndpointContext, files: RulesetFiles) -> None:
        self.context = context
        self.files = files
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self._engine: Engine | None = None
        self._generation = -1
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for token in [t for t, s in self.sessions.items() if now - s.used > SESSION_TIMEOUT]:
            del self.sessions[token]

    def _load(self) -> Engine:
        cluster = self.context.node.config.cluster
        identity = Identity(
            manager_name=cluster.node_name,
            cluster_name=cluster.name,
            cluster_node=cluster.node_name,
        )
        return load_engine(str(self.files.root), self.files.settings, identity)

    def _analyse(self, session: Session, event: Event) -> dict[str, Any]:
        with self._lock:
            if self._engine is None or self._generation != self.files.generation:
                generation = self.files.generation
                self._engine = self._load()
                self._generation = generation
            engine = self._engine
            engine.state, engine.agent_state = session.state, session.agent_state
            verdict = engine.analyse(event)
            return {"output": verdict.output, "alert": verdict.alert}

    async def run(self, call: Call) -> Reply:
        """PUT /logtest: analyse one event in a (new or existing) session."""
        call.access.require("logtest:run")
        body = p.check_body(
            call.body,
            {
                "token": (str, False, 64),
                "log_format": (str, True, 64),
                "location": (str, True, 4096),
                "event": (str, True, MAX_EVENT),
            },
        )
        now = self.context.now()
        self._expire(now)
        messages: list[str] = []
        asked: str = body.get("token") or ""
        session = self.sessions.get(asked) if asked else None
        token = asked
        if session is None:
            if asked:
                messages.append(f"WARNING: (7003): '{asked}' token expires")
            token = secrets.token_hex(4)
            while len(self.sessions) >= MAX_SESSIONS:
                self.sessions.popitem(last=False)
            session = self.sessions[token] = Session(used=now)
            messages.append(f"INFO: (7202): Session initialized with token '{token}'")
        self.sessions.move_to_end(token)
        session.used = now
        event = Event(body["event"], location=body["location"])
        try:
            result = await self.context.run_in_thread(self._analyse, session, event)
        except RulesetError as error:
            raise wazuh_error(7000, f"the ruleset does not load: {error}") from None
        data = {
            "messages": messages,
            "token": token,
            "output": result["output"],
            "alert": result["alert"],
            "codemsg": 1 if messages else 0,
        }
        return Reply({"error": 0, "data": data})

    async def end(self, call: Call) -> Reply:
        """DELETE /logtest/sessions/{token}: close a session."""
        call.access.require("logtest:run")
        token = call.path["token"]
        self._expire(self.context.now())
        if self.sessions.pop(token, None) is None:
            raise wazuh_error(7001, token)
        message = f"INFO: (7206): The session '{token}' was closed successfully"
        return Reply({"error": 0, "data": {"messages": [message], "codemsg": 0}})

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        return [
            Route("PUT", "/logtest", self.run, common, body="json", actions=("logtest:run",)),
            Route(
                "DELETE",
                "/logtest/sessions/{token}",
                self.end,
                common,
                {"token": p.names},
                actions=("logtest:run",),
            ),
        ]

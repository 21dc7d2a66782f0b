"""Helpers for the API tests: a master node, a real registry and the API resource in memory.

No test case lives here. :class:`ApiHarness` builds a real :class:`MasterNode` on a
``task.Clock``, a real SQLite registry in a temporary home run synchronously, and the
API resource; :meth:`ApiHarness.call` sends one request through twisted.web's
``DummyRequest`` and returns the status, headers and decoded body.

The node has what a real master gives it: an analysis service (not started: its intake
numbers and reload, run inline) and the agent-data reader that asks the node an agent
reports to. A connected worker (:meth:`ApiHarness.connect_worker`) answers over its link
as a worker does: node questions from its own answers, agent data from its own state folder
(:class:`WorkerStandIn`).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import attrs
from attrs import define, frozen
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.helpers import write_config
from wazuhcluster.agents.agent_counters import AgentCounters
from wazuhcluster.agents.channel import ChannelStats
from wazuhcluster.agents.channel import remoted_numbers as channel_numbers
from wazuhcluster.analysis.state_store import forget_agents
from wazuhcluster.api import rbac
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.service import build_site
from wazuhcluster.api.users import User, hash_password, write_users
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.api_settings import ApiSettings, parse_api
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.config.xmlconfig import Section
from wazuhcluster.master.agent_data import MasterAgentData
from wazuhcluster.master.node import MasterNode
from wazuhcluster.master.workers import WorkerLink
from wazuhcluster.node.analysis_service import AnalysisService, node_identity
from wazuhcluster.node.answers import NodeAnswers
from wazuhcluster.registry import AsyncRegistry, Registry, RegistryFiles, synchronous_runner
from wazuhcluster.registry.model import AgentInfoReport
from wazuhcluster.testing.agent_answers import AgentFacts, answer_request
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire.agent_data import ForgetAgentData, GetAgentData
from wazuhcluster.wire.agents import SendToAgents
from wazuhcluster.wire.features import FeatureSet, LinkFeature
from wazuhcluster.wire.questions import AskNode
from wazuhcluster.worker.agent_data import encoded_answer
from wazuhcluster.worker.node import WORKER_DAEMONS
from wazuhcluster.worker.questions import WorkerQuestions

START = 1_760_000_000.0
USER = "wazuh-ops"
PASSWORD = "correct horse battery"
#: A password the API's strength rules accept, for users the tests create.
STRONG = "Str0ng-Passw0rd!"
#: Wazuh's default roles by name.
ROLE_IDS = {name: role_id for role_id, name, _ in rbac.DEFAULT_ROLES}


def cheap_users(path: Path, users: Mapping[str, str], changed: float = 0.0) -> None:
    """Write a users file with low-cost hashes (fast tests; the format is the same)."""
    write_users(
        path,
        {
            name: User(name, hash_password(password, n=2**8), changed)
            for name, password in users.items()
        },
    )


@define
class FakeIntegrity(LinkFeature):
    """A feature whose health report per worker is set by the test."""

    reports: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def health(self, link: Any) -> Mapping[str, Any]:
        """The report the test set for this worker."""
        return self.reports.get(link.name, {})


def analysis_of(config: NodeConfig, clock: task.Clock, tag: str) -> AnalysisService:
    """A node's analysis service as the node builds it, not started, its work run inline."""
    cluster = config.cluster
    return AnalysisService(
        config.home,
        RulesetSettings(),
        node_identity(cluster.node_name, cluster.name, cluster.hidden),
        clock,  # type: ignore[arg-type]
        ClusterLog(tag, "Main"),
        run_in_thread=run_inline,
        analysis_thread=run_inline,
        state_dir=config.home.agents_state,
    )


class WorkerStandIn:
    """A connected worker's end of its link as the master calls it: ``AskNode`` answered by
    the worker's own node answers, ``GetAgentData`` and ``ForgetAgentData`` from its own
    state folder, with the functions a worker uses, ``SendToAgents`` recorded in
    ``told``. ``answering`` False: it never answers
    (a worker that hangs)."""

    def __init__(self, config: NodeConfig, clock: task.Clock) -> None:
        self.config = config
        self.analysis = analysis_of(config, clock, f"Worker {config.cluster.node_name}")
        answers = NodeAnswers(
            config,
            run_inline,
            intake=self.analysis.intake,
            reload=self.analysis.reload,
            running=WORKER_DAEMONS,
            remoted=lambda: channel_numbers(ChannelStats(events=3, recv_bytes=300)),
            ask_agent=self.ask_agent,
        )
        #: The per-agent counters of the worker's channel (``daemons/stats`` per agent).
        self.agent_counters = AgentCounters(clock.seconds)
        answers.agent_counters = self.agent_counters
        answers.agent_queues = self.analysis.agent_counts
        #: (agent id, payload) of every question asked to an agent connected here.
        self.agent_questions: list[tuple[str, str]] = []
        self.questions = WorkerQuestions(answers, ClusterLog("Worker", "Questions"))
        self.answering = True
        self.asked: list[str] = []
        #: (agent id, message) of every SendToAgents.
        self.told: list[tuple[str, str]] = []
        self.transport = None

    def ask_agent(self, agent_id: str, payload: str, timeout: float) -> Deferred[str]:
        """An agent connected here answers as a simulated 4.x agent does."""
        self.agent_questions.append((agent_id, payload))
        return succeed(answer_request(payload, AgentFacts("192.0.2.21", 1514)))

    def callRemote(self, command: type, **arguments: Any) -> Deferred[Any]:  # noqa: N802
        """The worker's answer to one command of the master."""
        self.asked.append(command.__name__)
        if not self.answering:
            return Deferred()
        state = self.config.home.agents_state
        if command is GetAgentData:
            return succeed({"answer": encoded_answer(state, arguments["request"])})
        if command is ForgetAgentData:
            return succeed({"forgotten": forget_agents(state, list(arguments["agents"]))})
        if command is SendToAgents:
            # Every agent named is connected here; what it was told is kept for the tests.
            self.told.extend((agent, arguments["message"]) for agent in arguments["agents"])
            return succeed({"sent": list(arguments["agents"])})
        if command is AskNode:
            questions = self.questions
            reply = questions.reply(arguments["question"], arguments["arguments"])
            return ensureDeferred(reply).addCallback(lambda found: {"reply": found})
        return fail(NotImplementedError(command.__name__))


@frozen
class Answer:
    """One HTTP answer: status, content type and body (JSON decoded when it is JSON)."""

    status: int
    content_type: str
    raw: bytes

    @property
    def json(self) -> Any:
        """The decoded JSON body."""
        return json.loads(self.raw)


class ApiHarness:
    """The API over a real master node and registry, driven in memory (see module docstring)."""

    def __init__(self, case: SynchronousTestCase, **settings: Any) -> None:
        self.case = case
        self.clock = task.Clock()
        self.clock.advance(START)
        self.config = write_config(case.mktemp(), "master", "master")
        self.home = self.config.home
        self.integrity = FakeIntegrity()
        self.analysis = analysis_of(self.config, self.clock, "Master")
        self.node = MasterNode(
            self.config,
            self.clock,
            FeatureSet([self.integrity]),
            ruleset=self.analysis,
            run_in_thread=run_inline,
        )
        self.channel_stats = ChannelStats()
        self.node.answers.remoted = lambda: channel_numbers(self.channel_stats)
        files = RegistryFiles(
            self.home.client_keys, self.home.shared, self.home.root / "var" / "multigroups"
        )
        self.store = Registry.open(self.home.var_db / "global.db", files, self.clock.seconds)
        case.addCleanup(self.store.close)
        self.store.flush_files()
        self.registry = AsyncRegistry(self.store, synchronous_runner)
        self.node.agent_data = MasterAgentData(
            self.config.cluster.node_name,
            self.node.workers,
            self.home.agents_state,
            self.clock,
            run_inline,
            locate=self._locate_agent,
            agent_nodes=self._agent_nodes,
        )
        base = parse_api(Section(Element("api"), "test.conf", "api"), self.home)
        self.settings: ApiSettings = attrs.evolve(base, **settings)
        cheap_users(self.settings.users_file, {USER: PASSWORD})
        self.reconnected: list[list[str]] = []
        self.added: list[str] = []
        self.removed: list[str] = []
        hooks = ApiHooks(
            reconnect=self.reconnected.append,
            agents_added=lambda agents: self.added.extend(agent.id for agent in agents),
            agents_removed=self.removed.extend,
        )
        self.site, self.resource = build_site(
            self.settings,
            self.node,
            self.registry,
            self.clock.seconds,
            run_inline,
            hooks,
            "api-host",
        )
        case.addCleanup(self.resource.endpoints.tokens.store.close)
        self._token: str | None = None
        self._sequence = 0

    async def _locate_agent(self, agent_id: str) -> str | None:
        """Where an agent reports, as the master's service finds it in the registry."""
        agent = await self.registry.get_agent(agent_id)
        return None if agent is None else agent.node_name

    async def _agent_nodes(self) -> dict[str, str]:
        """Every agent's node, as the master's service lists them."""
        return {agent.id: agent.node_name for agent in await self.registry.list_agents()}

    # --- requests -----------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        token: str | None | bool = True,
        client: str = "192.0.2.10",
    ) -> Answer:
        """Send one request; ``token=True`` logs in first, a string is used as is."""
        request = DummyRequest([])
        request.method = method.encode("ascii")
        request.uri = path.encode("utf-8")
        request.path = path.split("?")[0].encode("utf-8")
        request.client = IPv4Address("TCP", client, 40000)
        if isinstance(body, bytes):
            data = body
        elif body is None:
            data = b""
        else:
            data = json.dumps(body).encode("utf-8")
            request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
        request.content = io.BytesIO(data)
        if token is True:
            token = self.token()
        if isinstance(token, str):
            request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
        self.resource.render(request)
        self.case.assertEqual(request.finished, 1, "the API did not answer synchronously")
        content_type = request.responseHeaders.getRawHeaders(b"content-type", [b""])[0]
        return Answer(request.responseCode or 200, content_type.decode(), b"".join(request.written))

    def login(
        self, user: str = USER, password: str = PASSWORD, client: str = "192.0.2.10"
    ) -> Answer:
        """POST /security/user/authenticate with HTTP basic credentials."""
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.call(
            "POST",
            "/security/user/authenticate",
            headers={"authorization": f"Basic {basic}"},
            token=None,
            client=client,
        )

    def token(self) -> str:
        """A valid token (logged in once per harness)."""
        if self._token is None:
            answer = self.login()
            self.case.assertEqual(answer.status, 200, answer.raw)
            self._token = answer.json["data"]["token"]
        return self._token

    # --- cluster and registry state -----------------------------------------------------
    def connect_worker(self, name: str, ip: str = "192.0.2.21", **report: Any) -> WorkerLink:
        """Register a connected worker whose integrity health report is ``report``; its
        link's protocol is a :class:`WorkerStandIn` with a home of its own."""
        now = self.clock.seconds()
        worker = WorkerStandIn(write_config(self.case.mktemp(), name, "worker"), self.clock)
        link = WorkerLink(name, "0.1.0", ip, worker, connected_at=now, last_keepalive=now)
        self.node.workers.add(link)
        self.integrity.reports[name] = dict(report)
        return link

    def enroll(self, name: str, ip: str = "any", groups: tuple[str, ...] = ()) -> str:
        """Register an agent directly in the registry; return its id."""
        agent = self.store.enroll(name, ip, groups)
        self.store.flush_files()
        return agent.id

    def report(self, agent_id: str, status: str, node: str, **fields: Any) -> None:
        """Apply an agent-info report (status, node, keep-alive...)."""
        now = self.clock.seconds()
        self._sequence += 1
        row = AgentInfoReport(
            agent_id=agent_id,
            node_name=node,
            status_time=now,
            status_seq=self._sequence,
            connection_status=status,
            last_keepalive=fields.pop("last_keepalive", now),
            **fields,
        )
        result = self.store.apply_agent_info([row])
        self.case.assertEqual(result.applied, 1)


def make_user(api: ApiHarness, name: str, *roles: str) -> str:
    """A user holding Wazuh's default ``roles`` (none when empty), created through the API;
    return their token, taken a second later so it outlives any earlier revocation."""
    made = api.call("POST", "/security/users", {"username": name, "password": STRONG})
    api.case.assertEqual(made.json["error"], 0, made.raw)
    user_id = made.json["data"]["affected_items"][0]["id"]
    if roles:
        ids = ",".join(str(ROLE_IDS[role]) for role in roles)
        linked = api.call("POST", f"/security/users/{user_id}/roles?role_ids={ids}")
        api.case.assertEqual(linked.json["error"], 0, linked.raw)
    api.clock.advance(1)
    login = api.login(name, STRONG)
    api.case.assertEqual(login.status, 200, login.raw)
    token: str = login.json["data"]["token"]
    return token

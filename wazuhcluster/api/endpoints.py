"""The API's route table: every family of endpoints over one shared context.

:class:`Endpoints` builds the :class:`~wazuhcluster.api.context.EndpointContext` from
what :mod:`wazuhcluster.api.service` hands in and lists the routes of each family
(security, default, cluster, agents, groups) for :mod:`wazuhcluster.api.resource`, which
does the HTTP plumbing (routing, bodies, tokens on the wire). Each handler turns a
validated :class:`~wazuhcluster.api.routes.Call` into a
:class:`~wazuhcluster.api.replies.Reply` or raises an
:class:`~wazuhcluster.api.errors.ApiError`; a call that fails validation changes
nothing, since every check runs before the first write.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from wazuhcluster.api.access import Access
from wazuhcluster.api.agent_commands import AgentCommandEndpoints
from wazuhcluster.api.agent_data_endpoints import AgentDataEndpoints
from wazuhcluster.api.agent_endpoints import AgentEndpoints
from wazuhcluster.api.agent_questions import AgentQuestionEndpoints
from wazuhcluster.api.agent_single import AgentSingleEndpoints
from wazuhcluster.api.agent_summaries import AgentSummaryEndpoints
from wazuhcluster.api.auth import LoginThrottle, TokenAuthority
from wazuhcluster.api.cluster_endpoints import ClusterEndpoints
from wazuhcluster.api.config_endpoints import ConfigEndpoints
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.default_endpoints import DefaultEndpoints
from wazuhcluster.api.event_endpoints import EventEndpoints
from wazuhcluster.api.group_endpoints import GroupEndpoints
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.interfaces import IApiNode, IRegistryFeature
from wazuhcluster.api.logtest_endpoints import LogtestEndpoints
from wazuhcluster.api.manager_endpoints import ManagerEndpoints
from wazuhcluster.api.routes import Route
from wazuhcluster.api.ruleset_endpoints import RulesetEndpoints
from wazuhcluster.api.ruleset_files import RulesetFiles
from wazuhcluster.api.security_endpoints import SecurityEndpoints
from wazuhcluster.api.users import UserStore
from wazuhcluster.config.analysis_settings import parse_ruleset
from wazuhcluster.config.api_settings import ApiSettings
from wazuhcluster.registry.service import AsyncRegistry
from wazuhcluster.util.threads import RunInThread


class Endpoints:
    """The whole API's behaviour, family by family (see module docstring).

    ``registry`` is the async registry or the registry feature holding it as ``.registry``,
    resolved on each call.
    """

    def __init__(
        self,
        node: IApiNode,
        registry: AsyncRegistry | IRegistryFeature,
        tokens: TokenAuthority,
        users: UserStore,
        throttle: LoginThrottle,
        run_in_thread: RunInThread,
        hooks: ApiHooks | None = None,
        hostname: str | None = None,
        settings: ApiSettings | None = None,
    ) -> None:
        home = node.config.home
        self.context = EndpointContext(
            node,
            registry,
            run_in_thread,
            hooks or ApiHooks(),
            shared=home.shared,
            multigroups=home.root / "var" / "multigroups",
        )
        self.tokens = tokens
        self.security = SecurityEndpoints(
            tokens, users, throttle, run_in_thread, self.context.log, self._actions
        )
        self.default = DefaultEndpoints(hostname or socket.gethostname(), self.context.now)
        self.cluster = ClusterEndpoints(self.context)
        self.config = ConfigEndpoints(self.context, settings)
        per_minute = settings.max_request_per_minute if settings is not None else None
        self.events = EventEndpoints(self.context, self.context.now, per_minute)
        self.agents = AgentEndpoints(self.context)
        self.agent_summaries = AgentSummaryEndpoints(self.context)
        self.agent_single = AgentSingleEndpoints(self.context)
        self.agent_commands = AgentCommandEndpoints(self.context)
        self.groups = GroupEndpoints(self.context)
        self.manager = ManagerEndpoints(self.context)
        config = node.config
        ruleset = parse_ruleset(
            config.section("ruleset"), config.section("alerts"), config.section("global")
        )
        self.ruleset_files = RulesetFiles(home.root, ruleset)
        self.ruleset = RulesetEndpoints(self.context, self.ruleset_files)
        self.logtest = LogtestEndpoints(self.context, self.ruleset_files)
        self.agent_data = AgentDataEndpoints(self.context)
        self.agent_questions = AgentQuestionEndpoints(self.context)

    def access(self, claims: Mapping[str, Any]) -> Access:
        """What the holder of a checked token may do (nothing without a token)."""
        if not claims:
            return Access()
        permissions = self.tokens.permissions(dict(claims))
        return Access(permissions, str(claims.get("rbac_mode", "white")))

    def _actions(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(route.method, route.template, route.actions) for route in self.routes()]

    def routes(self) -> list[Route]:
        """Every route this API serves."""
        return [
            *self.security.routes(),
            *self.default.routes(),
            *self.cluster.routes(),
            *self.config.routes(),
            *self.events.routes(),
            *self.agents.routes(),
            *self.agent_summaries.routes(),
            *self.agent_single.routes(),
            *self.agent_commands.routes(),
            *self.groups.routes(),
            *self.manager.routes(),
            *self.ruleset.routes(),
            *self.logtest.routes(),
            *self.agent_data.routes(),
            *self.agent_questions.routes(),
        ]

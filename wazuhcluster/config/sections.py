"""Every section of wazuh-manager.conf a node uses, parsed once before the reactor starts.

config.py validates ``<cluster>``; each room parses its own block (``<auth>`` in agents/...).
This module gathers them so that a bad value anywhere stops the node with one line at start.
"""

from __future__ import annotations

from attrs import frozen

from wazuhcluster.config.analysis_settings import (
    AnalysisSettings,
    RulesetSettings,
    parse_analysis,
    parse_ruleset,
)
from wazuhcluster.config.api_settings import ApiSettings, parse_api
from wazuhcluster.config.auth_settings import AuthSettings, parse_auth
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.config.remote_settings import (
    AgentsSettings,
    RemoteSettings,
    parse_global_agents,
    secure_remote,
)


@frozen
class NodeSections:
    """The parsed blocks a node runs with, besides ``<cluster>``."""

    auth: AuthSettings
    remote: RemoteSettings
    agents: AgentsSettings
    ruleset: RulesetSettings
    api: ApiSettings
    analysis: AnalysisSettings = AnalysisSettings()


def load_sections(config: NodeConfig) -> NodeSections:
    """Parse every block; raises ConfigError naming the file, option and reason."""
    return NodeSections(
        auth=parse_auth(config.section("auth"), config.home.root),
        remote=secure_remote(config.sections("remote")),
        agents=parse_global_agents(config.section("global")),
        ruleset=parse_ruleset(
            config.section("ruleset"), config.section("alerts"), config.section("global")
        ),
        api=parse_api(config.section("api"), config.home),
        analysis=parse_analysis(config.section("analysis"), config.section("global")),
    )

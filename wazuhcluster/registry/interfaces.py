"""The registry as the reactor's side uses it: every call answers with a Deferred.

:class:`~wazuhcluster.registry.service.AsyncRegistry` provides it over SQLite on the
registry thread; a master with ``<failover>`` hands its REST API another provider
(``wazuhcluster.master.durable_api``) that stores each write in etcd before answering.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import Interface

from wazuhcluster.registry.model import Agent, AgentInfoReport, AgentInfoResult, GroupInfo
from wazuhcluster.registry.store import Registry

T = TypeVar("T")


class IAsyncRegistry(Interface):
    """The agent registry, asynchronously (see the module docstring)."""

    def run(function: Callable[[Registry], T]) -> Deferred[T]:
        """Run ``function(registry)`` on the registry thread (reads, or writes that need no
        derived files)."""

    def write(function: Callable[[Registry], T]) -> Deferred[T]:
        """Run a write; fire once it is committed and the derived files reflect it."""

    def enroll(name: str, ip: str, groups: Sequence[str] = ()) -> Deferred[Agent]:
        """Add an agent (no force rules)."""

    def remove_agents(agent_ids: Sequence[str]) -> Deferred[list[str]]:
        """Remove agents; the ids removed."""

    def get_agent(agent_id: str) -> Deferred[Agent | None]:
        """One agent, or None."""

    def list_agents(**filters: Any) -> Deferred[list[Agent]]:
        """The agents matching the keyword filters of ``Registry.list_agents``."""

    def agent_nodes() -> Deferred[dict[str, str]]:
        """Which node each agent reports to, by id."""

    def create_group(name: str) -> Deferred[None]:
        """Create a group."""

    def delete_group(name: str) -> Deferred[list[str]]:
        """Delete a group; the agents it was taken from."""

    def list_groups() -> Deferred[list[GroupInfo]]:
        """Every group."""

    def assign(agent_id: str, group: str, replace: bool = False) -> Deferred[tuple[str, ...]]:
        """Assign a group to an agent; its groups after."""

    def unassign(agent_id: str, group: str) -> Deferred[tuple[str, ...]]:
        """Take a group from an agent; its groups after."""

    def agent_groups() -> Deferred[tuple[dict[str, tuple[str, ...]], str]]:
        """The agent → groups table and its checksum, read together."""

    def apply_agent_info(reports: Sequence[AgentInfoReport]) -> Deferred[AgentInfoResult]:
        """Apply agent-info reports (no derived files change)."""

    def integrity_check() -> Deferred[list[str]]:
        """SQLite's integrity check of the registry database."""

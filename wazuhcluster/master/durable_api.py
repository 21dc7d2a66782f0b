"""The REST API's registry writes, made durable in etcd before they are answered.

On a master with ``<failover>`` the API is handed :class:`DurableRegistryFeature` instead
of the registry feature itself. Its registry (:class:`DurableApiRegistry`) runs each API
write on the registry thread between two snapshots of the agents' durable facts, in the
same job, so the difference is exactly what that write changed (an agent added, one
replaced by ``<force>``, groups assigned, unassigned or changed by a group's deletion);
that difference is stored in etcd through the leader's fenced transaction before the
call returns. When etcd does not take it, what can be undone is undone (a new agent
removed, old group lists put back) and the call fails with 503: nothing the API
acknowledged is missing from etcd. Deletions go to etcd first, then to the registry,
like the control tool's. Writes that change no agent (agent.conf, an empty group) cost
the two snapshots and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from attrs import frozen
from twisted.internet.defer import Deferred
from zope.interface import implementer

from wazuhcluster.api.errors import ApiError
from wazuhcluster.api.interfaces import IRegistryFeature
from wazuhcluster.failover.interfaces import IDurableAgents
from wazuhcluster.registry.interfaces import IAsyncRegistry
from wazuhcluster.registry.model import (
    Agent,
    AgentInfoReport,
    AgentInfoResult,
    DurableAgent,
    GroupInfo,
    format_agent_id,
    parse_agent_id,
)
from wazuhcluster.registry.store import Registry
from wazuhcluster.util.logs import ClusterLog

T = TypeVar("T")
REMEDIATION = "Retry once a master is elected and etcd answers (wazuh-cluster-control -i)"


@frozen
class Change:
    """What one registry write changed in the agents' durable facts."""

    before: dict[str, DurableAgent]
    written: list[DurableAgent]
    removed: list[str]
    next_id: int | None

    def __bool__(self) -> bool:
        return bool(self.written or self.removed)


def durable_facts(registry: Registry) -> dict[str, DurableAgent]:
    """Every agent's durable facts, by id (registry thread)."""
    return {agent.id: DurableAgent.of(agent) for agent in registry.list_agents()}


def diffed(function: Callable[[Registry], T]) -> Callable[[Registry], tuple[T, Change]]:
    """``function`` run between two snapshots; its result and what it changed."""

    def run(registry: Registry) -> tuple[T, Change]:
        before = durable_facts(registry)
        result = function(registry)
        after = durable_facts(registry)
        written = [agent for agent_id, agent in after.items() if before.get(agent_id) != agent]
        removed = sorted(set(before) - set(after))
        added = any(agent_id not in before for agent_id in after)
        next_id = registry.next_agent_id() if added else None
        return result, Change(before, written, removed, next_id)

    return run


def not_stored(what: str, error: BaseException) -> ApiError:
    """The 503 of an API write etcd did not take."""
    return ApiError(
        503,
        "Service Unavailable",
        f"{what}: the cluster could not store it in etcd ({error or repr(error)})",
        remediation=REMEDIATION,
    )


@implementer(IAsyncRegistry)
class DurableApiRegistry:
    """The API's view of the async registry: writes stored in etcd (module docstring);
    reads go to ``inner`` unchanged."""

    def __init__(
        self,
        inner: IAsyncRegistry,
        durable: IDurableAgents,
        log: ClusterLog,
        publish_files: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.inner = inner
        self.durable = durable
        self.log = log
        #: Rescans and publishes the synced files to etcd (group folders, agent.conf).
        self.publish_files = publish_files

    # -- reads, and writes that change no durable fact: as the inner registry ----------

    def run(self, function: Callable[[Registry], T]) -> Deferred[T]:
        """Run ``function`` on the registry thread (reads)."""
        return self.inner.run(function)

    def get_agent(self, agent_id: str) -> Deferred[Agent | None]:
        """One agent, or None."""
        return self.inner.get_agent(agent_id)

    def list_agents(self, **filters: Any) -> Deferred[list[Agent]]:
        """The agents matching the filters."""
        return self.inner.list_agents(**filters)

    def agent_nodes(self) -> Deferred[dict[str, str]]:
        """Which node each agent reports to."""
        return self.inner.agent_nodes()

    def list_groups(self) -> Deferred[list[GroupInfo]]:
        """Every group."""
        return self.inner.list_groups()

    def agent_groups(self) -> Deferred[tuple[dict[str, tuple[str, ...]], str]]:
        """The agent → groups table and its checksum."""
        return self.inner.agent_groups()

    def apply_agent_info(self, reports: Sequence[AgentInfoReport]) -> Deferred[AgentInfoResult]:
        """Agent-info reports (connection facts, not stored in etcd)."""
        return self.inner.apply_agent_info(reports)

    def integrity_check(self) -> Deferred[list[str]]:
        """SQLite's integrity check."""
        return self.inner.integrity_check()

    # -- writes: stored in etcd before they are answered --------------------------------

    def write(self, function: Callable[[Registry], T]) -> Deferred[T]:
        """Run a write, then store what it changed in etcd before firing."""
        return Deferred.fromCoroutine(self._write(function))

    async def _write(self, function: Callable[[Registry], T], files: bool = False) -> T:
        result, change = await self.inner.write(diffed(function))
        if change:
            try:
                await self.durable.save(
                    [agent.record() for agent in change.written], change.removed, change.next_id
                )
            except Exception as error:
                await self._undo(change)
                raise not_stored("The change is undone", error) from None
        if files or not change:
            # A write that changes no agent changes files (agent.conf, a group folder);
            # a group's deletion both (its agents first, then its folder).
            await self._publish_files(change)
        return result

    async def _publish_files(self, change: Change) -> None:
        if self.publish_files is None:
            return
        try:
            await self.publish_files()
        except Exception as error:
            self.log.error("An API write's files could not be stored in etcd: {error}", error=error)
            raise not_stored(
                "The change is made on this master only (a new master would not have it)",
                error,
            ) from None

    async def _undo(self, change: Change) -> None:
        """Remove the agents the write added and put changed group lists back; agents it
        removed cannot be put back here (etcd still holds them: the next master has them)."""
        added = [agent.id for agent in change.written if agent.id not in change.before]
        regrouped = [
            change.before[agent.id]
            for agent in change.written
            if agent.id in change.before and change.before[agent.id].groups != agent.groups
        ]

        def undo(registry: Registry) -> None:
            if added:
                registry.remove_agents(added)
            for agent in regrouped:
                registry.set_groups(agent.id, agent.groups)

        try:
            if added or regrouped:
                await self.inner.write(undo)
        except Exception as error:
            self.log.error("Could not undo an API write etcd refused: {error}", error=error)
        self.log.error(
            "An API write could not be stored in etcd: undone (agents removed: {added}; "
            "group lists restored: {regrouped}); agents it removed here ({removed}) are "
            "still in etcd.",
            added=", ".join(added) or "none",
            regrouped=", ".join(agent.id for agent in regrouped) or "none",
            removed=", ".join(change.removed) or "none",
        )

    # The registry's write shortcuts, through this class's durable write.

    def enroll(self, name: str, ip: str, groups: Sequence[str] = ()) -> Deferred[Agent]:
        """Register an agent (durable)."""
        return self.write(lambda registry: registry.enroll(name, ip, groups))

    def remove_agents(self, agent_ids: Sequence[str]) -> Deferred[list[str]]:
        """Remove agents: from etcd first, then from the registry."""
        return Deferred.fromCoroutine(self._remove(list(agent_ids)))

    async def _remove(self, agent_ids: list[str]) -> list[str]:
        try:
            ids = [format_agent_id(parse_agent_id(agent_id)) for agent_id in agent_ids]
        except ValueError:
            return list(await self.inner.remove_agents(agent_ids))  # the registry refuses
        if ids:
            try:
                await self.durable.save([], ids)
            except Exception as error:
                raise not_stored("The agents are not deleted", error) from None
        return list(await self.inner.remove_agents(ids))

    def create_group(self, name: str) -> Deferred[None]:
        """Create a group; its folder is in etcd before this fires (else it is undone)."""
        return Deferred.fromCoroutine(self._create_group(name))

    async def _create_group(self, name: str) -> None:
        await self.inner.write(lambda registry: registry.create_group(name))
        try:
            await self._publish_files(Change({}, [], [], None))
        except ApiError:
            await self.inner.write(lambda registry: registry.delete_group(name))
            raise

    def delete_group(self, name: str) -> Deferred[list[str]]:
        """Delete a group; its agents' new group lists and the folder's removal are
        durable."""
        return Deferred.fromCoroutine(
            self._write(lambda registry: registry.delete_group(name), files=True)
        )

    def assign(self, agent_id: str, group: str, replace: bool = False) -> Deferred[tuple[str, ...]]:
        """Assign a group to an agent (durable)."""
        return self.write(lambda registry: registry.assign(agent_id, group, replace))

    def unassign(self, agent_id: str, group: str) -> Deferred[tuple[str, ...]]:
        """Unassign a group from an agent (durable)."""
        return self.write(lambda registry: registry.unassign(agent_id, group))


@implementer(IRegistryFeature)
class DurableRegistryFeature:
    """The registry feature as the API sees it on a master with ``<failover>``."""

    def __init__(
        self,
        feature: IRegistryFeature,
        durable: IDurableAgents,
        publish_files: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.feature = feature
        self.durable = durable
        self.publish_files = publish_files
        self.log = ClusterLog("Master", "API")
        self._wrapped: tuple[IAsyncRegistry, DurableApiRegistry] | None = None

    @property
    def registry(self) -> IAsyncRegistry:
        """The durable view of the feature's registry (it exists once the feature started)."""
        inner = self.feature.registry
        if self._wrapped is None or self._wrapped[0] is not inner:
            self._wrapped = (
                inner,
                DurableApiRegistry(inner, self.durable, self.log, self.publish_files),
            )
        return self._wrapped[1]

    def push_keys(self, added: list[dict[str, str]], removed: list[str]) -> None:
        """Tell the workers, as the feature does."""
        self.feature.push_keys(added, removed)

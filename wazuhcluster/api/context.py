"""What every family of endpoints works over: the master node, the registry, the node's
hooks, the thread runner and the shared group folders.

:class:`EndpointContext` is built once per API by
:class:`~wazuhcluster.api.endpoints.Endpoints` and handed to each family.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from attrs import define, field

from wazuhcluster.api.errors import wazuh_error
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.interfaces import IApiNode, IRegistryFeature
from wazuhcluster.registry.interfaces import IAsyncRegistry
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread


@define
class EndpointContext:
    """The node, registry and helpers shared by the endpoint families (see module docstring).

    ``provider`` is the async registry itself or the registry feature holding it; it is
    resolved on each use, since the feature only has a registry once it has started.
    """

    node: IApiNode
    provider: IAsyncRegistry | IRegistryFeature
    run_in_thread: RunInThread
    hooks: ApiHooks
    #: The group folders (``etc/shared``).
    shared: Path
    #: The merged folders of agents in several groups (``var/multigroups``).
    multigroups: Path
    log: ClusterLog = field(factory=lambda: ClusterLog("Master", "API"))

    @property
    def registry(self) -> IAsyncRegistry:
        """The async registry (a provider with ``.registry`` is resolved)."""
        found = self.provider
        # Duck-typed: anything with the registry's calls is taken as the registry itself.
        if hasattr(found, "list_agents"):
            return cast(IAsyncRegistry, found)
        return cast(IRegistryFeature, found).registry

    def now(self) -> float:
        """The node's clock."""
        return float(self.node.clock.seconds())

    async def group_exists(self, group: str) -> bool:
        """Whether ``group`` is in the registry."""
        exists: bool = await self.registry.run(lambda registry: registry.group_exists(group))
        return exists

    async def require_group(self, group: str) -> None:
        """Raise Wazuh's 1710 when ``group`` does not exist."""
        if not await self.group_exists(group):
            raise wazuh_error(1710, group)

"""What the node may plug into the API, and how endpoints call it.

The API changes the registry itself; the node learns of those changes (to push keys to
the workers) and performs agent reconnections through :class:`ApiHooks`. A hook that
fails is logged and never fails the call that triggered it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from attrs import define
from twisted.internet.defer import Deferred

from wazuhcluster.registry.model import Agent
from wazuhcluster.util.logs import ClusterLog

T = TypeVar("T")


@define
class ApiHooks:
    """What the node may plug into the API (every hook is optional).

    ``reconnect(agent_ids)`` asks the given active agents to reconnect (it may return a
    Deferred); ``agents_added(agents)`` and ``agents_removed(agent_ids)`` tell the node
    about registry changes made through the API (e.g. to push keys to the workers).
    ``failover()`` (a node with ``<failover>``) returns the election as the node sees it:
    the API then serves only while this node is the master, and answers the health URL
    (:mod:`wazuhcluster.api.standby`).
    """

    reconnect: Callable[[list[str]], object] | None = None
    agents_added: Callable[[list[Agent]], object] | None = None
    agents_removed: Callable[[list[str]], object] | None = None
    failover: Callable[[], Mapping[str, Any]] | None = None
    #: With ``<failover>``: awaited after each change of the security data (users.json,
    #: rbac.db) before the call is answered; what it raises answers the call.
    security_changed: Callable[[], Awaitable[None]] | None = None
    #: With ``<failover>``: awaited after a ruleset file is written or deleted through the
    #: API, before the call is answered; what it raises answers the call.
    files_changed: Callable[[], Awaitable[None]] | None = None


def notify(hook: Callable[[T], object] | None, value: T) -> None:
    """Tell a node hook about a change; its failure is logged, the call still succeeds."""
    if hook is None:
        return
    try:
        hook(value)
    except Exception as error:
        ClusterLog("Master", "API").error("API hook failed: {error!r}", error=error)


async def maybe_await(result: object) -> None:
    """Wait for ``result`` when a hook answered with a Deferred."""
    if isinstance(result, Deferred):
        await result

"""What a newly elected master does before its services start: take over the agents.

The durable agents in etcd are the truth: the local registry is made to match them (an
agent this node knew that etcd does not know is removed; one etcd knows is added; ids
are never issued below etcd's next id), and client.keys is rewritten from it, before
the master's services open. A cluster that has never written agents to etcd (no next-id
key: failover just configured on an existing master) is seeded from this node's own
registry instead, so turning failover on does not lose the agents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from wazuhcluster.config.home import Home
from wazuhcluster.failover.interfaces import IDurableAgents
from wazuhcluster.registry.model import DurableAgent, InvalidValue
from wazuhcluster.registry.store import Registry, RegistryFiles
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

T = TypeVar("T")


def open_registry(home: Home) -> Registry:
    """The node's registry database, with the files it derives (blocking)."""
    return Registry.open(
        home.var_db / "global.db",
        RegistryFiles(home.client_keys, home.shared, home.root / "var" / "multigroups"),
    )


def _with_registry(home: Home, work: Callable[[Registry], T]) -> T:
    registry = open_registry(home)
    try:
        result = work(registry)
        registry.flush_files()
        return result
    finally:
        registry.close()


def _local_agents(registry: Registry) -> tuple[list[DurableAgent], int]:
    """This node's agents and the next id its registry would issue (blocking)."""
    agents = [DurableAgent.of(agent) for agent in registry.list_agents()]
    return agents, registry.next_agent_id()


async def take_over_agents(
    durable: IDurableAgents, home: Home, run_in_thread: RunInThread, log: ClusterLog
) -> None:
    """Bring this node's registry in line with etcd's agents (or seed etcd from it)."""
    records, next_id = await durable.load()
    if next_id == 0 and not records:
        local, local_next = await run_in_thread(_with_registry, home, _local_agents)
        await durable.save([agent.record() for agent in local], [], next_id=local_next)
        log.info(
            "etcd held no agents yet: published this node's {count} agents to it.",
            count=len(local),
        )
        return
    agents: list[DurableAgent] = []
    taken: set[str] = set()
    for record in records:
        try:
            agent = DurableAgent.from_record(record)
        except InvalidValue as error:
            log.error("Skipped an agent record in etcd: {error}", error=error)
            continue
        held = {f"name {agent.name}"} | ({f"IP {agent.ip}"} if agent.ip != "any" else set())
        if held & taken:
            log.error(
                "Skipped agent {id} in etcd: its {what} is another agent's",
                id=agent.id,
                what=" and ".join(sorted(held & taken)),
            )
            continue
        taken |= held
        agents.append(agent)
    kept, added, removed = await run_in_thread(
        _with_registry, home, lambda registry: registry.replace_agents(agents, next_id)
    )
    log.info(
        "Took over {count} agents from etcd: {kept} known here, {added} added, {removed} "
        "removed that etcd does not hold.",
        count=len(agents),
        kept=kept,
        added=added,
        removed=removed,
    )

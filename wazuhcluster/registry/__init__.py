"""The master's agent registry: SQLite tables, client.keys and group files.

``store.Registry`` is the synchronous registry (one connection, one thread);
``service.AsyncRegistry`` / ``service.RegistryService`` run it off the reactor;
``keys`` reads and writes client.keys; ``groups`` builds group folders and merged.mg.
"""

from wazuhcluster.registry.keys import KeyEntry, parse_client_keys, read_client_keys
from wazuhcluster.registry.model import (
    Agent,
    AgentInfoReport,
    AgentInfoResult,
    DuplicateIP,
    DuplicateName,
    GroupExists,
    GroupInfo,
    InvalidValue,
    RegistryError,
    UnknownAgent,
    UnknownGroup,
)
from wazuhcluster.registry.service import AsyncRegistry, RegistryService, synchronous_runner
from wazuhcluster.registry.store import Registry, RegistryFiles, groups_table_checksum

__all__ = [
    "Agent",
    "AgentInfoReport",
    "AgentInfoResult",
    "AsyncRegistry",
    "DuplicateIP",
    "DuplicateName",
    "GroupExists",
    "GroupInfo",
    "InvalidValue",
    "KeyEntry",
    "Registry",
    "RegistryError",
    "RegistryFiles",
    "RegistryService",
    "UnknownAgent",
    "UnknownGroup",
    "groups_table_checksum",
    "parse_client_keys",
    "read_client_keys",
    "synchronous_runner",
]

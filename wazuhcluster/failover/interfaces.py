"""What the failover room hands the roles: the master's durable agents and files in etcd."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zope.interface import Interface


class IDurableAgents(Interface):
    """The agents as etcd keeps them; written only while this node leads (fenced)."""

    async def save(
        added: Sequence[Mapping[str, Any]], removed: Sequence[str], next_id: int | None = None
    ) -> None:
        """Write the records of ``added`` agents and delete the ``removed`` ids in fenced
        transactions, and raise the next id to issue to ``next_id`` when given; raises
        (NotLeader, an etcd error) when not written."""

    async def load() -> tuple[list[dict[str, Any]], int]:
        """Every agent record, and the next agent id etcd knows of (0: none)."""


class IDurableFiles(Interface):
    """The master's synced files as etcd keeps them; written only while this node leads."""

    known: dict[str, str] | None

    async def publish(changed: Mapping[str, bytes], removed: Sequence[str]) -> None:
        """Store the ``changed`` files and delete the ``removed`` paths in fenced
        transactions; raises (FileTooLarge, NotLeader, an etcd error) when not written."""

    async def load() -> tuple[dict[str, bytes], bool]:
        """Every stored file by relative path, and whether etcd was ever given the files."""

"""Enroll many agents at once against several enrollment ports; print the outcome as JSON.

Usage: python -m tests.integration.enroll_many PORT[,PORT...] COUNT PREFIX [PASSWORD]
Agent i enrolls through port i % len(ports), all concurrently.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import react

from wazuhcluster.agents.enrollment_client import request_enrollment


async def enroll_all(
    reactor: Any, ports: list[int], count: int, prefix: str, password: str | None
) -> list[dict[str, str]]:
    """Enroll ``count`` agents concurrently; one result (id or error) per agent."""

    async def one(index: int) -> dict[str, str]:
        name = f"{prefix}{index:04d}"
        try:
            entry = await request_enrollment(
                reactor,
                "127.0.0.1",
                ports[index % len(ports)],
                name,
                password=password,
                timeout=60,
            )
        except Exception as error:
            return {"name": name, "error": str(error)}
        return {"name": name, "id": entry.id, "key": entry.key}

    results = await DeferredList([ensureDeferred(one(i)) for i in range(count)])
    return [value for _ok, value in results]


def main(reactor: Any) -> Any:
    """Entry point for task.react."""
    ports = [int(p) for p in sys.argv[1].split(",")]
    password = sys.argv[4] if len(sys.argv) > 4 else None

    async def run() -> None:
        print(json.dumps(await enroll_all(reactor, ports, int(sys.argv[2]), sys.argv[3], password)))

    return ensureDeferred(run())


if __name__ == "__main__":
    react(main)

"""Enroll many agents at once against several enrollment ports; print the outcome as JSON.

Usage: python -m tests.integration.enroll_many [--progress FILE] [--names FILE]
PORT[,PORT...] COUNT PREFIX [PASSWORD]. Agent i, named PREFIX and i on four digits, enrolls
through port i % len(ports), all concurrently; with ``--names`` the agents are the names
listed in FILE (one a line; COUNT and PREFIX are then ignored), as agents retrying after a
refusal. Each result has the agent's name, its id and key or an error, and ``at``: the
wall-clock time (POSIX seconds) its answer came. With ``--progress``, one line per answer
(``ok`` or ``error``) is appended to FILE as it comes, so a test can act while the burst is
in flight.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import react

from wazuhcluster.agents.enrollment_client import request_enrollment


async def enroll_all(
    reactor: Any,
    ports: list[int],
    names: list[str],
    password: str | None,
    progress: IO[str] | None = None,
) -> list[dict[str, Any]]:
    """Enroll the agents ``names`` concurrently; one result (id or error, and when) each."""

    def note(result: dict[str, Any]) -> dict[str, Any]:
        result["at"] = time.time()
        if progress is not None:
            progress.write("ok\n" if "id" in result else "error\n")
            progress.flush()
        return result

    async def one(index: int, name: str) -> dict[str, Any]:
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
            return note({"name": name, "error": str(error)})
        return note({"name": name, "id": entry.id, "key": entry.key})

    results = await DeferredList([ensureDeferred(one(i, n)) for i, n in enumerate(names)])
    return [value for _ok, value in results]


def main(reactor: Any) -> Any:
    """Entry point for task.react."""
    # By hand, not argparse: a password may well start with "-".
    args = sys.argv[1:]
    options: dict[str, str] = {}
    while args[:1] in (["--progress"], ["--names"]):
        options[args[0]], args = args[1], args[2:]
    progress_path = options.get("--progress")
    ports = [int(p) for p in args[0].split(",")]
    if "--names" in options:
        with open(options["--names"], encoding="utf-8") as listed:
            names = listed.read().split()
    else:
        names = [f"{args[2]}{index:04d}" for index in range(int(args[1]))]
    password = args[3] if len(args) > 3 else None

    async def run() -> None:
        progress = open(progress_path, "a", encoding="utf-8") if progress_path else None
        try:
            results = await enroll_all(reactor, ports, names, password, progress)
        finally:
            if progress is not None:
                progress.close()
        print(json.dumps(results))

    return ensureDeferred(run())


if __name__ == "__main__":
    react(main)

"""``wazuh-cluster-control``: ask a running node about the cluster over its control socket."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.protocols import amp

from wazuhcluster.control import commands
from wazuhcluster.home import DEFAULT_HOME, MAX_UNIX_PATH, Home
from wazuhcluster.wire.commands import NotConnected

NOT_RUNNING = "Cluster is not running."


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, each as wide as its longest cell plus two spaces (Wazuh's layout)."""
    table = [[cell.upper() for cell in header]] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in table) + 2 for i in range(len(header))]
    lines = [
        "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    return "\n".join(lines)


def format_nodes(nodes: list[dict[str, str]]) -> str:
    """The ``-l`` table: NAME TYPE VERSION ADDRESS."""
    rows = [(n["name"], n["type"], n["version"], n["ip"]) for n in nodes]
    return format_table(("Name", "Type", "Version", "Address"), rows)


def build_parser() -> argparse.ArgumentParser:
    """The command line of wazuh-cluster-control."""
    parser = argparse.ArgumentParser(
        prog="wazuh-cluster-control", description="Ask a running wazuhcluster node."
    )
    parser.add_argument("--home", default=str(DEFAULT_HOME), help="the node's home directory")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("-l", "--list-nodes", action="store_true", help="list the nodes")
    action.add_argument("--info", action="store_true", help="this node's identity")
    return parser


async def _ask(reactor: Any, home: Home, command: type[amp.Command]) -> dict[str, Any]:
    endpoint = UNIXClientEndpoint(reactor, str(home.control_socket), timeout=10)
    protocol = await connectProtocol(endpoint, amp.AMP())
    try:
        answer: dict[str, Any] = await protocol.callRemote(command)
        return answer
    finally:
        protocol.transport.loseConnection()


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, ask the node, print the answer; return the exit status."""
    args = build_parser().parse_args(argv)
    home = Home(Path(args.home).absolute())
    if len(str(home.control_socket).encode()) > MAX_UNIX_PATH:
        print(f"The control socket path {home.control_socket} is too long.", file=sys.stderr)
        return 1
    command: type[amp.Command] = commands.ListNodes if args.list_nodes else commands.LocalInfo
    outcome: dict[str, Any] = {}

    async def main(reactor: Any) -> None:
        try:
            outcome["answer"] = await _ask(reactor, home, command)
        except (ConnectError, FileNotFoundError, ConnectionRefusedError):
            outcome["error"] = NOT_RUNNING
        except (NotConnected, commands.ControlError) as error:
            outcome["error"] = f"{error}."

    from twisted.internet.task import react

    try:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)), [])
    except SystemExit as stop:  # react() always ends by raising SystemExit
        if stop.code not in (0, None):
            outcome.setdefault("error", NOT_RUNNING)
    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        return 1
    answer = outcome["answer"]
    if args.list_nodes:
        print(json.dumps(answer["nodes"], indent=2) if args.json else format_nodes(answer["nodes"]))
    else:
        info = answer["info"]
        print(
            json.dumps(info, indent=2)
            if args.json
            else "\n".join(f"{k}: {v}" for k, v in info.items())
        )
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())

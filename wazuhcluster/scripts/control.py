"""``wazuh-cluster-control``: ask a running node about the cluster over its control socket.

Every action prints a human table by default and JSON with ``--json``; the exit status is 0
on success and 1 when the node is not running, not connected, or refuses the request.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionRefusedError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.protocols import amp

from wazuhcluster.config.home import DEFAULT_HOME, MAX_UNIX_PATH, Home
from wazuhcluster.control import commands
from wazuhcluster.node.health import iso_time
from wazuhcluster.util.interfaces import IReactorUNIXTime
from wazuhcluster.wire.commands import NotConnected

NOT_RUNNING = "Cluster is not running."
#: Seconds the tool keeps trying while the node's accept queue is full, and between tries.
CONNECT_WITHIN = 10.0
CONNECT_RETRY = 0.05
#: Exit status of ``-i`` when the cluster's verdict is not ok (1 means the request failed).
UNHEALTHY = 2
#: Agents fetched per request when listing (the node caps it at 200 too).
PAGE = 200

Ask = Callable[..., Awaitable[dict[str, Any]]]


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


def format_agents(agents: list[dict[str, Any]]) -> str:
    """The ``-a`` table: ID NAME IP STATUS VERSION NODE NAME."""
    rows = [
        (a["id"], a["name"], a["ip"], a["status"], a["version"], a["node_name"]) for a in agents
    ]
    return format_table(("ID", "Name", "IP", "Status", "Version", "Node name"), rows)


def _duration(start: Any, end: Any) -> str:
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return "n/a"
    return f"{max(end - start, 0.001):.3f}s ({iso_time(start)} - {iso_time(end)})"


def _worker_line(name: str, node: dict[str, Any]) -> str:
    status = node.get("status", {})
    verdict = node.get("verdict", {})
    dates = (
        ("Integrity check", status.get("last_check_integrity", {}).get("date_end_master")),
        ("Integrity sync", status.get("last_sync_integrity", {}).get("date_end_master")),
        ("Agents-info", status.get("last_sync_agentinfo", {}).get("date_end_master")),
        ("Agent-groups", status.get("last_sync_agentgroup", {}).get("date_end")),
        ("Agent-groups full", status.get("last_sync_full_agentgroup", {}).get("date_end")),
        ("Last keep alive", status.get("last_keep_alive")),
    )
    parts = " | ".join(f"{label}: {iso_time(value)}" for label, value in dates)
    reasons = verdict.get("reasons") or []
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return f"    {name} ({node['info']['ip']}): {parts}. Verdict: {verdict.get('state')}{why}"


def format_health(health: dict[str, Any]) -> str:
    """``-i``: the cluster's verdict, then one line per worker, as Wazuh prints it plus ours."""
    nodes = health["nodes"]
    workers = {n: v for n, v in nodes.items() if v["info"]["type"] == "worker"}
    connected = {n: v for n, v in workers.items() if "disconnected_at" not in v.get("status", {})}
    gone = {n: v for n, v in workers.items() if n not in connected}
    verdict = health["verdict"]
    lines = [f"Cluster name: {health['cluster']}", f"Cluster verdict: {verdict['state']}", ""]
    lines.append(f"Last completed synchronization for connected nodes ({len(connected)}):")
    lines += [_worker_line(name, connected[name]) for name in sorted(connected)]
    if gone:
        lines.append(f"Disconnected nodes ({len(gone)}):")
        lines += [
            f"    {name} ({gone[name]['info']['ip']}): "
            f"{'; '.join(gone[name]['verdict']['reasons'])}"
            for name in sorted(gone)
        ]
    return "\n".join(lines)


def format_health_more(health: dict[str, Any]) -> str:
    """``-i more``: every node's details in Wazuh's layout, plus the verdicts."""
    nodes = health["nodes"]
    connected = [n for n in nodes if "disconnected_at" not in nodes[n].get("status", {})]
    lines = [
        f"Cluster verdict: {health['verdict']['state']}",
        "",
        f"Connected nodes ({len(connected)}):",
    ]
    for name in sorted(nodes):
        node = nodes[name]
        info, status = node["info"], node.get("status", {})
        lines += [
            f"    {name} ({info['ip']})",
            f"        Version: {info['version']}",
            f"        Type: {info['type']}",
        ]
        if "disconnected_at" in status:
            lines.append(f"        Verdict: disconnected ({'; '.join(node['verdict']['reasons'])})")
            continue
        if info["type"] != "worker":
            continue
        check = status.get("last_check_integrity", {})
        sync = status.get("last_sync_integrity", {})
        files = sync.get("total_files", {})
        agent_info = status.get("last_sync_agentinfo", {})
        lines += [
            "        Status:",
            "            Last keep Alive:",
            f"                Last received: {iso_time(status.get('last_keep_alive'))}.",
            "            Integrity check:",
            "                Last integrity check: "
            f"{_duration(check.get('date_start_master'), check.get('date_end_master'))}.",
            "                Permission to check integrity: "
            f"{status.get('sync_integrity_free', 'n/a')}.",
            "            Integrity sync:",
            "                Last integrity synchronization: "
            f"{_duration(sync.get('date_start_master'), sync.get('date_end_master'))}.",
            f"                Synchronized files: Shared: {files.get('shared', 0)} | "
            f"Missing: {files.get('missing', 0)} | Extra: {files.get('extra', 0)}.",
            f"                Files pending: {sync.get('deferred_files', 0)}.",
            "            Agents-info:",
            "                Last synchronization: "
            f"{_duration(agent_info.get('date_start_master'), agent_info.get('date_end_master'))}.",
            "                Number of synchronized chunks: "
            f"{agent_info.get('n_synced_chunks', 0)}.",
            f"            Verdict: {node['verdict']['state']}"
            + (f" ({'; '.join(node['verdict']['reasons'])})" if node["verdict"]["reasons"] else ""),
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of wazuh-cluster-control."""
    parser = argparse.ArgumentParser(
        prog="wazuh-cluster-control", description="Ask a running wazuhcluster node."
    )
    parser.add_argument("--home", default=str(DEFAULT_HOME), help="the node's home directory")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("-fn", "--filter-node", nargs="+", default=[], help="with -a: nodes")
    parser.add_argument(
        "-fs", "--filter-agent-status", nargs="+", default=[], help="with -a: statuses"
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("-l", "--list-nodes", action="store_true", help="list the nodes")
    action.add_argument("-a", "--list-agents", action="store_true", help="list the agents")
    action.add_argument("--info", action="store_true", help="this node's identity")
    action.add_argument(
        "-i",
        "--health",
        nargs="?",
        const="summary",
        choices=["summary", "more"],
        help="health with a verdict per worker; 'more' for details (exit 2 when unhealthy)",
    )
    action.add_argument("--list-groups", action="store_true", help="list the groups")
    action.add_argument(
        "--reload-ruleset", action="store_true", help="reload this node's rules and decoders"
    )
    action.add_argument(
        "--reconnect-agents",
        nargs="*",
        metavar="ID",
        help="ask these agents (wherever connected) to reconnect, e.g. through a balancer",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=0,
        help="with --reconnect-agents: also ask this many of this node's own agents",
    )
    action.add_argument(
        "--agent-data",
        nargs=2,
        metavar=("AGENT", "KIND"),
        help="an agent's stored data, wherever it reports: syscheck, syscheck_last_scan, sca, "
        "sca_checks (with --policy), rootcheck, rootcheck_last_scan, syscollector/os|hardware|"
        "packages|processes|ports|netiface|netaddr|netproto|hotfixes|users|groups|services|"
        "browser_extensions",
    )
    parser.add_argument("--policy", help="with --agent-data sca_checks: the SCA policy id")
    parser.add_argument("-q", "--query", help="with --agent-data: a Wazuh API q filter")
    action.add_argument("--delete-agents", nargs="+", metavar="ID", help="remove agents")
    action.add_argument("--create-group", metavar="GROUP", help="create a group")
    action.add_argument("--delete-group", metavar="GROUP", help="delete a group")
    action.add_argument(
        "--assign", nargs=2, metavar=("AGENT", "GROUP"), help="add an agent to a group"
    )
    action.add_argument(
        "--unassign", nargs=2, metavar=("AGENT", "GROUP"), help="remove an agent from a group"
    )
    return parser


async def _list_agents(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
    agents: list[dict[str, Any]] = []
    while True:
        page = (
            await ask(
                commands.Manage,
                action="list_agents",
                arguments={
                    "status": args.filter_agent_status,
                    "node": args.filter_node,
                    "offset": len(agents),
                    "limit": PAGE,
                },
            )
        )["result"]
        agents.extend(page["agents"])
        if not page["agents"] or len(agents) >= page["total"]:
            return format_agents(agents), agents


async def _agent_data(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
    agent_id, kind = args.agent_data
    items: list[dict[str, Any]] = []
    while True:
        arguments = {
            "agent_id": agent_id,
            "kind": kind,
            "policy_id": args.policy,
            "q": args.query,
            "offset": len(items),
            "limit": PAGE,
        }
        page = (await ask(commands.Manage, action="agent_data", arguments=arguments))["result"]
        items.extend(page["items"])
        if not page["items"] or len(items) >= page["total"]:
            break
    lines = [json.dumps(item, sort_keys=True) for item in items]
    lines.append(f"{len(items)} items of agent {agent_id} ({kind}).")
    return "\n".join(lines), items


def _manage(
    action: str,
    arguments: Callable[[argparse.Namespace], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> Callable[..., Awaitable[tuple[str, Any]]]:
    async def run(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
        result = (await ask(commands.Manage, action=action, arguments=arguments(args)))["result"]
        return describe(result), result

    return run


def format_failover(status: dict[str, Any]) -> str:
    """The election as the asked node sees it (a node with ``<failover>``)."""
    master = status.get("master")
    if master is None:
        leader = "Master: none elected (no leader key in etcd)"
    else:
        where = status.get("master_address") or "address not published"
        leader = f"Master: {master} ({where}), term {status.get('term')}"
    candidates = ", ".join(status.get("candidates") or []) or "none"
    part = "candidate" if status.get("candidate") else "not a candidate"
    return "\n".join(
        [
            "Failover (etcd):",
            f"    {leader}",
            f"    Last election: {iso_time(status.get('last_election'))}",
            f"    Candidates: {candidates}",
            f"    This node: {status.get('node')} ({part}), running as {status.get('role')}"
            f"{' (read-only: etcd does not answer)' if status.get('read_only') else ''}; "
            f"lease TTL {status.get('lease_ttl')} s; etcd: {status.get('etcd')}",
        ]
    )


async def _failover(ask: Ask) -> dict[str, Any] | None:
    """The asked node's view of the election; None without ``<failover>`` (or a node too
    old to know the question)."""
    try:
        status: dict[str, Any] | None = (await ask(commands.FailoverStatus))["status"]
    except (amp.UnknownRemoteError, amp.RemoteAmpError):
        return None
    return status


async def _list_nodes(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
    nodes = (await ask(commands.ListNodes))["nodes"]
    failover = await _failover(ask)
    if failover is None:
        return format_nodes(nodes), nodes
    return format_nodes(nodes) + "\n\n" + format_failover(failover), nodes


async def _info(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
    info = (await ask(commands.LocalInfo))["info"]
    return "\n".join(f"{k}: {v}" for k, v in info.items()), info


async def _health(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
    health = (await ask(commands.ClusterHealth))["health"]
    failover = await _failover(ask)
    election = ""
    if failover is not None:
        health = {**health, "failover": failover}
        election = "\n\n" + format_failover(failover)
    if args.health != "more":
        return format_health(health) + election, health
    text = format_health_more(health) + election
    try:
        stats = (await ask(commands.AnalysisStats))["stats"]
    except (commands.ControlError, amp.UnknownRemoteError, amp.RemoteAmpError):
        return text, health  # a node that runs no analysis (or an older one)
    return text + "\n\n" + format_analysis(stats), {**health, "analysis": stats}


def _eps_limit(limit: dict[str, Any]) -> str:
    if not limit.get("maximum"):
        return "none"
    return (
        f"{limit['maximum']} per second over {limit['timeframe']} s "
        f"(held back {limit.get('held_back', 0)} times)"
    )


def format_analysis(stats: dict[str, Any]) -> str:
    """``-i more``: the asked node's analysis intake, and each analysis process's share."""
    lines = [
        f"Analysis on {stats.get('node', 'this node')}:",
        f"    Events: received {stats['received']} | decoded {stats['decoded']} | "
        f"processed {stats['processed']} | failed {stats['failed']} | "
        f"dropped {stats['dropped']} | lost {stats['lost']}.",
        f"    Alerts written: {stats['alerts_written']}.",
        f"    Queue: {stats['queue_length']} of {stats['queue_size']}.",
        f"    EPS processed: {stats['eps_10s']} (10 s) | {stats['eps_1m']} (1 min); "
        f"received: {stats['received_eps_10s']} (10 s) | {stats['received_eps_1m']} (1 min).",
        f"    EPS limit: {_eps_limit(stats.get('eps_limit', {}))}.",
    ]
    dropped = stats.get("dropped_by_agent") or {}
    if dropped:
        lines.append(
            "    Dropped by agent (top 10): "
            + ", ".join(f"{agent}: {count}" for agent, count in dropped.items())
            + "."
        )
    outputs = stats.get("outputs") or {}
    if outputs:
        described = "; ".join(_output(name, state) for name, state in outputs.items())
        lines.append(f"    Outputs: {described}.")
    processes = stats.get("processes") or []
    if not processes:
        lines.append("    Analysis processes: none (one thread in the node's process).")
    else:
        lines.append(f"    Analysis processes ({len(processes)}):")
        for process in processes:
            state = "running" if process["running"] else "starting"
            lines.append(
                f"        {process['lane']} (pid {process['pid']}): {state} | "
                f"processed {process['processed']} | alerts {process['alerts']} | "
                f"EPS {process['eps_10s']} (10 s) {process['eps_1m']} (1 min) | "
                f"queued {process['queued']} | failed {process['failed']} | "
                f"lost {process['lost']} | restarts {process['restarts']}."
            )
    return "\n".join(lines)


def _output(name: str, state: dict[str, Any] | None) -> str:
    """One log output's line part: written, or failing with how much it dropped."""
    if state is None:
        return f"{name} not open"
    if state.get("failure") is None:
        return f"{name} written"
    return f"{name} CANNOT be written ({state['failure']}), {state['lost']} lines dropped"


async def _reconnect(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
    asked = (await ask(commands.ReconnectAgents, agents=args.reconnect_agents, count=args.count))[
        "reconnected"
    ]
    lines = [
        f"{node}: {len(ids)} agents asked to reconnect ({', '.join(ids) or 'none'})"
        for node, ids in sorted(asked.items())
    ]
    return "\n".join(lines) or "No agents asked to reconnect.", asked


async def _reload(ask: Ask, args: argparse.Namespace) -> tuple[str, Any]:
    message = (await ask(commands.ReloadRuleset))["message"]
    return message, {"message": message}


def _choose(args: argparse.Namespace) -> Callable[..., Awaitable[tuple[str, Any]]]:
    if args.reload_ruleset:
        return _reload
    if args.reconnect_agents is not None:
        return _reconnect
    if args.health:
        return _health
    if args.list_nodes:
        return _list_nodes
    if args.list_agents:
        return _list_agents
    if args.agent_data:
        return _agent_data
    if args.info:
        return _info
    if args.list_groups:
        return _manage(
            "list_groups",
            lambda a: {},
            lambda r: format_table(
                ("Name", "Agents"), [(g["name"], str(g["count"])) for g in r["groups"]]
            ),
        )
    if args.delete_agents:
        return _manage(
            "delete_agents",
            lambda a: {"ids": a.delete_agents},
            lambda r: (
                "Removed: "
                + (", ".join(r["removed"]) or "none")
                + (f". Not found: {', '.join(r['not_found'])}" if r["not_found"] else "")
            ),
        )
    if args.create_group:
        return _manage(
            "create_group",
            lambda a: {"name": a.create_group},
            lambda r: f"Group {r['created']} created.",
        )
    if args.delete_group:
        return _manage(
            "delete_group",
            lambda a: {"name": a.delete_group},
            lambda r: f"Group {r['deleted']} deleted.",
        )
    if args.assign:
        return _manage(
            "assign",
            lambda a: {"agent": a.assign[0], "group": a.assign[1]},
            lambda r: "Groups: " + ",".join(r["groups"]),
        )
    return _manage(
        "unassign",
        lambda a: {"agent": a.unassign[0], "group": a.unassign[1]},
        lambda r: "Groups: " + ",".join(r["groups"]),
    )


async def perform(
    ask: Ask, action: Callable[..., Awaitable[tuple[str, Any]]], args: argparse.Namespace
) -> dict[str, Any]:
    """Run ``action``: ``text`` and ``json``, or ``error`` (with ``hint``: the election as
    this node sees it, when a node with ``<failover>`` cannot reach the master)."""
    try:
        text, data = await action(ask, args)
    except commands.ControlError as error:
        return {"error": f"{error}."}
    except NotConnected as error:
        outcome = {"error": f"{error}."}
        failover = await _failover(ask)
        if failover is not None:
            outcome["hint"] = format_failover(failover)
        return outcome
    return {"text": text, "json": data}


def queue_full(error: ConnectError) -> bool:
    """Whether a failed connect met a full accept queue: the kernel refuses a UNIX connect
    at once then (EAGAIN; Twisted reports a ConnectError without an OS error), where a TCP
    connect would wait. A refused connect, a missing socket or a denied one are final."""
    if isinstance(error, ConnectionRefusedError):
        return False
    return error.osError in (None, errno.EAGAIN)


async def connect_control(
    connect: Callable[[], Deferred[amp.AMP]],
    clock: IReactorTime,
    within: float = CONNECT_WITHIN,
) -> amp.AMP:
    """The protocol ``connect`` gives, tried again every :data:`CONNECT_RETRY` seconds for
    ``within`` seconds while the node's accept queue is full (a flood of clients the node
    has not accepted yet must not turn into "Cluster is not running.")."""
    deadline = clock.seconds() + within
    while True:
        try:
            return await connect()
        except ConnectError as error:
            if not queue_full(error) or clock.seconds() >= deadline:
                raise
        await deferLater(clock, CONNECT_RETRY, lambda: None)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, ask the node, print the answer; return the exit status.

    ``api-user ...`` manages the REST API's users (see wazuhcluster.api.users).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["api-user"]:
        from wazuhcluster.api.users import main as api_user_main

        return api_user_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    if (args.filter_node or args.filter_agent_status) and not args.list_agents:
        parser.print_usage(sys.stderr)
        print("Wrong arguments: -fn and -fs go with -a.", file=sys.stderr)
        return 1
    home = Home(Path(args.home).absolute())
    if len(str(home.control_socket).encode()) > MAX_UNIX_PATH:
        print(f"The control socket path {home.control_socket} is too long.", file=sys.stderr)
        return 1
    action = _choose(args)
    outcome: dict[str, Any] = {}

    async def main(reactor: IReactorUNIXTime) -> None:
        endpoint = UNIXClientEndpoint(reactor, str(home.control_socket), timeout=10)
        try:
            protocol = await connect_control(lambda: connectProtocol(endpoint, amp.AMP()), reactor)
        except (ConnectError, FileNotFoundError):
            outcome["error"] = NOT_RUNNING
            return

        async def ask(command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
            answer: dict[str, Any] = await protocol.callRemote(command, **arguments)
            return answer

        try:
            outcome.update(await perform(ask, action, args))
        finally:
            if protocol.transport is not None:
                protocol.transport.loseConnection()

    from twisted.internet.task import react

    try:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)), [])
    except SystemExit as stop:  # react() always ends by raising SystemExit
        if stop.code not in (0, None):
            outcome.setdefault("error", NOT_RUNNING)
    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        if "hint" in outcome:
            print(outcome["hint"], file=sys.stderr)
        return 1
    print(json.dumps(outcome["json"], indent=2) if args.json else outcome["text"])
    if args.health and outcome["json"]["verdict"]["state"] != "ok":
        return UNHEALTHY
    return 0


def main() -> None:
    """Console-script entry point."""
    try:
        status = run()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    sys.exit(status)

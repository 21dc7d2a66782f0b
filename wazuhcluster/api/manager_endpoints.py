"""The Manager family and the node-local part of the Cluster family: ``/manager/*`` about
the master, ``/cluster/{node_id}/*`` about any connected node.

Every answer comes from the node concerned through :meth:`IApiNode.ask_node`: the master
answers for itself, a worker is asked over the cluster link (bounded in time and size).
Access follows Wazuh: on a cluster, ``/manager/*`` needs ``cluster:read`` on the master's
node (``manager:read`` when the cluster is disabled), ``/cluster/{node_id}/*`` needs
``cluster:read`` on that node; an unknown or disconnected node is a failed item (1730).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wazuhcluster.analysis.alert_totals import parse_date
from wazuhcluster.api import params as p
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import ApiError, bad_request, wazuh_error
from wazuhcluster.api.replies import Reply, add_failure, envelope, same_message
from wazuhcluster.api.routes import Call, Handler, Route
from wazuhcluster.api.version_check import installation_uid, update_information
from wazuhcluster.config.api_settings import api_dir

#: The most a configuration file may weigh JSON-encoded: it crosses the cluster link in one
#: AMP value (64 KiB); the node itself refuses a file over 48 KiB.
MAX_CONFIG_JSON = 60_000
#: Seconds before a node asked to restart stops (the answer leaves first; workers go before
#: the master, which relays their answers).
WORKER_RESTART_DELAY = 1.0
MASTER_RESTART_DELAY = 3.0
#: Wazuh's component and configuration values (the API's path enums).
COMPONENTS = (
    "agent",
    "agentless",
    "analysis",
    "auth",
    "com",
    "csyslog",
    "integrator",
    "logcollector",
    "mail",
    "monitor",
    "request",
    "syscheck",
    "wazuh-db",
    "wmodules",
)
CONFIGURATIONS = (
    "client",
    "buffer",
    "labels",
    "internal",
    "anti_tampering",
    "agentless",
    "global",
    "active_response",
    "alerts",
    "command",
    "rules",
    "decoders",
    "auth",
    "logging",
    "reports",
    "active-response",
    "cluster",
    "csyslog",
    "integration",
    "localfile",
    "socket",
    "remote",
    "syscheck",
    "rootcheck",
    "wdb",
    "wmodules",
    "rule_test",
)
#: Wazuh's log levels (the ``level`` filter of the logs).
LOG_LEVELS = ("critical", "debug", "debug2", "error", "info", "warning")
#: The most log records one call returns (Wazuh's bound).
MAX_LOG_LINES = 500
XML = b"application/xml; charset=utf-8"

_DAEMON_MESSAGES = (
    "Statistical information for each daemon was successfully read",
    "Could not read statistical information for some daemons",
    "Could not read statistical information for any daemon",
)
_MESSAGES = {
    "active_configuration": (
        "Active configuration was successfully read in specified node",
        "Could not read active configuration in some nodes",
        "Could not read active configuration in specified node",
    ),
    "daemons_stats": _DAEMON_MESSAGES,
    "info": same_message("Basic information was successfully read in specified node"),
    "status": same_message("Processes status was successfully read in specified node"),
    "configuration": same_message("Configuration was successfully read in specified node"),
    "logs": same_message("Logs were successfully read in specified node"),
    "logs_summary": same_message("Log was successfully summarized in specified node"),
    "analysisd": same_message("Statistical information for each node was successfully read"),
    "remoted": same_message("Statistical information for each node was successfully read"),
    "stats": same_message("Statistical information for each node was successfully read"),
    "stats_hourly": same_message(
        "Statistical information per hour for each node was successfully read"
    ),
    "stats_weekly": same_message(
        "Statistical information per week for each node was successfully read"
    ),
}
#: The daemons ``daemons/stats`` knows (Wazuh's ``daemons_list`` values).
STATS_DAEMONS = ("wazuh-remoted", "wazuh-analysisd", "wazuh-db")
#: The questions whose answer is a list of items.
_LISTS = ("logs", "logs_summary", "stats", "stats_hourly", "stats_weekly")


class ManagerEndpoints:
    """``/manager/*`` and ``/cluster/{node_id}/*`` (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    @property
    def local(self) -> str:
        """The master's node name."""
        return self.context.node.config.cluster.node_name

    def _require_manager(self, call: Call, verb: str = "read") -> None:
        if self.context.node.config.cluster.disabled:
            call.access.require(f"manager:{verb}")
        else:
            call.access.require_one(f"cluster:{verb}", "node:id", self.local)

    async def _ask(
        self, node: str, question: str, arguments: dict[str, Any], failed: dict[int, list[str]]
    ) -> dict[str, Any] | None:
        """The node's answer, or None with the node recorded in ``failed``."""
        try:
            return await self.context.node.ask_node(node, question, arguments)
        except ApiError as error:
            if error.code in (1730, 3020, 3022):
                add_failure(failed, error.code, node)
                return None
            raise

    async def _reply(self, call: Call, node: str, question: str) -> Reply:
        failed: dict[int, list[str]] = {}
        arguments = _arguments(call, question)
        answer = await self._ask(node, question, arguments, failed)
        messages = _MESSAGES[question]
        if answer is None:
            return Reply(envelope([], failed, *messages))
        if question == "configuration" and "raw" in answer:
            return Reply(str(answer["raw"]), content_type=XML)
        if question == "active_configuration":
            if "error" in answer:
                add_failure(failed, int(answer["error"]), node)
                return Reply(envelope([], failed, *messages))
            return Reply(envelope([answer.get("item", {})], {}, *messages))
        if question == "daemons_stats":
            for daemon in answer.get("failed", []):
                add_failure(failed, 1017, daemon)
            return Reply(envelope(list(answer.get("items", [])), failed, *messages))
        if question in _LISTS:
            items = list(answer.get("items", []))
            return Reply(envelope(items, {}, *messages, answer.get("total", len(items))))
        return Reply(envelope([answer], {}, *messages))

    # --- /manager -----------------------------------------------------------------------
    def _manager(self, question: str) -> Handler:
        async def handler(call: Call) -> Reply:
            self._require_manager(call)
            return await self._reply(call, self.local, question)

        handler.__doc__ = f"GET /manager/... ({question}) about the master."
        return handler

    async def manager_validation(self, call: Call) -> Reply:
        """GET /manager/configuration/validation."""
        self._require_manager(call)
        return await self._validate([self.local])

    async def manager_reload(self, call: Call) -> Reply:
        """PUT /manager/analysisd/reload: reload the master's ruleset."""
        self._require_manager(call)
        self._require_manager(call, "restart")
        return await self._reload([self.local])

    async def manager_update_config(self, call: Call) -> Reply:
        """PUT /manager/configuration: replace the master's configuration file."""
        self._require_manager(call, "update_config")
        return await self._update_config(call, self.local)

    async def node_update_config(self, call: Call) -> Reply:
        """PUT /cluster/{node_id}/configuration: replace one node's configuration file."""
        node = call.path["node_id"]
        call.access.require_one("cluster:update_config", "node:id", node)
        return await self._update_config(call, node)

    async def _update_config(self, call: Call, node: str) -> Reply:
        """Ask ``node`` to check and write the body as its configuration file (module
        :mod:`wazuhcluster.node.config_file`); a refused file is a failed item with the
        reason, the node's file unchanged."""
        try:
            text = bytes(call.body).decode("utf-8")
        except UnicodeDecodeError:
            raise wazuh_error(1911) from None
        suffix = "" if self.context.node.config.cluster.disabled else " in specified node"
        messages = (
            f"Configuration was successfully updated{suffix}",
            "Could not update configuration in some nodes",
            f"Could not update configuration{suffix}",
        )
        failed: dict[int, list[str]] = {}
        reason = ""
        answer: dict[str, Any] | None = None
        if len(json.dumps(text)) > MAX_CONFIG_JSON:
            reason = f"the file is larger than {MAX_CONFIG_JSON} bytes once JSON-encoded"
        else:
            answer = await self._ask(node, "update_configuration", {"text": text}, failed)
            if answer is not None and "error" in answer:
                reason = str(answer.get("reason", ""))[:1024]
        if reason:
            add_failure(failed, 1125, node)
            body = envelope([], failed, *messages)
            error = body["data"]["failed_items"][0]["error"]
            error["message"] = f"{error['message']}: {reason}"
            self.context.log.warn(
                "Configuration of {node} refused through the API: {reason}",
                node=node,
                reason=reason,
            )
            return Reply(body)
        if answer is None:
            return Reply(envelope([], failed, *messages))
        self.context.log.info(
            "Configuration of {node} replaced through the API (used from its next restart)",
            node=node,
        )
        return Reply(envelope([node], {}, *messages))

    async def manager_restart(self, call: Call) -> Reply:
        """PUT /manager/restart: restart the master (202)."""
        self._require_manager(call)
        self._require_manager(call, "restart")
        return await self._restart([self.local])

    async def cluster_restart(self, call: Call) -> Reply:
        """PUT /cluster/restart: restart every (or the listed) node, the master last (202).

        As Wazuh's: when the master is meant (no list, or named), the caller must read and
        restart it, else 403 (4000) and nothing restarts; other nodes the caller may not
        restart are left out when none were listed, failed items (4000) when listed."""
        wanted = call.params.get("nodes_list")
        if not wanted or self.local in wanted:
            call.access.require_one("cluster:read", "node:id", self.local)
            call.access.require_one("cluster:restart", "node:id", self.local)
        failed: dict[int, list[str]] = {}
        nodes = self._nodes(call, "cluster:read", failed)
        nodes = call.access.select("cluster:restart", "node:id", nodes, failed, bool(wanted))
        return await self._restart(nodes, failed)

    async def _restart(
        self, nodes: Sequence[str], failed: dict[int, list[str]] | None = None
    ) -> Reply:
        """Ask each node to restart once it has checked its configuration file (a file that
        would not start it is a failed item, 1908, with the reason). Workers are asked
        first and stop sooner; the master, which answers this call, stops last."""
        failed = failed if failed is not None else {}
        ordered = sorted(nodes, key=lambda name: name == self.local)
        items: list[str] = []
        reasons: list[str] = []
        for node in ordered:
            delay = MASTER_RESTART_DELAY if node == self.local else WORKER_RESTART_DELAY
            answer = await self._ask(node, "restart", {"delay": delay}, failed)
            if answer is None:
                continue
            if "error" in answer:
                add_failure(failed, int(answer["error"]), node)
                reasons.append(f"{node}: {str(answer.get('reason', ''))[:512]}")
                continue
            items.append(node)
        body = envelope(
            items,
            failed,
            "Restart request sent to all specified nodes",
            "Could not send restart request to some specified nodes",
            "Could not send restart request to any node",
        )
        for entry in body["data"]["failed_items"]:
            if entry["error"]["code"] == 1908 and reasons:
                entry["error"]["message"] += ": " + "; ".join(reasons)
        if items:
            self.context.log.info(
                "Restart of {nodes} requested through the API", nodes=", ".join(items)
            )
        return Reply(body, status=202)

    async def version_check(self, call: Call) -> Reply:
        """GET /manager/version/check: no update service here, so Wazuh's answer with the
        update check disabled (see :mod:`wazuhcluster.api.version_check`)."""
        folder = api_dir(self.context.node.config.home)
        uid: str = await self.context.run_in_thread(installation_uid, folder)
        return Reply({"data": update_information(uid), "error": 0})

    # --- /cluster/{node_id} -------------------------------------------------------------
    def _node(self, question: str) -> Handler:
        async def handler(call: Call) -> Reply:
            node = call.path["node_id"]
            call.access.require_one("cluster:read", "node:id", node)
            return await self._reply(call, node, question)

        handler.__doc__ = f"GET /cluster/{{node_id}}/... ({question}) about one node."
        return handler

    def _nodes(self, call: Call, action: str, failed: dict[int, list[str]]) -> list[str]:
        known = [row["name"] for row in self.context.node.nodes()]
        wanted = call.params.get("nodes_list")
        names = list(wanted) if wanted else known
        kept = call.access.select(action, "node:id", names, failed, bool(wanted))
        chosen = []
        for name in kept:
            if name in known:
                chosen.append(name)
            else:
                add_failure(failed, 1730, name)
        return chosen

    async def cluster_validation(self, call: Call) -> Reply:
        """GET /cluster/configuration/validation: every (or the listed) node."""
        failed: dict[int, list[str]] = {}
        nodes = self._nodes(call, "cluster:read", failed)
        return await self._validate(nodes, failed)

    async def cluster_reload(self, call: Call) -> Reply:
        """PUT /cluster/analysisd/reload: reload the ruleset of every (or the listed) node."""
        failed: dict[int, list[str]] = {}
        nodes = self._nodes(call, "cluster:read", failed)
        nodes = call.access.select("cluster:restart", "node:id", nodes, failed, True)
        return await self._reload(nodes, failed)

    async def _validate(
        self, nodes: Sequence[str], failed: dict[int, list[str]] | None = None
    ) -> Reply:
        failed = failed if failed is not None else {}
        items = []
        for node in nodes:
            answer = await self._ask(node, "validation", {}, failed)
            if answer is None:
                continue
            if answer.get("status") == "OK":
                items.append({"name": node, "status": "OK"})
            else:
                add_failure(failed, 1908, node)
        messages = (
            "Validation was successfully checked in all nodes",
            "Validation could not be checked in some nodes",
            "Validation could not be checked in any node",
        )
        return Reply(envelope(items, failed, *messages))

    async def _reload(
        self, nodes: Sequence[str], failed: dict[int, list[str]] | None = None
    ) -> Reply:
        failed = failed if failed is not None else {}
        items = []
        for node in nodes:
            answer = await self._ask(node, "reload", {}, failed)
            if answer is not None:
                # The node reloaded; a ruleset that does not load keeps the old one (its log).
                items.append({"name": node, "msg": "Ruleset reload requested."})
        messages = (
            "Reload request sent to all specified nodes",
            "Could not send reload request to some specified nodes",
            "Could not send reload request to any node",
        )
        return Reply(envelope(items, failed, *messages))

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        config = {**common, "raw": p.boolean, "section": p.names, "field": p.names}
        logs = {
            **common,
            "offset": p.integer(0, 2**31 - 1),
            "limit": p.integer(1, MAX_LOG_LINES),
            "sort": p.sort,
            "search": p.search,
            "tag": p.names,
            "level": p.choice(*LOG_LEVELS),
            "q": p.text,
            "select": p.comma_list(p.names),
            "distinct": p.boolean,
        }
        node = {"node_id": p.names}
        dated = {**common, "date": date}
        active = {
            "node_id": p.names,
            "component": p.choice(*COMPONENTS),
            "configuration": p.choice(*CONFIGURATIONS),
        }
        daemons = {**common, "daemons_list": p.comma_list(p.choice(*STATS_DAEMONS))}
        nodes = {**common, "nodes_list": p.comma_list(p.names)}
        read = ("manager:read",)
        cluster_read = ("cluster:read",)
        m = self._manager
        n = self._node
        return [
            Route("GET", "/manager/info", m("info"), common, actions=read),
            Route("GET", "/manager/status", m("status"), common, actions=read),
            Route(
                "GET",
                "/manager/configuration",
                m("configuration"),
                {**config, "distinct": p.boolean},
                actions=read,
            ),
            Route("GET", "/manager/logs", m("logs"), logs, actions=read),
            Route("GET", "/manager/logs/summary", m("logs_summary"), common, actions=read),
            Route("GET", "/manager/stats/analysisd", m("analysisd"), common, actions=read),
            Route("GET", "/manager/stats/remoted", m("remoted"), common, actions=read),
            Route("GET", "/manager/stats", m("stats"), dated, actions=read),
            Route("GET", "/manager/daemons/stats", m("daemons_stats"), daemons, actions=read),
            Route(
                "GET",
                "/manager/configuration/{component}/{configuration}",
                m("active_configuration"),
                common,
                {key: active[key] for key in ("component", "configuration")},
                actions=read,
            ),
            Route("GET", "/manager/stats/hourly", m("stats_hourly"), common, actions=read),
            Route("GET", "/manager/stats/weekly", m("stats_weekly"), common, actions=read),
            Route(
                "GET",
                "/manager/configuration/validation",
                self.manager_validation,
                common,
                actions=read,
            ),
            Route(
                "PUT",
                "/manager/analysisd/reload",
                self.manager_reload,
                common,
                actions=("manager:read", "manager:restart"),
            ),
            Route("GET", "/cluster/{node_id}/info", n("info"), common, node, actions=cluster_read),
            Route(
                "GET", "/cluster/{node_id}/status", n("status"), common, node, actions=cluster_read
            ),
            Route(
                "GET",
                "/cluster/{node_id}/configuration",
                n("configuration"),
                config,
                node,
                actions=cluster_read,
            ),
            Route("GET", "/cluster/{node_id}/logs", n("logs"), logs, node, actions=cluster_read),
            Route(
                "GET",
                "/cluster/{node_id}/logs/summary",
                n("logs_summary"),
                common,
                node,
                actions=cluster_read,
            ),
            Route(
                "GET",
                "/cluster/{node_id}/stats/analysisd",
                n("analysisd"),
                common,
                node,
                actions=cluster_read,
            ),
            Route(
                "GET",
                "/cluster/{node_id}/stats/remoted",
                n("remoted"),
                common,
                node,
                actions=cluster_read,
            ),
            Route("GET", "/cluster/{node_id}/stats", n("stats"), dated, node, actions=cluster_read),
            Route(
                "GET",
                "/cluster/{node_id}/configuration/{component}/{configuration}",
                n("active_configuration"),
                common,
                active,
                actions=cluster_read,
            ),
            Route(
                "GET",
                "/cluster/{node_id}/daemons/stats",
                n("daemons_stats"),
                daemons,
                node,
                actions=cluster_read,
            ),
            Route(
                "GET",
                "/cluster/{node_id}/stats/hourly",
                n("stats_hourly"),
                common,
                node,
                actions=cluster_read,
            ),
            Route(
                "GET",
                "/cluster/{node_id}/stats/weekly",
                n("stats_weekly"),
                common,
                node,
                actions=cluster_read,
            ),
            Route(
                "GET",
                "/cluster/configuration/validation",
                self.cluster_validation,
                nodes,
                actions=cluster_read,
            ),
            Route(
                "PUT",
                "/manager/configuration",
                self.manager_update_config,
                common,
                body="xml",
                actions=("manager:update_config",),
            ),
            Route(
                "PUT",
                "/cluster/{node_id}/configuration",
                self.node_update_config,
                common,
                node,
                body="xml",
                actions=("cluster:update_config",),
            ),
            Route(
                "GET",
                "/manager/version/check",
                self.version_check,
                {"pretty": p.boolean, "force_query": p.boolean},
            ),
            Route(
                "PUT",
                "/manager/restart",
                self.manager_restart,
                {"pretty": p.boolean},
                actions=("manager:read", "manager:restart"),
            ),
            Route(
                "PUT",
                "/cluster/restart",
                self.cluster_restart,
                {"pretty": p.boolean, "nodes_list": p.comma_list(p.names)},
                actions=("cluster:read", "cluster:restart"),
            ),
            Route(
                "PUT",
                "/cluster/analysisd/reload",
                self.cluster_reload,
                nodes,
                actions=("cluster:read", "cluster:restart"),
            ),
        ]


def date(name: str, value: str) -> str:
    """A ``YYYY-MM-DD`` date."""
    try:
        parse_date(value)
    except ValueError:
        raise bad_request(f"'{value[:64]}' is not a 'date' ('{name}')") from None
    return value


def _arguments(call: Call, question: str) -> dict[str, Any]:
    """The call's parameters a node needs to answer ``question`` (JSON-ready)."""
    params = call.params
    if question == "configuration":
        return {key: params[key] for key in ("raw", "section", "field") if key in params}
    if question == "active_configuration":
        return {key: call.path[key] for key in ("component", "configuration")}
    if question == "daemons_stats":
        return {"daemons": list(dict.fromkeys(params.get("daemons_list") or STATS_DAEMONS))}
    if question == "stats":
        return {"date": params["date"]} if "date" in params else {}
    if question == "logs":
        found: dict[str, Any] = {
            key: params[key]
            for key in ("offset", "limit", "search", "tag", "level", "q", "distinct")
            if key in params
        }
        if "sort" in params:
            found["sort"] = [list(pair) for pair in params["sort"]]
        if "select" in params:
            found["select"] = list(params["select"])
        return found
    return {}

"""The agent-data family: an agent's FIM, SCA, rootcheck and inventory, wherever it reports.

``GET /syscheck/{agent_id}`` (and ``/last_scan``), ``/sca/{agent_id}``,
``/sca/{agent_id}/checks/{policy_id}``, ``/rootcheck/{agent_id}`` (and ``/last_scan``) and
``/syscollector/{agent_id}/{os,hardware,packages,processes,ports,netiface,netaddr,netproto,
hotfixes,users,groups,services,browser_extensions}``, with Wazuh's paths, filters and shapes;
``PUT /syscheck`` and ``PUT /rootcheck`` (agents told to scan now, through the node each is
connected to) and ``DELETE /syscheck/{agent_id}``, ``DELETE /rootcheck/{agent_id}`` (the
stored state emptied where it is kept). The
agent must exist (1701) and the caller needs the family's read action on it (``agent:id`` or
``agent:group``). The request goes to the node the agent reports to (the registry's
``node_name``) through the node's ``agent_data`` (on a master,
:class:`~wazuhcluster.master.agent_data.MasterAgentData`), which filters, sorts and pages
there; a node that cannot answer in time is Wazuh's 1000 with the reason.
"""

from __future__ import annotations

from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.access import group_members
from wazuhcluster.api.agent_data import AgentDataUnavailable, listing_to_json
from wazuhcluster.api.agent_listing import active_targets
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.api.interfaces import IAgentDataAsker
from wazuhcluster.api.replies import Reply, add_failure, envelope
from wazuhcluster.api.routes import Call, Handler, Route

_TEXT = p.text
#: The text filters of an agent's SCA policies and of one policy's checks (Wazuh's names).
SCA_POLICY_FILTERS = ("name", "description", "references")
SCA_CHECK_FILTERS = (
    "title",
    "description",
    "rationale",
    "remediation",
    "command",
    "reason",
    "file",
    "process",
    "directory",
    "registry",
    "references",
    "result",
    "condition",
)
#: Each route: path, kind, RBAC action, its filters, whether it lists (paging), messages.
_ALL = "All selected {} information was returned"
_SOME = "Some {} information was not returned"
_NONE = "No {} information was returned"
_INVENTORY_FILTERS: dict[str, tuple[str, ...]] = {
    "os": (),
    "hardware": (),
    "packages": ("vendor", "name", "architecture", "format", "version"),
    "processes": (
        "pid",
        "state",
        "ppid",
        "egroup",
        "euser",
        "fgroup",
        "name",
        "nlwp",
        "pgrp",
        "priority",
        "rgroup",
        "ruser",
        "sgroup",
        "suser",
    ),
    "ports": (
        "pid",
        "protocol",
        "local.ip",
        "local.port",
        "remote.ip",
        "tx_queue",
        "state",
        "process",
    ),
    "netiface": (
        "name",
        "adapter",
        "type",
        "state",
        "mtu",
        "tx.packets",
        "rx.packets",
        "tx.bytes",
        "rx.bytes",
        "tx.errors",
        "rx.errors",
        "tx.dropped",
        "rx.dropped",
    ),
    "netaddr": ("iface", "proto", "address", "broadcast", "netmask"),
    "netproto": ("iface", "type", "gateway", "dhcp"),
    "hotfixes": ("hotfix",),
    "users": (),
    "groups": (),
    "services": (),
    "browser_extensions": (),
}
#: Inventory kinds answered as one unpaged item (the others take offset, limit, sort...).
_UNPAGED = ("os", "hardware")
#: The all / some / none messages of each scan request and each clear.
_LAST_SCAN = "Last {} scan of the agent was returned"
_NO_LAST_SCAN = "No last scan information was returned"
_RUN_MESSAGES = {
    "syscheck": (
        "Syscheck scan was restarted on returned agents",
        "Syscheck scan was not restarted on some agents",
        "No syscheck scan was restarted",
    ),
    "rootcheck": (
        "Rootcheck scan was restarted on returned agents",
        "Rootcheck scan was not restarted on some agents",
        "No rootcheck scan was restarted",
    ),
}
_CLEAR_MESSAGES = {
    "syscheck": (
        "Syscheck database was cleared on returned agents",
        "Syscheck database was not cleared on some agents",
        "No syscheck database was cleared",
    ),
    "rootcheck": (
        "Rootcheck database was cleared on returned agents",
        "Rootcheck database was not cleared on some agents",
        "No rootcheck database was cleared",
    ),
}
#: What an agent is told to run a scan now (Wazuh's ``HC_SK_RESTART``, for both modules).
_SCAN_COMMAND = "syscheck restart"


class AgentDataEndpoints:
    """``/syscheck``, ``/sca``, ``/rootcheck``, ``/syscollector`` (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    async def _answer(
        self,
        call: Call,
        kind: str,
        action: str,
        filters: tuple[str, ...],
        words: str,
        policy_id: str | None = None,
        messages: tuple[str, str, str] | None = None,
    ) -> Reply:
        agent_id = call.path["agent_id"]
        context = self.context
        agent = await context.registry.get_agent(agent_id) if agent_id != "000" else None
        if agent is None and agent_id != "000":
            raise wazuh_error(1701, agent_id)
        groups = agent.groups if agent is not None else ()
        call.access.require_one(
            action, "agent:id", agent_id, group_members([(agent_id, tuple(groups))])
        )
        listing = p.listing(call.params)
        request: dict[str, Any] = {
            "agent_id": agent_id,
            "kind": kind,
            "listing": listing_to_json(listing),
            "filters": {
                name: call.params[name]
                for name in filters
                if name in call.params and not (name == "status" and call.params[name] == "all")
            },
        }
        if policy_id is not None:
            request["policy_id"] = policy_id
        asker = getattr(context.node, "agent_data", None)
        if asker is None:
            raise wazuh_error(1000, "this node keeps no agent data")
        node_name = agent.node_name if agent is not None else ""
        try:
            answer = await asker.ask(node_name, request)
        except ApiError:
            raise
        except AgentDataUnavailable as error:
            raise wazuh_error(error.code, str(error)) from None
        except Exception as error:
            raise wazuh_error(1000, str(error)) from None
        problem = answer.get("error")
        if isinstance(problem, dict):
            code = problem.get("code")
            detail = str(problem.get("detail", ""))
            if isinstance(code, int) and code != 1000:
                raise ApiError(400, "Bad Request", detail, code)
            raise wazuh_error(1000, detail)
        items = answer.get("items") or []
        total = int(answer.get("total") or 0)
        if messages is None:
            messages = (_ALL.format(words), _SOME.format(words), _NONE.format(words))
        return Reply(envelope(items, {}, *messages, total))

    async def syscheck(self, call: Call) -> Reply:
        """GET /syscheck/{agent_id}: the agent's FIM entries."""
        filters = ("file", "arch", "value.name", "value.type", "type", "md5", "sha1", "sha256")
        return await self._answer(call, "syscheck", "syscheck:read", filters, "syscheck")

    async def sca(self, call: Call) -> Reply:
        """GET /sca/{agent_id}: the agent's SCA policies and their last scans."""
        return await self._answer(call, "sca", "sca:read", SCA_POLICY_FILTERS, "SCA")

    async def sca_checks(self, call: Call) -> Reply:
        """GET /sca/{agent_id}/checks/{policy_id}: one policy's checks."""
        return await self._answer(
            call, "sca_checks", "sca:read", SCA_CHECK_FILTERS, "SCA", call.path["policy_id"]
        )

    async def rootcheck(self, call: Call) -> Reply:
        """GET /rootcheck/{agent_id}: the agent's rootcheck findings."""
        filters = ("status", "pci_dss", "cis")
        return await self._answer(call, "rootcheck", "rootcheck:read", filters, "rootcheck")

    def _last_scan(self, module: str) -> Handler:
        async def handler(call: Call) -> Reply:
            messages = (_LAST_SCAN.format(module), _NO_LAST_SCAN, _NO_LAST_SCAN)
            return await self._answer(
                call, f"{module}_last_scan", f"{module}:read", (), module, None, messages
            )

        handler.__doc__ = f"GET /{module}/{{agent_id}}/last_scan: start and end of the last scan."
        return handler

    def _run_scan(self, module: str) -> Handler:
        async def handler(call: Call) -> Reply:
            return await self.run_scan(call, module)

        handler.__doc__ = f"PUT /{module}: ask agents to run a scan now."
        return handler

    def _clear(self, module: str) -> Handler:
        async def handler(call: Call) -> Reply:
            return await self.clear(call, module)

        handler.__doc__ = f"DELETE /{module}/{{agent_id}}: clear the agent's stored {module}."
        return handler

    def _asker(self) -> IAgentDataAsker:
        asker: IAgentDataAsker | None = getattr(self.context.node, "agent_data", None)
        if asker is None:
            raise wazuh_error(1000, "this node keeps no agent data")
        return asker

    async def run_scan(self, call: Call, module: str) -> Reply:
        """PUT /syscheck, PUT /rootcheck: send ``#!-syscheck restart`` to the chosen active
        agents through the node each is connected to (Wazuh sends it for both modules).

        Without ``agents_list``: every active agent the caller may act on. With it: unknown
        ids fail with 1701, agents not active with 1707, 000 (the manager runs no agent
        scans here) with 1703, ids the caller may not use with 4000.
        """
        agents = await self.context.registry.list_agents()
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("agents_list")
        chosen = active_targets(call.access, f"{module}:run", agents, wanted, failed)
        sent: list[str] = []
        if chosen:
            by_node: dict[str, list[str]] = {}
            for agent in sorted(chosen, key=lambda a: a.id):
                by_node.setdefault(agent.node_name or "", []).append(agent.id)
            sent, missed = await self._asker().send_command(by_node, _SCAN_COMMAND)
            for code, ids in missed.items():
                for agent_id in ids:
                    add_failure(failed, code, agent_id)
        return Reply(envelope(sent, failed, *_RUN_MESSAGES[module]))

    async def clear(self, call: Call, module: str) -> Reply:
        """DELETE /syscheck/{agent_id}, DELETE /rootcheck/{agent_id}: empty the agent's
        stored FIM entries and scan dates, or rootcheck findings, on the node that holds
        them. An unknown agent fails with 1701, one the caller may not use with 4000 (403),
        a node that cannot be reached with its 3022, 3020 or 1000."""
        agent_id = call.path["agent_id"]
        agent = await self.context.registry.get_agent(agent_id) if agent_id != "000" else None
        failed: dict[int, list[str]] = {}
        groups = agent.groups if agent is not None else ()
        kept = call.access.select(
            f"{module}:clear",
            "agent:id",
            [agent_id],
            failed,
            True,
            group_members([(agent_id, tuple(groups))]),
        )
        cleared: list[str] = []
        if kept and agent is None and agent_id != "000":
            add_failure(failed, 1701, agent_id)
        elif kept:
            node_name = agent.node_name if agent is not None else ""
            request = {"agent_id": agent_id, "kind": module, "clear": True}
            try:
                answer = await self._asker().ask(node_name, request)
            except AgentDataUnavailable as error:
                add_failure(failed, error.code, agent_id)
            else:
                if isinstance(answer.get("error"), dict):
                    add_failure(failed, 1000, agent_id)
                else:
                    cleared.append(agent_id)
        return Reply(envelope(cleared, failed, *_CLEAR_MESSAGES[module]))

    def _inventory(self, name: str) -> Handler:
        filters = _INVENTORY_FILTERS[name]

        async def handler(call: Call) -> Reply:
            return await self._answer(
                call, f"syscollector/{name}", "syscollector:read", filters, "syscollector"
            )

        handler.__doc__ = f"GET /syscollector/{{agent_id}}/{name}."
        return handler

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        path = {"agent_id": p.agent_id}
        status = p.choice("all", "outstanding", "solved")
        routes = [
            Route(
                "GET",
                "/syscheck/{agent_id}",
                self.syscheck,
                {
                    **common,
                    **p.LISTING,
                    **{name: _TEXT for name in ("file", "arch", "value.name", "value.type")},
                    "type": p.choice("file", "registry_key", "registry_value"),
                    **{name: _TEXT for name in ("md5", "sha1", "sha256", "hash", "summary")},
                },
                path,
                actions=("syscheck:read",),
            ),
            Route(
                "GET",
                "/sca/{agent_id}",
                self.sca,
                {**common, **p.LISTING, **{name: _TEXT for name in SCA_POLICY_FILTERS}},
                path,
                actions=("sca:read",),
            ),
            Route(
                "GET",
                "/sca/{agent_id}/checks/{policy_id}",
                self.sca_checks,
                {
                    **common,
                    **p.LISTING,
                    **{name: _TEXT for name in SCA_CHECK_FILTERS},
                },
                {**path, "policy_id": p.text},
                actions=("sca:read",),
            ),
            Route(
                "GET",
                "/rootcheck/{agent_id}",
                self.rootcheck,
                {**common, **p.LISTING, "status": status, "pci_dss": _TEXT, "cis": _TEXT},
                path,
                actions=("rootcheck:read",),
            ),
        ]
        for module in ("syscheck", "rootcheck"):
            routes += [
                Route(
                    "GET",
                    f"/{module}/{{agent_id}}/last_scan",
                    self._last_scan(module),
                    dict(common),
                    path,
                    actions=(f"{module}:read",),
                ),
                Route(
                    "PUT",
                    f"/{module}",
                    self._run_scan(module),
                    {**common, "agents_list": p.comma_list(p.agent_id)},
                    actions=(f"{module}:run",),
                ),
                Route(
                    "DELETE",
                    f"/{module}/{{agent_id}}",
                    self._clear(module),
                    dict(common),
                    path,
                    actions=(f"{module}:clear",),
                ),
            ]
        for name, filters in _INVENTORY_FILTERS.items():
            listed = {"select": p.LISTING["select"]} if name in _UNPAGED else {**p.LISTING}
            routes.append(
                Route(
                    "GET",
                    f"/syscollector/{{agent_id}}/{name}",
                    self._inventory(name),
                    {**common, **listed, **{field: _TEXT for field in filters}},
                    path,
                    actions=("syscollector:read",),
                )
            )
        return routes

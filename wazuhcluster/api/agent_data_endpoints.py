"""The agent-data family: an agent's FIM, SCA, rootcheck and inventory, wherever it reports.

``GET /syscheck/{agent_id}``, ``/sca/{agent_id}``, ``/sca/{agent_id}/checks/{policy_id}``,
``/rootcheck/{agent_id}`` and ``/syscollector/{agent_id}/{os,hardware,packages,processes,
ports,netiface,netaddr,netproto,hotfixes}``, with Wazuh's paths, filters and shapes. The
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
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.api.replies import Reply, envelope
from wazuhcluster.api.routes import Call, Route

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
}


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
        return Reply(
            envelope(
                items,
                {},
                _ALL.format(words),
                _SOME.format(words),
                _NONE.format(words),
                total,
            )
        )

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

    def _inventory(self, name: str) -> Any:
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
        for name, filters in _INVENTORY_FILTERS.items():
            listed = {**p.LISTING} if filters else {"select": p.LISTING["select"]}
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

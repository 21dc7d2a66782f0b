"""What each API call does: one coroutine per route, over the master node and registry.

:class:`Endpoints` turns a validated :class:`Call` into a :class:`Reply` (or raises an
:class:`~wazuhcluster.api.errors.ApiError`); :meth:`Endpoints.routes` lists the routes
with their parameters. HTTP plumbing (routing, bodies, tokens on the wire) is in
:mod:`wazuhcluster.api.resource`. Blocking work (password hashing, reading group files)
goes through ``run_in_thread``; registry calls go through the async registry's thread.
A call that fails validation changes nothing: every check runs before the first write.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from attrs import define, field, frozen
from defusedxml import ElementTree as SafeElementTree
from twisted.internet.defer import Deferred, DeferredSemaphore

from wazuhcluster import WAZUH_VERSION, __version__
from wazuhcluster.api import params as p
from wazuhcluster.api.auth import LoginThrottle, TokenAuthority
from wazuhcluster.api.errors import ApiError, bad_request, failed_item, unauthorized, wazuh_error
from wazuhcluster.api.health import OK_VERDICT, health_items, ruleset_synced
from wazuhcluster.api.query import Listing, apply_listing, check_listing, field_value, parse_q
from wazuhcluster.api.users import UserStore
from wazuhcluster.api.views import (
    AGENT_FIELDS,
    GROUP_FIELDS,
    GROUP_FILE_FIELDS,
    HASHES,
    NODE_FIELDS,
    agent_view,
    file_digest,
    group_files_view,
    group_view,
    iso,
    manager_view,
    merged_path,
)
from wazuhcluster.registry.groups import AGENT_CONF, DEFAULT_GROUP
from wazuhcluster.registry.model import (
    Agent,
    DuplicateIP,
    DuplicateName,
    GroupExists,
    InvalidValue,
    UnknownAgent,
    UnknownGroup,
    format_agent_id,
)
from wazuhcluster.registry.store import Registry
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

JSON = b"application/json; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
MAX_AGENT_CONF = 1024 * 1024
MAX_CONCURRENT_LOGINS = 2
AGENT_STATUSES = ("active", "pending", "never_connected", "disconnected")


class MasterView(Protocol):
    """What the API reads from the master node (see ``wazuhcluster.master.node.MasterNode``)."""

    config: Any
    clock: Any
    workers: Any

    def nodes(self) -> list[dict[str, str]]:
        """Master first, then connected workers: name, type, version, ip."""

    def health(self) -> dict[str, Any]:
        """Health data in the shape of Wazuh's ``get_health``."""


@define
class ApiHooks:
    """What the node may plug into the API (every hook is optional).

    ``reconnect(agent_ids)`` asks the given active agents to reconnect (it may return a
    Deferred); ``agents_added(agents)`` and ``agents_removed(agent_ids)`` tell the node
    about registry changes made through the API (e.g. to push keys to the workers).
    """

    reconnect: Callable[[list[str]], object] | None = None
    agents_added: Callable[[list[Agent]], object] | None = None
    agents_removed: Callable[[list[str]], object] | None = None


@frozen
class Call:
    """One validated request: parameters, path arguments, body and who sent it."""

    params: Mapping[str, Any] = field(factory=dict)
    path: Mapping[str, str] = field(factory=dict)
    body: Any = None
    client_ip: str = ""
    authorization: bytes | None = None
    user: str | None = None


@frozen
class Reply:
    """A successful answer."""

    body: Any
    status: int = 200
    content_type: bytes = JSON


Handler = Callable[[Call], Awaitable[Reply]]


@frozen
class Route:
    """A method and path template (``/agents/{agent_id}``) with its handler and parameters.

    ``body`` is ``"json"`` or ``"xml"`` for routes that take one; ``required`` names the
    query parameters that must be present; ``authenticated`` is False only for login.
    """

    method: str
    template: str
    handler: Handler
    params: Mapping[str, p.Parser]
    path_params: Mapping[str, p.Parser] = field(factory=dict)
    required: tuple[str, ...] = ()
    body: str | None = None
    authenticated: bool = True

    @property
    def pattern(self) -> re.Pattern[str]:
        """The template as a regular expression over the decoded path."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(regex + r"\Z")


def envelope(
    items: list[Any],
    failed: Mapping[int, list[str]],
    all_msg: str,
    some_msg: str,
    none_msg: str,
    total: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Wazuh's multi-item answer: affected and failed items, a message and an error level.

    ``error`` is 0 when nothing failed, 1 when some items failed, 2 when all did.
    """
    failed_items = [failed_item(code, ids) for code, ids in sorted(failed.items()) if ids]
    failed_count = sum(len(ids) for ids in failed.values())
    if not failed_count:
        message, error = all_msg, 0
    elif items:
        message, error = some_msg, 1
    else:
        message, error = none_msg, 2
    data: dict[str, Any] = {
        "affected_items": items,
        "total_affected_items": len(items) if total is None else total,
        "total_failed_items": failed_count,
        "failed_items": failed_items,
    }
    if extra:
        data.update(extra)
    return {"data": data, "message": message, "error": error}


def _add_failure(failed: dict[int, list[str]], code: int, item: str) -> None:
    failed.setdefault(code, []).append(item)


def _normal_id(agent_id: str) -> str:
    return format_agent_id(int(agent_id))


def validate_agent_conf(data: bytes) -> None:
    """Refuse an agent.conf that is empty, not UTF-8, not XML, or not ``<agent_config>`` blocks."""
    if not data.strip():
        raise wazuh_error(4001)
    if len(data) > MAX_AGENT_CONF:
        raise bad_request(f"agent.conf is larger than {MAX_AGENT_CONF} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise wazuh_error(1113, f"not UTF-8 text (byte {error.start})") from None
    body = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    try:
        root = SafeElementTree.fromstring(f"<root>{body}</root>")
    except Exception as error:  # defusedxml raises several unrelated types
        raise wazuh_error(1113, str(error)) from None
    others = sorted({child.tag for child in root if child.tag != "agent_config"})
    if others or len(root) == 0:
        found = ", ".join(str(tag) for tag in others) or "nothing"
        raise wazuh_error(1113, f"expected <agent_config> blocks, found {found}")


class Endpoints:
    """The API's behaviour (see module docstring)."""

    def __init__(
        self,
        node: MasterView,
        registry: Any,
        tokens: TokenAuthority,
        users: UserStore,
        throttle: LoginThrottle,
        run_in_thread: RunInThread,
        hooks: ApiHooks | None = None,
        hostname: str | None = None,
    ) -> None:
        self.node = node
        self._registry = registry
        self.tokens = tokens
        self.users = users
        self.throttle = throttle
        self.run_in_thread = run_in_thread
        self.hooks = hooks or ApiHooks()
        self.hostname = hostname or socket.gethostname()
        self.log = ClusterLog("Master", "API")
        # Each password check costs tens of MiB and milliseconds of CPU: a few at a time.
        self._login_slots = DeferredSemaphore(MAX_CONCURRENT_LOGINS)
        home = node.config.home
        self.shared: Path = home.shared
        self.multigroups: Path = home.root / "var" / "multigroups"

    @property
    def registry(self) -> Any:
        """The async registry (a provider with ``.registry``, e.g. RegistryService, is resolved)."""
        found = self._registry
        if hasattr(found, "list_agents"):
            return found
        return found.registry

    def now(self) -> float:
        """The node's clock."""
        return float(self.node.clock.seconds())

    # --- security -----------------------------------------------------------------------
    async def login(self, call: Call) -> Reply:
        """POST /security/user/authenticate: HTTP basic credentials → a JWT."""
        ip = call.client_ip
        if self.throttle.blocked(ip):
            raise wazuh_error(6000)
        name, password = self._basic(call.authorization)
        valid = name is not None and await self._login_slots.run(
            self.run_in_thread, self.users.check, name, password
        )
        if not valid:
            self.throttle.failed(ip)
            self.log.warn("API login refused for {user!r} from {ip}", user=name, ip=ip)
            raise unauthorized("Invalid credentials")
        assert name is not None
        token = self.tokens.issue(name)
        if call.params.get("raw"):
            return Reply(token, content_type=TEXT)
        return Reply({"data": {"token": token}, "error": 0})

    async def logout(self, call: Call) -> Reply:
        """DELETE /security/user/authenticate: revoke every token of the calling user."""
        assert call.user is not None
        self.tokens.revoke(call.user)
        message = f"User {call.user} was successfully logged out"
        return Reply({"message": message, "error": 0})

    @staticmethod
    def _basic(header: bytes | None) -> tuple[str | None, str]:
        if not header or len(header) > 4096:
            return None, ""
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return None, ""
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, ""
        name, sep, password = decoded.partition(":")
        return (name, password) if sep and name else (None, "")

    # --- info and cluster ---------------------------------------------------------------
    async def info(self, call: Call) -> Reply:
        """GET /: what this API is."""
        data = {
            "title": "Wazuh API REST",
            "api_version": WAZUH_VERSION,
            "revision": f"wazuhcluster {__version__}",
            "license_name": "GPL 2.0",
            "license_url": "https://github.com/wazuh/wazuh/blob/master/LICENSE",
            "hostname": self.hostname,
            "timestamp": str(iso(self.now())).replace("+00:00", "Z"),
        }
        return Reply({"data": data, "error": 0})

    async def cluster_status(self, call: Call) -> Reply:
        """GET /cluster/status."""
        enabled = "no" if self.node.config.cluster.disabled else "yes"
        return Reply({"data": {"enabled": enabled, "running": enabled}, "error": 0})

    async def local_info(self, call: Call) -> Reply:
        """GET /cluster/local/info."""
        cluster = self.node.config.cluster
        item = {"node": cluster.node_name, "cluster": cluster.name, "type": cluster.node_type}
        return Reply(envelope([item], {}, *_messages("All selected information was returned")))

    def _select_nodes(
        self, rows: list[dict[str, Any]], wanted: Sequence[str] | None
    ) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
        failed: dict[int, list[str]] = {}
        if not wanted:
            return rows, failed
        known = {row["name"] for row in rows}
        for name in wanted:
            if name not in known:
                _add_failure(failed, 1730, name)
        return [row for row in rows if row["name"] in wanted], failed

    async def cluster_nodes(self, call: Call) -> Reply:
        """GET /cluster/nodes."""
        listing = p.listing(call.params)
        rows, failed = self._select_nodes(self.node.nodes(), call.params.get("nodes_list"))
        if "type" in call.params:
            rows = [row for row in rows if row["type"] == call.params["type"]]
        page, total = apply_listing(rows, listing, NODE_FIELDS, ("name",))
        return Reply(
            envelope(page, failed, *_messages("All selected nodes information was returned"), total)
        )

    async def healthcheck(self, call: Call) -> Reply:
        """GET /cluster/healthcheck: Wazuh's report plus the node's verdicts."""
        health = self.node.health()
        active = await self.registry.list_agents(status="active")
        counts: dict[str, int] = {}
        for agent in active:
            counts[agent.node_name] = counts.get(agent.node_name, 0) + 1
        items = health_items(health, counts)
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("nodes_list")
        if wanted:
            known = {item["info"]["name"] for item in items}
            for name in wanted:
                if name not in known:
                    _add_failure(failed, 1730, name)
            items = [item for item in items if item["info"]["name"] in wanted]
        extra = {
            "n_connected_nodes": health["n_connected_nodes"],
            "verdict": dict(health.get("verdict") or OK_VERDICT),
        }
        return Reply(
            envelope(
                items,
                failed,
                *_messages("All selected nodes healthcheck information was returned"),
                extra=extra,
            )
        )

    async def ruleset_sync(self, call: Call) -> Reply:
        """GET /cluster/ruleset/synchronization: whether each node's synced files match."""
        health = self.node.health()
        items = []
        for name, entry in health["nodes"].items():
            synced = entry["info"]["type"] == "master" or ruleset_synced(entry.get("status", {}))
            items.append({"name": name, "synced": synced})
        items, failed = self._select_nodes(items, call.params.get("nodes_list"))
        message = "Nodes ruleset synchronization status was successfully read"
        return Reply(envelope(items, failed, *_messages(message)))

    # --- agents -------------------------------------------------------------------------
    def _merged_sums(self) -> Callable[[tuple[str, ...]], str | None]:
        cache: dict[tuple[str, ...], str | None] = {}

        def merged(groups: tuple[str, ...]) -> str | None:
            if groups not in cache:
                cache[groups] = file_digest(merged_path(self.shared, self.multigroups, groups))
            return cache[groups]

        return merged

    def _views(self, agents: list[Agent]) -> list[dict[str, Any]]:
        merged = self._merged_sums()
        return [agent_view(agent, merged) for agent in agents]

    def _older_than(self, agent: Agent, seconds: int, now: float) -> bool:
        seen = agent.last_keepalive if agent.last_keepalive is not None else agent.register_time
        return now - seen >= seconds

    async def list_agents(self, call: Call) -> Reply:
        """GET /agents."""
        params = call.params
        listing = p.listing(params)
        check_listing(listing, AGENT_FIELDS)
        # Single-valued filters narrow the registry query; every filter is applied again
        # on the views (cheaply), so agent 000 is filtered the same way. Not with an
        # agents_list, whose unknown ids must be told apart from filtered-out ones.
        pushed: dict[str, str] = {}
        if "agents_list" not in params:
            pushed = {key: params[key] for key in ("node_name", "group", "name") if key in params}
            statuses = params.get("status", ())
            if len(statuses) == 1:
                pushed["status"] = statuses[0]
        agents: list[Agent] = await self.registry.list_agents(**pushed)
        page, total, failed = await self.run_in_thread(self._agent_page, agents, params, listing)
        msgs = (
            "All selected agents information was returned",
            "Some agents information was not returned",
            "No agent information was returned",
        )
        return Reply(envelope(page, failed, *msgs, total))

    def _agent_page(
        self, agents: list[Agent], params: Mapping[str, Any], listing: Listing
    ) -> tuple[list[dict[str, Any]], int, dict[int, list[str]]]:
        """Views, filters and paging of GET /agents (in a thread: it walks every agent)."""
        now = self.now()
        failed: dict[int, list[str]] = {}
        keep_manager = True
        if "agents_list" in params:
            wanted = {_normal_id(agent_id) for agent_id in params["agents_list"]}
            present = {agent.id for agent in agents} | {"000"}
            for agent_id in sorted(wanted - present):
                _add_failure(failed, 1701, agent_id)
            agents = [agent for agent in agents if agent.id in wanted]
            keep_manager = "000" in wanted
        if "older_than" in params:
            agents = [a for a in agents if self._older_than(a, params["older_than"], now)]
            keep_manager = False
        views = self._views(agents)
        if keep_manager:
            cluster = self.node.config.cluster
            views.insert(0, manager_view(cluster.node_name, WAZUH_VERSION, now))
        views = _legacy_filters(views, params)
        page, total = apply_listing(views, listing, AGENT_FIELDS, ("id",))
        return page, total, failed

    async def summary_status(self, call: Call) -> Reply:
        """GET /agents/summary/status: counts by connection and by group-config sync."""
        agents = await self.registry.list_agents()
        data = await self.run_in_thread(self._summary, agents)
        return Reply({"data": data, "error": 0})

    def _summary(self, agents: list[Agent]) -> dict[str, Any]:
        """Counts of GET /agents/summary/status (in a thread: it walks every agent)."""
        connection = {status: 0 for status in AGENT_STATUSES}
        synced = 0
        for view in self._views(agents):
            connection[view["status"]] = connection.get(view["status"], 0) + 1
            synced += view["group_config_status"] == "synced"
        return {
            "connection": {**connection, "total": len(agents)},
            "configuration": {
                "synced": synced,
                "not_synced": len(agents) - synced,
                "total": len(agents),
            },
        }

    async def add_agent(self, call: Call) -> Reply:
        """POST /agents: register an agent; answer its id and base64 key line."""
        body = p.check_body(call.body, {"name": (str, True, 1024), "ip": (str, False, 64)})
        name, ip = body["name"], body.get("ip", "any")
        if len(name) > 128:
            raise wazuh_error(1738)
        if name == self.node.config.cluster.node_name:
            raise wazuh_error(1705, name)
        try:
            agent: Agent = await self.registry.enroll(name, ip)
        except DuplicateName:
            raise wazuh_error(1705, name) from None
        except DuplicateIP:
            raise wazuh_error(1706, ip) from None
        except InvalidValue as error:
            if error.what == "IP":
                raise wazuh_error(1706, ip) from None
            raise bad_request(f"'{name[:64]}' is not a valid agent name: {error.reason}") from None
        self.log.info("Agent {id} ({name}) added through the API", id=agent.id, name=agent.name)
        _notify(self.hooks.agents_added, [agent])
        key = base64.b64encode(agent.key_line().encode("utf-8")).decode("ascii")
        return Reply({"data": {"id": agent.id, "key": key}, "error": 0})

    async def delete_agents(self, call: Call) -> Reply:
        """DELETE /agents: remove the listed agents that match status and older_than."""
        params = call.params
        ids: tuple[str, ...] = params["agents_list"]
        statuses: tuple[str, ...] = params["status"]
        older_than: int = params.get("older_than", 7 * 86400)
        failed: dict[int, list[str]] = {}
        candidates = await self._chosen_agents(None if "all" in ids else ids, failed)
        now = self.now()
        if "all" not in statuses:
            candidates = [a for a in candidates if a.connection_status in statuses]
        candidates = [a for a in candidates if self._older_than(a, older_than, now)]
        views = await self.run_in_thread(self._views, candidates)
        views = _legacy_filters(views, {k: v for k, v in params.items() if k != "status"})
        if params.get("q"):
            expression = parse_q(params["q"], AGENT_FIELDS)
            views = [view for view in views if expression.matches(view)]
        targets = [view["id"] for view in views]
        removed: list[str] = await self.registry.remove_agents(targets) if targets else []
        if removed:
            self.log.info("Agents {ids} deleted through the API", ids=", ".join(removed))
            _notify(self.hooks.agents_removed, removed)
        msgs = (
            "All selected agents were deleted",
            "Some agents were not deleted",
            "No agents were deleted",
        )
        return Reply(envelope(sorted(removed), failed, *msgs))

    async def reconnect(self, call: Call) -> Reply:
        """PUT /agents/reconnect: ask active agents to reconnect (through the node's hook)."""
        agents: list[Agent] = await self.registry.list_agents()
        by_id = {agent.id: agent for agent in agents}
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("agents_list")
        chosen: list[Agent] = []
        if wanted is None:
            chosen = [agent for agent in agents if agent.connection_status == "active"]
        else:
            for raw in dict.fromkeys(wanted):
                agent_id = _normal_id(raw)
                agent = by_id.get(agent_id)
                if agent_id == "000":
                    _add_failure(failed, 1703, agent_id)
                elif agent is None:
                    _add_failure(failed, 1701, agent_id)
                elif agent.connection_status != "active":
                    _add_failure(failed, 1707, agent_id)
                else:
                    chosen.append(agent)
        ids = sorted(agent.id for agent in chosen)
        if ids and self.hooks.reconnect is not None:
            await _maybe_await(self.hooks.reconnect(ids))
        msgs = (
            "Force reconnect command was sent to all agents",
            "Force reconnect command was not sent to some agents",
            "Force reconnect command was not sent to any agent",
        )
        return Reply(envelope(ids, failed, *msgs))

    async def assign_group(self, call: Call) -> Reply:
        """PUT /agents/{agent_id}/group/{group_id}."""
        agent_id, group = _normal_id(call.path["agent_id"]), call.path["group_id"]
        replace = bool(call.params.get("force_single_group", False))
        msgs = _assignment_messages(group, replace)
        await self._require_group(group)
        failed: dict[int, list[str]] = {}
        if agent_id == "000":
            _add_failure(failed, 1703, agent_id)
            return Reply(envelope([], failed, *msgs))
        agent: Agent | None = await self.registry.get_agent(agent_id)
        if agent is None:
            _add_failure(failed, 1701, agent_id)
        elif group in agent.groups and (not replace or agent.groups == (group,)):
            _add_failure(failed, 1751, agent_id)
        else:
            try:
                await self.registry.assign(agent_id, group, replace)
            except UnknownAgent:
                _add_failure(failed, 1701, agent_id)
            except UnknownGroup:
                raise wazuh_error(1710, group) from None
            except InvalidValue:
                _add_failure(failed, 1737, agent_id)
        affected = [] if failed else [agent_id]
        return Reply(envelope(affected, failed, *msgs))

    async def _require_group(self, group: str) -> None:
        """Raise Wazuh's 1710 when ``group`` does not exist."""
        if not await self.registry.run(lambda registry: registry.group_exists(group)):
            raise wazuh_error(1710, group)

    async def _chosen_agents(
        self, wanted: tuple[str, ...] | None, failed: dict[int, list[str]]
    ) -> list[Agent]:
        """The agents of ``agents_list`` (every agent when None); unknown ids and 000 fail."""
        agents: list[Agent] = await self.registry.list_agents()
        if wanted is None:
            return agents
        by_id = {agent.id: agent for agent in agents}
        chosen = []
        for raw in dict.fromkeys(wanted):
            agent_id = _normal_id(raw)
            if agent_id == "000":
                _add_failure(failed, 1703, agent_id)
            elif agent_id not in by_id:
                _add_failure(failed, 1701, agent_id)
            else:
                chosen.append(by_id[agent_id])
        return chosen

    async def assign_agents(self, call: Call) -> Reply:
        """PUT /agents/group: assign several agents (all by default) to a group."""
        group: str = call.params["group_id"]
        replace = bool(call.params.get("force_single_group", False))
        msgs = _assignment_messages(group, replace)
        await self._require_group(group)
        failed: dict[int, list[str]] = {}
        assigned: list[str] = []
        for agent in await self._chosen_agents(call.params.get("agents_list"), failed):
            if group in agent.groups and (not replace or agent.groups == (group,)):
                _add_failure(failed, 1751, agent.id)
                continue
            try:
                await self.registry.assign(agent.id, group, replace)
            except UnknownAgent:
                _add_failure(failed, 1701, agent.id)
            except InvalidValue:
                _add_failure(failed, 1737, agent.id)
            else:
                assigned.append(agent.id)
        return Reply(envelope(sorted(assigned), failed, *msgs))

    async def remove_agents_from_group(self, call: Call) -> Reply:
        """DELETE /agents/group: remove several agents (all of the group by default)."""
        group: str = call.params["group_id"]
        msgs = (
            f"All selected agents were removed from group {group}",
            f"Some agents were not removed from group {group}",
            f"No agent was removed from group {group}",
        )
        if not await self.registry.run(lambda registry: registry.group_exists(group)):
            raise wazuh_error(1710, group)
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("agents_list")
        chosen = await self._chosen_agents(wanted, failed)
        if wanted is None:
            chosen = [agent for agent in chosen if group in agent.groups]
        removed: list[str] = []
        for agent in chosen:
            if group not in agent.groups:
                _add_failure(failed, 1734, agent.id)
            elif agent.groups == (DEFAULT_GROUP,):
                _add_failure(failed, 1745, agent.id)
            else:
                try:
                    await self.registry.unassign(agent.id, group)
                except UnknownAgent:
                    _add_failure(failed, 1701, agent.id)
                else:
                    removed.append(agent.id)
        return Reply(envelope(sorted(removed), failed, *msgs))

    async def unassign_group(self, call: Call) -> Reply:
        """DELETE /agents/{agent_id}/group/{group_id}."""
        agent_id, group = _normal_id(call.path["agent_id"]), call.path["group_id"]
        if agent_id == "000":
            raise wazuh_error(1703)
        agent: Agent | None = await self.registry.get_agent(agent_id)
        if agent is None:
            raise wazuh_error(1701, agent_id)
        if not await self.registry.run(lambda registry: registry.group_exists(group)):
            raise wazuh_error(1710, group)
        if group not in agent.groups:
            raise wazuh_error(1734, f"agent {agent_id} is not in group {group}")
        if agent.groups == (DEFAULT_GROUP,):
            raise wazuh_error(1745)
        groups = await self.registry.unassign(agent_id, group)
        message = f"Agent '{agent_id}' removed from '{group}'."
        if groups == (DEFAULT_GROUP,) and DEFAULT_GROUP not in agent.groups:
            message += " Agent reassigned to group default."
        return Reply({"message": message, "error": 0})

    # --- groups -------------------------------------------------------------------------
    def _group_views(self, infos: list[Any], algorithm: str) -> list[dict[str, Any]]:
        return [group_view(self.shared, info.name, info.agent_count, algorithm) for info in infos]

    async def list_groups(self, call: Call) -> Reply:
        """GET /groups."""
        listing = p.listing(call.params)
        check_listing(listing, GROUP_FIELDS)
        infos = await self.registry.list_groups()
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("groups_list")
        if wanted:
            known = {info.name for info in infos}
            for name in dict.fromkeys(wanted):
                if name not in known:
                    _add_failure(failed, 1710, name)
            infos = [info for info in infos if info.name in wanted]
        views = await self.run_in_thread(self._group_views, infos, call.params.get("hash", "md5"))
        page, total = apply_listing(views, listing, GROUP_FIELDS, ("name",))
        msgs = (
            "All selected groups information was returned",
            "Some groups information was not returned",
            "No group information was returned",
        )
        return Reply(envelope(page, failed, *msgs, total))

    async def create_group(self, call: Call) -> Reply:
        """POST /groups."""
        body = p.check_body(call.body, {"group_id": (str, True, 128)})
        name = p.group_name("group_id", body["group_id"])
        if name.lower() == DEFAULT_GROUP or (self.shared / name).exists():
            if (self.shared / name).is_file():
                raise ApiError(400, "Bad Request", f"Invalid group ID: {name}", 1713)
            raise wazuh_error(1711, name)
        try:
            await self.registry.create_group(name)
        except GroupExists:
            raise wazuh_error(1711, name) from None
        except InvalidValue:
            raise wazuh_error(1722, name) from None
        self.log.info("Group {group} created through the API", group=name)
        return Reply({"message": f"Group '{name}' created.", "error": 0})

    async def delete_groups(self, call: Call) -> Reply:
        """DELETE /groups: delete groups; agents left with none go back to default."""
        wanted: tuple[str, ...] = call.params["groups_list"]
        infos = await self.registry.list_groups()
        known = [info.name for info in infos]
        failed: dict[int, list[str]] = {}
        if "all" in wanted:
            targets = [name for name in known if name != DEFAULT_GROUP]
        else:
            targets = []
            for name in dict.fromkeys(wanted):
                if name not in known:
                    _add_failure(failed, 1710, name)
                elif name == DEFAULT_GROUP:
                    _add_failure(failed, 1712, name)
                else:
                    targets.append(name)
        deleted: list[str] = []
        moved: set[str] = set()
        for name in targets:
            try:
                moved.update(await self.registry.delete_group(name))
            except UnknownGroup:
                _add_failure(failed, 1710, name)
            else:
                deleted.append(name)
        if deleted:
            self.log.info("Groups {groups} deleted through the API", groups=", ".join(deleted))
        msgs = (
            "All selected groups were deleted",
            "Some groups were not deleted",
            "No group was deleted",
        )
        return Reply(envelope(deleted, failed, *msgs, extra={"affected_agents": sorted(moved)}))

    async def group_agents(self, call: Call) -> Reply:
        """GET /groups/{group_id}/agents: the agents of one group."""
        group = call.path["group_id"]
        listing = p.listing(call.params)
        check_listing(listing, AGENT_FIELDS)
        if not await self.registry.run(lambda registry: registry.group_exists(group)):
            raise wazuh_error(1710, group)
        pushed: dict[str, str] = {"group": group}
        statuses = call.params.get("status", ())
        if len(statuses) == 1:
            pushed["status"] = statuses[0]
        agents: list[Agent] = await self.registry.list_agents(**pushed)
        params = {**call.params, "group": group}
        page, total, _ = await self.run_in_thread(self._agent_page, agents, params, listing)
        msgs = (
            "All selected agents information was returned",
            "Some agents information was not returned",
            "No agent information was returned",
        )
        return Reply(envelope(page, {}, *msgs, total))

    async def group_files(self, call: Call) -> Reply:
        """GET /groups/{group_id}/files."""
        group = call.path["group_id"]
        listing = p.listing(call.params)
        check_listing(listing, GROUP_FILE_FIELDS)
        msgs = (
            "All selected groups files were returned",
            "Some groups files were not returned",
            "No groups files were returned",
        )
        if not await self.registry.run(lambda registry: registry.group_exists(group)):
            return Reply(envelope([], {1710: [group]}, *msgs))
        rows = await self.run_in_thread(
            group_files_view, self.shared / group, call.params.get("hash", "md5")
        )
        page, total = apply_listing(rows, listing, GROUP_FILE_FIELDS, ("filename",))
        return Reply(envelope(page, {}, *msgs, total))

    async def put_group_configuration(self, call: Call) -> Reply:
        """PUT /groups/{group_id}/configuration: replace agent.conf atomically."""
        group = call.path["group_id"]
        data: bytes = call.body
        if not await self.registry.run(lambda registry: registry.group_exists(group)):
            raise wazuh_error(1710, group)
        validate_agent_conf(data)
        target = self.shared / group / AGENT_CONF

        def write(registry: Registry) -> None:
            write_atomically(target, data, mode=0o660, skip_identical=True)
            registry.rebuild_group_files()

        await self.registry.write(write)
        self.log.info("agent.conf of group {group} replaced through the API", group=group)
        return Reply({"message": "Agent configuration was successfully updated", "error": 0})

    # --- routes -------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """Every route this API serves."""
        common = p.COMMON
        listing = {**common, **p.LISTING}
        agent_path = {"agent_id": p.agent_id, "group_id": p.group_name}
        group_path = {"group_id": p.group_name}
        nodes = {"nodes_list": p.comma_list(p.names)}
        agent_filters = {
            "agents_list": p.comma_list(p.agent_id),
            "status": p.comma_list(p.choice(*AGENT_STATUSES)),
            "older_than": p.timeframe,
            "node_name": p.names,
            "group": p.group_name,
            "name": p.names,
            "ip": p.names,
            "registerIP": p.names,
            "version": p.names,
            "manager": p.names,
            "os.platform": p.names,
            "os.name": p.names,
            "os.version": p.names,
            "group_config_status": p.choice("synced", "not synced"),
        }
        delete_filters = {
            **agent_filters,
            "agents_list": p.comma_list(p.agent_id_or_all),
            "status": p.comma_list(p.choice("all", *AGENT_STATUSES)),
            "purge": p.boolean,
            "q": p.text,
        }
        hashing = {"hash": p.choice(*HASHES)}
        return [
            Route(
                "POST",
                "/security/user/authenticate",
                self.login,
                {"raw": p.boolean},
                authenticated=False,
            ),
            Route("DELETE", "/security/user/authenticate", self.logout, {}),
            # Deprecated in Wazuh 4 but still used by older scripts (curl -X GET ... -u).
            Route(
                "GET",
                "/security/user/authenticate",
                self.login,
                {"raw": p.boolean},
                authenticated=False,
            ),
            Route("GET", "/", self.info, common),
            Route("GET", "/cluster/status", self.cluster_status, common),
            Route("GET", "/cluster/local/info", self.local_info, common),
            Route(
                "GET",
                "/cluster/nodes",
                self.cluster_nodes,
                {**listing, **nodes, "type": p.choice("master", "worker")},
            ),
            Route("GET", "/cluster/healthcheck", self.healthcheck, {**common, **nodes}),
            Route(
                "GET", "/cluster/ruleset/synchronization", self.ruleset_sync, {**common, **nodes}
            ),
            Route("GET", "/agents", self.list_agents, {**listing, **agent_filters}),
            Route("GET", "/agents/summary/status", self.summary_status, common),
            Route("POST", "/agents", self.add_agent, common, body="json"),
            Route(
                "DELETE",
                "/agents",
                self.delete_agents,
                {**common, **delete_filters},
                required=("agents_list", "status"),
            ),
            Route(
                "PUT",
                "/agents/reconnect",
                self.reconnect,
                {**common, "agents_list": p.comma_list(p.agent_id)},
            ),
            Route(
                "PUT",
                "/agents/group",
                self.assign_agents,
                {
                    **common,
                    "group_id": p.group_name,
                    "agents_list": p.comma_list(p.agent_id),
                    "force_single_group": p.boolean,
                },
                required=("group_id",),
            ),
            Route(
                "DELETE",
                "/agents/group",
                self.remove_agents_from_group,
                {**common, "group_id": p.group_name, "agents_list": p.comma_list(p.agent_id)},
                required=("group_id",),
            ),
            Route(
                "PUT",
                "/agents/{agent_id}/group/{group_id}",
                self.assign_group,
                {**common, "force_single_group": p.boolean},
                agent_path,
            ),
            Route(
                "DELETE",
                "/agents/{agent_id}/group/{group_id}",
                self.unassign_group,
                common,
                agent_path,
            ),
            Route(
                "GET",
                "/groups",
                self.list_groups,
                {**listing, **hashing, "groups_list": p.comma_list(p.group_name)},
            ),
            Route("POST", "/groups", self.create_group, common, body="json"),
            Route(
                "DELETE",
                "/groups",
                self.delete_groups,
                {**common, "groups_list": p.comma_list(p.group_or_all)},
                required=("groups_list",),
            ),
            Route(
                "GET",
                "/groups/{group_id}/agents",
                self.group_agents,
                {**listing, "status": agent_filters["status"]},
                group_path,
            ),
            Route(
                "GET",
                "/groups/{group_id}/files",
                self.group_files,
                {**listing, **hashing},
                group_path,
            ),
            Route(
                "PUT",
                "/groups/{group_id}/configuration",
                self.put_group_configuration,
                common,
                group_path,
                body="xml",
            ),
        ]


def _messages(message: str) -> tuple[str, str, str]:
    return message, message, message


_LEGACY_FIELDS = (
    "status",
    "node_name",
    "group",
    "name",
    "ip",
    "registerIP",
    "version",
    "manager",
    "os.platform",
    "os.name",
    "os.version",
    "group_config_status",
)


def _legacy_filters(views: list[dict[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Keep the views matching the plain filter parameters (``status=active`` ...)."""
    for name in _LEGACY_FIELDS:
        if name not in params:
            continue
        wanted = params[name]
        allowed = set(wanted) if isinstance(wanted, tuple) else {wanted}

        def keep(view: dict[str, Any], field: str = name, allowed: set[str] = allowed) -> bool:
            value = field_value(view, field)
            if isinstance(value, list):
                return bool(allowed.intersection(value))
            return value in allowed

        views = [view for view in views if keep(view)]
    return views


def _notify(hook: Callable[[Any], object] | None, value: Any) -> None:
    """Tell a node hook about a change; its failure is logged, the call still succeeds."""
    if hook is None:
        return
    try:
        hook(value)
    except Exception as error:
        ClusterLog("Master", "API").error("API hook failed: {error!r}", error=error)


async def _maybe_await(result: object) -> None:
    if isinstance(result, Deferred):
        await result


def _assignment_messages(group: str, replace: bool) -> tuple[str, str, str]:
    """Wazuh's messages for assigning agents to ``group`` (all, some, none)."""
    suffix = " and removed from the other groups" if replace else ""
    return (
        f"All selected agents were assigned to {group}{suffix}",
        f"Some agents were not assigned to {group}{suffix}",
        f"No agents were assigned to {group}",
    )

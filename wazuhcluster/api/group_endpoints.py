"""The Groups family: list, create and delete groups, list a group's agents and files,
and replace a group's ``agent.conf`` (``/groups...``).

Reading group folders (checksums, file lists) runs in threads; a new ``agent.conf`` is
checked before it is written, atomically, through the registry's write queue.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from defusedxml import ElementTree as SafeElementTree

from wazuhcluster.api import group_file_reader
from wazuhcluster.api import params as p
from wazuhcluster.api.agent_listing import AGENT_FILTERS, agent_page, visible_agents
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import ApiError, bad_request, wazuh_error
from wazuhcluster.api.query import apply_listing, check_listing
from wazuhcluster.api.replies import TEXT, XML, Reply, add_failure, envelope
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.views import (
    AGENT_DATE_FIELDS,
    AGENT_FIELDS,
    AGENT_LIST_FIELDS,
    GROUP_FIELDS,
    GROUP_FILE_FIELDS,
    HASHES,
    group_files_view,
    group_view,
)
from wazuhcluster.registry.groups import AGENT_CONF, DEFAULT_GROUP
from wazuhcluster.registry.model import GroupExists, GroupInfo, InvalidValue, UnknownGroup
from wazuhcluster.registry.store import Registry
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.json_tree import put_repeated

#: The largest agent.conf accepted, in bytes.
MAX_AGENT_CONF = 1024 * 1024


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


def agent_conf_blocks(path: Path) -> list[dict[str, Any]]:
    """The ``<agent_config>`` blocks of an agent.conf as Wazuh's items: ``filters`` (the
    block's os, name, profile attributes) and ``config`` (its options as JSON)."""
    try:
        data = path.read_bytes()[:MAX_AGENT_CONF]
    except FileNotFoundError:
        return []
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", data.decode("utf-8", errors="replace"))
    try:
        root = SafeElementTree.fromstring(f"<root>{text}</root>")
    except Exception as error:  # defusedxml raises several unrelated types
        raise wazuh_error(1113, str(error)) from None
    blocks = []
    for block in root:
        if block.tag != "agent_config":
            continue
        config: dict[str, Any] = {}
        for child in block:
            put_repeated(config, child.tag, _xml_value(child))
        blocks.append({"filters": dict(block.attrib), "config": config})
    return blocks


def _xml_value(element: Any) -> Any:
    children = list(element)
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text
    value: dict[str, Any] = dict(element.attrib)
    for child in children:
        put_repeated(value, child.tag, _xml_value(child))
    if text and not children:
        value["item"] = text
    return value


def _file_name(name: str, value: str) -> str:
    """One file name of a group folder (no directory part, not ``..``)."""
    if group_file_reader.FILE_NAME.fullmatch(value) is None:
        raise bad_request(f"'{value[:64]}' is not a valid file name ('{name}')")
    return value


class GroupEndpoints:
    """``/groups...`` (see module docstring)."""

    def __init__(self, context: EndpointContext) -> None:
        self.context = context

    def _group_views(self, infos: list[GroupInfo], algorithm: str) -> list[dict[str, Any]]:
        shared = self.context.shared
        return [group_view(shared, info.name, info.agent_count, algorithm) for info in infos]

    async def list_groups(self, call: Call) -> Reply:
        """GET /groups."""
        listing = p.listing(call.params)
        check_listing(listing, GROUP_FIELDS)
        infos = await self.context.registry.list_groups()
        failed: dict[int, list[str]] = {}
        wanted = call.params.get("groups_list")
        names = list(wanted) if wanted else [info.name for info in infos]
        kept = set(call.access.select("group:read", "group:id", names, failed, bool(wanted)))
        if wanted:
            known = {info.name for info in infos}
            for name in dict.fromkeys(wanted):
                if name in kept and name not in known:
                    add_failure(failed, 1710, name)
        infos = [info for info in infos if info.name in kept]
        views = await self.context.run_in_thread(
            self._group_views, infos, call.params.get("hash", "md5")
        )
        page, total = apply_listing(views, listing, GROUP_FIELDS, ("name",))
        msgs = (
            "All selected groups information was returned",
            "Some groups information was not returned",
            "No group information was returned",
        )
        return Reply(envelope(page, failed, *msgs, total))

    async def create_group(self, call: Call) -> Reply:
        """POST /groups."""
        call.access.require("group:create")
        shared = self.context.shared
        body = p.check_body(call.body, {"group_id": (str, True, 128)})
        name = p.group_name("group_id", body["group_id"])
        if name.lower() == DEFAULT_GROUP or (shared / name).exists():
            if (shared / name).is_file():
                raise ApiError(400, "Bad Request", f"Invalid group ID: {name}", 1713)
            raise wazuh_error(1711, name)
        try:
            await self.context.registry.create_group(name)
        except GroupExists:
            raise wazuh_error(1711, name) from None
        except InvalidValue:
            raise wazuh_error(1722, name) from None
        self.context.log.info("Group {group} created through the API", group=name)
        return Reply({"message": f"Group '{name}' created.", "error": 0})

    async def delete_groups(self, call: Call) -> Reply:
        """DELETE /groups: delete groups; agents left with none go back to default."""
        wanted: tuple[str, ...] = call.params["groups_list"]
        infos = await self.context.registry.list_groups()
        known = [info.name for info in infos]
        failed: dict[int, list[str]] = {}
        if "all" in wanted:
            names = [name for name in known if name != DEFAULT_GROUP]
            targets = call.access.select("group:delete", "group:id", names, failed, False)
        else:
            targets = []
            names = call.access.select("group:delete", "group:id", wanted, failed, True)
            for name in names:
                if name not in known:
                    add_failure(failed, 1710, name)
                elif name == DEFAULT_GROUP:
                    add_failure(failed, 1712, name)
                else:
                    targets.append(name)
        deleted: list[str] = []
        moved: set[str] = set()
        for name in targets:
            try:
                moved.update(await self.context.registry.delete_group(name))
            except UnknownGroup:
                add_failure(failed, 1710, name)
            else:
                deleted.append(name)
        if deleted:
            self.context.log.info(
                "Groups {groups} deleted through the API", groups=", ".join(deleted)
            )
        msgs = (
            "All selected groups were deleted",
            "Some groups were not deleted",
            "No group was deleted",
        )
        return Reply(envelope(deleted, failed, *msgs, extra={"affected_agents": sorted(moved)}))

    async def group_agents(self, call: Call) -> Reply:
        """GET /groups/{group_id}/agents: the agents of one group."""
        context = self.context
        group = call.path["group_id"]
        listing = p.listing(call.params)
        check_listing(listing, AGENT_FIELDS, AGENT_DATE_FIELDS, AGENT_LIST_FIELDS)
        call.access.require_one("group:read", "group:id", group)
        await context.require_group(group)
        pushed: dict[str, str] = {"group": group}
        statuses = call.params.get("status", ())
        if len(statuses) == 1:
            pushed["status"] = statuses[0]
        agents = await context.registry.list_agents(**pushed)
        agents, _, _ = visible_agents(call.access, "agent:read", agents, None, {}, manager=False)
        params = {**call.params, "group": group}
        page, total, _ = await context.run_in_thread(agent_page, context, agents, params, listing)
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
        call.access.require_one("group:read", "group:id", group)
        msgs = (
            "All selected groups files were returned",
            "Some groups files were not returned",
            "No groups files were returned",
        )
        if not await self.context.group_exists(group):
            return Reply(envelope([], {1710: [group]}, *msgs))
        rows = await self.context.run_in_thread(
            group_files_view, self.context.shared / group, call.params.get("hash", "md5")
        )
        page, total = apply_listing(rows, listing, GROUP_FILE_FIELDS, ("filename",))
        return Reply(envelope(page, {}, *msgs, total))

    async def get_group_configuration(self, call: Call) -> Reply:
        """GET /groups/{group_id}/configuration: agent.conf's blocks as JSON."""
        group = call.path["group_id"]
        call.access.require_one("group:read", "group:id", group)
        await self.context.require_group(group)
        path = self.context.shared / group / AGENT_CONF
        blocks = await self.context.run_in_thread(agent_conf_blocks, path)
        offset = call.params.get("offset", 0)
        page = blocks[offset : offset + call.params.get("limit", 500)]
        return Reply({"data": {"affected_items": page, "total_affected_items": len(blocks)}})

    async def group_file(self, call: Call) -> Reply:
        """GET /groups/{group_id}/files/{file_name}: one shared file, as JSON in the
        reading its name (or ``type``) calls for, or its text with ``raw=true``."""
        group, name = call.path["group_id"], call.path["file_name"]
        call.access.require_one("group:read", "group:id", group)
        await self.context.require_group(group)
        # ar.conf is the one shared by every group, at the top of etc/shared.
        folder = self.context.shared if name == "ar.conf" else self.context.shared / group
        path = folder / name
        text = await self.context.run_in_thread(group_file_reader.read_text, path)
        if call.params.get("raw"):
            kind = XML if name == AGENT_CONF else TEXT
            return Reply(text, content_type=kind)
        wanted = call.params.get("type", ())
        kind_name = wanted[0] if wanted else ("conf" if name == AGENT_CONF else None)
        if kind_name == "conf":
            blocks = await self.context.run_in_thread(agent_conf_blocks, path)
            data: Any = {"total_affected_items": len(blocks), "affected_items": blocks}
        else:
            reader = (
                group_file_reader.READERS[kind_name]
                if kind_name is not None
                else group_file_reader.BY_NAME.get(name, group_file_reader.rcl)
            )
            data = await self.context.run_in_thread(reader, text)
        return Reply({"data": data, "error": 0})

    async def put_group_configuration(self, call: Call) -> Reply:
        """PUT /groups/{group_id}/configuration: replace agent.conf atomically."""
        group = call.path["group_id"]
        data: bytes = call.body
        call.access.require_one("group:update_config", "group:id", group)
        await self.context.require_group(group)
        validate_agent_conf(data)
        target = self.context.shared / group / AGENT_CONF

        def write(registry: Registry) -> None:
            write_atomically(target, data, mode=0o660, skip_identical=True)
            registry.rebuild_group_files()

        await self.context.registry.write(write)
        self.context.log.info("agent.conf of group {group} replaced through the API", group=group)
        return Reply({"message": "Agent configuration was successfully updated", "error": 0})

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        listing = {**common, **p.LISTING}
        group_path = {"group_id": p.group_name}
        hashing = {"hash": p.choice(*HASHES)}
        return [
            Route(
                "GET",
                "/groups",
                self.list_groups,
                {**listing, **hashing, "groups_list": p.comma_list(p.group_name)},
                actions=("group:read",),
            ),
            Route(
                "POST",
                "/groups",
                self.create_group,
                common,
                body="json",
                actions=("group:create",),
            ),
            Route(
                "DELETE",
                "/groups",
                self.delete_groups,
                {**common, "groups_list": p.comma_list(p.group_or_all)},
                required=("groups_list",),
                actions=("group:delete",),
            ),
            Route(
                "GET",
                "/groups/{group_id}/agents",
                self.group_agents,
                {**listing, "status": AGENT_FILTERS["status"]},
                group_path,
                actions=("agent:read", "group:read"),
            ),
            Route(
                "GET",
                "/groups/{group_id}/files",
                self.group_files,
                {**listing, **hashing},
                group_path,
                actions=("group:read",),
            ),
            Route(
                "GET",
                "/groups/{group_id}/files/{file_name}",
                self.group_file,
                {
                    **common,
                    "raw": p.boolean,
                    "type": p.comma_list(
                        p.choice("conf", "rootkit_files", "rootkit_trojans", "rcl")
                    ),
                },
                {**group_path, "file_name": _file_name},
                actions=("group:read",),
            ),
            Route(
                "GET",
                "/groups/{group_id}/configuration",
                self.get_group_configuration,
                {**common, "offset": p.LISTING["offset"], "limit": p.LISTING["limit"]},
                group_path,
                actions=("group:read",),
            ),
            Route(
                "PUT",
                "/groups/{group_id}/configuration",
                self.put_group_configuration,
                common,
                group_path,
                body="xml",
                actions=("group:update_config",),
            ),
        ]

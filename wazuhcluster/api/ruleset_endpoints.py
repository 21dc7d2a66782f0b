"""The Rules, Decoders and Lists families: the master's ruleset, read and changed.

Reads list Wazuh's items (``/rules``, ``/rules/groups``, ``/rules/requirement/{r}``,
``/decoders``, ``/decoders/parents``, ``/lists``) and files (``/x/files``, one file as
JSON or raw). ``PUT /x/files/{name}`` writes a file of the user folder (``etc/rules``,
``etc/decoders``, ``etc/lists``) only after the whole resulting ruleset loaded from a
staged copy (refused with the file, line and reason otherwise), so a broken file never
reaches the workers: the master's integrity sync carries the written file to them.
``DELETE`` removes one the same way. Changes run one at a time, in a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import DeferredLock

from wazuhcluster.analysis.cdb import parse_list
from wazuhcluster.api import params as p
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import ApiError, bad_request, wazuh_error
from wazuhcluster.api.query import apply_listing, check_listing
from wazuhcluster.api.replies import JSON, TEXT, Reply, envelope, same_message
from wazuhcluster.api.routes import Call, Handler, Route
from wazuhcluster.api.ruleset_files import (
    COMPLIANCE,
    USER_DIRS,
    RulesetFiles,
    check_name,
    xml_json,
)

XML = b"application/xml; charset=utf-8"
RULE_FIELDS = (
    "id",
    "level",
    "filename",
    "relative_dirname",
    "status",
    "description",
    "groups",
    "details",
    "mitre",
    *COMPLIANCE,
)
DECODER_FIELDS = ("name", "position", "filename", "relative_dirname", "status", "details")
FILE_FIELDS = ("filename", "relative_dirname", "status")
LIST_FIELDS = ("filename", "relative_dirname", "items")
#: The requirement names of ``/rules/requirement/{requirement}`` and their item fields.
REQUIREMENTS = {
    "pci_dss": "pci_dss",
    "gdpr": "gdpr",
    "hipaa": "hipaa",
    "nist-800-53": "nist_800_53",
    "gpg13": "gpg13",
    "tsc": "tsc",
    "mitre": "mitre",
}
_KINDS = {"rules": "rule:file", "decoders": "decoder:file", "lists": "list:file"}
_NOUN = {"rules": "Rule", "decoders": "Decoder", "lists": "CDB list"}
_WORD = {"rules": "rule", "decoders": "decoder", "lists": "CDB list"}
#: Wazuh's code for a file of the family that is not there (a failed item of GET).
_NOT_FOUND_CODE = {"rules": 1415, "decoders": 1503, "lists": 1802}


def _range(name: str, value: str) -> tuple[int, int]:
    """A rule level or level range (``4`` or ``2-4``)."""
    low, _, high = value.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        raise bad_request(f"'{value[:64]}' is not a level or a level range ('{name}')")
    return int(low), int(high or low)


def _strings(items: Sequence[str], call: Call) -> tuple[list[str], int]:
    """Paging, search and sort of a list of strings."""
    found = sorted(set(items))
    search: str = call.params.get("search") or ""
    if search:
        negated, needle = search.startswith("-"), search.lstrip("-").lower()
        found = [item for item in found if (needle in item.lower()) != negated]
    if any(descending for _, descending in call.params.get("sort", ())):
        found.reverse()
    offset = call.params.get("offset", 0)
    return found[offset : offset + call.params.get("limit", 500)], len(found)


def _user_folder(call: Call, kind: str) -> None:
    """Writes go to the family's user folder only (the one synced to the workers)."""
    folder = call.params.get("relative_dirname")
    if folder is not None and folder.rstrip("/") != USER_DIRS[kind]:
        raise wazuh_error(1801, f"only {USER_DIRS[kind]} can be changed, not {folder[:64]}")


class RulesetEndpoints:
    """``/rules``, ``/decoders``, ``/lists`` (see module docstring)."""

    def __init__(self, context: EndpointContext, files: RulesetFiles) -> None:
        self.context = context
        self.files = files
        self.lock = DeferredLock()

    async def _allowed_items(
        self, call: Call, kind: str, read: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = await self.context.run_in_thread(read)
        names = sorted({item["filename"] for item in items})
        allowed = set(call.access.select(f"{kind}:read", _KINDS[kind], names, {}, False))
        items = [item for item in items if item["filename"] in allowed]
        wanted = call.params.get("filename")
        if wanted:
            items = [item for item in items if item["filename"] in wanted]
        if "relative_dirname" in call.params:
            items = [i for i in items if i["relative_dirname"] == call.params["relative_dirname"]]
        status = call.params.get("status", "all")
        if status != "all" and kind != "lists":
            items = [item for item in items if item["status"] == status]
        return items

    def _page(
        self, call: Call, items: list[dict[str, Any]], fields: Sequence[str], message: str
    ) -> Reply:
        listing = p.listing(call.params)
        check_listing(listing, fields)
        page, total = apply_listing(items, listing, fields)
        return Reply(envelope(page, {}, *same_message(message), total))

    # --- rules --------------------------------------------------------------------------
    async def rules(self, call: Call) -> Reply:
        """GET /rules."""
        items = await self._allowed_items(call, "rules", self.files.rules)
        params = call.params
        if "rule_ids" in params:
            wanted = set(params["rule_ids"])
            items = [item for item in items if item["id"] in wanted]
        if "group" in params:
            items = [item for item in items if params["group"] in item["groups"]]
        if "level" in params:
            low, high = params["level"]
            items = [item for item in items if low <= item["level"] <= high]
        for name, field in REQUIREMENTS.items():
            if name in params:
                items = [item for item in items if params[name] in item[field]]
        return self._page(call, items, RULE_FIELDS, "All selected rules were returned")

    async def rule_groups(self, call: Call) -> Reply:
        """GET /rules/groups."""
        items = await self._allowed_items(call, "rules", self.files.rules)
        page, total = _strings([g for item in items for g in item["groups"]], call)
        return Reply(envelope(page, {}, *same_message("All groups in rules were returned"), total))

    async def rule_requirement(self, call: Call) -> Reply:
        """GET /rules/requirement/{requirement}."""
        field = REQUIREMENTS[call.path["requirement"]]
        items = await self._allowed_items(call, "rules", self.files.rules)
        page, total = _strings([v for item in items for v in item[field]], call)
        return Reply(envelope(page, {}, *same_message("All selected rules were returned"), total))

    # --- decoders -----------------------------------------------------------------------
    async def decoders(self, call: Call) -> Reply:
        """GET /decoders."""
        items = await self._allowed_items(call, "decoders", self.files.decoders)
        if "decoder_names" in call.params:
            wanted = set(call.params["decoder_names"])
            items = [item for item in items if item["name"] in wanted]
        return self._page(call, items, DECODER_FIELDS, "All selected decoders were returned")

    async def decoder_parents(self, call: Call) -> Reply:
        """GET /decoders/parents."""
        items = await self._allowed_items(call, "decoders", self.files.decoders)
        items = [item for item in items if "parent" not in item["details"]]
        return self._page(call, items, DECODER_FIELDS, "All selected decoders were returned")

    # --- lists --------------------------------------------------------------------------
    async def lists(self, call: Call) -> Reply:
        """GET /lists."""
        items = await self._allowed_items(call, "lists", self.files.lists)
        return self._page(call, items, LIST_FIELDS, "All specified lists were returned")

    # --- files --------------------------------------------------------------------------
    def _file_list(self, kind: str) -> Handler:
        async def handler(call: Call) -> Reply:
            items = await self._allowed_items(call, kind, lambda: self.files.files(kind))
            fields = FILE_FIELDS if kind != "lists" else FILE_FIELDS[:2]
            return self._page(call, items, fields, f"All {_NOUN[kind]} files were returned")

        handler.__doc__ = f"GET /{kind}/files."
        return handler

    def _file_get(self, kind: str) -> Handler:
        async def handler(call: Call) -> Reply:
            name = call.path["filename"]
            call.access.require_one(f"{kind}:read", _KINDS[kind], name)
            where = call.params.get("relative_dirname")
            try:
                path = await self.context.run_in_thread(self.files.find, kind, name, where)
            except ApiError as error:
                if error.code != 1906:
                    raise
                # As Wazuh: a file the family does not have is a failed item, not an error.
                failed = {_NOT_FOUND_CODE[kind]: [name]}
                nothing = f"No {_WORD[kind]} file was returned"
                return Reply(envelope([], failed, "", "", nothing))
            text: str = await self.context.run_in_thread(self.files.read, path)
            if call.params.get("raw"):
                return Reply(text, content_type=TEXT if kind == "lists" else XML)
            if kind == "lists":
                document: dict[str, Any] = parse_list(text)
            else:
                document = xml_json(text, name)
            message = same_message(f"{_NOUN[kind]} file was returned")
            return Reply(envelope([document], {}, *message), content_type=JSON)

        handler.__doc__ = f"GET /{kind}/files/{{filename}}."
        return handler

    def _file_put(self, kind: str) -> Handler:
        async def handler(call: Call) -> Reply:
            name = check_name(kind, call.path["filename"])
            _user_folder(call, kind)
            call.access.require(f"{kind}:update")
            overwrite = bool(call.params.get("overwrite", False))
            data: bytes = call.body
            async with self.lock:
                exists = await self.context.run_in_thread(self._user_file_exists, kind, name)
                if exists and overwrite:
                    call.access.require_one(f"{kind}:delete", _KINDS[kind], name)
                written = await self.context.run_in_thread(
                    self.files.put, kind, name, data, overwrite
                )
                await self._files_changed()
            self.context.log.info("{path} written through the API", path=written)
            message = same_message(f"{_NOUN[kind]} was successfully uploaded")
            return Reply(envelope([written], {}, *message))

        handler.__doc__ = f"PUT /{kind}/files/{{filename}}."
        return handler

    def _file_delete(self, kind: str) -> Handler:
        async def handler(call: Call) -> Reply:
            name = check_name(kind, call.path["filename"])
            _user_folder(call, kind)
            call.access.require_one(f"{kind}:delete", _KINDS[kind], name)
            done = f"{_NOUN[kind]} file was successfully deleted"
            nothing = f"Could not delete the {_WORD[kind]} file"
            async with self.lock:
                try:
                    removed = await self.context.run_in_thread(self.files.delete, kind, name)
                except ApiError as error:
                    if error.code != 1906:
                        raise
                    # As Wazuh: a file that is not there is a failed item of the answer.
                    relative = f"{USER_DIRS[kind]}/{name}"
                    return Reply(envelope([], {1906: [relative]}, done, "", nothing))
                await self._files_changed()
            self.context.log.info("{path} deleted through the API", path=removed)
            return Reply(envelope([removed], {}, done, "", nothing))

        handler.__doc__ = f"DELETE /{kind}/files/{{filename}}."
        return handler

    async def _files_changed(self) -> None:
        """With ``<failover>``: wait until the change is durable (ApiHooks.files_changed)."""
        if self.context.hooks.files_changed is not None:
            await self.context.hooks.files_changed()

    def _user_file_exists(self, kind: str, name: str) -> bool:
        return (self.files.root / USER_DIRS[kind] / name).exists()

    def routes(self) -> list[Route]:
        """The routes of this family."""
        common = p.COMMON
        listing = {**common, **p.LISTING}
        small = {
            **common,
            "offset": p.LISTING["offset"],
            "limit": p.LISTING["limit"],
            "sort": p.sort,
            "search": p.search,
        }
        where = {"relative_dirname": p.text}
        files_filter = {
            **where,
            "filename": p.comma_list(p.names),
            "status": p.choice("enabled", "disabled", "all"),
        }
        requirement = {name: p.text for name in REQUIREMENTS}
        path = {"filename": p.names}
        routes: list[Route] = [
            Route(
                "GET",
                "/rules",
                self.rules,
                {
                    **listing,
                    **files_filter,
                    **requirement,
                    "rule_ids": p.comma_list(p.integer(1, 2**31 - 1)),
                    "group": p.text,
                    "level": _range,
                },
                actions=("rules:read",),
            ),
            Route("GET", "/rules/groups", self.rule_groups, small, actions=("rules:read",)),
            Route(
                "GET",
                "/rules/requirement/{requirement}",
                self.rule_requirement,
                small,
                {"requirement": p.choice(*REQUIREMENTS)},
                actions=("rules:read",),
            ),
            Route(
                "GET",
                "/decoders",
                self.decoders,
                {**listing, **files_filter, "decoder_names": p.comma_list(p.names)},
                actions=("decoders:read",),
            ),
            Route(
                "GET",
                "/decoders/parents",
                self.decoder_parents,
                {**small, "select": p.LISTING["select"]},
                actions=("decoders:read",),
            ),
            Route(
                "GET",
                "/lists",
                self.lists,
                {**listing, **where, "filename": p.comma_list(p.names)},
                actions=("lists:read",),
            ),
        ]
        for kind in ("rules", "decoders", "lists"):
            listing_params = (
                {**listing, **files_filter}
                if kind != "lists"
                else {
                    **small,
                    **where,
                    "filename": p.comma_list(p.names),
                }
            )
            file_where = where if kind != "lists" else {}
            routes += [
                Route(
                    "GET",
                    f"/{kind}/files",
                    self._file_list(kind),
                    listing_params,
                    actions=(f"{kind}:read",),
                ),
                Route(
                    "GET",
                    f"/{kind}/files/{{filename}}",
                    self._file_get(kind),
                    {**common, "raw": p.boolean, **file_where},
                    path,
                    actions=(f"{kind}:read",),
                ),
                Route(
                    "PUT",
                    f"/{kind}/files/{{filename}}",
                    self._file_put(kind),
                    {**common, "overwrite": p.boolean, **file_where},
                    path,
                    body="xml",
                    actions=(f"{kind}:update", f"{kind}:delete"),
                ),
                Route(
                    "DELETE",
                    f"/{kind}/files/{{filename}}",
                    self._file_delete(kind),
                    {**common, **file_where},
                    path,
                    actions=(f"{kind}:delete",),
                ),
            ]
        return routes

"""Queue ``8``: file integrity monitoring (FIM) events, 4.x JSON and the older text form.

A JSON event (``{"type":"event","data":{...}}``) alerts every time, as in Wazuh: its decoder
is ``syscheck_new_entry``, ``syscheck_integrity_changed`` or ``syscheck_deleted`` (and the
registry key and value variants), its ``full_log`` is rewritten (``File '/etc/x' modified``,
the mode, the changed attributes and each old and new value), its fields carry the Wazuh
names rules test (``file``, ``size_before``, ``md5``...) and the alert gets a top-level
``syscheck`` object instead of ``data``. The entry is stored (added, modified) or forgotten
(deleted); ``scan_start``/``scan_end`` only record the scan's time.

The older text form (agents before 3.11) is ``<size>:<perm>:<uid>:<gid>:<md5>:<sha1>:<user>:
<group>:<mtime>:<inode>:<sha256>[!<whodata>] <path>``: it is compared with the stored entry
and alerts only when something changed (``-1`` as the sum means deleted). A message without
a space is a scan marker.
"""

from __future__ import annotations

import json
import time as time_module
from typing import Any

from wazuhcluster.analysis.agentstate import AgentState
from wazuhcluster.analysis.builtin import BuiltinDecoder
from wazuhcluster.analysis.eventinfo import EventInfo

_KINDS = {
    "file": ("syscheck_new_entry", "syscheck_integrity_changed", "syscheck_deleted"),
    "registry": ("syscheck_new_entry", "syscheck_integrity_changed", "syscheck_deleted"),
    "registry_key": (
        "syscheck_registry_key_added",
        "syscheck_registry_key_modified",
        "syscheck_registry_key_deleted",
    ),
    "registry_value": (
        "syscheck_registry_value_added",
        "syscheck_registry_value_modified",
        "syscheck_registry_value_deleted",
    ),
}
_EVENTS = ("added", "modified", "deleted")
DECODERS = {name: BuiltinDecoder(name) for names in _KINDS.values() for name in names}

# attributes member -> (field name, field name of the old value)
_ATTRIBUTE_FIELDS = {
    "size": ("size", "size_before"),
    "perm": ("perm", "perm_before"),
    "uid": ("uid", "uid_before"),
    "gid": ("gid", "gid_before"),
    "user_name": ("uname", "uname_before"),
    "group_name": ("gname", "gname_before"),
    "hash_md5": ("md5", "md5_before"),
    "hash_sha1": ("sha1", "sha1_before"),
    "hash_sha256": ("sha256", "sha256_before"),
    "mtime": ("mtime", "mtime_before"),
    "inode": ("inode", "inode_before"),
    "attributes": ("win_attributes", "win_attributes_before"),
    "symlink_path": ("symbolic_path", None),
    "value_type": ("value_type", "value_type"),
}
_AUDIT_FIELDS = {
    "user_id": "user_id",
    "user_name": "user_name",
    "group_id": "group_id",
    "group_name": "group_name",
    "process_name": "process_name",
    "parent_name": "parent_name",
    "cwd": "cwd",
    "parent_cwd": "parent_cwd",
    "audit_uid": "audit_uid",
    "audit_name": "audit_name",
    "effective_uid": "effective_uid",
    "effective_name": "effective_name",
    "ppid": "ppid",
    "process_id": "process_id",
}
# Members of ``data`` that describe one event rather than the entry.
_NOT_STORED = (
    "mode",
    "type",
    "tags",
    "content_changes",
    "changed_attributes",
    "hard_links",
    "old_attributes",
    "audit",
)
# (comment, old field, new field), in the order Wazuh writes them into full_log.
_COMMENTS = (
    ("Size changed from '{}' to '{}'\n", "size_before", "size"),
    ("Permissions changed from '{}' to '{}'\n", "perm_before", "perm"),
    ("Ownership was '{}', now it is '{}'\n", "uid_before", "uid"),
    ("User name was '{}', now it is '{}'\n", "uname_before", "uname"),
    ("Group ownership was '{}', now it is '{}'\n", "gid_before", "gid"),
    ("Group name was '{}', now it is '{}'\n", "gname_before", "gname"),
    ("Old modification time was: '{}', now it is '{}'\n", "mtime_before", "mtime"),
    ("Old inode was: '{}', now it is '{}'\n", "inode_before", "inode"),
    ("Old md5sum was: '{}'\nNew md5sum is : '{}'\n", "md5_before", "md5"),
    ("Old sha1sum was: '{}'\nNew sha1sum is : '{}'\n", "sha1_before", "sha1"),
    ("Old sha256sum was: '{}'\nNew sha256sum is : '{}'\n", "sha256_before", "sha256"),
    ("Old attributes were: '{}'\nNow they are '{}'\n", "win_attributes_before", "win_attributes"),
)
# (syscheck key, old field, new field) of the alert's ``syscheck`` object.
_BEFORE_AFTER = (
    ("size", "size_before", "size"),
    ("perm", "perm_before", "perm"),
    ("uid", "uid_before", "uid"),
    ("gid", "gid_before", "gid"),
    ("md5", "md5_before", "md5"),
    ("sha1", "sha1_before", "sha1"),
    ("sha256", "sha256_before", "sha256"),
    ("attrs", "win_attributes_before", "win_attributes"),
    ("uname", "uname_before", "uname"),
    ("gname", "gname_before", "gname"),
)
_LEGACY_MARKS = {
    "fim-db-start-first-scan": "first_start",
    "fim-db-end-first-scan": "first_end",
    "fim-db-start-scan": "start_scan",
    "fim-db-end-scan": "end_scan",
    "syscheck-db-completed": "end_scan",
}
_LEGACY_SUM = (
    "size",
    "perm",
    "uid",
    "gid",
    "hash_md5",
    "hash_sha1",
    "user_name",
    "group_name",
    "mtime",
    "inode",
    "hash_sha256",
    "attributes",
)
_CHANGE_NAMES = {
    "size": "size",
    "perm": "permission",
    "uid": "uid",
    "user_name": "user_name",
    "gid": "gid",
    "group_name": "group_name",
    "mtime": "mtime",
    "inode": "inode",
    "hash_md5": "md5",
    "hash_sha1": "sha1",
    "hash_sha256": "sha256",
    "attributes": "attributes",
}
MAX_PATH_SHOWN = 756


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value))
    return str(value)


def _windows_perm(value: dict[str, Any]) -> str:
    """A Windows permission object in one line (Wazuh's older text form is not rebuilt)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _fetch(attributes: Any, values: dict[str, str], new: bool) -> None:
    if not isinstance(attributes, dict):
        return
    for name, value in attributes.items():
        mapped = _ATTRIBUTE_FIELDS.get(name)
        if mapped is None:
            continue
        field = mapped[0] if new else mapped[1]
        if field is None:
            continue
        text = _windows_perm(value) if name == "perm" and isinstance(value, dict) else _text(value)
        if text is not None:
            values[field] = text


def _local_time(epoch: str) -> str:
    try:
        seconds = int(epoch)
    except ValueError:
        return f"Invalid: '{epoch}'"
    return time_module.strftime("%Y-%m-%dT%H:%M:%S%z", time_module.localtime(seconds))


def _int(text: str) -> int:
    digits = ""
    for char in text.strip():
        if not char.isdigit() and not (char == "-" and not digits):
            break
        digits += char
    try:
        return int(digits)
    except ValueError:
        return 0


def _shown_path(kind: str, values: dict[str, str]) -> tuple[str, str]:
    """The entry's kind and path as full_log shows them (long paths cut in the middle)."""
    path = values["file"]
    arch = values.get("arch", "")
    if kind in ("file", "registry"):
        if len(path) > MAX_PATH_SHOWN:
            return "File", f"{path[:719]} [...] {path[-30:]}"
        return "File", path
    if kind == "registry_key":
        return "Registry Key", f"{arch} {path}"
    name = values.setdefault("value_name", "Unknown key:Unknown Value")
    return "Registry Value", f"{arch} {path}\\{name}"


def _full_log(kind: str, event: str, values: dict[str, str]) -> str:
    label, shown = _shown_path(kind, values)
    lines = [f"{label} '{shown}' {event}\n"]
    links = values.get("hard_links")
    if links:
        try:
            parsed = json.loads(links)
        except ValueError:
            parsed = []
        if isinstance(parsed, list):
            lines.append("Hard links: " + ",".join(str(item) for item in parsed) + "\n")
    lines.append(f"Mode: {values.get('mode', '')}\n")
    if "changed_fields" in values:
        lines.append(f"Changed attributes: {values['changed_fields']}\n")
    if event == "modified":
        for template, old_name, new_name in _COMMENTS:
            old = values.get(old_name, "")
            new = values.get(new_name, "")
            if old != new:
                lines.append(template.format(old, new))
    return "".join(lines)


def _differs(old: str | None, new: str | None) -> bool:
    """Wazuh prints a ``*_before`` value only when it is set and differs from the new one."""
    return bool(old) and (new is None or old != new)


def _section(values: dict[str, str]) -> dict[str, Any]:
    """The alert's ``syscheck`` object."""
    out: dict[str, Any] = {"path": values["file"]}
    links = values.get("hard_links")
    if links:
        try:
            out["hard_links"] = json.loads(links)
        except ValueError:
            pass
    for key, name in (
        ("mode", "mode"),
        ("symbolic_path", "symbolic_path"),
        ("arch", "arch"),
        ("value_name", "value_name"),
        ("value_type", "value_type"),
    ):
        if values.get(name):
            out[key] = values[name]
    for key, old_name, new_name in _BEFORE_AFTER:
        old = values.get(old_name)
        new = values.get(new_name)
        if _differs(old, new):
            out[f"{key}_before"] = old
        if new:
            out[f"{key}_after"] = new
    old_mtime = values.get("mtime_before")
    if _differs(old_mtime, values.get("mtime")):
        out["mtime_before"] = _local_time(old_mtime or "")
    if values.get("mtime"):
        out["mtime_after"] = _local_time(values["mtime"])
    old_inode = values.get("inode_before")
    if _differs(old_inode, values.get("inode")):
        out["inode_before"] = _int(old_inode or "")
    if values.get("inode") and _int(values["inode"]):
        out["inode_after"] = _int(values["inode"])
    if values.get("changed_content") and values["changed_content"] != "0":
        out["diff"] = values["changed_content"]
    if values.get("tag"):
        out["tags"] = [tag for tag in values["tag"].split(",") if tag]
    if values.get("changed_fields"):
        out["changed_attributes"] = [name for name in values["changed_fields"].split(",") if name]
    out["event"] = values["event_type"]
    audit: dict[str, dict[str, str]] = {}
    for section, pairs in (
        ("user", (("id", "user_id"), ("name", "user_name"))),
        (
            "process",
            (
                ("id", "process_id"),
                ("name", "process_name"),
                ("cwd", "cwd"),
                ("parent_name", "parent_name"),
                ("parent_cwd", "parent_cwd"),
                ("ppid", "ppid"),
            ),
        ),
        ("group", (("id", "group_id"), ("name", "group_name"))),
        ("login_user", (("id", "audit_uid"), ("name", "audit_name"))),
        ("effective_user", (("id", "effective_uid"), ("name", "effective_name"))),
    ):
        found = {key: values[name] for key, name in pairs if values.get(name)}
        if found:
            audit[section] = found
    if audit:
        out["audit"] = audit
    return out


def fim_event(info: EventInfo, data: dict[str, Any], state: AgentState) -> bool:
    """Decode one FIM event (``data`` of a 4.x JSON message); False when it is invalid."""
    values: dict[str, str] = {}
    for name, field in (
        ("path", "file"),
        ("mode", "mode"),
        ("type", "event_type"),
        ("tags", "tag"),
        ("content_changes", "changed_content"),
        ("arch", "arch"),
        ("value_name", "value_name"),
        ("index", "hash_full_path"),
    ):
        value = data.get(name)
        if isinstance(value, str):
            values[field] = value
    changed = data.get("changed_attributes")
    if isinstance(changed, list):
        values["changed_fields"] = ",".join(str(item) for item in changed)
    links = data.get("hard_links")
    if isinstance(links, list):
        values["hard_links"] = json.dumps(links, separators=(",", ":"))
    attributes = data.get("attributes")
    kind = attributes.get("type") if isinstance(attributes, dict) else None
    version = data.get("version")
    if not isinstance(kind, str) or kind not in _KINDS:
        return False
    if kind.startswith("registry_") and isinstance(version, int) and version >= 3:
        if "hash_full_path" not in values:
            return False
    event = values.get("event_type")
    if event not in _EVENTS or "file" not in values:
        return False
    values["entry_type"] = kind
    _fetch(attributes, values, True)
    _fetch(data.get("old_attributes"), values, False)
    audit = data.get("audit")
    if isinstance(audit, dict):
        for name, field in _AUDIT_FIELDS.items():
            text = _text(audit.get(name))
            if text is not None:
                values[field] = text
    info.decoder = DECODERS[_KINDS[kind][_EVENTS.index(event)]]
    info.full_log = info.log = _full_log(kind, event, values)
    info.log_lower = info.log.lower()
    info.log_after_parent = info.log_after_prematch = info.log
    for name, value in values.items():
        info.add_field(name, value)
    info.fields_in_data = False
    info.sections = {"syscheck": _section(values)}
    key = values.get("hash_full_path") if kind != "file" else values["file"]
    if event == "deleted":
        state.fim_delete(info.agent_id, key or values["file"])
    else:
        state.fim_save(
            info.agent_id,
            key or values["file"],
            {name: value for name, value in data.items() if name not in _NOT_STORED},
        )
    return True


def _legacy_attributes(checksum: str) -> dict[str, Any]:
    parts = checksum.split(":")
    out: dict[str, Any] = {"type": "file"}
    for name, value in zip(_LEGACY_SUM, parts, strict=False):
        if value in ("", "xxx"):
            continue
        out[name] = int(value) if name in ("size", "mtime", "inode") and value.isdigit() else value
    return out


def legacy_event(info: EventInfo, message: str, state: AgentState) -> bool:
    """Decode one message of the older text form by comparing it with the stored entry."""
    if " " not in message:
        mark = _LEGACY_MARKS.get(message.strip())
        if mark is not None:
            state.fim_scan(info.agent_id, mark, info.time)
        return False
    sums, rest = message.split(" ", 1)
    path, _, diff = rest.partition("\n")
    checksum = sums.split("!", 1)[0]
    stored = state.fim_get(info.agent_id, path)
    old = stored.get("attributes") if stored is not None else None
    data: dict[str, Any] = {"path": path, "mode": "scheduled"}
    if diff:
        data["content_changes"] = diff
    if checksum == "-1":
        if stored is None:
            return False
        data["type"] = "deleted"
        data["attributes"] = old if isinstance(old, dict) else {"type": "file"}
        return fim_event(info, data, state)
    attributes = _legacy_attributes(checksum)
    if info.location.endswith("syscheck-registry"):
        attributes["type"] = "registry"
    data["attributes"] = attributes
    if not isinstance(old, dict):
        data["type"] = "added"
    else:
        changed = [
            label
            for name, label in _CHANGE_NAMES.items()
            if str(old.get(name, "")) != str(attributes.get(name, ""))
        ]
        if not changed:
            return False
        data["type"] = "modified"
        data["old_attributes"] = old
        data["changed_attributes"] = changed
    return fim_event(info, data, state)


def decode_syscheck(info: EventInfo, message: str, state: AgentState) -> bool:
    """Queue 8: a FIM JSON event or scan mark, else the older text form."""
    if message.startswith("{"):
        try:
            payload = json.loads(message)
        except ValueError:
            return False
        if not isinstance(payload, dict):
            return False
        kind = payload.get("type")
        data = payload.get("data")
        if not isinstance(data, dict):
            return False
        if kind == "event":
            return fim_event(info, data, state)
        if kind in ("scan_start", "scan_end"):
            stamp = data.get("timestamp")
            if isinstance(stamp, (int, float)):
                mark = "start_scan" if kind == "scan_start" else "end_scan"
                state.fim_scan(info.agent_id, mark, float(stamp))
        return False
    return legacy_event(info, message, state)

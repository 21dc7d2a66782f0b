"""How registry records and node data look in API answers (Wazuh's field names).

Pure functions: an :class:`~wazuhcluster.registry.model.Agent` becomes the dict
``GET /agents`` lists, times become ISO-8601 UTC text, group folders become
``{name, count, mergedSum, configSum}`` rows. Reading checksums of files is done by the
caller (in a thread) and handed in.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wazuhcluster.registry.groups import AGENT_CONF, MERGED_NAME, multigroup_hash
from wazuhcluster.registry.model import Agent

#: Fields of an agent usable in q, sort and select.
AGENT_FIELDS = (
    "id",
    "name",
    "ip",
    "registerIP",
    "status",
    "status_code",
    "dateAdd",
    "lastKeepAlive",
    "disconnection_time",
    "version",
    "group",
    "configSum",
    "mergedSum",
    "node_name",
    "manager",
    "group_config_status",
    "os.name",
    "os.platform",
    "os.version",
    "os.major",
    "os.minor",
    "os.codename",
    "os.arch",
    "os.uname",
    "labels",
)
#: The agent fields holding dates (time frames in q count back from now).
AGENT_DATE_FIELDS = ("dateAdd", "lastKeepAlive", "disconnection_time")
#: The agent fields holding lists (no order: no < or > in q).
AGENT_LIST_FIELDS = ("group",)
NODE_FIELDS = ("name", "type", "version", "ip", "wazuhcluster_version")
GROUP_FIELDS = ("name", "count", "mergedSum", "configSum")
GROUP_FILE_FIELDS = ("filename", "hash")
HASHES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s")
#: Files larger than this are listed without being hashed in full (hash of the first bytes).
MAX_HASHED_FILE = 64 * 1024 * 1024


def iso(seconds: float | None) -> str | None:
    """POSIX seconds as ``YYYY-MM-DDTHH:MM:SS+00:00`` (None stays None)."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def iso_micro(value: Any) -> Any:
    """A health timestamp (POSIX seconds) as Wazuh's ``...T..:..:..ffffffZ``; others unchanged."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def merged_path(shared: Path, multigroups: Path, groups: tuple[str, ...]) -> Path:
    """The merged.mg an agent with ``groups`` receives."""
    if len(groups) > 1:
        return multigroups / multigroup_hash(groups) / MERGED_NAME
    return shared / (groups[0] if groups else "default") / MERGED_NAME


def file_digest(path: Path, algorithm: str = "md5") -> str | None:
    """The hex digest of a file (None when it cannot be read)."""
    digest = hashlib.new(algorithm)
    try:
        with path.open("rb") as handle:
            remaining = MAX_HASHED_FILE
            while remaining > 0:
                chunk = handle.read(min(65536, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def agent_view(
    agent: Agent, merged_sums: Callable[[tuple[str, ...]], str | None]
) -> dict[str, Any]:
    """The ``GET /agents`` item of ``agent``; ``merged_sums(groups)`` gives the expected
    merged.mg checksum of a group list (for ``group_config_status``)."""
    view: dict[str, Any] = {
        "id": agent.id,
        "name": agent.name,
        "ip": agent.address,
        "registerIP": agent.ip,
        "status": agent.connection_status,
        "status_code": 0,
        "dateAdd": iso(agent.register_time),
        "group": list(agent.groups),
    }
    if agent.last_keepalive is not None:
        view["lastKeepAlive"] = iso(agent.last_keepalive)
    if agent.connection_status == "disconnected" and agent.disconnection_time:
        view["disconnection_time"] = iso(agent.disconnection_time)
    if agent.version:
        view["version"] = agent.version
    if agent.config_sum:
        view["configSum"] = agent.config_sum
    if agent.merged_sum:
        view["mergedSum"] = agent.merged_sum
    if agent.node_name:
        view["node_name"] = agent.node_name
        view["manager"] = agent.node_name
    os_view = {
        key: value
        for key, value in (
            ("name", agent.os_name),
            ("platform", agent.os_platform),
            ("version", agent.os_version),
            ("major", agent.os_major),
            ("minor", agent.os_minor),
            ("codename", agent.os_codename),
            ("arch", agent.os_arch),
            ("uname", agent.os_uname),
        )
        if value
    }
    if os_view:
        view["os"] = os_view
    labels = agent.visible_labels()
    if labels:
        view["labels"] = labels
    expected = merged_sums(agent.groups)
    synced = bool(agent.merged_sum) and agent.merged_sum == expected
    view["group_config_status"] = "synced" if synced else "not synced"
    return view


def host_os_view(release: Mapping[str, str], uname: platform.uname_result) -> dict[str, str]:
    """The ``os`` of agent 000 from the host's os-release fields and uname, in the fields
    agents report (``uname`` joined with `` |`` as Wazuh writes it)."""
    view = {
        "name": release.get("NAME") or uname.system,
        "platform": release.get("ID") or uname.system.lower(),
        "version": release.get("VERSION_ID") or uname.release,
        "arch": uname.machine,
        "uname": " |".join((uname.system, uname.node, uname.release, uname.version, uname.machine)),
    }
    return {key: value for key, value in view.items() if value}


def manager_view(
    node_name: str, version: str, now: float, os_view: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Agent 000, the manager itself, as Wazuh lists it first among the agents: no groups
    (the manager belongs to none), the host's ``os`` when given."""
    view: dict[str, Any] = {
        "id": "000",
        "name": node_name,
        "ip": "127.0.0.1",
        "registerIP": "127.0.0.1",
        "status": "active",
        "status_code": 0,
        "dateAdd": iso(now),
        "lastKeepAlive": "9999-12-31T23:59:59+00:00",
        "version": f"Wazuh v{version}",
        "node_name": node_name,
        "manager": node_name,
        "group_config_status": "synced",
    }
    if os_view:
        view["os"] = dict(os_view)
    return view


def group_files_view(folder: Path, algorithm: str = "md5") -> list[dict[str, Any]]:
    """``{filename, hash}`` of each regular, non-hidden file directly in a group folder."""
    rows = []
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        rows.append({"filename": entry.name, "hash": file_digest(Path(entry.path), algorithm)})
    return rows


def group_view(shared: Path, name: str, count: int, algorithm: str = "md5") -> dict[str, Any]:
    """``{name, count, mergedSum, configSum}`` of one group."""
    folder = shared / name
    return {
        "name": name,
        "count": count,
        "mergedSum": file_digest(folder / MERGED_NAME, algorithm),
        "configSum": file_digest(folder / AGENT_CONF, algorithm),
    }

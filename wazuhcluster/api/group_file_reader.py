"""A group folder's file as ``GET /groups/{group_id}/files/{file_name}`` answers it.

Wazuh reads each kind of shared file into JSON its own way: agent.conf as its
``<agent_config>`` blocks, ``rootkit_files.txt`` and ``rootkit_trojans.txt`` as their
entries, ``ar.conf`` as its lines, ``merged.mg`` as the files it packs, any other file as
a rootcheck policy (rcl: variables and controls). ``type`` forces one reading. The
functions here are blocking and bounded (:data:`MAX_GROUP_FILE`); callers run them in a
thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wazuhcluster.api.errors import wazuh_error

#: The largest group file read, in bytes (merged.mg of a large group included).
MAX_GROUP_FILE = 16 * 1024 * 1024
#: What a file name in the path may be: one name, no directory part.
FILE_NAME = re.compile(r"[\w\-][\w.\-]{0,254}")

_COMMENT = re.compile(r"^\s*#")
_RCL_TITLE = re.compile(r"^\s*\[(.*)\]\s*\[(.*)\]\s*\[(.*)\]\s*")
_RCL_TAG = re.compile(r"\{\w+:\s+\S+\s*\S*\}")
_RCL_CHECK = re.compile(r"^\s*(\w:.+)")
_RCL_VAR = re.compile(r"^\s*\$(\w+)=(.+)")
_ROOTKIT_FILE = re.compile(r"^(.+)!(.+)::(.+)")
_TROJAN = re.compile(r"^(.+)!(.+)!(.+)")
_TROJAN_BINARY = re.compile(r"^(.+)!(.+)!")
_MERGED_HEADER = re.compile(r"^!(\d+)\s*(.*)")


def read_text(path: Path) -> str:
    """The file's text (1006 when it is not there, 1101 when larger than the bound)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_GROUP_FILE + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise wazuh_error(1006, path.name) from None
    if len(data) > MAX_GROUP_FILE:
        raise wazuh_error(1101, f"{path.name} is larger than {MAX_GROUP_FILE} bytes")
    return data.decode("utf-8", errors="replace")


def rcl(text: str) -> dict[str, Any]:
    """A rootcheck policy: ``vars`` and ``controls`` (name, cis, pci, condition,
    reference, checks), the first control being whatever came before any title."""
    variables: dict[str, str] = {}
    controls: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in text.splitlines():
        if _COMMENT.search(line):
            continue
        title = _RCL_TITLE.search(line)
        if title:
            controls.append(current)
            name, condition, reference = title.groups()
            cis, pci = [], []
            for tag in _RCL_TAG.findall(name):
                value = tag.split(":")[-1][:-1].strip()
                if "CIS" in tag:
                    cis.append(value)
                elif "PCI" in tag:
                    pci.append(value)
            brace = name.find("{")
            # Without a {tag}, Wazuh's reading drops the name's last character; kept alike.
            current = {"name": (name[:brace] if brace >= 0 else name[:-1]).strip()}
            current.update({"cis": cis, "pci": pci})
            if condition:
                current["condition"] = condition
            if reference:
                current["reference"] = reference
            current["checks"] = []
            continue
        check = _RCL_CHECK.search(line)
        if check:
            current.setdefault("checks", []).append(check.group(1))
            continue
        variable = _RCL_VAR.search(line)
        if variable:
            variables[variable.group(1)] = variable.group(2)
    controls.append(current)
    return {"vars": variables, "controls": controls}


def rootkit_files(text: str) -> list[dict[str, str]]:
    """``file ! name ::link`` entries."""
    entries = []
    for line in text.splitlines():
        found = None if _COMMENT.search(line) else _ROOTKIT_FILE.search(line)
        if found:
            filename, name, link = (part.strip() for part in found.groups())
            entries.append({"filename": filename, "name": name, "link": link})
    return entries


def rootkit_trojans(text: str) -> list[dict[str, str]]:
    """``file !pattern!description`` entries (the description may be missing)."""
    entries = []
    for line in text.splitlines():
        if _COMMENT.search(line):
            continue
        full = _TROJAN.search(line)
        if full:
            filename, name, description = (part.strip() for part in full.groups())
            entries.append({"filename": filename, "name": name, "description": description})
            continue
        binary = _TROJAN_BINARY.search(line)
        if binary:
            entries.append({"filename": binary.group(1).strip(), "name": binary.group(2).strip()})
    return entries


def lines(text: str) -> list[str]:
    """The file's lines (ar.conf)."""
    return text.splitlines()


def merged(text: str) -> list[dict[str, Any]]:
    """The files a merged.mg packs: ``file_name``, ``file_size``, ``file_content`` (the
    first line, the header of the whole, is skipped)."""
    entries: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    content: list[str] = []
    for line in text.splitlines(keepends=True)[1:]:
        header = _MERGED_HEADER.search(line)
        if header:
            if current:
                entries.append({**current, "file_content": "".join(content)})
            current = {"file_name": header.group(2).strip(), "file_size": int(header.group(1))}
            content = []
            continue
        content.append(line)
    if current:
        entries.append({**current, "file_content": "".join(content)})
    return entries


#: The readings ``type`` may ask for (``conf`` is the caller's: agent.conf's blocks).
READERS: dict[str, Callable[[str], Any]] = {
    "rootkit_files": rootkit_files,
    "rootkit_trojans": rootkit_trojans,
    "rcl": rcl,
}
#: The reading of a file by its name when no ``type`` is given (others: rcl).
BY_NAME: dict[str, Callable[[str], Any]] = {
    "rootkit_files.txt": rootkit_files,
    "rootkit_trojans.txt": rootkit_trojans,
    "ar.conf": lines,
    "merged.mg": merged,
}

"""Agent groups on disk: name rules, group folders and Wazuh's ``merged.mg`` files.

The master keeps, for each group, ``etc/shared/<group>/`` with an ``agent.conf`` and a
``merged.mg`` that bundles the group's files the way wazuh-remoted does, and for every
set of several groups an agent belongs to, ``var/multigroups/<hash>/merged.mg``. The
integrity sync carries both to the workers. Every write is atomic (temp file, fsync,
rename) so a reader never sees half a file.

Facts followed (wazuh-remoted 4.14): a merged file starts with ``#<name>\\n``; each
bundled file is a ``!<size> <relative path>\\n`` header followed by exactly ``size``
bytes; ``etc/shared/ar.conf`` comes first when present, then the group's files in
byte order, hidden files and ``merged.mg*`` skipped, sub-folders walked. A multigroup
folder is named by the first 8 hex digits of the SHA-256 of the comma-joined group
list; its files are the union of its groups' files (a later group wins on a name
clash), except ``agent.conf``, which is the concatenation of every group's
``agent.conf``, each preceded by ``<!-- Source file: <group>/agent.conf -->``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from wazuhcluster.util.files import write_atomically

MERGED_NAME = "merged.mg"
AGENT_CONF = "agent.conf"
DEFAULT_GROUP = "default"
EMPTY_AGENT_CONF = b"<agent_config>\n\n</agent_config>\n"

#: Wazuh's limits: a group name is at most 255 characters and an agent belongs to at
#: most 128 groups.
MAX_GROUP_NAME = 255
MAX_GROUPS_PER_AGENT = 128
#: A group file larger than this is not bundled (protects the master's memory).
MAX_SHARED_FILE = 64 * 1024 * 1024
#: Nesting bound when walking a group folder.
MAX_DEPTH = 8

_GROUP_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class GroupNameError(ValueError):
    """A group name Wazuh would refuse; ``reason`` is the text for an error reply."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid group name {name[:255]!r}: {reason}")
        self.name = name
        self.reason = reason


def group_name_problem(name: str) -> str | None:
    """Return why ``name`` is not a valid group name, or None when it is."""
    if not name:
        return "empty group name"
    if len(name) > MAX_GROUP_NAME:
        return f"longer than {MAX_GROUP_NAME} characters"
    if _GROUP_NAME.fullmatch(name) is None:
        return "only letters, digits, '_', '-' and '.' are allowed"
    if name in (".", ".."):
        return "'.' and '..' are not group names"
    return None


def validate_group_name(name: str) -> str:
    """Return ``name`` if it is a valid group name, else raise :class:`GroupNameError`."""
    problem = group_name_problem(name)
    if problem is not None:
        raise GroupNameError(name, problem)
    return name


def multigroup_hash(groups: Sequence[str]) -> str:
    """The folder name Wazuh uses under var/multigroups for an ordered group list."""
    return hashlib.sha256(",".join(groups).encode("utf-8")).hexdigest()[:8]


def create_group_folder(shared_dir: Path, name: str) -> Path:
    """Create ``shared_dir/<name>/agent.conf`` unless it already exists; return the folder."""
    validate_group_name(name)
    folder = shared_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / AGENT_CONF
    if not conf.exists():
        # Wazuh copies etc/shared/agent-template.conf into a new group when it exists.
        template = shared_dir / "agent-template.conf"
        body = template.read_bytes() if template.is_file() else EMPTY_AGENT_CONF
        write_atomically(conf, body, mode=0o660, skip_identical=True)
    return folder


def group_files(folder: Path) -> dict[str, bytes]:
    """Read the files of one group folder as ``{relative path: content}``.

    Hidden entries and ``merged.mg*`` are skipped, as wazuh-remoted does; symlinks are
    not followed, so a group cannot pull in files from outside its folder.
    """
    files: dict[str, bytes] = {}
    _collect(folder, "", files, 0)
    return files


def _collect(folder: Path, prefix: str, files: dict[str, bytes], depth: int) -> None:
    """Walk ``folder`` in byte order into ``files`` (see :func:`group_files`)."""
    if depth > MAX_DEPTH:
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name.encode())
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name.startswith(MERGED_NAME):
            continue
        relative = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            _collect(Path(entry.path), f"{relative}/", files, depth + 1)
        elif entry.is_file(follow_symlinks=False):
            if entry.stat(follow_symlinks=False).st_size > MAX_SHARED_FILE:
                continue
            files[relative] = Path(entry.path).read_bytes()


def merged_bytes(title: str, files: Mapping[str, bytes], ar_conf: bytes | None) -> bytes:
    """Build a merged.mg body: ``#title``, then ar.conf, then ``files`` in byte order."""
    parts = [f"#{title}\n".encode()]
    if ar_conf is not None:
        parts.append(_record("ar.conf", ar_conf))
    for name in sorted(files, key=lambda item: item.encode()):
        parts.append(_record(name, files[name]))
    return b"".join(parts)


def _record(name: str, content: bytes) -> bytes:
    """One ``!<size> <name>`` record of a merged file."""
    return f"!{len(content)} {name}\n".encode() + content


def parse_merged(data: bytes, max_files: int = 10_000) -> tuple[str, dict[str, bytes]]:
    """Split a merged.mg body back into its title and files; raise ValueError if malformed."""
    newline = data.find(b"\n")
    if not data.startswith(b"#") or newline < 0:
        raise ValueError("merged file does not start with a '#<name>' line")
    title = data[1:newline].decode("utf-8", "replace")
    files: dict[str, bytes] = {}
    offset = newline + 1
    while offset < len(data):
        end = data.find(b"\n", offset)
        header = data[offset:end] if end >= 0 else b""
        match = re.fullmatch(rb"!(\d{1,12}) (\S[^\n]*)", header)
        if match is None:
            raise ValueError(f"malformed merged record header at byte {offset}")
        size = int(match.group(1))
        start = end + 1
        if start + size > len(data):
            raise ValueError(f"merged record {match.group(2)!r} is truncated")
        if len(files) >= max_files:
            raise ValueError(f"more than {max_files} files in a merged file")
        files[match.group(2).decode("utf-8", "replace")] = data[start : start + size]
        offset = start + size
    return title, files


def _read_ar_conf(shared_dir: Path) -> bytes | None:
    """The shared ``ar.conf`` merged into every group, or None when absent."""
    path = shared_dir / "ar.conf"
    return path.read_bytes() if path.is_file() else None


def write_group_merged(shared_dir: Path, group: str) -> Path:
    """Rebuild ``shared_dir/<group>/merged.mg`` if its content changed; return its path."""
    validate_group_name(group)
    folder = shared_dir / group
    data = merged_bytes(group, group_files(folder), _read_ar_conf(shared_dir))
    target = folder / MERGED_NAME
    _write_if_changed(target, data)
    return target


def multigroup_files(shared_dir: Path, groups: Sequence[str]) -> dict[str, bytes]:
    """The union of several groups' files, as wazuh-remoted lays out a multigroup folder."""
    union: dict[str, bytes] = {}
    for group in groups:
        for name, content in group_files(shared_dir / group).items():
            if name == AGENT_CONF:
                banner = f"<!-- Source file: {group}/{AGENT_CONF} -->\n".encode()
                union[name] = union.get(name, b"") + banner + content
            else:
                union[name] = content
    return union


def write_multigroup_merged(shared_dir: Path, multigroups_dir: Path, groups: Sequence[str]) -> Path:
    """Rebuild ``multigroups_dir/<hash>/merged.mg`` for an ordered list of several groups."""
    for group in groups:
        validate_group_name(group)
    digest = multigroup_hash(groups)
    data = merged_bytes(digest, multigroup_files(shared_dir, groups), _read_ar_conf(shared_dir))
    target = multigroups_dir / digest / MERGED_NAME
    _write_if_changed(target, data)
    return target


def _write_if_changed(target: Path, data: bytes) -> None:
    """Write atomically unless the file already holds ``data`` (keeps mtimes stable)."""
    try:
        if target.read_bytes() == data:
            return
    except (FileNotFoundError, NotADirectoryError):
        pass
    write_atomically(target, data, mode=0o660, skip_identical=True)


def rebuild_all(
    shared_dir: Path,
    multigroups_dir: Path,
    groups: Iterable[str],
    multigroups: Iterable[Sequence[str]],
) -> None:
    """Rebuild every group's merged.mg and the given multigroups; drop stale multigroups."""
    for group in groups:
        if (shared_dir / group).is_dir():
            write_group_merged(shared_dir, group)
    wanted = set()
    for combo in multigroups:
        if len(combo) > 1:
            wanted.add(write_multigroup_merged(shared_dir, multigroups_dir, combo).parent.name)
    if multigroups_dir.is_dir():
        for entry in os.scandir(multigroups_dir):
            if entry.is_dir(follow_symlinks=False) and entry.name not in wanted:
                remove_tree(Path(entry.path))


def remove_tree(folder: Path) -> None:
    """Remove a group or multigroup folder (files and sub-folders, symlinks not followed)."""
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            remove_tree(Path(entry.path))
        else:
            os.unlink(entry.path)
    folder.rmdir()

"""HOME/etc/client.keys: writing it from the registry and reading it back, bounded.

The format is Wazuh's: one ``ID NAME IP KEY`` line per agent. The master regenerates the
whole file from the registry after every change (removed agents are simply left out,
as Wazuh does with ``purge``), writing a temp file in the same folder, fsyncing it and
renaming it over the old one, so a reader sees the old file or the new one, never a
mix. Workers read it with :func:`parse_client_keys`, which refuses anything malformed
or oversized with a :class:`ClientKeysError` naming the line.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from attrs import define, field, frozen

from wazuhcluster.registry.model import agent_name_problem, normalize_ip
from wazuhcluster.util.files import write_atomically

#: Bounds for reading a client.keys file (a 50,000-agent file is about 5 MB).
MAX_KEYS_FILE = 64 * 1024 * 1024
MAX_KEYS_LINE = 1024
MAX_KEYS_ENTRIES = 500_000
CLIENT_KEYS_MODE = 0o640

_ID = re.compile(r"\d{1,8}")
_KEY = re.compile(r"[!-~]{1,512}")


class ClientKeysError(ValueError):
    """A client.keys file that cannot be trusted; ``line`` is 1-based (0: whole file)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"client.keys line {line}: {reason}" if line else f"client.keys: {reason}")
        self.line = line
        self.reason = reason


@frozen
class KeyEntry:
    """One agent's line in client.keys."""

    id: str
    name: str
    ip: str
    key: str

    def line(self) -> str:
        """The ``ID NAME IP KEY`` text of this entry (no newline)."""
        return f"{self.id} {self.name} {self.ip} {self.key}"

    def encode(self) -> bytes:
        """The line as it is stored in the file, newline included."""
        return f"{self.line()}\n".encode()


def key_hash(entry: KeyEntry) -> str:
    """SHA-1 of the key line, as an agent sends it in the enrollment ``K:`` field."""
    return hashlib.sha1(entry.line().encode("utf-8")).hexdigest()  # noqa: S324 (Wazuh's format)


def format_client_keys(entries: Iterable[KeyEntry]) -> bytes:
    """The bytes of a client.keys file holding ``entries`` in the given order."""
    return b"".join(entry.encode() for entry in entries)


def write_client_keys(path: Path, entries: Iterable[KeyEntry]) -> None:
    """Replace ``path`` atomically with a client.keys file holding ``entries`` (mode 0640)."""
    write_atomically(path, format_client_keys(entries), mode=CLIENT_KEYS_MODE)


def parse_client_keys(data: bytes, max_entries: int = MAX_KEYS_ENTRIES) -> list[KeyEntry]:
    """Parse and validate a client.keys file; raise :class:`ClientKeysError` if malformed.

    Blank lines are skipped, and so are entries Wazuh marks as removed (name starting
    with ``!``), which a node without ``purge`` may still hold. Duplicate ids or names
    are refused, since either would make the agent channel ambiguous.
    """
    if len(data) > MAX_KEYS_FILE:
        raise ClientKeysError(0, f"file is larger than {MAX_KEYS_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ClientKeysError(0, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    entries: list[KeyEntry] = []
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if len(line) > MAX_KEYS_LINE:
            raise ClientKeysError(number, f"line longer than {MAX_KEYS_LINE} characters")
        fields = line.split(" ")
        if len(fields) != 4:
            raise ClientKeysError(number, "expected 'ID NAME IP KEY'")
        agent_id, name, ip, key = fields
        if name.startswith("!") or name.startswith("#"):
            continue
        entries.append(_checked_entry(number, agent_id, name, ip, key))
        if agent_id in seen_ids:
            raise ClientKeysError(number, f"duplicate agent id {agent_id}")
        if name in seen_names:
            raise ClientKeysError(number, f"duplicate agent name {name}")
        seen_ids.add(agent_id)
        seen_names.add(name)
        if len(entries) > max_entries:
            raise ClientKeysError(number, f"more than {max_entries} agents")
    return entries


def _checked_entry(number: int, agent_id: str, name: str, ip: str, key: str) -> KeyEntry:
    """Validate the four fields of one line."""
    if _ID.fullmatch(agent_id) is None:
        raise ClientKeysError(number, f"invalid agent id {agent_id[:16]!r}")
    problem = agent_name_problem(name)
    if problem is not None:
        raise ClientKeysError(number, f"invalid agent name {name[:64]!r}: {problem}")
    if normalize_ip(ip) is None:
        raise ClientKeysError(number, f"invalid IP {ip[:64]!r}")
    if _KEY.fullmatch(key) is None:
        raise ClientKeysError(number, "invalid key")
    return KeyEntry(agent_id, name, ip, key)


def read_client_keys(path: Path) -> list[KeyEntry]:
    """Read and parse ``path``; a missing file is an empty key set."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEYS_FILE + 1)
    except FileNotFoundError:
        return []
    return parse_client_keys(data)


#: What identifies one version of a file cheaply: (mtime in ns, size, inode).
FileStamp = tuple[int, int, int]


def file_stamp(info: os.stat_result) -> FileStamp:
    """The :data:`FileStamp` of a stat result."""
    return (info.st_mtime_ns, info.st_size, info.st_ino)


@frozen
class KeysDelta:
    """What one merge changed in client.keys: entries added or replaced, ids that left."""

    added: tuple[KeyEntry, ...]
    removed: tuple[str, ...]
    count: int


#: A key change announced by the master: (added entries as id/name/ip/key mappings, removed ids).
Push = tuple[Sequence[Mapping[str, str]], Sequence[str]]


@define
class KeysFile:
    """A worker's client.keys, mirrored in memory between the merges made through it.

    Parsing and validating a 50,000-line file costs far more than a merge, so the file is
    read again only when its stamp shows another writer (the integrity sync) replaced it.
    The mirror keeps each entry's encoded line, in id order (new ids are the highest, so
    they are appended), and a merge writes their concatenation. Not thread-safe: one merge
    at a time.
    """

    path: Path
    _entries: dict[str, KeyEntry] = field(factory=dict, init=False)
    _lines: dict[str, bytes] = field(factory=dict, init=False)
    _id_by_name: dict[str, str] = field(factory=dict, init=False)
    _stamp: FileStamp | None = field(default=None, init=False)

    def _refresh(self) -> None:
        """Read the file again unless it is the version this mirror last saw."""
        try:
            stamp: FileStamp | None = file_stamp(self.path.stat())
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        entries = sorted(read_client_keys(self.path), key=lambda entry: _id_order(entry.id))
        self._entries = {entry.id: entry for entry in entries}
        self._lines = {entry.id: entry.encode() for entry in entries}
        self._id_by_name = {entry.name: entry.id for entry in entries}
        self._stamp = stamp

    def merge(self, pushes: Iterable[Push]) -> KeysDelta:
        """Apply pushes in order and write the file once, atomically.

        An added id replaces any entry with the same id or the same name (the master has
        already decided). Raises :class:`ClientKeysError` if the file on disk is malformed
        or a pushed entry is invalid; then nothing is written.
        """
        self._refresh()
        entries, lines = dict(self._entries), dict(self._lines)
        id_by_name = dict(self._id_by_name)
        removed: set[str] = set()
        added: dict[str, KeyEntry] = {}
        last = _id_order(next(reversed(entries))) if entries else None
        in_order = True

        def drop(agent_id: str) -> None:
            gone = entries.pop(agent_id, None)
            if gone is not None:
                del lines[agent_id], id_by_name[gone.name]
                removed.add(agent_id)
                added.pop(agent_id, None)

        for pushed, gone_ids in pushes:
            for agent_id in gone_ids:
                drop(agent_id)
            for item in pushed:
                entry = pushed_entry(item)
                if entries.get(entry.id) == entry:
                    continue
                drop(entry.id)
                holder = id_by_name.get(entry.name)
                if holder is not None:
                    drop(holder)
                entries[entry.id], lines[entry.id] = entry, entry.encode()
                id_by_name[entry.name] = entry.id
                added[entry.id] = entry
                removed.discard(entry.id)
                order = _id_order(entry.id)
                if last is not None and order < last:
                    in_order = False
                else:
                    last = order
        if added or removed:
            if not in_order:
                ids = sorted(entries, key=_id_order)
                entries = {agent_id: entries[agent_id] for agent_id in ids}
                lines = {agent_id: lines[agent_id] for agent_id in ids}
            written = write_atomically(
                self.path, b"".join(lines.values()), mode=CLIENT_KEYS_MODE, skip_identical=False
            )
            self._entries, self._lines, self._id_by_name = entries, lines, id_by_name
            self._stamp = file_stamp(written)
        return KeysDelta(tuple(added.values()), tuple(sorted(removed)), len(entries))


def pushed_entry(item: Mapping[str, str]) -> KeyEntry:
    """Validate one pushed ``{"id", "name", "ip", "key"}`` entry; raise
    :class:`ClientKeysError` (line 0) when a field is missing or invalid."""
    try:
        return _checked_entry(0, item["id"], item["name"], item["ip"], item["key"])
    except (KeyError, TypeError):
        raise ClientKeysError(0, "a pushed entry needs id, name, ip and key") from None


def _id_order(agent_id: str) -> tuple[int, str]:
    """Sort ids by number (they are zero-padded, but not always to the same width)."""
    return (int(agent_id), agent_id)

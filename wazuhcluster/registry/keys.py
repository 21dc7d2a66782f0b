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
import re
from collections.abc import Iterable
from pathlib import Path

from attrs import frozen

from wazuhcluster.registry.groups import atomic_write
from wazuhcluster.registry.model import agent_name_problem, normalize_ip

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


def key_hash(entry: KeyEntry) -> str:
    """SHA-1 of the key line, as an agent sends it in the enrollment ``K:`` field."""
    return hashlib.sha1(entry.line().encode("utf-8")).hexdigest()  # noqa: S324 (Wazuh's format)


def format_client_keys(entries: Iterable[KeyEntry]) -> bytes:
    """The bytes of a client.keys file holding ``entries`` in the given order."""
    return "".join(f"{entry.line()}\n" for entry in entries).encode("utf-8")


def write_client_keys(path: Path, entries: Iterable[KeyEntry]) -> None:
    """Replace ``path`` atomically with a client.keys file holding ``entries`` (mode 0640)."""
    atomic_write(path, format_client_keys(entries), mode=CLIENT_KEYS_MODE)


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

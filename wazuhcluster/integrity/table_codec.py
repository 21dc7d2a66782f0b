"""The file table a worker sends the master: its encoding, and a decoding safe for hostile input.

**Table** (worker → master): JSON lines. The first line is ``{"v":1,"type":"table","count":N}``,
then one line per file ``{"p":path,"c":checksum,"s":size,"m":mode}``. Decoding checks every field,
the count, duplicates and caps (line length, entries), so a hostile table costs bounded memory.
"""

from __future__ import annotations

from collections.abc import Mapping

from wazuhcluster.integrity.records import (
    DEFAULT_MAX_ENTRIES,
    MAX_LINE,
    PackError,
    checked_path,
    checksum_field,
    encode_line,
    int_field,
    parse_line,
)
from wazuhcluster.integrity.scan import FileMeta, FileTable

#: Version of the table format (worker → master).
TABLE_VERSION = 1

#: Largest permission bits a table entry may carry.
_MAX_MODE = 0o7777


def encode_table(table: Mapping[str, FileMeta]) -> bytes:
    """Serialize a file table (path, checksum, size, mode; no local cache keys)."""
    parts = [encode_line({"v": TABLE_VERSION, "type": "table", "count": len(table)})]
    for path in sorted(table):
        meta = table[path]
        parts.append(encode_line({"p": path, "c": meta.checksum, "s": meta.size, "m": meta.mode}))
    return b"".join(parts)


def decode_table(data: bytes, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> FileTable:
    """Parse and validate what :func:`encode_table` produced.

    :raises PackError: on any malformed line, bad field, duplicate path, wrong count or cap.
    """
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise PackError("table does not end with a newline")
    lines.pop()
    if not lines:
        raise PackError("table is empty (no header)")
    for line in lines:
        if len(line) > MAX_LINE:
            raise PackError(f"line longer than {MAX_LINE} bytes")
    header = parse_line(lines[0])
    if header.get("v") != TABLE_VERSION or header.get("type") != "table":
        raise PackError(f"not a version {TABLE_VERSION} table header: {header!r}")
    count = int_field(header, "count", max_entries)
    if count != len(lines) - 1:
        raise PackError(f"header says {count} entries, found {len(lines) - 1}")
    table: FileTable = {}
    for line in lines[1:]:
        obj = parse_line(line)
        path = checked_path(obj.get("p"))[0]
        if path in table:
            raise PackError(f"duplicate path {path!r}")
        table[path] = FileMeta(
            checksum=checksum_field(obj),
            size=int_field(obj, "s", 1 << 62),
            mtime_ns=0,
            mode=int_field(obj, "m", _MAX_MODE),
        )
    return table

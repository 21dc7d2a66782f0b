"""The records of the integrity wire formats: limits, JSON lines and their field checks.

Both formats are JSON lines (:mod:`~wazuhcluster.integrity.table_codec` for the file table a
worker sends, :mod:`~wazuhcluster.integrity.pack` and :mod:`~wazuhcluster.integrity.unpack` for
the sync stream the master sends). Here are what both sides of them share: the versions, the
limits a receiver enforces (so a hostile peer costs bounded memory), the line encoding, the checks
of one field, and the header that opens a sync stream.

**Sync stream** (master → worker), version 2: a header line
``{"v":2,"type":"sync","create":A,"update":B,"delete":C,"bytes":N}``, then one
``{"t":"d","p":path}`` line per deletion, then the files, then ``{"t":"end"}``. Files travel two
ways:

- *Blocks* carry small files (up to :data:`SMALL_FILE`) of one directory, at most
  :data:`BLOCK_FILES` files and :data:`BLOCK_BYTES` of content each: a line
  ``{"t":"b","d":directory,"f":[[kind,name,size,checksum],...]}`` followed by the contents, one
  after the other. The receiver checks the directory once and writes the whole block in one go,
  so a cold sync of thousands of small files costs little more per file than creating it.
- A larger file is a line ``{"t":"f","k":kind,"p":path,"s":size,"c":checksum}`` followed by
  exactly ``size`` raw bytes, read and written piece by piece as they travel.

``kind`` is ``c`` (create) or ``u`` (update); in upper case (``C``, ``U``) it marks a block file
that changed on the master since its scan: the receiver skips it and the next cycle sends it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from wazuhcluster.integrity.paths import PathRefused, validate_relpath
from wazuhcluster.integrity.table import SyncItem

#: Version of the sync stream format (master → worker).
SYNC_VERSION = 2

#: Longest accepted line of a table, and of a sync stream record other than a block (a 1 KiB
#: path may grow six-fold with JSON escapes).
MAX_LINE = 8192

#: Files up to this size travel in blocks; larger ones as a record of their own, in pieces.
SMALL_FILE = 256 * 1024

#: Most files in one block.
BLOCK_FILES = 256

#: Most content bytes in one block (the receiver holds a block in memory until it is written).
BLOCK_BYTES = 512 * 1024

#: Longest accepted block line: BLOCK_FILES entries of a 255-byte name, at most three times
#: longer once escaped, with size and checksum, stay well under it.
MAX_BLOCK_LINE = 512 * 1024

#: Default cap on the number of entries of a decoded table.
DEFAULT_MAX_ENTRIES = 500_000

#: Default cap on one file's size in a sync stream (Wazuh's max_zip_size is 1 GiB for everything).
DEFAULT_MAX_FILE_SIZE = 1 << 30

#: Default cap on the content bytes of one sync stream.
DEFAULT_MAX_TOTAL_BYTES = 1 << 30


#: A SHA-256 in lowercase hex.
HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class PackError(ValueError):
    """A table or sync stream is malformed or over a cap; the message says why."""


def encode_line(obj: Mapping[str, Any]) -> bytes:
    """One record: compact ASCII JSON and a newline."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def short_repr(value: object) -> str:
    """``repr(value)``, cut to a length fit for an error message."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def parse_line(line: bytes) -> dict[str, Any]:
    """The JSON object of one record line."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise PackError(f"bad JSON line: {e}") from None
    if not isinstance(obj, dict):
        raise PackError("a line is not a JSON object")
    return obj


def int_field(obj: Mapping[str, Any], key: str, maximum: int) -> int:
    """Field ``key``: an integer (not a bool) in ``[0, maximum]``."""
    value = obj.get(key)
    if type(value) is not int or not 0 <= value <= maximum:
        raise PackError(f"field {key!r} must be an integer in [0, {maximum}], got {value!r}")
    return value


def checked_path(path: object) -> tuple[str, SyncItem]:
    """A path field, checked against the synced table, and its item."""
    try:
        item = validate_relpath(path)
    except PathRefused as e:
        raise PackError(str(e)) from None
    assert isinstance(path, str)
    return path, item


def checksum_field(obj: Mapping[str, Any]) -> str:
    """Field ``c``: a SHA-256 in lowercase hex."""
    checksum = obj.get("c")
    if not isinstance(checksum, str) or not HEX64.match(checksum):
        raise PackError(f"field 'c' must be 64 lowercase hex digits, got {checksum!r}")
    return checksum


@frozen
class SyncHeader:
    """The counts a sync stream announces before its records."""

    create: int
    update: int
    delete: int
    bytes: int

    def describe(self) -> str:
        """The Wazuh-style summary line."""
        return (
            f"Files to create: {self.create} | Files to update: {self.update} | "
            f"Files to delete: {self.delete}"
        )

"""The master's synced files in etcd, where the next master finds them.

One key per file, ``<prefix>files/<relative path>``, holds the file's bytes as they are
(group folders under ``etc/shared``, custom rules, decoders, lists and SCA policies: the
caller decides which paths). ``<prefix>files-published`` says etcd has been given the
files once, so a new master knows whether etcd's set is the truth or has never been
written. Writes go through the leader's fenced transaction; a file larger than
:data:`MAX_FILE` is refused before anything is written (etcd refuses requests above
1.5 MiB by default), and one transaction carries at most :data:`MAX_TXN_BYTES` of content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from zope.interface import implementer

from wazuhcluster.failover.agents import MAX_OPS, Fenced, Reader
from wazuhcluster.failover.interfaces import IDurableFiles
from wazuhcluster.failover.kv import Op, prefix_end, to_bytes

#: The largest file kept in etcd (its request limit is 1.5 MiB by default).
MAX_FILE = 1024 * 1024
#: Content bytes per transaction; a larger file travels alone.
MAX_TXN_BYTES = 1024 * 1024
#: Keys read per request when loading: at most 8 MiB of content, the client's answer bound
#: being 8 MiB of base64 (4/3 of it) plus keys, so keep well below.
PAGE = 4
#: The longest relative path kept.
MAX_PATH = 1024


class FileTooLarge(ValueError):
    """A file above :data:`MAX_FILE`: not stored in etcd."""

    def __init__(self, relpath: str, size: int) -> None:
        super().__init__(
            f"{relpath} is {size} bytes, more than the {MAX_FILE} bytes a file may have to be "
            "kept in etcd for failover"
        )
        self.relpath = relpath
        self.size = size


@implementer(IDurableFiles)
class DurableFiles:
    """Synced files under ``prefix``, written through ``fenced`` and read with ``reader``."""

    def __init__(self, fenced: Fenced, reader: Reader, prefix: str) -> None:
        self.fenced = fenced
        self.reader = reader
        self.files_prefix = prefix + "files/"
        self.marker_key = prefix + "files-published"
        #: Checksums of what this node last knew etcd to hold, by path (None: not known);
        #: set at promotion and kept by the publisher.
        self.known: dict[str, str] | None = None

    def _key(self, relpath: str) -> str:
        return self.files_prefix + relpath

    async def publish(self, changed: Mapping[str, bytes], removed: Sequence[str]) -> None:
        """Store ``changed`` files and delete ``removed`` paths, and mark etcd as holding
        the files; raises :class:`FileTooLarge` (nothing written) or what the fenced
        transaction raises (NotLeader, an etcd error)."""
        for relpath, data in changed.items():
            if len(data) > MAX_FILE:
                raise FileTooLarge(relpath, len(data))
            if not relpath or len(relpath) > MAX_PATH:
                raise ValueError(f"not a path kept in etcd: {relpath[:80]!r}")
        batches: list[list[Op]] = [[Op.delete(self._key(relpath)) for relpath in removed]]
        size = 0
        for relpath, data in sorted(changed.items()):
            if size + len(data) > MAX_TXN_BYTES or len(batches[-1]) >= MAX_OPS:
                batches.append([])
                size = 0
            batches[-1].append(Op.put(self._key(relpath), data))
            size += len(data)
        # The marker last: etcd is said to hold the files only once they are all there.
        if len(batches[-1]) >= MAX_OPS:
            batches.append([])
        batches[-1].append(Op.put(self.marker_key, "1"))
        for batch in batches:
            for start in range(0, len(batch), MAX_OPS):
                await self.fenced.fenced_txn(batch[start : start + MAX_OPS])

    async def load(self) -> tuple[dict[str, bytes], bool]:
        """Every stored file by path (read at one revision) and whether etcd was ever
        given the files."""
        files: dict[str, bytes] = {}
        start: bytes = to_bytes(self.files_prefix)
        end = prefix_end(self.files_prefix)
        revision = 0
        skip = len(to_bytes(self.files_prefix))
        while True:
            page = await self.reader.range(start, end, limit=PAGE, revision=revision)
            revision = revision or page.revision
            for kv in page.kvs:
                relpath = kv.key[skip:].decode("utf-8", "surrogateescape")
                files[relpath] = kv.value
            if not page.more or not page.kvs:
                break
            start = page.kvs[-1].key + b"\0"
        marker = (await self.reader.range(self.marker_key, revision=revision)).first
        return files, marker is not None

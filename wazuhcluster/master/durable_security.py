"""The API's security data published to etcd before an API change to it is answered.

Two files make it: ``etc/api/users.json`` (the users) and ``etc/api/rbac.db`` (roles,
policies, security rules, their links, token revocations). On a master with
``<failover>`` the API awaits :meth:`SecurityPublisher.publish` after each change of
either (``ApiHooks.security_changed``): it reads users.json and a consistent copy of the
database (SQLite's backup into memory, so a change committing meanwhile cannot tear it)
and stores those that differ from what etcd holds through the fenced store. When etcd
does not take them the call answers 503 (the change is made on this master only). A new
master writes them back before its API opens (:mod:`wazuhcluster.roles.security_takeover`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from wazuhcluster.api.errors import ApiError
from wazuhcluster.failover.interfaces import IDurableFiles
from wazuhcluster.integrity.scan import checksum_bytes
from wazuhcluster.master.durable_api import not_stored
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

USERS = "users.json"
DATABASE = "rbac.db"
#: The files kept, with the mode each gets back on disk.
SECURITY_FILES = {USERS: 0o600, DATABASE: 0o600}


def read_security(api_dir: Path) -> dict[str, bytes]:
    """users.json's bytes and a consistent image of rbac.db, those that exist (blocking)."""
    found: dict[str, bytes] = {}
    users = api_dir / USERS
    if users.is_file():
        found[USERS] = users.read_bytes()
    database = api_dir / DATABASE
    if database.is_file():
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        copy = sqlite3.connect(":memory:")
        try:
            source.backup(copy)
            image = bytearray(copy.serialize())
            # The header's read/write versions say WAL (2); an image is a plain rollback
            # journal file (1) until the API opens it and turns WAL on again.
            image[18:20] = b"\x01\x01"
            found[DATABASE] = bytes(image)
        finally:
            copy.close()
            source.close()
    return found


class SecurityPublisher:
    """Keeps etcd's copy of the API's security files equal to this master's."""

    def __init__(
        self, store: IDurableFiles, api_dir: Path, run_in_thread: RunInThread, log: ClusterLog
    ) -> None:
        self.store = store
        self.api_dir = api_dir
        self.run_in_thread = run_in_thread
        self.log = log

    async def publish(self) -> None:
        """Store what changed; raises a 503 ApiError when etcd does not take it."""
        try:
            await self._publish()
        except ApiError:
            raise
        except Exception as error:
            self.log.error(
                "The API's security data could not be stored in etcd: {error}", error=error
            )
            raise not_stored(
                "The change is made on this master only (a new master would not have it)", error
            ) from None

    async def _publish(self) -> None:
        known = self.store.known
        if known is None:
            stored, _ = await self.store.load()
            known = {name: checksum_bytes(data) for name, data in stored.items()}
            self.store.known = known
        current = await self.run_in_thread(read_security, self.api_dir)
        changed = {
            name: data for name, data in current.items() if known.get(name) != checksum_bytes(data)
        }
        if not changed:
            return
        await self.store.publish(changed, [])
        for name, data in changed.items():
            known[name] = checksum_bytes(data)

"""What a newly elected master does with the API's security data kept in etcd.

etcd's users.json and rbac.db (see :mod:`wazuhcluster.master.durable_security`) replace
this node's (temp file, fsync, rename; the database's old WAL and shared-memory files
removed first, so SQLite cannot replay them over the new image) before the API opens: the
new master has the same users, roles, policies, rules and token revocations. An etcd
never given them is seeded from this node's files.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from wazuhcluster.failover.interfaces import IDurableFiles
from wazuhcluster.integrity.scan import checksum_bytes
from wazuhcluster.master.durable_security import DATABASE, SECURITY_FILES, read_security
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread


def check_database(data: bytes) -> None:
    """Raise ValueError when ``data`` is not an SQLite database image."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(data)
        (result,) = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as error:
        raise ValueError(f"not an SQLite database: {error}") from None
    finally:
        connection.close()
    if result != "ok":
        raise ValueError(f"SQLite quick_check: {result}")


def write_security(api_dir: Path, files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Write etcd's security files into ``api_dir`` (blocking); the names written, and why
    a file was not (a database image that is not one keeps this node's database)."""
    written: list[str] = []
    problems: list[str] = []
    for name, mode in SECURITY_FILES.items():
        data = files.get(name)
        if data is None:
            continue
        target = api_dir / name
        if target.is_file() and name != DATABASE and target.read_bytes() == data:
            continue
        if name == DATABASE:
            try:
                check_database(data)
            except ValueError as error:
                problems.append(f"{name} in etcd: {error}")
                continue
            for suffix in ("-wal", "-shm", "-journal"):
                (api_dir / (name + suffix)).unlink(missing_ok=True)
        write_atomically(target, data, mode=mode)
        written.append(name)
    return written, problems


async def take_over_security(
    store: IDurableFiles, api_dir: Path, run_in_thread: RunInThread, log: ClusterLog
) -> None:
    """Put etcd's security files in ``api_dir`` (or seed etcd from them)."""
    stored, published = await store.load()
    if not published:
        local = await run_in_thread(read_security, api_dir)
        await store.publish(local, [])
        store.known = {name: checksum_bytes(data) for name, data in local.items()}
        log.info("etcd held no API users or roles yet: published this node's.")
        return
    files = {name: data for name, data in stored.items() if name in SECURITY_FILES}
    written, problems = await run_in_thread(write_security, api_dir, files)
    for problem in problems:
        log.error("Kept this node's API security data: {problem}", problem=problem)
    store.known = {name: checksum_bytes(data) for name, data in files.items()}
    log.info(
        "Took over the API's users, roles and revocations from etcd ({written} written).",
        written=", ".join(written) or "none",
    )

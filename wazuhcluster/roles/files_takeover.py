"""What a newly elected master does with the synced files kept in etcd.

etcd's files are the truth once a master has published them (its marker key is set):
each one whose bytes differ on this node's disk is written (temp file, fsync, rename);
a durable file on this disk that etcd does not hold is removed, as a worker's sync would
remove it (it was deleted on the master, or edited by hand on a master that died before
noticing it: that edit is lost, which the README says). Then the registry's groups follow
the group folders: a folder's group is created when missing, a group without a folder
and without agents is deleted. A cluster whose etcd was never given the files (failover
just configured) is seeded from this node's disk instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from wazuhcluster.config.home import Home
from wazuhcluster.failover.files import MAX_FILE
from wazuhcluster.failover.interfaces import IDurableFiles
from wazuhcluster.integrity.paths import PathRefused, validate_relpath
from wazuhcluster.integrity.scan import checksum_bytes
from wazuhcluster.integrity.table import is_excluded_name
from wazuhcluster.master.durable_files import DURABLE_DIRECTORIES, is_durable, read_files
from wazuhcluster.registry.groups import DEFAULT_GROUP
from wazuhcluster.registry.model import RegistryError
from wazuhcluster.registry.store import Registry
from wazuhcluster.roles.promotion import open_registry
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread

#: The mode the integrity sync gives these files.
FILE_MODE = 0o660


def local_durable_paths(root: Path) -> list[str]:
    """The durable synced files on this disk, as relative paths (blocking)."""
    found: list[str] = []
    for directory in DURABLE_DIRECTORIES:
        top = root / directory
        for folder, _, names in os.walk(top):
            for name in names:
                relpath = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                if is_excluded_name(name) or not is_durable(relpath):
                    continue
                try:
                    validate_relpath(relpath)
                except PathRefused:
                    continue
                found.append(relpath)
    return sorted(found)


def apply_files(root: Path, files: dict[str, bytes]) -> tuple[int, list[str]]:
    """Make the durable files on disk equal ``files`` (blocking); how many were written and
    the paths removed."""
    written = 0
    for relpath, data in sorted(files.items()):
        target = root / relpath
        try:
            if target.is_file() and target.read_bytes() == data:
                continue
        except OSError:
            pass
        write_atomically(target, data, mode=FILE_MODE)
        written += 1
    removed = [relpath for relpath in local_durable_paths(root) if relpath not in files]
    for relpath in removed:
        (root / relpath).unlink(missing_ok=True)
    shared = root / "etc" / "shared"
    for relpath in removed:
        folder = (root / relpath).parent
        # A group folder left with only its derived files goes with its group.
        while folder != shared and shared in folder.parents and folder.is_dir():
            leftovers = [p for p in folder.iterdir() if p.name != "merged.mg"]
            if leftovers:
                break
            for derived in folder.iterdir():
                derived.unlink()
            folder.rmdir()
            folder = folder.parent
    return written, removed


def group_folders(files: dict[str, bytes]) -> set[str]:
    """The groups whose folders etcd's files hold."""
    return {
        path.split("/")[2]
        for path in files
        if path.startswith("etc/shared/") and path.count("/") >= 3
    }


def sync_groups(registry: Registry, groups: set[str]) -> tuple[list[str], list[str], list[str]]:
    """Create the groups of ``groups`` the registry lacks; delete the registry's others
    that have no agents (blocking). Created, deleted, and kept for their agents."""
    created: list[str] = []
    for name in sorted(groups):
        if not registry.group_exists(name):
            try:
                registry.create_group(name)
            except RegistryError:
                continue
            created.append(name)
    deleted: list[str] = []
    kept: list[str] = []
    for info in registry.list_groups():
        if info.name in groups or info.name == DEFAULT_GROUP:
            continue
        if info.agent_count:
            kept.append(info.name)
            continue
        registry.delete_group(info.name)
        deleted.append(info.name)
    registry.flush_files()
    return created, deleted, kept


def _apply(home: Home, files: dict[str, bytes]) -> tuple[int, list[str], tuple[list[str], ...]]:
    written, removed = apply_files(home.root, files)
    registry = open_registry(home)
    try:
        groups = sync_groups(registry, group_folders(files))
    finally:
        registry.close()
    return written, removed, groups


def _read_local(root: Path) -> tuple[dict[str, bytes], list[str]]:
    contents, _, large = read_files(str(root), local_durable_paths(root))
    return contents, [str(error) for error in large]


async def take_over_files(
    store: IDurableFiles, home: Home, run_in_thread: RunInThread, log: ClusterLog
) -> None:
    """Write etcd's synced files to this node's disk (or seed etcd from it) and make the
    registry's groups follow them."""
    stored, published = await store.load()
    if not published:
        local, large = await run_in_thread(_read_local, home.root)
        for problem in large:
            log.error("Not kept in etcd: {problem}", problem=problem)
        await store.publish(local, [])
        store.known = {path: checksum_bytes(data) for path, data in local.items()}
        log.info("etcd held no synced files yet: published this node's {count}.", count=len(local))
        return
    files: dict[str, bytes] = {}
    for relpath, data in stored.items():
        try:
            validate_relpath(relpath)
        except PathRefused as error:
            log.error("Skipped a file in etcd: {error}", error=error)
            continue
        if not is_durable(relpath) or len(data) > MAX_FILE:
            log.error("Skipped a file in etcd: {path} is not one kept there", path=relpath)
            continue
        files[relpath] = data
    written, removed, (created, deleted, kept) = await run_in_thread(_apply, home, files)
    store.known = {path: checksum_bytes(data) for path, data in files.items()}
    log.info(
        "Took over {count} synced files from etcd: {written} written here, {removed} removed "
        "that etcd does not hold; groups created {created}, deleted {deleted}.",
        count=len(files),
        written=written,
        removed=len(removed),
        created=", ".join(created) or "none",
        deleted=", ".join(deleted) or "none",
    )
    if kept:
        log.warn(
            "Groups kept for their agents though etcd holds no folder for them: {kept}",
            kept=", ".join(kept),
        )

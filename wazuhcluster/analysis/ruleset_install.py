"""Install a Wazuh ruleset (decoders, rules, lists, SCA policies) into a node's HOME/ruleset.

What ``wazuh-cluster-ruleset`` does, without its command line, its downloads or its git calls:

1. :func:`extract_archive` takes the ``ruleset/`` members out of a Wazuh source archive (tar,
   any compression) and nothing else: regular files and folders only, names checked (no
   absolute path, no ``..``), sizes capped, then tarfile's ``data`` filter on each member.
   :func:`find_ruleset` finds the ruleset folder in an extracted tree or a checkout.
2. :func:`install` copies it into ``HOME/ruleset.new-XXXX`` (fsynced), loads it with the real
   analysis loader as the node would (the node's ``<ruleset>`` settings, its custom rules,
   decoders and lists; see :func:`validate`), and only when it loads swaps it in for
   ``HOME/ruleset`` in one step (``renameat2(RENAME_EXCHANGE)`` where Linux offers it, two
   renames otherwise). The previous tree is kept as ``HOME/ruleset.old`` (one generation),
   which is itself a source ``install`` accepts, for a rollback. A tree that fails to load is
   refused with the file, line and reason, and nothing under HOME changes.
3. Wazuh's rules name their CDB lists ``etc/lists/...``, where the node reads lists and where
   the master syncs them to its workers from, so the lists are also written there, each file
   atomically: a missing list is added and a list still equal to the previous install's copy is
   updated; a list the operator edited is kept (and reported).
4. ``HOME/ruleset/.installed.json`` records the version, the source, the time and the counts;
   :func:`status` reads it back.

Run as root, the new files belong to HOME's owner (the user the node runs as).

Pure file work (no network, no reactor); the caller runs it off any reactor thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from attrs import asdict, frozen

from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings

#: The folder under HOME the node reads its stock ruleset from, and its one kept predecessor.
RULESET = "ruleset"
PREVIOUS = "ruleset.old"
STAGING_PREFIX = "ruleset.new-"
RECORD = ".installed.json"
#: The parts of Wazuh's ruleset/ that are installed (``testing/`` is not).
PARTS = ("decoders", "rules", "lists", "sca")
#: Where the node reads CDB lists, and the mode the integrity sync gives them.
LISTS = "etc/lists"
LIST_MODE = 0o640
FILE_MODE = 0o640
DIR_MODE = 0o750

#: Caps on what is installed (Wazuh 4.14's ruleset: ~600 files, ~30 MiB with SCA).
MAX_FILES = 20_000
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
#: Caps on an archive as a whole: members and uncompressed bytes walked through.
MAX_MEMBERS = 1_000_000
MAX_ARCHIVE_BYTES = 4 * 1024 * 1024 * 1024
#: The largest VERSION.json read for the version.
MAX_VERSION_BYTES = 64 * 1024

_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+(?:[-.][0-9A-Za-z.]+)?)$")
_TOP_VERSION = re.compile(r"^wazuh-v?(\d+\.\d+\.\d+(?:[-.][0-9A-Za-z.]+)?)$")


class InstallError(Exception):
    """The ruleset cannot be installed; the message is one line for the operator."""


@frozen
class Counts:
    """How many files of each part a ruleset holds."""

    decoders: int = 0
    rules: int = 0
    lists: int = 0
    sca: int = 0

    def describe(self) -> str:
        """``120 decoder files, 168 rule files, 8 lists, 0 SCA policies``."""
        return (
            f"{self.decoders} decoder files, {self.rules} rule files, "
            f"{self.lists} lists, {self.sca} SCA policies"
        )


@frozen
class Source:
    """A ruleset folder found in a source, and what is known of where it came from."""

    path: str
    version: str | None
    label: str


@frozen
class Result:
    """What :func:`install` did."""

    version: str | None
    source: str
    counts: Counts
    warnings: tuple[str, ...]
    lists_written: tuple[str, ...]
    lists_kept: tuple[str, ...]
    previous: str | None


# --- finding the ruleset in a source ---------------------------------------------------------


def version_from_name(name: str) -> str | None:
    """``4.14.7`` from ``v4.14.7``, ``4.14.7`` or ``wazuh-4.14.7`` (None otherwise)."""
    found = _VERSION.match(name) or _TOP_VERSION.match(name)
    return found.group(1) if found else None


def _read_version_file(path: str) -> str | None:
    """The version a Wazuh source's VERSION.json names, or None."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_VERSION_BYTES + 1)
        if len(data) > MAX_VERSION_BYTES:
            return None
        value = json.loads(data).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return version_from_name(value) if isinstance(value, str) else None


def _is_ruleset(path: str) -> bool:
    return all(os.path.isdir(os.path.join(path, part)) for part in ("decoders", "rules"))


def find_ruleset(tree: str, label: str | None = None) -> Source:
    """The ruleset folder in ``tree``: a Wazuh source tree (``ruleset/``), a folder holding one
    source tree (an extracted archive's ``wazuh-X.Y.Z/``), or a ruleset folder itself
    (``decoders/`` and ``rules/``, e.g. a previous ``HOME/ruleset.old``)."""
    label = label or tree
    candidates = [tree]
    try:
        entries = [e for e in os.scandir(tree) if not e.name.startswith(".")]
    except OSError as error:
        raise InstallError(f"cannot read {tree}: {error.strerror}") from None
    if len(entries) == 1 and entries[0].is_dir(follow_symlinks=False):
        candidates.append(entries[0].path)
    for root in candidates:
        for path in (os.path.join(root, RULESET), root):
            if _is_ruleset(path):
                version = (
                    _recorded_version(path)
                    or _read_version_file(os.path.join(root, "VERSION.json"))
                    or version_from_name(os.path.basename(os.path.normpath(root)))
                )
                return Source(path, version, label)
    raise InstallError(f"no Wazuh ruleset in {label} (no ruleset/ with decoders/ and rules/)")


def _recorded_version(ruleset: str) -> str | None:
    """The version an installed ruleset's record names (reinstalling ruleset.old keeps it)."""
    record = read_record(ruleset)
    value = record.get("version")
    return value if isinstance(value, str) else None


def _member_path(name: str) -> list[str] | None:
    """The parts of a member name, or None when it is absolute or climbs out."""
    if name.startswith("/") or "\\" in name:
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return parts


def _ruleset_prefix(parts: list[str]) -> tuple[str, ...] | None:
    """Where the ruleset starts in a member's parts: ``ruleset/``, ``TOP/ruleset/`` or a bare
    ruleset's ``decoders/``..., or None for a member outside any ruleset part."""
    for size in (1, 2):
        if len(parts) > size + 1 and parts[size - 1] == RULESET and parts[size] in PARTS:
            return tuple(parts[:size])
    if len(parts) > 1 and parts[0] in PARTS:
        return ()
    return None


def extract_archive(archive: str, into: str, label: str | None = None) -> Source:
    """Extract the ruleset of the tar archive ``archive`` into the folder ``into``.

    Only regular files and folders below the ruleset's parts are extracted; anything else in
    the archive is walked past. Raises InstallError for an unreadable or oversized archive, a
    member that would land outside ``into``, or an archive without a ruleset.
    """
    label = label or archive
    if not hasattr(tarfile, "data_filter"):
        raise InstallError("this Python's tarfile has no 'data' filter; use Python >= 3.10.12")
    prefix: tuple[str, ...] | None = None
    top: str | None = None
    version: str | None = None
    files = total = walked = members = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                members += 1
                walked += max(member.size, 0)
                if members > MAX_MEMBERS or walked > MAX_ARCHIVE_BYTES:
                    raise InstallError(f"{label} is larger than this tool accepts")
                parts = _member_path(member.name)
                if parts is None:
                    raise InstallError(f"{label} holds an unsafe path: {member.name!r}")
                if top is None:
                    top = parts[0]
                if len(parts) == 2 and parts[1] == "VERSION.json" and member.isreg():
                    version = version or _member_version(tar, member)
                where = _ruleset_prefix(parts)
                if where is None or (prefix is not None and where != prefix):
                    continue
                if not (member.isreg() or member.isdir()):
                    raise InstallError(f"{label}: {member.name} is a link or a special file")
                prefix = where
                if member.isreg():
                    files += 1
                    total += member.size
                    if member.size > MAX_FILE_BYTES:
                        raise InstallError(f"{label}: {member.name} is too large")
                    if files > MAX_FILES or total > MAX_TOTAL_BYTES:
                        raise InstallError(f"{label}: the ruleset has too many or too large files")
                member.name = "/".join(parts)
                tar.extract(member, into, set_attrs=False, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        if reason.startswith("file could not be opened"):  # tarfile lists every method tried
            reason = "not a tar archive (plain, gzip, bzip2 or xz)"
        raise InstallError(f"cannot read the archive {label}: {reason}") from None
    if prefix is None:
        raise InstallError(f"no Wazuh ruleset in {label} (no ruleset/decoders or ruleset/rules)")
    path = os.path.join(into, *prefix)
    if not _is_ruleset(path):
        raise InstallError(f"the ruleset in {label} lacks decoders/ or rules/")
    if version is None and top is not None and prefix:
        version = version_from_name(top)
    return Source(path, version, label)


def _member_version(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str | None:
    if member.size > MAX_VERSION_BYTES:
        return None
    reader = tar.extractfile(member)
    if reader is None:
        return None
    try:
        value = json.loads(reader.read(MAX_VERSION_BYTES)).get("version")
    except (ValueError, AttributeError):
        return None
    return version_from_name(value) if isinstance(value, str) else None


# --- counting, records, status -----------------------------------------------------------------


def _walk_files(base: str) -> Iterator[str]:
    """Relative paths of the regular files below ``base``, sorted, links not followed."""
    for directory, subdirs, names in os.walk(base):
        subdirs.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                yield os.path.relpath(path, base).replace(os.sep, "/")


def count_files(ruleset: str) -> Counts:
    """The decoder and rule files the loader would read, the lists and the SCA policies."""

    def xml(part: str) -> int:
        folder = os.path.join(ruleset, part)
        if not os.path.isdir(folder):
            return 0
        return sum(
            1
            for name in os.listdir(folder)
            if name.endswith(".xml") and os.path.isfile(os.path.join(folder, name))
        )

    lists = [
        p for p in _walk_files(os.path.join(ruleset, "lists")) if not p.endswith((".cdb", ".tmp"))
    ]
    sca = [p for p in _walk_files(os.path.join(ruleset, "sca")) if p.endswith((".yml", ".yaml"))]
    return Counts(xml("decoders"), xml("rules"), len(lists), len(sca))


def read_record(ruleset: str) -> dict[str, Any]:
    """The ``.installed.json`` of a ruleset folder ({} when absent or unreadable)."""
    try:
        with open(os.path.join(ruleset, RECORD), "rb") as handle:
            record = json.loads(handle.read(1024 * 1024))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _default_names() -> set[str]:
    source = resources.files("wazuhcluster").joinpath("data", "ruleset")
    names: set[str] = set()
    for part in ("decoders", "rules"):
        branch = source.joinpath(part)
        if branch.is_dir():
            names.update(f"{part}/{e.name}" for e in branch.iterdir() if e.name.endswith(".xml"))
    return names


def status(home: str) -> dict[str, Any]:
    """Which ruleset ``home`` has: ``present``, ``version``, ``source``, ``installed_at``,
    ``counts`` and, when kept, ``previous`` (its path and version)."""
    home = os.path.abspath(home)
    ruleset = os.path.join(home, RULESET)
    if not os.path.isdir(ruleset):
        return {"present": False, "path": ruleset}
    record = read_record(ruleset)
    answer: dict[str, Any] = {
        "present": True,
        "path": ruleset,
        "version": record.get("version"),
        "source": record.get("source"),
        "installed_at": record.get("installed_at"),
        "counts": asdict(count_files(ruleset)),
    }
    if not record:
        names = {
            f"{part}/{name}"
            for part in ("decoders", "rules")
            if os.path.isdir(os.path.join(ruleset, part))
            for name in os.listdir(os.path.join(ruleset, part))
            if name.endswith(".xml")
        }
        answer["source"] = (
            "the project's small default set"
            if names and names == _default_names()
            else "unknown (not installed by wazuh-cluster-ruleset)"
        )
    previous = os.path.join(home, PREVIOUS)
    if os.path.isdir(previous):
        answer["previous"] = {"path": previous, "version": read_record(previous).get("version")}
    return answer


# --- installing -------------------------------------------------------------------------------


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as error:  # some file systems refuse a directory fsync
        if not directory or error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _copy_tree(source: str, target: str) -> None:
    """Copy the ruleset parts of ``source`` into the new folder ``target``, fsynced, capped."""
    files = total = 0
    for part in PARTS:
        base = os.path.join(source, part)
        if not os.path.isdir(base):
            continue
        for relative in _walk_files(base):
            origin = os.path.join(base, relative)
            size = os.lstat(origin).st_size
            files += 1
            total += size
            if size > MAX_FILE_BYTES:
                raise InstallError(f"{part}/{relative} is too large ({size} bytes)")
            if files > MAX_FILES or total > MAX_TOTAL_BYTES:
                raise InstallError("the ruleset has too many or too large files")
            destination = os.path.join(target, part, relative)
            os.makedirs(os.path.dirname(destination), mode=DIR_MODE, exist_ok=True)
            with open(origin, "rb") as reader, open(destination, "xb") as writer:
                shutil.copyfileobj(reader, writer, 1024 * 1024)
                os.fchmod(writer.fileno(), FILE_MODE)
                writer.flush()
                os.fsync(writer.fileno())
    for directory, _subdirs, _names in os.walk(target, topdown=False):
        _fsync_path(directory, directory=True)


def _write_record(target: str, record: dict[str, Any]) -> None:
    path = os.path.join(target, RECORD)
    with open(path, "x", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)
        json.dump(record, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_path(target, directory=True)


def plan_lists(home: str, new_lists: str, old_lists: str) -> tuple[list[str], list[str]]:
    """Which lists (relative to ``etc/lists``) to write, and which to keep as the operator
    edited them: a missing list or one equal to the previous install's copy is written."""
    write, keep = [], []
    current = os.path.join(home, LISTS)
    for relative in _walk_files(new_lists):
        target = os.path.join(current, relative)
        if os.path.islink(target) or (os.path.exists(target) and not os.path.isfile(target)):
            keep.append(relative)
            continue
        if not os.path.exists(target):
            write.append(relative)
            continue
        if _same(target, os.path.join(new_lists, relative)):
            continue
        if _same(target, os.path.join(old_lists, relative)):
            write.append(relative)
        else:
            keep.append(relative)
    return write, keep


def _same(first: str, second: str) -> bool:
    try:
        if os.path.getsize(first) != os.path.getsize(second):
            return False
        with open(first, "rb") as a, open(second, "rb") as b:
            while True:
                chunk = a.read(1024 * 1024)
                if chunk != b.read(1024 * 1024):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


@contextlib.contextmanager
def _home_view(home: str, staged: str, new_lists: str, lists: list[str]) -> Iterator[str]:
    """A folder that reads like ``home`` after the install: its entries as links, ``ruleset``
    linked to the staged tree, ``etc/lists`` with the lists about to be written."""
    view = tempfile.mkdtemp(prefix="wazuhcluster-ruleset-check-")
    try:
        for entry in os.scandir(home):
            if entry.name not in (RULESET, "etc"):
                os.symlink(entry.path, os.path.join(view, entry.name))
        os.symlink(staged, os.path.join(view, RULESET))
        etc, real_etc = os.path.join(view, "etc"), os.path.join(home, "etc")
        os.mkdir(etc)
        if os.path.isdir(real_etc):
            for entry in os.scandir(real_etc):
                if entry.name != "lists":
                    os.symlink(entry.path, os.path.join(etc, entry.name))
        real_lists = os.path.join(home, LISTS)
        overlay = {
            relative: os.path.join(real_lists, relative) for relative in _walk_files(real_lists)
        }
        overlay.update({relative: os.path.join(new_lists, relative) for relative in lists})
        for relative, origin in overlay.items():
            link = os.path.join(view, LISTS, relative)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(origin, link)
        os.makedirs(os.path.join(view, LISTS), exist_ok=True)
        yield view
    finally:
        shutil.rmtree(view, ignore_errors=True)


def validate(
    home: str, staged: str, settings: RulesetSettings, lists: list[str] | None = None
) -> tuple[str, ...]:
    """Load ``home`` as it would be with ``staged`` as its ruleset (and the ``lists`` of the
    staged tree written to etc/lists); return the loader's warnings, raise InstallError if it
    does not load."""
    home, staged = os.path.abspath(home), os.path.abspath(staged)
    new_lists = os.path.join(staged, "lists")
    with _home_view(home, staged, new_lists, lists or []) as view:
        try:
            engine = load_engine(view, settings)
        except Exception as error:  # the node's reload refuses any failure the same way
            reason = str(error).replace(view + os.sep, "").replace(view, home)
            reason = reason or type(error).__name__
            raise InstallError(f"the new ruleset does not load: {reason}") from None
        return tuple(w.replace(view + os.sep, "") for w in engine.warnings)


def _exchange(first: str, second: str) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False when unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2
    result = function(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), second)


def swap_in(home: str, staged: str) -> str | None:
    """Make ``staged`` HOME/ruleset; keep the tree it replaces as HOME/ruleset.old (returned)."""
    current = os.path.join(home, RULESET)
    previous = os.path.join(home, PREVIOUS)
    if not os.path.lexists(current):
        os.rename(staged, current)
        _fsync_path(home, directory=True)
        return None
    if os.path.islink(previous) or os.path.isfile(previous):
        os.unlink(previous)
    elif os.path.lexists(previous):
        shutil.rmtree(previous)
    if _exchange(staged, current):
        os.rename(staged, previous)  # the staged name now holds the replaced tree
    else:
        os.rename(current, previous)
        try:
            os.rename(staged, current)
        except OSError:
            os.rename(previous, current)
            raise
    _fsync_path(home, directory=True)
    return previous


def home_owner(home: str) -> tuple[int, int] | None:
    """Who new files under ``home`` must belong to: its owner when we run as root (the node
    runs as that user and must read them), None otherwise (ours already are)."""
    if os.geteuid() != 0:
        return None
    info = os.stat(home)
    return info.st_uid, info.st_gid


def _chown_tree(top: str, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    for directory, _subdirs, names in os.walk(top):
        os.lchown(directory, *owner)
        for name in names:
            os.lchown(os.path.join(directory, name), *owner)


def write_lists(
    home: str, new_lists: str, lists: list[str], owner: tuple[int, int] | None = None
) -> None:
    """Copy ``lists`` from the installed tree into HOME/etc/lists, each file atomically
    (owned by ``owner`` when given)."""
    base = os.path.join(home, LISTS)
    for relative in lists:
        target = os.path.join(base, relative)
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o770, exist_ok=True)
            if owner is not None:  # the new folders, from etc/lists down
                for step in range(relative.count("/") + 1):
                    parts = relative.split("/")[:step]
                    os.lchown(os.path.join(base, *parts), *owner)
        fd, temp = tempfile.mkstemp(prefix=".ruleset-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as writer, open(os.path.join(new_lists, relative), "rb") as r:
                os.fchmod(writer.fileno(), LIST_MODE)
                if owner is not None:
                    os.fchown(writer.fileno(), *owner)
                shutil.copyfileobj(r, writer, 1024 * 1024)
                writer.flush()
                os.fsync(writer.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_path(folder, directory=True)


@contextlib.contextmanager
def _locked(home: str) -> Iterator[None]:
    """One install at a time per HOME; leftovers of an interrupted one are cleared."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)  # the home itself: no lock file left
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallError(f"another ruleset install is running in {home}") from None
        for entry in os.scandir(home):
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        yield
    finally:
        os.close(fd)


def install(
    home: str,
    source: Source,
    settings: RulesetSettings,
    clock: Callable[[], float] = time.time,
) -> Result:
    """Install ``source`` as HOME/ruleset: stage, validate, swap, write the lists.

    Raises InstallError (with HOME unchanged) when the tree is refused.
    """
    home = os.path.abspath(home)
    if not os.path.isdir(home):
        raise InstallError(f"{home} is not a directory (create the node's home first)")
    owner = home_owner(home)
    with _locked(home):
        staged = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=home)
        try:
            os.chmod(staged, DIR_MODE)
            _copy_tree(source.path, staged)
            counts = count_files(staged)
            if not counts.decoders or not counts.rules:
                raise InstallError(f"the ruleset in {source.label} has no decoder or rule files")
            new_lists = os.path.join(staged, "lists")
            old_lists = os.path.join(home, RULESET, "lists")
            written, kept = plan_lists(home, new_lists, old_lists)
            warnings = validate(home, staged, settings, written)
            _write_record(
                staged,
                {
                    "version": source.version,
                    "source": source.label,
                    "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock())),
                    "counts": asdict(counts),
                    "lists_kept": kept,
                },
            )
            _chown_tree(staged, owner)
            previous = swap_in(home, staged)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        write_lists(home, os.path.join(home, RULESET, "lists"), written, owner)
    return Result(
        source.version,
        source.label,
        counts,
        warnings,
        tuple(written),
        tuple(kept),
        previous,
    )


__all__ = [
    "Counts",
    "InstallError",
    "Result",
    "Source",
    "count_files",
    "extract_archive",
    "find_ruleset",
    "install",
    "plan_lists",
    "read_record",
    "status",
    "swap_in",
    "validate",
    "version_from_name",
]

"""Compare the master's file table with a worker's: what the worker must create, update and delete.

Also splits a plan along a per-cycle byte budget, so a huge change set is spread over several sync
cycles instead of one transfer that times out (the problem of Wazuh issue #11945).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from attrs import field, frozen

from wazuhcluster.integrity.scan import FileMeta
from wazuhcluster.integrity.table import item_mode


def _sorted_tuple(paths: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(paths))


@frozen
class Plan:
    """What a worker must do to match the master.

    :ivar missing: paths on the master and not on the worker (create).
    :ivar shared: paths on both whose content or mode differs (update).
    :ivar extra: paths on the worker and not on the master (delete).
    :ivar files: the master's metadata of every path in ``missing`` and ``shared``.
    """

    missing: tuple[str, ...] = field(converter=_sorted_tuple, default=())
    shared: tuple[str, ...] = field(converter=_sorted_tuple, default=())
    extra: tuple[str, ...] = field(converter=_sorted_tuple, default=())
    files: Mapping[str, FileMeta] = field(factory=dict)

    @property
    def is_empty(self) -> bool:
        """Whether the worker is already in sync."""
        return not (self.missing or self.shared or self.extra)

    @property
    def counts(self) -> tuple[int, int, int]:
        """(files to create, files to update, files to delete), as Wazuh logs them."""
        return len(self.missing), len(self.shared), len(self.extra)

    @property
    def transfer_bytes(self) -> int:
        """Content bytes the files to create and update add up to."""
        return sum(meta.size for meta in self.files.values())

    def describe(self) -> str:
        """The Wazuh-style summary: ``Files to create: A | Files to update: B | Files to delete:
        C``."""
        a, b, c = self.counts
        return f"Files to create: {a} | Files to update: {b} | Files to delete: {c}"


def compare(master: Mapping[str, FileMeta], worker: Mapping[str, FileMeta]) -> Plan:
    """Classify every path of the two tables.

    A shared path needs an update when its checksum differs, or when the worker's mode differs from
    the mode the synced table prescribes (the master's own on-disk mode is irrelevant: workers
    always get the table's mode). Paths of the worker table that are not synced at all are ignored.
    """
    missing = [p for p in master if p not in worker]
    shared = []
    for path, meta in master.items():
        theirs = worker.get(path)
        if theirs is None:
            continue
        expected_mode = item_mode(path)
        if theirs.checksum != meta.checksum or (
            expected_mode is not None and theirs.mode != expected_mode
        ):
            shared.append(path)
    extra = [p for p in worker if p not in master and item_mode(p) is not None]
    files = {p: master[p] for p in (*missing, *shared)}
    return Plan(missing=missing, shared=shared, extra=extra, files=files)


@frozen
class SplitPlan:
    """A plan cut to one cycle's budget.

    :ivar now: what to send in this cycle (all deletions, and files within the budget).
    :ivar deferred: files left for a later cycle (empty when everything fits).
    """

    now: Plan
    deferred: Plan

    @property
    def deferred_bytes(self) -> int:
        """Content bytes left for later cycles."""
        return self.deferred.transfer_bytes


def split_plan(plan: Plan, budget_bytes: int, *, max_files: int | None = None) -> SplitPlan:
    """Keep as many files (in path order) as fit in ``budget_bytes`` and ``max_files``.

    Deletions cost nothing and all go in the first part. The first file always goes, even when it is
    larger than the budget on its own, so every cycle makes progress. The caller logs the deferred
    part; the next cycle's compare finds those files again.
    """
    if budget_bytes < 0:
        raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
    kinds = {p: "missing" for p in plan.missing} | {p: "shared" for p in plan.shared}
    taken: dict[str, list[str]] = {"missing": [], "shared": []}
    left: dict[str, list[str]] = {"missing": [], "shared": []}
    used = 0
    count = 0
    full = False
    for path in sorted(kinds):
        size = plan.files[path].size
        under_cap = max_files is None or count < max_files
        fits = count == 0 or (used + size <= budget_bytes and under_cap)
        if fits and not full:
            taken[kinds[path]].append(path)
            used += size
            count += 1
        else:
            # Once something is deferred, defer the rest too, so a cycle sends a prefix in path
            # order and later cycles pick up exactly where this one stopped.
            full = True
            left[kinds[path]].append(path)
    now = Plan(
        missing=taken["missing"],
        shared=taken["shared"],
        extra=plan.extra,
        files={p: plan.files[p] for p in (*taken["missing"], *taken["shared"])},
    )
    deferred = Plan(
        missing=left["missing"],
        shared=left["shared"],
        files={p: plan.files[p] for p in (*left["missing"], *left["shared"])},
    )
    return SplitPlan(now=now, deferred=deferred)

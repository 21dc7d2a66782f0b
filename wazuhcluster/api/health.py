"""The healthcheck's verdict and the ruleset-sync flag, as small pure functions.

Wazuh's ``GET /cluster/healthcheck`` gives timestamps and leaves the judgement to the
operator. We add a verdict per node and for the cluster, computed here from the same
data so the rule is written down once:

* ``red``: a worker silent for longer than ``max_silence`` (the master is about to drop it);
* ``yellow``: a keep-alive late by more than two intervals, no integrity check finished
  within three integrity periods (or never, once the worker has been connected that
  long), a sync deferring files to later cycles, or the last sync failed;
* ``green`` otherwise. The master itself is green while it answers.

The cluster's verdict is its worst node's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import frozen

GREEN, YELLOW, RED = "green", "yellow", "red"
_RANK = {GREEN: 0, YELLOW: 1, RED: 2}


@frozen
class Thresholds:
    """The intervals the verdict is measured against (the cluster's timings)."""

    keep_alive: float = 60.0
    max_silence: float = 120.0
    sync_integrity: float = 9.0


@frozen
class WorkerFacts:
    """What the verdict looks at for one worker (times are POSIX seconds)."""

    connected_at: float
    last_keep_alive: float
    last_check_end: float | None = None
    deferred_files: int = 0
    last_error: str | None = None


@frozen
class Verdict:
    """``status`` (green/yellow/red) and the reasons for anything but green."""

    status: str
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The verdict as it appears in the healthcheck."""
        return {"status": self.status, "reasons": list(self.reasons)}


def worker_verdict(facts: WorkerFacts, now: float, limits: Thresholds) -> Verdict:
    """Judge one worker (see module docstring)."""
    silent = now - facts.last_keep_alive
    if silent > limits.max_silence:
        return Verdict(RED, (f"no keep-alive for {silent:.0f} s",))
    reasons: list[str] = []
    if silent > 2 * limits.keep_alive:
        reasons.append(f"last keep-alive {silent:.0f} s ago")
    stale_after = 3 * limits.sync_integrity
    if facts.last_check_end is None:
        if now - facts.connected_at > stale_after:
            reasons.append("no integrity check has finished yet")
    elif now - facts.last_check_end > stale_after:
        reasons.append(f"last integrity check finished {now - facts.last_check_end:.0f} s ago")
    if facts.deferred_files:
        reasons.append(f"{facts.deferred_files} files wait for the next sync cycles")
    if facts.last_error:
        reasons.append(f"last integrity sync failed: {facts.last_error}")
    return Verdict(YELLOW if reasons else GREEN, tuple(reasons))


def cluster_verdict(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst of the nodes' verdicts, with every reason."""
    status = GREEN
    reasons: list[str] = []
    for verdict in verdicts:
        if _RANK[verdict.status] > _RANK[status]:
            status = verdict.status
        reasons.extend(verdict.reasons)
    return Verdict(status, tuple(reasons))


def ruleset_synced(status: Mapping[str, Any]) -> bool:
    """Whether a worker's health status says its synced files match the master's.

    True once an integrity check has finished, no sync is running or failed, and no
    files are deferred to later cycles.
    """
    check = status.get("last_check_integrity") or {}
    sync = status.get("last_sync_integrity") or {}
    if not status.get("sync_integrity_free", True) or check.get("date_end_master") is None:
        return False
    if sync.get("last_error") or sync.get("deferred_files"):
        return False
    started, ended = sync.get("date_start_master"), sync.get("date_end_master")
    return started is None or (ended is not None and ended >= started)

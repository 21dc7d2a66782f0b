"""Health verdicts: what Wazuh leaves to the operator's reading of timestamps, decided here.

A worker is **ok**, **lagging** (alive but behind: a sync failed, files are pending, a task is
late), **stale** (it stopped reporting: keep-alives or integrity checks are far overdue) or
**disconnected** (it left the cluster recently). The cluster's verdict is its worst worker's.
Pure functions over the master's health data, so the control tool, the API and monitoring
all say the same thing.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from wazuhcluster.config.cluster import Timings

OK, LAGGING, STALE, DISCONNECTED = "ok", "lagging", "stale", "disconnected"
_RANK = {OK: 0, LAGGING: 1, STALE: 2, DISCONNECTED: 3}


@frozen
class Verdict:
    """A health state and the reasons behind it (empty when ok)."""

    state: str
    reasons: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """True only for ok."""
        return self.state == OK


def iso_time(seconds: Any) -> str:
    """A POSIX time as Wazuh's health report prints it (``2026-08-14T10:21:09.123456Z``),
    or ``n/a``."""
    if not isinstance(seconds, (int, float)):
        return "n/a"
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _age(now: float, moment: Any) -> float | None:
    return now - float(moment) if isinstance(moment, (int, float)) else None


def worker_verdict(status: Mapping[str, Any], now: float, timings: Timings) -> Verdict:
    """The verdict of one worker from its health ``status`` (POSIX times) at ``now``."""
    if status.get("disconnected_at") is not None:
        return Verdict(DISCONNECTED, (f"disconnected for {now - status['disconnected_at']:.0f}s",))
    stale: list[str] = []
    lagging: list[str] = []
    keepalive_age = _age(now, status.get("last_keep_alive"))
    if keepalive_age is not None:
        if keepalive_age > timings.max_silence:
            stale.append(f"no keep-alive for {keepalive_age:.0f}s")
        elif keepalive_age > timings.keep_alive + timings.request_timeout:
            lagging.append(f"keep-alive {keepalive_age:.0f}s old")
    connected_for = _age(now, status.get("connected_since")) or 0.0
    check_limit = 3 * timings.sync_integrity + timings.request_timeout
    check = status.get("last_check_integrity", {})
    check_age = _age(now, check.get("date_end_master"))
    if check_age is None and connected_for > check_limit:
        stale.append(f"no integrity check in {connected_for:.0f}s")
    elif check_age is not None and check_age > check_limit:
        stale.append(f"last integrity check {check_age:.0f}s ago")
    sync = status.get("last_sync_integrity", {})
    if sync.get("last_error"):
        lagging.append(f"last integrity sync failed: {sync['last_error']}")
    if sync.get("deferred_files"):
        lagging.append(f"{sync['deferred_files']} files pending")
    if status.get("sync_integrity_free") is False:
        started = _age(now, sync.get("date_start_master"))
        if started is not None and started > timings.receive_file_timeout:
            lagging.append(f"integrity sync running for {started:.0f}s")
    agent_info = status.get("last_sync_agentinfo", {})
    info_age = _age(now, agent_info.get("date_end_master"))
    info_limit = 3 * timings.sync_agent_info + timings.request_timeout
    if info_age is not None and info_age > info_limit:
        lagging.append(f"last agent-info sync {info_age:.0f}s ago")
    if stale:
        return Verdict(STALE, tuple(stale + lagging))
    if lagging:
        return Verdict(LAGGING, tuple(lagging))
    return Verdict(OK)


def cluster_verdict(verdicts: Mapping[str, Verdict]) -> Verdict:
    """The worst worker verdict (ok for a master alone), with each worker's reasons."""
    worst = OK
    reasons: list[str] = []
    for name, verdict in verdicts.items():
        if _RANK[verdict.state] > _RANK[worst]:
            worst = verdict.state
        reasons.extend(f"{name}: {reason}" for reason in verdict.reasons)
    return Verdict(worst, tuple(reasons))

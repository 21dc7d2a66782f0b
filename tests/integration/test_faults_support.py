"""Checks shared by the fault, hostile-input and load tests (no tests here).

After a fault the tests ask the same questions: are the workers' synced files the master's,
with no temp file; is every enrolled agent in the registry and in every client.keys exactly
once; does SQLite still pass its integrity check; which ERROR lines did the logs get.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from tests.integration.test_integrity_real import expected_on_worker, synced_files, temp_files
from wazuhcluster.config.home import Home
from wazuhcluster.testing.devcluster import LocalCluster, cluster_config
from wazuhcluster.util.files import write_atomically

#: ERROR lines Wazuh's QA accepts during restarts.
EXPECTED_ERRORS = ("Could not connect to master",)

_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\w+): (.*)$")


def dial_through(cluster: LocalCluster, name: str, port: int) -> None:
    """Make worker ``name`` dial the master on ``port`` (a proxy) instead of the cluster port."""
    home = cluster.home(name)
    extra = cluster.services_config(name) + cluster.extra_config(name, "worker")
    text = cluster_config(name, "worker", cluster.key, port, extra=extra)
    write_atomically(home.config_file, text.encode(), 0o640)


def log_lines(home: Home, level: str) -> list[str]:
    """The lines of ``level`` (ERROR, WARNING, ...) in the node's cluster.log."""
    try:
        text = home.cluster_log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [m.group(2) for m in map(_LINE.match, text.splitlines()) if m and m.group(1) == level]


def unexpected_errors(home: Home, allowed: tuple[str, ...] = EXPECTED_ERRORS) -> list[str]:
    """ERROR lines of the node's cluster.log other than the ``allowed`` ones."""
    return [line for line in log_lines(home, "ERROR") if not any(a in line for a in allowed)]


def sync_difference(cluster: LocalCluster, worker: str) -> dict[str, object]:
    """How worker's synced files differ from the master's (empty when in sync), temp files
    included under the key ``temp``."""
    want = expected_on_worker(cluster.home(cluster.master).root)
    got = synced_files(cluster.home(worker).root)
    diff: dict[str, object] = {
        rel: (want.get(rel), got.get(rel))
        for rel in set(want) | set(got)
        if want.get(rel) != got.get(rel)
    }
    temps = temp_files(cluster.home(worker).root)
    if temps:
        diff["temp"] = temps
    return diff


def in_sync(cluster: LocalCluster, workers: list[str]) -> bool:
    """True when every worker holds exactly the master's synced files and no temp file."""
    return all(not sync_difference(cluster, name) for name in workers)


def registry_agents(home: Home) -> dict[str, tuple[str, str]]:
    """id → (name, key) from the master's SQLite registry, opened read-only; asserts that
    ``PRAGMA integrity_check`` passes."""
    path = home.var_db / "global.db"
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        [(verdict,)] = connection.execute("PRAGMA integrity_check").fetchall()
        assert verdict == "ok", f"integrity_check of {path}: {verdict}"
        rows = connection.execute("SELECT id, name, key FROM agents").fetchall()
    finally:
        connection.close()
    return {f"{agent_id:03d}": (name, key) for agent_id, name, key in rows}


def client_keys(home: Home) -> dict[str, tuple[str, str]]:
    """id → (name, key) of the live entries of a node's client.keys; asserts that no id and
    no name appears twice."""
    try:
        text = home.client_keys.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    found: dict[str, tuple[str, str]] = {}
    names: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 4 or fields[1].startswith(("!", "#")):
            continue
        agent_id, name, _ip, key = fields
        assert agent_id not in found, f"{home.client_keys}: id {agent_id} twice"
        assert name not in names, f"{home.client_keys}: name {name} twice"
        found[agent_id] = (name, key)
        names.add(name)
    return found


def vm_rss_kib(pid: int) -> int | None:
    """The resident set size of process ``pid`` in KiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` samples (0 with fewer than two)."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var = sum((x - mean_x) ** 2 for x, _ in samples)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in samples) / var


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` holds (0 if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def path_of(home: Home, rel: str) -> Path:
    """A file under a node's home."""
    return home.root / rel

"""Benchmark: a master and N workers under Wazuh's release-benchmark load, beside its thresholds.

Every node is its own process (``bench_cluster.py node ...``: the same service tree as
``twistd wazuhcluster``, built with :func:`wazuhcluster.tap.build_service`) on 127.0.0.1,
linked over mutual TLS with Wazuh's default timings. The master's registry holds every
agent, in ``--groups`` groups whose folders under etc/shared hold ``--files`` files in all.
The agents are driven over the real agent protocol from processes of their own
(``wazuh-load-gen``, :mod:`wazuhcluster.scripts.load_generator`; at most
:data:`AGENTS_PER_GENERATOR` agents each, for the file-descriptor limit): one TCP connection
per agent to its worker's 1514 port, a startup, then one keep-alive per agent every
``--keepalive`` seconds, AES and zlib as real agents. The agents start holding their group's
merged.mg (as agents that kept theirs across a manager restart), so the setup phase is not a
push of every group file to every agent; a file changed in the stable phase is pushed to the
agents of its group. The generators' CPU is sampled apart and never counted in a node's
figures. ``--in-process-agents`` keeps the former driver (keep-alives called straight into
each worker's session table from inside the worker, no agent protocol) for comparison.

Phases: *setup* (nodes start, workers connect and sync the shared files, every agent
connects: each worker's latest agent-info report carries all its agents and no worker has
warned of agents still connecting for 15 s) then *stable* (``--stable`` seconds, one shared
file changed on the master every ``--change-every`` seconds). Figures come from the nodes
themselves: "Finished in" lines of each cluster.log, the master's health report
(``wazuh-cluster-control -i more --json``) for agent-groups sends, and /proc for CPU, memory
(USS and RSS) and file descriptors.

    .venv/bin/python bench/bench_cluster.py [--workers 10] [--agents 50000] [--stable 300]
    .venv/bin/python bench/bench_cluster.py --sweep [--stable 60]   # 1/2/5/10 workers, 10k/25k/50k
    .venv/bin/python bench/bench_cluster.py --profile        # cProfile the master and one worker
    .venv/bin/python bench/bench_cluster.py --trace-memory          # where held memory came from
    .venv/bin/python bench/bench_cluster.py --in-process-agents     # the former in-node driver

Writes docs/bench/cluster*.csv and PNG plots (bench/plot.py), prints the table. Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from attrs import define, field

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from wazuhcluster.config.home import Home  # noqa: E402
from wazuhcluster.testing.devcluster import LocalCluster, cluster_config, install_certificates  # noqa: E402
from wazuhcluster.util.files import write_atomically  # noqa: E402

OUT = ROOT / "docs" / "bench"
#: Wazuh's defaults, except a quick first reconnection so the setup phase is short.
BENCH_TIMINGS = {"reconnect": "1s", "reconnect_max": "5s"}
SETUP_TIMEOUT = 900.0
#: Agents per load-generator process (one socket each; the file-descriptor limit is 20,000 here).
AGENTS_PER_GENERATOR = 15_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
FINISHED = re.compile(
    r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) INFO: \[([^\]]+)\] \[([^\]]+)\] Finished in ([0-9.]+)s"
)

#: wazuh-qa thresholds, 10 workers / 50,000 agents (reference/wazuh-cluster.md §11):
#: (phase, figure) → (max, mean); seconds, percent, KB or count.
WAZUH_10W = {
    ("setup", "agent-info master"): (8.5, 1.5),
    ("setup", "agent-info workers"): (21.0, 4.0),
    ("setup", "integrity check master"): (16.0, 3.0),
    ("setup", "integrity check workers"): (26.0, 7.5),
    ("setup", "integrity sync master"): (20.2, 3.6),
    ("setup", "integrity sync workers"): (10.0, 1.5),
    ("stable", "agent-info master"): (3.0, 1.4),
    ("stable", "agent-info workers"): (5.1, 4.1),
    ("stable", "integrity check master"): (4.5, 2.5),
    ("stable", "integrity check workers"): (9.0, 6.7),
    ("stable", "master CPU %"): (100.0, 51.0),
    ("stable", "master FDs"): (116.0, 98.0),
    ("stable", "master USS KB"): (330_000.0, 197_162.0),
    ("stable", "worker CPU %"): (38.3, 14.0),
    ("stable", "worker USS KB"): (256_000.0, 0.0),
}
#: Issue 10's own targets (stable phase maxima) and the changed-file median.
TARGETS = {
    "agent-info master": 1.5,
    "integrity check master": 2.25,
    "master USS KB": 165_000.0,
    "changed file on all workers": 2.0,
}


# ------------------------------------------------------------------------ node process mode


def node_main(argv: list[str]) -> None:
    """Run one node (``node --role R --home H [--first A --count N] [--profile F]``)."""
    parser = argparse.ArgumentParser(prog="bench_cluster.py node")
    parser.add_argument("--role", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--keepalive", type=float, default=10.0)
    parser.add_argument("--profile", default="")
    parser.add_argument("--tracemalloc", default="")
    options = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from wazuhcluster.config.cluster import load_config
    from wazuhcluster.tap import build_service

    home = Home(Path(options.home))
    out = (home.logs / "node.out").open("a")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(out)], redirectStandardIO=False)
    config = load_config(home.config_file, home, options.role)
    top = build_service(config, reactor, freeze_startup=True)  # as twistd runs it
    if options.count:
        role = next(s for s in top if hasattr(s, "channel") and hasattr(s, "link"))
        AgentLoad(role.channel.sessions, options.first, options.count, options.keepalive).start(
            reactor
        )
    profiler = None
    if options.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

        def dump() -> None:
            profiler.disable()
            profiler.dump_stats(options.profile)

        reactor.addSystemEventTrigger("before", "shutdown", dump)
    if options.tracemalloc:
        trace_growth(reactor, Path(options.tracemalloc))
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    # Twisted's own handlers: SIGTERM stops the reactor, and SIGCHLD lets it notice its
    # analysis processes end (without it a stopping node waits for them forever).
    reactor.run()  # type: ignore[attr-defined]


def trace_growth(reactor: Any, out: Path, settle: float = 60.0) -> None:
    """Trace allocations (tracemalloc, slow) and, at shutdown, write to ``out`` where the
    memory allocated since ``settle`` seconds after start and still held was allocated."""
    import tracemalloc

    tracemalloc.start(12)
    first: list[Any] = []
    reactor.callLater(settle, lambda: first.append(tracemalloc.take_snapshot()))

    def dump() -> None:
        if not first:
            return
        growth = tracemalloc.take_snapshot().compare_to(first[0], "traceback")
        with out.open("w") as handle:
            for stat in growth[:25]:
                handle.write(f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks\n")
                handle.write("\n".join(stat.traceback.format()) + "\n\n")

    reactor.addSystemEventTrigger("before", "shutdown", dump)


class AgentLoad:
    """In-process mode only (``--in-process-agents``): keep-alives of agents
    ``first .. first+count-1`` called straight into a worker's session table, spread evenly
    over each ``interval`` (ten slices a second); no agent protocol."""

    SLICES_PER_SECOND = 10

    def __init__(self, sessions: Any, first: int, count: int, interval: float) -> None:
        from wazuhcluster.agents.control import KeepAliveData, OsInfo

        self.sessions = sessions
        self.ids = [f"{n:03d}" for n in range(first, first + count)]
        self.interval = interval
        self.position = 0
        self._data: dict[str, KeepAliveData] = {}
        self._os = OsInfo(
            "Ubuntu", "22.04.3 LTS", "22", "04", None, "Jammy Jellyfish", "ubuntu", "x86_64"
        )
        self._make = KeepAliveData

    def data_for(self, agent_id: str) -> Any:
        """The agent's keep-alive data, following its group's merged.mg sum."""
        target = self.sessions.merged_for(agent_id) if self.sessions.merged_for else None
        merged = target[0] if target else ""
        data = self._data.get(agent_id)
        if data is None or data.merged_sum != merged:
            name = f"agent-{agent_id}"
            data = self._make(
                uname=f"Linux |{name} |5.15.0-91-generic |#101-Ubuntu SMP |x86_64 "
                "[Ubuntu|ubuntu: 22.04.3 LTS (Jammy Jellyfish)] - Wazuh v4.9.0",
                os=self._os,
                version="Wazuh v4.9.0",
                config_sum="ab73af41699f13fdd81903b5f23d8d00",
                merged_sum=merged,
                labels=(),
                agent_ip="10.0.0.1",
            )
            self._data[agent_id] = data
        return data

    def tick(self) -> None:
        """Send the next slice of keep-alives."""
        per_tick = max(1, round(len(self.ids) / (self.interval * self.SLICES_PER_SECOND)))
        for _ in range(per_tick):
            agent_id = self.ids[self.position]
            self.position = (self.position + 1) % len(self.ids)
            self.sessions.keepalive(
                agent_id, f"agent-{agent_id}", "any", "127.0.0.1", self.data_for(agent_id)
            )

    def start(self, reactor: Any) -> None:
        """Start ticking."""
        from twisted.internet.task import LoopingCall

        loop = LoopingCall(self.tick)
        loop.clock = reactor
        loop.start(1.0 / self.SLICES_PER_SECOND, now=False)


# ------------------------------------------------------------------------ measurement


def proc_sample(pid: int) -> tuple[float, int, int, int]:
    """(CPU seconds, USS KB, RSS KB, open file descriptors) of ``pid`` now."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    uss = rss = 0
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("Private_Clean", "Private_Dirty"):
                uss += int(rest.split()[0])
            elif name == "Rss":
                rss = int(rest.split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return cpu, uss, rss, fds


@define
class Series:
    """Time-stamped values of one figure of one node."""

    node: str
    figure: str
    points: list[tuple[float, float]] = field(factory=list)


@define
class Scenario:
    """One run's parameters."""

    workers: int = 10
    agents: int = 50_000
    files: int = 2_000
    groups: int = 50
    stable: float = 300.0
    change_every: float = 60.0
    keepalive: float = 10.0
    profile: bool = False
    trace_memory: bool = False
    #: The former driver: keep-alives injected inside the workers, no agent protocol.
    in_process_agents: bool = False


@define
class Run:
    """A live cluster: homes, processes and what was measured."""

    scenario: Scenario
    base: Path
    cluster: LocalCluster
    processes: dict[str, subprocess.Popen[bytes]] = field(factory=dict)
    #: The load-generator processes (their CPU is not part of any node's figures).
    generators: list[subprocess.Popen[bytes]] = field(factory=list)
    generator_cpu: float = 0.0
    phases: dict[str, tuple[float, float]] = field(factory=dict)
    samples: list[tuple[float, str, float, int, int, int]] = field(factory=list)
    change_delays: list[tuple[float, float]] = field(factory=list)
    groups_sends: dict[tuple[str, float], float] = field(factory=dict)
    health: dict[str, Any] = field(factory=dict)
    #: (phase, time, figure, node, value) of every timing and sample, read before the homes go.
    series: list[tuple[str, float, str, str, float]] = field(factory=list)

    @property
    def names(self) -> list[str]:
        """Master first, then the workers."""
        return [self.cluster.master, *self.cluster.workers]


def write_homes(run: Run) -> None:
    """Configs and certificates of every node, then the master's agents, groups and files."""
    cluster = run.cluster
    for name, role in [(cluster.master, "master")] + [(w, "worker") for w in cluster.workers]:
        home = cluster.home(name)
        home.make_dirs()
        text = cluster_config(
            name,
            role,
            cluster.key,
            cluster.port,
            timings=BENCH_TIMINGS,
            extra=cluster.services_config(name),
        )
        write_atomically(home.config_file, text.encode(), 0o640)
        install_certificates(home, cluster.ca, name)
    sums = populate_master(cluster.home(cluster.master), run.scenario)
    (run.base / "merged_sums.json").write_text(json.dumps(sums))


def group_name(index: int) -> str:
    """The name of group ``index``."""
    return f"group{index:02d}"


def populate_master(home: Home, scenario: Scenario) -> dict[str, str]:
    """Enroll the agents (round-robin over the groups), write the shared files and each
    group's merged.mg; returns agent id → the MD5 of its group's merged.mg."""
    from wazuhcluster.registry.groups import write_group_merged
    from wazuhcluster.registry.store import Registry, RegistryFiles

    registry = Registry.open(
        home.var_db / "global.db",
        RegistryFiles(home.client_keys, home.shared, home.root / "var" / "multigroups"),
    )
    registry.connection.execute("PRAGMA synchronous = OFF")  # setup speed only
    for index in range(scenario.groups):
        registry.create_group(group_name(index))
    group_of = {}
    for number in range(1, scenario.agents + 1):
        group = group_name(number % scenario.groups)
        group_of[registry.enroll(f"agent-{number:03d}", "any", [group]).id] = group
    registry.flush_files()
    registry.close()
    rnd = random.Random(10)
    for number in range(scenario.files):
        folder = home.shared / group_name(number % scenario.groups)
        size = rnd.randint(1024, 8192)
        (folder / f"file{number:04d}.conf").write_bytes(rnd.randbytes(size // 2).hex().encode())
    sums = {}
    for index in range(scenario.groups):
        merged = write_group_merged(home.shared, group_name(index))
        sums[group_name(index)] = hashlib.md5(merged.read_bytes()).hexdigest()
    return {str(agent_id): sums[group] for agent_id, group in group_of.items()}


def start_node(run: Run, name: str, role: str, first: int = 1, count: int = 0) -> None:
    """Start one node process."""
    home = run.cluster.home(name)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "node",
        "--role",
        role,
        "--home",
        str(home.root),
        "--first",
        str(first),
        "--count",
        str(count),
        "--keepalive",
        str(run.scenario.keepalive),
    ]
    if run.scenario.profile and name in (run.cluster.master, run.cluster.workers[0]):
        command += ["--profile", str(run.base / f"{role}.prof")]
    if run.scenario.trace_memory and role == "master":
        command += ["--tracemalloc", str(run.base / "master_memory_growth.txt")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = (home.logs / "stdout").open("ab")
    run.processes[name] = subprocess.Popen(
        command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    out.close()


def start_cluster(run: Run) -> None:
    """Start the master, then the workers, then the load generators (or, with
    ``in_process_agents``, each worker with its slice of agents injected inside it)."""
    start_node(run, run.cluster.master, "master")
    wait_log(run, run.cluster.master, "listening on", 60)
    per_worker, extra = divmod(run.scenario.agents, run.scenario.workers)
    first = 1
    spans = []
    for index, name in enumerate(run.cluster.workers):
        count = per_worker + (1 if index < extra else 0)
        if run.scenario.in_process_agents:
            start_node(run, name, "worker", first, count)
        else:
            start_node(run, name, "worker")
            spans.append((run.cluster.node_ports(name)["agents"], first, first + count - 1))
        first += count
    if spans:
        start_generators(run, spans)


def start_generators(run: Run, spans: list[tuple[int, int, int]]) -> None:
    """Start ``wazuh-load-gen`` processes carrying the agents: each worker's span of agent
    ids goes to its 1514 port, at most :data:`AGENTS_PER_GENERATOR` agents per process."""
    groups: list[list[str]] = [[]]
    room = AGENTS_PER_GENERATOR
    for port, first, last in spans:
        while first <= last:
            take = min(room, last - first + 1)
            groups[-1].append(f"127.0.0.1:{port}={first}-{first + take - 1}")
            first += take
            room -= take
            if room == 0:
                groups.append([])
                room = AGENTS_PER_GENERATOR
    keys = run.cluster.home(run.cluster.master).client_keys
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for number, targets in enumerate(group for group in groups if group):
        command = [
            sys.executable,
            "-m",
            "wazuhcluster.scripts.load_generator",
            "--keys",
            str(keys),
            "--merged-sums",
            str(run.base / "merged_sums.json"),
            "--keepalive",
            str(run.scenario.keepalive),
            "--spread",
            str(run.scenario.keepalive),
            "--no-started-event",
        ]
        for target in targets:
            command += ["--target", target]
        out = (run.base / f"load-gen-{number}.out").open("ab")
        run.generators.append(
            subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        )
        out.close()


def log_text(run: Run, name: str) -> str:
    """A node's cluster.log so far."""
    try:
        return run.cluster.home(name).cluster_log.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_log(run: Run, name: str, text: str, timeout: float) -> None:
    """Wait for ``text`` in a node's cluster.log, or fail."""
    deadline = time.monotonic() + timeout
    while text not in log_text(run, name):
        check_alive(run)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: no {text!r} in cluster.log after {timeout:.0f}s")
        time.sleep(0.2)


def check_alive(run: Run) -> None:
    """Fail when a node or a load generator died."""
    for name, process in run.processes.items():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see its logs")
    for number, process in enumerate(run.generators):
        if process.poll() is not None:
            raise RuntimeError(
                f"load generator {number} exited with {process.returncode}; "
                f"see {run.base}/load-gen-{number}.out"
            )


def sample(run: Run) -> None:
    """One /proc sample of every node."""
    now = time.time()
    for name, process in run.processes.items():
        try:
            cpu, uss, rss, fds = proc_sample(process.pid)
        except (OSError, IndexError):
            continue
        run.samples.append((now, name, cpu, uss, rss, fds))


def poll_health(run: Run) -> None:
    """Record agent-groups sends from the master's health report."""
    home = run.cluster.home(run.cluster.master)
    answer = subprocess.run(
        [
            str(Path(sys.executable).parent / "wazuh-cluster-control"),
            "--home",
            str(home.root),
            "-i",
            "more",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        health = json.loads(answer.stdout)
    except ValueError:
        return
    run.health = health
    for name, node in health.get("nodes", {}).items():
        status = node.get("status") or {}
        sync = status.get("last_sync_agentgroup") or {}
        start, end = sync.get("date_start"), sync.get("date_end")
        if start and end and end >= start:
            run.groups_sends[(name, float(start))] = float(end) - float(start)


#: Warnings of a worker while agents are still connecting: one from an address that holds
#: too many handshakes, a key not known yet, or a key whose earlier connection is still open
#: (a retry after a handshake timeout).
CONNECTING = re.compile(
    r"^(\S+ \S+) WARNING: .*(Too many connections from|\(1408\): Invalid ID|"
    r"Agent key already in use)",
    re.MULTILINE,
)
#: Seconds without such a warning on any worker before the setup phase may end.
SETTLED = 15.0


def setup_done(run: Run) -> bool:
    """Every worker synced the files once; its latest agent-info report carried every one of
    its agents (each sent a keep-alive within the interval, so each is connected); and no
    worker warned of agents still connecting in the last :data:`SETTLED` seconds (without
    the last two, the stable phase began with the tail of the connection storm in it)."""
    per_worker, extra = divmod(run.scenario.agents, run.scenario.workers)
    for index, name in enumerate(run.cluster.workers):
        text = log_text(run, name)
        if "[Integrity sync] Finished" not in text and "Sync not required" not in text:
            return False
        wanted = per_worker + (1 if index < extra else 0)
        applied = re.findall(
            r"\[Agent-info sync\] Finished in [0-9.]+s\. Updated (\d+) chunks", text
        )
        if not applied or int(applied[-1]) < wanted:
            return False
        warned = CONNECTING.findall(text)
        if warned:
            last = datetime.strptime(warned[-1][0], "%Y/%m/%d %H:%M:%S").timestamp()
            if time.time() - last < SETTLED:
                return False
    return True


def change_file(run: Run, number: int) -> None:
    """Change one shared file on the master; time until every worker holds the new content."""
    scenario = run.scenario
    index = number % scenario.files
    relative = Path(group_name(index % scenario.groups)) / f"file{index:04d}.conf"
    master = run.cluster.home(run.cluster.master).shared / relative
    content = master.read_bytes() + f"\n# change {number} at {time.time()}\n".encode()
    tmp = master.with_suffix(".tmp")
    tmp.write_bytes(content)
    started = time.time()
    os.replace(tmp, master)
    copies = [run.cluster.home(name).shared / relative for name in run.cluster.workers]
    deadline = started + 60
    pending = set(copies)
    while pending and time.time() < deadline:
        for copy in list(pending):
            try:
                if copy.read_bytes() == content:
                    pending.discard(copy)
            except OSError:
                pass
        if pending:
            time.sleep(0.02)
    delay = time.time() - started if not pending else float("nan")
    run.change_delays.append((started, delay))


def run_phases(run: Run) -> None:
    """Setup until synced, then the stable phase with file changes; sample all along."""
    started = time.time()
    start_cluster(run)
    last_health = 0.0
    while not setup_done(run):
        check_alive(run)
        sample(run)
        if time.time() - started > SETUP_TIMEOUT:
            raise RuntimeError("setup phase did not finish")
        time.sleep(1.0)
    poll_health(run)
    run.phases["setup"] = (started, time.time())
    stable_start = time.time()
    next_change = stable_start + min(run.scenario.change_every, run.scenario.stable / 2)
    changes = 0
    while time.time() - stable_start < run.scenario.stable:
        check_alive(run)
        sample(run)
        now = time.time()
        if now >= next_change:
            change_file(run, changes)
            changes += 1
            next_change = now + run.scenario.change_every
        if now - last_health >= 15:
            poll_health(run)
            last_health = now
        time.sleep(1.0)
    poll_health(run)
    run.phases["stable"] = (stable_start, time.time())


def stop_cluster(run: Run) -> None:
    """SIGTERM the load generators (their CPU time noted), then every node (workers first),
    and reap them."""
    for process in run.generators:
        if process.poll() is None:
            try:
                run.generator_cpu += proc_sample(process.pid)[0]
            except (OSError, IndexError):
                pass
            process.send_signal(signal.SIGTERM)
    for process in run.generators:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for name in reversed(run.names):
        process = run.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in run.processes.values():
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------ figures


def finished_lines(run: Run) -> Iterator[tuple[str, float, str, str, float]]:
    """(node, time, tag, task, seconds) for every "Finished in" line of every node."""
    for name in run.names:
        for line in log_text(run, name).splitlines():
            match = FINISHED.match(line)
            if match:
                stamp = datetime.strptime(match[1], "%Y/%m/%d %H:%M:%S").timestamp()
                yield name, stamp, match[2], match[3], float(match[4])


def phase_of(run: Run, stamp: float) -> str | None:
    """The phase a time belongs to (log stamps are whole seconds)."""
    for phase, (start, end) in run.phases.items():
        if int(start) <= stamp <= end:
            return phase
    return None


TASK_FIGURES = {
    "Agent-info sync": "agent-info",
    "Integrity check": "integrity check",
    "Integrity sync": "integrity sync",
    "Agent-groups send full": "agent-groups send full",
}


def timings(run: Run) -> list[tuple[str, float, str, str, float]]:
    """(phase, time, figure, node, seconds) of every timed task."""
    rows = []
    master = run.cluster.master
    for node, stamp, tag, task, seconds in finished_lines(run):
        base = TASK_FIGURES.get(task)
        if base is None or not tag.startswith("Worker "):
            continue
        figure = f"{base} {'master' if node == master else 'workers'}"
        phase = phase_of(run, stamp)
        if phase:
            rows.append((phase, stamp, figure, node, seconds))
    for (node, start), seconds in run.groups_sends.items():
        phase = phase_of(run, start)
        if phase:
            rows.append((phase, start, "agent-groups send master", node, seconds))
    for start, delay in run.change_delays:
        rows.append(("stable", start, "changed file on all workers", "workers", delay))
    return rows


def resource_rows(run: Run) -> list[tuple[str, float, str, str, float]]:
    """(phase, time, figure, node, value): CPU %, USS KB, RSS KB, FDs from /proc samples."""
    rows = []
    previous: dict[str, tuple[float, float]] = {}
    master = run.cluster.master
    for stamp, node, cpu, uss, rss, fds in run.samples:
        phase = phase_of(run, stamp)
        who = "master" if node == master else "worker"
        if node in previous and phase:
            then, cpu_then = previous[node]
            if stamp > then:
                rows.append(
                    (phase, stamp, f"{who} CPU %", node, 100 * (cpu - cpu_then) / (stamp - then))
                )
        previous[node] = (stamp, cpu)
        if phase:
            rows.append((phase, stamp, f"{who} USS KB", node, float(uss)))
            rows.append((phase, stamp, f"{who} RSS KB", node, float(rss)))
            rows.append((phase, stamp, f"{who} FDs", node, float(fds)))
    return rows


def summarize(
    rows: Iterable[tuple[str, float, str, str, float]],
) -> dict[tuple[str, str], dict[str, float]]:
    """(phase, figure) → max, mean, median, n."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for phase, _, figure, _, value in rows:
        if value == value:  # drop NaN (a change that never arrived is reported apart)
            grouped.setdefault((phase, figure), []).append(value)
    return {
        key: {
            "max": max(values),
            "mean": statistics.fmean(values),
            "median": statistics.median(values),
            "n": float(len(values)),
        }
        for key, values in grouped.items()
    }


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> None:
    """Write a CSV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([f"{v:.4g}" if isinstance(v, float) else v for v in row])


def verdict(phase: str, figure: str, stats: dict[str, float]) -> str:
    """Whether the figure meets issue 10's target or half of Wazuh's threshold."""
    if phase == "stable" and figure in TARGETS:
        value = stats["median"] if figure.startswith("changed") else stats["max"]
        return "met" if value <= TARGETS[figure] else "NOT met"
    limit = WAZUH_10W.get((phase, figure))
    if limit is None:
        return ""
    return (
        "≤ ½ threshold"
        if stats["max"] <= limit[0] / 2
        else ("< threshold" if stats["max"] < limit[0] else "OVER threshold")
    )


def table(summary: dict[tuple[str, str], dict[str, float]]) -> str:
    """A Markdown table of every figure beside Wazuh's 10-worker thresholds."""
    lines = [
        "| phase | figure | max | mean | median | n | Wazuh max / mean | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (phase, figure), stats in sorted(summary.items()):
        limit = WAZUH_10W.get((phase, figure))
        wazuh = f"{limit[0]:g} / {limit[1]:g}" if limit else "–"
        target = TARGETS.get(figure) if phase == "stable" else None
        lines.append(
            f"| {phase} | {figure} | {stats['max']:.4g} | {stats['mean']:.4g} | "
            f"{stats['median']:.4g} | {stats['n']:.0f} | {wazuh} | "
            f"{'' if target is None else f'{target:g}'} | {verdict(phase, figure, stats)} |"
        )
    return "\n".join(lines)


def run_scenario(
    scenario: Scenario, keep: bool = False
) -> tuple[Run, dict[tuple[str, str], dict[str, float]]]:
    """Build, run and measure one scenario; returns the run and its summary."""
    base = Path(tempfile.mkdtemp(prefix="wzc-"))
    workers = [f"w{i:02d}" for i in range(1, scenario.workers + 1)]
    run = Run(scenario, base, LocalCluster(base, workers=workers, master="master"))
    print(
        f"== {scenario.workers} workers, {scenario.agents} agents, {scenario.files} files "
        f"in {scenario.groups} groups, stable {scenario.stable:.0f}s (homes in {base})",
        flush=True,
    )
    try:
        write_homes(run)
        run_phases(run)
    finally:
        stop_cluster(run)
    run.series = timings(run) + resource_rows(run)
    summary = summarize(run.series)
    setup = run.phases.get("setup")
    if setup:
        print(f"setup phase: {setup[1] - setup[0]:.1f}s", flush=True)
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average at the end: {load} on {os.cpu_count()} CPUs", flush=True)
    if run.generators:
        print(
            f"agents over 1514 from {len(run.generators)} load-generator processes "
            f"(their CPU, outside the nodes' figures: {run.generator_cpu:.1f} s); last "
            "counters in " + ("the node homes" if keep else "their output (removed)"),
            flush=True,
        )
        for number in range(len(run.generators)):
            lines = (base / f"load-gen-{number}.out").read_text(errors="replace").splitlines()
            if lines:
                print(f"  load generator {number}: {lines[-1][:400]}", flush=True)
    else:
        print("agents injected inside the workers (--in-process-agents)", flush=True)
    if run.scenario.profile:
        for role in ("master", "worker"):
            shutil.copy(base / f"{role}.prof", OUT / f"{role}.prof")
    if run.scenario.trace_memory:
        shutil.copy(base / "master_memory_growth.txt", OUT / "master_memory_growth.txt")
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    return run, summary


def growth_exponents(
    rows: list[tuple[Any, ...]], agents: int
) -> list[tuple[str, str, float, float]]:
    """Per stable-phase figure, the exponent k of value ~ x**k between the smallest and the
    largest run (x = agents at 10 workers, then workers at ``agents``): k <= 1 is no faster
    than linear. Timings use the mean (one slow run is noise), resources the max."""
    values: dict[tuple[str, int, int], tuple[float, float]] = {}
    for workers, count, phase, figure, top, mean, _, _ in rows:
        if phase == "stable":
            values[(figure, workers, count)] = (top, mean)
    result = []
    for figure in sorted({key[0] for key in values}):
        statistic = "max" if ("KB" in figure or "FDs" in figure or "%" in figure) else "mean"
        pick = 0 if statistic == "max" else 1
        exponents = []
        for series in (
            sorted((c, v[pick]) for (f, w, c), v in values.items() if f == figure and w == 10),
            sorted((w, v[pick]) for (f, w, c), v in values.items() if f == figure and c == agents),
        ):
            (x0, y0), (x1, y1) = (series[0], series[-1]) if series else ((1, 1.0), (1, 1.0))
            if x1 == x0 or y0 <= 0 or y1 <= 0:
                exponents.append(float("nan"))
            else:
                exponents.append(math.log(y1 / y0) / math.log(x1 / x0))
        result.append((figure, statistic, exponents[0], exponents[1]))
    return result


def main() -> None:
    """Run the scenario (or the sweep), write CSVs, plots and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "node":
        node_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--stable", type=float, default=300.0, help="stable phase, seconds")
    parser.add_argument("--change-every", type=float, default=60.0)
    parser.add_argument("--sweep", action="store_true", help="1/2/5/10 workers, 10k/25k/50k agents")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the master and the first worker"
    )
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="tracemalloc the master (slow): where memory held at the end was allocated",
    )
    parser.add_argument(
        "--in-process-agents",
        action="store_true",
        help="the former driver: keep-alives injected inside the workers (no 1514)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the node homes")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    import plot

    def scenario(workers: int, agents: int) -> Scenario:
        return Scenario(
            workers,
            agents,
            options.files,
            options.groups,
            options.stable,
            options.change_every,
            profile=options.profile,
            trace_memory=options.trace_memory,
            in_process_agents=options.in_process_agents,
        )

    if options.sweep:
        points = [(w, options.agents) for w in (1, 2, 5, 10)]
        points += [(10, a) for a in (10_000, 25_000) if a < options.agents]
        rows = []
        for workers, agents in points:
            _, summary = run_scenario(scenario(workers, agents), options.keep)
            for (phase, figure), stats in summary.items():
                rows.append(
                    (
                        workers,
                        agents,
                        phase,
                        figure,
                        stats["max"],
                        stats["mean"],
                        stats["median"],
                        stats["n"],
                    )
                )
        path = out / f"cluster_sweep{options.tag}.csv"
        write_csv(
            path, ["workers", "agents", "phase", "figure", "max", "mean", "median", "n"], rows
        )
        plot.growth(path, out / f"cluster_growth{options.tag}.png")
        exponents = growth_exponents(rows, options.agents)
        write_csv(
            out / f"cluster_growth{options.tag}.csv",
            ["figure", "statistic", "exponent_vs_agents", "exponent_vs_workers"],
            exponents,
        )
        print("| figure | statistic | exponent vs agents | exponent vs workers |")
        print("|---|---|---|---|")
        for figure, statistic, by_agents, by_workers in exponents:
            print(f"| {figure} | {statistic} | {by_agents:.2f} | {by_workers:.2f} |")
        print(f"wrote {path}")
        return
    run, summary = run_scenario(scenario(options.workers, options.agents), options.keep)
    tag = options.tag
    # RSS and descriptor counts stay in the summary; the timeline keeps what is plotted.
    series = [row for row in run.series if "RSS" not in row[2] and "FDs" not in row[2]]
    t0 = run.phases["setup"][0]
    write_csv(
        out / f"cluster_timeline{tag}.csv",
        ["phase", "t", "figure", "node", "value"],
        ((p, t - t0, f, n, v) for p, t, f, n, v in sorted(series, key=lambda r: r[1])),
    )
    write_csv(
        out / f"cluster_summary{tag}.csv",
        ["phase", "figure", "max", "mean", "median", "n", "wazuh_max", "wazuh_mean", "verdict"],
        (
            (
                phase,
                figure,
                s["max"],
                s["mean"],
                s["median"],
                s["n"],
                *WAZUH_10W.get((phase, figure), ("", "")),
                verdict(phase, figure, s),
            )
            for (phase, figure), s in sorted(summary.items())
        ),
    )
    plot.timeline(out / f"cluster_timeline{tag}.csv", out / f"cluster_timeline{tag}.png")
    print(table(summary))
    if run.change_delays:
        lost = sum(1 for _, d in run.change_delays if d != d)
        print(f"changed files: {len(run.change_delays)}, never arrived: {lost}")


if __name__ == "__main__":
    main()

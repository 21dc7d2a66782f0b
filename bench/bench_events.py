"""Benchmark: events end to end on one worker, agents over 1514 from a load-generator process.

A master and one worker run as real ``twistd`` processes on 127.0.0.1 (mutual TLS); the
worker has Wazuh's stock ruleset (``WAZUH_RULESET``) and ``<analysis><workers>N``; ``--agents``
agents registered on the master connect to the worker's 1514 port from one
``wazuh-load-gen`` process (AES, zlib, one connection each), which replays the syslog lines
of the ruleset's test cases as their events. Events are sealed before the measured windows,
so the generator only writes bytes while they run. In one run:

- **engine alone** (the baseline): the same lines, in the order each agent sends them,
  through one ``Engine`` in this process (no alert writing). Cold: best of ``--rounds``
  cycles, its correlation state reset before each. Replayed, after the clusters: the very
  stream the first cluster's node got, window after window at the same rates and times,
  state kept, timed over the window that set its capacity. The ratios are against the
  replay, since the node's engine carried minutes of correlation history by then;
- **capacity, N = 1 and 2 analysis processes** (a fresh cluster each): offered rates in
  ``--window``-second windows, rising by ``--step`` from ``--start``, then ``--refine``
  windows between the last sustained rate and the first that was not; a rate is sustained
  when the window ends with no event dropped and less than a quarter second of backlog
  queued. The figure is the highest sustained offered rate; per core = it / N;
- **overload** (N = 2): twice that capacity offered for ``--overload`` seconds, the node's
  ``wazuh-cluster-control -i more --json`` asked every second (its answer time), keep-alives
  (acks) and the node's memory (node + analysis processes, RSS) followed; then the load
  stops, the queue drains and ``sent = processed + dropped`` is checked exactly; then half
  the capacity for ``--window`` seconds must drop nothing (recovery).

    .venv/bin/python bench/bench_events.py [--agents 100] [--window 10] [--overload 60]
    .venv/bin/python bench/bench_events.py --profile   # py-spy the worker during a window
    .venv/bin/python bench/bench_events.py --processes 2 --capacity 5000   # overload only

Prints Markdown tables for docs/BENCHMARKS.md, and the load average. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_analysis import RULESET, sample_lines  # noqa: E402

from wazuhcluster.analysis.engine import Event  # noqa: E402
from wazuhcluster.config.home import Home  # noqa: E402
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for  # noqa: E402
from wazuhcluster.testing.reference import missing_reason  # noqa: E402

SYSLOG = re.compile(r"^[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d ")
EXCLUDE = "0215-policy_rules.xml"  # as bench_analysis_pool: its rules need a policy feed


def syslog_lines() -> list[str]:
    """The syslog-format log lines of the ruleset's test cases."""
    return [line for line in sample_lines() if SYSLOG.match(line)]


def engine_alone(lines: list[str], agents: int, rounds: int) -> float:
    """Events per CPU second of one engine in this process on ``lines`` (best round), in
    the order the node receives them from the generator: agent *k* replays the lines from
    offset *k* (the generator's ``--events``), the agents take turns, and each agent's name
    and address are the bench's, so its correlation sees what the node's does. One round is
    one full cycle of the lines for every agent, the timestamps 0.1 ms apart (10,000 events
    per second). (On these lines the order hardly matters: in a one-off comparison with the
    lines dealt round the agents, the same 11,900 of 30,900 events alerted and the rate was
    within 5 %.)"""
    from bench_analysis import best_rate

    from wazuhcluster.analysis.loader import load_engine
    from wazuhcluster.config.analysis_settings import RulesetSettings

    with tempfile.TemporaryDirectory() as home:
        install_ruleset(Path(home))
        engine = load_engine(home, RulesetSettings(rule_excludes=(EXCLUDE,)))
        return best_rate(engine, generator_events(lines, agents, time.time()), rounds)


def opening_cost(lines: list[str], agents: int, rounds: int = 20) -> float:
    """Microseconds of CPU per event an analysis process spends opening sealed frames,
    measured alone: :func:`decode_batch` on batches of 500 events (5 frames of each agent,
    the bench's lines) handed over sealed, minus the same events handed over opened."""
    from wazuhcluster.agents import control, secure
    from wazuhcluster.agents.sealed import SealedFrames
    from wazuhcluster.node.analysis_child import decode_batch, encode_rows, event_row, sealed_row

    sealed_rows, opened_rows = [], []
    for number in range(min(agents, 100)):
        key = secure.AgentKey(f"{number + 1:03d}", f"bench-{number:05d}", "any", "ab" * 32)
        frames = []
        for index in range(5):
            line = lines[(5 * number + index) % len(lines)]
            text = control.format_event("1", "/var/log/syslog", line).encode()
            counter = (0, index + 1)
            frames.append(secure.encode_payload(text, key.cipher_key, counter, 7, key.agent_id))
            opened_rows.append(
                event_row(Event(line, "/var/log/syslog", "1", key.agent_id, key.name, "any", 1.0))
            )
        group = SealedFrames(
            key.agent_id, key.name, key.cipher_key, "any", None, (), 1.0, 1, "127.0.0.1", frames
        )
        sealed_rows.append(sealed_row(group))
    seconds = []
    for batch in (encode_rows(sealed_rows), encode_rows(opened_rows)):
        began = time.process_time()
        for _ in range(rounds):
            decode_batch(batch)
        seconds.append(time.process_time() - began)
    return 1e6 * (seconds[0] - seconds[1]) / (rounds * len(opened_rows))


def replayed_rate(
    lines: list[str], agents: int, schedule: list[tuple[float, float, int]], measured: int
) -> float:
    """Events per CPU second of one engine in this process fed the stream one node got: each
    window of ``schedule`` (its start time, offered rate, events sent) in order, at its
    rate and with the pauses between windows, the agents taking turns through the lines as
    the generator's do, correlation state kept throughout; only window ``measured`` is
    timed. Frequency rules search histories up to minutes long, so an engine reset every
    few seconds (:func:`engine_alone`) does less work per event than the node's did."""
    from wazuhcluster.analysis.loader import load_engine
    from wazuhcluster.config.analysis_settings import RulesetSettings

    position = 0
    with tempfile.TemporaryDirectory() as home:
        install_ruleset(Path(home))
        engine = load_engine(home, RulesetSettings(rule_excludes=(EXCLUDE,)))
        for index, (started, rate, sent) in enumerate(schedule[: measured + 1]):
            events = stream_events(lines, agents, position, sent, started, rate)
            position += sent
            began = time.process_time()
            for event in events:
                engine.process(event)
            seconds = time.process_time() - began
            if index == measured:
                return sent / seconds
    raise ValueError(f"no window {measured} in a schedule of {len(schedule)}")


def stream_events(
    lines: list[str], agents: int, first: int, count: int, started: float, rate: float
) -> list[Event]:
    """Events ``first`` to ``first + count`` of the generator's endless stream (agent *k*
    replays the lines from offset *k*, the agents take turns), ``rate`` a second from
    ``started``."""
    return [
        Event(
            lines[(number % agents + number // agents) % len(lines)],
            location="/var/log/syslog",
            agent_id=f"{1 + number % agents:03d}",
            agent_name=f"bench-{number % agents:05d}",
            agent_ip="any",
            timestamp=started + (number - first) / rate,
        )
        for number in range(first, first + count)
    ]


def generator_events(lines: list[str], agents: int, started: float) -> list[Event]:
    """One full cycle of ``lines`` for every agent, as the generator sends them: agent *k*
    replays the lines from offset *k*, the agents take turns, 0.1 ms apart from
    ``started``, with the bench's agent names and addresses."""
    return stream_events(lines, agents, 0, len(lines) * agents, started, 10_000.0)


def install_ruleset(home: Path) -> None:
    """The stock decoders, rules and lists in a node home."""
    for source, target in (
        ("decoders", "ruleset/decoders"),
        ("rules", "ruleset/rules"),
        ("lists", "etc/lists"),
    ):
        shutil.copytree(Path(RULESET) / source, home / target, dirs_exist_ok=True)


def ruleset_config() -> str:
    """A ``<ruleset>`` block: Wazuh's default directories, every stock list, and the same
    exclusion as the engine-alone baseline."""
    lists = sorted(
        path.relative_to(RULESET).as_posix()
        for path in (Path(RULESET) / "lists").rglob("*")
        if path.is_file() and not path.name.endswith(".cdb")
    )
    entries = [
        "<decoder_dir>ruleset/decoders</decoder_dir>",
        "<decoder_dir>etc/decoders</decoder_dir>",
        "<rule_dir>ruleset/rules</rule_dir>",
        "<rule_dir>etc/rules</rule_dir>",
        f"<rule_exclude>{EXCLUDE}</rule_exclude>",
        *(f"<list>etc/{path}</list>" for path in lists),
    ]
    return "  <ruleset>\n" + "".join(f"    {entry}\n" for entry in entries) + "  </ruleset>\n"


class Generator:
    """A wazuh-load-gen process driven through its stdin commands."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            start_new_session=True,
        )

    def ask(self, command: str) -> dict[str, Any]:
        """Send one command and read its JSON answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"wazuh-load-gen ended; see {self.log.name}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        """Close its stdin (it stops) and reap it."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def analysis(home: Path) -> tuple[dict[str, Any], float]:
    """The node's analysis numbers (the ``analysis`` of ``-i more --json``) and the time
    ``-i more`` waits for: the health report and the analysis numbers, one after the other."""
    _, health_took = ask_node(home, b"ClusterHealth")
    numbers, took = ask_node(home, b"AnalysisStats")
    return numbers, health_took + took


def batches(numbers: dict[str, Any]) -> int:
    """Batches the node sent its analysis processes so far (all lanes)."""
    return sum(lane.get("batches", 0) for lane in numbers.get("processes", []))


def control_command_seconds(home: Path) -> float:
    """Seconds of one whole ``wazuh-cluster-control -i more --json`` (interpreter included)."""
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from wazuhcluster.scripts.control import main; main()",
            "--home",
            str(home),
            "-i",
            "more",
            "--json",
        ],
        capture_output=True,
        timeout=60,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    return time.monotonic() - started


def ask_node(home: Path, command: bytes, timeout: float = 30.0) -> tuple[dict[str, Any], float]:
    """Ask the node's control socket one argument-less AMP command (``AnalysisStats``,
    ``ClusterHealth``) with a blocking socket; the JSON answer and the seconds it took from
    connecting to the last byte (what ``wazuh-cluster-control -i`` waits for, without its
    own interpreter start)."""
    import socket
    import struct

    started = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(Home(home).control_socket))
        box = b""
        for key, value in ((b"_command", command), (b"_ask", b"1")):
            box += struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value
        sock.sendall(box + b"\x00\x00")
        data = b""
        answer: dict[bytes, bytes] = {}
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the node closed the control connection")
            data += chunk
            answer, complete = _parse_box(data)
            if complete:
                break
    took = time.monotonic() - started
    if b"_error" in answer:
        raise RuntimeError(f"{command!r}: {answer}")
    value = answer.get(b"stats") or answer.get(b"health") or b"{}"
    parsed: dict[str, Any] = json.loads(value)
    return parsed, took


def _parse_box(data: bytes) -> tuple[dict[bytes, bytes], bool]:
    """The AMP box at the start of ``data``, and whether it is complete."""
    import struct

    box: dict[bytes, bytes] = {}
    offset = 0
    while offset + 2 <= len(data):
        (size,) = struct.unpack_from("!H", data, offset)
        offset += 2
        if size == 0:
            return box, True
        key = data[offset : offset + size]
        offset += size
        if offset + 2 > len(data):
            return box, False
        (length,) = struct.unpack_from("!H", data, offset)
        offset += 2
        if offset + length > len(data):
            return box, False
        value = data[offset : offset + length]
        offset += length
        box[key] = value
    return box, False


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its children (the analysis processes)."""
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                pids += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return pids


def rss_kb(pids: list[int]) -> int:
    """Summed VmRSS of ``pids``."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pids: list[int]) -> float:
    """Summed user + system CPU seconds of ``pids``."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            pass
    return total


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Run every thread of ``pid`` on ``cpus`` only (threads it starts later inherit it)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:
            pass  # the thread ended meanwhile


class Bench:
    """One cluster (master + worker1 with ``workers`` analysis processes) and its generator."""

    def __init__(self, base: Path, workers: int, options: argparse.Namespace) -> None:
        self.options = options
        self.workers = workers
        self.cluster = LocalCluster(
            base,
            workers=["worker1"],
            extra_config=lambda name, role: (
                f"  <analysis>\n    <workers>{workers if role == 'worker' else 0}</workers>\n"
                f"  </analysis>\n{ruleset_config()}"
            ),
        )
        self.nodes: list[NodeProcess] = []
        self.generator: Generator | None = None
        self.home = self.cluster.home("worker1")
        #: Each window offered so far: its start (epoch seconds), rate and events sent.
        self.schedule: list[tuple[float, float, int]] = []

    def start(self, lines: list[str], presealed: int) -> None:
        """Lay out the homes, register the agents, start both nodes and the generator."""
        from wazuhcluster.registry.store import Registry, RegistryFiles

        self.cluster.write()
        for name in ("master", "worker1"):
            install_ruleset(self.cluster.home(name).root)
        master_home = self.cluster.home("master")
        registry = Registry.open(
            master_home.var_db / "global.db",
            RegistryFiles(
                master_home.client_keys, master_home.shared, master_home.root / "var/multigroups"
            ),
        )
        for number in range(self.options.agents):
            registry.enroll(f"bench-{number:05d}")
        registry.flush_files()
        registry.close()
        for name, role in (("master", "master"), ("worker1", "worker")):
            node = NodeProcess(self.cluster.home(name), role)
            node.start()
            self.nodes.append(node)
        if not wait_for(
            lambda: (
                self.home.client_keys.exists()
                and len(self.home.client_keys.read_text().splitlines()) == self.options.agents
            ),
            120,
        ):
            raise RuntimeError("the worker never received the agents' keys")
        events = self.cluster.base / "events.txt"
        events.write_text("\n".join(lines) + "\n")
        port = self.cluster.node_ports("worker1")["agents"]
        self.generator = Generator(
            [
                sys.executable,
                "-m",
                "wazuhcluster.scripts.load_generator",
                "--control",
                "--keys",
                str(master_home.client_keys),
                "--target",
                f"127.0.0.1:{port}",
                "--events",
                str(events),
                "--spread",
                "1",
                "--no-started-event",
            ],
            self.cluster.base / "load-gen.err",
        )
        if not wait_for(lambda: self.ask("stats")["ready"] == self.options.agents, 120, 0.5):
            raise RuntimeError(f"agents not ready: {self.ask('stats')}")
        self.ask(f"preseal {presealed}")
        wait_for(lambda: analysis(self.home.root)[0]["processes"] != [] or self.workers == 0, 60)
        time.sleep(3)  # the children load the ruleset after the node starts

    def pin(self) -> str:
        """Give each analysis process a CPU of its own and leave the other CPUs to the rest
        (the worker's reactor, the master, the generator and this process), when there are
        more CPUs than analysis processes; what was done, as a line for the output."""
        cpus = sorted(os.sched_getaffinity(0))
        children = tree_pids(self.worker_pid)[1:]
        if len(cpus) <= self.workers or len(children) != self.workers:
            return (
                f"not pinned: {len(cpus)} CPUs for {self.workers} analysis process(es) "
                f"({len(children)} found)"
            )
        own, rest = cpus[-self.workers :], set(cpus[: -self.workers])
        for child, cpu in zip(children, own, strict=True):
            set_affinity(child, {cpu})
        assert self.generator is not None
        for pid in (self.worker_pid, self.master_pid, self.generator.process.pid, os.getpid()):
            set_affinity(pid, rest)
        return f"pinned: analysis process(es) on CPU {own}, everything else on {sorted(rest)}"

    def ask(self, command: str) -> dict[str, Any]:
        """One command to the generator."""
        assert self.generator is not None
        return self.generator.ask(command)

    @property
    def master_pid(self) -> int:
        """The master node's pid."""
        process = self.nodes[0].process
        assert process is not None
        return process.pid

    @property
    def worker_pid(self) -> int:
        """The worker node's pid."""
        process = self.nodes[1].process
        assert process is not None
        return process.pid

    def window(self, rate: float, seconds: float) -> dict[str, Any]:
        """Offer ``rate`` for ``seconds``; the numbers at its end (queue, drops, sent)."""
        before, _ = analysis(self.home.root)
        sent_before = self.ask("stats")["events_sent"]
        pids = tree_pids(self.worker_pid)
        generator = [self.generator.process.pid] if self.generator is not None else []
        cpu, main_cpu = cpu_seconds(pids), cpu_seconds(pids[:1])
        generator_cpu = cpu_seconds(generator)
        started = time.monotonic()
        started_at = time.time()
        self.ask(f"rate {rate} {int(rate * seconds)}")
        wait_for(lambda: self.ask("stats")["rate"] == 0, seconds * 3, 0.2)
        elapsed = time.monotonic() - started
        after, _ = analysis(self.home.root)
        stats = self.ask("stats")
        result = {
            "rate": rate,
            "sent": stats["events_sent"] - sent_before,
            "held_back": stats["held_back"],
            "seconds": elapsed,
            "dropped": after["dropped"] - before["dropped"],
            "queue": after["queue_length"],
            "processed": after["processed"] - before["processed"],
            "node_cpu": (cpu_seconds(pids) - cpu) / elapsed,
            "main_cpu": (cpu_seconds(pids[:1]) - main_cpu) / elapsed,
            "generator_cpu": (cpu_seconds(generator) - generator_cpu) / elapsed,
            "batches": batches(after) - batches(before),
            "index": len(self.schedule),
        }
        self.schedule.append((started_at, rate, result["sent"]))
        self.drain()
        return result

    def drain(self, timeout: float = 120) -> dict[str, Any]:
        """Wait until the node has received everything sent and accounted for each event:
        processed, dropped or lost (none queued, none in an analysis process)."""
        sent = self.ask("stats")["events_sent"]
        numbers: dict[str, Any] = {}

        def done() -> bool:
            numbers.update(analysis(self.home.root)[0])
            return bool(
                numbers["received"] == sent
                and numbers["queue_length"] == 0
                and numbers["processed"] + numbers["dropped"] + numbers["lost"] == sent
            )

        wait_for(done, timeout, 0.5)
        return numbers

    def idle_cpu(self, seconds: float = 5.0) -> tuple[float, float]:
        """CPU (cores) of the node's reactor process and of its analysis processes with the
        agents connected but no event offered (keep-alives, timers, periodic tasks)."""
        pids = tree_pids(self.worker_pid)
        total, main = cpu_seconds(pids), cpu_seconds(pids[:1])
        time.sleep(seconds)
        main = (cpu_seconds(pids[:1]) - main) / seconds
        return main, (cpu_seconds(pids) - total) / seconds - main

    def capacity(self) -> tuple[float, dict[str, Any]]:
        """The highest sustained offered rate, and its window's figures: rates rise by
        ``--step`` until one is not sustained, then ``--refine`` windows halve the gap
        (geometrically) between the last sustained rate and the first that was not."""
        idle = self.idle_cpu()
        print(
            f"  N={self.workers} idle: CPU node {100 * idle[0]:.0f}% + analysis "
            f"{100 * idle[1]:.0f}%",
            flush=True,
        )
        rate = self.options.start
        best = 0.0
        best_window: dict[str, Any] = {}
        while True:
            ok, result = self.try_rate(rate)
            if not ok:
                break
            best, best_window = rate, result
            rate *= self.options.step
        failed = rate
        for _ in range(self.options.refine if best else 0):
            rate = (best * failed) ** 0.5
            ok, result = self.try_rate(rate)
            if ok:
                best, best_window = rate, result
            else:
                failed = rate
        return best, best_window

    def try_rate(self, rate: float) -> tuple[bool, dict[str, Any]]:
        """Offer ``rate`` for one window: whether it was sustained, and the window's
        figures (printed)."""
        result = self.window(rate, self.options.window)
        ok = result["dropped"] == 0 and result["queue"] <= rate / 4
        print(
            f"  N={self.workers} offered {rate:.0f}/s: sent {result['sent']}, "
            f"dropped {result['dropped']}, queue at end {result['queue']}, CPU: node "
            f"{100 * result['main_cpu']:.0f}% + analysis "
            f"{100 * (result['node_cpu'] - result['main_cpu']):.0f}% (generator "
            f"{100 * result['generator_cpu']:.0f}%) -> "
            f"{'sustained' if ok else 'not sustained'}; "
            f"{result['processed'] / max(1, result['batches']):.0f} events per batch",
            flush=True,
        )
        return ok, result

    def stop(self) -> None:
        """Stop the generator and both nodes."""
        if self.generator is not None:
            self.generator.stop()
        for node in reversed(self.nodes):
            node.stop()


def overload(bench: Bench, capacity: float, seconds: float) -> dict[str, Any]:
    """2× ``capacity`` for ``seconds``: answer times, keep-alives, integrity checks and
    memory meanwhile; then the exact account and a recovery window at half the capacity."""
    rate = 2 * capacity
    pids = tree_pids(bench.worker_pid)
    rss_start = rss_kb(pids)
    first = bench.ask("stats")
    before, idle_answer = analysis(bench.home.root)
    idle_command = control_command_seconds(bench.home.root)
    checks_before = bench.nodes[1].log_text().count("[Integrity check] Finished")
    bench.ask(f"rate {rate} {int(rate * seconds)}")
    answers: list[float] = []
    rss: list[int] = []
    commands: list[float] = []
    started = time.monotonic()
    while bench.ask("stats")["rate"] > 0 and time.monotonic() - started < seconds * 3:
        _, took = analysis(bench.home.root)
        answers.append(took)
        rss.append(rss_kb(tree_pids(bench.worker_pid)))
        if len(answers) % 10 == 1:
            commands.append(control_command_seconds(bench.home.root))
        time.sleep(max(0.0, 1.0 - took))
    elapsed = time.monotonic() - started
    stats = bench.ask("stats")
    checks = bench.nodes[1].log_text().count("[Integrity check] Finished") - checks_before
    numbers = bench.drain()
    sent = stats["events_sent"] - first["events_sent"]
    processed = numbers["processed"] - before["processed"]
    dropped = numbers["dropped"] - before["dropped"]
    received = numbers["received"] - before["received"]
    lost = numbers["lost"] - before["lost"]
    recovery = bench.window(capacity / 2, bench.options.window)
    ordered = sorted(answers)
    return {
        "offered events/s (2× capacity)": rate,
        "seconds": elapsed,
        "sent by the agents": sent,
        "held back by the agents (connection full)": stats["held_back"] - first["held_back"],
        "received by the node": received,
        "processed": processed,
        "dropped (counted)": dropped,
        "lost (an analysis process died)": lost,
        "sent = received = processed + dropped + lost": sent
        == received
        == processed + dropped + lost,
        "node's answer to -i more, idle (s)": idle_answer,
        "node's answer to -i more under load, median / max (s)": (
            f"{ordered[len(ordered) // 2]:.3f} / {ordered[-1]:.3f}" if ordered else "-"
        ),
        "whole wazuh-cluster-control -i more, idle / max under load (s)": (
            f"{idle_command:.2f} / {max(commands, default=float('nan')):.2f}"
        ),
        "keep-alive acks received meanwhile": stats["acks_received"] - first["acks_received"],
        "agents connected at the end": stats["ready"],
        "integrity checks finished on the worker meanwhile": checks,
        "node + analysis RSS at start / max (MB)": (
            f"{rss_start / 1024:.0f} / {max(rss, default=0) / 1024:.0f}"
        ),
        "queue size": numbers["queue_size"],
        "recovery: dropped at half capacity": recovery["dropped"],
        "recovery: queue at the end": recovery["queue"],
    }


def top_costs(path: Path, count: int = 12) -> list[tuple[str, float]]:
    """The functions of a py-spy ``raw`` profile with the largest share of samples in
    themselves (self time), as ``(name (file), percent)``."""
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frame = stack.rsplit(";", 1)[-1]
        name = re.sub(r" \(.*?([^/]+\.py)(?::\d+)?\)", r" (\1)", frame)
        own[name] = own.get(name, 0) + int(number)
        total += int(number)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [(name, 100 * samples / max(1, total)) for name, samples in ranked]


def profile(bench: Bench, rate: float, seconds: float, out: Path) -> None:
    """py-spy the worker's reactor process and each of its analysis processes while
    ``rate`` is offered (GIL samples: the Python CPU, not waits; one ``raw`` file each,
    ``out`` for the reactor, ``out`` with ``-analysis-<i>`` for the others), print their top
    costs and the CPU per event of the reactor process and of the analysis processes."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pids = tree_pids(bench.worker_pid)
    outputs = [out] + [
        out.with_name(f"{out.stem}-analysis-{index}{out.suffix}") for index in range(1, len(pids))
    ]
    recorders = [
        subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(pid),
                "-r",
                "100",
                "-d",
                str(int(seconds)),
                "-f",
                "raw",
                "-o",
                str(output),
                "--nonblocking",
                "--gil",  # the samples holding the GIL: the Python CPU, not waits
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for pid, output in zip(pids, outputs, strict=True)
    ]
    result = bench.window(rate, seconds)
    for recorder in recorders:
        recorder.wait(timeout=seconds + 60)
    print(
        f"  profiled {rate:.0f}/s: reactor process {1e6 * result['main_cpu'] / rate:.0f} us "
        f"of CPU per event, analysis {1e6 * (result['node_cpu'] - result['main_cpu']) / rate:.0f}"
        f" us; {result['processed'] / max(1, result['batches']):.0f} events per batch",
        flush=True,
    )
    for output in outputs:
        if output.exists():
            print(f"  top costs (self time) in {output.name}:")
            for name, share in top_costs(output):
                print(f"    {share:5.1f}% {name}")


def costs(window: dict[str, Any], rate: float) -> tuple[float, float, float]:
    """Microseconds of CPU per event of the reactor, the analysis processes (per event of
    its process) and the generator in one window, ``rate`` events a second."""
    return (
        1e6 * window["main_cpu"] / rate,
        1e6 * (window["node_cpu"] - window["main_cpu"]) / rate,
        1e6 * window["generator_cpu"] / rate,
    )


@contextmanager
def running_cluster(
    options: argparse.Namespace, workers: int, lines: list[str], presealed: int
) -> Iterator[Bench]:
    """A fresh cluster with ``workers`` analysis processes and its generator holding
    ``presealed`` frames, started and (unless ``--no-pin``) pinned; on the way out it is
    stopped, this process unpinned (the next cluster starts unpinned) and its homes removed
    (unless ``--keep``)."""
    all_cpus = os.sched_getaffinity(0)
    base = Path(tempfile.mkdtemp(prefix="wzc-ev-"))
    bench = Bench(base, workers, options)
    try:
        bench.start(lines, presealed)
        if options.pin:
            print(bench.pin(), flush=True)
        yield bench
    finally:
        bench.stop()
        os.sched_setaffinity(0, all_cpus)
        if not options.keep:
            shutil.rmtree(base, ignore_errors=True)


def fixed_rates(options: argparse.Namespace, lines: list[str]) -> None:
    """``--fixed``: for each of ``--processes``, a fresh cluster offered each rate for one
    window; prints what the node processed meanwhile (events/s, counted before the backlog
    drains) and the CPU per processed event. For A/B comparisons of two commits at rates
    above the capacity, where the search's steps are too coarse."""
    rates = [float(rate) for rate in options.fixed.split(",")]
    presealed = int(max(rates) * options.window * len(rates))
    for workers in [int(n) for n in options.processes.split(",")]:
        with running_cluster(options, workers, lines, presealed) as bench:
            offer_rates(bench, rates)


def offer_rates(bench: Bench, rates: list[float]) -> None:
    """One window at each of ``rates``; a line each (see :func:`fixed_rates`)."""
    for rate in rates:
        window = bench.window(rate, bench.options.window)
        processed = window["processed"] / window["seconds"]
        reactor, analysis, generator = costs(window, processed)
        print(
            f"  N={bench.workers} offered {rate:.0f}/s: processed {processed:.0f}/s, "
            f"queue at end {window['queue']}, dropped {window['dropped']}; CPU per event "
            f"(µs): reactor {reactor:.1f}, analysis {analysis:.1f}, generator {generator:.1f}",
            flush=True,
        )


def print_costs(
    capacities: dict[int, float], figures: dict[int, dict[str, Any]], opening: float
) -> None:
    """CPU per event at each capacity, and what 2 processes ≥ 1.6× one leaves for it: on C
    CPUs, everything (reactor, analysis, generator) may cost at most C / (1.6 × capacity of
    one) per event."""
    print(
        "\n| CPU per event at capacity (µs) | reactor | analysis, per event of its process "
        "| generator | all |"
    )
    print("|---|---|---|---|---|")
    for workers, rate in capacities.items():
        window = figures[workers]
        if not window or not rate:
            continue
        reactor, analysis, generator = costs(window, rate)
        print(
            f"| {workers} process{'es' if workers > 1 else ''} at {rate:.0f}/s | {reactor:.1f} "
            f"| {analysis:.1f} | {generator:.1f} | {reactor + analysis + generator:.1f} |"
        )
    cpus = len(os.sched_getaffinity(0))
    budget = 1e6 * cpus / (1.6 * capacities[1])
    print(
        f"\n2 processes ≥ 1.6× one on {cpus} CPUs: at most {budget:.1f} µs of CPU per event "
        f"in all; opening a frame in an analysis process, alone: {opening:.1f} µs per event"
    )


def main() -> int:
    """Run every case and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per offered rate")
    parser.add_argument("--start", type=float, default=1500.0, help="first offered rate")
    parser.add_argument("--step", type=float, default=1.25, help="rate factor between windows")
    parser.add_argument(
        "--refine", type=int, default=2, help="windows that narrow the capacity after the search"
    )
    parser.add_argument("--overload", type=float, default=60.0, help="overload seconds")
    parser.add_argument("--rounds", type=int, default=5, help="engine-alone rounds")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker and its analysis processes"
    )
    parser.add_argument("--processes", default="1,2", help="analysis processes to measure")
    parser.add_argument("--keep", action="store_true", help="keep the node homes")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="leave the processes unpinned (by default each analysis process gets a CPU of "
        "its own when there are more CPUs than analysis processes)",
    )
    parser.add_argument(
        "--capacity", type=float, default=0.0, help="skip the search: take this capacity"
    )
    parser.add_argument(
        "--fixed",
        default="",
        help="RATE[,RATE...]: only offer these rates, one window each, and print what was "
        "processed meanwhile and the CPU per event (A/B of two commits)",
    )
    options = parser.parse_args()
    reason = missing_reason("WAZUH_RULESET")
    if reason:
        print(f"skipped: {reason}")
        return 0
    lines = syslog_lines()
    print(f"{len(lines)} syslog lines of the ruleset's test cases; {options.agents} agents")
    if options.fixed:
        fixed_rates(options, lines)
        return 0
    baseline = engine_alone(lines, options.agents, options.rounds)
    print(f"engine alone: {baseline:.0f} events per CPU second", flush=True)
    capacities: dict[int, float] = {}
    figures: dict[int, dict[str, Any]] = {}
    loads = []
    result: dict[str, Any] | None = None
    #: The first cluster's windows and the index of the one that set its capacity.
    replay: tuple[list[tuple[float, float, int]], int] | None = None
    for workers in [int(n) for n in options.processes.split(",")]:
        last = workers == max(int(n) for n in options.processes.split(","))
        presealed = int(options.start * options.window * 40)
        if last:
            presealed += int(12 * options.start * options.overload)
        with running_cluster(options, workers, lines, presealed) as bench:
            if options.capacity:
                capacities[workers], figures[workers] = options.capacity, {}
            else:
                capacities[workers], figures[workers] = bench.capacity()
                if replay is None and figures[workers]:
                    replay = (bench.schedule, figures[workers]["index"])
            loads.append(os.getloadavg()[0])
            if options.profile and last:
                rate = capacities[workers] or options.start
                profile(bench, rate, 10, ROOT / "docs" / "bench" / "events.pyspy")
            if last and options.overload and capacities[workers]:
                result = overload(bench, capacities[workers], options.overload)
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nload average at the end: {load} on {os.cpu_count()} CPUs")
    cold = baseline
    if replay is not None:
        schedule, measured = replay
        baseline = replayed_rate(lines, options.agents, schedule, measured)
        print(
            f"engine alone, the node's stream replayed ({measured + 1} windows): "
            f"{baseline:.0f} events per CPU second"
        )
    print(
        "\n| case | events/s, no drop | per analysis process | × engine alone per process "
        "| node CPU: reactor + analysis (cores) | events per node CPU second | × engine alone "
        "| events per analysis CPU second | × engine alone |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| engine alone, cold (best cycle, state reset each cycle) | {cold:.0f} | | "
        f"{cold / baseline:.2f} | | | | | |"
    )
    print(
        f"| engine alone, the node's stream replayed (the baseline) | {baseline:.0f} "
        f"| {baseline:.0f} | 1.00 | 1.00 | {baseline:.0f} | 1.00 | {baseline:.0f} | 1.00 |"
    )
    for workers, rate in capacities.items():
        window = figures[workers]
        if not window:
            print(f"| {workers} analysis process(es): capacity given (--capacity {rate:.0f}) |")
            continue
        cpu = window.get("node_cpu", 0.0)
        main_cpu = window.get("main_cpu", 0.0)
        per_cpu = rate / cpu if cpu else 0.0
        per_analysis_cpu = rate / (cpu - main_cpu) if cpu > main_cpu else 0.0
        print(
            f"| end to end, {workers} analysis process{'es' if workers > 1 else ''} | "
            f"{rate:.0f} | {rate / workers:.0f} | {rate / workers / baseline:.2f} | "
            f"{main_cpu:.2f} + {cpu - main_cpu:.2f} | {per_cpu:.0f} | {per_cpu / baseline:.2f} "
            f"| {per_analysis_cpu:.0f} | {per_analysis_cpu / baseline:.2f} |"
        )
    if 1 in capacities and 2 in capacities and capacities[1]:
        print(f"\n2 processes / 1 process: {capacities[2] / capacities[1]:.2f}")
        print_costs(capacities, figures, opening_cost(lines, options.agents))
    if result is not None:
        print("\n| overload | value |\n|---|---|")
        for key, value in result.items():
            print(
                f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

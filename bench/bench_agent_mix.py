"""Benchmark: a default agent's mixed traffic, agents over 1514, into alerts and agent state.

What an unchanged Wazuh 4.x agent sends by default is not only log lines: FIM events and
its integrity synchronisation, SCA checks, syscollector deltas, rootcheck findings and, on
Windows, eventchannel events. This script builds such a mix (:func:`mix_lines`, seeded, the
shares in :data:`SHARES`) and measures, in one run:

- **engine alone** (the baseline): the mix through one ``Engine`` in this process, routed
  by queue as the node does, with the agent state in SQLite files as on a node
  (``SqliteState``, committed at the end of each round), best of ``--rounds``, no alert
  writing;
- **end to end** (``bench_events.Bench``): a master and a worker as real ``twistd``
  processes, the worker with Wazuh's stock ruleset (``WAZUH_RULESET``) and ``--processes``
  analysis processes; ``--agents`` agents connect to its 1514 port from one
  ``wazuh-load-gen`` process (AES, zlib, one connection each) and replay the mix as their
  events; the offered rate rises in ``--window``-second windows while nothing is dropped.
  The figure: events per CPU second of the worker (its reactor process + its analysis
  processes: agent channel, queue, routing, decoders, rules, SQLite state, alerts.json) in
  the highest sustained window. Target: at least 5,000 per core.

    .venv/bin/python bench/bench_agent_mix.py [--agents 100] [--processes 1] [--window 10]
    .venv/bin/python bench/bench_agent_mix.py --engine-only   # the baseline alone, seconds
    .venv/bin/python bench/bench_agent_mix.py --profile   # then py-spy the worker's processes

Prints a Markdown table for docs/BENCHMARKS.md and the load average. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_events import EXCLUDE, Bench, install_ruleset, profile, syslog_lines  # noqa: E402

from wazuhcluster.testing.reference import missing_reason  # noqa: E402

#: Share of each kind of message in the mix (sums to 1).
SHARES = {
    "logs": 0.50,
    "windows": 0.20,
    "fim": 0.10,
    "fim_sync": 0.03,
    "sca": 0.07,
    "syscollector": 0.08,
    "rootcheck": 0.02,
}
TARGET_PER_CORE = 5000.0

_WINDOWS_EVENTS = (
    # (event id, provider, channel, level, keywords, data)
    (
        4625,
        "Microsoft-Windows-Security-Auditing",
        "Security",
        0,
        "0x8010000000000000",
        {
            "TargetUserName": "administrator",
            "LogonType": "3",
            "IpAddress": "198.51.100.23",
            "Status": "0xc000006d",
            "SubStatus": "0xc000006a",
        },
    ),
    (
        4624,
        "Microsoft-Windows-Security-Auditing",
        "Security",
        0,
        "0x8020000000000000",
        {"TargetUserName": "svc_backup", "LogonType": "5", "IpAddress": "-"},
    ),
    (
        4688,
        "Microsoft-Windows-Security-Auditing",
        "Security",
        0,
        "0x8020000000000000",
        {
            "NewProcessName": "C:\\Windows\\System32\\cmd.exe",
            "SubjectUserName": "alice",
            "CommandLine": "cmd.exe /c whoami",
        },
    ),
    (
        7036,
        "Service Control Manager",
        "System",
        4,
        "0x8080000000000000",
        {"param1": "Windows Update", "param2": "running"},
    ),
    (
        1000,
        "Application Error",
        "Application",
        2,
        "0x80000000000000",
        {"Data": "explorer.exe"},
    ),
)


def _windows(rng: random.Random, number: int) -> str:
    event_id, provider, channel, level, keywords, data = rng.choice(_WINDOWS_EVENTS)
    fields = "".join(f"<Data Name='{name}'>{value}</Data>" for name, value in data.items())
    xml = (
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        f"<Provider Name='{provider}'/><EventID>{event_id}</EventID><Version>0</Version>"
        f"<Level>{level}</Level><Task>12544</Task><Opcode>0</Opcode>"
        f"<Keywords>{keywords}</Keywords>"
        "<TimeCreated SystemTime='2024-06-10T12:44:51.3344710Z'/>"
        f"<EventRecordID>{184233 + number}</EventRecordID><Correlation/>"
        "<Execution ProcessID='684' ThreadID='1720'/>"
        f"<Channel>{channel}</Channel><Computer>WIN-SRV01.corp.local</Computer><Security/>"
        f"</System><EventData>{fields}</EventData></Event>"
    )
    message = {"Message": f"Event {event_id} from {provider}.", "Event": xml}
    return "f:EventChannel:" + json.dumps(message)


def _attributes(rng: random.Random, path: str) -> dict[str, Any]:
    digest = f"{rng.getrandbits(128):032x}"
    return {
        "type": "file",
        "size": rng.randrange(100, 100_000),
        "perm": "rw-r--r--",
        "uid": "0",
        "gid": "0",
        "user_name": "root",
        "group_name": "root",
        "inode": str(rng.randrange(1_000_000)),
        "mtime": 1718022900 + rng.randrange(86_400),
        "hash_md5": digest,
        "hash_sha1": digest + "00000000",
        "hash_sha256": digest * 2,
        "checksum": digest + "cafe0000",
        "path": path,
    }


def _fim(rng: random.Random, number: int) -> str:
    path = f"/etc/app{number % 40}/file{number % 200}.conf"
    kind = rng.choices(("modified", "added", "deleted"), (8, 1, 1))[0]
    data: dict[str, Any] = {
        "path": path,
        "version": 2,
        "mode": rng.choice(("realtime", "scheduled")),
        "type": kind,
        "timestamp": 1718022911 + number,
        "attributes": _attributes(rng, path),
    }
    if kind == "modified":
        data["old_attributes"] = _attributes(rng, path)
        data["changed_attributes"] = ["size", "mtime", "md5", "sha1", "sha256"]
    return "8:syscheck:" + json.dumps({"type": "event", "data": data})


def _fim_sync(rng: random.Random, number: int) -> str:
    path = f"/usr/bin/tool{number % 500}"
    if number % 10 == 0:
        message = {
            "component": "fim_file",
            "type": "integrity_check_global",
            "data": {
                "id": 1718022911 + number,
                "begin": "/bin/a",
                "end": "/usr/sbin/z",
                "checksum": f"{rng.getrandbits(160):040x}",
            },
        }
    else:
        attributes = _attributes(rng, path)
        message = {
            "component": "fim_file",
            "type": "state",
            "data": {"index": path, "timestamp": 1718022911 + number, "attributes": attributes},
        }
    return "5:syscheck:" + json.dumps(message)


def _sca(rng: random.Random, number: int) -> str:
    check = 28600 + number % 150
    message = {
        "type": "check",
        "id": 1402771825,
        "policy": "CIS Ubuntu Linux 22.04 LTS Benchmark v1.0.0",
        "policy_id": "cis_ubuntu22-04",
        "check": {
            "id": check,
            "title": f"Ensure hardening item {check} is configured.",
            "description": "A hardening item of the benchmark.",
            "rationale": "Reduces the attack surface.",
            "remediation": "Configure it as the benchmark says.",
            "compliance": {"cis": f"5.{check % 9}.{check % 7}", "pci_dss": "2.2.4"},
            "rules": ["c:sshd -T -> r:^\\s*permitrootlogin\\s+no"],
            "condition": "all",
            "command": "sshd -T",
            # Most checks keep their result from one scan to the next; a few change.
            "result": "failed" if rng.random() < 0.1 else "passed",
        },
    }
    return "p:sca:" + json.dumps(message)


def _syscollector(rng: random.Random, number: int) -> str:
    table = rng.choice(("packages", "processes", "ports", "network_iface"))
    operation = rng.choices(("INSERTED", "MODIFIED", "DELETED"), (3, 5, 2))[0]
    rows: dict[str, dict[str, Any]] = {
        "packages": {
            "name": f"lib{number % 300}",
            "version": f"1.{number % 17}",
            "groups": "libs",
            "architecture": "amd64",
            "format": "deb",
            "item_id": f"p{number % 300}",
        },
        "processes": {
            "pid": str(1000 + number % 400),
            "name": f"worker{number % 50}",
            "state": "S",
            "ppid": 1,
            "euser": "root",
            "item_id": f"r{number % 400}",
        },
        "ports": {
            "protocol": "tcp",
            "local_ip": "0.0.0.0",
            "local_port": 1000 + number % 100,
            "state": "listening",
            "pid": 1000 + number % 100,
            "item_id": f"o{number % 100}",
        },
        "network_iface": {
            "name": f"eth{number % 4}",
            "type": "ethernet",
            "state": "up",
            "mtu": 1500,
            "tx_packets": number,
            "rx_packets": 2 * number,
            "item_id": f"i{number % 4}",
        },
    }
    message = {"type": f"dbsync_{table}", "operation": operation, "data": rows[table]}
    return "d:syscollector:" + json.dumps(message)


def _rootcheck(rng: random.Random, number: int) -> str:
    texts = (
        "System Audit: SSH Hardening - 4: No Public Key authentication {PCI_DSS: 2.2.4}. "
        "File: /etc/ssh/sshd_config. Reference: https://www.openssh.com/manual.html .",
        "Trojaned version of file '/bin/ls' detected. Signature used: 'bash|^/bin/sh' .",
        f"File '/tmp/.hidden{number % 20}' is owned by root and has written permissions to anyone.",
    )
    return "9:rootcheck:" + rng.choice(texts)


def mix_lines(count: int, seed: int = 14) -> list[str]:
    """``count`` events of the mix, as an agent sends them (``<queue>:<location>:<message>``;
    the log lines plain, which ``wazuh-load-gen`` sends as ``1:/var/log/syslog:<line>``)."""
    rng = random.Random(seed)
    logs = syslog_lines()
    makers = {
        "windows": _windows,
        "fim": _fim,
        "fim_sync": _fim_sync,
        "sca": _sca,
        "syscollector": _syscollector,
        "rootcheck": _rootcheck,
    }
    kinds = list(SHARES)
    weights = [SHARES[kind] for kind in kinds]
    lines = []
    for number in range(count):
        kind = rng.choices(kinds, weights)[0]
        if kind == "logs":
            lines.append(logs[number % len(logs)])
        else:
            lines.append(makers[kind](rng, number))
    return lines


def engine_alone(lines: list[str], rounds: int, agents: int = 100) -> tuple[float, int]:
    """Events per CPU second of one engine on the mix (best round), agent state in SQLite;
    and the alerts of the last round."""
    from wazuhcluster.analysis.engine import parse_queue_message
    from wazuhcluster.analysis.loader import load_engine
    from wazuhcluster.analysis.state_store import SqliteState
    from wazuhcluster.config.analysis_settings import RulesetSettings

    best = float("inf")
    alerts = 0
    with tempfile.TemporaryDirectory() as home:
        install_ruleset(Path(home))
        engine = load_engine(home, RulesetSettings(rule_excludes=(EXCLUDE,)))
        events = []
        for index, line in enumerate(lines):
            queued = line if line[1:2] == ":" and line[2:3] != " " else f"1:/var/log/syslog:{line}"
            queue, rest = queued[0], queued[2:]
            agent = f"{1 + index % agents:03d}"
            prefixed = f"{queue}:[{agent}] (bench-{agent}) any->{rest}"
            events.append(parse_queue_message(prefixed, timestamp=1_718_022_911.0 + index / 100))
        for round_number in range(rounds):
            state = SqliteState(Path(home) / f"state{round_number}")
            engine.agent_state = state
            engine.reset()
            alerts = 0
            started = time.process_time()
            for event in events:
                if engine.process(event) is not None:
                    alerts += 1
            state.flush()
            best = min(best, time.process_time() - started)
            state.close()
    return len(events) / best, alerts


def main() -> int:
    """Run the baseline and the end-to-end search; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--events", type=int, default=20_000, help="events in the mix")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per offered rate")
    parser.add_argument("--start", type=float, default=1000.0, help="first offered rate")
    parser.add_argument("--step", type=float, default=1.25, help="rate factor between windows")
    parser.add_argument("--rounds", type=int, default=3, help="engine-alone rounds")
    parser.add_argument("--processes", type=int, default=1, help="analysis processes")
    parser.add_argument("--engine-only", action="store_true", help="the baseline alone")
    parser.add_argument("--keep", action="store_true", help="keep the node homes")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then py-spy the worker and its analysis processes at the capacity found",
    )
    options = parser.parse_args()
    reason = missing_reason("WAZUH_RULESET")
    if reason:
        print(f"skipped: {reason}")
        return 0
    lines = mix_lines(options.events)
    shares = ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in SHARES.items())
    print(f"{len(lines)} events: {shares}; {options.agents} agents", flush=True)
    baseline, alerts = engine_alone(lines, options.rounds, options.agents)
    print(f"engine alone: {baseline:.0f} events per CPU second ({alerts} alerts)", flush=True)
    rate = 0.0
    window: dict[str, Any] = {}
    if not options.engine_only:
        base = Path(tempfile.mkdtemp(prefix="wzc-mix-"))
        bench = Bench(base, options.processes, options)
        try:
            presealed = int(options.start * options.window * (60 if options.profile else 40))
            bench.start(lines, presealed)
            rate, window = bench.capacity()
            if options.profile:
                out = ROOT / "docs" / "bench" / "agent_mix.pyspy"
                profile(bench, rate or options.start, options.window, out)
        finally:
            bench.stop()
            if not options.keep:
                shutil.rmtree(base, ignore_errors=True)
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nload average at the end: {load} on {os.cpu_count()} CPUs")
    print(
        "\n| case | events/s, no drop | worker CPU: reactor + analysis (cores) "
        "| events per CPU second | × engine alone | target per core |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| engine alone (one core, SQLite state, no alert writing) | – | 1.00 "
        f"| {baseline:.0f} | 1.00 | {TARGET_PER_CORE:.0f} |"
    )
    if window:
        cpu = window.get("node_cpu", 0.0)
        main_cpu = window.get("main_cpu", 0.0)
        # Events the worker processed in the window over the CPU seconds it spent there.
        spent = cpu * window.get("seconds", 0.0)
        per_cpu = window.get("processed", 0) / spent if spent else 0.0
        print(
            f"| end to end, {options.processes} analysis process"
            f"{'es' if options.processes > 1 else ''} | {rate:.0f} "
            f"| {main_cpu:.2f} + {cpu - main_cpu:.2f} | {per_cpu:.0f} "
            f"| {per_cpu / baseline:.2f} | {TARGET_PER_CORE:.0f} "
            f"({'met' if per_cpu >= TARGET_PER_CORE else 'not met'}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

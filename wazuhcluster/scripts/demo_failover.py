"""``make demo FAILOVER=1`` (``python -m wazuhcluster.scripts.demo_failover``): the master
that cannot be lost, on one machine, on 127.0.0.1.

1. a local etcd starts (one member, under ``--dir``/etcd; Debian's ``etcd-server``);
2. two master candidates (master-a, master-b) and two workers start with ``<failover>``;
   master-a is elected, master-b runs as a worker linked to it;
3. 20 simulated agents enroll through the workers and send sample events;
4. ``wazuh-cluster-control -i`` shows the election;
5. the demo suggests ``kill -9`` of the master; once it dies it shows the other candidate
   elected, the workers relinked to it and the agents still reporting, listed active by
   the new master; the killed candidate is started again and rejoins as a worker.

It keeps running until Ctrl-C (or ``--seconds``) and stops everything it started.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from attrs import define, field

from wazuhcluster.scripts import demo
from wazuhcluster.scripts.demo import Demo, DemoError, prepare_dir, shown
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, free_port
from wazuhcluster.testing.etcd import EtcdCluster, find_etcd

CANDIDATES = ("master-a", "master-b")
WORKERS = ("worker1", "worker2")
FAILOVER_NAMES = (*CANDIDATES, *WORKERS)
#: Short, so the take-over is seen within seconds (the default is 10 s).
DEMO_TTL = 5
AGENTS_PER_WORKER = 10


def failover_block(endpoints: list[str], ttl: int) -> str:
    """The ``<failover>`` block every node of the demo has."""
    return (
        "    <failover>\n      <etcd>\n"
        + "".join(f"        <endpoint>{endpoint}</endpoint>\n" for endpoint in endpoints)
        + f"      </etcd>\n      <lease_ttl>{ttl}s</lease_ttl>\n      <candidates>\n"
        + "".join(f"        <node>{name}</node>\n" for name in CANDIDATES)
        + "      </candidates>\n    </failover>\n"
    )


@define
class FailoverDemo(Demo):
    """The demo's processes with etcd and two candidates (see module docstring)."""

    ttl: int = DEMO_TTL
    etcd: EtcdCluster | None = field(default=None, init=False)
    #: The candidate the election names now.
    leader: str = field(default=CANDIDATES[0], init=False)

    def __attrs_post_init__(self) -> None:
        self.cluster = LocalCluster(self.base, workers=list(WORKERS), master=CANDIDATES[0])
        # Each candidate listens on its own cluster port once elected.
        self.cluster.cluster_ports[CANDIDATES[1]] = free_port()

    def run(self, seconds: float) -> None:
        """Tell the story, then wait for the master's death (or ``seconds``)."""
        self.start_etcd()
        self.start_failover_nodes()
        self.start_worker_agents()
        self.say("== 4. The election, as a worker sees it")
        self.control(WORKERS[0], "-i")
        self.watch_failover(seconds)

    def start_etcd(self) -> None:
        """Start one local etcd member."""
        binary = find_etcd()
        if binary is None:
            raise DemoError(
                "etcd is not installed: apt-get install etcd-server (or make system-deps)"
            )
        prepare_dir(self.base)
        self.say(f"== 1. etcd ({binary}), one member")
        etcd = self.etcd = EtcdCluster(self.base / "etcd", binary=binary)
        etcd.start()
        self.say(f"   client URL {etcd.endpoints[0]}; data in {shown(self.base / 'etcd')}/")
        self.say()

    def start_failover_nodes(self) -> None:
        """Two candidates and two workers; master-a first, so it is elected."""
        assert self.etcd is not None
        block = failover_block(self.etcd.endpoints, self.ttl)
        self.cluster.cluster_extra = lambda name, role: block
        self.cluster.write()
        self.cluster.write_node(CANDIDATES[1], "master")
        self.say(f"== 2. Two master candidates and two workers (lease TTL {self.ttl} s)")
        for name in FAILOVER_NAMES:
            role = "master" if name in CANDIDATES else "worker"
            node = NodeProcess(self.cluster.home(name), role)
            node.start()
            self.nodes[name] = node
            self.say(
                f"   {name:8} pid {self.pid(name):<7} {role} candidate"
                if role == "master"
                else f"   {name:8} pid {self.pid(name):<7} worker"
            )
            if name == CANDIDATES[0]:
                self.wait(
                    f"{name} being elected",
                    lambda: "Master for term" in self.log_of(CANDIDATES[0]),
                    f"see {shown(self.cluster.home(name).cluster_log)}",
                )
                self.say(f"   {name} elected master")
        took = self.wait(
            "the other nodes joining the master",
            lambda: self.listed(CANDIDATES[0]) == sorted(FAILOVER_NAMES),
            f"see {shown(self.base)}/*/logs/cluster.log",
        )
        self.say(f"   {CANDIDATES[1]} and both workers linked to {CANDIDATES[0]} in {took:.1f} s")
        self.say()

    def start_worker_agents(self) -> None:
        """Ten simulated agents on each worker's own ports."""
        total = AGENTS_PER_WORKER * len(WORKERS)
        self.say(f"== 3. {total} simulated agents enroll through the workers and send events")
        for index, worker in enumerate(WORKERS):
            home = shown(self.cluster.home(worker).root)
            args = ["--home", home, "--agents", str(AGENTS_PER_WORKER), "--eps", "5"]
            args += ["--name-prefix", f"agent-{'ab'[index]}", "--keepalive", "2"]
            self.simulate(worker, *args)
            self.say(f"$ wazuh-agent-sim {' '.join(args)}")
        took = self.wait(
            f"{total} agents active on the master",
            lambda: sum(self.active(CANDIDATES[0]).values()) == total,
            f"see {shown(self.base)}/agents/*.out and the workers' cluster.log",
        )
        self.say(f"   {total} agents active on {CANDIDATES[0]} after {took:.1f} s")
        self.say()

    def watch_failover(self, seconds: float) -> None:
        """Suggest the kill, then tell the take-over when the master dies."""
        master, other = CANDIDATES
        logs = " ".join(shown(self.cluster.home(name).cluster_log) for name in CANDIDATES)
        self.say("== 5. Kill the master and watch the other candidate take over:")
        self.say(f"   tail -f {logs}")
        self.say(f"   kill -9 {self.pid(master)}   # the master {master}")
        self.say(
            "Press Ctrl-C to stop everything." if not seconds else f"Stopping in {seconds:g} s."
        )
        deadline = time.monotonic() + seconds if seconds else None
        while deadline is None or time.monotonic() < deadline:
            how = self.nodes[master].died() if master not in self.down else None
            if how is not None:
                self.down[master] = time.monotonic()
                self.take_over(master, other, how)
            elif master in self.down and self.restart_after:
                if time.monotonic() >= self.down[master] + self.restart_after:
                    del self.down[master]
                    self.nodes[master].start()
                    self.say(
                        f"** {master} started again (pid {self.pid(master)}): it rejoins as a "
                        f"candidate running as a worker linked to {other}"
                    )
            time.sleep(0.5)

    def take_over(self, dead: str, other: str, how: str) -> None:
        """The master died: show the election, the relinked workers and the agents."""
        started = time.monotonic()
        self.say(f"** {dead} died ({how}); its lease expires within {self.ttl} s")
        before = self.log_of(other).count("Master for term")
        self.wait_alive(
            f"{other} being elected",
            lambda: self.log_of(other).count("Master for term") > before,
            f"see {shown(self.cluster.home(other).cluster_log)}",
        )
        self.leader = other
        self.say(f"   {other} elected master {time.monotonic() - started:.1f} s after the kill")
        self.wait_alive(
            "the workers relinking",
            lambda: all(
                f"Successfully connected to master {other}" in self.log_of(w) for w in WORKERS
            ),
            "see the workers' cluster.log",
        )
        self.say(f"   both workers relinked to {other} {time.monotonic() - started:.1f} s after")
        total = AGENTS_PER_WORKER * len(WORKERS)
        self.wait_alive(
            f"{total} agents active on {other}",
            lambda: sum(self.active(other).values()) == total,
            "see the workers' cluster.log",
        )
        placed = ", ".join(f"{n} on {node}" for node, n in sorted(self.active(other).items()))
        self.say(
            f"   the agents still report: {other} lists {total} active ({placed}), "
            f"{time.monotonic() - started:.1f} s after the kill"
        )
        self.control(WORKERS[0], "-i")

    def wait_alive(self, what: str, condition: Callable[[], bool], hint: str) -> None:
        """Like :meth:`wait`, with the dead candidate excused."""
        dead = {name: self.nodes.pop(name) for name in list(self.down)}
        try:
            self.wait(what, condition, hint)
        finally:
            self.nodes.update(dead)

    def log_of(self, name: str) -> str:
        """The node's cluster.log so far ('' before it exists)."""
        try:
            return self.cluster.home(name).cluster_log.read_text(errors="replace")
        except OSError:
            return ""

    def listed(self, node: str) -> list[str]:
        """The node names ``-l`` lists on ``node``, sorted (empty when it does not answer)."""
        result = self.control(node, "-l", "--json", show=False)
        if result.returncode != 0:
            return []
        try:
            return sorted(entry["name"] for entry in json.loads(result.stdout))
        except (ValueError, KeyError, TypeError):
            return []

    def active(self, node: str) -> Counter[str]:
        """How many agents ``node`` (a master) lists active, by node."""
        result = self.control(node, "-a", "--json", show=False)
        if result.returncode != 0:
            return Counter()
        try:
            agents = json.loads(result.stdout)
            return Counter(a["node_name"] for a in agents if a.get("status") == "active")
        except (ValueError, KeyError, TypeError):
            return Counter()

    def stop(self) -> None:
        """Stop the agents and nodes, then etcd."""
        super().stop()
        if self.etcd is not None:
            self.etcd.stop()
            self.say("Stopped etcd.")


def make_failover_demo(
    base: Path, out: Callable[[str], None], restart_after: float
) -> FailoverDemo:
    """The failover story over the demo's options."""
    return FailoverDemo(base, out=out, restart_after=restart_after)


def main(argv: list[str] | None = None) -> int:
    """Run the failover demo (the same options as ``make demo``; nginx is not used)."""
    return demo.main(argv, make_failover_demo, "python -m wazuhcluster.scripts.demo_failover")


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the whole story of a wazuhcluster on one machine, on 127.0.0.1.

1. a master and two workers start as twistd processes (homes under ``--dir``, default demo/),
   with Wazuh's full ruleset when ``--ruleset PATH`` names one (a source archive or tree,
   installed by ``wazuh-cluster-ruleset``; the project's small default set otherwise);
2. nginx balances the agents' ports over the nodes when it is installed (direct ports if not);
3. 20 simulated agents enroll and send sample events;
4. the workers raise alerts from the stock ruleset;
5. a custom rule is written into the master's etc/rules/ only; the master syncs it and the
   workers raise its alert without a restart;
6. ``wazuh-cluster-control -l``, ``-a`` and ``-i`` show the cluster;
7. the master's REST API answers, and ready-to-paste curl lines are printed.

Then it keeps running until Ctrl-C (or ``--seconds``), and stops everything it started. While
it runs, any one node may die (``kill -9`` of the master or of a worker is what its last lines
suggest): the demo says so, keeps the others running, and starts the dead node again after
``--restart-after`` seconds, so the rejoin can be watched in the nodes' cluster.log.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from attrs import define, field

from wazuhcluster.api.users import add_user
from wazuhcluster.config.api_settings import api_dir
from wazuhcluster.scripts import nginx
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, free_port, wait_for
from wazuhcluster.util.files import write_atomically

AGENTS = 20
CUSTOM_RULE_ID = "100200"
#: The REST API user the demo creates on the master (with a fresh random password).
API_USER = "demo"
#: How long any one step may take before the demo gives up and says where to look.
STEP_TIMEOUT = 90.0
#: Written into --dir so a later run knows it may clear what an earlier one left.
MARKER = ".wazuhcluster-demo"
NODE_NAMES = ("master", "worker1", "worker2")
#: What ``--failover`` adds (see :mod:`wazuhcluster.scripts.demo_failover`).
FAILOVER_OWNED = ("master-a", "master-b", "etcd")
OWNED = (*NODE_NAMES, *FAILOVER_OWNED, "nginx", "agents", MARKER)
#: Seconds between a node's death and the demo starting it again (``--restart-after``).
RESTART_AFTER = 10.0
#: Largest alerts.json the demo reads back (it only looks for a few lines).
MAX_ALERTS_READ = 64 * 1024 * 1024


class DemoError(Exception):
    """A step of the demo did not happen in time; the message says where to look."""


class Stop(Exception):
    """SIGTERM arrived: stop like Ctrl-C."""


def asset(name: str) -> Path:
    """A file of wazuhcluster/data/demo_assets (sample events, the custom rule)."""
    return Path(str(resources.files("wazuhcluster").joinpath("data", "demo_assets", name)))


def shown(path: Path) -> str:
    """``path`` relative to the current directory when it is below it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def prepare_dir(base: Path) -> None:
    """Clear what an earlier demo left in ``base``; refuse to touch anything else.

    DemoError if ``base`` holds one of the demo's names without having been made by it.
    """
    base.mkdir(parents=True, exist_ok=True)
    if any(
        _answers(base / name / "var" / "run" / "cluster.sock") for name in ("master", "master-a")
    ):
        raise DemoError(f"a demo is already running in {shown(base)}; stop it first")
    ours = (base / MARKER).exists() or any(
        (base / name / "etc" / "wazuh-manager.conf").exists() for name in ("master", "master-a")
    )
    present = [name for name in OWNED if (base / name).exists()]
    if present and not ours:
        raise DemoError(f"{shown(base)} holds {', '.join(present)} not made by the demo")
    for name in present:
        target = base / name
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        except OSError as error:
            raise DemoError(f"cannot clear {shown(target)}: {error}") from error
    (base / MARKER).write_text("homes made by `python -m wazuhcluster.scripts.demo`\n")


def _answers(path: Path) -> bool:
    """Whether a process listens on the UNIX socket ``path``."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def api_summary(url: str, user: str, password: str) -> dict[str, int]:
    """Log in to the REST API at ``url`` and count its nodes and active agents.

    The demo's API has a fresh self-signed certificate, hence no verification (127.0.0.1).
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    login = urllib.request.Request(
        f"{url}/security/user/authenticate?raw=true",
        method="POST",
        headers={"Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(login, timeout=10, context=context) as answer:
        token = answer.read(64 * 1024).decode().strip()
    items = {}
    for key, path in (("nodes", "/cluster/nodes"), ("agents", "/agents?status=active&limit=500")):
        request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            items[key] = json.loads(answer.read(4 * 1024 * 1024))["data"]["affected_items"]
    # as in Wazuh, agent 000 is the manager itself
    agents = [agent for agent in items["agents"] if agent.get("id") != "000"]
    summary = {"nodes": len(items["nodes"]), "agents": len(agents)}
    if agents:
        # A question to the agent itself (#!-req through the node it is connected to).
        first = str(agents[0]["id"])
        request = urllib.request.Request(
            f"{url}/agents/{first}/stats/agent", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=20, context=context) as answer:
                state = json.loads(answer.read(64 * 1024))["data"]["affected_items"][0]
            summary["asked_agent"] = int(first)
            summary["agent_events"] = int(state["msg_count"])
        except (OSError, ValueError, KeyError, IndexError):
            pass
    return summary


def python_tool(module: str, *args: str) -> list[str]:
    """The command line that runs a console script's ``main`` with this interpreter."""
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", *args]


def read_alerts(path: Path) -> list[dict[str, Any]]:
    """The alerts in an alerts.json so far (a partly written last line is skipped)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_ALERTS_READ)
    except FileNotFoundError:
        return []
    alerts = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            alert = json.loads(line)
        except ValueError:
            continue
        if isinstance(alert, dict):
            alerts.append(alert)
    return alerts


def rule_of(alert: dict[str, Any]) -> dict[str, Any]:
    """The ``rule`` object of an alert (empty when malformed)."""
    rule = alert.get("rule")
    return rule if isinstance(rule, dict) else {}


@define
class Demo:
    """Everything the demo starts, so that one ``stop`` ends all of it."""

    base: Path
    use_nginx: bool = True
    #: A Wazuh source archive or tree whose ruleset the nodes get (None: the default set).
    ruleset: Path | None = None
    out: Callable[[str], None] = print
    cluster: LocalCluster = field(init=False)
    nodes: dict[str, NodeProcess] = field(factory=dict, init=False)
    balancer: nginx.NginxProcess | None = field(default=None, init=False)
    simulators: list[subprocess.Popen[bytes]] = field(factory=list, init=False)
    api_password: str = field(factory=lambda: secrets.token_hex(8), init=False)
    #: Seconds after a node's death before it is started again (0: leave it down).
    restart_after: float = RESTART_AFTER
    #: Nodes found dead while the demo keeps running, with when to start them again.
    down: dict[str, float] = field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        self.cluster = LocalCluster(
            self.base, workers=list(NODE_NAMES[1:]), master=NODE_NAMES[0], with_api=True
        )

    def say(self, text: str = "") -> None:
        """Print one line of the story."""
        self.out(text)

    def control(self, node: str, *args: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        """Run wazuh-cluster-control on ``node``; print the command and its answer if ``show``."""
        home = self.cluster.home(node).root
        result = subprocess.run(
            python_tool("wazuhcluster.scripts.control", "--home", str(home), *args),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if show:
            self.say(f"$ wazuh-cluster-control --home {shown(home)} {' '.join(args)}")
            self.say((result.stdout + result.stderr).rstrip())
            self.say()
        return result

    def wait(self, what: str, condition: Callable[[], bool], hint: str) -> float:
        """Wait for ``condition``; return the seconds it took, or raise DemoError."""
        started = time.monotonic()

        def done() -> bool:
            self.check_alive()
            return condition()

        if not wait_for(done, STEP_TIMEOUT, 0.5):
            raise DemoError(f"{what} did not happen within {STEP_TIMEOUT:.0f} s; {hint}")
        return time.monotonic() - started

    def check_alive(self) -> None:
        """DemoError naming the first process we started that has exited, and its last words."""
        for name, node in self.nodes.items():
            if not node.running():
                output = node.home.logs / "twistd.out"
                try:
                    last = output.read_text(errors="replace").strip().splitlines()[-1:]
                except OSError:
                    last = []
                said = f": {last[0]}" if last else ""
                raise DemoError(f"{name} exited (see {shown(output)}){said}")
        if self.balancer is not None and not self.balancer.running():
            raise DemoError(f"nginx exited; see {shown(self.balancer.error_log)}")
        for simulator in self.simulators:
            if simulator.poll() is not None:
                raise DemoError(f"an agent simulator exited; see {shown(self.base / 'agents')}")

    # ------------------------------------------------------------------ the story

    def run(self, seconds: float) -> None:
        """Tell the story, then keep running for ``seconds`` (0: until Ctrl-C or SIGTERM)."""
        self.start_nodes()
        agents_at = self.start_balancer()
        self.start_agents(agents_at)
        self.show_stock_alerts()
        self.add_custom_rule()
        self.show_control()
        self.show_api()
        self.keep_running(seconds)

    def start_nodes(self) -> None:
        """Lay out the homes and start the master and the two workers."""
        prepare_dir(self.base)
        self.cluster.write()
        add_user(api_dir(self.cluster.home("master")) / "users.json", API_USER, self.api_password)
        self.say(f"== 1. A master and two workers (homes in {shown(self.base)}/)")
        if self.ruleset is not None:
            self.install_ruleset(self.ruleset)
        for name in NODE_NAMES:
            node = NodeProcess(self.cluster.home(name), "master" if name == "master" else "worker")
            node.start()
            self.nodes[name] = node
            ports = self.cluster.node_ports(name)
            pid = node.process.pid if node.process is not None else "?"
            self.say(
                f"   {name:8} pid {pid:<7} enrollment 127.0.0.1:{ports['enrollment']:<6} "
                f"agents 127.0.0.1:{ports['agents']}"
            )
        self.say(f"   cluster link: mutual TLS on 127.0.0.1:{self.cluster.port}")
        took = self.wait(
            "both workers joining the master",
            lambda: all(
                f"\n{name} " in "\n" + self.control("worker1", "-l", show=False).stdout
                for name in NODE_NAMES
            ),
            f"see {shown(self.base)}/*/logs/cluster.log",
        )
        self.say(f"   both workers joined the master in {took:.1f} s")
        self.say()

    def install_ruleset(self, source: Path) -> None:
        """Install the ruleset of ``source`` into the master's home with wazuh-cluster-ruleset,
        then into each worker's from the master's (every node analyses with its own copy)."""
        master = self.cluster.home("master").root
        for name in NODE_NAMES:
            home = self.cluster.home(name).root
            origin = source if name == "master" else master / "ruleset"
            args = ["--home", shown(home), "install", "--from", shown(origin), "--no-reload"]
            result = subprocess.run(
                python_tool("wazuhcluster.scripts.ruleset", *args),
                capture_output=True,
                text=True,
                check=False,
                timeout=STEP_TIMEOUT,
            )
            if result.returncode != 0:
                raise DemoError(result.stderr.strip() or f"wazuh-cluster-ruleset failed on {name}")
            self.say(f"$ wazuh-cluster-ruleset {' '.join(args)}")
            self.say("   " + result.stdout.strip().splitlines()[0])

    def start_balancer(self) -> dict[str, int] | None:
        """Start nginx in front of the nodes if it can; return its ports, or None."""
        self.say("== 2. The agents' way in")
        binary = nginx.find_nginx() if self.use_nginx else None
        if binary is None:
            why = "nginx is not installed" if self.use_nginx else "--no-nginx"
            self.say(f"   {why}: agents go straight to the workers' ports, 10 each")
            self.say("   (apt-get install nginx-light libnginx-mod-stream puts NGINX in front)")
            self.say()
            return None
        try:
            module = nginx.stream_module(binary)
            ports = {"enrollment": free_port(), "agents": free_port()}
            stream = nginx.render_stream(
                nginx.read_template(),
                [("127.0.0.1", self.cluster.node_ports(n)["enrollment"]) for n in NODE_NAMES],
                [("127.0.0.1", self.cluster.node_ports(n)["agents"]) for n in NODE_NAMES[1:]],
                f"127.0.0.1:{ports['enrollment']}",
                f"127.0.0.1:{ports['agents']}",
                access_log=self.base / "nginx" / "access.log",
            )
            balancer = nginx.NginxProcess(binary, self.base / "nginx")
            balancer.write(stream, module)
        except nginx.NginxError as error:
            self.say(f"   nginx cannot be used ({error}): agents go straight to the workers")
            self.say()
            return None
        balancer.start()
        self.balancer = balancer
        self.wait("nginx starting", balancer.started, f"see {shown(balancer.error_log)}")
        self.say(f"   NGINX ({binary}) from etc/nginx/wazuhcluster-lb.conf:")
        self.say(f"   127.0.0.1:{ports['enrollment']} (1515) -> master, worker1, worker2")
        self.say(f"   127.0.0.1:{ports['agents']} (1514) -> worker1, worker2, least connections")
        self.say(f"   config: {shown(balancer.config_file)}, log: {shown(balancer.access_log)}")
        self.say()
        return ports

    def simulate(self, label: str, *args: str) -> None:
        """Start one wazuh-agent-sim with ``args`` in its own session (Ctrl-C is ours)."""
        logs = self.base / "agents"
        logs.mkdir(exist_ok=True)
        with (logs / f"{label}.out").open("ab") as output:
            self.simulators.append(
                subprocess.Popen(
                    python_tool("wazuhcluster.scripts.agent_simulator", *args),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def start_agents(self, balancer: dict[str, int] | None) -> None:
        """Start 20 simulated agents (through nginx, or 10 on each worker)."""
        self.say(f"== 3. {AGENTS} simulated agents enroll and send sample events")
        common = ["--keepalive", "2", "--events", shown(asset("events.log")), "--spread", "2"]
        if balancer is not None:
            ports = [
                "--port",
                str(balancer["agents"]),
                "--enroll-port",
                str(balancer["enrollment"]),
            ]
            args = ["--manager", "127.0.0.1", *ports, "--agents", str(AGENTS), "--eps", "20"]
            args += ["--name-prefix", "agent-", *common]
            self.simulate("agents", *args)
            self.say(f"$ wazuh-agent-sim {' '.join(args)}")
        else:
            half = AGENTS // 2
            for index, worker in enumerate(NODE_NAMES[1:]):
                home = shown(self.cluster.home(worker).root)
                prefix = f"agent-{'ab'[index]}"
                args = ["--home", home, "--agents", str(half), "--eps", "10", "--name-prefix"]
                args += [prefix, *common]
                self.simulate(worker, *args)
                self.say(f"$ wazuh-agent-sim {' '.join(args)}")
        took = self.wait(
            f"{AGENTS} agents becoming active",
            lambda: sum(self.placement().values()) == AGENTS,
            f"see {shown(self.base)}/agents/*.out and the workers' cluster.log",
        )
        placed = ", ".join(f"{n} on {node}" for node, n in sorted(self.placement().items()))
        self.say(f"   {AGENTS} agents active after {took:.1f} s: {placed}")
        self.say()

    def placement(self) -> Counter[str]:
        """How many agents the master shows active, by node."""
        result = self.control("master", "-a", "--json", show=False)
        if result.returncode != 0:
            return Counter()
        return Counter(
            agent["node_name"]
            for agent in json.loads(result.stdout)
            if agent.get("status") == "active"
        )

    def alerts_file(self, node: str) -> Path:
        """HOME/logs/alerts/alerts.json of ``node``."""
        return self.cluster.home(node).root / "logs" / "alerts" / "alerts.json"

    def show_stock_alerts(self) -> None:
        """Wait for alerts from the stock ruleset on both workers and sum them up by rule."""
        self.say("== 4. The workers analyse the events (stock ruleset)")
        workers = NODE_NAMES[1:]
        self.wait(
            "alerts on both workers",
            lambda: all(len(read_alerts(self.alerts_file(w))) >= 5 for w in workers),
            "see the workers' logs/alerts/alerts.json and cluster.log",
        )
        seen: dict[str, tuple[int, str]] = {}
        counts: Counter[tuple[str, str]] = Counter()
        for worker in workers:
            for alert in read_alerts(self.alerts_file(worker)):
                rule = rule_of(alert)
                rule_id = str(rule.get("id"))
                seen[rule_id] = (rule.get("level", 0), str(rule.get("description", "")))
                counts[(rule_id, worker)] += 1
        self.say("   RULE    LEVEL  WORKER1  WORKER2  DESCRIPTION")
        for rule_id in sorted(seen, key=int):
            level, description = seen[rule_id]
            on = [counts[(rule_id, w)] for w in workers]
            self.say(f"   {rule_id:<7} {level:<6} {on[0]:<8} {on[1]:<8} {description}")
        self.say(f"   (from {shown(self.alerts_file('worker1'))} and worker2's)")
        self.say()

    def add_custom_rule(self) -> None:
        """Write the custom rule on the master only and show it firing on the workers."""
        self.say(f"== 5. A custom rule, written on the master only (rule {CUSTOM_RULE_ID})")
        target = self.cluster.home("master").etc / "rules" / "local_rules.xml"
        write_atomically(target, asset("local_rules.xml").read_bytes(), 0o660)
        self.say(f"$ cp {shown(asset('local_rules.xml'))} {shown(target)}")
        started = time.monotonic()
        fired: dict[str, dict[str, Any]] = {}

        def fired_everywhere() -> bool:
            for worker in NODE_NAMES[1:]:
                if worker not in fired:
                    for alert in read_alerts(self.alerts_file(worker)):
                        if str(rule_of(alert).get("id")) == CUSTOM_RULE_ID:
                            fired[worker] = alert
                            self.say(
                                f"   {worker} raised it {time.monotonic() - started:.1f} s later"
                            )
                            break
            return len(fired) == len(NODE_NAMES) - 1

        self.wait(
            f"rule {CUSTOM_RULE_ID} firing on both workers",
            fired_everywhere,
            "see the workers' cluster.log ([Integrity sync] and ruleset reload lines)",
        )
        self.say("   synced by the master's integrity task; each worker reloaded its ruleset")
        self.say("   without a restart. The alert, from worker1's alerts.json:")
        self.say(json.dumps(fired["worker1"], separators=(",", ":")))
        self.say()

    def show_control(self) -> None:
        """Print ``-l`` (asked on a worker, relayed to the master), ``-a`` and ``-i``."""
        self.say("== 6. The control tool")
        self.control("worker1", "-l")
        self.control("master", "-a")
        self.control("master", "-i")

    def show_api(self) -> None:
        """Check the master's REST API with the demo user and print ready-to-paste curl lines."""
        url = f"https://127.0.0.1:{self.cluster.node_ports('master')['api']}"
        self.say(f"== 7. The master's REST API ({url}, user {API_USER})")
        answers: dict[str, Any] = {}

        def answered() -> bool:
            try:
                answers.update(api_summary(url, API_USER, self.api_password))
            except (OSError, ValueError, KeyError):
                return False
            return True

        self.wait("the REST API answering", answered, f"see {shown(self.base)}/master/logs")
        login = f"-u {API_USER}:{self.api_password}"
        self.say(f'TOKEN=$(curl -sk {login} -X POST "{url}/security/user/authenticate?raw=true")')
        bearer = 'curl -sk -H "Authorization: Bearer $TOKEN"'
        self.say(f'{bearer} "{url}/cluster/nodes?pretty=true"')
        self.say(f'{bearer} "{url}/agents?status=active&select=id,name,node_name&pretty=true"')
        self.say(
            f"   (checked: the API lists {answers['nodes']} nodes "
            f"and {answers['agents']} active agents)"
        )
        if "asked_agent" in answers:
            asked = f"{answers['asked_agent']:03d}"
            self.say(f'{bearer} "{url}/agents/{asked}/config/agent/client?pretty=true"')
            self.say(f'{bearer} "{url}/agents/{asked}/stats/agent?pretty=true"')
            self.say(
                f"   (checked: agent {asked} itself answered through its worker: "
                f"{answers['agent_events']} events sent)"
            )
        self.say()

    def keep_running(self, seconds: float) -> None:
        """Wait for Ctrl-C (or ``seconds``). A node that dies is reported and started again
        (the others keep running); only nginx dying ends the demo."""
        home = shown(self.cluster.home("master").root)
        logs = " ".join(shown(self.cluster.home(name).cluster_log) for name in NODE_NAMES)
        self.say("The cluster is running. Try, in another terminal:")
        self.say(f"   wazuh-cluster-control --home {home} -a -fn worker2")
        self.say(f"   wazuh-cluster-control --home {home} -i more")
        self.say(f"   tail -f {shown(self.alerts_file('worker1'))}")
        self.say("Kill a node and watch the others carry on:")
        self.say(f"   tail -f {logs}")
        self.say(
            f"   kill -9 {self.pid('master')}   # the master: the workers keep analysing, "
            "say 'Connection with the master lost', retry, and rejoin once it is back"
        )
        moved = (
            "its agents move to worker2 through nginx"
            if self.balancer is not None
            else "its agents wait for it (no nginx to move them)"
        )
        self.say(
            f"   kill -9 {self.pid('worker1')}   # worker1: {moved}; the master lists it as gone"
        )
        if self.restart_after:
            self.say(
                f"The demo reports a dead node and starts it again {self.restart_after:g} s "
                "later (its cluster.log then says it removed the stale control-socket lock)."
            )
        self.say(
            "Press Ctrl-C to stop everything." if not seconds else f"Stopping in {seconds:g} s."
        )
        deadline = time.monotonic() + seconds if seconds else None
        while deadline is None or time.monotonic() < deadline:
            if self.balancer is not None and not self.balancer.running():
                raise DemoError(f"nginx stopped; see {shown(self.balancer.error_log)}")
            self.watch_nodes(time.monotonic())
            time.sleep(0.5)

    def watch_nodes(self, now: float) -> None:
        """Report each node found dead since the last look; start it again when its time
        has come. The other nodes are left running either way."""
        for name, node in self.nodes.items():
            if name in self.down:
                if self.restart_after and now >= self.down[name]:
                    del self.down[name]
                    node.start()
                    self.say(
                        f"** {name} started again (pid {self.pid(name)}); watch "
                        f"{shown(self.cluster.home(name).cluster_log)}"
                    )
                continue
            how = node.died()
            if how is None:
                continue
            self.down[name] = now + self.restart_after
            others = ", ".join(n for n in NODE_NAMES if n != name and n not in self.down)
            self.say(f"** {name} died ({how}); still running: {others or 'nothing'}")
            if name == NODE_NAMES[0]:
                self.say(
                    "   the workers keep their agents and analyse their events; they retry the "
                    "master, backing off to every few seconds"
                )
            else:
                self.say(f"   the master lists {name} as disconnected; its agents reconnect")
            if self.restart_after:
                self.say(f"   the demo starts {name} again in {self.restart_after:g} s")

    def pid(self, node: str) -> str:
        """The process id of ``node``, for the hints."""
        process = self.nodes[node].process
        return str(process.pid) if process is not None else "?"

    # ------------------------------------------------------------------ stopping

    def stop(self) -> None:
        """Stop the agents (they say goodbye), nginx, then the workers and the master."""
        for simulator in self.simulators:
            if simulator.poll() is None:
                simulator.send_signal(signal.SIGINT)
        for simulator in self.simulators:
            try:
                simulator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait(timeout=15)
        if self.balancer is not None:
            self.balancer.stop()
        for node in reversed(list(self.nodes.values())):
            node.stop()
        if not self.nodes:
            return
        what = [f"{len(self.nodes)} nodes"]
        if self.simulators:
            what.insert(0, f"{len(self.simulators)} agent simulator(s)")
        if self.balancer is not None:
            what.insert(-1, "nginx")
        self.say(f"Stopped {', '.join(what)}.")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Stop()


#: Builds another demo from the base directory, the printer and ``--restart-after``.
MakeDemo = Callable[[Path, Callable[[str], None], float], Demo]


def main(
    argv: list[str] | None = None, make_demo: MakeDemo | None = None, prog: str | None = None
) -> int:
    """Run the demo (``make_demo``: another story over the same options, e.g. the failover
    one); 0 when it ran and stopped cleanly, 1 when a step failed."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m wazuhcluster.scripts.demo",
        description=(__doc__ or "").split("\n")[0],
    )
    parser.add_argument("--dir", default="demo", help="where the nodes' homes are created")
    parser.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (0: wait for Ctrl-C)"
    )
    parser.add_argument(
        "--no-nginx", action="store_true", help="agents use the workers' ports even with nginx"
    )
    parser.add_argument(
        "--restart-after",
        type=float,
        default=RESTART_AFTER,
        metavar="SECONDS",
        help="start a node that died again after this long (0: leave it down)",
    )
    parser.add_argument(
        "--ruleset",
        metavar="PATH",
        help="a Wazuh source archive (.tar.gz) or tree whose full ruleset the nodes use "
        "(default: the project's small set)",
    )
    args = parser.parse_args(argv)
    if args.seconds < 0:
        parser.error("--seconds must not be negative")
    if args.restart_after < 0:
        parser.error("--restart-after must not be negative")
    base = Path(args.dir).absolute()
    if make_demo is not None:
        demo = make_demo(base, lambda text: print(text, flush=True), args.restart_after)
    else:
        demo = Demo(
            base,
            use_nginx=not args.no_nginx,
            ruleset=Path(args.ruleset).absolute() if args.ruleset else None,
            out=lambda text: print(text, flush=True),
            restart_after=args.restart_after,
        )
    status = 0
    # also when started in the background, where the shell leaves SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        demo.run(args.seconds)
    except (KeyboardInterrupt, Stop):
        print("\nStopping.", flush=True)
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # a second Ctrl-C must not leave processes behind half-stopped
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())

"""A local cluster on 127.0.0.1 for ``make demo`` and the integration tests.

It lays out one home per node (configuration, certificates from a fresh cluster CA) and
starts each node as a real ``twistd -n wazuhcluster`` process.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from attrs import define, field

from wazuhcluster.config.home import Home
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.tls import KeyPair, create_ca, issue_node_certificate

#: Short intervals so a demo or a test sees the cluster act within seconds.
FAST_TIMINGS = {
    "keep_alive": "2s",
    "reaper_interval": "2s",
    "max_silence": "8s",
    "reconnect": "0.5s",
    "reconnect_max": "2s",
    "request_timeout": "5s",
    "sync_integrity": "2s",
    "local_integrity": "1s",
    "sync_agent_info": "2s",
    "local_agent_groups": "2s",
}


#: Every port :func:`free_port` handed out in this process. A port is only probed, not held,
#: so the kernel may offer it again before its user binds it (a failover candidate binds its
#: cluster port only once elected): two services of one test on one port would reach each
#: other.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago and that this process
    has not handed out before."""
    for _ in range(1000):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no ephemeral port left that this process has not handed out")


def cluster_config(
    node_name: str,
    node_type: str,
    key: str,
    port: int,
    cluster_name: str = "wazuh",
    timings: Mapping[str, str] = FAST_TIMINGS,
    extra: str = "",
    cluster_extra: str = "",
) -> str:
    """The text of a wazuh-manager.conf for one node of a loopback cluster (``extra``
    after the ``<cluster>`` block, ``cluster_extra`` inside it, e.g. ``<failover>``)."""
    timing_lines = "".join(f"      <{k}>{v}</{k}>\n" for k, v in timings.items())
    return (
        "<wazuh_config>\n"
        "  <cluster>\n"
        f"    <name>{cluster_name}</name>\n"
        f"    <node_name>{node_name}</node_name>\n"
        f"    <node_type>{node_type}</node_type>\n"
        f"    <key>{key}</key>\n"
        f"    <port>{port}</port>\n"
        "    <bind_addr>127.0.0.1</bind_addr>\n"
        "    <nodes>\n      <node>127.0.0.1</node>\n    </nodes>\n"
        "    <hidden>no</hidden>\n"
        "    <disabled>no</disabled>\n"
        f"    <timings>\n{timing_lines}    </timings>\n"
        f"{cluster_extra}"
        "  </cluster>\n"
        f"{extra}"
        "</wazuh_config>\n"
    )


def install_certificates(home: Home, ca: KeyPair, node_name: str) -> None:
    """Give ``home`` the CA certificate and a certificate for ``node_name`` on 127.0.0.1."""
    pair = issue_node_certificate(ca, node_name, ["127.0.0.1", "localhost"])
    write_atomically(home.certs / "ca.pem", ca.cert_pem, 0o644)
    write_atomically(home.certs / "node.pem", pair.cert_pem, 0o644)
    write_atomically(home.certs / "node.key", pair.key_pem, 0o600)


def new_key() -> str:
    """A fresh 32-character cluster key."""
    return secrets.token_hex(16)


@define
class LocalCluster:
    """Homes for a master and workers under ``base``, sharing one CA, key and port."""

    base: Path
    workers: list[str] = field(factory=lambda: ["worker1", "worker2"])
    master: str = "master"
    key: str = field(factory=new_key)
    port: int = field(factory=free_port)
    ca: KeyPair = field(factory=create_ca)
    extra_config: Callable[[str, str], str] = field(default=lambda name, role: "")
    #: Per node, the ports of its agent-facing services: ``{"enrollment": ..., "agents": ...}``.
    ports: dict[str, dict[str, int]] = field(factory=dict)
    #: Extra options for every node's ``<auth>`` block (e.g. ``<use_password>yes</use_password>``).
    auth_options: str = ""
    #: Whether the master serves the REST API (on ``node_ports(master)["api"]``).
    with_api: bool = False
    #: Every node's ``<remote><protocol>`` for agents: ``tcp``, ``udp`` or ``tcp,udp``.
    agent_protocol: str = "tcp"
    #: What goes inside a node's ``<cluster>`` block (e.g. ``<failover>``), by name and role.
    cluster_extra: Callable[[str, str], str] = field(default=lambda name, role: "")
    #: A node's own cluster port where it is not the shared ``port`` (failover candidates
    #: listen on their own port when elected).
    cluster_ports: dict[str, int] = field(factory=dict)

    def node_ports(self, name: str) -> dict[str, int]:
        """The agent-facing ports of node ``name`` (allocated on first use)."""
        if name not in self.ports:
            self.ports[name] = {
                "enrollment": free_port(),
                "agents": free_port(),
                "api": free_port(),
            }
        return self.ports[name]

    def services_config(self, name: str) -> str:
        """The ``<auth>`` and ``<remote>`` blocks of ``name``: its own ports, on 127.0.0.1."""
        ports = self.node_ports(name)
        return (
            "  <auth>\n"
            f"    <port>{ports['enrollment']}</port>\n"
            "    <bind_addr>127.0.0.1</bind_addr>\n"
            f"    {self.auth_options}\n"
            "  </auth>\n"
            "  <remote>\n"
            "    <connection>secure</connection>\n"
            f"    <port>{ports['agents']}</port>\n"
            f"    <protocol>{self.agent_protocol}</protocol>\n"
            "    <local_ip>127.0.0.1</local_ip>\n"
            "  </remote>\n"
            + (
                f"  <api>\n    <bind_addr>127.0.0.1</bind_addr>\n    <port>{ports['api']}</port>\n"
                "  </api>\n"
                if self.with_api and name == self.master
                else ""
            )
        )

    def home(self, name: str) -> Home:
        """The home of node ``name``."""
        return Home(self.base / name)

    def write(self) -> None:
        """Lay out every node's home, configuration and certificates."""
        for name, role in [(self.master, "master")] + [(w, "worker") for w in self.workers]:
            self.write_node(name, role)

    def write_node(
        self, name: str, role: str, key: str | None = None, ca: KeyPair | None = None
    ) -> Home:
        """Lay out one node's home (``key`` and ``ca`` override the cluster's, for tests)."""
        home = self.home(name)
        home.make_dirs()
        extra = self.services_config(name) + self.extra_config(name, role)
        text = cluster_config(
            name,
            role,
            key or self.key,
            self.cluster_ports.get(name, self.port),
            extra=extra,
            cluster_extra=self.cluster_extra(name, role),
        )
        write_atomically(home.config_file, text.encode(), 0o640)
        install_certificates(home, ca or self.ca, name)
        return home


@define
class NodeProcess:
    """One ``twistd -n wazuhcluster`` process."""

    home: Home
    role: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the node in the foreground mode of twistd (it does not daemonize)."""
        log = (self.home.logs / "twistd.out").open("ab")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "wazuhcluster",
                "--role",
                self.role,
                "--home",
                str(self.home.root),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def died(self) -> str | None:
        """How the node's process ended (``killed by SIGKILL``, ``exited with status 1``)
        when it was started and has ended without :meth:`kill` or :meth:`stop`; else None."""
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return None
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the node and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """Stop the node cleanly (SIGTERM), killing it if it does not stop in time."""
        self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        """The node's cluster.log so far."""
        try:
            return self.home.cluster_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, step: float = 0.1) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return the verdict."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()

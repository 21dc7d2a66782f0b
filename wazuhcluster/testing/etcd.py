"""Real etcd servers on 127.0.0.1 for the failover tests: one member, or three.

Each member is Debian's ``etcd`` binary (package ``etcd-server``, 3.4 or newer) started in a
temporary directory on ephemeral ports, and stopped by its pid (SIGTERM, then SIGKILL after a
bounded wait). Tests call :func:`require_etcd` first: it raises ``SkipTest`` with a one-line
reason where the binary is missing (``make system-deps`` installs it).

Optionally the members serve their clients over TLS with client certificates required
(``tls=True``): a fresh CA signs the servers' certificate and one client certificate, which
:attr:`EtcdCluster.client_material` hands to the test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from unittest import SkipTest

from attrs import define, field

from wazuhcluster.testing.devcluster import free_port, wait_for
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.tls import KeyPair, create_ca, issue_node_certificate

#: Where Debian puts the server; PATH is searched first.
DEBIAN_ETCD = "/usr/bin/etcd"
#: Generous: members of a new cluster elect their raft leader within a second or two, but CI
#: machines are shared.
START_DEADLINE = 60.0
#: How many times :meth:`EtcdCluster.start` starts again on fresh ports when a member could
#: not bind (another process took a port between ``free_port`` and etcd's bind).
PORT_RETRIES = 3
#: What etcd prints when it cannot bind a port.
ADDRESS_IN_USE = "address already in use"
STOP_DEADLINE = 10.0


def find_etcd() -> str | None:
    """The etcd server binary, or None when it is not installed."""
    found = shutil.which("etcd")
    if found is not None:
        return found
    return DEBIAN_ETCD if os.access(DEBIAN_ETCD, os.X_OK) else None


def require_etcd() -> str:
    """The etcd binary; ``SkipTest`` with a one-line reason when it is missing."""
    binary = find_etcd()
    if binary is None:
        raise SkipTest("etcd is not installed (apt-get install etcd-server, or make system-deps)")
    return binary


@define
class ClientMaterial:
    """Files a client needs to talk to a TLS etcd: the CA and its own certificate and key."""

    ca: Path
    cert: Path
    key: Path


@define
class EtcdMember:
    """One etcd process: its name, ports, data directory and log."""

    name: str
    client_port: int
    peer_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        """The member's data directory (kept across a restart)."""
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        """Where the member's output goes."""
        return self.directory / "etcd.log"

    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def send(self, sig: int) -> None:
        """Send ``sig`` to the member's pid (nothing when it is not running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the member with ``sig`` and reap it; SIGKILL if it does not end in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_DEADLINE)
        self.process = None

    def log_text(self) -> str:
        """The member's output so far (for failure messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@define
class EtcdCluster:
    """``size`` etcd members under ``base``; :meth:`start` runs them, :meth:`stop` ends them."""

    base: Path
    size: int = 1
    tls: bool = False
    binary: str = field(factory=require_etcd)
    members: list[EtcdMember] = field(init=False, factory=list)
    token: str = field(init=False, factory=lambda: "wzc-test-" + secrets.token_hex(6))
    #: With ``tls``: the CA, certificate and key a client presents.
    client_material: ClientMaterial | None = field(init=False, default=None)
    _server_files: tuple[Path, Path, Path] | None = field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        for index in range(self.size):
            name = f"etcd{index}"
            directory = self.base / name
            directory.mkdir(parents=True, exist_ok=True)
            self.members.append(EtcdMember(name, free_port(), free_port(), directory))
        if self.tls:
            self._write_certificates()

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.tls else "http"

    @property
    def endpoints(self) -> list[str]:
        """Every member's client URL."""
        return [self.endpoint(member) for member in self.members]

    def endpoint(self, member: EtcdMember) -> str:
        """One member's client URL."""
        return f"{self.scheme}://127.0.0.1:{member.client_port}"

    def _write_certificates(self) -> None:
        ca = create_ca("etcd test CA")
        directory = self.base / "certs"
        directory.mkdir(parents=True, exist_ok=True)

        def write(name: str, pair: KeyPair) -> tuple[Path, Path]:
            cert, key = directory / f"{name}.pem", directory / f"{name}.key"
            write_atomically(cert, pair.cert_pem, 0o644)
            write_atomically(key, pair.key_pem, 0o600)
            return cert, key

        ca_path = directory / "ca.pem"
        write_atomically(ca_path, ca.cert_pem, 0o644)
        server_cert, server_key = write(
            "server", issue_node_certificate(ca, "etcd", ["127.0.0.1", "localhost"])
        )
        client_cert, client_key = write("client", issue_node_certificate(ca, "etcd-client"))
        self._server_files = (ca_path, server_cert, server_key)
        self.client_material = ClientMaterial(ca_path, client_cert, client_key)

    def _command(self, member: EtcdMember) -> list[str]:
        peers = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        client_url = self.endpoint(member)
        command = [
            self.binary,
            "--name",
            member.name,
            "--data-dir",
            str(member.data_dir),
            "--listen-client-urls",
            client_url,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{member.peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{member.peer_port}",
            "--initial-cluster",
            peers,
            "--initial-cluster-token",
            self.token,
            "--initial-cluster-state",
            "new",
        ]
        if self._server_files is not None:
            ca, cert, key = self._server_files
            command += [
                "--cert-file",
                str(cert),
                "--key-file",
                str(key),
                "--trusted-ca-file",
                str(ca),
                "--client-cert-auth",
            ]
        return command

    def start_member(self, member: EtcdMember) -> None:
        """Start (or restart, keeping its data) one member without waiting for it."""
        if member.running():
            return
        with member.log_path.open("ab") as log:
            member.process = subprocess.Popen(
                self._command(member),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start(self, timeout: float = START_DEADLINE) -> None:
        """Start every member and wait until each says it is healthy (or raise).

        A port chosen by ``free_port`` may be taken by another process before etcd binds
        it; a member that dies saying so makes the whole new cluster start again on fresh
        ports (its peers were told the old ones), at most :data:`PORT_RETRIES` times.
        """
        for attempt in range(PORT_RETRIES + 1):
            logged = {member.name: len(member.log_text()) for member in self.members}
            for member in self.members:
                self.start_member(member)
            try:
                for member in self.members:
                    self.wait_healthy(member, timeout)
                return
            except RuntimeError:
                lost_port = any(
                    ADDRESS_IN_USE in member.log_text()[logged[member.name] :]
                    for member in self.members
                )
                if attempt == PORT_RETRIES or not lost_port:
                    raise
            self.stop()
            for member in self.members:
                shutil.rmtree(member.data_dir, ignore_errors=True)
                member.client_port, member.peer_port = free_port(), free_port()

    def wait_healthy(self, member: EtcdMember, timeout: float = START_DEADLINE) -> None:
        """Wait until ``member`` answers ``/health`` with true; RuntimeError with its log if
        not, at once when its process has ended."""
        if not wait_for(
            lambda: not member.running() or self.healthy(member), timeout, step=0.1
        ) or not self.healthy(member):
            raise RuntimeError(
                f"etcd member {member.name} not healthy after {timeout} s "
                f"({'running' if member.running() else 'dead'}):\n{member.log_text()[-3000:]}"
            )

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.client_material is None:
            return None
        context = ssl.create_default_context(cafile=str(self.client_material.ca))
        context.load_cert_chain(str(self.client_material.cert), str(self.client_material.key))
        return context

    def healthy(self, member: EtcdMember) -> bool:
        """Whether ``member`` runs and reports itself healthy (a blocking, bounded probe)."""
        if not member.running():
            return False
        try:
            with urllib.request.urlopen(
                self.endpoint(member) + "/health", timeout=2, context=self._ssl_context()
            ) as answer:
                body = json.loads(answer.read(4096))
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return bool(body.get("health") == "true")

    def stop(self) -> None:
        """Stop every member (bounded, by pid)."""
        for member in self.members:
            member.stop()

    def kill(self, member: EtcdMember) -> None:
        """SIGKILL one member."""
        member.stop(signal.SIGKILL)

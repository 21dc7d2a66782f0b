"""Hostile clients against real nodes on 1514, 1515 and 1516.

Oversized declarations, payloads that never complete, silent clients, connection floods,
plain TCP and foreign certificates on the TLS ports, and a worker claiming a name that is
already connected. Each is refused with a clear log line while the node keeps serving the
honest worker and agents.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.protocols import amp

from tests.integration.common import DEADLINE, ClusterTestCase, active_agents
from tests.integration.test_faults_support import in_sync, sync_difference
from tests.integration.test_integrity_real import put
from wazuhcluster import __version__
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.tls import create_ca, issue_node_certificate
from wazuhcluster.wire.commands import PROTOCOL_VERSION
from wazuhcluster.wire.handshake import worker_proof

CONNECTED = "Successfully connected to master"
#: The agents' disconnection time in these clusters: also the idle timeout of 1514.
AGENT_IDLE = 4


def tcp(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A plain TCP connection to 127.0.0.1:``port`` from address ``source`` (any 127/8
    address is local, so a test can be a second client address)."""
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the peer closes (or resets) ``sock`` within ``within`` seconds."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True
    return False


def flood(port: int, count: int) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections as fast as possible: the open ones and how many were reset
    while connecting (a full accept queue or an early refusal)."""
    socks: list[socket.socket] = []
    reset = 0
    for _ in range(count):
        try:
            socks.append(tcp(port))
        except OSError:
            reset += 1
    return socks, reset


def closed_now(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the peer has already closed or reset (no waiting)."""
    closed = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def amp_call(sock: ssl.SSLSocket, command: bytes, arguments: dict[bytes, bytes]) -> list[Any]:
    """Send one AMP command over a blocking socket and return the answer boxes."""
    box = amp.AmpBox(arguments)
    box[b"_command"] = command
    box[b"_ask"] = b"1"
    sock.sendall(box.serialize())
    data = b""
    sock.settimeout(20)
    while not data.endswith(b"\x00\x00"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return list(amp.parseString(data))


def enroll_one(port: int, name: str, source: str = "127.0.0.1") -> str:
    """Enroll ``name`` on ``port`` with a plain ssl client from ``source``; the reply line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(tcp(port, source)) as sock:
        sock.sendall(f"OSSEC A:'{name}'\n".encode())
        data = b""
        sock.settimeout(30)
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


class HostileTestCase(ClusterTestCase):
    """A master and worker1 with short agent idle time; helpers to check they still serve."""

    #: Extra options for both nodes' ``<auth>`` (enrollment) blocks.
    auth_options = ""

    def setUp(self) -> None:
        """Start the pair and wait for the first sync."""
        self.cluster = LocalCluster(
            Path(tempfile.mkdtemp(prefix="wzc-")),
            workers=["worker1"],
            auth_options=self.auth_options,
            extra_config=lambda name, role: (
                f"  <global>\n    <agents_disconnection_time>{AGENT_IDLE}s"
                "</agents_disconnection_time>\n  </global>\n"
            ),
        )
        self.addCleanup(shutil.rmtree, self.cluster.base, True)
        self.cluster.write()
        self.master = self.start(self.cluster, "master", "master")
        self.worker = self.start(self.cluster, "worker1", "worker")
        self.wait_log(self.worker, CONNECTED)
        self.round = 0
        self.assert_serving()

    def assert_serving(self, source: str = "127.0.0.1") -> None:
        """The worker still has its first link, a master change still reaches it, and an
        agent at ``source`` can still enroll through the worker."""
        self.round += 1
        put(self.cluster.home("master").root, f"etc/shared/default/h{self.round}.txt", b"x")
        if not wait_for(lambda: in_sync(self.cluster, ["worker1"]), DEADLINE, 0.2):
            self.fail(f"sync stopped: {sync_difference(self.cluster, 'worker1')}")
        self.assertEqual(self.worker.log_text().count(CONNECTED), 1, "the worker reconnected")
        port = self.cluster.node_ports("worker1")["enrollment"]
        reply = enroll_one(port, f"honest-{self.round}", source)
        self.assertTrue(reply.startswith("OSSEC K:"), reply)
        self.assertTrue(self.master.running() and self.worker.running())

    def mtls(self, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
        """A client context presenting ``cert_pem`` and trusting ``ca_pem``."""
        folder = Path(tempfile.mkdtemp(prefix="wzc-"))
        self.addCleanup(shutil.rmtree, folder, True)
        (folder / "ca.pem").write_bytes(ca_pem)
        (folder / "c.pem").write_bytes(cert_pem)
        (folder / "k.pem").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(str(folder / "ca.pem"))
        context.load_cert_chain(str(folder / "c.pem"), str(folder / "k.pem"))
        return context


class ClusterPortTests(HostileTestCase):
    """1516: floods, silence, plain TCP, foreign certificates, a stolen name."""

    def test_connection_flood(self) -> None:
        """80 bare connections from one address: past the 64 pending ones allowed per
        address the oldest are closed at once with a warning, the rest when they fail to say
        Hello in time (the 10 s TLS handshake deadline is the backstop); they never take the
        worker's admitted slots."""
        socks, reset = flood(self.cluster.port, 80)
        self.wait_log(self.master, "Too many connections from 127.0.0.1 before TLS handshake")
        closed = sum(closed_by_peer(sock, 20) for sock in socks)
        self.assertEqual(closed + reset, 80)
        self.wait_log(self.master, "no successful Hello within")
        for sock in socks:
            sock.close()
        self.assert_serving()

    def test_admitted_connections_capped(self) -> None:
        """Ten more TLS connections with worker1's certificate beside the real worker1: the
        eleventh admitted connection from the address is refused at once (Wazuh's 10); the
        others are closed when they fail to say Hello in time."""
        home = self.cluster.home("worker1")
        context = self.mtls(
            self.cluster.ca.cert_pem,
            (home.certs / "node.pem").read_bytes(),
            (home.certs / "node.key").read_bytes(),
        )
        socks = []
        for _ in range(10):
            try:
                socks.append(context.wrap_socket(tcp(self.cluster.port)))
            except (ssl.SSLError, OSError):
                pass
        self.wait_log(self.master, "Too many connections from 127.0.0.1 (11), rejecting.")
        self.assertEqual(sum(closed_by_peer(sock, 20) for sock in socks), len(socks))
        self.wait_log(self.master, "no successful Hello within")
        for sock in socks:
            sock.close()
        self.assert_serving()

    def test_plain_tcp_and_garbage(self) -> None:
        """Plain text and random bytes on the TLS port end the connection; the master keeps
        serving."""
        for payload in (b"GET / HTTP/1.0\r\n\r\n", os.urandom(5000), struct.pack("!I", 2**31)):
            sock = tcp(self.cluster.port)
            sock.sendall(payload)
            self.assertTrue(closed_by_peer(sock, 10))
            sock.close()
        self.assert_serving()

    def test_foreign_ca(self) -> None:
        """A certificate from another CA fails the TLS handshake; one from the cluster CA
        without the key proof is refused at Hello time (never listed)."""
        other = create_ca("intruder CA")
        pair = issue_node_certificate(other, "worker1", ["127.0.0.1"])
        context = self.mtls(self.cluster.ca.cert_pem, pair.cert_pem, pair.key_pem)
        sock = tcp(self.cluster.port)
        try:
            with context.wrap_socket(sock) as tls:
                tls.sendall(b"\x00" * 16)
                self.assertTrue(closed_by_peer(tls, 10))
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
        self.assert_serving()

    def test_silent_tls_client(self) -> None:
        """A client that completes TLS with a valid certificate but never says Hello is
        closed at the pre-authentication deadline."""
        home = self.cluster.home("worker1")
        context = self.mtls(
            self.cluster.ca.cert_pem,
            (home.certs / "node.pem").read_bytes(),
            (home.certs / "node.key").read_bytes(),
        )
        with context.wrap_socket(tcp(self.cluster.port)) as tls:
            self.assertTrue(closed_by_peer(tls, 20))
        self.wait_log(self.master, "no successful Hello within")
        self.assert_serving()

    def test_worker_claiming_a_connected_name(self) -> None:
        """A copy of worker1 (same name, valid certificate and key) is refused while worker1
        is connected (3028); a worker whose certificate names another node is refused (3061);
        the real worker1 keeps its link."""
        impostor = self.cluster.write_node("impostor", "worker")
        for name in ("node.pem", "node.key"):
            shutil.copy(self.cluster.home("worker1").certs / name, impostor.certs / name)
        text = impostor.config_file.read_text().replace(
            "<node_name>impostor</node_name>", "<node_name>worker1</node_name>"
        )
        write_atomically(impostor.config_file, text.encode(), 0o640)
        copy = NodeProcess(impostor, "worker")
        copy.start()
        self.addCleanup(copy.kill)
        self.wait_log(self.master, "Worker node ID already exists: worker1")
        copy.kill()

        # Our worker refuses to start with a certificate for another name, so the thief is
        # a raw AMP client presenting worker2's valid certificate and claiming worker1.
        pair = issue_node_certificate(self.cluster.ca, "worker2", ["127.0.0.1"])
        context = self.mtls(self.cluster.ca.cert_pem, pair.cert_pem, pair.key_pem)
        with context.wrap_socket(tcp(self.cluster.port)) as tls:
            [challenge] = amp_call(tls, b"Challenge", {})
            nonce = os.urandom(32)
            proof = worker_proof(self.cluster.key, challenge[b"nonce"], nonce, "worker1", "wazuh")
            [answer] = amp_call(
                tls,
                b"Hello",
                {
                    b"node_name": b"worker1",
                    b"cluster_name": b"wazuh",
                    b"node_type": b"worker",
                    b"version": __version__.encode(),
                    b"protocol_version": str(PROTOCOL_VERSION).encode(),
                    b"nonce": nonce,
                    b"proof": proof,
                },
            )
        self.assertIn(b"3061", answer.get(b"_error_description", b""))
        self.wait_log(self.master, "does not match its certificate")
        self.assert_serving()


class EnrollmentPortTests(HostileTestCase):
    """1515: oversized lines, partial lines, plain TCP, floods."""

    def test_oversized_and_partial_requests(self) -> None:
        """A request over the size cap gets an error reply; a partial request is dropped at
        the request timeout; plain TCP is closed; the port keeps serving."""
        port = self.cluster.node_ports("worker1")["enrollment"]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(tcp(port)) as tls:
            try:
                tls.sendall(b"OSSEC A:'" + b"x" * 200_000)
            except (ssl.SSLError, OSError):
                pass
            tls.settimeout(10)
            try:
                reply = tls.recv(4096)
            except (ssl.SSLError, OSError):
                reply = b""
        self.assertIn(b"ERROR", reply)
        partial = context.wrap_socket(tcp(port))
        partial.sendall(b"OSSEC A:'slow")
        self.assertTrue(closed_by_peer(partial, 20))
        partial.close()
        plain = tcp(port)
        plain.sendall(b"OSSEC A:'plain'\n")
        self.assertTrue(closed_by_peer(plain, 10))
        plain.close()
        self.assert_serving()


class EnrollmentFloodTests(HostileTestCase):
    """1515 under a connection flood, with a pending cap small enough to reach quickly."""

    #: 64 pending connections allowed per address, and a handshake timeout long enough that
    #: a slow flood (with a full accept queue the kernel makes clients retry) is not cut by it.
    auth_options = (
        "<max_pending_per_ip>64</max_pending_per_ip><handshake_timeout>300s</handshake_timeout>"
    )

    def test_connection_flood(self) -> None:
        """200 idle connections from one address: past the 64 pending ones allowed per
        address the oldest are closed at once with a warning; an agent at another address
        enrolls during the flood."""
        port = self.cluster.node_ports("worker1")["enrollment"]
        socks, reset = flood(port, 200)
        self.wait_log(self.worker, "Too many connections from 127.0.0.1")
        enough = 200 - 64
        if not wait_for(lambda: closed_now(socks) + reset >= enough, DEADLINE, 0.2):
            self.fail(f"only {closed_now(socks) + reset} of 200 closed, expected {enough}")
        self.assert_serving(source="127.0.0.2")
        for sock in socks:
            sock.close()


class AgentPortTests(HostileTestCase):
    """1514: oversized frames, never-completed frames, silent clients, floods."""

    def agent_sim(self, count: int) -> subprocess.Popen[str]:
        """Honest simulated agents on worker1 with a 1 s keep-alive."""
        return self.simulate_on(
            self.cluster, "worker1", "--agents", str(count), "--name-prefix", "sim-"
        )

    def active_sims(self) -> int:
        """How many simulated agents the master's registry shows active."""
        return active_agents(self.cluster, "sim-%")

    def test_oversized_silent_and_flood(self) -> None:
        """A frame header over the cap closes that connection with 'Too big message size'; a
        frame that never completes and 200 silent connections are closed at the idle
        timeout; honest agents stay connected throughout."""
        self.agent_sim(5)
        self.assertTrue(wait_for(lambda: self.active_sims() == 5, DEADLINE, 0.5), "agents idle")
        port = self.cluster.node_ports("worker1")["agents"]
        big = tcp(port)
        big.sendall(struct.pack("<I", 10_000_000) + b"x" * 64)
        self.assertTrue(closed_by_peer(big, 10))
        big.close()
        self.wait_log(self.worker, "Too big message size from 127.0.0.1")
        partial = tcp(port)
        partial.sendall(struct.pack("<I", 1000) + b"x" * 10)
        silent, reset = flood(port, 200)
        self.assertTrue(closed_by_peer(partial, AGENT_IDLE + 10))
        self.assertEqual(sum(closed_by_peer(s, AGENT_IDLE + 10) for s in silent) + reset, 200)
        self.wait_log(self.worker, "nothing received for")
        for sock in [partial, *silent]:
            sock.close()
        self.assertEqual(self.active_sims(), 5, "honest agents were disturbed")
        self.assert_serving()

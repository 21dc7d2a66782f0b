"""Listener limits against real nodes: bare connects, slow clients, floods before the credential.

Each test starts real nodes (twistd subprocesses) with short handshake deadlines, attacks one
listener the way issue 17 saw it attacked (bounded counts) and checks both that the hostile
connections go and that an honest agent, worker or API client still gets in meanwhile.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.common import (
    DEADLINE,
    ClusterTestCase,
    active_agents,
    attack_rounds,
    control,
    node_names,
)
from tests.integration.test_failover_real import (
    candidates_cluster,
    failover_block,
    https,
    started_etcd,
)
from tests.integration.test_hostile_real import closed_by_peer, closed_now, enroll_one, tcp
from tests.test_api_fixtures import cheap_users
from wazuhcluster.testing.devcluster import LocalCluster, NodeProcess, wait_for

CONNECTED = "Successfully connected to master"
#: The handshake deadline set on the attacked listener in these tests.
DEADLINE_S = 3
#: Slack for a loaded machine on top of a deadline.
SLACK = 10
USER, PASSWORD = "ops", "integration-password"
#: Seconds a restarted worker may take to rejoin (a twistd start is 2-4 s on the shared VM).
REJOIN = 15
#: Each test repeats its attack this many times on the same nodes (1 in ``make test``;
#: ``WAZUHCLUSTER_ATTACK_ROUNDS`` in ``make soak``).
ROUNDS = attack_rounds()


def add_options(node: Path, section: str, options: str) -> None:
    """Put ``options`` inside the first ``<section>`` block of a node's config file."""
    text = node.read_text()
    text = text.replace(f"</{section}>", f"{options}</{section}>", 1)
    node.write_text(text)


def bare_connects(port: int, sources: list[str], each: int) -> list[socket.socket]:
    """``each`` plain TCP connections from every address of ``sources`` (never a TLS byte)."""
    socks = []
    for source in sources:
        for _ in range(each):
            try:
                socks.append(tcp(port, source))
            except OSError:
                pass
    return socks


def all_closed(socks: list[socket.socket], within: float) -> bool:
    """Whether the peer has closed every socket of ``socks`` within ``within`` seconds."""
    return wait_for(lambda: closed_now(socks) == len(socks), within, 0.2)


def unix_connect(path: Path, within: float = 10.0) -> socket.socket:
    """A connection to the UNIX socket at ``path`` that never sends a byte; a full accept
    backlog (EAGAIN: a UNIX connect does not wait for room) is tried again for ``within``
    seconds."""
    deadline = time.monotonic() + within
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        except OSError:
            sock.close()
            raise
        return sock


class Flooder(threading.Thread):
    """Keeps ``size`` bare TCP connections open from ``source`` to ``port`` (or those
    ``connect`` opens), opening a new one for each the server closes (at most ``burst``
    every 50 ms), until stopped or ``limit`` connects in all."""

    def __init__(
        self,
        port: int,
        source: str,
        size: int,
        burst: int = 20,
        limit: int = 30_000,
        connect: Callable[[], socket.socket] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.source, self.size, self.limit = port, source, size, limit
        self.burst = burst
        self.connect = connect or (lambda: tcp(self.port, self.source))
        self.stop = threading.Event()
        self.opened = 0
        self.closed = 0

    def run(self) -> None:
        """Refill the pool until stopped."""
        pool: list[socket.socket] = []
        while not self.stop.is_set() and self.opened < self.limit:
            alive = []
            for sock in pool:
                if closed_now([sock]):
                    sock.close()
                    self.closed += 1
                else:
                    alive.append(sock)
            pool = alive
            for _ in range(min(self.size - len(pool), self.burst)):
                try:
                    pool.append(self.connect())
                except OSError:
                    pass
                self.opened += 1
            time.sleep(0.05)
        for sock in pool:
            sock.close()


def trickler_closed(port: int) -> bool:
    """Send the header of a 1000-byte frame to ``port``, then one byte every half second:
    whether the node closed the connection within the deadline and its slack."""
    slow = tcp(port)
    slow.sendall(struct.pack("<I", 1000))
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < DEADLINE_S + SLACK:
        try:
            slow.sendall(b"x")
        except OSError:
            closed = True
            break
        if closed_by_peer(slow, 0.5):
            closed = True
            break
    slow.close()
    return closed


class ListenerTestCase(ClusterTestCase):
    """A master and worker1 whose config the test adjusts before they start."""

    def build(self, with_api: bool = False, auth: str = "") -> LocalCluster:
        """Lay out the pair (not started)."""
        cluster = LocalCluster(
            Path(tempfile.mkdtemp(prefix="wzc-")),
            workers=["worker1"],
            with_api=with_api,
            auth_options=auth,
        )
        self.addCleanup(shutil.rmtree, cluster.base, True)
        cluster.write()
        return cluster

    def up(self, cluster: LocalCluster) -> tuple[NodeProcess, NodeProcess]:
        """Start master and worker1 and wait for the link."""
        master = self.start(cluster, "master", "master")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, CONNECTED)
        return master, worker


class EnrollmentPortTests(ListenerTestCase):
    """1515: bare connects that never start TLS."""

    def test_bare_connects_dropped_agent_served(self) -> None:
        """200 bare TCP connects from 4 addresses are all closed by the handshake deadline
        (they were kept forever), and an agent from a fifth address enrolls during the flood
        (each round)."""
        cluster = self.build(auth=f"<handshake_timeout>{DEADLINE_S}s</handshake_timeout>")
        _, worker = self.up(cluster)
        port = cluster.node_ports("worker1")["enrollment"]
        sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        for round_ in range(1, ROUNDS + 1):
            socks = bare_connects(port, sources, 50)
            self.addCleanup(lambda socks=socks: [sock.close() for sock in socks])
            started = time.monotonic()
            reply = enroll_one(port, f"honest-during-flood-{round_}")
            self.assertTrue(reply.startswith("OSSEC K:"), (round_, reply))
            self.assertTrue(
                all_closed(socks, DEADLINE_S + SLACK),
                f"round {round_}: {len(socks) - closed_now(socks)} still open",
            )
            self.assertLess(time.monotonic() - started, DEADLINE_S + SLACK, f"round {round_}")
            self.wait_log(worker, "no TLS handshake within 3 s")


class ClusterPortTests(ListenerTestCase):
    """1516: plain TCP from a worker's own address while it reconnects."""

    def test_worker_rejoins_through_a_flood_from_its_address(self) -> None:
        """While 100 bare TCP connections from 127.0.0.1 are kept open (each one the master
        closes is opened again), a restarted worker at 127.0.0.1 still joins: pending
        connections do not use its 10 admitted slots and the oldest make room (each round:
        a new flood, a new kill and restart)."""
        cluster = self.build()
        master, worker = self.up(cluster)
        for round_ in range(1, ROUNDS + 1):
            flooder = Flooder(cluster.port, "127.0.0.1", 100)
            flooder.start()
            self.addCleanup(flooder.stop.set)
            self.assertTrue(wait_for(lambda f=flooder: f.opened >= 100, DEADLINE))
            worker.kill()
            started = time.monotonic()
            worker.start()
            joined = wait_for(
                lambda n=round_ + 1: worker.log_text().count(CONNECTED) >= n, DEADLINE
            )
            took = time.monotonic() - started
            flooder.stop.set()
            flooder.join(DEADLINE)
            self.assertTrue(
                joined, f"round {round_}: worker kept out:\n{worker.log_text()[-2000:]}"
            )
            self.assertLess(took, REJOIN, f"round {round_}: the worker took {took:.1f} s to rejoin")
            self.wait_log(master, "before TLS handshake with a client certificate")


class AgentPortTests(ListenerTestCase):
    """1514: silent and slow strangers."""

    def test_slow_and_silent_strangers(self) -> None:
        """A stranger sending one byte every half second of a frame that never completes is
        closed at the handshake deadline (it was kept as long as it trickled); of 200 silent
        connects from one address those over the pending cap (50) are closed at once and the
        rest at the deadline; 5 honest agents stay connected throughout (every round)."""
        cluster = self.build()
        add_options(
            cluster.home("worker1").config_file,
            "remote",
            f"<handshake_timeout>{DEADLINE_S}s</handshake_timeout>"
            "<max_pending_per_ip>50</max_pending_per_ip>",
        )
        _, worker = self.up(cluster)
        self.simulate_on(cluster, "worker1", "--agents", "5", "--name-prefix", "sim-")
        self.assertTrue(
            wait_for(lambda: active_agents(cluster, "sim-%") == 5, DEADLINE, 0.5), "agents idle"
        )
        port = cluster.node_ports("worker1")["agents"]
        for round_ in range(1, ROUNDS + 1):
            self.assertTrue(trickler_closed(port), f"round {round_}: a trickling stranger was kept")
            silent = bare_connects(port, ["127.0.0.1"], 200)
            self.addCleanup(lambda silent=silent: [sock.close() for sock in silent])
            # The pending cap closes the excess as they arrive: give the closes a moment.
            time.sleep(1)
            self.assertGreaterEqual(closed_now(silent), 150, f"round {round_}")
            self.assertTrue(all_closed(silent, DEADLINE_S + SLACK), f"round {round_}")
            self.wait_log(worker, "before valid agent message")
            self.assertEqual(
                active_agents(cluster, "sim-%"), 5, f"round {round_}: honest agents disturbed"
            )


class ApiPortTests(ListenerTestCase):
    """The REST API: slow clients, a huge line, an unauthenticated flood."""

    def setUp(self) -> None:
        """A master with the API (deadline 3 s) and one user."""
        self.cluster = self.build(with_api=True)
        master_home = self.cluster.home("master")
        add_options(
            master_home.config_file,
            "api",
            f"<handshake_timeout>{DEADLINE_S}s</handshake_timeout>",
        )
        cheap_users(master_home.etc / "api" / "users.json", {USER: PASSWORD})
        self.master, _ = self.up(self.cluster)
        self.port = self.cluster.node_ports("master")["api"]
        self.assertTrue(wait_for(self.listening, DEADLINE), "the API never listened")

    def listening(self) -> bool:
        """Whether the API port accepts connections."""
        try:
            tcp(self.port).close()
        except OSError:
            return False
        return True

    def tls(self) -> ssl.SSLSocket:
        """A TLS connection to the API (certificate not checked: it is self-signed)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context.wrap_socket(tcp(self.port))

    def request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request on a new connection: status and body."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=context)
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def test_slow_client_dropped(self) -> None:
        """A client sending its request one byte every half second is closed at the deadline
        (twisted.web's idle timer restarted at every byte), every round."""
        for round_ in range(1, ROUNDS + 1):
            self.assertTrue(self.slow_client_closed(), f"round {round_}: a slow client was kept")
            self.wait_log(self.master, "no authenticated request within 3 s")

    def slow_client_closed(self) -> bool:
        """Send a request one byte every half second: whether the API closed the connection
        within the deadline and its slack."""
        sock = self.tls()
        started = time.monotonic()
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 200:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            if closed_by_peer(sock, 0.5):
                closed = True
                break
            if time.monotonic() - started > DEADLINE_S + SLACK:
                break
        sock.close()
        return closed

    def test_huge_line_answered(self) -> None:
        """10 MB without a newline get a 431 answer (the connection was just dropped), every
        round."""
        for round_ in range(1, ROUNDS + 1):
            answer = self.huge_line()
            self.assertTrue(answer.startswith(b"HTTP/1.1 431 "), (round_, answer[:200]))

    def huge_line(self) -> bytes:
        """Send 10 MB without a newline; the first bytes of the answer."""
        sock = self.tls()
        try:
            sock.sendall(b"GET /" + b"a" * (10 * 1024 * 1024))
        except OSError:
            pass
        answer = b""
        sock.settimeout(10)
        try:
            while len(answer) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
        sock.close()
        return answer

    def test_unauthenticated_flood_leaves_token_working(self) -> None:
        """After 320 requests without a token (over the 300 a minute), a request with a valid
        token is still answered (it got 429: the budget was shared); each round floods again."""
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        status, body = self.request(
            "POST", "/security/user/authenticate", {"Authorization": f"Basic {basic}"}
        )
        self.assertEqual(status, 200, body)
        token = json.loads(body)["data"]["token"]
        for round_ in range(1, ROUNDS + 1):
            statuses = [self.request("GET", "/", {})[0] for _ in range(320)]
            self.assertIn(429, statuses, f"round {round_}")
            status, body = self.request("GET", "/agents", {"Authorization": f"Bearer {token}"})
            self.assertEqual(status, 200, (round_, body))


class StandbyApiPortTests(ClusterTestCase):
    """The API port of a failover candidate that is not the master (it answers 503 naming
    the master): bare connects before any request."""

    def test_bare_connects_dropped_client_answered(self) -> None:
        """100 bare TCP connects from 127.0.0.1 (over the 64 admitted per address) are all
        closed by the deadline, and a client from that address gets its 503 naming the
        master meanwhile (the standby admitted bare TCP: 64 held the slots, the rest and the
        client were refused, and none was closed before the 60 s idle timeout)."""
        etcd = started_etcd(self)
        block = failover_block(etcd.endpoints, ["cand-a", "cand-b"])

        def api(cluster: LocalCluster, name: str) -> str:
            if not name.startswith("cand-"):
                return ""
            return (
                f"  <api>\n    <bind_addr>127.0.0.1</bind_addr>\n"
                f"    <port>{cluster.node_ports(name)['api']}</port>\n"
                f"    <handshake_timeout>{DEADLINE_S}s</handshake_timeout>\n  </api>\n"
            )

        cluster = candidates_cluster(self, lambda name: block, extra_config=api)
        first = self.start(cluster, "cand-a", "master")
        self.wait_log(first, "Master for term")
        standby = self.start(cluster, "cand-b", "master")
        self.wait_log(standby, "Not the master: the API port")
        port = cluster.node_ports("cand-b")["api"]
        socks = bare_connects(port, ["127.0.0.1"], 100)
        self.addCleanup(lambda: [sock.close() for sock in socks])
        self.assertEqual(len(socks), 100)
        status, body = https(port, "GET", "/agents")
        self.assertEqual(status, 503, body)
        self.assertEqual(body.get("master"), "cand-a", body)
        self.assertTrue(
            all_closed(socks, DEADLINE_S + SLACK), f"{len(socks) - closed_now(socks)} still open"
        )
        self.wait_log(standby, f"no complete request within {DEADLINE_S} s")


class ControlSocketTests(ListenerTestCase):
    """The control socket (a UNIX socket): a flood of clients that never send a command."""

    def test_silent_flood_keeps_control_working(self) -> None:
        """200 connections that never send a byte, each one the node closes opened again,
        do not keep ``-l`` or ``-i`` out: the newest pending client gets in, the oldest past
        the 128 pending per uid are closed at once and the rest at the deadline, and the
        log names the uid they came from. A last 200 are all closed by the deadline.
        Before: the flood filled the accept queue (Twisted's 50) and the tool said "Cluster
        is not running." at once (2 runs of 3), and every client counted as ``unknown``."""
        cluster = self.build()
        add_options(
            cluster.home("master").config_file,
            "cluster",
            f"<control_socket><handshake_timeout>{DEADLINE_S}s</handshake_timeout>"
            "</control_socket>",
        )
        master, _ = self.up(cluster)
        home = cluster.home("master")
        flooder = Flooder(0, "", 200, burst=200, connect=lambda: unix_connect(home.control_socket))
        flooder.start()
        self.addCleanup(flooder.stop.set)
        self.assertTrue(wait_for(lambda: flooder.opened >= 200, DEADLINE))
        self.assertEqual(node_names(home.root), ["master", "worker1"])
        health = control(home.root, "-i")
        self.assertEqual(health.returncode, 0, health.stderr)
        self.assertIn("Cluster verdict: ok", health.stdout)
        self.assertTrue(wait_for(lambda: flooder.closed >= 200, DEADLINE))
        flooder.stop.set()
        flooder.join(DEADLINE)
        socks = [unix_connect(home.control_socket) for _ in range(200)]
        self.addCleanup(lambda: [sock.close() for sock in socks])
        self.assertTrue(
            all_closed(socks, DEADLINE_S + SLACK), f"{len(socks) - closed_now(socks)} still open"
        )
        self.wait_log(master, "Too many connections from uid ")
        self.wait_log(master, f"no command within {DEADLINE_S} s")
        self.assertIn(f"Closing connection from uid {os.getuid()}: no command", master.log_text())

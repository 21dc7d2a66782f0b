"""Shared test helpers: node configs in temporary homes and an in-memory cluster."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.config.cluster import NodeConfig, load_config
from wazuhcluster.config.home import Home
from wazuhcluster.master.node import MasterNode
from wazuhcluster.testing.devcluster import cluster_config
from wazuhcluster.util.tls import create_ca, issue_node_certificate
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.worker.link import MasterLink

KEY = "0123456789abcdef0123456789abcdef"
PORT = 1516
TIMINGS = {
    "keep_alive": "60s",
    "reaper_interval": "60s",
    "max_silence": "120s",
    "reconnect": "10s",
    "reconnect_max": "60s",
    "request_timeout": "20s",
}


def short_temp_dir(case: SynchronousTestCase) -> Path:
    """A temporary directory with a short path (UNIX socket paths are limited to 107 bytes),
    removed after the test."""
    base = Path(tempfile.mkdtemp(prefix="wzc-"))
    case.addCleanup(shutil.rmtree, base, True)
    return base


def write_config(
    base: str, name: str, role: str, key: str = KEY, cluster_name: str = "wazuh", extra: str = ""
) -> NodeConfig:
    """Create a home under ``base`` for node ``name`` and load its configuration."""
    home = Home(Path(base) / name)
    home.make_dirs()
    text = cluster_config(
        name, role, key, PORT, cluster_name=cluster_name, timings=TIMINGS, extra=extra
    )
    home.config_file.write_text(text)
    return load_config(home.config_file, home)


class InMemoryCluster:
    """A master and workers on a MemoryReactorClock, connected through iosim pumps.

    Certificates are replaced by the ``certificate`` names given to :meth:`add_worker`.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.reactor = MemoryReactorClock()
        self.master = MasterNode(write_config(base, "master", "master"), self.reactor)
        self.master_home = self.master.config.home
        self.reactor.listenTCP(PORT, self.master.build_factory(self._peer_names))
        self.completer = ConnectionCompleter(self.reactor)
        self.pumps: list[IOPump] = []
        self._claims: list[set[str] | None] = []

    def _peer_names(self, transport: Any) -> set[str] | None:
        return self._claims.pop(0) if self._claims else None

    def worker_home(self, name: str) -> Home:
        """The home of worker ``name``."""
        return Home(Path(self.base) / name)

    def add_worker(
        self,
        name: str,
        key: str = KEY,
        cluster_name: str = "wazuh",
        certificate: set[str] | None = None,
        features: Callable[[MasterLink, Home], list[LinkFeature]] | None = None,
    ) -> MasterLink:
        """Start a worker link (not yet connected); ``certificate`` defaults to {name}.

        ``features(link, home)`` builds the worker's features before the link starts.
        """
        config = write_config(self.base, name, "worker", key=key, cluster_name=cluster_name)
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT)
        link = MasterLink(config.cluster, endpoint, self.reactor, jitter=lambda: 0)
        for feature in features(link, config.home) if features else []:
            link.features.add(feature)
        link.certificate = {name} if certificate is None else certificate  # type: ignore[attr-defined]
        link.startService()
        return link

    def connect(self, link: MasterLink) -> IOPump:
        """Complete the link's pending connection attempt and run the handshake."""
        self._claims.append(link.certificate)  # type: ignore[attr-defined]
        pump = self.completer.succeedOnce()
        assert pump is not None, "no pending connection attempt"
        self.pumps.append(pump)
        pump.flush()
        return pump

    def flush(self) -> None:
        """Move every pending byte on every connection."""
        for pump in self.pumps:
            pump.flush()

    def settle(self, rounds: int = 30) -> None:
        """Move bytes and fire due calls until nothing is left to do (bounded)."""
        for _ in range(rounds):
            self.flush()
            self.reactor.advance(0)


class HeldThreads:
    """A ``run_in_thread`` that holds each job until the test releases it.

    While a job is held the "reactor side" goes on, so a test can show that work handed to
    the runner does not block it; :meth:`release` then runs the held jobs, in order.
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []
        self.calls: list[Callable[..., Any]] = []

    def __call__(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Record and hold one job."""
        done: Deferred[Any] = Deferred()
        self.jobs.append((function, args, done))
        self.calls.append(function)
        return done

    def release(self) -> None:
        """Run every held job (and those they start) and fire its Deferred."""
        while self.jobs:
            function, args, done = self.jobs.pop(0)
            try:
                result = function(*args)
            except Exception as error:
                done.errback(error)
            else:
                done.callback(result)


def give_certificates(config: NodeConfig) -> None:
    """Write a CA and the node's certificate where ``config`` expects them."""
    tls = config.cluster.tls
    ca = create_ca()
    node = issue_node_certificate(ca, config.cluster.node_name, ["127.0.0.1"])
    Path(tls.ca_cert).parent.mkdir(parents=True, exist_ok=True)
    Path(tls.ca_cert).write_bytes(ca.cert_pem)
    Path(tls.node_cert).write_bytes(node.cert_pem)
    Path(tls.node_key).write_bytes(node.key_pem)

"""Cluster certificates: the CA, node certificates, the CLI, and a real TLS handshake in memory."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.config.home import Home
from wazuhcluster.master.node import tls_peer_names
from wazuhcluster.scripts.certs import run
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.tls import (
    TlsError,
    certificate_names,
    client_options,
    create_ca,
    issue_node_certificate,
    load_material,
    server_options,
)


def write_pair(
    directory: Path, ca_pem: bytes, cert_pem: bytes, key_pem: bytes
) -> tuple[Path, Path, Path]:
    """Write a CA certificate and a node pair; return their paths."""
    paths = (directory / "ca.pem", directory / "node.pem", directory / "node.key")
    for path, data in zip(paths, (ca_pem, cert_pem, key_pem), strict=True):
        write_atomically(path, data, 0o600)
    return paths


class CertificateTests(SynchronousTestCase):
    """Creating and checking certificate material."""

    def test_node_certificate_names(self) -> None:
        """A node certificate carries the node name (CN and DNS) and its addresses."""
        ca = create_ca()
        pair = issue_node_certificate(ca, "worker1", ["10.0.0.2", "w1.example"])
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        der = cert.public_bytes(serialization.Encoding.DER)
        self.assertEqual(certificate_names(der), {"worker1", "w1.example"})
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual([str(ip) for ip in san.get_values_for_type(x509.IPAddress)], ["10.0.0.2"])
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))

    def test_material_from_other_ca_refused(self) -> None:
        """A node certificate not issued by the configured CA is refused before starting."""
        ours, theirs = create_ca(), create_ca()
        pair = issue_node_certificate(theirs, "worker1")
        paths = write_pair(Path(self.mktemp()), ours.cert_pem, pair.cert_pem, pair.key_pem)
        with self.assertRaises(TlsError) as caught:
            load_material(*paths)
        self.assertIn("not issued by the cluster CA", str(caught.exception))

    def test_missing_material(self) -> None:
        """A missing file is named in the error."""
        base = Path(self.mktemp())
        with self.assertRaises(TlsError) as caught:
            load_material(base / "ca.pem", base / "node.pem", base / "node.key")
        self.assertIn("ca.pem", str(caught.exception))

    def test_cli_creates_ca_and_nodes(self) -> None:
        """wazuh-cluster-certs writes the CA and node keys 0600 and refuses to clobber a CA."""
        home = Home(Path(self.mktemp()))
        self.assertEqual(run(["--home", str(home.root), "ca"]), 0)
        self.assertEqual(stat.S_IMODE((home.certs / "ca.key").stat().st_mode), 0o600)
        self.assertEqual(run(["--home", str(home.root), "ca"]), 1)
        out = Path(self.mktemp())
        self.assertEqual(
            run(
                [
                    "--home",
                    str(home.root),
                    "node",
                    "worker1",
                    "--address",
                    "10.0.0.2",
                    "--out",
                    str(out),
                ]
            ),
            0,
        )
        self.assertEqual(stat.S_IMODE((out / "node.key").stat().st_mode), 0o600)
        authority, own = load_material(out / "ca.pem", out / "node.pem", out / "node.key")
        self.assertEqual(own.getSubject().commonName, b"worker1")


class MutualTlsTests(SynchronousTestCase):
    """The master's and worker's TLS options against each other, in memory."""

    def handshake(self, worker_ca_issuer: bool = True) -> tuple[Protocol, Protocol]:
        """Run a TLS handshake between master and worker options; return both protocols."""
        ca = create_ca()
        base = Path(self.mktemp())
        master_pair = issue_node_certificate(ca, "master", ["127.0.0.1"])
        worker_issuer = ca if worker_ca_issuer else create_ca()
        worker_pair = issue_node_certificate(worker_issuer, "worker1")
        (base / "m").mkdir(parents=True)
        (base / "w").mkdir()
        m_paths = write_pair(base / "m", ca.cert_pem, master_pair.cert_pem, master_pair.key_pem)
        authority, m_own = load_material(*m_paths)
        w_paths = write_pair(
            base / "w", worker_issuer.cert_pem, worker_pair.cert_pem, worker_pair.key_pem
        )
        _, w_own = load_material(*w_paths)
        clock = MemoryReactorClock()

        server_factory = TLSMemoryBIOFactory(
            server_options(authority, m_own), False, Factory.forProtocol(Protocol)
        )
        client_factory = TLSMemoryBIOFactory(
            client_options(authority, w_own, "127.0.0.1"), True, Factory.forProtocol(Protocol)
        )
        client, server, pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            clock=clock,
        )
        pump.flush()
        return client, server

    def test_worker_certificate_names_seen_by_master(self) -> None:
        """After a good handshake the master reads the worker's node name from its certificate."""
        client, server = self.handshake()
        self.assertFalse(server.transport.disconnecting)
        self.assertEqual(tls_peer_names(server), {"worker1"})

    def test_certificate_from_other_ca_refused(self) -> None:
        """A worker whose certificate another CA signed cannot complete the handshake."""
        client, server = self.handshake(worker_ca_issuer=False)
        self.assertTrue(server.transport.disconnecting)
        self.assertTrue(client.transport.disconnecting)

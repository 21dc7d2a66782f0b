"""The API's TLS settings, checked with a real TLS client (Python's ``ssl``) on a real socket.

The API listener's options (:func:`wazuhcluster.api.certs.server_context`) are served on
127.0.0.1 on an ephemeral port; a blocking ``ssl`` client in a thread offers one kind of
cipher suite at a time. The same client first reaches a listener with Twisted's default
options, so a refusal is the API's doing, not the client's.
"""

from __future__ import annotations

import socket
import ssl as stdlib_ssl
from pathlib import Path

from twisted.internet import reactor, ssl, threads
from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from wazuhcluster.api.certs import ensure_certificate, server_context

#: CBC suites with SHA-1 MACs, for either key type of the certificate.
CBC_SHA1 = "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA"
#: AEAD suites of TLS 1.2, for either key type.
AEAD = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"
DEADLINE = 30.0


def handshake(port: int, ciphers: str | None, version: stdlib_ssl.TLSVersion) -> tuple[str, str]:
    """Connect to 127.0.0.1:``port`` offering only ``ciphers`` at most ``version``; return
    the negotiated (protocol, suite), or raise :class:`ssl.SSLError` if refused."""
    context = stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = stdlib_ssl.CERT_NONE
    context.maximum_version = version
    if ciphers is not None:
        # Security level 0 lets the client offer what the server must refuse.
        context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw,
        context.wrap_socket(raw) as tls,
    ):
        suite = tls.cipher()
        return str(tls.version()), suite[0] if suite else ""


class ApiTlsTests(TestCase):
    """TLS 1.2 at least and AEAD suites only on the API listener."""

    timeout = 60

    def listen(self, options: ssl.CertificateOptions) -> int:
        """Serve an empty site with ``options`` on an ephemeral port; return the port."""
        site = server.Site(resource.Resource())
        port: IListeningPort = reactor.listenSSL(0, site, options, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def pair(self) -> tuple[Path, Path]:
        """A self-signed certificate and key for the listener."""
        folder = Path(self.mktemp())
        cert, key = folder / "server.crt", folder / "server.key"
        ensure_certificate(cert, key, "localhost")
        return cert, key

    async def test_cbc_sha1_refused_aead_accepted(self) -> None:
        """A TLS 1.2 client offering only CBC-SHA1 suites is refused; AEAD and TLS 1.3 pass."""
        cert, key = self.pair()
        loose = ssl.PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes()).options()
        loose_port = self.listen(loose)
        tls12 = stdlib_ssl.TLSVersion.TLSv1_2
        protocol, _ = await threads.deferToThread(handshake, loose_port, CBC_SHA1, tls12)
        self.assertEqual(protocol, "TLSv1.2", "the client could not offer CBC-SHA1 at all")

        port = self.listen(server_context(cert, key))
        with self.assertRaises(stdlib_ssl.SSLError):
            await threads.deferToThread(handshake, port, CBC_SHA1, tls12)
        protocol, suite = await threads.deferToThread(handshake, port, AEAD, tls12)
        self.assertEqual(protocol, "TLSv1.2")
        self.assertIn("GCM", suite)
        latest = stdlib_ssl.TLSVersion.MAXIMUM_SUPPORTED
        protocol, _ = await threads.deferToThread(handshake, port, None, latest)
        self.assertEqual(protocol, "TLSv1.3")

    async def test_tls_1_1_refused(self) -> None:
        """A client that speaks at most TLS 1.1 is refused (when the client can offer it)."""
        cert, key = self.pair()
        port = self.listen(server_context(cert, key))
        tls11 = stdlib_ssl.TLSVersion.TLSv1_1
        with self.assertRaises((stdlib_ssl.SSLError, OSError)):
            await threads.deferToThread(handshake, port, "ALL", tls11)

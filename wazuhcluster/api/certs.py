"""The API's HTTPS certificate: the operator's, or a self-signed one made on first start.

Like the Wazuh API, a master without a certificate for its API generates a self-signed
one (clients then use ``curl -k`` or pin it). The key is written with mode 0600.
"""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

from twisted.internet import ssl

from wazuhcluster.util.tls import TlsError, ensure_self_signed

VALIDITY = datetime.timedelta(days=3650)
#: TLS 1.2 suites the API offers: forward-secret AEAD only (no CBC, no SHA-1 MAC); TLS 1.3
#: suites are all AEAD and always on.
API_CIPHERS = ssl.AcceptableCiphers.fromOpenSSLCipherString(
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL"
)
MAX_PEM = 1024 * 1024


class ApiCertificateError(Exception):
    """The API certificate or key is missing, unreadable or does not match."""


def ensure_certificate(cert: Path, key: Path, hostname: str | None = None) -> bool:
    """Create a self-signed pair at ``cert``/``key`` unless both exist; True if created.

    Only one of the two existing is an error: the operator's material is never replaced.
    """
    name = hostname or socket.gethostname()
    addresses = (
        [name, "localhost", "127.0.0.1", "::1"]
        if name != "localhost"
        else ["localhost", "127.0.0.1", "::1"]
    )
    for path in (cert, key):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return ensure_self_signed(cert, key, name, addresses)
    except TlsError as error:
        raise ApiCertificateError(str(error)) from None


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PEM + 1)
    except OSError as error:
        raise ApiCertificateError(f"{path}: {error.strerror or error}") from None
    if len(data) > MAX_PEM:
        raise ApiCertificateError(f"{path}: larger than {MAX_PEM} bytes")
    return data


def server_context(cert: Path, key: Path) -> ssl.CertificateOptions:
    """TLS options for the API listener from a PEM certificate and key: TLS 1.2 at least,
    AEAD suites only (:data:`API_CIPHERS`)."""
    try:
        private = ssl.PrivateCertificate.loadPEM(_read(cert) + b"\n" + _read(key))
    except Exception as error:  # pyOpenSSL raises several unrelated types
        raise ApiCertificateError(f"{cert} / {key}: {error}") from None
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableCiphers=API_CIPHERS,
    )

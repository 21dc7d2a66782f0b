"""The API's HTTPS certificate: the operator's, or a self-signed one made on first start.

Like the Wazuh API, a master without a certificate for its API generates a self-signed
one (clients then use ``curl -k`` or pin it). The key is written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import ssl

from wazuhcluster.registry.groups import atomic_write

VALIDITY = datetime.timedelta(days=3650)
MAX_PEM = 1024 * 1024


class ApiCertificateError(Exception):
    """The API certificate or key is missing, unreadable or does not match."""


def self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A new self-signed server certificate for ``hostname`` and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wazuhcluster"),
            x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "wazuh-api"),
        ]
    )
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    if hostname and hostname != "localhost":
        alt_names.insert(0, x509.DNSName(hostname))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_certificate(cert: Path, key: Path, hostname: str | None = None) -> bool:
    """Create a self-signed pair at ``cert``/``key`` unless both exist; True if created.

    Only one of the two existing is an error: the operator's material is never replaced.
    """
    have_cert, have_key = cert.exists(), key.exists()
    if have_cert and have_key:
        return False
    if have_cert or have_key:
        missing = key if have_cert else cert
        raise ApiCertificateError(f"{missing} is missing (the other half of the pair exists)")
    cert_pem, key_pem = self_signed(hostname or socket.gethostname())
    for path in (cert, key):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(key, key_pem, mode=0o600)
    atomic_write(cert, cert_pem, mode=0o644)
    return True


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
    """TLS options for the API listener from a PEM certificate (chain) and key."""
    try:
        private = ssl.PrivateCertificate.loadPEM(_read(cert) + b"\n" + _read(key))
    except Exception as error:  # pyOpenSSL raises several unrelated types
        raise ApiCertificateError(f"{cert} / {key}: {error}") from None
    options: ssl.CertificateOptions = private.options()
    return options

"""Cluster TLS: a cluster CA, node certificates, and the options for mutual TLS on 1516.

The master requires a client certificate chained to the cluster CA; a worker checks the
master's certificate against the configured master address (service-identity does the
name and IP matching), and the master checks that the node name a worker claims is one of
the names in its certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from wazuhcluster.util.files import write_atomically

#: Certificates are valid for ten years: rotation is the operator's choice, not an outage.
VALIDITY = datetime.timedelta(days=3650)


class TlsError(Exception):
    """Certificate material is missing, unreadable or inconsistent."""


@frozen
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    """A certificate builder with the parts every certificate here shares: names, public key,
    a random serial and the validity (from five minutes ago, for clock skew)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def create_ca(common_name: str = "wazuhcluster CA") -> KeyPair:
    """Create a self-signed cluster certificate authority."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        _builder(name, name, key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _subject_alt_names(node_name: str, addresses: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(node_name)]
    for address in addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    return names


def issue_node_certificate(ca: KeyPair, node_name: str, addresses: Iterable[str] = ()) -> KeyPair:
    """Sign a certificate for ``node_name`` (its CN and first DNS name) and its addresses."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TlsError("the CA key is not an EC key made by wazuh-cluster-certs")
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_name)]),
            ca_cert.subject,
            key,
            now,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(_subject_alt_names(node_name, addresses)), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def create_self_signed(
    common_name: str, addresses: Iterable[str] = (), rsa_key: bool = False
) -> KeyPair:
    """A self-signed server certificate for ``common_name`` and ``addresses`` (DNS or IP
    subject alternative names). ``rsa_key`` picks RSA-2048, which every Wazuh agent's TLS
    stack accepts; otherwise a P-256 key."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key else _new_key()
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "wazuh")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        _builder(name, name, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    addresses = list(addresses)
    if addresses:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_subject_alt_names(addresses[0], addresses[1:])),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def ensure_self_signed(
    cert: Path, key: Path, common_name: str, addresses: Iterable[str] = (), rsa_key: bool = False
) -> bool:
    """Write a self-signed pair to ``cert``/``key`` unless both exist; True when created.

    Only one of the two existing is an error: an operator's material is never replaced.
    """
    have_cert, have_key = cert.exists(), key.exists()
    if have_cert and have_key:
        return False
    if have_cert or have_key:
        missing = key if have_cert else cert
        raise TlsError(f"{missing} is missing (the other half of the pair exists)")
    pair = create_self_signed(common_name, addresses, rsa_key)
    write_atomically(key, pair.key_pem, 0o600)
    write_atomically(cert, pair.cert_pem, 0o644)
    return True


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TlsError(f"cannot read the {what} {path}: {error.strerror}") from None


def load_material(
    ca_cert: Path, node_cert: Path, node_key: Path
) -> tuple[ssl.Certificate, ssl.PrivateCertificate]:
    """Load the CA and this node's certificate and key, checking they belong together."""
    try:
        authority = ssl.Certificate.loadPEM(_read(ca_cert, "CA certificate"))
        own = ssl.PrivateCertificate.loadPEM(
            _read(node_cert, "node certificate") + b"\n" + _read(node_key, "node private key")
        )
    except TlsError:
        raise
    except Exception as error:
        raise TlsError(f"invalid certificate material: {error}") from None
    cert = own.original.to_cryptography()
    issuer = authority.original.to_cryptography()
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        raise TlsError(f"{node_cert} was not issued by the cluster CA {ca_cert}") from None
    return authority, own


def server_options(
    authority: ssl.Certificate, own: ssl.PrivateCertificate
) -> ssl.CertificateOptions:
    """Options for the master's listener: mutual TLS, client certificate required."""
    return ssl.CertificateOptions(
        privateKey=own.privateKey.original,
        certificate=own.original,
        trustRoot=authority,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


def client_options(
    authority: ssl.Certificate, own: ssl.PrivateCertificate, master_address: str
) -> IOpenSSLClientConnectionCreator:
    """Options for a worker dialling the master at ``master_address``."""
    return ssl.optionsForClientTLS(
        master_address,
        trustRoot=authority,
        clientCertificate=own,
        extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
    )


def certificate_names(der: bytes) -> set[str]:
    """The names a certificate vouches for: its CN and its DNS subject alternative names."""
    cert = x509.load_der_x509_certificate(der)
    names = {attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {str(name) for name in names}
    names.update(san.get_values_for_type(x509.DNSName))
    return {str(name) for name in names}

"""TLS for the enrollment port: the manager's certificate and the context options.

Like wazuh-authd, the enrollment service presents ``etc/sslmanager.cert``/``.key``, a
self-signed certificate made at install time when none is provided (agents do not
verify it unless given a CA). Agent certificates are checked only when
``<ssl_agent_ca>`` is set. TLS 1.2 is the minimum, and the cipher list is ``<ciphers>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorSSL
from twisted.internet.protocol import Factory

from wazuhcluster.config.auth_settings import AuthSettings
from wazuhcluster.util.interfaces import IReactorSSLTime
from wazuhcluster.util.limits import LimitedFactory, ListenerService
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tls import ensure_self_signed

#: Biggest certificate or key file read (PEM files are a few KiB).
MAX_PEM = 1024 * 1024


class EnrollmentTlsError(Exception):
    """The manager certificate or key cannot be used."""


def ensure_manager_certificate(cert: Path, key: Path, common_name: str = "wazuh") -> bool:
    """Create a self-signed RSA-2048 certificate and key unless both exist (as wazuh-authd
    does); returns True when new files were written (key mode 0600, certificate 0644)."""
    if cert.is_file() and key.is_file():
        return False
    cert.unlink(missing_ok=True)
    key.unlink(missing_ok=True)
    return ensure_self_signed(cert, key, common_name, rsa_key=True)


def _read_pem(path: Path, what: str) -> bytes:
    """Read a PEM file, bounded, with a clear error."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PEM + 1)
    except OSError as error:
        raise EnrollmentTlsError(f"cannot read the {what} {path}: {error.strerror}") from None
    if len(data) > MAX_PEM:
        raise EnrollmentTlsError(f"the {what} {path} is larger than {MAX_PEM} bytes")
    return data


def server_tls_options(settings: AuthSettings) -> ssl.CertificateOptions:
    """Context options for the 1515 listener built from ``<auth>``."""
    cert_pem = _read_pem(settings.ssl_manager_cert, "manager certificate")
    key_pem = _read_pem(settings.ssl_manager_key, "manager key")
    try:
        private = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
        ciphers = ssl.AcceptableCiphers.fromOpenSSLCipherString(settings.ciphers)
        ca_certs = None
        if settings.ssl_agent_ca is not None:
            ca_pem = _read_pem(settings.ssl_agent_ca, "agent CA")
            ca_certs = [ssl.Certificate.loadPEM(ca_pem).original]
    except Exception as error:  # pyOpenSSL raises several unrelated types here
        raise EnrollmentTlsError(f"unusable enrollment TLS material: {error}") from None
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        acceptableCiphers=ciphers,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        verify=ca_certs is not None,
        caCerts=ca_certs,
        requireCertificate=ca_certs is not None,
    )


def client_tls_options(
    host: str, ca_cert: Path | None = None
) -> IOpenSSLClientConnectionCreator | ssl.CertificateOptions:
    """Client options: no verification (the agent's default) unless a CA is given."""
    if ca_cert is None:
        return ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
    authority = ssl.Certificate.loadPEM(_read_pem(ca_cert, "manager CA"))
    return ssl.optionsForClientTLS(host, trustRoot=authority)


def enrollment_endpoint(
    reactor: IReactorSSL, settings: AuthSettings, interface: str | None = None
) -> SSL4ServerEndpoint:
    """The TLS listening endpoint for ``<auth>`` (port, IPv6 choice, certificate)."""
    default = settings.bind_addr or ("::" if settings.ipv6 else "0.0.0.0")
    bind = interface if interface is not None else default
    return SSL4ServerEndpoint(reactor, settings.port, server_tls_options(settings), interface=bind)


def enrollment_listener(
    reactor: IReactorSSLTime, settings: AuthSettings, factory: Factory[Any], log: ClusterLog
) -> ListenerService:
    """The 1515 listening service (named ``enrollment``) for ``factory`` under ``<auth>``'s
    connection limits: a connection is counted against ``max_connections[_per_ip]`` once its
    TLS handshake is done, and before that only against the pending caps and the
    ``handshake_timeout``; a connection closed after its reply is aborted if the agent keeps
    it open."""
    limited = LimitedFactory(factory, reactor, log, limits=settings.limits, admit_on="handshake")
    service = ListenerService(enrollment_endpoint(reactor, settings), limited)
    service.setName("enrollment")
    return service

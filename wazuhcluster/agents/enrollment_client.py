"""An enrollment client: what ``agent-auth`` does, as a Deferred.

:func:`request_enrollment` opens a TLS connection to a manager's enrollment port, sends
one request line and reads the answer until the manager closes the connection. Like a
Wazuh agent, it does not verify the manager's certificate unless a CA file is given.
It returns the new :class:`~wazuhcluster.registry.keys.KeyEntry` or fails with
:class:`~wazuhcluster.agents.enrollment.EnrollmentError` carrying the manager's
reason; a manager that does not answer in time fails it with
:class:`twisted.internet.defer.TimeoutError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from wazuhcluster.agents.enrollment import (
    MAX_REQUEST,
    EnrollmentError,
    EnrollmentRequest,
    parse_reply,
    parse_request,
)
from wazuhcluster.agents.enrollment_tls import client_tls_options
from wazuhcluster.registry.keys import KeyEntry
from wazuhcluster.util.interfaces import IReactorSSLTime

#: Longest answer accepted (a key line is ~200 bytes; errors echo at most 255 chars).
MAX_REPLY = 8192
DEFAULT_TIMEOUT = 30.0


class EnrollmentClientProtocol(Protocol):
    """Send one request line, collect the answer, parse it when the server closes."""

    def __init__(self, line: bytes, max_reply: int = MAX_REPLY) -> None:
        self.line = line
        self.max_reply = max_reply
        self.buffer = bytearray()
        self.result: Deferred[KeyEntry] = Deferred(self._cancel)

    def _cancel(self, result: Deferred[KeyEntry]) -> None:
        """Cancelling the result (e.g. on timeout) drops the connection."""
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        """Send the request."""
        self.transport.write(self.line + b"\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        """Collect the answer, bounded."""
        self.buffer += data
        if len(self.buffer) > self.max_reply and not self.result.called:
            self.result.errback(EnrollmentError("Reply from manager too large"))
            self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The manager closed: parse what it said."""
        if self.result.called:
            return
        if not self.buffer:
            self.result.errback(EnrollmentError("Connection closed by manager without a reply"))
            return
        try:
            entry = parse_reply(bytes(self.buffer))
        except EnrollmentError as error:
            self.result.errback(error)
            return
        self.result.callback(entry)


def request_enrollment(
    reactor: IReactorSSLTime,
    host: str,
    port: int,
    name: str,
    password: str | None = None,
    groups: Sequence[str] = (),
    ip: str | None = None,
    version: str | None = None,
    key_hash: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    ca_cert: Path | None = None,
) -> Deferred[KeyEntry]:
    """Enroll ``name`` with the manager at ``host:port`` (see module docstring).

    ``ip`` is an address or ``"src"`` (let the manager use the connection's source);
    the request is validated locally first, so a bad name fails without connecting.
    """
    request = EnrollmentRequest(name, password, version, tuple(groups), ip, key_hash)
    line = request.to_line()
    try:
        parse_request(line)
    except EnrollmentError as error:
        return defer.fail(error)
    if len(line) > MAX_REQUEST:
        return defer.fail(EnrollmentError("Request too large"))
    try:
        options = client_tls_options(host, ca_cert)
    except Exception as error:
        return defer.fail(error)
    endpoint = SSL4ClientEndpoint(reactor, host, port, options, timeout=max(1, int(timeout)))
    protocol = EnrollmentClientProtocol(line.encode("utf-8"))
    connected: Deferred[Protocol] = connectProtocol(endpoint, protocol)
    result: Deferred[KeyEntry] = connected.addCallback(lambda _: protocol.result)
    result.addTimeout(timeout, reactor)
    return result

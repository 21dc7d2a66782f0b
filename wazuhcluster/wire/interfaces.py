"""The seam between a link feature and the connection it talks over.

A feature on either role sends commands and streams to its peer through the protocol of one
authenticated link: :class:`~wazuhcluster.master.protocol.MasterProtocol` on the master,
:class:`~wazuhcluster.worker.protocol.WorkerProtocol` on a worker. This is what it may use.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport
from zope.interface import Attribute, Interface

from wazuhcluster.wire.stream_endpoint import StreamEndpoint


class IPeer(Interface):
    """One end of an authenticated cluster link, as a feature uses it."""

    streams: StreamEndpoint = Attribute("Sends and receives the link's streams.")
    transport: ITCPTransport | None = Attribute(
        "The connection (None once it is gone), to abort it."
    )

    def callRemote(commandType: type, **arguments: Any) -> Deferred[Any]:  # noqa: N802
        """Send an AMP command to the peer; fires with its answer (Twisted's AMP name)."""

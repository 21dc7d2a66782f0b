"""LimitedFactory keeps the wrapped factory's ALPN offer (HTTPS clients send ALPN)."""

from __future__ import annotations

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from wazuhcluster.util.limits import LimitedFactory
from wazuhcluster.util.logs import ClusterLog


class AlpnTests(SynchronousTestCase):
    """TLS reads ALPN protocols from the listening factory: the wrapper must pass them on."""

    def test_site_protocols_offered(self) -> None:
        """Wrapping an HTTP site keeps it a protocol-negotiation factory with its protocols."""
        limited = LimitedFactory(Site(Resource()), Clock(), ClusterLog("Master", "API"))
        self.assertTrue(IProtocolNegotiationFactory.providedBy(limited))
        self.assertIn(b"http/1.1", limited.acceptableProtocols())

    def test_plain_factory_offers_nothing(self) -> None:
        """A factory without ALPN stays without it (no empty offer that would fail handshakes)."""
        limited = LimitedFactory(Factory.forProtocol(Protocol), Clock(), ClusterLog("M", "x"))
        self.assertFalse(IProtocolNegotiationFactory.providedBy(limited))

"""From ``<cluster><failover>`` to a running LeadershipService: the one call the roles need."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from wazuhcluster.config.failover_settings import FailoverSettings
from wazuhcluster.failover.client import EtcdClient, EtcdTls
from wazuhcluster.failover.election import Address, LeadershipService
from wazuhcluster.util.interfaces import IReactorWebClient
from wazuhcluster.util.logs import ClusterLog


class OwnedLeadership(LeadershipService):
    """A LeadershipService that closes its own etcd client once it has stopped."""

    client: EtcdClient

    def stopService(self) -> Deferred[None]:
        """Stop (revoking the lease when leading), then close the client's connections."""
        stopped = super().stopService()

        def close(_: object) -> Deferred[None]:
            return Deferred.fromCoroutine(self.client.close())

        return stopped.addCallback(close)


def build_leadership(
    settings: FailoverSettings,
    node_name: str,
    reactor: IReactorWebClient,
    log: ClusterLog,
    address: Address | None = None,
) -> OwnedLeadership:
    """The election service of ``node_name``: a candidate when it is among the candidates,
    else a follower that only tracks who leads. A candidate publishes ``address`` (where
    the other nodes reach it) while it leads. Reads the TLS files (small, at start)."""
    tls = EtcdTls(settings.tls.ca, settings.tls.cert, settings.tls.key)
    failover_log = log.child("Failover")
    client = EtcdClient.connect(reactor, settings.endpoints, tls, log=failover_log)
    return OwnedLeadership(
        client,
        settings.leader_key,
        node_name,
        settings.lease_ttl,
        reactor,
        failover_log,
        candidate=node_name in settings.candidates,
        address=address,
    )

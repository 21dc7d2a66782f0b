"""A node with ``<failover>``: the election, and the master or worker it runs accordingly."""

from __future__ import annotations

from wazuhcluster.api.standby import StandbyApiService
from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.config.sections import NodeSections
from wazuhcluster.failover.agents import DurableAgents
from wazuhcluster.failover.election import Address
from wazuhcluster.failover.files import DurableFiles
from wazuhcluster.failover.wiring import build_leadership
from wazuhcluster.master.node import MasterService
from wazuhcluster.roles.files_takeover import take_over_files
from wazuhcluster.roles.promotion import take_over_agents
from wazuhcluster.roles.security_takeover import take_over_security
from wazuhcluster.roles.switcher import RoleSwitcher, RoleTag
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_in_reactor_pool
from wazuhcluster.worker.node import WorkerService


def build_failover_node(
    config: NodeConfig, reactor: INodeReactor, sections: NodeSections
) -> RoleSwitcher:
    """The service of a node whose ``<cluster>`` has ``<failover>``.

    A candidate publishes its ``<nodes><node>`` address and cluster port as where it is
    reached while it leads; a node that is not a candidate only follows the election.
    When elected it first takes over the agents and synced files kept in etcd, and its
    master stores every enrollment, deletion and group write there before acknowledging it.
    A candidate running as a worker answers on the API port with the master's name
    (:mod:`wazuhcluster.api.standby`).
    """
    cluster = config.cluster
    settings = cluster.failover
    if settings is None:
        raise ValueError("this node has no <failover> block")
    candidate = cluster.node_name in settings.candidates
    # The election's and the switches' lines say what the node is when written.
    tag = RoleTag(cluster.node_name, candidate)
    log = ClusterLog(tag, "Failover")
    address = Address(cluster.master_address, cluster.port) if candidate else None
    leadership = build_leadership(settings, cluster.node_name, reactor, log, address=address)
    durable = DurableAgents(leadership, leadership.client, settings.prefix)
    files = DurableFiles(leadership, leadership.client, settings.prefix)
    # The API's users.json and rbac.db: keys <prefix>api-files/..., apart from the synced files.
    security = DurableFiles(leadership, leadership.client, settings.prefix + "api-")
    switcher: RoleSwitcher

    def make_master() -> MasterService:
        return MasterService(
            config,
            reactor,
            sections,
            failover=switcher,
            durable=durable,
            durable_files=files,
            durable_security=security,
        )

    api = sections.api

    def make_worker() -> WorkerService:
        worker = WorkerService(config, reactor, sections, follow=True, failover=switcher)
        if candidate and api.enabled:
            # The API port of a candidate that is not master names the master (and its
            # health URL says 503), so clients and load balancers find the master.
            StandbyApiService(api, switcher.failover_status, reactor).setServiceParent(worker)
        return worker

    async def prepare_master() -> None:
        await take_over_agents(durable, config.home, run_in_reactor_pool, log)
        # Before the master's services open: its workers then sync etcd's files from it.
        await take_over_files(files, config.home, run_in_reactor_pool, log)
        await take_over_security(security, sections.api.api_dir, run_in_reactor_pool, log)

    switcher = RoleSwitcher(
        leadership,
        make_master,
        make_worker,
        settings.candidates,
        reactor,
        log,
        prepare_master=prepare_master,
        tag=tag,
    )
    return switcher

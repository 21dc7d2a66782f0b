"""``twistd wazuhcluster``: command-line options and the node's service tree.

Everything that can be checked before the reactor starts is checked in ``postOptions``: a
bad configuration or missing certificate prints one line and exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

from twisted.application.service import IService, MultiService
from twisted.python import usage

from wazuhcluster.config.cluster import NodeConfig, load_config
from wazuhcluster.config.home import DEFAULT_HOME, Home
from wazuhcluster.config.sections import NodeSections, load_sections
from wazuhcluster.config.xmlconfig import ConfigError
from wazuhcluster.node.config_file import check_home, check_tls
from wazuhcluster.util.collector import FreezeStartupObjects
from wazuhcluster.util.fatal import exit_non_zero_after_failure
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.logs import ClusterLog, ClusterLogService, Tag
from wazuhcluster.util.memory import limit_malloc_arenas
from wazuhcluster.util.restart import reexec_after_restart
from wazuhcluster.util.signals import SignalHandlers
from wazuhcluster.util.tls import TlsError


class Options(usage.Options):
    """Options of ``twistd wazuhcluster``."""

    synopsis = "[--role master|worker] [--home DIR] [--config FILE] [--test-config]"
    optParameters = [
        ["role", "r", None, "master or worker (must agree with <cluster><node_type>)"],
        ["home", None, str(DEFAULT_HOME), "the node's home directory"],
        ["config", "c", None, "configuration file (default HOME/etc/wazuh-manager.conf)"],
    ]
    optFlags = [
        ["test-config", "t", "check the configuration, print the verdict and exit 0 or 1"],
        ["debug", "d", "log DEBUG lines to cluster.log"],
    ]
    compData = usage.Completions(optActions={"role": usage.CompleteList(["master", "worker"])})

    node_config: NodeConfig
    sections: NodeSections

    def postOptions(self) -> None:
        """Load and validate the configuration and TLS material, or exit with one line."""
        role = self["role"]
        if role is not None and role not in ("master", "worker"):
            raise usage.UsageError(f"--role must be master or worker, not {role!r}")
        home = Home(Path(self["home"]).absolute())
        config_path = Path(self["config"]) if self["config"] else home.config_file
        try:
            self.node_config = load_config(config_path, home, role)
            self.sections = load_sections(self.node_config)
            check_home(self.node_config)
            check_tls(self.node_config)
        except (ConfigError, TlsError) as error:
            print(f"wazuhcluster: configuration error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        for warning in self.node_config.cluster.warnings:
            print(f"wazuhcluster: warning: {config_path}: {warning}", file=sys.stderr)
        if self["test-config"]:
            cluster = self.node_config.cluster
            print(f"{config_path}: OK ({cluster.node_type} {cluster.node_name} of {cluster.name})")
            raise SystemExit(0)


def build_service(
    config: NodeConfig,
    reactor: INodeReactor,
    debug: bool = False,
    sections: NodeSections | None = None,
    freeze_startup: bool = False,
) -> MultiService:
    """The whole service tree of a node: cluster.log first, then the role's services; with
    ``freeze_startup`` (a node process of its own, not a test), the objects that exist once
    it runs are frozen out of the cycle collector's walks (:mod:`wazuhcluster.util.collector`)."""
    limit_malloc_arenas()  # before any thread allocates: see wazuhcluster.util.memory
    top = MultiService()
    sections = sections or load_sections(config)
    config.home.make_dirs()
    cluster_log = ClusterLogService(config.home.cluster_log, debug=debug)
    cluster_log.setServiceParent(top)
    cluster = config.cluster
    tag: Tag = "Master" if cluster.node_type == "master" else f"Worker {cluster.node_name}"
    switcher = None
    if cluster.failover is not None and not cluster.disabled:
        from wazuhcluster.roles.wiring import build_failover_node

        switcher = build_failover_node(config, reactor, sections)
        tag = switcher.tag  # master or worker as the election says
    # SIGHUP reopens cluster.log (logrotate) and reloads what the role can reload.
    hup = SignalHandlers(reactor, [cluster_log.reopen], ClusterLog(tag, "Main"))
    hup.setServiceParent(top)
    if freeze_startup:
        # It freezes once the reactor runs, so after every service of the tree has started.
        FreezeStartupObjects(reactor).setServiceParent(top)
    if switcher is not None:
        switcher.setServiceParent(top)
        hup.on_hup.append(switcher.reload)
        return top
    role: MultiService
    if cluster.node_type == "master":
        from wazuhcluster.master.node import MasterService

        role = MasterService(config, reactor, sections)
    else:
        from wazuhcluster.worker.node import WorkerService

        role = WorkerService(config, reactor, sections)
    role.setServiceParent(top)
    hup.on_hup.extend(getattr(role, "reload_actions", ()))
    return top


def makeService(options: Options) -> IService:  # noqa: N802 - twistd's name
    """Build the node's service tree (twistd entry point)."""
    from twisted.internet import reactor

    # A node that stops itself for a fault (wazuhcluster.util.fatal) exits 1, not twistd's 0.
    exit_non_zero_after_failure()
    # PUT /manager/restart stops the node, which then starts again with the same command line.
    reexec_after_restart()
    # The global reactor provides every interface INodeReactor extends without declaring
    # the combination (see wazuhcluster.util.interfaces).
    return build_service(
        options.node_config,
        cast(INodeReactor, reactor),
        debug=bool(options["debug"]),
        sections=options.sections,
        freeze_startup=True,
    )

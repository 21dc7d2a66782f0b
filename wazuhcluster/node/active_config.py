"""The settings a node runs with, in the shapes Wazuh's daemons give for
``GET /manager/configuration/{component}/{configuration}``.

Only the pairs whose settings this project parses are answered, from the blocks the node
loaded at start (not the file on disk, which ``/manager/configuration`` shows):
analysis ``global`` and ``alerts``, request ``remote`` and ``global``, auth ``auth`` and
com ``cluster``. A component Wazuh has whose settings are not kept here is Wazuh's 1121
(no such component running); a configuration of a kept component that is not kept is 1116.
Secrets (the cluster key, the enrollment password) are never shown.
"""

from __future__ import annotations

from typing import Any

from wazuhcluster.config.cluster import NodeConfig
from wazuhcluster.config.sections import NodeSections

#: The pairs answered here.
KEPT = {
    ("analysis", "global"),
    ("analysis", "alerts"),
    ("request", "remote"),
    ("request", "global"),
    ("auth", "auth"),
    ("com", "cluster"),
}
#: The components some of whose settings are kept.
KEPT_COMPONENTS = {component for component, _ in KEPT}
HIDDEN = "*****"


class NotKept(Exception):
    """The pair is not answered here; ``code`` is Wazuh's error for it."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def active_configuration(
    config: NodeConfig, sections: NodeSections, component: str, configuration: str
) -> dict[str, Any]:
    """The settings of ``component``/``configuration`` in Wazuh's shape (NotKept when they
    are not answered here)."""
    if component not in KEPT_COMPONENTS:
        raise NotKept(1121)
    if (component, configuration) not in KEPT:
        raise NotKept(1116)
    if component == "analysis":
        ruleset = sections.ruleset
        if configuration == "alerts":
            return {
                "alerts": {
                    "email_alert_level": ruleset.email_alert_level,
                    "log_alert_level": ruleset.log_alert_level,
                }
            }
        return {
            "global": {
                "email_notification": "no",
                "logall": _yes(ruleset.logall),
                "logall_json": _yes(ruleset.logall_json),
                "jsonout_output": "yes",
                "alerts_log": "no",
                "eps": {
                    "maximum": sections.analysis.eps_maximum,
                    "timeframe": sections.analysis.eps_timeframe,
                },
            }
        }
    if component == "request":
        if configuration == "global":
            agents = sections.agents
            return {
                "global": {
                    "remoted": {
                        "agents_disconnection_alert_time": int(agents.disconnection_alert_time),
                        "agents_disconnection_time": int(agents.disconnection_time),
                    }
                }
            }
        remote = sections.remote
        block: dict[str, Any] = {"connection": remote.connection, "ipv6": "no"}
        if remote.local_ip:
            block["local_ip"] = remote.local_ip
        block["protocol"] = [
            name.upper() for name in ("tcp", "udp") if name in remote.protocol.split(",")
        ]
        block["port"] = str(remote.port)
        block["queue_size"] = str(remote.queue_size)
        block["connection_overtake_time"] = int(remote.connection_overtake_time)
        return {"remote": [block]}
    if component == "auth":
        auth = sections.auth
        force = auth.force
        settings: dict[str, Any] = {
            "port": auth.port,
            "disabled": _yes(auth.disabled),
            "remote_enrollment": _yes(auth.remote_enrollment),
            "ipv6": "no",
            "use_source_ip": _yes(auth.use_source_ip),
            "purge": _yes(auth.purge),
            "use_password": _yes(auth.use_password),
            "ssl_verify_host": _yes(auth.ssl_verify_host),
            "ssl_auto_negotiate": _yes(auth.ssl_auto_negotiate),
            "ciphers": auth.ciphers,
        }
        if auth.ssl_agent_ca is not None:
            settings["ssl_agent_ca"] = str(auth.ssl_agent_ca)
        settings["ssl_manager_cert"] = str(auth.ssl_manager_cert)
        settings["ssl_manager_key"] = str(auth.ssl_manager_key)
        settings["force"] = {
            "enabled": _yes(force.enabled),
            "key_mismatch": _yes(force.key_mismatch),
            "disconnected_time": {
                "enabled": _yes(force.disconnected_time_enabled),
                "value": int(force.disconnected_time),
            },
            "after_registration_time": int(force.after_registration_time),
        }
        settings["agents"] = {"allow_higher_versions": _yes(auth.allow_higher_versions)}
        return {"auth": settings}
    cluster = config.cluster
    return {
        "name": cluster.name,
        "node_name": cluster.node_name,
        "node_type": cluster.node_type,
        "key": HIDDEN,
        "port": cluster.port,
        "bind_addr": cluster.bind_addr,
        "nodes": [cluster.master_address],
        "hidden": _yes(cluster.hidden),
        "disabled": cluster.disabled,
    }

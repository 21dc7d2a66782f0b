"""One agent's ``daemons/stats`` numbers in Wazuh 4.4's per-agent ``wazuh-analysisd``
shape, from the events this node's analysis intake received per queue letter.

Only what the queue letter says is broken down (logcollector, Windows event channel,
syscheck, rootcheck, syscollector, CIS-CAT, SCA, upgrade, dbsync); the modules that share
a letter with others (the wodles), integrations, monitord and the alerts written per agent
are not counted here and stay 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wazuhcluster.analysis import queues as q

#: Queue letter → the module field of ``modules_breakdown`` it counts in.
_MODULES = {
    q.SYSCHECK: "syscheck",
    q.ROOTCHECK: "rootcheck",
    q.SYSCOLLECTOR: "syscollector",
    q.CISCAT: "ciscat",
    q.SCA: "sca",
    q.UPGRADE: "upgrade",
}
_ZERO_MODULES = (
    "aws",
    "azure",
    "command",
    "docker",
    "gcp",
    "github",
    "office365",
    "ms-graph",
    "oscap",
    "osquery",
    "vulnerability",
)


def analysisd_agent_metrics(by_queue: Mapping[str, int], dropped: int) -> dict[str, Any]:
    """``metrics`` of one agent: ``by_queue`` counts the events received per queue letter,
    ``dropped`` those the full intake queue dropped (the rest were processed)."""
    received = sum(by_queue.values())
    modules: dict[str, Any] = {name: 0 for name in _ZERO_MODULES}
    for letter, name in _MODULES.items():
        modules[name] = by_queue.get(letter, 0)
    modules["logcollector_breakdown"] = {
        "eventchannel": by_queue.get(q.WINEVT, 0),
        "eventlog": 0,
        "macos": 0,
        "others": by_queue.get(q.LOGCOLLECTOR, 0),
    }
    return {
        "events": {
            "processed": max(received - dropped, 0),
            "received_breakdown": {
                "decoded_breakdown": {
                    "agent": 0,
                    "dbsync": by_queue.get(q.DBSYNC, 0),
                    "integrations_breakdown": {"virustotal": 0},
                    "modules_breakdown": modules,
                    "monitor": 0,
                    "remote": 0,
                },
            },
            "written_breakdown": {"alerts": 0, "archives": 0, "firewall": 0},
        }
    }

"""Queue ``3``: hostinfo (nmap grepable output read by the agent's logcollector)."""

from __future__ import annotations

from wazuhcluster.analysis.agentstate import AgentState
from wazuhcluster.analysis.builtin import BuiltinDecoder
from wazuhcluster.analysis.eventinfo import EventInfo

HOSTINFO_NEW = BuiltinDecoder("hostinfo_new")
HOSTINFO_MODIFIED = BuiltinDecoder("hostinfo_modified")


def decode_hostinfo(info: EventInfo, message: str, state: AgentState) -> bool:
    """``Host: <ip> (<name>), open ports: ...``: alert when a host or its ports are new.

    Like Wazuh, the memory is one list for every agent, keyed by the address only.
    """
    start = message.find("Host: ")
    if start < 0:
        return False
    rest = message[start + 6 :]
    comma = rest.find(",")
    if comma < 0:
        return False
    ip = rest[:comma].split(" ", 1)[0]
    ports = rest[comma + 1 :]
    previous = state.host_ports(ip, ports)
    if previous is None:
        return False
    if previous:
        info.decoder = HOSTINFO_MODIFIED
        info.static["extra_data"] = "Previously open ports:" + previous
    else:
        info.decoder = HOSTINFO_NEW
    # Wazuh prints the same decoder name for both.
    info.sections = {"decoder": {"name": "hostinfo_modified"}}
    return True

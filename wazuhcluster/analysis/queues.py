"""Routing by queue: the letter before an agent message's location picks its path.

As in Wazuh's analysisd, ``1`` (logcollector), ``2`` (syslog) and ``4`` (secure) lines go
through the XML decoders; the module queues have their own decoders, which build the fields
and the decoder name the stock rules expect:

====  ===============  ===============================================  ======================
 q    what             decoder (in alerts and ``<decoded_as>``)         stock rules
====  ===============  ===============================================  ======================
 3    hostinfo         ``hostinfo_new`` / ``hostinfo_modified``         581 / 580
 5    dbsync           (stored, never matched against rules)            none
 8    syscheck (FIM)   ``syscheck_new_entry`` / ``_integrity_changed``  554 / 550 / 553 ...
 9    rootcheck        ``rootcheck``                                    509, 510 and children
 d    syscollector     ``syscollector``                                 221 (level 0)
 e    CIS-CAT          ``ciscat``                                       87401 family
 f    eventchannel     ``windows_eventchannel``                         60000 family
 p    SCA              ``sca``                                          19000 family
 u    upgrade result   (not analysed)                                   none
====  ===============  ===============================================  ======================

Any other letter is not analysed at all: the engine counts it and notes it once per agent.
A decoder gets the event's working record (location, agent, time already set), the message
and the engine's :class:`~wazuhcluster.analysis.agentstate.AgentState`; it fills the record
and answers True to go on to the rules, False when the message is only stored or is invalid.
"""

from __future__ import annotations

import json

from wazuhcluster.analysis import hostinfo, rootcheck, sca, syscheck, syscollector, winevt
from wazuhcluster.analysis.agentstate import AgentState, reply_text
from wazuhcluster.analysis.builtin import BuiltinDecoder, QueueDecoder, location_ends
from wazuhcluster.analysis.decoders import json_fields
from wazuhcluster.analysis.eventinfo import EventInfo

LOGCOLLECTOR = "1"
SYSLOG = "2"
HOSTINFO = "3"
SECURE = "4"
DBSYNC = "5"
SYSCHECK = "8"
ROOTCHECK = "9"
SYSCOLLECTOR = "d"
CISCAT = "e"
WINEVT = "f"
SCA = "p"
UPGRADE = "u"

#: Letters whose messages go through the XML decoders.
GENERIC = frozenset((LOGCOLLECTOR, SYSLOG, SECURE))
#: Every letter a Wazuh 4.x agent (or manager) may use.
KNOWN = frozenset(
    (LOGCOLLECTOR, SYSLOG, HOSTINFO, SECURE, DBSYNC, SYSCHECK, ROOTCHECK, SYSCOLLECTOR)
    + (CISCAT, WINEVT, SCA, UPGRADE)
)


# ---- 5: dbsync -----------------------------------------------------------------------------

DBSYNC_COMPONENTS = frozenset(
    (
        "fim_file",
        "fim_registry_key",
        "fim_registry_value",
        "syscheck",
        "fim_registry",
    )
    + tuple(
        "syscollector_" + table
        for table in (
            "osinfo",
            "hwinfo",
            "packages",
            "hotfixes",
            "processes",
            "ports",
            "network_iface",
            "network_protocol",
            "network_address",
            "users",
            "groups",
            "services",
            "browser_extensions",
        )
    )
)


def decode_dbsync(info: EventInfo, message: str, state: AgentState) -> bool:
    """State synchronisation (FIM, inventory): stored, never an alert; an integrity check
    whose range differs (or is empty here) is answered to the agent, a match is not."""
    try:
        payload = json.loads(message)
    except ValueError:
        return False
    if not isinstance(payload, dict):
        return False
    component = payload.get("component")
    kind = payload.get("type")
    data = payload.get("data")
    if component not in DBSYNC_COMPONENTS or not isinstance(kind, str):
        return False
    if not isinstance(data, dict):
        return False
    answer = state.dbsync(info.agent_id, str(component), kind, data)
    if answer is not None:
        state.send(info.agent_id, reply_text(str(component), answer, data))
    return False


# ---- e: CIS-CAT ----------------------------------------------------------------------------

CISCAT_DECODER = BuiltinDecoder("ciscat")


def decode_ciscat(info: EventInfo, message: str, state: AgentState) -> bool:
    """CIS-CAT results: the JSON's members become fields (``type``, ``cis.*``...)."""
    if not location_ends(info, "wodle_cis-cat"):
        return False
    try:
        payload = json.loads(message)
    except ValueError:
        return False
    if not isinstance(payload, dict):
        return False
    info.decoder = CISCAT_DECODER
    json_fields(CISCAT_DECODER, info, payload)
    return True


# ---- u: upgrade ----------------------------------------------------------------------------


def decode_upgrade(info: EventInfo, message: str, state: AgentState) -> bool:
    """An upgrade result goes to the upgrade module, never to the rules."""
    return False


DECODERS: dict[str, QueueDecoder] = {
    HOSTINFO: hostinfo.decode_hostinfo,
    DBSYNC: decode_dbsync,
    SYSCHECK: syscheck.decode_syscheck,
    ROOTCHECK: rootcheck.decode_rootcheck,
    SYSCOLLECTOR: syscollector.decode_syscollector,
    CISCAT: decode_ciscat,
    WINEVT: winevt.decode_winevt,
    SCA: sca.decode_sca,
    UPGRADE: decode_upgrade,
}


def decoder_for(queue: str) -> QueueDecoder | None:
    """The decoder of a module queue, or None for the XML decoders' queues."""
    return DECODERS.get(queue)

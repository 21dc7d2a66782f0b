"""Queue ``d``: syscollector inventory deltas (``{"type":"dbsync_<table>","operation":...}``).

Each delta updates the agent's inventory (``INSERTED``/``MODIFIED`` upsert, ``DELETED``
removes) and goes to the rules with decoder ``syscollector`` and the fields ``type``,
``operation_type`` and the row's columns under the table's prefix (``program.*``,
``process.*``, ``port.*``, ``netinfo.iface.*``...), a few renamed as Wazuh does
(``groups`` → ``program.section``, ``argvs`` → ``process.args``, ``board_serial`` →
``hardware.serial``, ``os_name`` → ``os.name``). The stock ruleset only has rule 221 (level
0) for them: no alert unless an operator adds rules.
"""

from __future__ import annotations

import json
from typing import Any

from wazuhcluster.analysis.agentstate import AgentState
from wazuhcluster.analysis.builtin import BuiltinDecoder, as_text, location_ends
from wazuhcluster.analysis.eventinfo import EventInfo

SYSCOLLECTOR_DECODER = BuiltinDecoder("syscollector")
OPERATIONS = frozenset(("INSERTED", "MODIFIED", "DELETED"))
# table -> (field prefix, renamed columns)
TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "osinfo": ("os", {"os_": ""}),
    "hwinfo": ("hardware", {"board_serial": "serial"}),
    "packages": ("program", {"groups": "section"}),
    "hotfixes": ("", {}),
    "processes": ("process", {"argvs": "args"}),
    "ports": ("port", {}),
    "network_iface": ("netinfo.iface", {}),
    "network_protocol": ("netinfo.proto", {}),
    "network_address": ("netinfo.addr", {}),
    "users": ("user", {"user_": ""}),
    "groups": ("group", {"group_": ""}),
    "services": ("service", {"service_": ""}),
    "browser_extensions": ("browser_extension", {"browser_extension_": ""}),
}


def _field_name(prefix: str, renames: dict[str, str], column: str) -> str:
    for old, new in renames.items():
        if old.endswith("_") and column.startswith(old):
            column = new + column[len(old) :]
            break
        if column == old:
            column = new
            break
    return f"{prefix}.{column}" if prefix else column


def decode_syscollector(info: EventInfo, message: str, state: AgentState) -> bool:
    """Queue d: apply the delta to the inventory; on to the rules with its fields."""
    if not location_ends(info, "syscollector"):
        return False
    try:
        event = json.loads(message)
    except ValueError:
        return False
    if not isinstance(event, dict):
        return False
    kind = event.get("type")
    operation = event.get("operation")
    data = event.get("data")
    if not isinstance(kind, str) or not kind.startswith("dbsync_"):
        return False
    table = kind[len("dbsync_") :]
    if table not in TABLES or operation not in OPERATIONS or not isinstance(data, dict):
        return False
    row: dict[str, Any] = dict(data)
    if table == "network_address" and row.get("proto") in (0, 1):
        row["proto"] = "ipv4" if row["proto"] == 0 else "ipv6"
    state.inventory_apply(info.agent_id, table, str(operation), row)
    info.decoder = SYSCOLLECTOR_DECODER
    info.add_field("type", kind)
    info.add_field("operation_type", str(operation))
    prefix, renames = TABLES[table]
    for column, value in row.items():
        if value is None or isinstance(value, (dict, list)) or value == "":
            continue
        info.add_field(_field_name(prefix, renames, column), as_text(value))
    return True

"""Queue ``f``: Windows eventchannel events (``{"Message": ..., "Event": "<Event>...</Event>"}``).

The event's XML is flattened as Wazuh's analysisd does into ``{"win": {"system": {...},
"eventdata": {...}}}``, which becomes the event's ``full_log`` and goes through the JSON
decoder under the name ``windows_eventchannel``, so rules test ``win.system.eventID``,
``win.eventdata.targetUserName``... (the 60000 family of the stock ruleset):

- ``system``: the Provider's ``Name``/``Guid``/``EventSourceName`` as ``providerName``,
  ``providerGuid``, ``eventSourceName``; ``TimeCreated`` as ``systemTime``; ``Execution`` as
  ``processID``/``threadID``; every other non-empty child with its first letter lower-cased
  (``Correlation`` skipped); ``severityValue`` from the level and keywords; ``message``, the
  rendered text between double quotes;
- ``eventdata``: each named ``Data`` with its name's first letter lower-cased, ``(NULL)`` and
  ``-`` dropped, unnamed ``Data`` values joined with ``, `` into ``data``;
- any other top-level element (``UserData``...) under its own lower-cased name.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from typing import Any

from wazuhcluster.analysis.agentstate import AgentState
from wazuhcluster.analysis.builtin import BuiltinDecoder
from wazuhcluster.analysis.decoders import json_fields
from wazuhcluster.analysis.eventinfo import EventInfo

WINEVT_DECODER = BuiltinDecoder("windows_eventchannel")
_EMPTY = ("(NULL)", "-")
_AUDIT_FAILURE = 0x10000000000000
_AUDIT_SUCCESS = 0x20000000000000
_LEVELS = {1: "CRITICAL", 2: "ERROR", 3: "WARNING", 4: "INFORMATION", 5: "VERBOSE"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _clean(text: str | None) -> str:
    return (text or "").rstrip()


def severity(level: str, keywords: str) -> str:
    """Wazuh's ``severityValue`` from the System Level and Keywords."""
    try:
        number = int(level)
        flags = int(keywords, 16)
    except ValueError:
        return "UNKNOWN"
    if number in _LEVELS:
        return _LEVELS[number]
    if number == 0:
        if flags & _AUDIT_FAILURE:
            return "AUDIT_FAILURE"
        if flags & _AUDIT_SUCCESS:
            return "AUDIT_SUCCESS"
    return "UNKNOWN"


def flatten(xml_text: str, message: str | None) -> dict[str, Any] | None:
    """The ``win`` object for one event's XML, or None when it is not readable XML."""
    if "<!DOCTYPE" in xml_text or "<!ENTITY" in xml_text:
        return None
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError:
        return None
    system: dict[str, str] = {}
    eventdata: dict[str, str] = {}
    extra_name: str | None = None
    extra: dict[str, str] = {}
    joined: list[str] = []
    level = keywords = None
    for child in root:
        section = _local(child.tag)
        for item in child:
            name = _local(item.tag)
            text = item.text or ""
            if section == "System":
                if name == "Provider":
                    for attribute, key in (
                        ("Name", "providerName"),
                        ("Guid", "providerGuid"),
                        ("EventSourceName", "eventSourceName"),
                    ):
                        if attribute in item.attrib:
                            system[key] = item.attrib[attribute]
                elif name == "TimeCreated":
                    if "SystemTime" in item.attrib:
                        system["systemTime"] = item.attrib["SystemTime"]
                elif name == "Execution":
                    for attribute, key in (("ProcessID", "processID"), ("ThreadID", "threadID")):
                        if attribute in item.attrib:
                            system[key] = item.attrib[attribute]
                elif name == "Correlation" or name == "Security" and not text:
                    continue
                elif text:
                    if name == "Level":
                        level = text
                    elif name == "Keywords":
                        keywords = text
                    system[_lower_first(name)] = text
            elif section == "EventData":
                if text in _EMPTY or not text:
                    continue
                value = _clean(text)
                named = item.attrib.get("Name")
                if name == "Data" and named:
                    key = _lower_first(named)
                    eventdata["auditPolicyChangesId" if key == "auditPolicyChanges" else key] = (
                        value
                    )
                elif name == "Data":
                    if value:
                        joined.append(value)
                else:
                    eventdata[_lower_first(name)] = value
            else:
                extra_name = section
                for leaf in item.iter():
                    leaf_text = leaf.text or ""
                    if leaf is item and len(item):
                        continue
                    if leaf_text and leaf_text not in _EMPTY:
                        extra[_lower_first(_local(leaf.tag))] = _clean(leaf_text)
    if level is not None and keywords is not None:
        system["severityValue"] = severity(level, keywords)
    if message is not None:
        system["message"] = f'"{message}"'
    win: dict[str, Any] = {"system": system}
    if joined:
        eventdata["data"] = ", ".join(joined)
    if eventdata:
        win["eventdata"] = eventdata
    if extra_name is not None:
        win[_lower_first(extra_name)] = extra
    return {"win": win}


def decode_winevt(info: EventInfo, message: str, state: AgentState) -> bool:
    """Queue f: flatten the event and decode it as JSON under ``windows_eventchannel``."""
    try:
        received = json.loads(message)
    except ValueError:
        return False
    if not isinstance(received, dict) or not isinstance(received.get("Event"), str):
        return False
    rendered = received.get("Message")
    event = flatten(received["Event"], rendered if isinstance(rendered, str) else None)
    if event is None:
        return False
    info.full_log = info.log = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    info.log_lower = info.log.lower()
    info.log_after_parent = info.log_after_prematch = info.log
    info.program_name = None
    info.timestamp = None
    info.decoder = WINEVT_DECODER
    json_fields(WINEVT_DECODER, info, event)
    return True

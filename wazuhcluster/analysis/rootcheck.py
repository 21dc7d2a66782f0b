"""Queue ``9``: rootcheck findings (policy violations, suspicious files, rootkit traces).

Every message goes to the rules with decoder ``rootcheck`` and two fields, ``title`` and
``file``, cut from the text as Wazuh does; the finding is remembered per agent with its first
and last time seen (its identity is its exact text), and a finding never seen before counts
as first-time-seen for rules with ``<if_fts/>``.
"""

from __future__ import annotations

from wazuhcluster.analysis.agentstate import AgentState
from wazuhcluster.analysis.builtin import BuiltinDecoder
from wazuhcluster.analysis.eventinfo import EventInfo

ROOTCHECK_DECODER = BuiltinDecoder("rootcheck")


def title_of(text: str) -> str | None:
    """The finding's title: before `` {``, after ``System Audit: ``, up to the first
    ``. ``, with a ``File '<path>' `` fragment shortened to ``File ``."""
    title = text
    brace = title.find(" {")
    if brace == 0:
        return None
    if brace > 0:
        title = title[:brace]
    audit = title.find("System Audit: ")
    dash = title.find(" - ")
    if audit >= 0 and (dash < 0 or audit < dash):
        title = title[audit + 14 :]
    stop = title.find(". ")
    if stop >= 0:
        title = title[: stop + 1]
    for marker in ("File '", "file '"):
        start = title.find(marker)
        if start < 0:
            continue
        end = title.find("' ", start + 6)
        if end >= 0:
            title = title[: start + 5] + title[end + 2 :]
        break
    return title


def file_of(text: str) -> str | None:
    """The file a finding names: after ``File: `` up to ``. ``, or inside ``File '...'``."""
    found = text.find("File: ")
    if found >= 0:
        rest = text[found + 6 :]
        stop = rest.find(". ")
        if stop >= 0:
            return rest[:stop]
        if rest.endswith("."):
            return rest[:-1]
        return None
    for marker in ("File '", "file '"):
        found = text.find(marker)
        if found < 0:
            continue
        rest = text[found + 6 :]
        stop = rest.find("' ")
        if stop >= 0:
            return rest[:stop]
        if rest.endswith("'"):
            return rest[:-1]
        return None
    return None


def decode_rootcheck(info: EventInfo, message: str, state: AgentState) -> bool:
    """Queue 9: remember the finding, then on to the rules with its title and file."""
    new = state.rootcheck_seen(info.agent_id, message, info.time)
    info.decoder = ROOTCHECK_DECODER
    if new:
        info.fts_new = True
    title = title_of(message)
    if title is not None:
        info.add_field("title", title)
    path = file_of(message)
    if path is not None:
        info.add_field("file", path)
    return True

"""Wazuh's built-in ``<compiled_rule>`` checks, re-expressed as Python predicates."""

from __future__ import annotations

from collections.abc import Callable

from wazuhcluster.analysis.eventinfo import EventInfo

_CRAWLER_PREFIXES = (
    "66.249.",
    "72.14.",
    "209.85.",
    "65.55.",
    "207.46.",
    "74.6.",
    "72.30.",
    "67.195.",
)


def comp_srcuser_dstuser(event: EventInfo) -> bool:
    """True unless both users are known and differ."""
    src = event.static.get("srcuser")
    dst = event.static.get("dstuser")
    return src is None or dst is None or src == dst


def check_id_size(event: EventInfo) -> bool:
    """True when the id field has at least 10 characters."""
    value = event.static.get("id")
    return value is not None and len(value) >= 10


def comp_mswin_targetuser_calleruser_diff(event: EventInfo) -> bool:
    """True when a Windows log's target account differs from its caller user."""
    log = event.log
    target_at = log.find("Target Account Name")
    caller_at = log.find("Caller User Name")
    if target_at < 0 or caller_at < 0:
        return False
    target_colon = log.find(":", target_at)
    caller_colon = log.find(":", caller_at)
    if target_colon < 0 or caller_colon < 0:
        return False
    target = log[target_colon + 1 :]
    caller = log[caller_colon + 1 :]
    for index, char in enumerate(target):
        if index >= len(caller) or char != caller[index]:
            return True
        if char == "\t" or (char == " " and target[index + 1 : index + 2] == " "):
            break
    return False


def is_simple_http_request(event: EventInfo) -> bool:
    """True for a URL of ``/`` or without a query string."""
    url = event.static.get("url")
    if url is None:
        return False
    return url == "/" or "?" not in url


def is_valid_crawler(event: EventInfo) -> bool:
    """True when the log starts with a well-known search-engine crawler address."""
    return event.log.startswith(_CRAWLER_PREFIXES)


COMPILED_RULES: dict[str, Callable[[EventInfo], bool]] = {
    "comp_srcuser_dstuser": comp_srcuser_dstuser,
    "check_id_size": check_id_size,
    "comp_mswin_targetuser_calleruser_diff": comp_mswin_targetuser_calleruser_diff,
    "is_simple_http_request": is_simple_http_request,
    "is_valid_crawler": is_valid_crawler,
}

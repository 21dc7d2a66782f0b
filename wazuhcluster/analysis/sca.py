"""Queue ``p``: Security Configuration Assessment (SCA) results.

Every message is stored (the agent's policies, each check's result, each scan's summary) and
goes to the rules with decoder ``sca``; the ``sca.*`` fields the stock rules test are filled
only when there is something to say, as in Wazuh:

- a ``check`` whose result differs from the stored one (a check never seen counts as
  different, without ``sca.check.previous_result``); a missing result is ``not applicable``;
- a ``summary`` whose results hash differs from the stored scan's, unless it is the first scan
  after the agent's SCA module started, or when it carries ``force_alert``;
- ``policies`` forgets the policies the agent no longer scans; ``dump_end`` ends a resend
  and forgets the policy's checks it did not refresh.

After a summary, the stored results of the policy's checks are hashed as the agent hashes
its own; when they differ from the summary's ``hash`` (or none is stored), the agent is asked
to resend the policy's checks (``#!-sca-dump:<policy>:<first scan 0|1>``), as Wazuh does:
this is how a manager that lost or never had an agent's results (a new node, a restored
database) catches up. After a resend (``dump_end``) the stored results are hashed again and
compared with the last summary's hash: still different, the agent is asked once more
(``#!-sca-dump:<policy>:0``), as Wazuh's HandleDumpEvent does. A summary whose policy file
(``hash_file``) changed drops the policy's stored checks and asks for them as a first scan
(``#!-sca-dump:<policy>:1``).

A summary lacking any field Wazuh requires of it (``policy_id``, ``name``, ``file``,
``hash`` and ``hash_file`` as text; ``scan_id`` a number not below 0; ``start_time``,
``end_time``, ``passed``, ``failed``, ``invalid``, ``total_checks`` and ``score``) is
refused as malformed with the field named, as Wazuh's HandleScanInfo does: nothing stored,
nothing asked of the agent, no alert.

One summary can ask twice, back to back, as Wazuh 4.14's HandleScanInfo does (it queues
each request as it meets its reason, and one thread sends them in order without a pause):
a first-scan summary of a policy with no stored scan asks for a first scan, then asks again
when the stored results do not give its hash; a changed policy file asks for a first scan,
then, its checks just dropped, asks again (``1`` on a first scan, else ``0``).
"""

from __future__ import annotations

import json
from typing import Any

from wazuhcluster.analysis.agentstate import AgentState
from wazuhcluster.analysis.builtin import BuiltinDecoder, MalformedMessage, as_text
from wazuhcluster.analysis.eventinfo import EventInfo

SCA_DECODER = BuiltinDecoder("sca")
_TARGETS = ("file", "directory", "registry", "process", "command")
#: A summary's fields that must be text, and those that must merely be present (Wazuh 4.14's
#: HandleScanInfo checks them in this order).
_SUMMARY_TEXT = ("hash", "hash_file", "file", "name")
_SUMMARY_PRESENT = (
    "start_time",
    "end_time",
    "passed",
    "failed",
    "invalid",
    "total_checks",
    "score",
)


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:f}"


def _csv_array(text: str) -> str:
    """A comma list as the JSON array text Wazuh puts into the field."""
    return json.dumps([item for item in text.split(",") if item])


def _check(info: EventInfo, event: dict[str, Any], state: AgentState) -> None:
    check = event.get("check")
    if not isinstance(check, dict):
        return
    check_id = _number(check.get("id"))
    if check_id is None or not isinstance(check.get("title"), str):
        return
    result = check.get("result")
    if result is None:
        result = "not applicable"
    if not isinstance(result, str):
        return
    previous = state.sca_result(info.agent_id, check_id)
    state.sca_save_check(info.agent_id, check_id, result, event)
    if previous == result:
        return
    info.add_field("sca.type", "check")
    scan_id = _number(event.get("id"))
    if scan_id is not None:
        info.add_field("sca.scan_id", scan_id)
    if isinstance(event.get("policy"), str):
        info.add_field("sca.policy", event["policy"])
    info.add_field("sca.check.id", check_id)
    for name in ("title", "description", "rationale", "remediation"):
        if isinstance(check.get(name), str):
            info.add_field(f"sca.check.{name}", check[name])
    compliance = check.get("compliance")
    if isinstance(compliance, dict):
        for key, value in compliance.items():
            text = value if isinstance(value, str) else _number(value)
            if text is not None:
                info.add_field(f"sca.check.compliance.{key}", text)
    if isinstance(check.get("references"), str):
        info.add_field("sca.check.references", check["references"])
    for name in _TARGETS:
        if isinstance(check.get(name), str):
            info.add_field(f"sca.check.{name}", _csv_array(check[name]))
    info.add_field("sca.check.result", result)
    if isinstance(check.get("reason"), str):
        info.add_field("sca.check.reason", check["reason"])
    if previous is not None:
        info.add_field("sca.check.previous_result", previous)


def _summary_problem(event: dict[str, Any]) -> str | None:
    """Why a summary is malformed (the first field Wazuh would complain of), or None."""
    if not isinstance(event.get("policy_id"), str):
        return "field 'policy_id' must be a string"
    scan_id = event.get("scan_id")
    if isinstance(scan_id, bool) or not isinstance(scan_id, (int, float)):
        return "field 'scan_id' must be a number"
    if scan_id < 0:
        return "field 'scan_id' cannot be negative"
    for name in _SUMMARY_PRESENT:
        if name not in event:
            return f"field '{name}' not found"
    for name in _SUMMARY_TEXT:
        if not isinstance(event.get(name), str):
            return f"field '{name}' must be a string"
    return None


def _summary(info: EventInfo, event: dict[str, Any], state: AgentState) -> None:
    problem = _summary_problem(event)
    if problem is not None:
        raise MalformedMessage(f"SCA summary: {problem}")
    policy_id = event["policy_id"]
    # Wazuh tests the field's presence (the agent adds it only to a first scan's summary).
    first_scan = "first_scan" in event
    stored = state.sca_scan_hash(info.agent_id, policy_id)
    requests: list[int] = []
    if stored is None and first_scan and event["hash"]:
        requests.append(1)
    if state.sca_save_scan(info.agent_id, policy_id, event):
        # The policy file changed: its old checks are gone and the agent resends them all.
        requests.append(1)
    if state.sca_results_hash(info.agent_id, policy_id) != event["hash"]:
        requests.append(1 if first_scan else 0)
    for first in requests:
        state.send(info.agent_id, f"#!-sca-dump:{policy_id}:{first}")
    changed = (stored or "") != event["hash"] and not first_scan
    if not changed and "force_alert" not in event:
        return
    info.add_field("sca.type", "summary")
    scan_id = _number(event.get("scan_id"))
    if scan_id is not None:
        info.add_field("sca.scan_id", scan_id)
    for name, field in (("name", "sca.policy"), ("description", "sca.description")):
        if isinstance(event.get(name), str):
            info.add_field(field, event[name])
    info.add_field("sca.policy_id", policy_id)
    for name, field in (
        ("passed", "sca.passed"),
        ("failed", "sca.failed"),
        ("invalid", "sca.invalid"),
        ("total_checks", "sca.total_checks"),
    ):
        number = _number(event.get(name))
        if number is not None:
            info.add_field(field, number)
    score = event.get("score")
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        info.add_field("sca.score", as_text(int(score)))
    if isinstance(event.get("file"), str):
        info.add_field("sca.file", event["file"])


def _dump_end(agent_id: str, policy_id: str, scan_id: int, state: AgentState) -> None:
    """A resend ended: forget the checks it did not refresh, then check the results again
    against the last summary's hash; still different, ask for another resend (not a first
    scan), as Wazuh's manager does. Nothing stored on either side asks nothing."""
    state.sca_dump_end(agent_id, policy_id, scan_id)
    expected = state.sca_scan_hash(agent_id, policy_id)
    stored = state.sca_results_hash(agent_id, policy_id)
    if expected is not None and stored is not None and stored != expected:
        state.send(agent_id, f"#!-sca-dump:{policy_id}:0")


def decode_sca(info: EventInfo, message: str, state: AgentState) -> bool:
    """Queue p: store the message; fill the alert fields when a result changed."""
    try:
        event = json.loads(message)
    except ValueError:
        return False
    if not isinstance(event, dict):
        return False
    kind = event.get("type")
    info.decoder = SCA_DECODER
    if kind == "check":
        _check(info, event, state)
    elif kind == "summary":
        _summary(info, event, state)
    elif kind == "policies":
        policies = event.get("policies")
        if isinstance(policies, list):
            state.sca_keep_policies(info.agent_id, [str(p) for p in policies])
    elif kind == "dump_end":
        policy_id = event.get("policy_id")
        scan_id = event.get("scan_id")
        if isinstance(policy_id, str) and isinstance(scan_id, int):
            _dump_end(info.agent_id, policy_id, scan_id, state)
    else:
        return False
    return True

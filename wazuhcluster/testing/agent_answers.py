"""What a Wazuh 4.x agent answers to the manager's requests (``#!-req <counter> <payload>``),
for the agent simulator and tests.

A real agent hands ``<component> getconfig <section>`` and ``<component> getstate`` to the
component's local socket (``agent`` it answers itself): ``ok {json}`` for a configuration,
the component's ``{"error": 0, "data": {...}}`` for a state, ``err <text>`` otherwise (a
component without a socket on the agent gives the connect error, ``No such file or
directory``). This module answers the same way for the components a simulated agent has:
``agent`` (client, buffer, labels; state), ``logcollector`` (localfile; state) and ``com``
(active-response).
"""

from __future__ import annotations

import json
import time
from typing import Any

from attrs import define, field

#: The agent's state times (``W_AGENTD_STATE_TIME_FORMAT``).
STATE_TIME = "%Y-%m-%d %H:%M:%S"
#: The files a simulated agent's logcollector reads.
LOCALFILES = ("/var/log/syslog", "/var/log/auth.log")


@define
class AgentFacts:
    """What a simulated agent knows about itself when asked."""

    manager: str
    port: int
    protocol: str = "tcp"
    labels: tuple[str, ...] = ()
    started: float = 0.0
    now: float = 0.0
    last_keepalive: float = 0.0
    last_ack: float = 0.0
    events_sent: int = 0
    messages_sent: int = 0
    events_by_file: dict[str, tuple[int, int]] = field(factory=dict)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _when(seconds: float) -> str:
    return time.strftime(STATE_TIME, time.localtime(seconds)) if seconds else ""


def _agent_config(section: str, facts: AgentFacts) -> Any:
    if section == "client":
        return {
            "client": {
                "config-profile": "",
                "notify_time": 10,
                "time-reconnect": 60,
                "force_reconnect_interval": 0,
                "ip_update_interval": 0,
                "auto_restart": "yes",
                "remote_conf": "yes",
                "crypto_method": "aes",
                "server": [
                    {
                        "address": facts.manager,
                        "port": facts.port,
                        "max_retries": 5,
                        "retry_interval": 10,
                        "protocol": facts.protocol,
                    }
                ],
            }
        }
    if section == "buffer":
        return {"buffer": {"disabled": "no", "queue_size": 5000, "events_per_second": 500}}
    if section == "labels":
        labels = []
        for line in facts.labels:
            hidden = line.startswith("!")
            key, _, value = line.lstrip("!").strip('"').partition('":')
            labels.append({"key": key, "value": value, "hidden": "yes" if hidden else "no"})
        return {"labels": labels}
    return None


def _logcollector_files(facts: AgentFacts) -> list[dict[str, Any]]:
    files = []
    for location in LOCALFILES:
        events, size = facts.events_by_file.get(location, (0, 0))
        files.append(
            {
                "location": location,
                "events": events,
                "bytes": size,
                "targets": [{"name": "agent", "drops": 0}],
            }
        )
    return files


def _state(component: str, facts: AgentFacts) -> str:
    if component == "agent":
        data: dict[str, Any] = {
            "status": "connected",
            "last_keepalive": _when(facts.last_keepalive),
            "last_ack": _when(facts.last_ack),
            "msg_count": facts.events_sent,
            "msg_sent": facts.messages_sent,
            "msg_buffer": 0,
            "buffer_enabled": True,
        }
        return _compact({"error": 0, "data": data})
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(facts.started))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(facts.now))
    period = {"start": start, "end": end, "files": _logcollector_files(facts)}
    return _compact(
        {
            "error": 0,
            "remaining": False,
            "json_updated": False,
            "data": {"global": period, "interval": dict(period)},
        }
    )


def answer_request(payload: str, facts: AgentFacts) -> str:
    """The answer text (what follows ``#!-req <counter> ``) to one request ``payload``."""
    component, _, command = payload.partition(" ")
    verb, _, argument = command.partition(" ")
    if component not in ("agent", "logcollector", "com"):
        return "err No such file or directory"
    if verb == "getstate" and component in ("agent", "logcollector"):
        return _state(component, facts)
    if verb != "getconfig":
        return "err Unrecognized command"
    if not argument:
        return "err Could not get requested section"
    found: Any = None
    if component == "agent":
        found = _agent_config(argument, facts)
    elif component == "logcollector" and argument == "localfile":
        found = {
            "localfile": [
                {
                    "logformat": "syslog",
                    "location": location,
                    "target": ["agent"],
                    "ignore_binaries": "no",
                    "only-future-events": "yes",
                }
                for location in LOCALFILES
            ]
        }
    elif component == "com" and argument == "active-response":
        found = {
            "active-response": {
                "disabled": "no",
                "ca_store": ["etc/wpk_root.pem"],
                "ca_verification": "yes",
            }
        }
    if found is None:
        return "err Could not get requested section"
    return "ok " + _compact(found)

"""When a new agent may take the name or IP of a registered one: Wazuh's force rules.

:func:`replacement_refusal` is the rule check both the enrollment authority (1515 and
forwarded enrollments) and the API (``POST /agents`` with a ``force`` object) apply;
:func:`enroll_forced` is the API's serialized check-and-insert, run on the registry thread.
"""

from __future__ import annotations

import hmac

from wazuhcluster.config.auth_settings import ForceRules
from wazuhcluster.registry.keys import KeyEntry, key_hash
from wazuhcluster.registry.model import ANY_IP, NEVER_CONNECTED, Agent, DuplicateIP, DuplicateName
from wazuhcluster.registry.store import Registry


def replacement_refusal(
    agent: Agent, request_key_hash: str | None, rules: ForceRules, now: float
) -> str | None:
    """Why ``agent`` may not be replaced by a new enrollment, or None if it may."""
    if not rules.enabled:
        return f"Agent '{agent.id}' won't be removed because the force option is disabled."
    if rules.disconnected_time_enabled and agent.connection_status != NEVER_CONNECTED:
        if agent.connection_status != "disconnected" or agent.disconnection_time <= 0:
            return f"Agent '{agent.id}' can't be replaced since it is not disconnected."
        if now - agent.disconnection_time < rules.disconnected_time:
            return f"Agent '{agent.id}' has not been disconnected long enough to be replaced."
    if rules.after_registration_time > 0 and now - agent.register_time < (
        rules.after_registration_time
    ):
        return f"Agent '{agent.id}' doesn't comply with the registration time to be removed."
    if request_key_hash is not None and rules.key_mismatch:
        current = key_hash(KeyEntry(agent.id, agent.name, agent.ip, agent.key))
        if hmac.compare_digest(current, request_key_hash):
            return f"Agent '{agent.id}' key already exists on the manager."
    return None


class ReplacementRefused(Exception):
    """The force rules keep an agent that holds the name or IP asked for."""

    def __init__(self, duplicate: DuplicateName | DuplicateIP, reason: str) -> None:
        super().__init__(reason)
        self.duplicate = duplicate
        self.reason = reason


def enroll_forced(
    registry: Registry,
    name: str,
    ip: str,
    rules: ForceRules,
    now: float,
    agent_id: str | None = None,
    key: str | None = None,
) -> tuple[Agent, tuple[str, ...]]:
    """Register ``name``/``ip``, replacing the agents holding them if ``rules`` allow it
    (as authd: the IP holder first, then the name holder); return the new agent and the
    replaced ids. Raises :class:`ReplacementRefused` when a holder must stay. ``agent_id``
    and ``key`` insert the agent with its own (see :meth:`Registry.enroll`)."""
    replaced: list[str] = []
    holders = registry.find_holders(name, ip)
    by_ip = [agent for agent in holders if ip != ANY_IP and agent.ip == ip]
    by_name = [agent for agent in holders if agent.name == name and agent not in by_ip]
    for holder in by_ip + by_name:
        reason = replacement_refusal(holder, None, rules, now)
        if reason is not None:
            duplicate: DuplicateName | DuplicateIP = (
                DuplicateIP(ip, holder.id) if holder in by_ip else DuplicateName(name, holder.id)
            )
            raise ReplacementRefused(duplicate, reason)
        replaced.append(holder.id)
    agent = registry.enroll(name, ip, (), replace=replaced, key=key, agent_id=agent_id)
    return agent, tuple(replaced)

"""The master's enrollment decision: password, version, groups, duplicates, force rules.

:func:`decide_enrollment` is synchronous and runs on the registry thread (it reads and
writes the :class:`~wazuhcluster.registry.store.Registry`), so the checks and the insert
form one serialized step: two agents racing for the same name cannot both win.
:class:`EnrollmentAuthority` wraps it for the reactor; its :meth:`register` is the
``register(request, source_ip)`` callable the master gives the 1515 server, and the one
the master's cluster responder calls for requests forwarded by workers.

The checks and their order follow wazuh-authd 4.14 (``w_auth_parse_data``,
``w_auth_validate_data``, ``w_auth_replace_agent``); replies use its texts.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.agents.enrollment import (
    INVALID_PASSWORD,
    INVALID_VERSION,
    SOURCE_IP,
    EnrollmentError,
    EnrollmentRequest,
    error_reply,
    key_reply,
    parse_reply,
    version_is_newer,
)
from wazuhcluster.config.auth_settings import AuthSettings, ForceRules
from wazuhcluster.registry.keys import KeyEntry, key_hash
from wazuhcluster.registry.model import (
    ANY_IP,
    NEVER_CONNECTED,
    Agent,
    DuplicateIP,
    DuplicateName,
    InvalidValue,
    UnknownGroup,
)
from wazuhcluster.registry.service import AsyncRegistry
from wazuhcluster.registry.store import Registry

log = Logger()


@frozen
class EnrollmentPolicy:
    """What the master checks; ``password`` None means no password is required."""

    password: str | None = None
    use_source_ip: bool = False
    force: ForceRules = ForceRules()
    allow_higher_versions: bool = False
    manager_version: str = WAZUH_VERSION
    manager_name: str | None = None

    @classmethod
    def from_settings(
        cls, settings: AuthSettings, password: str | None, manager_name: str | None = None
    ) -> EnrollmentPolicy:
        """The policy for an ``<auth>`` section and the loaded password."""
        return cls(
            password=password if settings.use_password else None,
            use_source_ip=settings.use_source_ip,
            force=settings.force,
            allow_higher_versions=settings.allow_higher_versions,
            manager_name=manager_name,
        )


@frozen
class EnrollmentOutcome:
    """The result of one decision: the new agent, or the refusal reason.

    ``replaced`` lists ids removed by the force rules (the master must tell the
    workers, as for any deletion); ``notes`` explains replacements for the log.
    """

    agent: Agent | None = None
    error: str | None = None
    replaced: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def reply(self) -> str:
        """The line for the agent: ``OSSEC K:'...'`` or ``ERROR: ...``."""
        if self.agent is not None:
            agent = self.agent
            return key_reply(KeyEntry(agent.id, agent.name, agent.ip, agent.key))
        return error_reply(self.error or "Internal manager error")


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


def decide_enrollment(
    registry: Registry,
    request: EnrollmentRequest,
    source_ip: str,
    policy: EnrollmentPolicy,
    now: float,
) -> EnrollmentOutcome:
    """Check ``request`` and, if it passes, register the agent (see module docstring)."""
    if policy.password is not None:
        given = (request.password or "").encode("utf-8")
        if request.password is None or not hmac.compare_digest(
            given, policy.password.encode("utf-8")
        ):
            return EnrollmentOutcome(error=INVALID_PASSWORD)
    if (
        request.version is not None
        and not policy.allow_higher_versions
        and version_is_newer(request.version, policy.manager_version)
    ):
        return EnrollmentOutcome(error=INVALID_VERSION)

    if request.ip == SOURCE_IP or (request.ip is None and policy.use_source_ip):
        ip = source_ip
    else:
        ip = request.ip or ANY_IP

    missing = registry.missing_groups(request.groups)
    if missing:
        return EnrollmentOutcome(error=f"Invalid group: {missing[0]}")

    holders = registry.find_holders(request.name, ip)
    replaced: list[str] = []
    notes: list[str] = []
    ip_holder = next((agent for agent in holders if ip != ANY_IP and agent.ip == ip), None)
    if ip_holder is not None:
        refusal = replacement_refusal(ip_holder, request.key_hash, policy.force, now)
        if refusal is not None:
            log.warn("Duplicate IP '{ip}', rejecting enrollment. {why}", ip=ip, why=refusal)
            return EnrollmentOutcome(error=f"Duplicate IP: {ip}")
        replaced.append(ip_holder.id)
        notes.append(
            f"Duplicate IP '{ip}'. Removing old agent '{ip_holder.name}' ({ip_holder.id})."
        )

    if policy.manager_name is not None and request.name == policy.manager_name:
        return EnrollmentOutcome(error=f"Invalid agent name: {request.name}")

    holder = next((agent for agent in holders if agent.name == request.name), None)
    if holder is not None and holder.id not in replaced:
        refusal = replacement_refusal(holder, request.key_hash, policy.force, now)
        if refusal is not None:
            log.warn(
                "Duplicate name '{name}', rejecting enrollment. {why}",
                name=request.name,
                why=refusal,
            )
            return EnrollmentOutcome(error=f"Duplicate agent name: {request.name}")
        replaced.append(holder.id)
        notes.append(f"Duplicate name. Removing old agent '{holder.name}' ({holder.id}).")

    try:
        agent = registry.enroll(request.name, ip, request.groups, replace=replaced)
    except DuplicateName:
        return EnrollmentOutcome(error=f"Duplicate agent name: {request.name}")
    except DuplicateIP:
        return EnrollmentOutcome(error=f"Duplicate IP: {ip}")
    except UnknownGroup as error:
        return EnrollmentOutcome(error=f"Invalid group: {error.name}")
    except InvalidValue as error:
        if error.what == "IP":
            return EnrollmentOutcome(error=f"Invalid IP: {ip}")
        return EnrollmentOutcome(error=f"Internal manager error adding agent: {request.name}")
    return EnrollmentOutcome(agent=agent, replaced=tuple(replaced), notes=tuple(notes))


class EnrollmentAuthority:
    """The master's ``register``: decisions on the registry thread, results observed.

    ``on_outcome(outcome, source_ip)`` (optional) runs on the reactor after every
    decision; the master uses it to push new keys and removals to the workers.
    """

    def __init__(
        self,
        registry: AsyncRegistry,
        policy: EnrollmentPolicy,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[EnrollmentOutcome, str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.clock = clock
        self.on_outcome = on_outcome

    def decide(self, request: EnrollmentRequest, source_ip: str) -> Deferred[EnrollmentOutcome]:
        """Decide one request; the Deferred fires once client.keys holds the new agent."""
        policy, now = self.policy, self.clock()
        decided = self.registry.write(
            lambda registry: decide_enrollment(registry, request, source_ip, policy, now)
        )
        return decided.addCallback(self._observe, request, source_ip)

    def _observe(
        self, outcome: EnrollmentOutcome, request: EnrollmentRequest, source_ip: str
    ) -> EnrollmentOutcome:
        """Log the outcome and tell ``on_outcome``."""
        for note in outcome.notes:
            log.info("{note}", note=note)
        if outcome.agent is not None:
            log.info(
                "Agent key generated for '{name}' (requested by {ip})",
                name=request.name,
                ip=source_ip,
            )
        else:
            log.info(
                "Enrollment of '{name}' from {ip} refused: {reason}",
                name=request.name,
                ip=source_ip,
                reason=outcome.error,
            )
        if self.on_outcome is not None:
            self.on_outcome(outcome, source_ip)
        return outcome

    def register(self, request: EnrollmentRequest, source_ip: str) -> Deferred[str]:
        """The ``register`` callable for :class:`EnrollmentServerFactory`: the reply line."""
        return self.decide(request, source_ip).addCallback(lambda outcome: outcome.reply())

    def undelivered(self, request: EnrollmentRequest, reply: str) -> Deferred[list[str]]:
        """Remove an agent whose key never reached it (the 1515 ``undelivered`` hook)."""
        try:
            entry = parse_reply(reply)
        except EnrollmentError:
            return succeed([])
        log.warn(
            "Agent key not saved for '{name}'; removing agent {id}", name=entry.name, id=entry.id
        )
        return self.registry.write(lambda registry: registry.remove_agents([entry.id]))

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
import sqlite3
import time
from collections.abc import Callable

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

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
from wazuhcluster.config.auth_settings import AuthSettings, ForceRules, RateLimit
from wazuhcluster.registry.groups import DEFAULT_GROUP
from wazuhcluster.registry.keys import KeyEntry
from wazuhcluster.registry.model import (
    ANY_IP,
    NEVER_CONNECTED,
    Agent,
    DuplicateIP,
    DuplicateName,
    InvalidValue,
    UnknownGroup,
    normalize_ip,
)
from wazuhcluster.registry.replacement import replacement_refusal
from wazuhcluster.registry.service import AsyncRegistry
from wazuhcluster.registry.store import Registry
from wazuhcluster.util.logs import ClusterLog

log = Logger()
#: What cluster.log must show (the twisted ``log`` above keeps INFO lines out of it).
_log = ClusterLog("Master", "Enrollment")


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
    #: The agent was already registered by an earlier request whose answer it never got
    #: (see :func:`unanswered_retry`): its key is sent again, nothing changed.
    resent: bool = False

    def reply(self) -> str:
        """The line for the agent: ``OSSEC K:'...'`` or ``ERROR: ...``."""
        if self.agent is not None:
            agent = self.agent
            return key_reply(KeyEntry(agent.id, agent.name, agent.ip, agent.key))
        return error_reply(self.error or "Internal manager error")


def unanswered_retry(
    holder: Agent, request: EnrollmentRequest, ip: str, refusal: str | None
) -> bool:
    """Whether ``request`` is the retry of an enrollment that was committed but never
    answered (the master died, or the link dropped, between the commit and the reply).

    It is when the force rules would refuse to replace ``holder`` (``refusal``: otherwise the
    ordinary replacement is made), ``holder`` has never connected (no node has seen its key
    in use), and the request asks for what ``holder`` got: the same IP as resolved for this
    request and the same groups. The password was checked before, as for any request.
    """
    if refusal is None or holder.connection_status != NEVER_CONNECTED:
        return False
    wanted = tuple(dict.fromkeys(request.groups)) or (DEFAULT_GROUP,)
    return normalize_ip(ip) == holder.ip and wanted == holder.groups


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
    holder = next((agent for agent in holders if agent.name == request.name), None)
    if holder is not None:
        refusal = replacement_refusal(holder, request.key_hash, policy.force, now)
        if unanswered_retry(holder, request, ip, refusal):
            return EnrollmentOutcome(
                agent=holder,
                resent=True,
                notes=(
                    f"Agent '{holder.name}' ({holder.id}) enrolled again before it ever "
                    "connected: its key is sent again.",
                ),
            )
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


class EnrollmentRates:
    """Enrollment rate limits: per source address and overall (``<auth><rate_limit>``).

    Each is a token bucket holding ``max`` requests that refills at ``max`` per
    ``timeframe`` seconds: a burst of ``max`` passes at once, then the steady rate. 0 turns a
    limit off. Every request counts (refused or not, so guessing passwords costs the same);
    one that the address limit refuses does not spend the overall budget, so one noisy
    address cannot lock every other one out.
    """

    #: How many addresses are remembered before those with a full bucket are forgotten.
    PRUNE_AT = 4096

    def __init__(self, limits: RateLimit, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self._addresses: dict[str, tuple[float, float]] = {}
        self._overall: tuple[float, float] | None = None
        #: Who is being refused now (each is logged once until it is let through again).
        self._refusing: set[str] = set()

    def _take(
        self, state: tuple[float, float] | None, capacity: int, now: float
    ) -> tuple[bool, tuple[float, float]]:
        """Refill a bucket up to ``now`` and take one token if there is one."""
        tokens, then = state if state is not None else (float(capacity), now)
        rate = capacity / self.limits.timeframe
        tokens = min(float(capacity), tokens + max(0.0, now - then) * rate)
        if tokens >= 1.0:
            return True, (tokens - 1.0, now)
        return False, (tokens, now)

    def check(self, source_ip: str) -> str | None:
        """Count one request from ``source_ip``; the refusal reason, or None to go on."""
        now = self.clock()
        limits = self.limits
        if limits.max_per_ip > 0:
            if len(self._addresses) > self.PRUNE_AT:
                self._prune(now)
            allowed, self._addresses[source_ip] = self._take(
                self._addresses.get(source_ip), limits.max_per_ip, now
            )
            if not allowed:
                return self._refuse(
                    source_ip, f"Too many enrollment requests from {source_ip}, try again later"
                )
        if limits.max_total > 0:
            allowed, self._overall = self._take(self._overall, limits.max_total, now)
            if not allowed:
                return self._refuse("", "Too many enrollment requests, try again later")
        self._allowed(source_ip)
        return None

    def _refuse(self, who: str, reason: str) -> str:
        if who not in self._refusing:
            self._refusing.add(who)
            limits = self.limits
            rule = f"<max_per_ip> {limits.max_per_ip}" if who else f"<max_total> {limits.max_total}"
            _log.warn(
                "Enrollment rate limit reached ({rule} per {timeframe:g} s): refusing "
                "{whom} until the rate falls.",
                rule=rule,
                timeframe=limits.timeframe,
                whom=f"requests from {who}" if who else "every request",
            )
        return reason

    def _allowed(self, source_ip: str) -> None:
        for who in (source_ip, ""):
            if who in self._refusing:
                self._refusing.discard(who)
                _log.info(
                    "Enrollment requests {whom} are accepted again.",
                    whom=f"from {who}" if who else "overall",
                )

    def _prune(self, now: float) -> None:
        """Forget addresses whose bucket is full again (they are as if never seen)."""
        capacity = self.limits.max_per_ip
        rate = capacity / self.limits.timeframe
        self._addresses = {
            ip: (tokens, then)
            for ip, (tokens, then) in self._addresses.items()
            if tokens + (now - then) * rate < capacity
        }


def describe_storage_error(error: BaseException) -> str:
    """A short, operator-readable reason for a failed registry write (disk full, read-only)."""
    if isinstance(error, sqlite3.Error):
        # Notes carry what the file system said (see registry.store.note_file_system_reason).
        notes = "".join(f": {note}" for note in getattr(error, "__notes__", ()))
        return f"the agent database cannot be written ({error}{notes})"
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return f"a registry file cannot be written: {error.strerror or error}{where}"
    return f"{type(error).__name__}: {error}"


class OutcomeRefused(Exception):
    """``on_outcome`` could not complete a decision (e.g. the change could not be made
    durable): the agent is refused with this message instead of getting its key."""


class EnrollmentAuthority:
    """The master's ``register``: decisions on the registry thread, results observed.

    ``on_outcome(outcome, source_ip)`` (optional) runs on the reactor after every
    decision; the master uses it to push new keys and removals to the workers. When it
    returns a Deferred, the reply waits for it: the master answers ``OSSEC K:`` only once
    the key is usable on every node (or the bounded wait for the workers has passed).
    ``rates`` (optional) limits how often enrollments may be asked for.
    """

    def __init__(
        self,
        registry: AsyncRegistry,
        policy: EnrollmentPolicy,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[EnrollmentOutcome, str], object] | None = None,
        rates: EnrollmentRates | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.clock = clock
        self.on_outcome = on_outcome
        self.rates = rates

    def decide(self, request: EnrollmentRequest, source_ip: str) -> Deferred[EnrollmentOutcome]:
        """Decide one request; the Deferred fires once client.keys holds the new agent (and
        whatever ``on_outcome`` waits for is done)."""
        policy, now = self.policy, self.clock()
        decided = self.registry.write(
            lambda registry: decide_enrollment(registry, request, source_ip, policy, now)
        )
        return decided.addCallback(self._observe, request, source_ip)

    def _observe(
        self, outcome: EnrollmentOutcome, request: EnrollmentRequest, source_ip: str
    ) -> EnrollmentOutcome | Deferred[EnrollmentOutcome]:
        """Log the outcome and tell ``on_outcome`` (waiting for it if it returns a Deferred)."""
        for note in outcome.notes:
            log.info("{note}", note=note)
        if outcome.agent is not None:
            log.info(
                "Agent key {what} for '{name}' (requested by {ip})",
                what="sent again" if outcome.resent else "generated",
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
        if self.on_outcome is None:
            return outcome
        waiting = self.on_outcome(outcome, source_ip)
        if not isinstance(waiting, Deferred):
            return outcome

        def waited(result: object) -> EnrollmentOutcome:
            if isinstance(result, Failure):
                if result.check(OutcomeRefused):
                    return EnrollmentOutcome(error=str(result.value))
                _log.failure("Waiting for the key to reach every node failed", result)
            return outcome

        return waiting.addBoth(waited)

    def register(self, request: EnrollmentRequest, source_ip: str) -> Deferred[str]:
        """The ``register`` callable for :class:`EnrollmentServerFactory`: the reply line.

        Never fails: a registry that cannot be written (disk full, read-only) is an ERROR
        in cluster.log and a refusal that says so to the agent."""
        if self.rates is not None:
            refusal = self.rates.check(source_ip)
            if refusal is not None:
                return succeed(error_reply(refusal))
        replied = self.decide(request, source_ip).addCallback(lambda outcome: outcome.reply())
        return replied.addErrback(self._write_failed, request, source_ip)

    def _write_failed(self, failure: Failure, request: EnrollmentRequest, source_ip: str) -> str:
        """The registry could not be written: say why, and refuse the agent clearly."""
        why = describe_storage_error(failure.value)
        _log.error(
            "Could not enroll '{name}' (requested by {ip}): {why}. The agent is refused and "
            "may retry; enrollment works again once the registry can be written.",
            name=request.name,
            ip=source_ip,
            why=why,
        )
        return error_reply(
            f"Internal manager error adding agent: {request.name} (the manager could not "
            "store it, try again later)"
        )

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

"""The master as the registry's authority: enrollment, key pushes and agent/group management.

Enrollment requests reach the master from its own 1515 listener or forwarded by a worker;
either way the registry decides, client.keys is rewritten, and the new key (or removal) is
pushed to every worker at once, so an agent can connect anywhere right after enrolling.
Management requests (list/delete agents, groups, assignments) come from any node's control
socket and are answered here.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agents.enrollment import (
    EnrollmentError,
    EnrollmentRequest,
    EnrollmentServerFactory,
    parse_request,
)
from wazuhcluster.agents.enrollment_tls import enrollment_listener, ensure_manager_certificate
from wazuhcluster.api.interfaces import IRegistryFeature
from wazuhcluster.config.auth_settings import AuthSettings, load_password
from wazuhcluster.config.home import Home
from wazuhcluster.control.commands import ControlError
from wazuhcluster.failover.interfaces import IDurableAgents
from wazuhcluster.master.enrollment_authority import (
    EnrollmentAuthority,
    EnrollmentOutcome,
    EnrollmentPolicy,
    EnrollmentRates,
    OutcomeRefused,
    describe_storage_error,
)
from wazuhcluster.master.interfaces import IManager, IMasterNode
from wazuhcluster.master.workers import WorkerLink
from wazuhcluster.registry.model import (
    Agent,
    DurableAgent,
    RegistryError,
    format_agent_id,
    parse_agent_id,
)
from wazuhcluster.registry.service import AsyncRegistry, RegistryService
from wazuhcluster.registry.store import RegistryFiles
from wazuhcluster.util.background import BackgroundWork, OnStop
from wazuhcluster.util.interfaces import INodeReactor
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.tasks import CallOnStop, PeriodicTask
from wazuhcluster.wire import registry as wire
from wazuhcluster.wire.features import LinkFeature

#: The most agents one management answer carries (AMP values are at most 64 KiB).
MAX_PAGE = 200
#: Most bytes of rows one listing answer carries (an AMP value holds at most 64 KiB).
PAGE_BYTES = 48 * 1024
#: The most entries one key push carries: added entries (about 130 bytes of JSON each) and
#: removed ids (at most 11 bytes each), so each value stays under AMP's 64 KiB.
PUSH_ADDED = 200
PUSH_REMOVED = 4000
#: How long key changes nobody waits for (deletions) are gathered before they are pushed:
#: long enough to batch a burst, far below the second in which every node must know them.
#: A new key an agent waits for goes out at once, or as soon as the push in flight is
#: acknowledged (what arrives meanwhile travels together: a burst still costs one push).
PUSH_DELAY = 0.05
#: How long an enrollment's answer waits for connected workers to acknowledge its key
#: (merged into their client.keys and usable by their agent channel). A worker that does
#: not answer in time is logged, and not waited for again until it has caught up.
KEYS_ACK_WAIT = 2.0

Action = Callable[[dict[str, Any]], Awaitable[Any]]


def agent_row(agent: Agent) -> dict[str, Any]:
    """The columns the control tool and the API show for an agent."""
    return {
        "id": agent.id,
        "name": agent.name,
        "ip": agent.address,
        "status": agent.connection_status,
        "version": agent.version or "unknown",
        "node_name": agent.node_name or "unknown",
        "groups": list(agent.groups),
        "register_ip": agent.ip,
        "os": {
            "name": agent.os_name,
            "version": agent.os_version,
            "major": agent.os_major,
            "minor": agent.os_minor,
            "codename": agent.os_codename,
            "platform": agent.os_platform,
            "arch": agent.os_arch,
            "uname": agent.os_uname,
        },
        "labels": agent.visible_labels(),
        "config_sum": agent.config_sum,
        "merged_sum": agent.merged_sum,
    }


def _strings(arguments: dict[str, Any], key: str) -> list[str]:
    value = arguments.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ControlError(f"{key} must be a list of strings")
    return value


def _text(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{key} is required")
    return value


@implementer(IRegistryFeature, IManager)
class MasterRegistry(LinkFeature[WorkerLink]):
    """Owns the registry service, the enrollment authority and listener, and key pushes."""

    def __init__(
        self,
        home: Home,
        auth: AuthSettings,
        node: IMasterNode,
        reactor: INodeReactor,
        registry_service: RegistryService | None = None,
        durable: IDurableAgents | None = None,
    ) -> None:
        self.home = home
        #: Where enrollments and deletions are made durable before they are acknowledged
        #: (etcd, on a master elected with ``<failover>``); None: the local registry only.
        self.durable = durable
        #: With ``<failover>``: rescans the synced files and publishes them to etcd, raising
        #: when etcd does not hold them (group writes are answered only after it).
        self.publish_files: Callable[[], Awaitable[None]] | None = None
        self.auth = auth
        self.node = node
        self.reactor = reactor
        self.log = ClusterLog("Master", "Registry")
        #: The registry's service; tests pass one whose ``registry`` runs synchronously.
        self.service = registry_service or RegistryService(
            reactor,
            home.var_db / "global.db",
            RegistryFiles(home.client_keys, home.shared, home.root / "var" / "multigroups"),
        )
        self._authority: EnrollmentAuthority | None = None
        #: The push being gathered for this reactor turn (see :meth:`push_keys`).
        self._outgoing_added: dict[str, dict[str, str]] = {}
        self._outgoing_removed: dict[str, None] = {}
        #: Who waits for the push being gathered, and whether one of them is an agent.
        self._outgoing_waiters: list[Deferred[None]] = []
        self._urgent = False
        self._push_call: IDelayedCall | None = None
        #: A push is out and not yet acknowledged by every worker (or timed out).
        self._in_flight = False
        #: Workers that missed :data:`KEYS_ACK_WAIT`, with the number of their pushes still
        #: unacknowledged: enrollments do not wait for them until that is back to 0.
        self._lagging: dict[str, int] = {}
        #: Key pushes to workers (cancelled at stop) and removals of undelivered agents
        #: (waited for: they write the registry).
        self.background = BackgroundWork(self.log, "registry background work")
        #: Called with (added entries, removed ids) after every change of the agents' keys,
        #: once client.keys holds it (the master's own agent channel).
        self.on_keys_changed: list[Callable[[list[dict[str, str]], list[str]], object]] = []
        self.actions: dict[str, Action] = {
            "list_agents": self._list_agents,
            "delete_agents": self._delete_agents,
            "list_groups": self._list_groups,
            "create_group": self._create_group,
            "delete_group": self._delete_group,
            "assign": self._assign,
            "unassign": self._unassign,
        }

    @property
    def registry(self) -> AsyncRegistry:
        """The running registry."""
        return self.service.registry

    @property
    def authority(self) -> EnrollmentAuthority:
        """The enrollment authority (built once the registry is running)."""
        if self._authority is None:
            password, generated = load_password(self.auth)
            if generated:
                self.log.info(
                    "Generated an enrollment password in {path}.", path=self.auth.password_file
                )
            policy = EnrollmentPolicy.from_settings(self.auth, password, socket.gethostname())
            self._authority = EnrollmentAuthority(
                self.registry,
                policy,
                self.reactor.seconds,
                on_outcome=self._outcome,
                rates=EnrollmentRates(self.auth.rate_limit, self.reactor.seconds),
            )
        return self._authority

    def enrollment_service(self) -> IService:
        """The 1515 listener of the master: its requests go straight to the authority."""
        ensure_manager_certificate(self.auth.ssl_manager_cert, self.auth.ssl_manager_key)
        factory = EnrollmentServerFactory(
            self._register, self.reactor, undelivered=self.undelivered
        )
        return enrollment_listener(self.reactor, self.auth, factory, self.log)

    def _register(self, request: EnrollmentRequest, source_ip: str) -> Deferred[str]:
        return self.authority.register(request, source_ip)

    def undelivered(self, request: EnrollmentRequest, reply: str) -> None:
        """Remove an agent whose key never reached it, and tell the workers."""
        removed = self.authority.undelivered(request, reply)

        def forget(ids: list[str]) -> Deferred[None] | None:
            if not ids:
                return None
            self.push_keys([], list(ids))
            if self.durable is None:
                return None
            return Deferred.fromCoroutine(self.durable.save([], list(ids)))

        removed.addCallback(forget)
        removed.addErrback(lambda failure: self.log.failure("Could not remove an agent", failure))
        self.background.track(removed, f"Removing undelivered agent {request.name!r}", OnStop.WAIT)

    def services(self) -> Iterable[IService]:
        """The registry (first, so it is open before anything uses it), the background work
        (stopped before the registry closes), the periodic rebuild of group files, and the 1515
        listener."""
        yield self.service
        yield self.background
        yield CallOnStop(self._cancel_push)
        yield PeriodicTask(
            "group files",
            self.node.timings.local_agent_groups,
            self.rebuild_group_files,
            self.reactor,
            self.log.child("Local agent-groups"),
        )
        if self.auth.listening:
            yield self.enrollment_service()

    def rebuild_group_files(self) -> Deferred[None]:
        """Rebuild merged.mg of every group and multigroup (unchanged files are left alone), so
        an operator's edit under etc/shared reaches the agents."""
        return self.registry.run(lambda registry: registry.rebuild_group_files())

    # --- key pushes -----------------------------------------------------------------------
    def _outcome(self, outcome: EnrollmentOutcome, source_ip: str) -> Deferred[None] | None:
        """Push an enrollment's changes; the answer waits until the new key is usable (and,
        with ``durable``, until etcd holds it)."""
        added = []
        if outcome.agent is not None:
            agent = outcome.agent
            added.append({"id": agent.id, "name": agent.name, "ip": agent.ip, "key": agent.key})
        removed = list(outcome.replaced)
        new = outcome.agent is not None and not outcome.resent
        if self.durable is not None and (new or removed):
            return Deferred.fromCoroutine(self._durable_outcome(outcome, added, removed))
        if added or removed:
            return self.push_and_wait(added, removed, urgent=outcome.agent is not None)
        return None

    async def _durable_outcome(
        self, outcome: EnrollmentOutcome, added: list[dict[str, str]], removed: list[str]
    ) -> None:
        """Store the enrollment in etcd (a fenced write: only while this node leads), then
        push it; when it cannot be stored the new agent is removed again and refused."""
        assert self.durable is not None
        agent = outcome.agent
        new = agent is not None and not outcome.resent
        records = [DurableAgent.of(agent).record()] if agent is not None and new else []
        # A new agent's id is the highest issued: the next one follows it.
        next_id = parse_agent_id(agent.id) + 1 if agent is not None and new else None
        try:
            await self.durable.save(records, removed, next_id=next_id)
        except Exception as error:
            name = agent.name if agent is not None else "?"
            self.log.error(
                "Enrollment of '{name}' could not be stored in etcd ({error}); it is undone "
                "and the agent refused.",
                name=name,
                error=str(error) or repr(error),
            )
            undone: list[str] = []
            if agent is not None and new:
                undone = list(await self.registry.remove_agents([agent.id]))
            if removed or undone:
                self.push_keys([], removed + undone)
            raise OutcomeRefused(
                f"Internal manager error adding agent: {name} (the cluster could not store "
                "it, try again later)"
            ) from None
        await self.push_and_wait(added, removed, urgent=agent is not None)

    def push_keys(self, added: list[dict[str, str]], removed: list[str]) -> None:
        """Tell this node's agent channel and every connected worker about new and removed
        agents, without waiting (gathered for :data:`PUSH_DELAY`; see :meth:`push_and_wait`)."""
        self.push_and_wait(added, removed)

    def push_and_wait(
        self, added: list[dict[str, str]], removed: list[str], urgent: bool = False
    ) -> Deferred[None]:
        """Tell this node's agent channel and every connected worker about new and removed
        agents; the Deferred fires once they all have (see below), never with an error.

        Changes travel together: those made while a push is out go in the next one, and
        changes nobody waits for are gathered for :data:`PUSH_DELAY` first; ``urgent`` ones
        (a key an agent is waiting for) go at the next reactor turn. So a burst of
        enrollments costs each node one rewrite of client.keys, not one per agent. The
        pending push holds the net effect: an id is either added or removed, and a worker
        applies removals before additions.

        The Deferred fires when the master's agent channel uses the keys and every worker
        connected when the push left has acknowledged it (merged and usable by its agent
        channel), or :data:`KEYS_ACK_WAIT` has passed (logged), whichever comes first.
        """
        for agent_id in removed:
            self._outgoing_added.pop(agent_id, None)
            self._outgoing_removed[agent_id] = None
        for entry in added:
            self._outgoing_removed.pop(entry["id"], None)
            self._outgoing_added[entry["id"]] = entry
        done: Deferred[None] = Deferred()
        self._outgoing_waiters.append(done)
        self._urgent = self._urgent or urgent
        self._schedule_push()
        return done

    def _schedule_push(self) -> None:
        """Send the pending push when its time has come (never two at once)."""
        if self._in_flight or not (self._outgoing_added or self._outgoing_removed):
            return
        delay = 0.0 if self._urgent else PUSH_DELAY
        call = self._push_call
        if call is not None and call.active():
            if delay == 0.0 and call.getTime() > self.reactor.seconds():
                call.reset(0.0)
            return
        self._push_call = self.reactor.callLater(delay, self._send_push)

    def _cancel_push(self) -> None:
        """The node is stopping: drop the push being gathered (workers get client.keys by
        the integrity sync anyway) and release whoever waits for it."""
        if self._push_call is not None and self._push_call.active():
            self._push_call.cancel()
        self._push_call = None
        waiters, self._outgoing_waiters = self._outgoing_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _send_push(self) -> None:
        """Tell the hooks, then send the pending push to every connected worker, in pieces
        that fit AMP values (removals first; the push never adds and removes the same id),
        and release its waiters once every node has it (or the wait is over)."""
        self._push_call = None
        added = list(self._outgoing_added.values())
        removed = list(self._outgoing_removed)
        waiters = self._outgoing_waiters
        self._outgoing_added, self._outgoing_removed = {}, {}
        self._outgoing_waiters, self._urgent = [], False
        if not added and not removed:
            for waiter in waiters:
                waiter.callback(None)
            return
        self._in_flight = True
        awaited: list[tuple[str | None, Deferred[Any]]] = []
        for hook in list(self.on_keys_changed):
            try:
                result = hook(added, removed)
            except Exception:
                self.log.failure("A keys-changed hook failed")
            else:
                if isinstance(result, Deferred):
                    awaited.append((None, result))
        pieces: list[tuple[list[dict[str, str]], list[str]]] = [
            ([], removed[i : i + PUSH_REMOVED]) for i in range(0, len(removed), PUSH_REMOVED)
        ]
        pieces += [(added[i : i + PUSH_ADDED], []) for i in range(0, len(added), PUSH_ADDED)]
        for link in self.node.workers:
            sent: list[Deferred[Any]] = []
            for piece_added, piece_removed in pieces:
                try:
                    call = link.protocol.callRemote(
                        wire.KeysUpdate, added=piece_added, removed=piece_removed
                    )
                except Exception as error:
                    self.log.warn(
                        "Could not push keys to {name}: {error}", name=link.name, error=error
                    )
                    break
                call.addErrback(self._push_failed, link.name)
                self.background.track(call, f"Key push to {link.name}")
                sent.append(call)
            if not sent:
                continue
            acknowledged = gatherResults(sent, consumeErrors=True)
            acknowledged.addBoth(self._acknowledged, link.name)
            if link.name in self._lagging:
                self._lagging[link.name] += 1
            else:
                awaited.append((link.name, acknowledged))
        self._wait_for(awaited, waiters, len(added))

    def _wait_for(
        self,
        awaited: list[tuple[str | None, Deferred[Any]]],
        waiters: list[Deferred[None]],
        count: int,
    ) -> None:
        """Release ``waiters`` once every awaited acknowledgement is in, or after
        :data:`KEYS_ACK_WAIT`; then let the next push go."""
        pending = {index for index in range(len(awaited))}
        timer: IDelayedCall | None = None

        def release() -> None:
            if timer is not None and timer.active():
                timer.cancel()
            self._in_flight = False
            for waiter in waiters:
                waiter.callback(None)
            self._schedule_push()

        def answered(_: object, index: int) -> None:
            if index in pending:
                pending.discard(index)
                if not pending:
                    release()

        def too_late() -> None:
            late = sorted({awaited[index][0] or "this node's agent channel" for index in pending})
            pending.clear()
            for name, _ in awaited:
                if name is not None and name in late:
                    self._lagging.setdefault(name, 1)
            self.log.warn(
                "New keys ({count}) not acknowledged by {late} within {wait:g} s; answering "
                "the enrollments anyway (agents reporting there may be refused until it "
                "applies them). Not waiting for it again until it has caught up.",
                count=count,
                late=", ".join(late),
                wait=KEYS_ACK_WAIT,
            )
            release()

        if not awaited:
            release()
            return
        timer = self.reactor.callLater(KEYS_ACK_WAIT, too_late)
        for index, (_, acknowledgement) in enumerate(awaited):
            acknowledgement.addBoth(answered, index)

    def _acknowledged(self, result: object, name: str) -> None:
        """A worker answered a push (or failed to): count a lagging worker's backlog down."""
        backlog = self._lagging.get(name)
        if backlog is not None:
            if backlog <= 1:
                del self._lagging[name]
                self.log.info("{name} acknowledges key pushes again.", name=name)
            else:
                self._lagging[name] = backlog - 1

    def _push_failed(self, failure: Failure, name: str) -> None:
        if failure.check(CancelledError):
            failure.raiseException()  # the node is stopping: let the tracker see it
        self.log.warn(
            "Could not push keys to {name}: {error}", name=name, error=failure.getErrorMessage()
        )

    # --- link commands -------------------------------------------------------------------
    def locator(self, link: WorkerLink) -> amp.CommandLocator:
        """Enrollment forwarding and relayed management for one worker."""
        return _RegistryLocator(self, link)

    async def forwarded_enrollment(self, link: WorkerLink, line: str, source_ip: str) -> str:
        """Decide an enrollment a worker forwarded; the reply line goes back to the agent."""
        try:
            request = parse_request(line)
        except EnrollmentError as error:
            return error.reply()
        self.log.info(
            "Enrollment of {name!r} forwarded by {worker} for {ip}.",
            name=request.name,
            worker=link.name,
            ip=source_ip,
        )
        reply: str = await self.authority.register(request, source_ip)
        return reply

    async def manage(self, action: str, arguments: dict[str, Any]) -> Any:
        """Run a management action; bad requests and registry refusals become ControlError."""
        handler = self.actions.get(action)
        if handler is None:
            raise ControlError(f"unknown action {action!r}")
        if not isinstance(arguments, dict):
            raise ControlError("arguments must be an object")
        try:
            return await handler(arguments)
        except RegistryError as error:
            raise ControlError(str(error)) from None
        except (sqlite3.Error, OSError) as error:
            # A full or read-only disk: an answer for the requester, the link stays up.
            why = describe_storage_error(error)
            self.log.error("Could not {action}: {why}.", action=action, why=why)
            raise ControlError(f"could not {action}: {why}") from None

    # --- actions ---------------------------------------------------------------------------
    async def _list_agents(self, arguments: dict[str, Any]) -> dict[str, Any]:
        statuses = set(_strings(arguments, "status"))
        nodes = set(_strings(arguments, "node"))
        offset = int(arguments.get("offset", 0))
        limit = min(int(arguments.get("limit", MAX_PAGE)), MAX_PAGE)
        agents = await self.registry.list_agents()
        chosen = [
            agent
            for agent in agents
            if (not statuses or agent.connection_status in statuses)
            and (not nodes or agent.node_name in nodes)
        ]
        # Rows differ in size (OS, labels): a page ends at the row count or at the byte
        # budget, whichever comes first; the caller asks again from where it stopped.
        page: list[dict[str, Any]] = []
        size = 0
        for agent in chosen[offset : offset + limit]:
            row = agent_row(agent)
            size += len(json.dumps(row)) + 2
            if page and size > PAGE_BYTES:
                break
            page.append(row)
        return {"agents": page, "total": len(chosen)}

    async def _delete_agents(self, arguments: dict[str, Any]) -> dict[str, Any]:
        ids = _strings(arguments, "ids")
        if self.durable is not None:
            # Gone from etcd first: a deletion the next master would not see is not done.
            try:
                durable_ids = [format_agent_id(parse_agent_id(agent_id)) for agent_id in ids]
            except ValueError as error:
                raise ControlError(str(error)) from None
            try:
                await self.durable.save([], durable_ids)
            except Exception as error:
                raise ControlError(
                    f"could not delete agents: etcd did not take the deletion ({error})"
                ) from None
        removed = await self.registry.remove_agents(ids)
        if removed:
            self.log.info("Removed agents {ids}.", ids=", ".join(removed))
            self.push_keys([], list(removed))
        return {"removed": list(removed), "not_found": sorted(set(ids) - set(removed))}

    async def _list_groups(self, arguments: dict[str, Any]) -> dict[str, Any]:
        groups = await self.registry.list_groups()
        return {"groups": [{"name": g.name, "count": g.agent_count} for g in groups]}

    async def _create_group(self, arguments: dict[str, Any]) -> dict[str, Any]:
        name = _text(arguments, "name")
        await self.registry.create_group(name)
        try:
            await self._files_durable()
        except Exception as error:
            await self.registry.delete_group(name)
            raise ControlError(
                f"group {name} not created: the cluster could not store it in etcd ({error})"
            ) from None
        self.log.info("Created group {name}.", name=name)
        return {"created": name}

    async def _files_durable(self) -> None:
        """With ``<failover>``, wait until etcd holds the synced files as they are now."""
        if self.publish_files is not None:
            await self.publish_files()

    async def _delete_group(self, arguments: dict[str, Any]) -> dict[str, Any]:
        name = _text(arguments, "name")
        moved = await self.registry.delete_group(name)
        try:
            await self._files_durable()
        except Exception as error:
            raise ControlError(
                f"group {name} deleted on this master but not in etcd ({error}): a new "
                "master would have it again; delete it again once etcd answers"
            ) from None
        self.log.info("Deleted group {name}.", name=name)
        return {"deleted": name, "agents_back_in_default": list(moved)}

    async def _assign(self, arguments: dict[str, Any]) -> dict[str, Any]:
        agent_id = _text(arguments, "agent")
        before = await self._before_group_change(agent_id)
        groups = await self.registry.assign(
            agent_id, _text(arguments, "group"), bool(arguments.get("replace"))
        )
        await self._store_groups(before, groups)
        return {"groups": list(groups)}

    async def _unassign(self, arguments: dict[str, Any]) -> dict[str, Any]:
        agent_id = _text(arguments, "agent")
        before = await self._before_group_change(agent_id)
        groups = await self.registry.unassign(agent_id, _text(arguments, "group"))
        await self._store_groups(before, groups)
        return {"groups": list(groups)}

    async def _before_group_change(self, agent_id: str) -> Agent | None:
        """The agent as it is before a group change (only needed to make it durable)."""
        if self.durable is None:
            return None
        return await self.registry.get_agent(agent_id)

    async def _store_groups(self, before: Agent | None, groups: tuple[str, ...]) -> None:
        """Store an agent's new group list in etcd; when etcd does not take it, put the old
        list back and say so (the change is not done)."""
        if self.durable is None or before is None or tuple(groups) == before.groups:
            return
        record = DurableAgent.of(before).record()
        record["groups"] = list(groups)
        try:
            await self.durable.save([record], [])
        except Exception as error:
            await self.registry.write(
                lambda registry: registry.set_groups(before.id, before.groups)
            )
            raise ControlError(
                f"could not change the groups of agent {before.id}: etcd did not take the "
                f"change ({error}); it is undone"
            ) from None


class _RegistryLocator(amp.CommandLocator):
    """The registry's commands for one worker link."""

    def __init__(self, feature: MasterRegistry, link: WorkerLink) -> None:
        self.feature = feature
        self.link = link

    @wire.EnrollAgent.responder
    async def enroll_agent(self, line: str, source_ip: str) -> dict[str, str]:
        """Decide a forwarded enrollment."""
        return {"reply": await self.feature.forwarded_enrollment(self.link, line, source_ip)}

    @wire.EnrollUndelivered.responder
    def enroll_undelivered(self, line: str, reply: str) -> dict[str, Any]:
        """Remove an agent whose key the worker could not deliver."""
        try:
            self.feature.undelivered(parse_request(line), reply)
        except EnrollmentError:
            pass
        return {}

    @wire.RelayManage.responder
    async def relay_manage(self, action: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A management request made on the worker."""
        return {"result": await self.feature.manage(action, arguments)}

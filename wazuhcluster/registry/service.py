"""The reactor's view of the registry: every call runs on one dedicated thread.

:class:`AsyncRegistry` never touches SQLite on the reactor thread. It hands each call to
a *runner* that executes functions one at a time, in order, on a single thread (a
:class:`~twisted.python.threadpool.ThreadPool` of size 1 in a node; a synchronous runner
in tests), so writes are serialized without locks. Writes that arrive together run as one
batch in one transaction (group commit), then the files derived from the registry
(client.keys, merged.mg) are brought up to date once for the batch; each write's Deferred
fires only when its change is committed and those files are on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from wazuhcluster.registry.interfaces import IAsyncRegistry
from wazuhcluster.registry.model import Agent, AgentInfoReport, AgentInfoResult, GroupInfo
from wazuhcluster.registry.store import Registry, RegistryFiles
from wazuhcluster.util.logs import ClusterLog

T = TypeVar("T")


class Runner(Protocol):
    """Runs a function on the registry thread and returns a Deferred of its result."""

    def __call__(self, function: Callable[[], T]) -> Deferred[T]:
        """Schedule ``function``; the Deferred fires on the reactor thread."""


def synchronous_runner(function: Callable[[], T]) -> Deferred[T]:
    """A runner for tests: call ``function`` now, in the calling thread."""
    return defer.maybeDeferred(function)


class ThreadRunner:
    """A runner backed by a one-thread pool, started and stopped with the node."""

    def __init__(self, reactor: IReactorFromThreads, name: str = "registry") -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name=name)

    def start(self) -> None:
        """Start the registry thread."""
        self.pool.start()

    def stop(self) -> None:
        """Stop the thread once queued calls are done (blocks until then)."""
        self.pool.stop()

    def __call__(self, function: Callable[[], T]) -> Deferred[T]:
        """Run ``function`` on the registry thread."""
        return threads.deferToThreadPool(self.reactor, self.pool, function)


#: A write waiting for the registry thread: the function and the Deferred of its caller.
_Waiting = tuple[Callable[[Registry], Any], "Deferred[Any]"]


@implementer(IAsyncRegistry)
class AsyncRegistry:
    """Deferred-returning facade over a :class:`Registry` (see module docstring)."""

    def __init__(self, registry: Registry, runner: Runner) -> None:
        self.registry = registry
        self.runner = runner
        #: Writes handed in but not yet taken by the registry thread (under _lock).
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self.log = ClusterLog("Master", "Registry")

    def run(self, function: Callable[[Registry], T]) -> Deferred[T]:
        """Run ``function(registry)`` on the registry thread (reads, or writes that
        need no derived files)."""
        registry = self.registry
        return self.runner(lambda: function(registry))

    def write(self, function: Callable[[Registry], T]) -> Deferred[T]:
        """Run a write; fire once it is committed and client.keys and the group files
        reflect it.

        Every write queues a job on the registry thread; the first job to run takes every
        write waiting at that moment and runs them in one transaction
        (:meth:`Registry.write_batch`): a burst of N enrollments costs one commit and one
        flush of the files instead of N. Later jobs of the burst find nothing left.
        """
        waiter: Deferred[T] = Deferred()
        with self._lock:
            self._waiting.append((function, waiter))
        job = self.runner(self._run_waiting)
        job.addCallback(self._settle)
        job.addErrback(self._job_failed)
        return waiter

    def _job_failed(self, failure: Failure) -> None:
        """The registry thread could not run a batch, or settling it failed (a bug): the
        writes it held stay waiting for the next job; say why."""
        self.log.failure("A registry write job failed", failure)

    def _run_waiting(
        self,
    ) -> tuple[list[_Waiting], list[tuple[Any, BaseException | None]], BaseException | None]:
        """Registry thread: run the writes waiting now as one batch."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        if not batch:
            return [], [], None
        try:
            outcomes, flush_error = self.registry.write_batch([function for function, _ in batch])
        except Exception as error:  # a bug, not a refusal: every caller must still hear back
            return batch, [(None, error)] * len(batch), None
        return batch, outcomes, flush_error

    @staticmethod
    def _settle(
        done: tuple[list[_Waiting], list[tuple[Any, BaseException | None]], BaseException | None],
    ) -> None:
        """Reactor side: fire each caller's Deferred with its value or error (a failed flush
        fails the writes that succeeded: their files are not on disk)."""
        batch, outcomes, flush_error = done
        for (_, waiter), (value, error) in zip(batch, outcomes, strict=True):
            if error is not None:
                waiter.errback(error)
            elif flush_error is not None:
                waiter.errback(flush_error)
            else:
                waiter.callback(value)

    # Convenience wrappers for the node glue and the control socket.

    def enroll(self, name: str, ip: str, groups: Sequence[str] = ()) -> Deferred[Agent]:
        """:meth:`Registry.enroll` without force rules (see the enrollment authority)."""
        return self.write(lambda registry: registry.enroll(name, ip, groups))

    def remove_agents(self, agent_ids: Sequence[str]) -> Deferred[list[str]]:
        """:meth:`Registry.remove_agents`."""
        ids = list(agent_ids)
        return self.write(lambda registry: registry.remove_agents(ids))

    def get_agent(self, agent_id: str) -> Deferred[Agent | None]:
        """:meth:`Registry.get_agent`."""
        return self.run(lambda registry: registry.get_agent(agent_id))

    def list_agents(self, **filters: Any) -> Deferred[list[Agent]]:
        """:meth:`Registry.list_agents` with the same keyword filters."""
        return self.run(lambda registry: registry.list_agents(**filters))

    def agent_nodes(self) -> Deferred[dict[str, str]]:
        """:meth:`Registry.agent_nodes`."""
        return self.run(lambda registry: registry.agent_nodes())

    def create_group(self, name: str) -> Deferred[None]:
        """:meth:`Registry.create_group`."""
        return self.write(lambda registry: registry.create_group(name))

    def delete_group(self, name: str) -> Deferred[list[str]]:
        """:meth:`Registry.delete_group`."""
        return self.write(lambda registry: registry.delete_group(name))

    def list_groups(self) -> Deferred[list[GroupInfo]]:
        """:meth:`Registry.list_groups`."""
        return self.run(lambda registry: registry.list_groups())

    def assign(self, agent_id: str, group: str, replace: bool = False) -> Deferred[tuple[str, ...]]:
        """:meth:`Registry.assign`."""
        return self.write(lambda registry: registry.assign(agent_id, group, replace))

    def unassign(self, agent_id: str, group: str) -> Deferred[tuple[str, ...]]:
        """:meth:`Registry.unassign`."""
        return self.write(lambda registry: registry.unassign(agent_id, group))

    def agent_groups(self) -> Deferred[tuple[dict[str, tuple[str, ...]], str]]:
        """The agent → groups table and its checksum, read in one call."""

        def read(registry: Registry) -> tuple[dict[str, tuple[str, ...]], str]:
            return registry.agent_groups(), registry.agent_groups_checksum()

        return self.run(read)

    def apply_agent_info(self, reports: Sequence[AgentInfoReport]) -> Deferred[AgentInfoResult]:
        """:meth:`Registry.apply_agent_info` (no derived files change)."""
        rows = list(reports)
        return self.run(lambda registry: registry.apply_agent_info(rows))

    def integrity_check(self) -> Deferred[list[str]]:
        """:meth:`Registry.integrity_check`."""
        return self.run(lambda registry: registry.integrity_check())

    def close(self) -> Deferred[None]:
        """Flush pending files and close the connection, on the registry thread."""

        def close(registry: Registry) -> None:
            registry.flush_files()
            registry.close()

        return self.run(close)


class RegistryService(Service):
    """Opens the registry and its thread when the node starts, closes both on stop.

    ``registry`` (an :class:`AsyncRegistry`) is usable once the service has started.
    Opening runs the schema migrations; it happens once, at start-up, before the node
    accepts any connection, so it is done directly rather than on the thread.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        database: Path,
        files: RegistryFiles | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reactor = reactor
        self.database = database
        self.files = files
        self.clock = clock
        self.runner: ThreadRunner | None = None
        self._registry: AsyncRegistry | None = None

    @property
    def registry(self) -> AsyncRegistry:
        """The running registry facade; raises RuntimeError before start."""
        if self._registry is None:
            raise RuntimeError("the registry service is not running")
        return self._registry

    def startService(self) -> None:
        """Open and migrate the database, write the derived files, start the thread."""
        store = Registry.open(self.database, self.files, self.clock)
        store.flush_files()
        self.runner = ThreadRunner(self.reactor)
        self.runner.start()
        self._registry = AsyncRegistry(store, self.runner)
        super().startService()

    def stopService(self) -> Deferred[None]:
        """Finish queued calls, flush files, close the database and stop the thread."""
        super().stopService()
        registry, runner = self._registry, self.runner
        self._registry = None
        if registry is None or runner is None:
            return defer.succeed(None)

        def stop_thread(result: object) -> object:
            runner.stop()
            return result

        closed = registry.close()
        closed.addBoth(stop_thread)
        return closed

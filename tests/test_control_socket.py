"""The control socket: a stale lock left by a killed node, failures to listen, bad input."""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError, ConnectError, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.helpers import short_temp_dir
from wazuhcluster.control.server import (
    ACCEPT_BACKLOG,
    ControlProtocol,
    ControlService,
    clear_stale_lock,
    lock_path,
)
from wazuhcluster.scripts.control import CONNECT_RETRY, connect_control
from wazuhcluster.util import fatal
from wazuhcluster.util.logs import ClusterLog, format_line
from wazuhcluster.wire.arguments import Json

#: Above Linux's largest possible pid (2**22): no process can have it.
DEAD_PID = 4_194_305


class _Backend:
    """A control backend that records what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def list_nodes(self) -> list[dict[str, str]]:
        self.calls.append(("list_nodes", None))
        return [{"name": "master"}]

    async def local_info(self) -> dict[str, str]:
        return {}

    async def manage(self, action: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((action, arguments))
        return {"ok": True}

    async def cluster_health(self) -> dict[str, Any]:
        return {}

    async def reconnect_agents(self, agents: list[str], count: int) -> dict[str, list[str]]:
        self.calls.append(("reconnect", (agents, count)))
        return {}

    async def reload(self) -> str:
        return ""


def _lines(events: list[dict[str, Any]]) -> list[str]:
    return [format_line(event) for event in events if "cluster_tag" in event]


class StaleLockTests(SynchronousTestCase):
    """clear_stale_lock removes a lock no live node holds, and only such a lock."""

    def setUp(self) -> None:
        self.path = short_temp_dir(self) / "cluster.sock"
        self.lock = lock_path(self.path)

    def plant(self, pid: int | str, with_socket: bool = True) -> None:
        """A lock naming ``pid`` as Twisted writes it, and a dead socket file beside it."""
        os.symlink(str(pid), self.lock)
        if with_socket:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
                dead.bind(str(self.path))  # bound, never listening: connections are refused

    def test_no_lock(self) -> None:
        """Nothing to clear: nothing said, nothing removed."""
        self.assertIsNone(clear_stale_lock(self.path))

    def test_dead_owner(self) -> None:
        """A lock whose pid is not running goes, with the socket file."""
        self.plant(DEAD_PID)
        reason = clear_stale_lock(self.path)
        self.assertEqual(reason, f"its owner, pid {DEAD_PID}, is not running")
        self.assertFalse(os.path.lexists(self.lock))
        self.assertFalse(self.path.exists())

    def test_own_pid(self) -> None:
        """A lock naming this very process (a restart that got the same pid) goes."""
        self.plant(os.getpid())
        reason = clear_stale_lock(self.path)
        self.assertIn("this process", reason or "")
        self.assertFalse(os.path.lexists(self.lock))

    def test_reused_pid(self) -> None:
        """A lock naming a live process that does not answer on the socket (the killed
        node's pid now belongs to someone else) goes; Twisted alone would keep it."""
        self.plant(os.getppid())
        reason = clear_stale_lock(self.path)
        self.assertIn(f"pid {os.getppid()} is running but does not answer", reason or "")
        self.assertFalse(os.path.lexists(self.lock))
        self.assertFalse(self.path.exists())

    def test_live_node_kept(self) -> None:
        """A live process answering on the socket keeps its lock: starting a second node on
        the same home is refused."""
        from wazuhcluster.control.server import ControlSocketBusy

        self.plant(os.getppid(), with_socket=False)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
            live.bind(str(self.path))
            live.listen(1)
            self.assertRaises(ControlSocketBusy, clear_stale_lock, self.path)
        self.assertTrue(os.path.lexists(self.lock))

    def test_socket_without_lock(self) -> None:
        """A dead socket file without a lock (which would make bind fail) goes too."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
            dead.bind(str(self.path))
        self.assertIn("without its lock", clear_stale_lock(self.path) or "")
        self.assertFalse(self.path.exists())

    def test_foreign_lock_left_alone(self) -> None:
        """A lock that is not Twisted's (a regular file) is not touched."""
        self.lock.write_text("not a pid")
        self.assertIsNone(clear_stale_lock(self.path))
        self.assertTrue(self.lock.exists())


class ControlServiceTests(SynchronousTestCase):
    """The service clears a stale lock and logs it; it reports every failure to listen."""

    def setUp(self) -> None:
        self.path = short_temp_dir(self) / "run" / "cluster.sock"
        self.reactor = MemoryReactorClock()
        self.failures: list[str] = []
        self.service = ControlService(
            self.path,
            _Backend(),
            self.reactor,
            ClusterLog("Master", "Control"),
            on_failure=self.failures.append,
        )
        self.addCleanup(self.service.stopService)

    def test_stale_lock_removed_and_logged(self) -> None:
        """After a kill -9, the restarted node removes the lock, says so, and listens."""
        self.path.parent.mkdir(parents=True)
        os.symlink(str(DEAD_PID), lock_path(self.path))
        with capturedLogs() as events:
            self.service.startService()
        lines = _lines(events)
        self.assertTrue(
            any(
                "WARNING: [Master] [Control] Removed a stale control-socket lock" in line
                and f"pid {DEAD_PID}, is not running" in line
                for line in lines
            ),
            lines,
        )
        self.assertEqual(self.failures, [])
        [(address, _, backlog, mode, want_pid)] = self.reactor.unixServers
        self.assertEqual((address, mode, want_pid), (str(self.path), 0o660, True))
        self.assertEqual(backlog, ACCEPT_BACKLOG)  # Twisted's 50 filled under a flood

    def test_listen_failure_reported(self) -> None:
        """A socket that cannot be opened is reported, with the path and the reason."""

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise CannotListenError(None, str(self.path), OSError("Cannot acquire lock"))

        self.reactor.listenUNIX = refuse  # type: ignore[method-assign]
        self.service.startService()
        [reason] = self.failures
        self.assertIn(f"Could not open the control socket {self.path}", reason)
        self.assertIn("Cannot acquire lock", reason)

    def test_second_node_refused(self) -> None:
        """A live node answering on the socket: the new one reports it and does not listen."""
        self.path.parent.mkdir(parents=True)
        os.symlink(str(os.getppid()), lock_path(self.path))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
            live.bind(str(self.path))
            live.listen(1)
            self.service.startService()
        [reason] = self.failures
        self.assertIn("another node is running on this home", reason)
        self.assertEqual(self.reactor.unixServers, [])


class RealReactorListenTests(TestCase):
    """The same with Twisted's own listener (trial's reactor: the socket is really opened,
    and closed before the temporary directory goes)."""

    def test_real_listen_after_reused_pid(self) -> None:
        """A lock naming a live process that does not serve the socket no longer keeps the
        node off its socket (Twisted alone refuses it: "Cannot acquire lock")."""
        from twisted.internet import reactor

        path = short_temp_dir(self) / "cluster.sock"
        os.symlink(str(os.getppid()), lock_path(path))
        failures: list[str] = []
        service = ControlService(
            path,
            _Backend(),
            reactor,  # type: ignore[arg-type]
            on_failure=failures.append,
        )
        service.startService()
        self.addCleanup(service.stopService)  # trial waits for its Deferred
        self.assertEqual(failures, [])
        self.assertIsNotNone(service.port)
        self.assertEqual(os.readlink(lock_path(path)), str(os.getpid()))


class StopNodeTests(SynchronousTestCase):
    """A node that cannot open its control socket logs a dated ERROR and stops."""

    def setUp(self) -> None:
        self.addCleanup(fatal.failures.clear)

    def test_builder_stops_the_node(self) -> None:
        """NodeServices' control service turns a listen failure into an ERROR line in
        cluster.log's shape and a reactor stop."""
        from tests.helpers import write_config
        from wazuhcluster.config.sections import load_sections
        from wazuhcluster.node.builder import NodeServices

        config = write_config(str(short_temp_dir(self)), "master", "master")
        reactor = MemoryReactorClock()

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise CannotListenError(None, "cluster.sock", OSError("Cannot acquire lock"))

        reactor.listenUNIX = refuse  # type: ignore[method-assign]
        shared = NodeServices(config, load_sections(config), reactor, "Master")  # type: ignore[arg-type]
        service = shared.control_service(_Backend())  # type: ignore[arg-type]
        reactor.run()  # MemoryReactor's run only marks it running
        with capturedLogs() as events:
            service.startService()
        errors = [e for e in events if e.get("log_level") == LogLevel.error]
        [line] = _lines(errors)
        self.assertRegex(
            line,
            r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ERROR: \[Master\] \[Control\] Could not open "
            r"the control socket .*cluster\.sock: .*Cannot acquire lock.*\. Stopping the node\.$",
        )
        self.assertTrue(reactor.hasStopped)
        self.assertEqual(len(fatal.failures), 1)


def _box(command: bytes, **values: bytes) -> bytes:
    box = amp.AmpBox({k.encode(): v for k, v in values.items()})
    box[b"_command"] = command
    box[b"_ask"] = b"7"
    return box.serialize()


class BadInputTests(SynchronousTestCase):
    """Hostile or broken control requests get a declared error, never a traceback, and the
    connection stays usable."""

    def setUp(self) -> None:
        self.backend = _Backend()
        self.server = ControlProtocol(self.backend, ClusterLog("Master", "Control"))
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)

    def ask(self, data: bytes) -> dict[bytes, bytes]:
        """Send ``data``; the one box answered."""
        self.transport.clear()
        self.server.dataReceived(data)
        self.assertEqual(self.flushLoggedErrors(), [])
        [answer] = amp.parseString(self.transport.value())
        return dict(answer)

    def still_usable(self) -> None:
        """The same connection answers a good request afterwards."""
        self.assertFalse(self.transport.disconnecting)
        answer = self.ask(_box(b"ListNodes"))
        self.assertIn(b"_answer", answer)

    def test_non_ascii_command(self) -> None:
        """A non-ASCII command name is an unknown command, logged as one WARNING line."""
        with capturedLogs() as events:
            answer = self.ask(_box(b"\xffList\xfe"))
        self.assertEqual(answer[b"_error_code"], amp.UNHANDLED_ERROR_CODE)
        self.assertIn("non-ASCII", " ".join(_lines(events)))
        self.still_usable()

    def test_bad_json(self) -> None:
        """Manage with arguments that are not JSON: BAD_ARGUMENTS, one WARNING line."""
        with capturedLogs() as events:
            answer = self.ask(_box(b"Manage", action=b"list_agents", arguments=b"{nope"))
        self.assertEqual(answer[b"_error_code"], b"BAD_ARGUMENTS")
        lines = _lines(events)
        self.assertTrue(
            any(
                "WARNING: [Master] [Control] Refused control command Manage: bad arguments "
                "(JSONDecodeError" in line
                for line in lines
            ),
            lines,
        )
        self.assertEqual(self.backend.calls, [])
        self.still_usable()

    def test_undecodable_values(self) -> None:
        """Non-UTF-8 text, JSON in a bad encoding, a non-number integer, a missing argument
        and a JSON too deep to parse are each refused with BAD_ARGUMENTS."""
        cases = [
            _box(b"Manage", action=b"\xff\xfe", arguments=b"{}"),
            _box(b"Manage", action=b"x", arguments=b'"\xff"'),
            _box(b"ReconnectAgents", agents=b"[]", count=b"many"),
            _box(b"ReconnectAgents", agents=b"[]"),
            _box(b"Manage", action=b"x", arguments=b"[" * 60_000),
        ]
        for data in cases:
            self.assertEqual(self.ask(data)[b"_error_code"], b"BAD_ARGUMENTS", data[:60])
        self.assertEqual(self.backend.calls, [])
        self.still_usable()

    def test_wrong_json_shape(self) -> None:
        """Well-formed JSON of the wrong shape is a CONTROL_ERROR from the responder."""
        answer = self.ask(_box(b"Manage", action=b"x", arguments=Json().toString([1, 2])))
        self.assertEqual(answer[b"_error_code"], b"CONTROL_ERROR")
        answer = self.ask(_box(b"ReconnectAgents", agents=Json().toString({"a": 1}), count=b"0"))
        self.assertEqual(answer[b"_error_code"], b"CONTROL_ERROR")
        self.assertEqual(self.backend.calls, [])
        self.still_usable()

    def test_good_request_reaches_backend(self) -> None:
        """A well-formed Manage reaches the backend with its decoded arguments."""
        answer = self.ask(_box(b"Manage", action=b"x", arguments=Json().toString({"a": 1})))
        self.assertIn(b"_answer", answer)
        self.assertEqual(self.backend.calls, [("x", {"a": 1})])


class FailoverStatusTests(SynchronousTestCase):
    """FailoverStatus: the election's view when the node has one, None otherwise; and how
    ``-l``/``-i`` print it."""

    STATUS = {
        "node": "m2",
        "candidate": True,
        "role": "worker",
        "master": "m1",
        "master_address": "10.0.0.1:1516",
        "term": 42,
        "last_election": 1_800_000_000.5,
        "candidates": ["m1", "m2"],
        "lease_ttl": 10,
        "etcd": "ok",
        "promotions": 0,
        "demotions": 0,
    }

    def answer(self, failover: Any) -> Any:
        """The decoded ``status`` of one FailoverStatus request."""
        server = ControlProtocol(_Backend(), ClusterLog("Master", "Control"), failover)
        transport = StringTransport()
        server.makeConnection(transport)
        server.dataReceived(_box(b"FailoverStatus"))
        [answer] = amp.parseString(transport.value())
        return Json().fromString(answer[b"status"])

    def test_answers(self) -> None:
        """Without a view: null; with one: its status."""

        class View:
            def failover_status(self) -> dict[str, Any]:
                return FailoverStatusTests.STATUS

        self.assertIsNone(self.answer(None))
        self.assertEqual(self.answer(View()), self.STATUS)

    def test_printed(self) -> None:
        """The master with its address and term, the time of the last election, the
        candidates and this node's part; an empty election says so."""
        from wazuhcluster.scripts.control import format_failover

        self.assertEqual(
            format_failover(self.STATUS).splitlines(),
            [
                "Failover (etcd):",
                "    Master: m1 (10.0.0.1:1516), term 42",
                "    Last election: 2027-01-15T08:00:00.500000Z",
                "    Candidates: m1, m2",
                "    This node: m2 (candidate), running as worker; lease TTL 10 s; etcd: ok",
            ],
        )
        nobody = format_failover({**self.STATUS, "master": None, "last_election": None})
        self.assertIn("Master: none elected", nobody)
        self.assertIn("Last election: n/a", nobody)


class NotConnectedHintTests(SynchronousTestCase):
    """A worker with ``<failover>`` that cannot reach the master still says who it is."""

    def test_hint_names_the_master(self) -> None:
        """The request fails as before, and the election as the node sees it comes with
        the error; without ``<failover>`` the error is alone."""
        from twisted.internet.defer import ensureDeferred

        from wazuhcluster.control import commands
        from wazuhcluster.scripts.control import _list_nodes, build_parser, perform
        from wazuhcluster.wire.commands import NotConnected

        def asker(status: Any) -> Any:
            async def ask(command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
                if command is commands.FailoverStatus:
                    return {"status": status}
                raise NotConnected("Worker node is not connected to master")

            return ask

        args = build_parser().parse_args(["-l"])
        outcome = self.successResultOf(
            ensureDeferred(perform(asker(FailoverStatusTests.STATUS), _list_nodes, args))
        )
        self.assertEqual(outcome["error"], "Worker node is not connected to master.")
        self.assertIn("Master: m1 (10.0.0.1:1516), term 42", outcome["hint"])
        alone = self.successResultOf(ensureDeferred(perform(asker(None), _list_nodes, args)))
        self.assertEqual(alone, {"error": "Worker node is not connected to master."})


class ConnectRetryTests(SynchronousTestCase):
    """wazuh-cluster-control waits out a full accept queue instead of saying the node is
    down (a flood of clients filled the queue: -i answered "Cluster is not running.")."""

    def attempt(self, failures: list[ConnectError], within: float = 10.0) -> tuple[Any, Any]:
        """Connect through a ``connect`` that fails with ``failures`` first, then gives a
        protocol; the result (or failure) of connect_control, and the attempts made."""
        self.clock = Clock()
        attempts: list[int] = []
        protocol = amp.AMP()

        def connect() -> Deferred[amp.AMP]:
            attempts.append(1)
            if failures:
                return fail(failures.pop(0))
            return succeed(protocol)

        results: list[Any] = []
        Deferred.fromCoroutine(connect_control(connect, self.clock, within)).addBoth(results.append)
        for _ in range(int(within / CONNECT_RETRY) + 5):
            self.clock.advance(CONNECT_RETRY)
        [result] = results
        return (protocol if result is protocol else result), attempts

    def test_full_queue_retried(self) -> None:
        """A full accept queue (ConnectError without an OS error) is tried again."""
        result, attempts = self.attempt([ConnectError(), ConnectError()])
        self.assertIsInstance(result, amp.AMP)
        self.assertEqual(len(attempts), 3)

    def test_final_errors_not_retried(self) -> None:
        """A refused connect (stale socket) and a missing socket fail at once."""
        for error in (ConnectionRefusedError(), ConnectError(osError=2)):
            result, attempts = self.attempt([error])
            self.assertIsInstance(result.value, type(error))
            self.assertEqual(len(attempts), 1)

    def test_gives_up_after_within(self) -> None:
        """A queue still full after ``within`` seconds is a failure."""
        result, attempts = self.attempt([ConnectError()] * 1000, within=1.0)
        self.assertIsInstance(result.value, ConnectError)
        self.assertEqual(len(attempts), 21)

"""Hypothesis fuzzing of every AMP command of the cluster link and the control socket.

The master and a worker run in memory (iosim) with all their features. A hostile peer sends
every command with arbitrary well-typed arguments (a responder must answer with a declared
error, never an unhandled exception), arbitrary raw boxes and arbitrary bytes (the node must
drop the connection and keep serving the honest worker).

Example counts come from the hypothesis profile named by ``WAZUHCLUSTER_FUZZ`` (``quick``
for ``make test``, ``fuzz`` for ``make fuzz`` with at least 10,000 cases per target).
"""

from __future__ import annotations

import os
import string
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.test.iosim import IOPump
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import KEY, PORT, InMemoryCluster
from tests.test_registry_link import _SyncRegistryService
from wazuhcluster.agents.sessions import SessionTable
from wazuhcluster.config.auth_settings import default_auth
from wazuhcluster.config.home import Home
from wazuhcluster.control import commands as control_commands
from wazuhcluster.control.server import ControlProtocol
from wazuhcluster.master.agents import MasterAgents
from wazuhcluster.master.integrity import MasterIntegrity
from wazuhcluster.master.registry import MasterRegistry
from wazuhcluster.util.threads import run_inline
from wazuhcluster.wire import agents as wire_agents
from wazuhcluster.wire import commands as wire_commands
from wazuhcluster.wire import integrity as wire_integrity
from wazuhcluster.wire import registry as wire_registry
from wazuhcluster.wire import stream_commands
from wazuhcluster.wire.arguments import Json
from wazuhcluster.wire.handshake import make_nonce, worker_proof
from wazuhcluster.worker.agents import WorkerAgents
from wazuhcluster.worker.integrity import WorkerIntegrity
from wazuhcluster.worker.link import MasterLink
from wazuhcluster.worker.registry import WorkerRegistry

settings.register_profile(
    "quick",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "fuzz",
    max_examples=10_000,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
#: The settings of every fuzz test; ``WAZUHCLUSTER_FUZZ=fuzz`` selects the long run.
FUZZ = settings.get_profile(os.environ.get("WAZUHCLUSTER_FUZZ", "quick"))

#: Commands a worker may send to the master.
MASTER_COMMANDS: list[type[amp.Command]] = [
    wire_commands.Challenge,
    wire_commands.Hello,
    wire_commands.KeepAlive,
    wire_commands.GetNodes,
    wire_commands.GetHealth,
    wire_integrity.IntegrityCheck,
    wire_registry.EnrollAgent,
    wire_registry.EnrollUndelivered,
    wire_registry.RelayManage,
    wire_agents.RequestAgentGroups,
    stream_commands.StreamOpen,
    stream_commands.StreamChunk,
    stream_commands.StreamEnd,
    stream_commands.StreamCancel,
]

#: Commands the master may send to a worker.
WORKER_COMMANDS: list[type[amp.Command]] = [
    wire_integrity.IntegrityChanged,
    wire_registry.KeysUpdate,
    wire_agents.ReconnectAgents,
    wire_agents.SendToAgents,
    stream_commands.StreamOpen,
    stream_commands.StreamChunk,
    stream_commands.StreamEnd,
    stream_commands.StreamCancel,
]

#: Commands of the control socket.
CONTROL_COMMANDS: list[type[amp.Command]] = [
    getattr(control_commands, name)
    for name in (
        "ListNodes",
        "LocalInfo",
        "Manage",
        "ClusterHealth",
        "ReconnectAgents",
        "ReloadRuleset",
    )
    if hasattr(control_commands, name)
]

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=25,
)

_KNOWN_TEXT = st.sampled_from(
    [
        "integrity-table",
        "integrity-files",
        "agent-info",
        "agent-groups",
        "../../etc/passwd",
        "/etc/shadow",
        "worker1",
        "master",
        "1",
        "0",
        "",
        "OSSEC A:'agent'",
        "OSSEC PASS: x OSSEC A:'a' G:'../x'",
        "in_sync",
    ]
)


def argument_strategy(argument: amp.Argument) -> st.SearchStrategy[Any]:
    """Values of the Python type ``argument`` carries, favouring the interesting ones."""
    if isinstance(argument, amp.Integer):
        return st.integers(-(2**70), 2**70) | st.sampled_from([0, -1, 1, 2**31, 2**63, 2**40])
    if isinstance(argument, amp.Unicode):
        return _KNOWN_TEXT | st.text(max_size=200)
    if isinstance(argument, amp.String):
        return st.binary(max_size=600) | st.sampled_from([b"", b"\0" * 32, os.urandom(32)])
    if isinstance(argument, amp.Boolean):
        return st.booleans()
    if isinstance(argument, Json):
        return JSON
    if isinstance(argument, amp.Float):
        return st.floats(allow_nan=False)
    raise AssertionError(f"no strategy for {argument!r}")


@st.composite
def command_calls(
    draw: st.DrawFn, catalogue: list[type[amp.Command]]
) -> tuple[type[amp.Command], dict[str, Any]]:
    """A command of ``catalogue`` with well-typed arguments (optional ones sometimes left out)."""
    command = draw(st.sampled_from(catalogue))
    arguments: dict[str, Any] = {}
    for raw_name, argument in command.arguments:
        if argument.optional and draw(st.booleans()):
            continue
        arguments[raw_name.decode()] = draw(argument_strategy(argument))
    return command, arguments


_RAW_NAMES = st.sampled_from(
    [c.commandName for c in MASTER_COMMANDS + WORKER_COMMANDS] + [b"Nope", b"", b"\xff"]
)
RAW_BOXES = st.tuples(
    _RAW_NAMES,
    st.dictionaries(
        st.binary(min_size=1, max_size=20).filter(lambda k: not k.startswith(b"_")),
        st.binary(max_size=200),
        max_size=6,
    ),
)


def _accepted(failure: Any) -> None:
    """A declared refusal, a remote error or a dropped connection are acceptable answers."""
    failure.trap(
        amp.RemoteAmpError,
        amp.UnknownRemoteError,
        amp.ProtocolSwitched,
        wire_commands.ClusterError,
        Exception,
    )


class FuzzCluster:
    """A master with every feature and one honest worker with every feature, in memory."""

    def __init__(self, base: str) -> None:
        self.cluster = InMemoryCluster(base)
        home = self.cluster.master_home
        node = self.cluster.master
        reactor = self.cluster.reactor
        self.registry = MasterRegistry(
            home,
            default_auth(home.root),
            node,
            reactor,
            registry_service=_SyncRegistryService(home),
        )
        self.integrity = MasterIntegrity(home.root, node, run_in_thread=run_inline)
        self.agents = MasterAgents(node, self.registry, reactor, run_in_thread=run_inline)
        for feature in (self.registry, self.integrity, self.agents):
            node.features.add(feature)
        node.manager = self.registry
        # No agent is connected to this stand-in: nothing is sent to any, nobody reconnects.
        channel = SimpleNamespace(
            sessions=SessionTable(reactor, "worker1"),
            reconnect=lambda ids, count: [],
            send_message=lambda ids, message: [],
        )

        def features(link: MasterLink, worker_home: Home) -> list[Any]:
            return [
                WorkerIntegrity(worker_home.root, link, run_in_thread=run_inline),
                WorkerRegistry(
                    worker_home.client_keys,
                    default_auth(worker_home.root),
                    link,
                    reactor,
                    run_in_thread=run_inline,
                ),
                WorkerAgents(link, channel, reactor, run_in_thread=run_inline),
            ]

        self.link = self.cluster.add_worker("worker1", features=features)
        self.cluster.connect(self.link)
        self.cluster.settle()
        assert self.link.connected, "the honest worker did not connect"
        self.hostile: amp.AMP | None = None
        self.hostile_pump: IOPump | None = None

    def open_hostile(self, name: str | None = "evil1") -> amp.AMP:
        """A raw AMP client on the master; authenticated as ``name`` unless it is None."""
        reactor = self.cluster.reactor
        # Forget finished connections, or every settle pumps all the dead ones too.
        self.cluster.pumps = [
            pump
            for pump in self.cluster.pumps
            if not (pump.clientIO.disconnected and pump.serverIO.disconnected)
        ]
        connected: Deferred[Any] = TCP4ClientEndpoint(reactor, "127.0.0.1", PORT).connect(
            Factory.forProtocol(amp.AMP)
        )
        if name is not None:  # the master asks for the certificate names only in Hello
            self.cluster._claims.append({name})
        pump = self.cluster.completer.succeedOnce()
        assert pump is not None
        self.cluster.pumps.append(pump)
        pump.flush()
        client = self.result(connected)
        if name is not None:
            challenge = self.result(client.callRemote(wire_commands.Challenge))
            nonce = make_nonce()
            self.result(
                client.callRemote(
                    wire_commands.Hello,
                    node_name=name,
                    cluster_name="wazuh",
                    node_type="worker",
                    version=self.cluster.master.identity.version,
                    protocol_version=wire_commands.PROTOCOL_VERSION,
                    nonce=nonce,
                    proof=worker_proof(KEY, challenge["nonce"], nonce, name, "wazuh"),
                )
            )
        self.hostile, self.hostile_pump = client, pump
        return client

    def result(self, deferred: Deferred[Any]) -> Any:
        """Settle the cluster and return the result of ``deferred``, which must have fired."""
        self.cluster.settle()
        box: list[Any] = []
        deferred.addBoth(box.append)
        assert box, "no answer"
        if isinstance(box[0], Exception) or hasattr(box[0], "raiseException"):
            box[0].raiseException()
        return box[0]

    def settle_hostile(self) -> None:
        """Settle; an exception escaping a protocol's dataReceived is what the reactor would
        log before dropping that connection, so drop the hostile connection the same way."""
        for _ in range(3):
            try:
                self.cluster.settle()
                return
            except Exception:
                if self.hostile_pump is not None:
                    self.hostile_pump.serverIO.loseConnection()
                    self.hostile_pump.clientIO.loseConnection()

    def hostile_alive(self) -> bool:
        """True while the hostile connection is open."""
        transport = self.hostile.transport if self.hostile else None
        return transport is not None and not getattr(transport, "disconnected", False)

    def honest_worker_served(self) -> bool:
        """The honest worker's keep-alive is answered and it is still in the node list."""
        answer = ensureDeferred(self.link.send_keepalive())
        self.cluster.settle()
        done: list[Any] = []
        answer.addBoth(done.append)
        names = [row["name"] for row in self.cluster.master.nodes()]
        return bool(done) and self.link.failed_keepalives == 0 and "worker1" in names


class MasterCommandFuzzTests(SynchronousTestCase):
    """Every command a worker can send, with arbitrary arguments, from a hostile peer."""

    def setUp(self) -> None:
        """One in-memory cluster shared by all the examples of a test."""
        self.fuzz = FuzzCluster(self.mktemp())

    def check_alive(self) -> None:
        """No responder raised an undeclared error, and the honest worker is still served."""
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(self.fuzz.honest_worker_served())

    @FUZZ
    @given(call=command_calls(MASTER_COMMANDS))
    def test_authenticated_peer_commands(self, call: tuple[type[amp.Command], dict]) -> None:
        """An authenticated peer's well-typed arguments never raise an unhandled error on
        the master, and the honest worker keeps its link."""
        if not self.fuzz.hostile_alive():
            self.fuzz.open_hostile("evil1")
        assert self.fuzz.hostile is not None
        command, arguments = call
        self.fuzz.hostile.callRemote(command, **arguments).addErrback(_accepted)
        self.fuzz.cluster.settle()
        self.check_alive()

    @FUZZ
    @given(call=command_calls(MASTER_COMMANDS))
    def test_unauthenticated_peer_commands(self, call: tuple[type[amp.Command], dict]) -> None:
        """Before Hello, every command but the handshake is refused and the peer never joins
        the node list."""
        if not self.fuzz.hostile_alive():
            self.fuzz.open_hostile(None)
        assert self.fuzz.hostile is not None
        command, arguments = call
        self.fuzz.hostile.callRemote(command, **arguments).addErrback(_accepted)
        self.fuzz.cluster.settle()
        names = [row["name"] for row in self.fuzz.cluster.master.nodes()]
        self.assertEqual(sorted(names), ["master", "worker1"])
        self.check_alive()

    @FUZZ
    @given(raw=RAW_BOXES)
    def test_raw_boxes(self, raw: tuple[bytes, dict[bytes, bytes]]) -> None:
        """Boxes with any keys and undecodable values are answered or the peer is dropped;
        the master keeps serving the honest worker."""
        if not self.fuzz.hostile_alive():
            self.fuzz.open_hostile("evil1")
        assert self.fuzz.hostile is not None
        name, values = raw
        box = amp.AmpBox({k: v for k, v in values.items() if len(k) < 256})
        # The client's own bookkeeping tags the question, so the answer finds its caller.
        sent = self.fuzz.hostile._sendBoxCommand(name, box, True)
        sent.addErrback(_accepted)
        self.fuzz.settle_hostile()
        # AMP itself logs values it cannot parse as unhandled: that is Twisted's report, not
        # a failure of ours, so only the node's survival is checked here.
        self.flushLoggedErrors()
        self.assertTrue(self.fuzz.honest_worker_served())

    def test_non_ascii_command_name(self) -> None:
        """A command named with non-ASCII bytes is answered as unknown, with no traceback,
        and the connection stays usable (Twisted's locator alone would raise out of
        dataReceived)."""
        for name in (None, "evil1"):
            client = self.fuzz.open_hostile(name)
            failures: list[Any] = []
            client._sendBoxCommand(b"\xffcmd\xfe", amp.AmpBox(), True).addErrback(failures.append)
            self.fuzz.cluster.settle()
            self.assertEqual(self.flushLoggedErrors(), [])
            self.assertEqual(len(failures), 1)
            self.assertTrue(self.fuzz.hostile_alive())
        self.assertTrue(self.fuzz.honest_worker_served())

    @FUZZ
    @given(data=st.binary(min_size=1, max_size=2000))
    def test_raw_bytes(self, data: bytes) -> None:
        """Any byte string on a fresh connection never disturbs the honest worker."""
        client = self.fuzz.open_hostile(None)
        assert client.transport is not None
        client.transport.write(data)
        self.fuzz.settle_hostile()
        self.flushLoggedErrors()
        self.assertTrue(self.fuzz.honest_worker_served())
        # An incomplete box keeps the connection open: close it so pumps do not pile up.
        if client.transport is not None:
            client.transport.loseConnection()
            self.fuzz.settle_hostile()


class WorkerCommandFuzzTests(SynchronousTestCase):
    """Every command the master can send, with arbitrary arguments, against a worker."""

    def setUp(self) -> None:
        """An in-memory cluster; the master's side of the honest link plays the hostile master."""
        self.fuzz = FuzzCluster(self.mktemp())

    @FUZZ
    @given(call=command_calls(WORKER_COMMANDS))
    def test_master_commands(self, call: tuple[type[amp.Command], dict]) -> None:
        """The worker answers any well-typed command with a result or a declared error and
        keeps its link to the master."""
        [worker] = list(self.fuzz.cluster.master.workers)
        command, arguments = call
        sent = worker.protocol.callRemote(command, **arguments)
        if sent is not None:  # commands that need no answer return None
            sent.addErrback(_accepted)
        self.fuzz.cluster.settle()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(self.fuzz.link.connected)


class _Backend:
    """A control backend whose answers are trivial; the fuzz targets the protocol layer."""

    async def list_nodes(self) -> list[dict[str, str]]:
        return []

    async def local_info(self) -> dict[str, str]:
        return {}

    async def manage(self, action: str, arguments: dict[str, Any]) -> Any:
        return None

    async def cluster_health(self) -> dict[str, Any]:
        return {}

    async def reconnect_agents(self, agents: list[str], count: int) -> dict[str, list[str]]:
        return {}

    async def reload(self) -> str:
        return ""


class ControlCommandFuzzTests(SynchronousTestCase):
    """The control socket protocol against arbitrary commands, boxes and bytes."""

    @FUZZ
    @given(call=command_calls(CONTROL_COMMANDS), junk=st.binary(max_size=300))
    def test_control_commands(self, call: tuple[type[amp.Command], dict], junk: bytes) -> None:
        """Control commands with any well-typed arguments, then junk bytes, never raise an
        undeclared error in the control protocol."""
        from twisted.internet.testing import StringTransport

        server = ControlProtocol(_Backend())
        transport = StringTransport()
        server.makeConnection(transport)
        command, arguments = call
        box = amp.AmpBox()
        for raw_name, argument in command.arguments:
            name = raw_name.decode()
            if name in arguments:
                box[raw_name] = argument.toString(arguments[name])
        box[b"_command"] = command.commandName
        box[b"_ask"] = b"1"
        server.dataReceived(box.serialize())
        self.assertEqual(self.flushLoggedErrors(), [])
        answer = transport.value()
        self.assertTrue(b"_answer" in answer or b"_error_code" in answer, answer)
        server.dataReceived(junk)
        self.flushLoggedErrors()


_CONTROL_NAMES = st.sampled_from(
    [c.commandName for c in CONTROL_COMMANDS] + [b"Nope", b"", b"\xff", b"Manage\xe9"]
)
_CONTROL_KEYS = st.sampled_from([b"action", b"arguments", b"agents", b"count"]) | st.binary(
    min_size=1, max_size=20
).filter(lambda k: not k.startswith(b"_"))
_CONTROL_VALUES = (
    st.binary(max_size=200)
    | st.sampled_from([b"{", b"[" * 5000, b'"\xff"', b"nan", b"-", b"1e999", b"{}", b"[]"])
    | JSON.map(lambda value: Json().toString(value))
)
CONTROL_BOXES = st.tuples(
    _CONTROL_NAMES, st.dictionaries(_CONTROL_KEYS, _CONTROL_VALUES, max_size=5)
)


class ControlRawBoxFuzzTests(SynchronousTestCase):
    """The control socket against raw boxes: any command name (non-ASCII too), missing,
    extra and undecodable arguments (bad JSON, non-UTF-8 text, non-numbers)."""

    @FUZZ
    @given(raw=CONTROL_BOXES)
    def test_control_raw_boxes(self, raw: tuple[bytes, dict[bytes, bytes]]) -> None:
        """Every asked box gets exactly one answer or declared error, nothing is logged as
        an unhandled error, and the connection stays open for the next request."""
        from twisted.internet.testing import StringTransport

        server = ControlProtocol(_Backend())
        transport = StringTransport()
        server.makeConnection(transport)
        name, values = raw
        box = amp.AmpBox(values)
        box[b"_command"] = name
        box[b"_ask"] = b"1"
        server.dataReceived(box.serialize())
        self.assertEqual(self.flushLoggedErrors(), [])
        [answer] = amp.parseString(transport.value())
        self.assertTrue(b"_answer" in answer or b"_error_code" in answer, answer)
        if b"_error_code" in answer:
            self.assertIn(
                answer[b"_error_code"],
                {b"BAD_ARGUMENTS", b"CONTROL_ERROR", b"NOT_CONNECTED", amp.UNHANDLED_ERROR_CODE},
            )
        self.assertFalse(transport.disconnecting)


class ManageFuzzTests(SynchronousTestCase):
    """Management requests relayed from a worker with arbitrary actions and arguments."""

    def setUp(self) -> None:
        """One in-memory cluster."""
        self.fuzz = FuzzCluster(self.mktemp())

    @FUZZ
    @given(
        action=st.sampled_from(
            ["list_agents", "get_agent", "remove_agents", "add_group", "set_groups", "nope", ""]
        )
        | st.text(alphabet=string.ascii_lowercase + "_", max_size=20),
        arguments=st.dictionaries(st.text(max_size=12), JSON, max_size=5),
    )
    def test_relay_manage(self, action: str, arguments: dict[str, Any]) -> None:
        """RelayManage with any action and arguments answers or raises ControlError only."""
        self.fuzz.link.call(
            wire_registry.RelayManage, action=action, arguments=arguments
        ).addErrback(lambda failure: failure.trap(wire_commands.ClusterError, Exception))
        self.fuzz.cluster.settle()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(self.fuzz.link.connected)

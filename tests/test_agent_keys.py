"""Tests for keeping agent keys current without re-reading client.keys: the worker's
:class:`~wazuhcluster.registry.keys.KeysFile` mirror and the agent channel's in-memory
updates (:meth:`~wazuhcluster.agents.service.AgentChannelService.apply_key_changes`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents.datagram import AgentDatagramProtocol
from wazuhcluster.agents.service import AgentChannelService
from wazuhcluster.config.remote_settings import AgentsSettings, RemoteSettings
from wazuhcluster.registry import keys
from wazuhcluster.registry.keys import ClientKeysError, KeyEntry, KeysFile, read_client_keys
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline

KEY = "ab" * 32


def pushed(agent_id: str, name: str, ip: str = "any", key: str = KEY) -> dict[str, str]:
    """One entry as the master pushes it."""
    return {"id": agent_id, "name": name, "ip": ip, "key": key}


class KeysFileTests(SynchronousTestCase):
    """The worker's client.keys mirror."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.mirror = KeysFile(self.path)

    def names(self) -> list[tuple[str, str]]:
        """(id, name) of every entry on disk, in file order."""
        return [(entry.id, entry.name) for entry in read_client_keys(self.path)]

    def test_merges_are_written_in_id_order(self) -> None:
        """Entries land on disk ordered by id number, mode 0640, whatever the push order."""
        self.mirror.merge([([pushed("1000", "late"), pushed("999", "early")], [])])
        self.assertEqual(self.names(), [("999", "early"), ("1000", "late")])
        self.assertEqual(self.path.stat().st_mode & 0o777, 0o640)

    def test_file_keeps_id_order_when_ids_arrive_out_of_order(self) -> None:
        """A lower id pushed after higher ones, or read from an unsorted file, still lands in
        id order; a replaced id keeps its place."""
        keys.write_client_keys(
            self.path,
            [KeyEntry("010", "agent-j", "any", KEY), KeyEntry("002", "agent-b", "any", KEY)],
        )
        self.mirror.merge([([pushed("011", "agent-k"), pushed("005", "agent-e")], [])])
        self.assertEqual([agent_id for agent_id, _ in self.names()], ["002", "005", "010", "011"])
        self.mirror.merge([([pushed("005", "agent-e", key="cd" * 32)], [])])
        self.assertEqual([agent_id for agent_id, _ in self.names()], ["002", "005", "010", "011"])
        self.assertEqual(read_client_keys(self.path)[1].key, "cd" * 32)

    def test_file_read_only_when_another_writer_replaced_it(self) -> None:
        """Merges reuse the mirror; after another writer replaces the file, the next merge
        starts from what that writer wrote."""
        reads: list[Path] = []
        real_read = keys.read_client_keys

        def counting_read(path: Path) -> list[KeyEntry]:
            reads.append(path)
            return real_read(path)

        self.patch(keys, "read_client_keys", counting_read)
        self.mirror.merge([([pushed("001", "agent-a")], [])])
        self.mirror.merge([([pushed("002", "agent-b")], [])])
        self.assertEqual(len(reads), 1)
        keys.write_client_keys(self.path, [KeyEntry("005", "synced", "any", KEY)])
        delta = self.mirror.merge([([pushed("006", "agent-c")], [])])
        self.assertEqual(len(reads), 2)
        self.assertEqual(self.names(), [("005", "synced"), ("006", "agent-c")])
        self.assertEqual(delta.count, 2)

    def test_unchanged_push_writes_nothing(self) -> None:
        """A push the file already holds changes nothing and leaves the file alone."""
        self.mirror.merge([([pushed("001", "agent-a")], [])])
        before = self.path.stat().st_mtime_ns, self.path.stat().st_ino
        delta = self.mirror.merge([([pushed("001", "agent-a")], ["404"])])
        self.assertEqual((delta.added, delta.removed, delta.count), ((), (), 1))
        self.assertEqual((self.path.stat().st_mtime_ns, self.path.stat().st_ino), before)

    def test_invalid_entry_refused_before_writing(self) -> None:
        """An invalid pushed entry raises ClientKeysError and the file keeps its content."""
        self.mirror.merge([([pushed("001", "agent-a")], [])])
        self.assertRaises(ClientKeysError, self.mirror.merge, [([pushed("002", "bad name")], [])])
        self.assertRaises(ClientKeysError, self.mirror.merge, [([{"id": "003"}], [])])
        self.assertEqual(self.names(), [("001", "agent-a")])

    def test_malformed_file_on_disk_refused(self) -> None:
        """A malformed file written by someone else is reported, not merged over."""
        self.path.write_text("001 a any\n")
        self.assertRaises(ClientKeysError, self.mirror.merge, [([pushed("002", "agent-b")], [])])
        self.assertEqual(self.path.read_text(), "001 a any\n")


class ApplyKeyChangesTests(SynchronousTestCase):
    """The agent channel takes its own node's key changes in memory."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        keys.write_client_keys(self.path, [KeyEntry("001", "agent-a", "any", KEY)])
        self.service = AgentChannelService(
            self.path,
            RemoteSettings(),
            AgentsSettings(),
            "w1",
            lambda event: None,
            Clock(),
            ClusterLog("Worker w1", "Agents"),
            run_in_thread=run_inline,
        )
        self.service._load_now()
        self.loads: list[Any] = []
        real_load = self.service.factory.keys.load

        def counting_load(*args: Any, **kwargs: Any) -> Any:
            self.loads.append(args)
            return real_load(*args, **kwargs)

        self.patch(type(self.service.factory.keys), "load", staticmethod(counting_load))

    def ids(self) -> list[str]:
        """The ids the channel accepts now."""
        return sorted(entry.agent_id for entry in self.service.factory.keys)

    def test_send_message_to_connected_agents(self) -> None:
        """send_message reaches the listed agents that have a connection and says which."""
        sent: list[tuple[str, str]] = []

        def send_to_agent(agent_id: str, message: str) -> bool:
            sent.append((agent_id, message))
            return agent_id == "001"

        self.service.factory.send_to_agent = send_to_agent  # type: ignore[method-assign]
        self.assertEqual(self.service.send_message(["001", "002"], "#!-execd x"), ["001"])
        self.assertEqual(sent, [("001", "#!-execd x"), ("002", "#!-execd x")])

    def test_changes_applied_without_reading_the_file(self) -> None:
        """After the node's own write, additions and removals reach the channel and the
        periodic check does not parse the file again."""
        keys.write_client_keys(self.path, [KeyEntry("002", "agent-b", "10.0.0.2", KEY)])
        self.service.apply_key_changes([("002", "agent-b", "10.0.0.2", KEY)], ["001"])
        self.assertEqual(self.ids(), ["002"])
        self.assertIsNotNone(self.service.factory.keys.by_ip("10.0.0.2"))
        self.successResultOf(self.service.reload_keys())
        self.assertEqual(self.loads, [])

    def test_reload_only_when_the_file_changed(self) -> None:
        """The periodic reload parses client.keys only when its stamp changed (remoted
        re-reads it every 10 s), and then installs what the file holds."""
        self.successResultOf(self.service.reload_keys())
        self.assertEqual(self.loads, [])
        keys.write_client_keys(
            self.path,
            [KeyEntry("001", "agent-a", "any", KEY), KeyEntry("003", "agent-c", "any", KEY)],
        )
        self.successResultOf(self.service.reload_keys())
        self.assertEqual(self.ids(), ["001", "003"])
        self.successResultOf(self.service.reload_keys())
        self.assertEqual(len(self.loads), 1)

    def test_forced_reload_reads_what_another_writer_wrote(self) -> None:
        """A forced reload parses the file even when its stamp was already taken as seen."""
        keys.write_client_keys(self.path, [KeyEntry("003", "agent-c", "any", KEY)])
        self.service.apply_key_changes([], [])
        self.successResultOf(self.service.reload_keys())
        self.assertEqual(self.ids(), ["001"])
        self.successResultOf(self.service.reload_keys(force=True))
        self.assertEqual(self.ids(), ["003"])
        self.assertEqual(len(self.loads), 1)

    def test_invalid_entry_logged_and_skipped(self) -> None:
        """An entry the channel cannot use (bad IP) is skipped; the others are applied."""
        self.service.apply_key_changes(
            [("004", "agent-d", "not-an-ip", KEY), ("005", "agent-e", "any", KEY)], []
        )
        self.assertEqual(self.ids(), ["001", "005"])


class _UdpMemoryReactor(MemoryReactorClock):
    """A memory reactor that also records UDP listeners (MemoryReactor has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.udpServers: list[tuple[int, Any, str, int]] = []

    def listenUDP(  # noqa: N802 - Twisted's name
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> Any:
        """Record the listener; its port does nothing."""
        self.udpServers.append((port, protocol, interface, maxPacketSize))
        return SimpleNamespace(stopListening=lambda: None)


class ListenerTests(SynchronousTestCase):
    """``<protocol>`` decides which listeners the agent channel opens on its port."""

    def listeners(self, protocol: str) -> tuple[list[Any], list[Any]]:
        """The TCP and UDP ports a started service opened for ``protocol``."""
        reactor = _UdpMemoryReactor()
        service = AgentChannelService(
            Path(self.mktemp()),
            RemoteSettings(port=11514, protocol=protocol),
            AgentsSettings(),
            "w1",
            lambda event: None,
            reactor,
            ClusterLog("Worker w1", "Agents"),
            run_in_thread=run_inline,
        )
        service.startService()
        self.addCleanup(service.stopService)
        return reactor.tcpServers, reactor.udpServers

    def test_tcp_udp_or_both(self) -> None:
        """tcp: a TCP listener; udp: a UDP one for the same channel; tcp,udp: both."""
        tcp, udp = self.listeners("tcp")
        self.assertEqual(([port for port, *_ in tcp], udp), ([11514], []))
        tcp, udp = self.listeners("udp")
        self.assertEqual((tcp, [port for port, *_ in udp]), ([], [11514]))
        self.assertIsInstance(udp[0][1], AgentDatagramProtocol)
        tcp, udp = self.listeners("tcp,udp")
        self.assertEqual(([p for p, *_ in tcp], [p for p, *_ in udp]), ([11514], [11514]))
        self.assertEqual(udp[0][3], 65536)  # the largest Wazuh message fits one datagram

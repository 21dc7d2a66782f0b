"""Tests for wazuhcluster.testing.devcluster.free_port: the ports local clusters take."""

from __future__ import annotations

import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.testing import devcluster


class ReplayingSocket:
    """A stand-in for ``socket.socket`` whose probes are given the ports of a script."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def __call__(self, *args: Any) -> ReplayingSocket:
        return self

    def __enter__(self) -> ReplayingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        """Nothing to bind: the script decides the port."""

    def getsockname(self) -> tuple[str, int]:
        """The script's next port."""
        return ("127.0.0.1", self.ports.pop(0))


class FreePortTests(SynchronousTestCase):
    """free_port never hands the same port out twice in one process."""

    def test_a_port_offered_again_is_skipped(self) -> None:
        """When the kernel offers a port already handed out (it was only probed, so it is
        free again until its user binds it), free_port asks for another one."""
        self.patch(devcluster, "_HANDED_OUT", set())
        self.patch(devcluster.socket, "socket", ReplayingSocket([40001, 40001, 40002]))
        self.assertEqual([devcluster.free_port(), devcluster.free_port()], [40001, 40002])

    def test_real_ports_differ(self) -> None:
        """Ports from the real kernel are distinct and bindable on 127.0.0.1."""
        ports = [devcluster.free_port() for _ in range(50)]
        self.assertEqual(len(set(ports)), 50)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", ports[-1]))

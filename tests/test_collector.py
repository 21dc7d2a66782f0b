"""Tests of wazuhcluster.util.collector: the objects a node starts with are frozen."""

from __future__ import annotations

import gc

from twisted.application.service import MultiService
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util import collector


class FreezeTests(SynchronousTestCase):
    """Start-up objects leave the collector's walks once the reactor runs."""

    def setUp(self) -> None:
        self.addCleanup(gc.unfreeze)

    def test_frozen_once_running(self) -> None:
        """Nothing is frozen when the service starts before the reactor runs; once it
        runs, the objects that exist then are frozen, after a collection freed garbage."""
        calls: list[str] = []
        self.patch(collector.gc, "collect", lambda: calls.append("collect") or 0)
        self.patch(collector.gc, "freeze", lambda: calls.append("freeze"))
        reactor = MemoryReactor()
        top = MultiService()
        collector.FreezeStartupObjects(reactor).setServiceParent(top)
        top.startService()
        self.assertEqual(calls, [])
        reactor.run()
        self.assertEqual(calls, ["collect", "freeze"])

    def test_really_frozen(self) -> None:
        """freeze_startup_objects takes the objects that exist then out of every
        generation the collector walks; objects made later are walked as before."""
        before = [["start-up"] for _ in range(10)]
        frozen = collector.freeze_startup_objects()
        after = ["later"]
        walked = {id(o) for o in gc.get_objects()}
        self.assertGreaterEqual(frozen, len(before))
        self.assertFalse(any(id(o) in walked for o in before))
        self.assertIn(id(after), walked)

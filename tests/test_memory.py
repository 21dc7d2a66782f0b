"""Tests for wazuhcluster.util.memory: the malloc arena cap a node sets at start."""

from __future__ import annotations

import sys

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util import memory


class ArenaLimitTests(SynchronousTestCase):
    """limit_malloc_arenas applies glibc's cap unless the operator chose one."""

    def test_applied_on_glibc_linux(self) -> None:
        """On Linux with glibc the cap is applied (mallopt answers success)."""
        self.patch(memory.os, "environ", {})
        if not sys.platform.startswith("linux"):
            self.assertFalse(memory.limit_malloc_arenas())
            return
        self.assertTrue(memory.limit_malloc_arenas())

    def test_operator_setting_wins(self) -> None:
        """An operator's MALLOC_ARENA_MAX in the environment is left to glibc."""
        self.patch(memory.os, "environ", {"MALLOC_ARENA_MAX": "4"})
        self.assertFalse(memory.limit_malloc_arenas())

    def test_other_systems_untouched(self) -> None:
        """Outside Linux nothing is called."""
        self.patch(memory.os, "environ", {})
        self.patch(memory.sys, "platform", "darwin")
        self.assertFalse(memory.limit_malloc_arenas())

"""Tests for :mod:`wazuhcluster.util.json_tree`."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util.json_tree import put_repeated


class PutRepeatedTests(SynchronousTestCase):
    """A tag seen once is a value; seen again, a list of its values in order."""

    def test_first_value_is_kept_as_it_is(self) -> None:
        """A key set once holds its value itself, not a list of one."""
        holder: dict[str, Any] = {}
        put_repeated(holder, "name", "one")
        put_repeated(holder, "options", {"a": "1"})
        self.assertEqual(holder, {"name": "one", "options": {"a": "1"}})

    def test_repeated_key_becomes_a_list_in_order(self) -> None:
        """A second value makes a list of both; later values are appended."""
        holder: dict[str, Any] = {}
        for value in ("one", {"two": 2}, "three"):
            put_repeated(holder, "rule", value)
        self.assertEqual(holder, {"rule": ["one", {"two": 2}, "three"]})

    def test_other_keys_are_left_alone(self) -> None:
        """Setting one key again does not touch the others."""
        holder: dict[str, Any] = {"other": 1}
        put_repeated(holder, "rule", "a")
        put_repeated(holder, "rule", "b")
        self.assertEqual(holder, {"other": 1, "rule": ["a", "b"]})

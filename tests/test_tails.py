"""Cutting the broken end of an append-only line file (util/tails.py)."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util import tails


class TailTests(SynchronousTestCase):
    """Zero runs and half lines are cut; whole lines are never touched."""

    def open(self, content: bytes) -> int:
        """A descriptor on a fresh file holding ``content`` (closed at cleanup)."""
        path = Path(self.mktemp())
        path.write_bytes(content)
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND)
        self.addCleanup(os.close, descriptor)
        return descriptor

    def content(self, descriptor: int) -> bytes:
        """What the file holds now."""
        return os.pread(descriptor, os.fstat(descriptor).st_size + 1, 0)

    def test_zero_run_longer_than_a_read_is_cut(self) -> None:
        """A zero run of several megabytes (read a chunk at a time) is cut whole; zero
        bytes before the last data stay."""
        head = b"first\n\0\0middle\n"
        descriptor = self.open(head + b"\0" * (3 << 20) + b"\0" * 5)
        self.assertEqual(tails.cut_trailing_zeros(descriptor), (3 << 20) + 5)
        self.assertEqual(self.content(descriptor), head)

    def test_file_of_zeros_becomes_empty(self) -> None:
        """A file that is nothing but lost writes ends empty."""
        descriptor = self.open(b"\0" * 10000)
        self.assertEqual(tails.cut_trailing_zeros(descriptor), 10000)
        self.assertEqual(self.content(descriptor), b"")

    def test_whole_file_untouched(self) -> None:
        """Without a zero run nothing is cut, and an empty file stays empty."""
        descriptor = self.open(b"a line\n")
        self.assertEqual(tails.cut_trailing_zeros(descriptor), 0)
        self.assertEqual(self.content(descriptor), b"a line\n")
        self.assertEqual(tails.cut_trailing_zeros(self.open(b"")), 0)

    def test_ends_a_line(self) -> None:
        """An empty file or one ending with a newline ends a line; a half line does not."""
        self.assertTrue(tails.ends_a_line(self.open(b"")))
        self.assertTrue(tails.ends_a_line(self.open(b"one\n")))
        self.assertFalse(tails.ends_a_line(self.open(b"one\ntw")))

    def test_half_line_cut_back_to_last_newline(self) -> None:
        """A half line is cut back to the last newline, or to nothing when it is the only
        line."""
        descriptor = self.open(b"one\ntwo\nthr")
        self.assertTrue(tails.cut_half_line(descriptor))
        self.assertEqual(self.content(descriptor), b"one\ntwo\n")
        alone = self.open(b"half")
        self.assertTrue(tails.cut_half_line(alone))
        self.assertEqual(self.content(alone), b"")

    def test_half_line_beyond_reach_left(self) -> None:
        """A last line longer than HALF_LINE_REACH is not cut (it cannot be told from a
        file without newlines): False, nothing changed."""
        content = b"one\n" + b"x" * (tails.HALF_LINE_REACH + 1)
        descriptor = self.open(content)
        self.assertFalse(tails.cut_half_line(descriptor))
        self.assertEqual(self.content(descriptor), content)

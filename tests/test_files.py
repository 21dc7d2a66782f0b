"""Tests for wazuhcluster.util.files: atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.util.files import write_atomically


class WriteAtomicallyTests(SynchronousTestCase):
    """write_atomically replaces a file whole, with its mode, and can skip identical data."""

    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.path = self.folder / "sub" / "file.conf"

    def test_creates_folders_sets_mode_and_leaves_no_temp(self) -> None:
        """Missing folders are created, the mode is exact, no temp file is left, and the
        returned stat describes the file now in place."""
        written = write_atomically(self.path, b"one\n", 0o600)
        self.assertEqual(self.path.read_bytes(), b"one\n")
        self.assertEqual(self.path.stat().st_mode & 0o7777, 0o600)
        self.assertEqual(os.listdir(self.path.parent), ["file.conf"])
        self.assertEqual(written.st_ino, self.path.stat().st_ino)

    def test_identical_content_skipped_only_when_asked(self) -> None:
        """With skip_identical the same bytes and mode leave the file untouched; without it,
        or with another mode, the file is replaced."""
        write_atomically(self.path, b"same", 0o640)
        first = self.path.stat().st_ino
        self.assertEqual(
            write_atomically(self.path, b"same", 0o640, skip_identical=True).st_ino, first
        )
        self.assertEqual(self.path.stat().st_ino, first)
        write_atomically(self.path, b"same", 0o660, skip_identical=True)
        second = self.path.stat().st_ino
        self.assertNotEqual(second, first)
        self.assertEqual(self.path.stat().st_mode & 0o7777, 0o660)
        write_atomically(self.path, b"same", 0o660)
        self.assertNotEqual(self.path.stat().st_ino, second)

    def test_failed_write_keeps_the_old_file(self) -> None:
        """If writing fails, the old file stays as it was and the temp file is removed."""
        write_atomically(self.path, b"old", 0o640)

        def refuse(*args: object) -> None:
            raise OSError(28, "No space left on device")

        self.patch(os, "replace", refuse)
        self.assertRaises(OSError, write_atomically, self.path, b"new", 0o640)
        self.assertEqual(self.path.read_bytes(), b"old")
        self.assertEqual(os.listdir(self.path.parent), ["file.conf"])

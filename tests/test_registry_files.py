"""Tests for wazuhcluster.registry.keys and groups: client.keys and merged.mg files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.registry.groups import (
    GroupNameError,
    create_group_folder,
    group_name_problem,
    merged_bytes,
    multigroup_hash,
    parse_merged,
    validate_group_name,
    write_group_merged,
    write_multigroup_merged,
)
from wazuhcluster.registry.keys import (
    ClientKeysError,
    KeyEntry,
    format_client_keys,
    key_hash,
    parse_client_keys,
    read_client_keys,
    write_client_keys,
)

KEY = "a" * 64


class ClientKeysTests(SynchronousTestCase):
    """Writing and parsing client.keys."""

    def test_round_trip_and_format(self) -> None:
        """Entries are written one 'ID NAME IP KEY' line each and read back equal."""
        entries = [KeyEntry("001", "web-1", "any", KEY), KeyEntry("002", "db.2", "10.0.0.2", KEY)]
        data = format_client_keys(entries)
        self.assertEqual(data, f"001 web-1 any {KEY}\n002 db.2 10.0.0.2 {KEY}\n".encode())
        self.assertEqual(parse_client_keys(data), entries)

    def test_atomic_write_mode_and_no_temp_left(self) -> None:
        """write_client_keys replaces the file, mode 0640, leaving no temp file behind."""
        folder = Path(self.mktemp())
        path = folder / "client.keys"
        write_client_keys(path, [KeyEntry("001", "a1", "any", KEY)])
        write_client_keys(path, [KeyEntry("002", "a2", "any", KEY)])
        self.assertEqual(read_client_keys(path), [KeyEntry("002", "a2", "any", KEY)])
        self.assertEqual(path.stat().st_mode & 0o777, 0o640)
        self.assertEqual(os.listdir(folder), ["client.keys"])

    def test_missing_file_is_empty(self) -> None:
        """A node without client.keys has no agents."""
        self.assertEqual(read_client_keys(Path(self.mktemp())), [])

    def test_removed_and_blank_lines_skipped(self) -> None:
        """Wazuh's removed entries (!name) and blank lines are not agents."""
        data = f"001 !gone any {KEY}\n\n002 kept any {KEY}\r\n".encode()
        self.assertEqual(parse_client_keys(data), [KeyEntry("002", "kept", "any", KEY)])

    def test_malformed_lines_refused_with_line_number(self) -> None:
        """Every kind of bad line raises ClientKeysError naming the line."""
        bad_lines = [
            "001 onlythree any",
            "0x1 name any " + KEY,
            "001 n any " + KEY,
            "001 bad/name any " + KEY,
            "001 name 999.1.1.1 " + KEY,
            "001 name any " + "k" * 600,
            "001 name any  " + KEY,
            "1 " * 600,
        ]
        for bad in bad_lines:
            data = f"005 fine any {KEY}\n{bad}\n".encode()
            error = self.assertRaises(ClientKeysError, parse_client_keys, data)
            self.assertEqual(error.line, 2, bad)

    def test_duplicates_refused(self) -> None:
        """Two lines with the same id, or the same name, are refused."""
        same_id = f"001 a1 any {KEY}\n001 a2 any {KEY}\n".encode()
        same_name = f"001 a1 any {KEY}\n002 a1 any {KEY}\n".encode()
        self.assertIn(
            "duplicate agent id",
            str(self.assertRaises(ClientKeysError, parse_client_keys, same_id)),
        )
        self.assertIn(
            "duplicate agent name",
            str(self.assertRaises(ClientKeysError, parse_client_keys, same_name)),
        )

    def test_bounds(self) -> None:
        """Non-UTF-8 data and too many entries are refused."""
        self.assertRaises(ClientKeysError, parse_client_keys, b"\xff\xfe")
        many = "".join(f"{n:03d} agent-{n} any {KEY}\n" for n in range(1, 12)).encode()
        self.assertRaises(ClientKeysError, parse_client_keys, many, max_entries=10)

    @given(st.binary(max_size=400))
    def test_fuzz_only_client_keys_error(self, data: bytes) -> None:
        """Arbitrary bytes either parse or raise ClientKeysError, nothing else."""
        try:
            parse_client_keys(data)
        except ClientKeysError:
            pass

    def test_key_hash_is_sha1_of_line(self) -> None:
        """key_hash is the SHA-1 the agent sends in K: (of 'ID NAME IP KEY')."""
        entry = KeyEntry("001", "test_user", "any", KEY)
        expected = hashlib.sha1(f"001 test_user any {KEY}".encode()).hexdigest()
        self.assertEqual(key_hash(entry), expected)


class GroupNameTests(SynchronousTestCase):
    """Group name rules."""

    def test_valid_names(self) -> None:
        """Letters, digits, '_', '-' and '.' up to 255 characters are valid."""
        for name in ("default", "web_servers", "a.b-c", "X" * 255, "..."):
            self.assertEqual(validate_group_name(name), name)

    def test_invalid_names(self) -> None:
        """Empty, '.', '..', too long or odd characters are refused with a reason."""
        for name in ("", ".", "..", "X" * 256, "a b", "a/b", "a,b", "é", "a\n"):
            self.assertIsNotNone(group_name_problem(name), name)
            self.assertRaises(GroupNameError, validate_group_name, name)


class MergedTests(SynchronousTestCase):
    """merged.mg generation in wazuh-remoted's format."""

    def setUp(self) -> None:
        self.shared = Path(self.mktemp())
        self.shared.mkdir(parents=True)

    def test_new_group_has_agent_conf(self) -> None:
        """create_group_folder writes an empty agent.conf; a template is used if present."""
        folder = create_group_folder(self.shared, "web")
        self.assertIn(b"<agent_config>", (folder / "agent.conf").read_bytes())
        (self.shared / "agent-template.conf").write_bytes(b"<agent_config>T</agent_config>\n")
        other = create_group_folder(self.shared, "db")
        self.assertEqual((other / "agent.conf").read_bytes(), b"<agent_config>T</agent_config>\n")
        self.assertRaises(GroupNameError, create_group_folder, self.shared, "../escape")

    def test_format_exact(self) -> None:
        """The body is '#group', then ar.conf, then '!size name' records in byte order."""
        group = self.shared / "web"
        (group / "sub").mkdir(parents=True)
        (group / "agent.conf").write_bytes(b"<agent_config/>\n")
        (group / "B.txt").write_bytes(b"bee")
        (group / "sub" / "x.txt").write_bytes(b"")
        (group / ".hidden").write_bytes(b"secret")
        (group / "merged.mg.tmp").write_bytes(b"junk")
        (self.shared / "ar.conf").write_bytes(b"restart-ossec0 - restart-ossec.sh - 0\n")
        path = write_group_merged(self.shared, "web")
        expected = (
            b"#web\n"
            b"!38 ar.conf\nrestart-ossec0 - restart-ossec.sh - 0\n"
            b"!3 B.txt\nbee"
            b"!16 agent.conf\n<agent_config/>\n"
            b"!0 sub/x.txt\n"
        )
        self.assertEqual(path.read_bytes(), expected)
        title, files = parse_merged(expected)
        self.assertEqual(title, "web")
        self.assertEqual(files["B.txt"], b"bee")

    def test_unchanged_content_not_rewritten(self) -> None:
        """Rebuilding with the same content keeps the file (same inode and mtime)."""
        create_group_folder(self.shared, "web")
        path = write_group_merged(self.shared, "web")
        before = path.stat()
        write_group_merged(self.shared, "web")
        after = path.stat()
        self.assertEqual((before.st_ino, before.st_mtime_ns), (after.st_ino, after.st_mtime_ns))

    def test_multigroup_union_and_hash(self) -> None:
        """A multigroup folder is named by sha256(list)[:8]; agent.conf files are joined."""
        for group, conf, extra in (("g1", b"one\n", b"from g1"), ("g2", b"two\n", b"from g2")):
            (self.shared / group).mkdir()
            (self.shared / group / "agent.conf").write_bytes(conf)
            (self.shared / group / "common.txt").write_bytes(extra)
        multigroups = Path(self.mktemp())
        path = write_multigroup_merged(self.shared, multigroups, ["g1", "g2"])
        digest = hashlib.sha256(b"g1,g2").hexdigest()[:8]
        self.assertEqual(multigroup_hash(["g1", "g2"]), digest)
        self.assertEqual(path, multigroups / digest / "merged.mg")
        title, files = parse_merged(path.read_bytes())
        self.assertEqual(title, digest)
        self.assertEqual(
            files["agent.conf"],
            b"<!-- Source file: g1/agent.conf -->\none\n<!-- Source file: g2/agent.conf -->\ntwo\n",
        )
        self.assertEqual(files["common.txt"], b"from g2")

    def test_parse_merged_rejects_malformed(self) -> None:
        """Missing title, bad header or truncated content raise ValueError."""
        for bad in (b"", b"no title", b"#t\n!x name\n", b"#t\n!10 name\nshort"):
            self.assertRaises(ValueError, parse_merged, bad)
        self.assertEqual(merged_bytes("t", {}, None), b"#t\n")

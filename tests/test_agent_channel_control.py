"""Tests for wazuhcluster.agents.control: control messages and events, both directions."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents import control

UBUNTU = (
    "Linux |web-01 |5.15.0-91-generic |#101-Ubuntu SMP |x86_64 "
    "[Ubuntu|ubuntu: 22.04.3 LTS (Jammy Jellyfish)]"
)
MERGED = "a" * 32
CONF = "b" * 32


class UnameTests(SynchronousTestCase):
    """OS fields are extracted from uname strings as Wazuh does."""

    def test_linux(self) -> None:
        """A Linux uname gives name, platform, version, major, minor, codename and arch."""
        info = control.parse_uname(UBUNTU)
        self.assertEqual(
            info,
            control.OsInfo(
                name="Ubuntu",
                version="22.04.3 LTS",
                major="22",
                minor="04",
                codename="Jammy Jellyfish",
                platform="ubuntu",
                arch="x86_64",
            ),
        )

    def test_suse_minor(self) -> None:
        """SUSE's '15-SP5' version gives minor 5."""
        info = control.parse_uname("Linux |h |6.4 |#1 |aarch64 [SLES|sles: 15-SP5]")
        self.assertEqual((info.major, info.minor, info.arch), ("15", "5", "aarch64"))

    def test_windows(self) -> None:
        """A Windows uname gives version fields, platform 'windows' and the arch."""
        info = control.parse_uname(
            "Microsoft Windows 10 Pro [Ver: 10.0.19045.3693] |DESKTOP |x86_64"
        )
        self.assertEqual(info.name, "Microsoft Windows 10 Pro")
        self.assertEqual((info.major, info.minor, info.build), ("10", "0", "19045.3693"))
        self.assertEqual((info.platform, info.arch), ("windows", "x86_64"))

    def test_no_brackets(self) -> None:
        """A bare uname gives only the arch."""
        self.assertEqual(control.parse_uname("Darwin |mac |23.1 |x |arm64").arch, "arm64")

    def test_short_uname(self) -> None:
        """Wazuh's ``os_uname`` is the uname without its OS bracket."""
        self.assertEqual(
            control.short_uname(UBUNTU),
            "Linux |web-01 |5.15.0-91-generic |#101-Ubuntu SMP |x86_64",
        )
        self.assertEqual(
            control.short_uname("Microsoft Windows 10 Pro [Ver: 10.0.19045] |D |x86_64"),
            "Microsoft Windows 10 Pro",
        )
        self.assertEqual(control.short_uname("Darwin |mac |23.1"), "Darwin |mac |23.1")


class LabelTests(SynchronousTestCase):
    """Keep-alive label lines are read as the agent writes them."""

    def test_kinds(self) -> None:
        """Plain, hidden and system labels; the value is everything after the quotes."""
        self.assertEqual(control.parse_label('"env":prod'), control.Label("env", "prod"))
        self.assertEqual(
            control.parse_label('!"owner":a:b'), control.Label("owner", "a:b", hidden=True)
        )
        self.assertEqual(
            control.parse_label('#"_agent_ip":10.0.0.1'),
            control.Label("_agent_ip", "10.0.0.1", system=True),
        )
        self.assertEqual(control.parse_label('"aws.region":'), control.Label("aws.region", ""))

    def test_malformed(self) -> None:
        """Lines without a quoted key are not labels."""
        for line in ("env:prod", '"env"prod', '"":x', "!env:x", "#"):
            self.assertIsNone(control.parse_label(line), line)

    def test_pairs(self) -> None:
        """Pairs keep the agent's order, mark hidden keys with '!' and drop system ones."""
        self.assertEqual(
            control.label_pairs(['"env":prod', '!"owner":me', '#"_x":1', "junk", '"a.b":c']),
            (("env", "prod"), ("!owner", "me"), ("a.b", "c")),
        )


class KeepAliveTests(SynchronousTestCase):
    """Keep-alives are formatted like the 4.x agent and parsed like remoted."""

    def test_round_trip(self) -> None:
        """A formatted keep-alive parses back to its fields."""
        text = control.format_keepalive(
            UBUNTU, "Wazuh v4.14.7", CONF, ['"env":prod', '!"secret":x'], MERGED, "10.0.0.9"
        )
        self.assertEqual(
            text,
            f"#!-{UBUNTU} - Wazuh v4.14.7 / {CONF}\n"
            f'"env":prod\n!"secret":x\n{MERGED} merged.mg\n#"_agent_ip":10.0.0.9\n',
        )
        parsed = control.parse_agent_control(text)
        assert isinstance(parsed, control.KeepAlive)
        data = parsed.data
        self.assertEqual(data.uname, UBUNTU)
        self.assertEqual(data.version, "Wazuh v4.14.7")
        self.assertEqual(data.config_sum, CONF)
        self.assertEqual(data.merged_sum, MERGED)
        self.assertEqual(data.labels, ('"env":prod', '!"secret":x'))
        self.assertEqual(data.agent_ip, "10.0.0.9")
        self.assertEqual(data.os.platform, "ubuntu")

    def test_without_conf_sum_and_merged(self) -> None:
        """No agent.conf sum and no merged.mg ('x') are handled."""
        text = control.format_keepalive(UBUNTU, "Wazuh v4.9.0", None, [], None, None)
        parsed = control.parse_keepalive(text[3:])
        self.assertIsNone(parsed.config_sum)
        self.assertEqual(parsed.merged_sum, "x")
        self.assertIsNone(parsed.agent_ip)
        self.assertEqual(parsed.version, "Wazuh v4.9.0")

    def test_trailing_text_dropped(self) -> None:
        """Whatever follows the last newline is ignored."""
        parsed = control.parse_keepalive(
            f"{UBUNTU} - Wazuh v4.1 / {CONF}\n{MERGED} merged.mg\nJUNK"
        )
        self.assertEqual(parsed.merged_sum, MERGED)

    def test_needs_newline(self) -> None:
        """A keep-alive without any newline is invalid."""
        self.assertRaises(control.ControlError, control.parse_keepalive, "no newline")
        self.assertIsInstance(control.parse_agent_control("#!-whatever"), control.OtherControl)


class AgentControlTests(SynchronousTestCase):
    """Startup, shutdown and request messages from agents."""

    def test_startup(self) -> None:
        """The startup JSON gives the version; bad JSON or no version gives None."""
        text = control.format_startup("v4.14.7")
        self.assertEqual(text, '#!-agent startup {"version":"v4.14.7"}')
        self.assertEqual(control.parse_agent_control(text), control.Startup("v4.14.7"))
        self.assertEqual(
            control.parse_agent_control("#!-agent startup {oops"),
            control.Startup(None, has_info=False),
        )
        self.assertEqual(control.parse_agent_control("#!-agent startup {}"), control.Startup(None))

    def test_version_tuple(self) -> None:
        """Versions with or without 'v' or 'Wazuh ' compare as tuples."""
        self.assertEqual(control.version_tuple("v4.14.7"), (4, 14, 7))
        self.assertEqual(control.version_tuple("Wazuh v4.9"), (4, 9, 0))
        self.assertIsNone(control.version_tuple("banana"))

    def test_shutdown_and_request(self) -> None:
        """Shutdown is exact; req is recognised; non-control text is refused."""
        self.assertEqual(control.parse_agent_control("#!-agent shutdown "), control.Shutdown())
        self.assertIsInstance(control.parse_agent_control("#!-req 1 ok"), control.Request)
        self.assertRaises(control.ControlError, control.parse_agent_control, "1:x:y")
        self.assertTrue(control.is_control(b"#!-x"))
        self.assertFalse(control.is_control("1:x:y"))


class EventTests(SynchronousTestCase):
    """Events are '<queue>:<location>:<message>'."""

    def test_parse(self) -> None:
        """The message may itself contain colons."""
        event = control.parse_event("1:/var/log/auth.log:a: b: c")
        self.assertEqual(event, control.AgentEventText("1", "/var/log/auth.log", "a: b: c"))
        self.assertEqual(control.format_event("1", "loc", "m"), "1:loc:m")

    def test_malformed(self) -> None:
        """Missing queue, location or separators raise ControlError."""
        for bad in ("", "1:", "1:loc", "::x:y", "1x:loc:m", "1::m", "Z:loc:m"):
            self.assertRaises(control.ControlError, control.parse_event, bad)


class ManagerMessageTests(SynchronousTestCase):
    """Messages the manager sends, as the agent (simulator) reads them."""

    def test_kinds(self) -> None:
        """Ack, file update, close, reconnect, error, other and plain chunks are told apart."""
        parse = control.parse_manager_message
        self.assertEqual(parse(control.ACK.encode()), control.Ack())
        self.assertEqual(
            parse(control.format_file_update(MERGED).encode()),
            control.FileUpdate(MERGED, "merged.mg"),
        )
        self.assertEqual(parse(control.FILE_CLOSE.encode()), control.FileClose())
        self.assertEqual(parse(b"#!-force_reconnect"), control.ForceReconnect())
        self.assertEqual(
            parse(control.format_error("Incompatible version").encode()),
            control.ManagerError("Incompatible version"),
        )
        self.assertEqual(parse(b"#!-execd x"), control.ManagerOther("execd x"))
        self.assertEqual(parse(b"plain bytes"), control.FileChunk(b"plain bytes"))

    def test_unsafe_file_names(self) -> None:
        """File names with '/' or a leading '.', or a bad md5, are refused."""
        for bad in (f"#!-up file {MERGED} ../x", f"#!-up file {MERGED} .hidden", "#!-up file zz x"):
            self.assertRaises(control.ControlError, control.parse_manager_message, bad.encode())

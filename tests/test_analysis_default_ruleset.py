"""Tests for the project's default ruleset and the engine API on top of it."""

from __future__ import annotations

import os

from twisted.trial import unittest

from tests.analysis_data import CLOCK
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Event, QueueFormatError, parse_queue_message
from wazuhcluster.analysis.loader import install_default_ruleset, load_engine

SSH_FAIL = "Feb 10 23:21:05 srv sshd[12]: Failed password for {user} from {ip} port 5640 ssh2"


class DefaultRulesetTests(unittest.SynchronousTestCase):
    """install_default_ruleset() and what the default rules detect."""

    def setUp(self) -> None:
        """A HOME with the default ruleset and an engine on it."""
        self.home = self.mktemp()
        self.written = install_default_ruleset(self.home)
        self.engine = load_engine(self.home, identity=Identity("w1", "prod", "worker-1"))

    def process(self, line: str, offset: float = 0.0, **event: object) -> dict | None:
        """The alert for one line."""
        return self.engine.process(Event(line, timestamp=CLOCK + offset, **event))  # type: ignore[arg-type]

    def test_installed_layout(self) -> None:
        """Decoders and rules go to ruleset/, lists to etc/lists, user dirs are created."""
        self.assertIn("ruleset/decoders/0010-base_decoders.xml", self.written)
        self.assertIn("ruleset/rules/0100-sshd_rules.xml", self.written)
        self.assertIn("etc/lists/admin-users", self.written)
        for folder in ("etc/decoders", "etc/rules"):
            self.assertTrue(os.path.isdir(os.path.join(self.home, folder)))

    def test_install_keeps_existing_files(self) -> None:
        """A second install leaves files alone unless asked to overwrite."""
        self.assertEqual(install_default_ruleset(self.home), [])
        self.assertEqual(install_default_ruleset(self.home, overwrite=True), self.written)

    def test_ssh_login_and_admin_list(self) -> None:
        """A login alerts 5715; an administrator from the CDB list alerts 5718."""
        line = "Feb 10 23:21:05 srv sshd[12]: Accepted publickey for {} from 10.0.0.9 port 22"
        self.assertEqual(self.process(line.format("bob"))["rule"]["id"], "5715")  # type: ignore[index]
        alert = self.process(line.format("root"))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "5718")
        self.assertEqual(
            alert["rule"]["description"],
            "sshd: administrator account root logged in from 10.0.0.9.",
        )
        self.assertEqual(alert["cluster"], {"name": "prod", "node": "worker-1"})

    def test_brute_force_and_ignore_window(self) -> None:
        """Eight failures from one address fire 5720 once within its ignore window."""
        ids = [
            self.process(SSH_FAIL.format(user="u", ip="1.2.3.4"), i)["rule"]["id"]  # type: ignore[index]
            for i in range(8)
        ]
        self.assertEqual(ids, ["5716"] * 7 + ["5720"])
        self.assertEqual(
            self.process(SSH_FAIL.format(user="u", ip="5.5.5.5"), 9)["rule"]["id"],  # type: ignore[index]
            "5716",
        )

    def test_no_sshd_failure_is_lost(self) -> None:
        """N numbered failures give N alerts: 5720 when it may fire, 5716 for all the rest."""
        alerts = [
            self.process(SSH_FAIL.format(user=f"u{n}", ip="1.2.3.4"), n * 2.0) for n in range(60)
        ]
        self.assertNotIn(None, alerts)
        ids = [alert["rule"]["id"] for alert in alerts]  # type: ignore[index]
        self.assertEqual(set(ids), {"5716", "5720"})
        # 5720 matches every 8th failure (7, 15, 23, 31, 39...); inside its 60 s ignore
        # window (until 14 + 60 s) those alert as 5716, the first match after it as 5720.
        self.assertEqual([n for n, found in enumerate(ids) if found == "5720"], [7, 39])
        logs = [alert["full_log"] for alert in alerts]  # type: ignore[index]
        self.assertEqual(logs, [SSH_FAIL.format(user=f"u{n}", ip="1.2.3.4") for n in range(60)])

    def test_sudo_and_web(self) -> None:
        """sudo commands as root and web 4xx answers alert."""
        sudo = (
            "Feb 10 23:21:05 srv sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
            "COMMAND=/bin/ls"
        )
        alert = self.process(sudo)
        assert alert is not None
        self.assertEqual(
            (alert["rule"]["id"], alert["data"]["srcuser"], alert["data"]["command"]),
            ("5402", "alice", "/bin/ls"),
        )
        web = '1.2.3.4 - - [10/Feb/2024:10:00:00 +0000] "GET /admin HTTP/1.1" 404 12 "-" "curl"'
        alert = self.process(
            web,
            agent_id="003",
            agent_name="web",
            agent_ip="10.0.0.3",
            location="/var/log/nginx/access.log",
        )
        assert alert is not None
        self.assertEqual(
            (alert["rule"]["id"], alert["data"]["url"], alert["location"]),
            ("31101", "/admin", "/var/log/nginx/access.log"),
        )

    def test_identity_from_the_event(self) -> None:
        """Manager and cluster names given with the event override the engine's identity."""
        line = "Feb 10 23:21:05 srv sshd[12]: Accepted publickey for bob from 10.0.0.9 port 22"
        alert = self.process(line, manager_name="w2", cluster_node="worker-2")
        assert alert is not None
        self.assertEqual(
            (alert["manager"], alert["cluster"], alert["agent"]["name"]),
            ({"name": "w2"}, {"name": "prod", "node": "worker-2"}, "w2"),
        )
        hidden = self.process(line, hide_cluster=True)
        assert hidden is not None
        self.assertNotIn("cluster", hidden)

    def test_json_events_decode_without_alert(self) -> None:
        """JSON lines are decoded by the JSON decoder; no default rule alerts on them."""
        verdict = self.engine.analyse(Event('{"a":{"b":"c"}}', timestamp=CLOCK))
        assert verdict.event.decoder is not None
        self.assertEqual(verdict.event.decoder.name, "json")
        self.assertFalse(verdict.alert)
        self.assertEqual(verdict.output["data"], {"a": {"b": "c"}})

    def test_long_message_is_bounded(self) -> None:
        """Messages are cut to 64 KiB before analysis."""
        verdict = self.engine.analyse(Event("x" * 200_000, timestamp=CLOCK))
        self.assertEqual(len(verdict.event.full_log), 64 * 1024)


class QueueFormatTests(unittest.SynchronousTestCase):
    """parse_queue_message reads Wazuh's '<queue>:<location>:<message>' lines."""

    def test_manager_event(self) -> None:
        """A plain location is the manager's own event; '|:' escapes a colon."""
        event = parse_queue_message("1:C|:\\log.txt:hello: world", 5.0)
        self.assertEqual(
            (event.location, event.message, event.agent_id, event.timestamp),
            ("C:\\log.txt", "hello: world", "000", 5.0),
        )

    def test_agent_event(self) -> None:
        """'[id] (name) ip->location' fills the agent fields."""
        event = parse_queue_message("1:[001] (web1) 10.0.0.1->/var/log/secure:Feb 1 x")
        self.assertEqual(
            (event.agent_id, event.agent_name, event.agent_ip, event.location, event.message),
            ("001", "web1", "10.0.0.1", "/var/log/secure", "Feb 1 x"),
        )

    def test_bad_messages(self) -> None:
        """Malformed lines raise QueueFormatError."""
        for raw in ("", "x", "1:nolocation", "1:[001 (a) b->c:m", "1:[abc] (a) b->c:m"):
            self.assertRaises(QueueFormatError, parse_queue_message, raw)

"""Routing by queue: each agent message type decoded as Wazuh's analysisd does, and the stock
ruleset's rules it fires (``WAZUH_RULESET``; those tests skip without it)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.trial import unittest

from tests.analysis_data import CLOCK, make_engine
from wazuhcluster.analysis.agentstate import MemoryState
from wazuhcluster.analysis.engine import Engine, parse_queue_message
from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.analysis.rootcheck import file_of, title_of
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.testing.reference import missing_reason, wazuh_ruleset

AGENT = "[003] (web01) any->"

FIM_MODIFIED = {
    "type": "event",
    "data": {
        "path": "/etc/ssh/sshd_config",
        "version": 2,
        "mode": "realtime",
        "type": "modified",
        "timestamp": 1718022911,
        "attributes": {
            "type": "file",
            "size": 3312,
            "perm": "rw-r--r--",
            "uid": "0",
            "gid": "0",
            "user_name": "root",
            "group_name": "root",
            "inode": "2623517",
            "mtime": 1718022910,
            "hash_md5": "3f0a6c9e1b2d4e5f60718293a4b5c6d7",
            "hash_sha1": "8c1e0f2a3b4c5d6e7f8091a2b3c4d5e6f7081920",
            "hash_sha256": "d2a1" + "0" * 60,
            "checksum": "1b7e3c9d0a2f4e6b8c0d1e2f3a4b5c6d7e8f9a0b",
        },
        "old_attributes": {
            "type": "file",
            "size": 3290,
            "perm": "rw-r--r--",
            "uid": "0",
            "gid": "0",
            "user_name": "root",
            "group_name": "root",
            "inode": "2623517",
            "mtime": 1717931002,
            "hash_md5": "00000000000000000000000000000001",
            "hash_sha1": "0000000000000000000000000000000000000001",
            "hash_sha256": "1" * 64,
        },
        "changed_attributes": ["size", "mtime", "md5", "sha1", "sha256"],
    },
}

SCA_CHECK = {
    "type": "check",
    "id": 1402771825,
    "policy": "CIS Ubuntu Linux 22.04 LTS Benchmark v1.0.0",
    "policy_id": "cis_ubuntu22-04",
    "check": {
        "id": 28612,
        "title": "Ensure SSH root login is disabled.",
        "description": "d",
        "rationale": "r",
        "remediation": "Set PermitRootLogin no in sshd_config.",
        "compliance": {"cis": "5.2.7", "pci_dss": "2.2.4,8.6", "nist_sp_800-53": "AC-6(2)"},
        "rules": ["c:sshd -T -> r:^\\s*permitrootlogin\\s+no"],
        "condition": "all",
        "references": "https://www.cisecurity.org/cis-benchmarks/",
        "command": "sshd -T",
        "result": "failed",
    },
}

SCA_SUMMARY = {
    "type": "summary",
    "scan_id": 1402771825,
    "name": "CIS Ubuntu Linux 22.04 LTS Benchmark v1.0.0",
    "policy_id": "cis_ubuntu22-04",
    "file": "cis_ubuntu22-04.yml",
    "description": "d",
    "references": "r",
    "passed": 96,
    "failed": 78,
    "invalid": 12,
    "total_checks": 186,
    "score": 55.1724128723145,
    "start_time": 1718024100,
    "end_time": 1718024103,
    "hash": "a" * 64,
    "hash_file": "b" * 64,
}


def sca_summary(policy_id: str, scan_id: int, results_hash: str, **more: Any) -> dict[str, Any]:
    """A summary with every field Wazuh requires: :data:`SCA_SUMMARY` for policy
    ``policy_id``, scan ``scan_id`` and results hash ``results_hash``, then ``more``."""
    return dict(SCA_SUMMARY, policy_id=policy_id, scan_id=scan_id, hash=results_hash, **more)


WIN_FAILED_LOGON = (
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
    "<Provider Name='Microsoft-Windows-Security-Auditing' "
    "Guid='{54849625-5478-4994-a5ba-3e3b0328c30d}'/><EventID>4625</EventID>"
    "<Version>0</Version><Level>0</Level><Task>12544</Task><Opcode>0</Opcode>"
    "<Keywords>0x8010000000000000</Keywords>"
    "<TimeCreated SystemTime='2024-06-10T12:44:51.3344710Z'/>"
    "<EventRecordID>184233</EventRecordID><Correlation/>"
    "<Execution ProcessID='684' ThreadID='1720'/><Channel>Security</Channel>"
    "<Computer>WIN-SRV01.corp.local</Computer><Security/></System><EventData>"
    "<Data Name='SubjectUserSid'>S-1-0-0</Data><Data Name='TargetUserName'>administrator</Data>"
    "<Data Name='Status'>0xc000006d</Data><Data Name='SubStatus'>0xc000006a</Data>"
    "<Data Name='LogonType'>3</Data><Data Name='IpAddress'>198.51.100.23</Data>"
    "<Data Name='WorkstationName'>-</Data></EventData></Event>"
)


def queue_line(queue: str, location: str, message: str | dict[str, Any]) -> str:
    """``<queue>:[003] (web01) any-><location>:<message>`` as remoted hands it on."""
    text = message if isinstance(message, str) else json.dumps(message)
    return f"{queue}:{AGENT}{location}:{text}"


def run(engine: Engine, line: str, offset: float = 0.0) -> dict[str, Any] | None:
    """The alert of one queue line."""
    return engine.process(parse_queue_message(line, timestamp=CLOCK + offset))


def stock_engine(home: str) -> Engine:
    """An engine on Wazuh's own decoders, rules and lists."""
    ruleset = wazuh_ruleset()
    shutil.copytree(os.path.join(ruleset, "decoders"), os.path.join(home, "ruleset", "decoders"))
    shutil.copytree(os.path.join(ruleset, "rules"), os.path.join(home, "ruleset", "rules"))
    shutil.copytree(os.path.join(ruleset, "lists"), os.path.join(home, "etc", "lists"))
    for kind in ("rules", "decoders"):
        os.makedirs(os.path.join(home, "etc", kind), exist_ok=True)
    settings = RulesetSettings(
        decoder_dirs=("ruleset/decoders", "etc/decoders"),
        rule_dirs=("ruleset/rules", "etc/rules"),
        rule_excludes=("0215-policy_rules.xml",),
        lists=(
            "etc/lists/audit-keys",
            "etc/lists/malicious-ioc/malware-hashes",
            "etc/lists/malicious-ioc/malicious-ip",
            "etc/lists/malicious-ioc/malicious-domains",
        ),
    )
    return load_engine(home, settings)


class StockRulesetQueueTests(unittest.TestCase):
    """Every queue with Wazuh's stock ruleset."""

    skip = missing_reason("WAZUH_RULESET")
    shared: list[Engine] = []

    def setUp(self) -> None:
        """One stock engine for the class (loading it takes a moment), with fresh
        correlation and agent state for each test."""
        if not self.shared:
            home = os.path.abspath("stock-ruleset-home")
            shutil.rmtree(home, ignore_errors=True)
            self.shared.append(stock_engine(home))
        self.engine = self.shared[0]
        self.engine.reset()
        self.engine.agent_state = MemoryState()

    def test_fim_modified_added_deleted(self) -> None:
        """FIM 4.x JSON events alert 550, 554 and 553 with the syscheck object, no data."""
        alert = run(self.engine, queue_line("8", "syscheck", FIM_MODIFIED))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "550")
        self.assertEqual(alert["decoder"], {"name": "syscheck_integrity_changed"})
        self.assertEqual(alert["location"], "syscheck")
        self.assertEqual(alert["rule"]["pci_dss"], ["11.5"])
        self.assertNotIn("data", alert)
        syscheck = alert["syscheck"]
        self.assertEqual(syscheck["path"], "/etc/ssh/sshd_config")
        self.assertEqual((syscheck["size_before"], syscheck["size_after"]), ("3290", "3312"))
        self.assertNotIn("perm_before", syscheck)
        self.assertEqual(syscheck["perm_after"], "rw-r--r--")
        self.assertEqual(syscheck["inode_after"], 2623517)
        self.assertEqual(syscheck["changed_attributes"], ["size", "mtime", "md5", "sha1", "sha256"])
        self.assertEqual(syscheck["event"], "modified")
        self.assertTrue(
            alert["full_log"].startswith(
                "File '/etc/ssh/sshd_config' modified\nMode: realtime\n"
                "Changed attributes: size,mtime,md5,sha1,sha256\n"
                "Size changed from '3290' to '3312'\n"
            )
        )
        added = json.loads(json.dumps(FIM_MODIFIED))
        added["data"]["type"] = "added"
        del added["data"]["old_attributes"], added["data"]["changed_attributes"]
        alert = run(self.engine, queue_line("8", "syscheck", added), 1)
        assert alert is not None
        self.assertEqual(
            (alert["rule"]["id"], alert["decoder"]["name"]), ("554", "syscheck_new_entry")
        )
        deleted = json.loads(json.dumps(added))
        deleted["data"]["type"] = "deleted"
        alert = run(self.engine, queue_line("8", "syscheck", deleted), 2)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "553")
        scan = {"type": "scan_end", "data": {"timestamp": 1718022999}}
        self.assertIsNone(run(self.engine, queue_line("8", "syscheck", scan), 3))

    def test_fim_registry_value(self) -> None:
        """A registry value event is decoded with its own decoder and alerts 750."""
        event = {
            "type": "event",
            "data": {
                "path": "HKEY_LOCAL_MACHINE\\System\\CurrentControlSet\\Services\\x",
                "version": 3,
                "mode": "scheduled",
                "type": "modified",
                "arch": "[x64]",
                "value_name": "Start",
                "index": "9f" * 20,
                "timestamp": 1718022911,
                "attributes": {"type": "registry_value", "value_type": "REG_DWORD", "size": 4},
                "old_attributes": {"type": "registry_value", "value_type": "REG_DWORD", "size": 4},
                "changed_attributes": ["md5"],
            },
        }
        alert = run(self.engine, queue_line("8", "syscheck", event))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "750")
        self.assertEqual(alert["decoder"]["name"], "syscheck_registry_value_modified")
        self.assertTrue(alert["full_log"].startswith("Registry Value '[x64] HKEY_LOCAL_MACHINE"))
        self.assertEqual(alert["syscheck"]["value_name"], "Start")

    def test_fim_legacy_text(self) -> None:
        """The older text form alerts 554 for a new path, 550 on a change, nothing when equal."""
        first = "3290:rw-r--r--:0:0:aa:bb:root:root:1717931002:2623517:cc /etc/hosts"
        second = "3312:rw-r--r--:0:0:dd:bb:root:root:1718022910:2623517:ee /etc/hosts"
        alert = run(self.engine, queue_line("8", "syscheck", first))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "554")
        self.assertIsNone(run(self.engine, queue_line("8", "syscheck", first), 1))
        alert = run(self.engine, queue_line("8", "syscheck", second), 2)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "550")
        self.assertEqual(
            alert["syscheck"]["changed_attributes"], ["size", "mtime", "md5", "sha256"]
        )
        self.assertEqual(alert["syscheck"]["md5_before"], "aa")
        alert = run(self.engine, queue_line("8", "syscheck", "-1 /etc/hosts"), 3)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "553")
        self.assertIsNone(run(self.engine, queue_line("8", "syscheck", "fim-db-end-scan"), 4))

    def test_rootcheck(self) -> None:
        """A rootcheck finding alerts 510 (or a child) with its title, file and compliance."""
        text = (
            "System Audit: SSH Hardening - 4: No Public Key authentication {PCI_DSS: 2.2.4}. "
            "File: /etc/ssh/sshd_config. Reference: https://www.openssh.com/manual.html ."
        )
        alert = run(self.engine, queue_line("9", "rootcheck", text))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "516")
        self.assertEqual(alert["decoder"], {"name": "rootcheck"})
        self.assertEqual(alert["data"]["file"], "/etc/ssh/sshd_config")
        self.assertEqual(alert["data"]["title"], "SSH Hardening - 4: No Public Key authentication")
        self.assertEqual(alert["rule"]["pci_dss"], ["2.2.4"])
        other = "Trojaned version of file '/bin/ls' detected. Signature used: 'bash|^/bin/sh' ."
        alert = run(self.engine, queue_line("9", "rootcheck", other), 1)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "510")

    def test_sca_check_alerts_only_on_a_change(self) -> None:
        """A new failed check alerts 19007; the same result again does not; a change to
        passed alerts 19010 with the previous result; compliance joins the rule."""
        alert = run(self.engine, queue_line("p", "sca", SCA_CHECK))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "19007")
        self.assertEqual(alert["decoder"], {"name": "sca"})
        check = alert["data"]["sca"]["check"]
        self.assertEqual(check["id"], "28612")
        self.assertEqual(check["command"], ["sshd -T"])
        self.assertNotIn("previous_result", check)
        self.assertEqual(alert["rule"]["cis"], ["5.2.7"])
        self.assertEqual(alert["rule"]["pci_dss"], ["2.2", "2.2.4", "8.6"])
        self.assertNotIn("full_log", alert)
        self.assertIsNone(run(self.engine, queue_line("p", "sca", SCA_CHECK), 1))
        passed = json.loads(json.dumps(SCA_CHECK))
        passed["check"]["result"] = "passed"
        alert = run(self.engine, queue_line("p", "sca", passed), 2)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "19010")
        self.assertEqual(alert["data"]["sca"]["check"]["previous_result"], "failed")
        failed = json.loads(json.dumps(SCA_CHECK))
        alert = run(self.engine, queue_line("p", "sca", failed), 3)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "19011")
        self.assertEqual(alert["rule"]["level"], 9)

    def test_sca_summary(self) -> None:
        """A first-scan summary is stored silently; a later one with a new hash alerts with
        its score band (55 → 19003); the same hash again does not."""
        first = dict(SCA_SUMMARY, first_scan=1)
        self.assertIsNone(run(self.engine, queue_line("p", "sca", first)))
        later = dict(SCA_SUMMARY, hash="c" * 64)
        alert = run(self.engine, queue_line("p", "sca", later), 1)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "19003")
        self.assertEqual(alert["data"]["sca"]["score"], "55")
        self.assertEqual(alert["data"]["sca"]["type"], "summary")
        self.assertIsNone(run(self.engine, queue_line("p", "sca", later), 2))
        forced = dict(SCA_SUMMARY, hash="c" * 64, force_alert="1")
        self.assertIsNotNone(run(self.engine, queue_line("p", "sca", forced), 3))

    def test_windows_eventchannel(self) -> None:
        """A failed logon (4625) alerts in the 60000 family with data.win.*."""
        message = {
            "Message": "An account failed to log on.\r\n\r\nSubject: x",
            "Event": WIN_FAILED_LOGON,
        }
        alert = run(self.engine, queue_line("f", "EventChannel", message))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "60122")
        self.assertEqual(alert["decoder"], {"name": "windows_eventchannel"})
        win = alert["data"]["win"]
        self.assertEqual(win["system"]["eventID"], "4625")
        self.assertEqual(win["system"]["providerName"], "Microsoft-Windows-Security-Auditing")
        self.assertEqual(win["system"]["severityValue"], "AUDIT_FAILURE")
        self.assertEqual(
            win["system"]["message"], '"An account failed to log on.\r\n\r\nSubject: x"'
        )
        self.assertEqual(win["eventdata"]["targetUserName"], "administrator")
        self.assertNotIn("workstationName", win["eventdata"])
        self.assertEqual(alert["location"], "EventChannel")

    def test_agent_start_and_stop(self) -> None:
        """The agent's own start and remoted's stop notices alert 503/501 and 506."""
        started = run(
            self.engine, queue_line("1", "wazuh-agent", "ossec: Agent started: 'web01->any'.")
        )
        assert started is not None
        self.assertIn(started["rule"]["id"], ("501", "503"))
        stopped = run(
            self.engine, queue_line("1", "wazuh-remoted", "ossec: Agent stopped: 'web01->any'."), 1
        )
        assert stopped is not None
        self.assertEqual(stopped["rule"]["id"], "506")

    def test_hostinfo(self) -> None:
        """A new host alerts 581, changed ports 580, the same ports nothing."""
        line = "Host: 192.168.10.7 (gw.example.lan), open ports: 22(tcp) 443(tcp)"
        alert = run(self.engine, queue_line("3", "/var/log/nmap.log", line))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "581")
        self.assertEqual(alert["decoder"], {"name": "hostinfo_modified"})
        self.assertIsNone(run(self.engine, queue_line("3", "/var/log/nmap.log", line), 1))
        changed = line.replace(" 443(tcp)", "")
        alert = run(self.engine, queue_line("3", "/var/log/nmap.log", changed), 2)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "580")

    def test_syscollector_and_dbsync_do_not_alert(self) -> None:
        """Inventory deltas match rule 221 (level 0); dbsync is stored only."""
        delta = {
            "data": {
                "name": "openssh-server",
                "version": "1:8.9p1",
                "groups": "net",
                "item_id": "4b",
            },
            "operation": "MODIFIED",
            "type": "dbsync_packages",
        }
        verdict = self.engine.analyse(parse_queue_message(queue_line("d", "syscollector", delta)))
        assert verdict.rule is not None
        self.assertEqual(verdict.rule.id, 221)
        self.assertFalse(verdict.alert)
        self.assertEqual(verdict.event.find_field("program.section"), "net")
        state = {
            "component": "fim_file",
            "data": {"attributes": {"type": "file"}, "index": "/etc/hosts", "timestamp": 1},
            "type": "state",
        }
        self.assertIsNone(run(self.engine, queue_line("5", "fim_file", state)))

    def test_sshd_brute_force_loses_nothing(self) -> None:
        """Stock sshd failures: every one alerts (5710, or 5712 when the frequency rule may)."""
        lines = [
            f"Jun 10 12:31:{n % 60:02d} web01 sshd[2211]: Failed password for invalid user "
            f"admin{n} from 203.0.113.7 port 52144 ssh2"
            for n in range(40)
        ]
        alerts = [
            run(self.engine, queue_line("1", "/var/log/auth.log", line), n)
            for n, line in enumerate(lines)
        ]
        self.assertNotIn(None, alerts)
        ids = [alert["rule"]["id"] for alert in alerts]  # type: ignore[index]
        self.assertEqual(set(ids), {"5710", "5712"})


class SmallRulesetQueueTests(unittest.SynchronousTestCase):
    """The routing itself, with tiny rule files made here."""

    RULES = """
<group name="ossec,">
  <rule id="7" level="0" noalert="1"><category>ossec</category><description>root</description>
  </rule>
  <rule id="100" level="0"><category>ossec</category><decoded_as>rootcheck</decoded_as>
    <description>rootcheck</description></rule>
  <rule id="101" level="7"><if_sid>100</if_sid><description>finding $(title)</description>
    <group>rootcheck,</group></rule>
  <rule id="102" level="5"><category>ossec</category><decoded_as>syscheck_new_entry</decoded_as>
    <description>added</description></rule>
  <rule id="103" level="3"><match>hello</match><description>hello</description></rule>
</group>
"""

    def setUp(self) -> None:
        """An engine with the small rules."""
        self.engine = make_engine(self.mktemp(), "", self.RULES)

    def test_generic_queues_use_the_xml_decoders(self) -> None:
        """Queues 1, 2 and 4 are matched as log lines."""
        for queue in "124":
            alert = run(self.engine, f"{queue}:/var/log/x:hello world")
            assert alert is not None
            self.assertEqual(alert["rule"]["id"], "103")

    def test_module_queues_are_not_syslog(self) -> None:
        """A rootcheck message alerts its rule, never the log rule; FIM goes to its own."""
        alert = run(self.engine, queue_line("9", "rootcheck", "File '/tmp/x' hello is bad."))
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "101")
        self.assertEqual(alert["rule"]["description"], "finding File hello is bad.")
        added = json.loads(json.dumps(FIM_MODIFIED))
        added["data"]["type"] = "added"
        alert = run(self.engine, queue_line("8", "syscheck", added), 1)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "102")
        self.assertIsNone(run(self.engine, queue_line("8", "syscheck", "{not json hello"), 2))

    def test_unknown_queue_is_counted_and_noted_once(self) -> None:
        """A message of an unknown letter is not analysed; one notice per agent and letter."""
        for offset in range(3):
            self.assertIsNone(run(self.engine, queue_line("z", "x", "hello"), offset))
        self.assertIsNone(run(self.engine, "z:[004] (db) any->x:hello"))
        self.assertEqual(self.engine.unknown_queues[("003", "z")], 3)
        notices = self.engine.take_notices()
        self.assertEqual(len(notices), 2)
        self.assertIn("unknown queue 'z'", notices[0])
        self.assertEqual(self.engine.take_notices(), [])

    def test_malformed_sca_summary_is_refused_and_noted_once(self) -> None:
        """A summary lacking a field Wazuh requires (here ``start_time``, then a text
        ``hash``) is not stored, asks the agent nothing and does not alert; the first of
        each agent, queue and reason is noted with the field named; a whole one is kept."""
        without_start = {k: v for k, v in SCA_SUMMARY.items() if k != "start_time"}
        for offset in range(3):
            self.assertIsNone(run(self.engine, queue_line("p", "sca", without_start), offset))
        self.assertIsNone(run(self.engine, queue_line("p", "sca", dict(SCA_SUMMARY, hash=7))))
        state = self.engine.agent_state
        self.assertIsNone(state.sca_scan_hash("003", SCA_SUMMARY["policy_id"]))
        self.assertEqual(state.take_replies(), [])
        self.assertEqual(
            self.engine.malformed[("003", "p", "SCA summary: field 'start_time' not found")], 3
        )
        notices = self.engine.take_notices()
        self.assertEqual(len(notices), 2, notices)
        self.assertIn("malformed message to queue 'p'", notices[0])
        self.assertIn("field 'start_time' not found", notices[0])
        self.assertIn("field 'hash' must be a string", notices[1])
        run(self.engine, queue_line("p", "sca", SCA_SUMMARY), 4)
        self.assertEqual(state.sca_scan_hash("003", SCA_SUMMARY["policy_id"]), SCA_SUMMARY["hash"])
        self.assertEqual(self.engine.take_notices(), [])

    def test_queue_letter_is_parsed(self) -> None:
        """parse_queue_message keeps the letter."""
        self.assertEqual(parse_queue_message("p:[001] (a) any->sca:{}").queue, "p")
        self.assertEqual(parse_queue_message("1:/var/log/x:y").queue, "1")

    def test_rootcheck_title_and_file(self) -> None:
        """Wazuh's title and file extraction."""
        text = "File '/opt/webapp/run.sh' is owned by root and has written permissions to anyone."
        self.assertEqual(
            title_of(text), "File is owned by root and has written permissions to anyone."
        )
        self.assertEqual(file_of(text), "/opt/webapp/run.sh")
        self.assertIsNone(title_of(" {PCI_DSS: 1}"))

"""Tests for wazuhcluster.master.enrollment_authority: the master's enrollment decision."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.agents.enrollment import (
    EnrollmentRequest,
    EnrollmentServerFactory,
    parse_reply,
    parse_request,
)
from wazuhcluster.config.auth_settings import ForceRules
from wazuhcluster.master.enrollment_authority import (
    EnrollmentAuthority,
    EnrollmentOutcome,
    EnrollmentPolicy,
    decide_enrollment,
    replacement_refusal,
)
from wazuhcluster.registry.keys import KeyEntry, key_hash, read_client_keys
from wazuhcluster.registry.model import AgentInfoReport
from wazuhcluster.registry.service import AsyncRegistry, synchronous_runner
from wazuhcluster.registry.store import Registry, RegistryFiles

NOW = 1_000_000.0
#: Force rules with no time conditions, so only 'enabled' and key_mismatch matter.
NO_TIME = ForceRules(disconnected_time_enabled=False, after_registration_time=0.0)


class Clocked:
    """A wall clock the tests move."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class DecisionTests(SynchronousTestCase):
    """decide_enrollment against a real registry in a temporary directory."""

    def setUp(self) -> None:
        home = Path(self.mktemp())
        self.clock = Clocked()
        self.registry = Registry.open(home / "global.db", None, self.clock)
        self.addCleanup(self.registry.close)

    def decide(
        self, line: str, policy: EnrollmentPolicy | None = None, source: str = "10.9.8.7"
    ) -> EnrollmentOutcome:
        """Parse ``line`` and decide it now."""
        return decide_enrollment(
            self.registry, parse_request(line), source, policy or EnrollmentPolicy(), self.clock.now
        )

    def connected(self, agent_id: str) -> None:
        """Mark ``agent_id`` as seen active by a node (its key is in use)."""
        self.registry.apply_agent_info([AgentInfoReport(agent_id, "w1", 1.0, 0, "active", NOW)])

    def test_success_registers_and_replies_with_key(self) -> None:
        """A valid request gets OSSEC K: with a new id and a 64-hex key, IP 'any'."""
        outcome = self.decide("OSSEC A:'agent-1'")
        entry = parse_reply(outcome.reply())
        self.assertEqual((entry.id, entry.name, entry.ip), ("001", "agent-1", "any"))
        self.assertRegex(entry.key, r"^[0-9a-f]{64}$")
        agent = self.registry.get_agent("001")
        assert agent is not None
        self.assertEqual(agent.key, entry.key)

    def test_password_required(self) -> None:
        """Missing or wrong passwords are refused; the right one passes."""
        policy = EnrollmentPolicy(password="topsecret")
        for line in (
            "OSSEC A:'a1'",
            "OSSEC PASS: wrong OSSEC A:'a1'",
            "OSSEC PASS: topsecretX OSSEC A:'a1'",
            "OSSEC PASS:  OSSEC A:'a1'",
        ):
            self.assertEqual(
                self.decide(line, policy).reply(), "ERROR: Invalid password. Unable to add agent"
            )
        self.assertIsNotNone(self.decide("OSSEC PASS: topsecret OSSEC A:'a1'", policy).agent)
        self.assertEqual(self.registry.count_agents(), 1)

    def test_password_ignored_when_not_required(self) -> None:
        """An agent that sends a password to a manager without one still enrolls."""
        self.assertIsNotNone(self.decide("OSSEC PASS: whatever OSSEC A:'a1'").agent)

    def test_newer_agent_version_refused(self) -> None:
        """A higher major.minor than the manager is refused unless allowed."""
        major, minor = (int(part) for part in WAZUH_VERSION.split(".")[:2])
        newer = f"OSSEC A:'a1' V:'v{major}.{minor + 1}.0'"
        self.assertEqual(
            self.decide(newer).reply(),
            "ERROR: Agent version must be lower or equal to manager version. Unable to add agent",
        )
        self.assertIsNotNone(self.decide(f"OSSEC A:'a1' V:'v{WAZUH_VERSION}'").agent)
        allow = EnrollmentPolicy(allow_higher_versions=True)
        self.assertIsNotNone(self.decide(newer.replace("a1", "a2"), allow).agent)

    def test_unknown_group_refused(self) -> None:
        """A group that does not exist is refused by name; an existing one is used."""
        self.assertEqual(
            self.decide("OSSEC A:'a1' G:'web'").reply(),
            "ERROR: Invalid group: web. Unable to add agent",
        )
        self.registry.create_group("web")
        outcome = self.decide("OSSEC A:'a1' G:'web'")
        assert outcome.agent is not None
        self.assertEqual(outcome.agent.groups, ("web",))

    def test_ip_choice(self) -> None:
        """IP:'src' and use_source_ip use the peer; an explicit IP is kept; default 'any'."""
        self.assertEqual(self.decide("OSSEC A:'a1' IP:'src'").agent.ip, "10.9.8.7")  # type: ignore[union-attr]
        self.assertEqual(self.decide("OSSEC A:'a2' IP:'10.0.0.2'").agent.ip, "10.0.0.2")  # type: ignore[union-attr]
        self.assertEqual(self.decide("OSSEC A:'a3'").agent.ip, "any")  # type: ignore[union-attr]
        policy = EnrollmentPolicy(use_source_ip=True)
        outcome = self.decide("OSSEC A:'a4'", policy, source="10.5.5.5")
        self.assertEqual(outcome.agent.ip, "10.5.5.5")  # type: ignore[union-attr]

    def test_manager_name_refused(self) -> None:
        """An agent named like the manager host is an invalid name."""
        policy = EnrollmentPolicy(manager_name="wazuh-master")
        self.assertEqual(
            self.decide("OSSEC A:'wazuh-master'", policy).reply(),
            "ERROR: Invalid agent name: wazuh-master. Unable to add agent",
        )

    def test_duplicate_name_refused_when_force_disabled(self) -> None:
        """With force off a second agent with the same name is refused."""
        policy = EnrollmentPolicy(force=ForceRules(enabled=False))
        self.decide("OSSEC A:'dup'", policy)
        self.connected("001")
        self.assertEqual(
            self.decide("OSSEC A:'dup'", policy).reply(),
            "ERROR: Duplicate agent name: dup. Unable to add agent",
        )

    def test_duplicate_ip_refused_when_force_disabled(self) -> None:
        """With force off a second agent with the same IP is refused."""
        policy = EnrollmentPolicy(force=ForceRules(enabled=False))
        self.decide("OSSEC A:'a1' IP:'10.0.0.1'", policy)
        self.assertEqual(
            self.decide("OSSEC A:'a2' IP:'10.0.0.1'", policy).reply(),
            "ERROR: Duplicate IP: 10.0.0.1. Unable to add agent",
        )

    def test_force_replaces_duplicate_name(self) -> None:
        """With force on (no time rules) the old agent is removed and a new id issued."""
        policy = EnrollmentPolicy(force=NO_TIME)
        self.decide("OSSEC A:'dup'", policy)
        outcome = self.decide("OSSEC A:'dup'", policy)
        self.assertEqual(outcome.replaced, ("001",))
        self.assertEqual(outcome.agent.id, "002")  # type: ignore[union-attr]
        self.assertIsNone(self.registry.get_agent("001"))

    def test_force_replaces_ip_and_name_holders(self) -> None:
        """When the IP and the name belong to two agents, both are replaced."""
        policy = EnrollmentPolicy(force=NO_TIME)
        self.decide("OSSEC A:'one' IP:'10.0.0.1'", policy)
        self.decide("OSSEC A:'two'", policy)
        outcome = self.decide("OSSEC A:'two' IP:'10.0.0.1'", policy)
        self.assertEqual(outcome.replaced, ("001", "002"))
        self.assertEqual(self.registry.count_agents(), 1)

    def test_key_mismatch_rule(self) -> None:
        """An agent presenting the manager's current key hash is not replaced."""
        policy = EnrollmentPolicy(force=NO_TIME)
        first = self.decide("OSSEC A:'keyed'", policy).agent
        assert first is not None
        self.connected(first.id)
        same = key_hash(KeyEntry(first.id, first.name, first.ip, first.key))
        self.assertEqual(
            self.decide(f"OSSEC A:'keyed' K:'{same}'", policy).reply(),
            "ERROR: Duplicate agent name: keyed. Unable to add agent",
        )
        other = "0" * 40
        self.assertIsNotNone(self.decide(f"OSSEC A:'keyed' K:'{other}'", policy).agent)

    def test_disconnected_time_rule(self) -> None:
        """An active agent is not replaced; a disconnected one only after the delay."""
        rules = ForceRules(disconnected_time=600.0, after_registration_time=0.0)
        policy = EnrollmentPolicy(force=rules)
        self.decide("OSSEC A:'roamer'", policy)
        # never connected: replaceable at once
        self.assertIsNotNone(self.decide("OSSEC A:'roamer'", policy).agent)
        self.registry.apply_agent_info([AgentInfoReport("002", "w1", 1.0, 0, "active", NOW)])
        self.assertIsNone(self.decide("OSSEC A:'roamer'", policy).agent)
        self.registry.apply_agent_info(
            [AgentInfoReport("002", "w1", 2.0, 0, "disconnected", NOW, NOW)]
        )
        self.clock.now = NOW + 599
        self.assertIsNone(self.decide("OSSEC A:'roamer'", policy).agent)
        self.clock.now = NOW + 600
        self.assertIsNotNone(self.decide("OSSEC A:'roamer'", policy).agent)

    def test_after_registration_time_rule(self) -> None:
        """A freshly registered agent is not replaced before after_registration_time."""
        rules = ForceRules(disconnected_time_enabled=False, after_registration_time=3600.0)
        policy = EnrollmentPolicy(force=rules)
        self.decide("OSSEC A:'young'", policy)
        self.connected("001")
        self.clock.now = NOW + 3599
        self.assertIsNone(self.decide("OSSEC A:'young'", policy).agent)
        self.clock.now = NOW + 3600
        self.assertIsNotNone(self.decide("OSSEC A:'young'", policy).agent)

    def test_default_rules_refuse_young_duplicates(self) -> None:
        """Wazuh's defaults (1 h after registration) refuse an immediate duplicate of an
        agent that has connected."""
        self.decide("OSSEC A:'dup'")
        self.connected("001")
        self.assertIsNone(self.decide("OSSEC A:'dup'").agent)

    def test_unanswered_enrollment_retried_gets_its_key(self) -> None:
        """An agent registered but never answered (so never connected) that asks again with
        the same name, IP and groups gets the same id and key back under the default force
        rules, instead of "Duplicate agent name"; nothing new is registered."""
        first = self.decide("OSSEC A:'lost' G:'default' IP:'src'").agent
        assert first is not None
        again = self.decide("OSSEC A:'lost' IP:'src'")
        self.assertTrue(again.resent)
        self.assertEqual(again.replaced, ())
        self.assertEqual(
            parse_reply(again.reply()), parse_reply(self.decide("OSSEC A:'lost' IP:'src'").reply())
        )
        entry = parse_reply(again.reply())
        self.assertEqual((entry.id, entry.ip, entry.key), (first.id, first.ip, first.key))
        self.assertEqual(self.registry.count_agents(), 1)

    def test_retry_must_match_the_first_request(self) -> None:
        """A retry from another address (IP:'src'), for other groups, after the agent has
        connected, or without the password is refused as before."""
        policy = EnrollmentPolicy(password="pw")
        self.registry.create_group("web")
        self.decide("OSSEC PASS: pw OSSEC A:'lost' IP:'src'", policy)
        duplicate = "ERROR: Duplicate agent name: lost. Unable to add agent"
        other_source = self.decide("OSSEC PASS: pw OSSEC A:'lost' IP:'src'", policy, "10.1.1.1")
        self.assertEqual(other_source.reply(), duplicate)
        other_groups = self.decide("OSSEC PASS: pw OSSEC A:'lost' G:'web' IP:'src'", policy)
        self.assertEqual(other_groups.reply(), "ERROR: Duplicate IP: 10.9.8.7. Unable to add agent")
        self.assertEqual(
            self.decide("OSSEC A:'lost' IP:'src'", policy).reply(),
            "ERROR: Invalid password. Unable to add agent",
        )
        self.connected("001")
        self.assertEqual(
            self.decide("OSSEC PASS: pw OSSEC A:'lost' IP:'src'", policy).reply(),
            "ERROR: Duplicate IP: 10.9.8.7. Unable to add agent",
        )
        self.assertEqual(self.registry.count_agents(), 1)

    def test_refusal_reasons_text(self) -> None:
        """replacement_refusal explains each rule in authd's words."""
        self.decide("OSSEC A:'a1'")
        agent = self.registry.get_agent("001")
        assert agent is not None
        self.assertIn(
            "force option is disabled",
            replacement_refusal(agent, None, ForceRules(enabled=False), NOW) or "",
        )
        self.assertIn(
            "registration time", replacement_refusal(agent, None, ForceRules(), NOW) or ""
        )
        self.assertIsNone(replacement_refusal(agent, None, NO_TIME, NOW))


class AuthorityTests(SynchronousTestCase):
    """EnrollmentAuthority end to end with the 1515 protocol and a synchronous runner."""

    def setUp(self) -> None:
        home = Path(self.mktemp())
        self.files = RegistryFiles(
            home / "etc" / "client.keys", home / "etc" / "shared", home / "var" / "multigroups"
        )
        registry = Registry.open(home / "var" / "db" / "global.db", self.files, Clocked())
        self.addCleanup(registry.close)
        self.async_registry = AsyncRegistry(registry, synchronous_runner)
        self.outcomes: list[EnrollmentOutcome] = []
        self.authority = EnrollmentAuthority(
            self.async_registry,
            EnrollmentPolicy(password="pw"),
            Clocked(),
            on_outcome=lambda outcome, ip: self.outcomes.append(outcome),
        )

    def connect(self, line: bytes) -> bytes:
        """Run one enrollment connection through the protocol; return the reply."""
        factory = EnrollmentServerFactory(
            self.authority.register, Clock(), undelivered=self.authority.undelivered
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=address.IPv4Address("TCP", "10.0.0.7", 1))
        protocol.makeConnection(transport)
        protocol.dataReceived(line)
        return transport.value()

    def test_enrollment_through_protocol_writes_client_keys(self) -> None:
        """A request over the protocol is answered with a key already in client.keys."""
        reply = self.connect(b"OSSEC PASS: pw OSSEC A:'agent-1' IP:'src'\n")
        entry = parse_reply(reply)
        self.assertEqual(entry.ip, "10.0.0.7")
        self.assertEqual(read_client_keys(self.files.client_keys), [entry])
        self.assertEqual(len(self.outcomes), 1)

    def test_refusal_through_protocol(self) -> None:
        """A wrong password comes back as Wazuh's error line and changes nothing."""
        reply = self.connect(b"OSSEC PASS: nope OSSEC A:'agent-1'\n")
        self.assertEqual(reply, b"ERROR: Invalid password. Unable to add agent")
        self.assertEqual(read_client_keys(self.files.client_keys), [])

    def test_many_enrollments_distinct(self) -> None:
        """100 enrollments get 100 distinct ids and keys, all in client.keys."""
        entries = [
            parse_reply(self.connect(f"OSSEC PASS: pw OSSEC A:'n{i:03d}'\n".encode()))
            for i in range(100)
        ]
        self.assertEqual(len({entry.id for entry in entries}), 100)
        self.assertEqual(len({entry.key for entry in entries}), 100)
        self.assertEqual(
            sorted(read_client_keys(self.files.client_keys), key=lambda e: e.id),
            sorted(entries, key=lambda e: e.id),
        )

    def test_undelivered_key_removes_agent(self) -> None:
        """The undelivered hook removes the agent whose key never reached it."""
        reply = self.successResultOf(
            self.authority.register(EnrollmentRequest("lost", password="pw"), "10.0.0.1")
        )
        removed = self.successResultOf(self.authority.undelivered(EnrollmentRequest("lost"), reply))
        self.assertEqual(removed, ["001"])
        self.assertEqual(read_client_keys(self.files.client_keys), [])
        self.assertEqual(
            self.successResultOf(self.authority.undelivered(EnrollmentRequest("x"), "ERROR: no")),
            [],
        )

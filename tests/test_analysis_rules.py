"""Tests for rules: the tree, every condition, correlation, options and the alert record."""

from __future__ import annotations

import time
from collections.abc import Iterator

from twisted.trial import unittest

from tests.analysis_data import CLOCK, make_engine, run
from wazuhcluster.analysis import rules
from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.eventinfo import EventInfo
from wazuhcluster.analysis.rule_loader import RuleLoadError, parse_time_range, parse_weekdays
from wazuhcluster.config.analysis_settings import RulesetSettings

DECODERS = """
<decoder name="app">
  <program_name>^app$</program_name>
</decoder>
<decoder name="app-fields">
  <parent>app</parent>
  <regex>src=(\\S+) dst=(\\S+) user=(\\S+) act=(\\S+) id=(\\S+) url=(\\S+) st=(\\S+) </regex>
  <regex>x=(\\S+) sys=(\\S+) f=(\\S+)</regex>
  <order>srcip, dstip, user, action, id, url, status, extra_data, system_name, custom</order>
</decoder>
<decoder name="other">
  <program_name>^other$</program_name>
</decoder>
"""

BASE = """
<group name="app,">
  <rule id="100" level="0">
    <decoded_as>app</decoded_as>
    <description>App events.</description>
  </rule>
</group>
"""


def line(
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    user: str = "bob",
    act: str = "allow",
    ident: str = "7",
    url: str = "/x",
    status: str = "ok",
    extra: str = "e",
    system: str = "s",
    custom: str = "c",
    text: str = "",
    host: str = "host1",
) -> str:
    """A syslog line the 'app' decoder splits into every static field."""
    return (
        f"Feb  1 10:00:00 {host} app[1]: src={src} dst={dst} user={user} act={act} "
        f"id={ident} url={url} st={status} x={extra} sys={system} f={custom}{text}"
    )


class RuleTestCase(unittest.SynchronousTestCase):
    """Base: an engine with the app decoders, the base rule and the test's rules."""

    def engine(
        self,
        rules: str,
        lists: dict[str, str] | None = None,
        settings: RulesetSettings | None = None,
    ) -> Engine:
        """Load ``rules`` (inside a <group>) on top of BASE."""
        return make_engine(self.mktemp(), DECODERS, BASE + rules, lists, settings)

    def rule_of(self, engine: Engine, text: str, offset: float = 0.0, **event: object) -> str:
        """The id of the rule that alerts for ``text`` ('' if none)."""
        alert = run(engine, text, offset, **event)
        return alert["rule"]["id"] if alert else ""


def group(body: str) -> str:
    """Wrap rules in a group."""
    return f'<group name="test,">{body}</group>'


class TreeTests(RuleTestCase):
    """if_sid, if_group, if_level, category and sibling order."""

    def test_if_sid_child_and_deepest_match(self) -> None:
        """A child of a matching rule wins; the deepest matching rule is the verdict."""
        engine = self.engine(
            group("""
<rule id="101" level="3"><if_sid>100</if_sid><match>act=allow</match>
  <description>allowed</description></rule>
<rule id="102" level="5"><if_sid>101</if_sid><user>^root$</user>
  <description>root allowed</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line()), "101")
        self.assertEqual(self.rule_of(engine, line(user="root")), "102")
        self.assertEqual(self.rule_of(engine, line(act="deny")), "")

    def test_higher_level_sibling_first(self) -> None:
        """Siblings are tried by descending level, whatever their order in the file."""
        engine = self.engine(
            group("""
<rule id="101" level="3"><if_sid>100</if_sid><description>low</description></rule>
<rule id="102" level="9"><if_sid>100</if_sid><description>high</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line()), "102")

    def test_level_zero_sibling_first_and_silences(self) -> None:
        """A level-0 sibling is tried before others and, when it matches, nothing alerts."""
        engine = self.engine(
            group("""
<rule id="101" level="7"><if_sid>100</if_sid><description>any</description></rule>
<rule id="102" level="0"><if_sid>100</if_sid><user>^ignored$</user>
  <description>ignore</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line()), "101")
        self.assertEqual(self.rule_of(engine, line(user="ignored")), "")
        verdict = engine.analyse(Event(line(user="ignored"), timestamp=CLOCK))
        assert verdict.rule is not None
        self.assertEqual((verdict.rule.id, verdict.alert), (102, False))

    def test_if_group(self) -> None:
        """if_group hangs the rule under every rule of that group."""
        engine = self.engine(
            group("""
<rule id="101" level="3"><if_sid>100</if_sid><match>act=deny</match>
  <group>authentication_failed,</group><description>deny</description></rule>
<rule id="102" level="4"><if_group>authentication_failed</if_group><user>^root$</user>
  <description>failed root</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line(act="deny")), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny", user="root")), "102")

    def test_if_level(self) -> None:
        """if_level hangs the rule under every rule of at least that level (level 0 counts as
        the highest, as in Wazuh)."""
        engine = self.engine(
            group("""
<rule id="101" level="8"><if_sid>100</if_sid><match>act=deny</match>
  <description>d</description></rule>
<rule id="102" level="12"><if_level>8</if_level><user>^root$</user>
  <description>r</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line(act="deny", user="root")), "102")
        self.assertEqual(self.rule_of(engine, line(act="deny", user="bob")), "101")

    def test_rule_without_parent_goes_under_its_category_root(self) -> None:
        """A rule with no if_* is a child of the root rule of its category."""
        engine = self.engine(
            group("""
<rule id="101" level="3"><match>hello</match><description>any syslog</description></rule>
<rule id="102" level="3"><category>firewall</category><match>hello</match>
  <description>firewall only</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, "Feb  1 10:00:00 h other: hello"), "101")

    def test_decoded_as(self) -> None:
        """decoded_as compares the reported decoder name."""
        engine = self.engine(
            group("""
<rule id="101" level="3"><decoded_as>other</decoded_as><description>o</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, "Feb  1 10:00:00 h other: x"), "101")
        self.assertEqual(self.rule_of(engine, line()), "")

    def test_unknown_decoder_in_decoded_as(self) -> None:
        """decoded_as naming no decoder is a load error."""
        self.assertRaises(
            RuleLoadError,
            self.engine,
            group('<rule id="101" level="3"><decoded_as>nope</decoded_as></rule>'),
        )

    def test_duplicate_id_is_skipped_and_overwrite_replaces(self) -> None:
        """A duplicated id is ignored; overwrite="yes" replaces the rule's content in place."""
        engine = self.engine(
            group("""
<rule id="101" level="3"><if_sid>100</if_sid><description>first</description></rule>
<rule id="101" level="9"><if_sid>100</if_sid><description>dup</description></rule>""")
        )
        alert = run(engine, line())
        assert alert is not None
        self.assertEqual((alert["rule"]["description"], alert["rule"]["level"]), ("first", 3))
        engine = self.engine(
            group("""
<rule id="101" level="3"><if_sid>100</if_sid><description>first</description></rule>
<rule id="101" level="9" overwrite="yes"><if_sid>100</if_sid><user>^root$</user>
  <description>replaced</description></rule>""")
        )
        self.assertEqual(run(engine, line()), None)
        alert = run(engine, line(user="root"))
        assert alert is not None
        self.assertEqual((alert["rule"]["description"], alert["rule"]["level"]), ("replaced", 9))

    def test_noalert(self) -> None:
        """A noalert rule passes its children through but never alerts itself."""
        engine = self.engine(
            group("""
<rule id="101" level="5" noalert="1"><if_sid>100</if_sid><description>quiet</description></rule>
<rule id="102" level="6"><if_sid>101</if_sid><user>^root$</user>
  <description>child</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line()), "")
        self.assertEqual(self.rule_of(engine, line(user="root")), "102")


class ChildIndexTests(RuleTestCase):
    """The cached child index gives the same answers as trying every child."""

    def test_index_on_fields_survives_many_values(self) -> None:
        """Children keyed on a field keep matching correctly after the cache overflows."""
        from wazuhcluster.analysis import rules as rules_module

        self.patch(rules_module, "MAX_CHILD_CACHE", 4)
        engine = self.engine(
            group("""
<rule id="101" level="3"><if_sid>100</if_sid><field name="custom">^c1$</field>
  <description>one</description></rule>
<rule id="102" level="4"><if_sid>100</if_sid><field name="custom">^c2$</field>
  <description>two</description></rule>
<rule id="103" level="3"><if_sid>100</if_sid><description>other</description></rule>""")
        )
        for number in range(30):
            custom = {1: "c1", 2: "c2"}.get(number % 5, f"z{number}")
            expected = {"c1": "101", "c2": "102"}.get(custom, "103")
            self.assertEqual(self.rule_of(engine, line(custom=custom)), expected, number)
        parent = next(rule for rule in engine.roots if rule.id == 1).children[0]
        self.assertEqual(parent.id, 100)
        self.assertEqual(parent.key_fields, ())


class ConditionTests(RuleTestCase):
    """Every per-event condition of a rule."""

    def one(self, condition: str, attributes: str = "") -> Engine:
        """An engine with one rule 101 (level 5) under 100 holding ``condition``."""
        return self.engine(
            group(f"""
<rule id="101" level="5" {attributes}><if_sid>100</if_sid>{condition}
  <description>cond</description></rule>""")
        )

    def check(self, condition: str, good: str, bad: str) -> None:
        """``good`` alerts with rule 101 and ``bad`` does not."""
        engine = self.one(condition)
        self.assertEqual(self.rule_of(engine, good), "101", condition)
        self.assertEqual(self.rule_of(engine, bad), "", condition)

    def test_match_and_regex(self) -> None:
        """match (osmatch) and regex (osregex) test the log after the header."""
        self.check("<match>act=deny</match>", line(act="deny"), line())
        self.check("<regex>id=\\d\\d </regex>", line(ident="42"), line(ident="4"))
        self.check('<match type="pcre2">url=/a\\d+</match>', line(url="/a12"), line(url="/ab"))

    def test_negated_match(self) -> None:
        """negate="yes" inverts a condition."""
        self.check('<match negate="yes">act=deny</match>', line(), line(act="deny"))

    def test_static_fields(self) -> None:
        """id, url, action, status, extra_data, system_name, user match their fields."""
        self.check("<id>^7$</id>", line(), line(ident="8"))
        self.check("<url>/admin</url>", line(url="/admin/x"), line())
        self.check("<action>deny</action>", line(act="deny"), line(act="Deny"))
        self.check("<status>^fail</status>", line(status="failed"), line())
        self.check("<extra_data>zz</extra_data>", line(extra="zz"), line())
        self.check("<system_name>srv</system_name>", line(system="srv1"), line())
        self.check("<user>^alice$</user>", line(user="alice"), line())

    def test_program_name_hostname_location(self) -> None:
        """program_name, hostname and location are header conditions."""
        self.check("<program_name>^app$</program_name>", line(), "")
        self.check("<hostname>^web</hostname>", line(host="web1"), line())
        engine = self.one("<location>secure</location>")
        self.assertEqual(self.rule_of(engine, line(), location="/var/log/secure"), "101")
        self.assertEqual(self.rule_of(engine, line(), location="/var/log/messages"), "")

    def test_dynamic_field_with_type_and_negate(self) -> None:
        """<field name=...> tests a dynamic field (osregex by default)."""
        self.check('<field name="custom">^c\\d$</field>', line(custom="c1"), line())
        self.check(
            '<field name="custom" type="osmatch">^C</field>', line(custom="cat"), line(custom="dog")
        )
        self.check('<field name="custom" negate="yes">^dog$</field>', line(), line(custom="dog"))
        self.assertEqual(self.rule_of(self.one('<field name="missing">.</field>'), line()), "")

    def test_pcre2_in_every_expression_option(self) -> None:
        """type="pcre2" works in each static-field option, with and without negate."""
        cases = {
            "action": ("act", "deny"),
            "url": ("url", "/admin/x"),
            "id": ("ident", "42"),
            "status": ("status", "failed"),
            "extra_data": ("extra", "zz9"),
            "system_name": ("system", "srv1"),
            "user": ("user", "alice"),
        }
        for option, (argument, value) in cases.items():
            with self.subTest(option=option):
                good = line(**{argument: value})
                pattern = f"(?i)^{value.upper()}$"
                self.check(f'<{option} type="pcre2">{pattern}</{option}>', good, line())
                self.check(
                    f'<{option} type="pcre2" negate="yes">{pattern}</{option}>', line(), good
                )
        self.check('<hostname type="pcre2">^web\\d$</hostname>', line(host="web1"), line())
        self.check('<program_name type="pcre2">^a.p$</program_name>', line(), "")
        self.check('<field name="custom" type="pcre2">^c\\d+$</field>', line(custom="c12"), line())
        self.check(
            '<field name="custom" type="pcre2" negate="yes">(?i)^DOG</field>',
            line(),
            line(custom="dog"),
        )
        self.check('<regex type="pcre2" negate="yes">act=deny</regex>', line(), line(act="deny"))

    def test_repeated_options_join_and_take_the_last_type(self) -> None:
        """<match> then <match type="pcre2">: one PCRE2 expression of both texts."""
        self.check(
            '<match>act=allow </match><match type="pcre2">(?i)ID=\\d+</match>',
            line(),
            line(ident="x"),
        )
        # The first text is PCRE2 too: case-sensitive, so "ACT=allow" does not match.
        engine = self.one('<match>ACT=allow </match><match type="pcre2">id</match>')
        self.assertEqual(self.rule_of(engine, line()), "")

    def test_a_type_rules_do_not_take_falls_back_to_the_default(self) -> None:
        """type="string" is not a rule option type: <user> stays OS_Match (a prefix here)."""
        self.check('<user type="string">^ali</user>', line(user="alice"), line(user="bob"))
        self.check('<action type="bogus">deny</action>', line(act="deny"), line(act="denied"))

    def test_untranslatable_pcre2_is_a_load_error(self) -> None:
        """A PCRE2 construct re cannot reproduce refuses the ruleset, naming the construct."""
        error = self.assertRaises(RuleLoadError, self.one, '<match type="pcre2">\\p{Lu}</match>')
        self.assertIn("not supported", str(error))

    def test_ip_lists(self) -> None:
        """srcip/dstip accept CIDR networks and '!' exclusions."""
        self.check("<srcip>10.0.0.0/8</srcip>", line(), line(src="192.168.1.1"))
        self.check("<dstip>!10.0.0.2</dstip>", line(dst="10.0.0.3"), line())
        self.check("<srcip>2001:db8::/32</srcip>", line(src="2001:db8::1"), line())
        self.check(
            "<srcip>10.0.0.1</srcip><srcip>10.0.0.9</srcip>",
            line(src="10.0.0.9"),
            line(src="10.0.0.8"),
        )

    def test_maxsize(self) -> None:
        """maxsize fires only for logs at least that long."""
        engine = self.one("", 'maxsize="150"')
        self.assertEqual(self.rule_of(engine, line(text=" " + "x" * 100)), "101")
        self.assertEqual(self.rule_of(engine, line()), "")

    def test_time_and_weekday(self) -> None:
        """time and weekday use the event's local time."""
        stamp = time.mktime((2024, 6, 5, 14, 30, 0, 0, 0, -1))  # a Wednesday afternoon
        engine = self.one("<time>2 pm - 3 pm</time><weekday>wednesday</weekday>")
        self.assertEqual(self.rule_of(engine, line(), stamp - CLOCK), "101")
        self.assertEqual(self.rule_of(engine, line(), stamp - CLOCK + 3600), "")
        self.assertEqual(self.rule_of(engine, line(), stamp - CLOCK + 86400), "")

    def test_time_and_weekday_parsing(self) -> None:
        """Time ranges wrap past midnight; weekday names and groups are understood."""
        self.assertEqual(parse_time_range("6 pm - 8:30 am"), (True, "08:30", "18:00"))
        self.assertEqual(parse_time_range("!10:00-11:00"), (True, "10:00", "11:00"))
        self.assertIsNone(parse_time_range("25:00-26:00"))
        self.assertEqual(parse_weekdays("weekends"), (False, frozenset({0, 6})))
        self.assertIsNone(parse_weekdays("someday"))

    def test_compiled_rule(self) -> None:
        """compiled_rule runs the named built-in check."""
        self.check(
            "<compiled_rule>is_simple_http_request</compiled_rule>", line(), line(url="/x?a=1")
        )


class ListTests(RuleTestCase):
    """CDB list lookups."""

    LISTS = {
        "users": 'root:admin\nalice:staff\n"we:ird":x\n',
        "nets": "10.0.0.:internal\n192.168.1.5:bad\n",
    }

    def check(self, condition: str, good: str, bad: str) -> None:
        """``good`` alerts with rule 101 and ``bad`` does not."""
        engine = self.engine(
            group(f"""
<rule id="101" level="5"><if_sid>100</if_sid>{condition}<description>l</description></rule>"""),
            self.LISTS,
        )
        self.assertEqual(self.rule_of(engine, good), "101", condition)
        self.assertEqual(self.rule_of(engine, bad), "", condition)

    def test_match_and_not_match_key(self) -> None:
        """match_key needs the key in the list, not_match_key needs it absent."""
        self.check(
            '<list field="user" lookup="match_key">etc/lists/users</list>',
            line(user="root"),
            line(user="bob"),
        )
        self.check(
            '<list field="user" lookup="not_match_key">etc/lists/users</list>',
            line(user="bob"),
            line(user="alice"),
        )

    def test_match_key_value(self) -> None:
        """match_key_value also checks the value with check_value (osmatch)."""
        self.check(
            '<list field="user" lookup="match_key_value" check_value="^admin">'
            "etc/lists/users</list>",
            line(user="root"),
            line(user="alice"),
        )

    def test_address_match_key(self) -> None:
        """address_match_key accepts an exact key or a dotted prefix."""
        self.check(
            '<list field="srcip" lookup="address_match_key">etc/lists/nets</list>',
            line(src="10.0.0.77"),
            line(src="10.0.1.1"),
        )
        self.check(
            '<list field="srcip" lookup="not_address_match_key">etc/lists/nets</list>',
            line(src="10.0.1.1"),
            line(src="192.168.1.5"),
        )

    def test_dynamic_field_lookup(self) -> None:
        """A list on a dynamic field looks up that field's value."""
        self.check(
            '<list field="custom" lookup="match_key">etc/lists/users</list>',
            line(custom="alice"),
            line(),
        )

    def test_rule_with_missing_list_is_skipped(self) -> None:
        """A rule naming an unloaded list is skipped with a warning, not fatal."""
        engine = self.engine(
            group("""
<rule id="101" level="5"><if_sid>100</if_sid>
  <list field="user" lookup="match_key">etc/lists/absent</list>
  <description>l</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line()), "")
        self.assertTrue(any("absent" in warning for warning in engine.warnings))


class CorrelationTests(RuleTestCase):
    """frequency/timeframe with if_matched_sid/if_matched_group and same/different fields."""

    FAILED = """
<rule id="101" level="5"><if_sid>100</if_sid><match>act=deny</match>
  <group>authentication_failed,</group><description>denied</description></rule>
"""

    def test_frequency_with_same_source_ip(self) -> None:
        """The Nth related event within the timeframe fires the correlation rule."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="3" timeframe="60">
  <if_matched_sid>101</if_matched_sid><same_source_ip/>
  <description>brute force from $(srcip)</description></rule>"""
            )
        )
        self.assertEqual(self.rule_of(engine, line(act="deny"), 0), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny", src="9.9.9.9"), 1), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny"), 2), "101")
        alert = run(engine, line(act="deny"), 3)
        assert alert is not None
        self.assertEqual(alert["rule"]["id"], "102")
        self.assertEqual(alert["rule"]["frequency"], 3)
        self.assertEqual(alert["rule"]["description"], "brute force from 10.0.0.1")
        self.assertIn("previous_output", alert)

    def test_timeframe_expires_and_reset(self) -> None:
        """Events older than the timeframe do not count; reset() forgets everything."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="2" timeframe="10">
  <if_matched_sid>101</if_matched_sid><description>twice</description></rule>"""
            )
        )
        self.assertEqual(self.rule_of(engine, line(act="deny"), 0), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny"), 30), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny"), 31), "102")
        engine.reset()
        self.assertEqual(self.rule_of(engine, line(act="deny"), 32), "101")

    def test_events_used_once(self) -> None:
        """Events that took part in a correlation alert stop the search (Wazuh's 'matched')."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="3" timeframe="100">
  <if_matched_sid>101</if_matched_sid><description>thrice</description></rule>"""
            )
        )
        results = [self.rule_of(engine, line(act="deny"), i) for i in range(6)]
        self.assertEqual(results, ["101", "101", "102", "101", "101", "102"])

    def test_ignored_frequency_rule_alerts_on_the_rule_below(self) -> None:
        """Inside a frequency rule's ignore window its match alerts on its parent instead.

        Wazuh's prev_rule: no event that matched a rule is lost; the firedtimes stay the
        matched rule's, and no previous_output is carried.
        """
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="3" timeframe="100" ignore="60">
  <if_matched_sid>101</if_matched_sid><description>thrice</description></rule>"""
            )
        )
        alerts = [run(engine, line(act="deny"), i) for i in range(7)]
        ids = [alert["rule"]["id"] if alert else "" for alert in alerts]
        self.assertEqual(ids, ["101", "101", "102", "101", "101", "101", "101"])
        self.assertNotIn("previous_output", alerts[5])  # type: ignore[operator]
        # Past the window the frequency rule alerts again.
        self.assertEqual(self.rule_of(engine, line(act="deny"), 70), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny"), 71), "102")

    def test_if_matched_group_and_different_field(self) -> None:
        """if_matched_group collects events of that group; different_* needs new values."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="2" timeframe="100">
  <if_matched_group>authentication_failed</if_matched_group><different_user/>
  <description>spray</description></rule>"""
            )
        )
        self.assertEqual(self.rule_of(engine, line(act="deny", user="a"), 0), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny", user="a"), 1), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny", user="b"), 2), "102")

    def test_same_dynamic_field_and_agents(self) -> None:
        """same_field compares a dynamic field; events of other agents never count."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="2" timeframe="100">
  <if_matched_sid>101</if_matched_sid><same_field>custom</same_field>
  <description>same custom</description></rule>"""
            )
        )
        self.assertEqual(self.rule_of(engine, line(act="deny", custom="x"), 0), "101")
        self.assertEqual(self.rule_of(engine, line(act="deny", custom="y"), 1), "101")
        self.assertEqual(
            self.rule_of(engine, line(act="deny", custom="x"), 2, agent_id="005", agent_name="a5"),
            "101",
        )
        self.assertEqual(self.rule_of(engine, line(act="deny", custom="x"), 3), "102")

    def test_event_without_a_same_field_skips_the_search(self) -> None:
        """An event lacking a field the rule needs equal in an earlier event (``same_user``
        and a dynamic ``same_field`` here) cannot correlate: its search fails without
        walking the history, and the next complete event still correlates with the first."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="2" timeframe="100">
  <if_matched_sid>101</if_matched_sid><same_user/><same_field>custom</same_field>
  <description>same user and custom</description></rule>"""
            )
        )
        walks: list[str] = []
        walk = rules._own_events

        def counted(
            rule: rules.Rule, event: EventInfo, state: rules.RuleState
        ) -> Iterator[EventInfo]:
            walks.append(event.full_log)
            return walk(rule, event, state)

        self.patch(rules, "_own_events", counted)
        self.assertEqual(self.rule_of(engine, line(act="deny"), 0), "101")
        bare = "Feb  1 10:00:00 host1 app[1]: act=deny"
        self.assertEqual(self.rule_of(engine, bare, 1), "101")
        self.assertEqual(len(walks), 1, walks)
        self.assertEqual(self.rule_of(engine, line(act="deny"), 2), "102")
        self.assertEqual(len(walks), 2, walks)

    def burst_engine(self) -> Engine:
        """101 on each denial, 102 on the third within 100 s of the same agent."""
        return self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="3" timeframe="100">
  <if_matched_sid>101</if_matched_sid><description>burst</description></rule>"""
            )
        )

    def by_agent(self, engine: Engine, agents: str) -> list[str]:
        """The rule of one denial per letter of ``agents`` (a: agent 001, b: 002...)."""
        found = []
        for second, letter in enumerate(agents):
            number = ord(letter) - ord("a") + 1
            found.append(
                self.rule_of(
                    engine,
                    line(act="deny"),
                    second,
                    agent_id=f"{number:03d}",
                    agent_name=f"agent{number}",
                )
            )
        return found

    def test_frequency_counts_the_agents_own_events(self) -> None:
        """Other agents' events in between neither count nor hide an agent's own."""
        found = self.by_agent(self.burst_engine(), "ababa" + "c" * 20 + "bb")
        self.assertEqual(found[:5], ["101", "101", "101", "101", "102"])
        # The events that fired count no more: a burst, then two to build up again.
        self.assertEqual(found[5:11], ["101", "101", "102", "101", "101", "102"])
        # b's two early events still count after twenty of c's in between.
        self.assertEqual(found[-2:], ["102", "101"])

    def test_events_that_left_the_history_do_not_count(self) -> None:
        """An agent's event pushed out of the bounded history by others' is not counted."""
        self.patch(rules, "MAX_HISTORY", 4)
        engine = self.burst_engine()
        found = self.by_agent(engine, "abbbbaa")
        # The last a would be a burst with its first event; that one left the history.
        self.assertEqual(found, ["101", "101", "101", "102", "101", "101", "101"])
        self.assertEqual(self.by_agent(engine, "a"), ["102"])

    def interleave(self, engine: Engine, agents: int, rounds: int) -> list[list[str]]:
        """Per round, the rule of one denial from each of ``agents`` agents in turn."""
        found = []
        for round_number in range(rounds):
            found.append(
                [
                    self.rule_of(
                        engine,
                        line(act="deny"),
                        round_number,
                        agent_id=f"{number:04d}",
                        agent_name=f"agent{number}",
                    )
                    for number in range(1, agents + 1)
                ]
            )
        return found

    def test_a_thousand_interleaved_agents_each_correlate(self) -> None:
        """1,000 agents sending 8 failures each, interleaved: every agent's 8th fires the
        frequency rule (Wazuh searches the matched events by agent id, bounded by time)."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="8" timeframe="120">
  <if_matched_sid>101</if_matched_sid><same_source_ip/><description>brute</description></rule>"""
            )
        )
        found = self.interleave(engine, 1000, 8)
        for round_number in range(7):
            self.assertEqual(set(found[round_number]), {"101"})
        # Counted rather than compared whole: a failure names how many agents missed.
        self.assertEqual(found[7].count("102"), 1000)
        self.assertEqual(engine.take_notices(), [])

    def test_one_agent_many_addresses_each_correlate(self) -> None:
        """One agent, 500 source addresses sending 8 failures each, interleaved, and events
        from one more address in between: every address's 8th fires the same_source_ip rule."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="8" timeframe="120">
  <if_matched_sid>101</if_matched_sid><same_source_ip/><description>brute</description></rule>"""
            )
        )
        rounds = []
        for round_number in range(9):
            rounds.append(
                [
                    self.rule_of(
                        engine, line(act="deny", src=f"10.1.{n // 250}.{n % 250}"), round_number
                    )
                    for n in range(500)
                ]
            )
            self.rule_of(engine, line(act="deny", src="none"), round_number)
        for round_number in range(7):
            self.assertEqual(set(rounds[round_number]), {"101"})
        self.assertEqual(rounds[7].count("102"), 500)
        # The events that fired count no more: the ninth round builds up again.
        self.assertEqual(set(rounds[8]), {"101"})

    def test_a_full_history_is_counted_and_noted(self) -> None:
        """Past the cap, events still in the timeframe leave the history: counted and noted."""
        self.patch(rules, "MAX_HISTORY", 10)
        engine = self.burst_engine()
        found = self.interleave(engine, 6, 3)
        # a's first two events left the history (capped at 10) before its third arrived.
        self.assertEqual(found[2], ["101"] * 6)
        self.assertEqual(engine.state.overflowed[("sid", 101)], 8)
        notices = engine.take_notices()
        self.assertEqual(len(notices), 1)
        self.assertIn("sid 101 is full (10 events", notices[0])
        self.assertEqual(engine.take_notices(), [])

    def test_histories_keep_only_the_timeframe(self) -> None:
        """Events older than the searching rules' timeframe leave the history."""
        engine = self.engine(
            group(
                self.FAILED
                + """
<rule id="102" level="10" frequency="5" timeframe="10">
  <if_matched_sid>101</if_matched_sid><description>burst</description></rule>"""
            )
        )
        for second in range(0, 100, 5):
            run(engine, line(act="deny"), second)
        history = engine.state.histories[("sid", 101)]
        self.assertEqual([event.time - CLOCK for event in history], [85.0, 90.0, 95.0])

    def test_frequency_without_if_matched_is_an_error(self) -> None:
        """frequency needs if_matched_sid or if_matched_group."""
        self.assertRaises(
            RuleLoadError,
            self.engine,
            group('<rule id="101" level="3" frequency="4"><if_sid>100</if_sid></rule>'),
        )

    def test_ignore_time(self) -> None:
        """ignore="N" silences the rule for N seconds after it alerts."""
        engine = self.engine(
            group("""
<rule id="101" level="5" ignore="60"><if_sid>100</if_sid><description>once</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line(), 0), "101")
        self.assertEqual(self.rule_of(engine, line(), 30), "")
        self.assertEqual(self.rule_of(engine, line(), 61), "101")

    def test_ignore_fields_and_check_if_ignored(self) -> None:
        """<ignore> records field values that <check_if_ignored> then silences."""
        engine = self.engine(
            group("""
<rule id="101" level="5"><if_sid>100</if_sid><ignore>srcip</ignore>
  <check_if_ignored>srcip</check_if_ignored><description>first per source</description></rule>""")
        )
        self.assertEqual(self.rule_of(engine, line(), 0), "101")
        self.assertEqual(self.rule_of(engine, line(), 1), "")
        self.assertEqual(self.rule_of(engine, line(src="10.9.9.9"), 2), "101")


class OutputTests(RuleTestCase):
    """Options and the alert record."""

    RULE = """
<rule id="101" level="5"><if_sid>100</if_sid>
  <description>User $(dstuser) from $(srcip) via $(custom) $(nothing) $(user)</description>
  <group>auth,pci_dss_10.2.4,gdpr_IV_35.7.d,hipaa_164.312.b,nist_800_53_AU.14,tsc_CC6.1,gpg13_7.1,</group>
  <mitre><id>T1110</id></mitre>
  <info type="link">https://example.org</info>
  %s
</rule>"""

    def alert(self, options: str = "", **settings: object) -> dict:
        """The alert for line() with rule 101 carrying ``options``."""
        engine = self.engine(group(self.RULE % options), settings=RulesetSettings(**settings))  # type: ignore[arg-type]
        result = run(engine, line())
        assert result is not None
        return result

    def test_record_shape(self) -> None:
        """The alert has Wazuh's fields, compliance arrays split out of the groups."""
        alert = self.alert()
        rule = alert["rule"]
        # $(user) is a dynamic field in Wazuh (none here), not the dstuser static field.
        self.assertEqual(rule["description"], "User bob from 10.0.0.1 via c  ")
        self.assertEqual(rule["groups"], ["test", "auth"])
        self.assertEqual(rule["pci_dss"], ["10.2.4"])
        self.assertEqual(rule["gdpr"], ["IV_35.7.d"])
        self.assertEqual(rule["hipaa"], ["164.312.b"])
        self.assertEqual(rule["nist_800_53"], ["AU.14"])
        self.assertEqual(rule["tsc"], ["CC6.1"])
        self.assertEqual(rule["gpg13"], ["7.1"])
        self.assertEqual(rule["mitre"], {"id": ["T1110"]})
        self.assertEqual(rule["info"], "https://example.org")
        self.assertEqual(
            (rule["id"], rule["level"], rule["firedtimes"], rule["mail"]), ("101", 5, 1, False)
        )
        # A child without a prematch runs its regex but the event stays with the parent.
        self.assertEqual(alert["decoder"], {"name": "app"})
        self.assertEqual(
            alert["predecoder"],
            {"program_name": "app", "timestamp": "Feb  1 10:00:00", "hostname": "host1"},
        )
        self.assertEqual(alert["data"]["srcip"], "10.0.0.1")
        self.assertEqual(alert["data"]["dstuser"], "bob")
        self.assertEqual(alert["data"]["custom"], "c")
        self.assertEqual(alert["location"], "stdin")
        self.assertEqual(alert["full_log"], line())
        self.assertEqual(alert["agent"], {"id": "000", "name": "localhost"})
        self.assertEqual(alert["cluster"], {"name": "wazuh"})
        self.assertRegex(alert["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")
        self.assertRegex(alert["id"], r"^1700000000\.\d+$")

    def test_options(self) -> None:
        """alert_by_email sets mail; no_full_log and no_counter drop their fields."""
        alert = self.alert(
            "<options>alert_by_email</options><options>no_full_log</options>"
            "<options>no_counter</options>"
        )
        self.assertTrue(alert["rule"]["mail"])
        self.assertNotIn("full_log", alert)
        self.assertNotIn("firedtimes", alert["rule"])

    def test_no_log_and_log_alert_level(self) -> None:
        """no_log suppresses the alert; so does a level below log_alert_level."""
        engine = self.engine(group(self.RULE % "<options>no_log</options>"))
        self.assertIsNone(run(engine, line()))
        engine = self.engine(group(self.RULE % ""), settings=RulesetSettings(log_alert_level=6))
        self.assertIsNone(run(engine, line()))

    def test_email_alert_level(self) -> None:
        """Rules at or above email_alert_level mail by default."""
        self.assertTrue(self.alert(email_alert_level=5)["rule"]["mail"])

    def test_agent_event(self) -> None:
        """An agent's event carries its id, name and ip; the location loses its prefix."""
        engine = self.engine(group(self.RULE % "<location>secure</location>"))
        alert = run(
            engine,
            line(),
            agent_id="001",
            agent_name="web1",
            agent_ip="10.1.1.1",
            location="/var/log/secure",
        )
        assert alert is not None
        self.assertEqual(alert["agent"], {"id": "001", "name": "web1", "ip": "10.1.1.1"})
        self.assertEqual(alert["location"], "/var/log/secure")

    def test_firedtimes_counts(self) -> None:
        """firedtimes counts the rule's alerts in the engine."""
        engine = self.engine(group(self.RULE % ""))
        counts = [run(engine, line(), i)["rule"]["firedtimes"] for i in range(3)]  # type: ignore[index]
        self.assertEqual(counts, [1, 2, 3])

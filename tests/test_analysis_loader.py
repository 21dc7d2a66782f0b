"""Tests for loading: the XML dialect, CDB text lists, <ruleset> settings and HOME layout."""

from __future__ import annotations

import os
from xml.etree.ElementTree import fromstring

from twisted.trial import unittest

from tests.analysis_data import JSON_DECODER, ROOT_RULES, make_home, run, write
from wazuhcluster.analysis.cdb import ListError, Lookup, load_list, lookup, parse_list
from wazuhcluster.analysis.expressions import OSMatch
from wazuhcluster.analysis.loader import RulesetError, load_engine
from wazuhcluster.analysis.rule_loader import RuleLoadError
from wazuhcluster.analysis.xmlreader import RulesetSyntaxError, parse_text
from wazuhcluster.config.analysis_settings import RulesetSettings, parse_ruleset
from wazuhcluster.config.xmlconfig import ConfigError, Section


class XMLReaderTests(unittest.SynchronousTestCase):
    """Wazuh's lenient ruleset XML."""

    def test_several_roots_comments_and_raw_text(self) -> None:
        """Several top-level elements, comments, raw '&' and '\\<' are accepted verbatim."""
        nodes = parse_text('<!-- c -->\n<a x="1"><b>p&q \\<x></b></a>\n<c/>', "f.xml")
        self.assertEqual([n.tag for n in nodes], ["a", "c"])
        self.assertEqual(nodes[0].children[0].text, "p&q \\<x>")
        self.assertEqual(nodes[0].get("X"), "1")
        self.assertEqual(nodes[0].children[0].line, 2)

    def test_variables(self) -> None:
        """<var> definitions replace $NAME in later text and attributes."""
        nodes = parse_text('<var name="W">bad|worse</var><r a="$W"><m>$W and $OTHER</m></r>', "f")
        self.assertEqual([n.tag for n in nodes], ["r"])
        self.assertEqual(nodes[0].get("a"), "bad|worse")
        self.assertEqual(nodes[0].children[0].text, "bad|worse and $OTHER")

    def test_errors_name_file_and_line(self) -> None:
        """A mismatched closing tag is reported with the file and the line."""
        error = self.assertRaises(RulesetSyntaxError, parse_text, "<a>\n<b>\n</a>", "x.xml")
        self.assertEqual((error.path, error.line), ("x.xml", 3))
        self.assertIn("x.xml:3:", str(error))
        self.assertRaises(RulesetSyntaxError, parse_text, "<a>", "x.xml")
        self.assertRaises(RulesetSyntaxError, parse_text, "<!DOCTYPE x><a/>", "x.xml")
        self.assertRaises(RulesetSyntaxError, parse_text, "text", "x.xml")


class CDBTests(unittest.SynchronousTestCase):
    """CDB lists from their text form."""

    def test_parse(self) -> None:
        """key:value lines, quoted keys with colons, key-only lines and junk lines."""
        entries = parse_list('a:1\nb:\n"c:d":"v:w"\nnocolon\r\ne:2\r\n')
        self.assertEqual(entries, {"a": "1", "b": "", "c:d": "v:w", "e": "2"})

    def test_lookups(self) -> None:
        """Each lookup type answers as Wazuh does."""
        entries = {"10.0.0.": "lan", "1.2.3.4": "bad", "root": "admin"}
        self.assertTrue(lookup(entries, Lookup.MATCH_KEY, "root", None))
        self.assertFalse(lookup(entries, Lookup.NOT_MATCH_KEY, "root", None))
        self.assertTrue(lookup(entries, Lookup.MATCH_KEY_VALUE, "root", OSMatch("^adm")))
        self.assertFalse(lookup(entries, Lookup.MATCH_KEY_VALUE, "root", OSMatch("^x")))
        self.assertTrue(lookup(entries, Lookup.ADDRESS_MATCH_KEY, "10.0.0.5", None))
        self.assertTrue(lookup(entries, Lookup.NOT_ADDRESS_MATCH_KEY, "10.0.1.5", None))
        # Wazuh's address_match_key_value is true when the value does not match.
        self.assertFalse(lookup(entries, Lookup.ADDRESS_MATCH_KEY_VALUE, "1.2.3.4", OSMatch("bad")))
        self.assertTrue(lookup(entries, Lookup.ADDRESS_MATCH_KEY_VALUE, "1.2.3.4", OSMatch("good")))

    def test_missing_file(self) -> None:
        """An unreadable list raises ListError."""
        self.assertRaises(ListError, load_list, self.mktemp())


class SettingsTests(unittest.SynchronousTestCase):
    """parse_ruleset over a <ruleset> and an <alerts> block."""

    def test_defaults_without_a_block(self) -> None:
        """No <ruleset> block means the stock layout and log_alert_level 3."""
        settings = parse_ruleset(Section(None, "f", "ruleset"))
        self.assertEqual(settings, RulesetSettings())
        self.assertEqual(settings.decoder_dirs, ("ruleset/decoders", "etc/decoders"))
        self.assertEqual(settings.log_alert_level, 3)

    def test_block(self) -> None:
        """Every option is read, in order, and the alert levels come from <alerts>."""
        ruleset = fromstring("""<ruleset>
  <decoder_dir>ruleset/decoders</decoder_dir><rule_dir>ruleset/rules</rule_dir>
  <rule_exclude>0215-policy_rules.xml</rule_exclude><decoder_exclude>x.xml</decoder_exclude>
  <list>etc/lists/audit-keys</list><decoder_dir>etc/decoders</decoder_dir>
  <rule_dir>etc/rules</rule_dir></ruleset>""")
        alerts = fromstring(
            "<alerts><log_alert_level>5</log_alert_level>"
            "<email_alert_level>9</email_alert_level></alerts>"
        )
        settings = parse_ruleset(Section(ruleset, "f", "ruleset"), Section(alerts, "f", "alerts"))
        self.assertEqual(settings.decoder_dirs, ("ruleset/decoders", "etc/decoders"))
        self.assertEqual(settings.rule_dirs, ("ruleset/rules", "etc/rules"))
        self.assertEqual(settings.rule_excludes, ("0215-policy_rules.xml",))
        self.assertEqual(settings.decoder_excludes, ("x.xml",))
        self.assertEqual(settings.lists, ("etc/lists/audit-keys",))
        self.assertEqual((settings.log_alert_level, settings.email_alert_level), (5, 9))

    def test_archive_options(self) -> None:
        """<global><logall> and <logall_json> switch the archives on; bad words fail."""
        glob = Section(
            fromstring("<global><logall>yes</logall><logall_json>yes</logall_json></global>"),
            "f",
            "global",
        )
        settings = parse_ruleset(Section(None, "f", "ruleset"), None, glob)
        self.assertEqual((settings.logall, settings.logall_json), (True, True))
        default = parse_ruleset(Section(None, "f", "ruleset"))
        self.assertEqual((default.logall, default.logall_json), (False, False))
        bad = Section(fromstring("<global><logall_json>maybe</logall_json></global>"), "f", "g")
        self.assertRaises(ConfigError, parse_ruleset, Section(None, "f", "ruleset"), None, bad)

    def test_bad_values(self) -> None:
        """Paths leaving HOME, excludes with slashes and bad levels raise ConfigError."""
        for xml in (
            "<ruleset><decoder_dir>/etc</decoder_dir><rule_dir>r</rule_dir></ruleset>",
            "<ruleset><decoder_dir>../x</decoder_dir><rule_dir>r</rule_dir></ruleset>",
            "<ruleset><decoder_dir>d</decoder_dir><rule_dir>r</rule_dir>"
            "<rule_exclude>a/b.xml</rule_exclude></ruleset>",
            "<ruleset><rule_dir>r</rule_dir></ruleset>",
        ):
            self.assertRaises(ConfigError, parse_ruleset, Section(fromstring(xml), "f", "ruleset"))
        alerts = fromstring("<alerts><log_alert_level>17</log_alert_level></alerts>")
        self.assertRaises(
            ConfigError,
            parse_ruleset,
            Section(None, "f", "ruleset"),
            Section(alerts, "f", "alerts"),
        )

    def test_settings_are_frozen(self) -> None:
        """RulesetSettings cannot be changed after creation."""
        settings = RulesetSettings()
        self.assertRaises(AttributeError, setattr, settings, "log_alert_level", 1)


class LoaderTests(unittest.SynchronousTestCase):
    """load_engine over a HOME."""

    RULE = """<group name="custom,">
  <rule id="100100" level="6"><decoded_as>json</decoded_as><field name="kind">^%s$</field>
    <description>%s</description></rule></group>"""

    def test_user_files_and_excludes(self) -> None:
        """etc/decoders and etc/rules load after the stock ones; excluded files are skipped."""
        home = make_home(self.mktemp(), JSON_DECODER, self.RULE % ("stock", "stock rule"))
        write(
            os.path.join(home, "etc", "rules", "local_rules.xml"),
            self.RULE.replace("100100", "100200") % ("custom", "custom rule"),
        )
        write(os.path.join(home, "etc", "rules", "skipped.xml"), "<broken")
        engine = load_engine(home, RulesetSettings(rule_excludes=("skipped.xml",)))
        self.assertEqual(run(engine, '{"kind":"custom"}')["rule"]["id"], "100200")  # type: ignore[index]
        self.assertEqual(run(engine, '{"kind":"stock"}')["rule"]["id"], "100100")  # type: ignore[index]

    def test_broken_file_reports_file_line_reason(self) -> None:
        """A broken rule file raises a RulesetError naming the file and line."""
        home = make_home(
            self.mktemp(),
            JSON_DECODER,
            "<group name='x,'>\n<rule id='1a' level='3'></rule></group>",
        )
        error = self.assertRaises(RulesetError, load_engine, home)
        self.assertIsInstance(error, RuleLoadError)
        self.assertTrue(error.path.endswith("0002-test_rules.xml"))
        self.assertEqual(error.line, 2)
        self.assertIn("id", error.reason)

    def test_lists_default_to_every_file_under_etc_lists(self) -> None:
        """Without <list> options every list file under etc/lists is loaded by its path."""
        rules = """<group name="x,"><rule id="100100" level="6"><decoded_as>json</decoded_as>
          <list field="user" lookup="match_key">etc/lists/sub/users</list>
          <description>listed</description></rule></group>"""
        home = make_home(self.mktemp(), JSON_DECODER, rules, {"sub/users": "carol:1\n"})
        engine = load_engine(home)
        self.assertIsNotNone(run(engine, '{"user":"carol"}'))
        self.assertIsNone(run(engine, '{"user":"dave"}'))

    def test_no_rules(self) -> None:
        """A HOME without rule files cannot be loaded."""
        self.assertRaises(RulesetError, load_engine, self.mktemp())

    def test_root_rules_only(self) -> None:
        """The helper's root rules load and produce no alert on their own."""
        home = make_home(self.mktemp(), JSON_DECODER, "")
        write(
            os.path.join(home, "ruleset", "rules", "0002-test_rules.xml"),
            ROOT_RULES.replace('id="1"', 'id="8"').replace('id="2"', 'id="9"'),
        )
        self.assertIsNone(run(load_engine(home), '{"a":1}'))

"""Tests for decoders: parent/child walk, prematch, regex, order, offsets, plugins."""

from __future__ import annotations

from twisted.trial import unittest

from tests.analysis_data import JSON_DECODER, make_engine
from wazuhcluster.analysis.decoder_loader import DecoderLoadError
from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.eventinfo import EventInfo

SSHD = """
<decoder name="sshd">
  <program_name>^sshd</program_name>
</decoder>

<decoder name="sshd-success">
  <parent>sshd</parent>
  <prematch>^Accepted</prematch>
  <regex offset="after_prematch">^ \\S+ for (\\S+) from (\\S+) port (\\S+)</regex>
  <order>user, srcip, srcport</order>
</decoder>

<decoder name="sshd-fail">
  <parent>sshd</parent>
  <prematch>^Failed \\S+ </prematch>
  <regex offset="after_prematch">^for (\\S+) from (\\S+)</regex>
  <order>srcuser, srcip</order>
</decoder>
"""


class DecoderTestCase(unittest.SynchronousTestCase):
    """Base: build an engine from decoders only."""

    def engine(self, decoders: str) -> Engine:
        """An engine with ``decoders`` and the root rules."""
        return make_engine(self.mktemp(), decoders=decoders)

    def decode(self, engine: Engine, line: str) -> EventInfo:
        """Pre-decode and decode one line."""
        return engine.prepare(Event(line, timestamp=0.0))


class ParentChildTests(DecoderTestCase):
    """Program name, parent and prematch choose the decoder."""

    def test_child_by_prematch_extracts_fields(self) -> None:
        """The matching child's regex fills static fields (user is dstuser)."""
        info = self.decode(
            self.engine(SSHD),
            "Feb  1 10:00:00 h sshd[1]: Accepted password for bob from 1.2.3.4 port 22",
        )
        assert info.decoder is not None
        self.assertEqual(info.decoder.name, "sshd-success")
        self.assertEqual(info.decoder.reported_name, "sshd")
        self.assertEqual(info.static, {"dstuser": "bob", "srcip": "1.2.3.4", "srcport": "22"})

    def test_second_child(self) -> None:
        """A later child is tried when the first child's prematch fails."""
        info = self.decode(
            self.engine(SSHD), "Feb  1 10:00:00 h sshd[1]: Failed password for root from 5.6.7.8"
        )
        self.assertEqual(info.static, {"srcuser": "root", "srcip": "5.6.7.8"})

    def test_parent_only(self) -> None:
        """When no child matches, the parent is the decoder and no field is set."""
        info = self.decode(self.engine(SSHD), "Feb  1 10:00:00 h sshd[1]: Something else")
        assert info.decoder is not None
        self.assertEqual((info.decoder.name, info.static), ("sshd", {}))

    def test_program_name_mismatch(self) -> None:
        """A line from another program gets no decoder."""
        self.assertIsNone(self.decode(self.engine(SSHD), "Feb  1 10:00:00 h su[1]: x").decoder)

    def test_program_name_decoders_need_a_program(self) -> None:
        """A decoder with program_name is not tried for a line without a program name."""
        self.assertIsNone(self.decode(self.engine(SSHD), "sshd: Accepted").decoder)

    def test_use_own_name(self) -> None:
        """use_own_name keeps the child's name in the report."""
        decoders = SSHD.replace(
            "<parent>sshd</parent>\n  <prematch>^Accepted",
            "<parent>sshd</parent>\n  <use_own_name>true</use_own_name>\n  <prematch>^Accepted",
        )
        info = self.decode(
            self.engine(decoders), "Feb  1 10:00:00 h sshd[1]: Accepted x for a from b port c"
        )
        assert info.decoder is not None
        self.assertEqual(info.decoder.reported_name, "sshd-success")

    def test_first_root_wins(self) -> None:
        """Roots are tried in file order; the first matching one decodes."""
        decoders = """
<decoder name="first"><prematch>^hello</prematch></decoder>
<decoder name="second"><prematch>^hello world</prematch></decoder>
"""
        info = self.decode(self.engine(decoders), "hello world")
        assert info.decoder is not None
        self.assertEqual(info.decoder.name, "first")


class RegexAndOrderTests(DecoderTestCase):
    """Regexes, offsets, dynamic fields and chained sibling regexes."""

    def test_dynamic_fields_and_after_parent(self) -> None:
        """Unknown order names become dynamic fields; after_parent starts after the prematch."""
        decoders = """
<decoder name="kv"><prematch>^KV: </prematch></decoder>
<decoder name="kv-fields">
  <parent>kv</parent>
  <regex offset="after_parent">^(\\w+)=(\\d+)</regex>
  <order>key.name, count</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "KV: alpha=42 rest")
        self.assertEqual(info.fields, [("key.name", "alpha"), ("count", "42")])

    def test_chained_regexes_with_after_regex(self) -> None:
        """Same-named children run one after another; after_regex continues where the last ended."""
        decoders = """
<decoder name="fw"><prematch>^FW </prematch></decoder>
<decoder name="fw-f">
  <parent>fw</parent>
  <regex>src=(\\S+)</regex>
  <order>srcip</order>
</decoder>
<decoder name="fw-f">
  <parent>fw</parent>
  <regex offset="after_regex">^ dst=(\\S+)</regex>
  <order>dstip</order>
</decoder>
<decoder name="fw-f">
  <parent>fw</parent>
  <regex>act=(\\w+)</regex>
  <order>action</order>
</decoder>
"""
        engine = self.engine(decoders)
        info = self.decode(engine, "FW src=1.1.1.1 dst=2.2.2.2 act=drop")
        self.assertEqual(info.static, {"srcip": "1.1.1.1", "dstip": "2.2.2.2", "action": "drop"})
        info = self.decode(engine, "FW act=allow")
        self.assertEqual(info.static, {"action": "allow"})

    def test_repeated_regex_elements_concatenate(self) -> None:
        """Two <regex> elements in one decoder form one pattern."""
        decoders = """
<decoder name="two"><prematch>^T </prematch>
  <regex>^T (\\w+) </regex>
  <regex>(\\w+)$</regex>
  <order>a, b</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "T one two")
        self.assertEqual(info.fields, [("a", "one"), ("b", "two")])

    def test_pcre2_regex(self) -> None:
        """type="pcre2" regexes capture as PCRE2 would."""
        decoders = """
<decoder name="p"><prematch type="pcre2">^P\\d</prematch>
  <regex type="pcre2">(?i)user=([a-z]+)</regex>
  <order>user</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "P1 USER=Alice")
        self.assertEqual(info.static, {"dstuser": "Alice"})

    def test_repeated_elements_take_the_last_type(self) -> None:
        """Repeated <program_name>/<prematch>/<regex> join their texts; the last type counts.

        The joined program name ``^(?i)t_`` + ``x_`` + ``0$`` is one PCRE2 pattern (neither
        an OS_Match nor an OS_Regex of it would match ``T_X_0``).
        """
        decoders = """
<decoder name="t0">
  <program_name type="osmatch">^(?i)t_</program_name>
  <program_name type="osregex">x_</program_name>
  <program_name type="pcre2">0$</program_name>
</decoder>
<decoder name="t0-child">
  <parent>t0</parent>
  <regex type="osregex">(?i)\\S+ (\\S+) </regex>
  <regex type="pcre2">(\\w+)$</regex>
  <order>url, action</order>
</decoder>
<decoder name="t1">
  <prematch type="osregex">(?i)head_</prematch>
  <prematch type="pcre2">1</prematch>
</decoder>
<decoder name="t1-child">
  <parent>t1</parent>
  <regex offset="after_parent">^ (\\S+)</regex>
  <order>id</order>
</decoder>
"""
        engine = self.engine(decoders)
        info = self.decode(engine, "Feb  1 10:00:00 h T_X_0[1]: first https://x GET")
        assert info.decoder is not None
        # A child without a prematch leaves the event under its parent, as Wazuh does.
        self.assertEqual(info.decoder.name, "t0")
        # The joined regex is PCRE2 (an OS_Regex would read "(?i)" as a group of literals).
        self.assertEqual(info.static, {"url": "https://x", "action": "GET"})
        info = self.decode(engine, "HEAD_1 abc rest")
        assert info.decoder is not None
        self.assertEqual(info.decoder.name, "t1")
        # A PCRE2 prematch ends right after its match: the child's offset starts there.
        self.assertEqual(info.static, {"id": "abc"})
        # The joined prematch is case-sensitive PCRE2: "(?i)" applies, so "head_1" matches too.
        info = self.decode(engine, "head_1 xyz")
        self.assertEqual(info.static, {"id": "xyz"})

    def test_pcre2_prematch_and_regex_offsets(self) -> None:
        """A PCRE2 prematch or regex ends right after its match (Wazuh keeps a pointer to
        its last matched character and moves it on by one): after_parent, after_prematch
        and after_regex start there."""
        decoders = """
<decoder name="p"><prematch type="pcre2">^P\\d</prematch></decoder>
<decoder name="p-kv">
  <parent>p</parent>
  <prematch type="pcre2" offset="after_parent">^ (\\w+)=</prematch>
  <regex type="pcre2" offset="after_prematch">^(\\S+)</regex>
  <order>user</order>
</decoder>
<decoder name="p-kv">
  <parent>p</parent>
  <regex type="pcre2" offset="after_regex">^ from (\\S+)</regex>
  <order>srcip</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "P7 name=bob from 10.0.0.1")
        assert info.decoder is not None
        self.assertEqual(info.decoder.name, "p-kv")
        self.assertEqual(info.static, {"dstuser": "bob", "srcip": "10.0.0.1"})

    def test_pcre2_unset_trailing_groups_are_not_fields(self) -> None:
        """PCRE2 reports groups up to the last that took part: later order names stay unset."""
        decoders = """
<decoder name="p"><prematch>^P </prematch>
  <regex type="pcre2">a=(\\w+)(?: b=(\\w+))?(?: c=(\\w+))?</regex>
  <order>user, srcip, custom</order>
</decoder>
"""
        engine = self.engine(decoders)
        info = self.decode(engine, "P a=1")
        self.assertEqual(info.static, {"dstuser": "1"})
        self.assertEqual(info.fields, [])
        info = self.decode(engine, "P a=1 c=3")
        # A group before the last matched one that did not take part is an empty value.
        self.assertEqual(info.static, {"dstuser": "1", "srcip": ""})
        self.assertEqual(info.fields, [("custom", "3")])

    def test_pcre2_named_groups_fill_the_order(self) -> None:
        """Named groups are numbered like any group and fill <order> in position."""
        decoders = """
<decoder name="p"><prematch>^P </prematch>
  <regex type="pcre2">user (?'name'\\w+) from (?'ip'[\\d.]+)</regex>
  <order>user, srcip</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "P user bob from 10.1.2.3")
        self.assertEqual(info.static, {"dstuser": "bob", "srcip": "10.1.2.3"})


class LeftoverCaptureTests(DecoderTestCase):
    """Captures of a PCRE2 program name or prematch that no regex used (Wazuh's one match
    buffer per event: a PCRE2 match fills it only when a group took part, an OS_Regex
    evaluation empties it, a regex's order consumes it)."""

    def test_capture_free_pcre2_regex_takes_the_prematch_captures(self) -> None:
        """A PCRE2 regex without groups gives its order the PCRE2 prematch's captures."""
        decoders = """
<decoder name="p"><prematch type="pcre2">^P user=(\\w+) ip=(\\S+)</prematch>
  <regex type="pcre2">done$</regex>
  <order>user, srcip</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "P user=bob ip=10.0.0.9 done")
        self.assertEqual(info.static, {"dstuser": "bob", "srcip": "10.0.0.9"})

    def test_regex_groups_replace_the_prematch_captures(self) -> None:
        """A PCRE2 regex whose groups took part uses only its own."""
        decoders = """
<decoder name="p"><prematch type="pcre2">^P (\\w+) (\\w+)</prematch>
  <regex type="pcre2">to (\\w+)</regex>
  <order>user, srcip</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "P a b to c")
        self.assertEqual(info.static, {"dstuser": "c"})

    def test_regex_groups_that_did_not_take_part_leave_the_captures(self) -> None:
        """A PCRE2 regex whose optional groups all stayed out reports none: the prematch's
        captures fill its order (pcre2_match returned 1)."""
        decoders = """
<decoder name="p"><prematch type="pcre2">^P (\\w+)</prematch>
  <regex type="pcre2">end(?: (\\d+))?</regex>
  <order>user</order>
</decoder>
"""
        engine = self.engine(decoders)
        self.assertEqual(self.decode(engine, "P bob end").static, {"dstuser": "bob"})
        self.assertEqual(self.decode(engine, "P bob end 7").static, {"dstuser": "7"})

    def test_osregex_regex_empties_the_captures(self) -> None:
        """An OS_Regex regex empties the buffer even without groups: no field."""
        decoders = """
<decoder name="p"><prematch type="pcre2">^P (\\w+)</prematch>
  <regex>done$</regex>
  <order>user</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "P bob done")
        self.assertEqual(info.static, {})
        self.assertEqual(info.fields, [])

    def test_failed_child_prematch_clears_or_keeps_by_type(self) -> None:
        """The parent's captures reach a capture-free child regex unless a child prematch
        tried in between was an OS_Regex (which empties the buffer even when it fails)."""
        template = """
<decoder name="p"><prematch type="pcre2">^P (\\w+)</prematch></decoder>
<decoder name="p-no"><parent>p</parent><prematch type="TYPE">^nomatch</prematch></decoder>
<decoder name="p-any"><parent>p</parent>
  <regex type="pcre2">\\d+$</regex>
  <order>user</order>
</decoder>
"""
        kept = self.decode(self.engine(template.replace("TYPE", "pcre2")), "P bob 42")
        self.assertEqual(kept.static, {"dstuser": "bob"})
        cleared = self.decode(self.engine(template.replace("TYPE", "osregex")), "P bob 42")
        self.assertEqual(cleared.static, {})

    def test_program_name_captures_and_single_use(self) -> None:
        """A PCRE2 program name's captures fill a capture-free PCRE2 regex; once an order
        used them, the next sibling's capture-free regex gets nothing."""
        decoders = """
<decoder name="app"><program_name type="pcre2">^app-(\\w+)</program_name></decoder>
<decoder name="app-x"><parent>app</parent>
  <regex type="pcre2">^go</regex>
  <order>user</order>
</decoder>
<decoder name="app-x"><parent>app</parent>
  <regex type="pcre2" offset="after_regex">now$</regex>
  <order>srcip</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "Feb  1 10:00:00 h app-web[1]: go now")
        self.assertEqual(info.static, {"dstuser": "web"})

    def test_captures_of_an_earlier_root_reach_a_later_one(self) -> None:
        """A root whose PCRE2 program name matched but whose prematch failed leaves its
        captures to the next root tried (as Wazuh walks every root in order)."""
        decoders = """
<decoder name="first"><program_name type="pcre2">^app-(\\w+)</program_name>
  <prematch type="pcre2">^never</prematch>
</decoder>
<decoder name="second"><program_name>app-</program_name>
  <regex type="pcre2">^go</regex>
  <order>user</order>
</decoder>
"""
        info = self.decode(self.engine(decoders), "Feb  1 10:00:00 h app-web[1]: go")
        assert info.decoder is not None
        self.assertEqual(info.decoder.name, "second")
        self.assertEqual(info.static, {"dstuser": "web"})

    def test_leftovers_do_not_cross_events(self) -> None:
        """Captures no regex used are forgotten at the end of the event (Wazuh keeps them per
        decoding thread, which depends on which thread takes the next event)."""
        decoders = """
<decoder name="a"><prematch type="pcre2">^A (\\w+)</prematch></decoder>
<decoder name="b"><prematch type="pcre2">^B</prematch>
  <regex type="pcre2">x$</regex>
  <order>user</order>
</decoder>
"""
        engine = self.engine(decoders)
        self.decode(engine, "A bob")
        self.assertEqual(self.decode(engine, "B x").static, {})


class JSONDecoderTests(DecoderTestCase):
    """The JSON_Decoder plugin."""

    def test_flattening_and_static_fields(self) -> None:
        """Nested keys are dotted, srcip is static, numbers and booleans become text."""
        info = self.decode(
            self.engine(JSON_DECODER),
            '{"srcip":"1.2.3.4","a":{"b":1,"c":true,"d":1.5},"n":null,"l":[1,"x"]}',
        )
        self.assertEqual(info.static, {"srcip": "1.2.3.4"})
        self.assertEqual(
            info.fields,
            [("a.b", "1"), ("a.c", "true"), ("a.d", "1.500000"), ("n", "null"), ("l", '[1, "x"]')],
        )

    def test_user_alias_and_trailing_text(self) -> None:
        """'user' fills dstuser; text after the JSON object is ignored."""
        info = self.decode(self.engine(JSON_DECODER), '{"user":"bob"} trailing')
        self.assertEqual(info.static, {"dstuser": "bob"})

    def test_malformed_json(self) -> None:
        """A line that is not JSON keeps the decoder but no fields."""
        info = self.decode(self.engine(JSON_DECODER), '{"broken": ')
        assert info.decoder is not None
        self.assertEqual((info.decoder.name, info.fields), ("json", []))

    def test_null_discard_and_csv_arrays(self) -> None:
        """json_null_field discard drops nulls; json_array_structure csv joins arrays."""
        decoders = JSON_DECODER.replace(
            "</decoder>",
            "<json_null_field>discard</json_null_field>\n"
            "<json_array_structure>csv</json_array_structure>\n</decoder>",
        )
        info = self.decode(self.engine(decoders), '{"n":null,"l":["a","b",3]}')
        self.assertEqual(info.fields, [("l", "a,b,3")])


class DecoderErrorsTests(DecoderTestCase):
    """Broken decoders are reported with file and line."""

    def test_unknown_parent(self) -> None:
        """A child naming a missing parent is an error with its line."""
        error = self.assertRaises(
            DecoderLoadError, self.engine, "\n\n<decoder name='x'><parent>nope</parent></decoder>"
        )
        self.assertEqual(error.line, 3)
        self.assertIn("0001-test_decoders.xml", error.path)
        self.assertIn("nope", error.reason)

    def test_regex_without_order(self) -> None:
        """A regex needs an order."""
        self.assertRaises(
            DecoderLoadError,
            self.engine,
            "<decoder name='x'><prematch>a</prematch><regex>(b)</regex></decoder>",
        )

    def test_bad_osregex(self) -> None:
        """An invalid OS_Regex is reported."""
        error = self.assertRaises(
            DecoderLoadError, self.engine, "<decoder name='x'><prematch>\\q</prematch></decoder>"
        )
        self.assertIn("unknown escape", error.reason)

    def test_root_needs_a_match_condition(self) -> None:
        """A root decoder without prematch or program_name is refused."""
        self.assertRaises(DecoderLoadError, self.engine, "<decoder name='x'></decoder>")


class AccumulateTests(DecoderTestCase):
    """<accumulate/> (on the decoder that ends up decoding, as in Wazuh): events sharing
    host, decoder name and id share their fields."""

    DECODERS = """
<decoder name="ldap"><program_name>^slapd</program_name><accumulate /></decoder>
<decoder name="ldap-conn"><parent>ldap</parent><prematch>ACCEPT from</prematch>
  <regex>^conn=(\\d+) fd=\\d+ ACCEPT from IP=(\\S+):</regex>
  <order>id, srcip</order><accumulate /></decoder>
<decoder name="ldap-bind"><parent>ldap</parent><prematch> BIND </prematch>
  <regex>^conn=(\\d+) op=\\d+ BIND dn="(\\S+)"</regex>
  <order>id, dstuser</order><accumulate /></decoder>
"""

    def test_fields_carried_between_events(self) -> None:
        """A later event of the same connection gets the address seen earlier, for 2 minutes."""
        engine = self.engine(self.DECODERS)
        first = "Feb  1 10:00:00 h slapd[1]: conn=7 fd=3 ACCEPT from IP=10.1.1.1:5000 (IP=0.0.0.0)"
        bind = 'Feb  1 10:00:01 h slapd[1]: conn=7 op=1 BIND dn="cn=admin"'
        engine.prepare(Event(first, timestamp=0.0))
        info = engine.prepare(Event(bind, timestamp=1.0))
        self.assertEqual(info.static, {"id": "7", "dstuser": "cn=admin", "srcip": "10.1.1.1"})
        other = engine.prepare(Event(bind.replace("conn=7", "conn=8"), timestamp=2.0))
        self.assertNotIn("srcip", other.static)
        late = engine.prepare(Event(bind, timestamp=500.0))
        self.assertNotIn("srcip", late.static)

"""Tests for wazuhcluster.analysis.expressions: osregex, osmatch, pcre2 and string."""

from __future__ import annotations

import glob
import html
import os
import re

from twisted.trial import unittest

from wazuhcluster.analysis.expressions import (
    ExpressionError,
    LiteralRegex,
    OSMatch,
    OSRegex,
    compile_expression,
    pcre2_required,
    test,
    translate_osregex,
    translate_pcre2,
)
from wazuhcluster.testing.reference import missing_reason, wazuh_ruleset


def groups(expression: object, text: str) -> list[str]:
    """The groups an expression captures in ``text`` (fails the test when it does not match)."""
    found = expression.extract(text)  # type: ignore[attr-defined]
    assert found is not None, text
    return found[0]


def osregex(pattern: str) -> OSRegex | LiteralRegex:
    """Compile an OS_Regex pattern."""
    return compile_expression("osregex", pattern)  # type: ignore[return-value]


class OSRegexSyntaxTests(unittest.SynchronousTestCase):
    """OS_Regex's own escapes and operators."""

    def test_word_class_includes_at_and_dash(self) -> None:
        """\\w accepts letters, digits, '_', '@' and '-' but not '.'."""
        self.assertEqual(osregex(r"^(\w+)").extract("a-b_c@d.e"), (["a-b_c@d"], 7))

    def test_space_class_is_only_a_space(self) -> None:
        """\\s matches a space but not a tab; \\t matches the tab."""
        self.assertTrue(osregex(r"a\sb").matches("a b"))
        self.assertFalse(osregex(r"a\sb").matches("a\tb"))
        self.assertTrue(osregex(r"a\tb").matches("a\tb"))

    def test_not_space_accepts_tab(self) -> None:
        """\\S is everything but a space, tabs included."""
        self.assertEqual(osregex(r"^(\S+)").extract("a\tb c"), (["a\tb"], 3))

    def test_digit_and_complements(self) -> None:
        """\\d, \\D and \\W accept what their definitions say."""
        self.assertEqual(osregex(r"(\d+)").extract("port 2201 x"), (["2201"], 9))
        self.assertEqual(osregex(r"^(\D+)").extract("ab1"), (["ab"], 2))
        self.assertEqual(osregex(r"a(\W+)b").extract("a.,b"), ([".,"], 4))

    def test_punctuation_class(self) -> None:
        """\\p matches punctuation such as '[' and '%' but not '/'."""
        self.assertTrue(osregex(r"^\p").matches("[x"))
        self.assertTrue(osregex(r"^\p").matches("%x"))
        self.assertFalse(osregex(r"^\p").matches("/x"))

    def test_any_character(self) -> None:
        """\\. matches any character, including a newline."""
        self.assertEqual(osregex(r"^a(\.+)$").extract("a\nb"), (["\nb"], 3))

    def test_escaped_specials_are_literals(self) -> None:
        """\\$ \\( \\) \\\\ \\| \\< match those characters."""
        self.assertTrue(osregex(r"\$\(x\)\|\\\<").matches("$(x)|\\<"))

    def test_plain_characters_are_literals(self) -> None:
        """'.', '[', '+' and '?' are plain characters in OS_Regex."""
        self.assertTrue(osregex(r"a.b[c]+?").matches("a.b[c]+?"))
        self.assertFalse(osregex(r"a.b").matches("axb"))

    def test_anchors_per_alternative(self) -> None:
        """^ and $ anchor each '|' alternative on its own."""
        expression = osregex(r"^start|end$")
        self.assertTrue(expression.matches("start here"))
        self.assertTrue(expression.matches("at the end"))
        self.assertFalse(expression.matches("the end is near"))

    def test_case_insensitive(self) -> None:
        """Literal text matches whatever its case."""
        self.assertTrue(osregex(r"^Accepted \S+").matches("ACCEPTED password"))

    def test_alternatives_are_tried_in_order_over_the_whole_text(self) -> None:
        """The first alternative that matches anywhere wins, even if a later one matches earlier."""
        expression = osregex(r"b=(\d+)|a=(\d+)")
        self.assertEqual(expression.extract("a=1 b=2"), (["2"], 7))

    def test_lazy_consumption_before_a_literal(self) -> None:
        """A quantified class stops at the first place where the rest can match."""
        expression = osregex(r"^(\.+) from (\S+)")
        self.assertEqual(groups(expression, "x from a from b"), ["x", "a"])

    def test_greedy_at_the_end(self) -> None:
        """With nothing after it, a quantified class takes the rest of the run."""
        self.assertEqual(groups(osregex(r"user (\S+)"), "user bob tail"), ["bob"])
        self.assertEqual(groups(osregex(r"msg: (\.+)"), "msg: a b c"), ["a b c"])

    def test_star_may_match_nothing(self) -> None:
        """'*' after a class accepts zero characters."""
        self.assertEqual(osregex(r"^a(\d*)b").extract("ab"), ([""], 2))

    def test_extract_returns_offset_after_match(self) -> None:
        """The offset points just after the matched text (used by after_regex/after_prematch)."""
        self.assertEqual(osregex(r"^\w+:").extract("sshd: rest"), ([], 5))

    def test_invalid_patterns_are_rejected(self) -> None:
        """Unknown escapes, nested groups and '|' inside a group are errors."""
        for bad in (r"\q", r"((a))", r"(a|b)", r"(a", "a\\"):
            self.assertRaises(ExpressionError, compile_expression, "osregex", bad)

    def test_translation_is_cached(self) -> None:
        """Compiling the same pattern twice reuses the compiled regex."""
        first = osregex(r"(\d+) x")
        second = osregex(r"(\d+) x")
        assert isinstance(first, OSRegex) and isinstance(second, OSRegex)
        self.assertIs(first.combined, second.combined)

    def test_literal_patterns_skip_the_regex_engine(self) -> None:
        """A pattern of plain text compiles to a LiteralRegex with the same answers."""
        expression = osregex("^4624$|^4625$")
        self.assertIsInstance(expression, LiteralRegex)
        self.assertTrue(expression.matches("4625"))
        self.assertFalse(expression.matches("46250"))

    def test_translation_of_quantifiers(self) -> None:
        """A quantifier whose follower cannot start with its characters becomes possessive."""
        self.assertEqual(translate_osregex(r"(\d+) "), ["([0-9]++)\\ "])
        self.assertEqual(translate_osregex(r"(\.+) from"), ["(.+?)\\ from"])


class OSMatchTests(unittest.SynchronousTestCase):
    """OS_Match: literal alternatives with anchors."""

    def test_substring_prefix_suffix_exact(self) -> None:
        """Free, ^, $ and ^$ alternatives behave as substring, prefix, suffix and equality."""
        self.assertTrue(OSMatch("fail").matches("authentication failure"))
        self.assertTrue(OSMatch("^auth").matches("authentication"))
        self.assertFalse(OSMatch("^auth").matches("not auth"))
        self.assertTrue(OSMatch("ure$").matches("failure"))
        self.assertTrue(OSMatch("^sshd$").matches("SSHD"))
        self.assertFalse(OSMatch("^sshd$").matches("sshd2"))

    def test_alternatives(self) -> None:
        """'|' separates alternatives."""
        expression = OSMatch("illegal user|invalid user")
        self.assertTrue(expression.matches("Invalid user bob"))
        self.assertFalse(expression.matches("valid user bob"))

    def test_leading_bang_negates(self) -> None:
        """A leading '!' inverts the answer."""
        self.assertFalse(OSMatch("!root").matches("root login"))
        self.assertTrue(OSMatch("!root").matches("bob login"))

    def test_special_characters_are_literal(self) -> None:
        """Regex characters mean themselves in OS_Match."""
        self.assertTrue(OSMatch("a.b(c)").matches("xa.b(c)y"))
        self.assertFalse(OSMatch("a.b").matches("axb"))


class PCRE2Tests(unittest.SynchronousTestCase):
    """PCRE2 patterns translated for Python's re."""

    def test_case_sensitive_by_default(self) -> None:
        """PCRE2 matching is case-sensitive unless (?i) is given."""
        self.assertFalse(compile_expression("pcre2", "Error").matches("error"))
        self.assertTrue(compile_expression("pcre2", "(?i)Error").matches("error"))

    def test_named_groups_and_captures(self) -> None:
        """(?<name>...) is accepted and captures in order."""
        expression = compile_expression("pcre2", r"user (?<user>\w+) from (\S+)")
        self.assertEqual(expression.extract("user bob from 1.2.3.4"), (["bob", "1.2.3.4"], 21))

    def test_ungreedy_flag(self) -> None:
        """(?U) swaps greedy and lazy quantifiers; a trailing ? makes one greedy again."""
        self.assertEqual(translate_pcre2(r"(?U)a(.*)b"), "a(.*?)b")
        self.assertEqual(groups(compile_expression("pcre2", r"(?U)<(.+)>"), "<a><b>"), ["a"])
        self.assertEqual(groups(compile_expression("pcre2", r"(?U)<(.+?)>"), "<a><b>"), ["a><b"])

    def test_verbs_and_code_points(self) -> None:
        """(*UTF) is dropped and \\N{U+hhhh} becomes the character."""
        self.assertTrue(compile_expression("pcre2", r"(*UTF)\N{U+202E}").matches("a\u202eb"))

    def test_required_literals(self) -> None:
        """Plain literal runs are extracted as a prefilter; alternation disables it."""
        self.assertEqual(pcre2_required(r"[^%]*%FTD-[0-7]-"), ("%FTD-",))
        self.assertEqual(pcre2_required(r"abc|def"), ())
        self.assertFalse(compile_expression("pcre2", r"%FTD-\d").matches("%ASA-1"))

    def test_invalid_pattern(self) -> None:
        """A pattern re cannot compile raises ExpressionError."""
        self.assertRaises(ExpressionError, compile_expression, "pcre2", "(unclosed")


class PCRE2SemanticsTests(unittest.SynchronousTestCase):
    """PCRE2 constructs behave as Wazuh's pcre2_compile(pattern, no options) reads them."""

    def match(self, pattern: str, text: str) -> bool:
        """Whether the PCRE2 ``pattern`` is found in ``text``."""
        return compile_expression("pcre2", pattern).matches(text)

    def test_option_setting_mid_pattern_lasts_to_the_group_end(self) -> None:
        """(?i) after some text covers the rest of its group and the later alternatives only."""
        self.assertTrue(self.match(r"test_match (?i)MATCH_example", "test_match match_EXAMPLE"))
        self.assertFalse(self.match(r"test_match (?i)match", "TEST_MATCH match"))
        self.assertTrue(self.match(r"^(a(?i)b|c)d$", "aBd"))
        self.assertTrue(self.match(r"^(a(?i)b|c)d$", "Cd"))
        self.assertFalse(self.match(r"^(a(?i)b|c)d$", "aBD"))
        self.assertFalse(self.match(r"^(a(?i)b|c)d$", "Abd"))
        self.assertTrue(self.match(r"(?i)ab(?-i)c", "ABc"))
        self.assertFalse(self.match(r"(?i)ab(?-i)c", "ABC"))
        self.assertTrue(self.match(r"(?i:a)b", "Ab"))
        self.assertFalse(self.match(r"(?i:a)b", "AB"))

    def test_extended_no_capture_and_reset_options(self) -> None:
        """(?x) drops white space and # comments, (?n) stops plain groups capturing, (?^)."""
        self.assertTrue(self.match("(?x) a b  # a comment (with a paren\n c", "abc"))
        expression = compile_expression("pcre2", r"(?n)(a)(?<b>b)")
        self.assertEqual(expression.extract("ab"), (["b"], 2))
        self.assertFalse(self.match(r"(?i)a(?^)b", "AB"))

    def test_classes_are_ascii(self) -> None:
        """\\d, \\w and \\s are ASCII-only and (?i) folds ASCII letters only, as without UTF."""
        self.assertFalse(self.match(r"^\d$", "\u0663"))
        self.assertFalse(self.match(r"^\w$", "\u00e9"))
        self.assertTrue(self.match(r"^\w+$", "abc_09"))
        self.assertFalse(self.match("(?i)\u00e9", "\u00c9"))
        self.assertTrue(self.match(r"(*UTF)(*UCP)^\w$", "\u00e9"))

    def test_utf_mode_folds_unicode_case_with_ascii_classes(self) -> None:
        """With (*UTF), (?i) folds any letter while \\w, \\d, \\s and \\b stay ASCII."""
        self.assertTrue(self.match(r"(*UTF)(?i)^\x{e9}t\x{e9}$", "\u00c9T\u00c9"))
        self.assertFalse(self.match(r"(*UTF)^\w$", "\u00e9"))
        self.assertFalse(self.match(r"(*UTF)^\d$", "\u0663"))
        self.assertTrue(self.match(r"(*UTF)\bab\b", "x ab y"))
        self.assertFalse(self.match(r"(*UTF)\bab\b", "xab"))
        self.assertTrue(self.match(r"(*UTF)^[\d\s]+$", "1 2"))

    def test_without_utf_the_text_is_its_utf8_bytes(self) -> None:
        """Without (*UTF), as Wazuh compiles it, PCRE2 sees a non-ASCII character's bytes."""
        self.assertTrue(self.match(r"^.{2}$", "\u00e9"))
        self.assertFalse(self.match(r"^.$", "\u00e9"))
        self.assertTrue(self.match(r"(*UTF)^.$", "\u00e9"))
        self.assertTrue(self.match("^[\u00e9]{2}$", "\u00e9"))
        self.assertTrue(self.match(r"^caf\xc3\xa9$", "caf\u00e9"))
        self.assertFalse(self.match(r"^caf\xe9$", "caf\u00e9"))
        expression = compile_expression("pcre2", r"caf(.+) (\w+)")
        self.assertEqual(expression.extract("un caf\u00e9 noir!"), (["\u00e9", "noir"], 12))
        # A group that ends inside a character's bytes: its text is what decodes, the offset
        # stops before that character.
        self.assertEqual(compile_expression("pcre2", r"a(.)").extract("a\u00e9b"), (["\ufffd"], 1))

    def test_escapes(self) -> None:
        """\\z, \\Z, \\h, \\v, \\R, \\N, \\e, \\cX, \\x{..}, \\o{..}, \\Q..\\E, octal."""
        self.assertTrue(self.match(r"a\Z", "a\n"))
        self.assertFalse(self.match(r"a\z", "a\n"))
        self.assertTrue(self.match(r"a\z", "xa"))
        self.assertTrue(self.match(r"a\hb\Hc", "a\tbxc"))
        self.assertFalse(self.match(r"a\hb", "a\nb"))
        self.assertTrue(self.match(r"a\vb\Rc\Rd", "a\x0bb\r\nc\nd"))
        self.assertFalse(self.match(r"a\Nb", "a\nb"))
        self.assertTrue(self.match(r"\e\cA\x{41}\x42\o{103}\104\x", "\x1b\x01ABCD\x00"))
        self.assertTrue(self.match(r"\Q(a.b)*\E!", "(a.b)*!"))
        self.assertFalse(self.match(r"\Q(a.b)*\E", "(axb)*"))
        self.assertTrue(self.match(r"C:\\zone", "C:\\zone"))
        self.assertTrue(self.match(r"[\h\d]+x", " 1\t2x"))
        self.assertTrue(self.match(r"(*UTF)\x{263a}", "\u263a"))

    def test_character_classes(self) -> None:
        """A leading ] is a member, POSIX classes, ranges, brackets and hyphens are literal."""
        self.assertTrue(self.match(r"^[]a]+$", "]a]"))
        self.assertTrue(self.match(r"^[^]a]$", "b"))
        self.assertFalse(self.match(r"^[^]a]$", "]"))
        self.assertTrue(self.match(r"^[[:alpha:][:digit:]_-]+$", "ab-9_"))
        self.assertFalse(self.match(r"^[[:upper:]]$", "a"))
        self.assertTrue(self.match(r"^[[&&|~-]+$", "[&&|~-"))
        self.assertTrue(self.match(r"^[\d-z]+$", "1-z"))
        self.assertFalse(self.match(r"^[\d-z]+$", "y"))

    def test_groups_and_references(self) -> None:
        """Named groups in every spelling and back-references by name, number or offset."""
        expression = compile_expression(
            "pcre2", r"(?<a>x)(?'b'y)(?P<c>z)\k<a>\k'b'\k{c}\g{-1}\g1\1"
        )
        self.assertEqual(expression.extract("xyzxyzzxx"), (["x", "y", "z"], 9))
        self.assertTrue(self.match(r"(?<n>a)(?P=n)(?(n)b|c)", "aab"))
        self.assertTrue(self.match(r"^a{,2}$", "a{,2}"))
        self.assertTrue(self.match(r"^a{2}(?#a comment)$", "aa"))
        self.assertFalse(self.match(r"a(*FAIL)|b", "a"))
        self.assertTrue(self.match(r"(?>a+)b", "aab"))
        self.assertTrue(self.match(r"a++b", "aab"))

    def test_ucp_without_utf_reads_each_byte_as_a_latin1_character(self) -> None:
        """(*UCP) without (*UTF): the classes take their Unicode meaning over code points
        0-255, each byte of the text's UTF-8 being one of them (PCRE2 10.42)."""
        # "\u00fc" is C3 BC: U+00C3 is a letter, U+00BC a number, both \w; "\u00e9" is C3 A9
        # and U+00A9 (a symbol) is not.
        self.assertTrue(self.match(r"(*UCP)^\w+$", "\u00fc"))
        self.assertFalse(self.match(r"^\w+$", "\u00fc"))
        self.assertFalse(self.match(r"(*UCP)^\w+$", "\u00e9"))
        self.assertTrue(self.match(r"(*UCP)^\w\W$", "\u00e9"))
        # \d is a decimal digit only: "\u00b2" (C2 B2) is a letter and a number, no digit.
        self.assertFalse(self.match(r"(*UCP)\d", "\u00b2"))
        self.assertTrue(self.match(r"(*UCP)^\w\w$", "\u00b2"))
        # \s: a separator or \h/\v space; a no-break space (C2 A0) ends in one (U+00A0 after
        # the letter U+00C2), \x1c is none.
        self.assertTrue(self.match(r"(*UCP)^a\S\sb$", "a\u00a0b"))
        self.assertFalse(self.match(r"^a\S\sb$", "a\u00a0b"))
        self.assertFalse(self.match(r"(*UCP)^\s$", "\x1c"))
        self.assertTrue(self.match(r"(*UCP)^\S$", "\x1c"))
        # \b follows \w: after U+00BC there is no word boundary.
        self.assertFalse(self.match(r"(*UCP)\bx", "\u00fcx"))
        self.assertTrue(self.match(r"\bx", "\u00fcx"))
        # (?i) folds Latin-1 letters: C3 (the first byte of "\u00e9") matches \xe3.
        self.assertTrue(self.match(r"(*UCP)(?i)^\xe3", "\u00e9"))
        self.assertFalse(self.match(r"(?i)^\xe3", "\u00e9"))
        # Inside a class, negated escapes too; a literal "\u00e9" is its two code units.
        self.assertFalse(self.match(r"(*UCP)^[\Wa]+$", "a\u00fc"))
        self.assertTrue(self.match(r"(*UCP)^[\Wa]+$", "a!"))
        self.assertTrue(self.match("(*UCP)^\u00e9$", "\u00e9"))

    def test_ucp_without_utf_posix_classes(self) -> None:
        """(*UCP) turns POSIX classes into Unicode properties over code points 0-255."""
        self.assertTrue(self.match(r"(*UCP)^[[:alnum:]]+$", "\u00fc"))
        self.assertFalse(self.match(r"(*UCP)^[[:alpha:]]+$", "\u00fc"))
        # "\u00f6" is C3 B6 and U+00B6 is punctuation; "\u00f1" ends in U+00B1, a symbol.
        self.assertTrue(self.match(r"(*UCP)[[:punct:]]", "\u00f6"))
        self.assertFalse(self.match(r"[[:punct:]]", "\u00f6"))
        self.assertFalse(self.match(r"(*UCP)[[:punct:]]", "\u00f1"))
        self.assertTrue(self.match(r"(*UCP)^[[:graph:]]+$", "\u00f1"))
        self.assertTrue(self.match(r"(*UCP)^a[[:alpha:]][[:blank:]]b$", "a\u00a0b"))
        # "\u00f5" is C3 B5: an upper case letter, then U+00B5 (micro), a lower case one.
        self.assertTrue(self.match(r"(*UCP)^[[:upper:]][[:lower:]]$", "\u00f5"))
        self.assertFalse(self.match(r"^[[:upper:]][[:lower:]]$", "\u00f5"))
        # Under (?i) PCRE2 keeps them to one case (Unicode properties); re cannot: refused.
        self.assertRaises(ExpressionError, compile_expression, "pcre2", r"(*UCP)(?i)[[:upper:]]")
        self.assertTrue(self.match(r"(*UCP)(?i)^[[:alpha:]]$", "A"))

    def test_ucp_without_utf_captures_and_offsets(self) -> None:
        """Groups and the end offset come back as text, whole characters."""
        expression = compile_expression("pcre2", r"(*UCP)(\w+)(\W)")
        self.assertEqual(expression.extract("\u00fc\u00e9!"), (["\u00fc\ufffd", "\ufffd"], 2))
        self.assertEqual(expression.extract("ab!"), (["ab", "!"], 3))

    def test_ucp_with_utf_space(self) -> None:
        """(*UTF)(*UCP): \\s is a separator or a \\h/\\v space (not U+001C, but U+180E)."""
        self.assertFalse(self.match(r"(*UTF)(*UCP)^\s$", "\x1c"))
        self.assertTrue(self.match(r"(*UTF)(*UCP)^\s\s$", "\u2003\u180e"))
        self.assertTrue(self.match(r"(*UTF)(*UCP)^[\s]\S$", "\u3000\x1c"))
        self.assertRaises(ExpressionError, compile_expression, "pcre2", r"(*UTF)(*UCP)[\S]")
        self.assertRaises(ExpressionError, compile_expression, "pcre2", r"(*UTF)(*UCP)[[:alpha:]]")

    def test_brace_without_minimum_is_literal(self) -> None:
        """PCRE2 10.42 (Wazuh 4.14's) reads x{,n} as text, unlike re and PCRE2 10.43+."""
        self.assertTrue(self.match(r"^a{,2}$", "a{,2}"))
        self.assertFalse(self.match(r"^a{,2}$", "aa"))
        self.assertFalse(self.match(r"^a{,2}$", ""))
        self.assertTrue(self.match(r"^x{,}$", "x{,}"))
        self.assertTrue(self.match(r"^a{1,2,3}$", "a{1,2,3}"))
        self.assertTrue(self.match(r"^a{ 2}$", "a{ 2}"))
        # The ? makes the closing brace optional, as after any literal.
        self.assertTrue(self.match(r"^a{,2}?$", "a{,2"))
        self.assertFalse(self.match(r"^a{,2}?$", "a"))

    def test_groups_that_did_not_take_part(self) -> None:
        """Groups after the last one that took part are absent; earlier ones are empty."""
        expression = compile_expression("pcre2", r"a(b)?(c)?(d)?")
        self.assertEqual(expression.extract("a"), ([], 1))
        self.assertEqual(expression.extract("ac"), (["", "c"], 2))

    def test_unsupported_constructs_are_refused(self) -> None:
        """What re cannot do is refused with the construct named, never matched differently."""
        for pattern in (
            r"\p{Lu}",
            r"a\Kb",
            r"\X",
            r"(a)(?1)",
            r"(?R)",
            r"(?|(a)|(b))",
            r"(?C1)a",
            r"(*CRLF)a",
            r"a(*SKIP)b",
            r"[[:^alpha:]]",
            r"(?J)(?<n>a)",
            r"(?<=ab|c)d",
        ):
            with self.subTest(pattern=pattern):
                error = self.assertRaises(ExpressionError, compile_expression, "pcre2", pattern)
                self.assertIn("not supported", str(error))

    def test_syntax_errors_are_refused(self) -> None:
        """Patterns PCRE2 itself refuses are load errors too."""
        for pattern in ("a\\", r"[a", r"a)", r"\y", r"*a", r"\x{100}"):
            with self.subTest(pattern=pattern):
                error = self.assertRaises(ExpressionError, compile_expression, "pcre2", pattern)
                self.assertIn("invalid PCRE2 pattern", str(error))

    def test_every_stock_pcre2_pattern_translates(self) -> None:
        """All type="pcre2" expressions of Wazuh's stock ruleset compile (when it is present)."""
        reason = missing_reason("WAZUH_RULESET")
        if reason:
            raise unittest.SkipTest(reason)
        found = 0
        for path in glob.glob(os.path.join(wazuh_ruleset(), "**", "*.xml"), recursive=True):
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            for element in re.finditer(r'<(\w+)[^>]*type="pcre2"[^>]*>(.*?)</\1>', text, re.S):
                found += 1
                compile_expression("pcre2", html.unescape(element.group(2)))
        self.assertGreater(found, 100)


class OtherTypesTests(unittest.SynchronousTestCase):
    """The string type, negation and unknown types."""

    def test_string_is_exact_and_case_sensitive(self) -> None:
        """type=string compares the whole value."""
        expression = compile_expression("string", "drop")
        self.assertTrue(expression.matches("drop"))
        self.assertFalse(expression.matches("Drop"))
        self.assertFalse(expression.matches("dropped"))

    def test_negate_flag_applies_in_test(self) -> None:
        """test() honours negate and fails on a missing value."""
        expression = compile_expression("osmatch", "root", negate=True)
        self.assertTrue(test(expression, "bob"))
        self.assertFalse(test(expression, "root"))
        self.assertFalse(test(expression, None))

    def test_unknown_type(self) -> None:
        """An unknown expression type is rejected."""
        self.assertRaises(ExpressionError, compile_expression, "glob", "*")

"""Translate a PCRE2 pattern, as Wazuh compiles it, into a pattern for Python's ``re``.

Wazuh compiles ``type="pcre2"`` expressions with ``pcre2_compile`` and no options: no UTF
mode unless the pattern starts with ``(*UTF)``, so ``\\d``, ``\\w``, ``\\s``, ``\\b`` and
case-folding are ASCII-only (we compile with :data:`re.ASCII` unless ``(*UCP)`` asks for
Unicode properties). ``(*UCP)`` without ``(*UTF)`` reads each byte of the text as the
character of that code point (Latin-1) and gives ``\\d``, ``\\w``, ``\\s``, ``\\b``, the POSIX
classes and ``(?i)`` their Unicode meaning over those 256 characters, as PCRE2 10.42 (the
release Wazuh 4.14 bundles) does: ``\\w`` is a letter, a number or ``_``, ``\\s`` a separator
or ``\\h``/``\\v`` space, ``[:punct:]`` punctuation or an ASCII symbol... With ``(*UTF)``,
``(*UCP)`` keeps ``re``'s Unicode ``\\d``, ``\\w``, ``\\b``, spells ``\\s`` as PCRE2's, and refuses
``[\\S]`` and the POSIX classes it would change. The pattern is read token by token, so an
escaped backslash is never mistaken for the start of an escape, and each PCRE2 construct
becomes its ``re`` equivalent:

* named groups ``(?<n>...)``, ``(?'n'...)``, ``(?P<n>...)`` and references ``\\k<n>``,
  ``\\k'n'``, ``\\k{n}``, ``\\g{n}``, ``\\g{-1}``, ``(?P=n)``;
* option settings anywhere (``(?i)``, ``(?-i)``, ``(?s)``, ``(?m)``, ``(?x)``, ``(?n)``,
  ``(?U)``, ``(?^)``): PCRE2 applies them to the rest of the enclosing group, later
  alternatives included, which we write as scoped ``(?i:...)`` groups per alternative;
  ``x`` (white space and ``#`` comments ignored), ``n`` (plain groups do not capture) and
  ``U`` (greediness swapped) are applied here rather than passed on;
* escapes ``\\z`` ``\\Z`` ``\\G`` ``\\h`` ``\\H`` ``\\v`` ``\\V`` ``\\R`` ``\\N`` ``\\e``
  ``\\cX`` ``\\o{...}`` ``\\x{...}`` ``\\xh`` ``\\N{U+h}`` ``\\Q...\\E`` and octal or
  back-reference digits, inside and outside character classes; POSIX classes
  ``[:alpha:]``...; comments ``(?#...)``; ``(*FAIL)``; the leading ``(*...)`` settings;
* ``x{,n}`` stays literal text, as in PCRE2 10.42, the release Wazuh 4.14 bundles (its
  README's third-party table; ``{,n}`` means ``{0,n}`` only from 10.43).

What ``re`` cannot express (Unicode properties ``\\p``, ``\\X``, ``\\K``, recursion and
subroutine calls, branch reset ``(?|``, callouts, backtracking verbs, newline conventions
other than LF, duplicate names) raises :class:`PCRE2Unsupported` with the construct named,
so the ruleset refuses to load with a clear message instead of matching differently.

Without ``(*UTF)``, PCRE2 matches a text's UTF-8 bytes: ``.`` or ``[^x]`` consume one byte
of a non-ASCII character and ``[é]`` is two bytes. The translation keeps that meaning when
encoded in UTF-8 (escapes outside ASCII are written ``\\xHH``), so the expression matches
non-ASCII texts as bytes (:mod:`.expressions`) and ASCII texts, where both agree, as str.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_PATTERN = 4096


class PCRE2Unsupported(ValueError):
    """A valid PCRE2 construct that Python's ``re`` cannot reproduce."""


class PCRE2SyntaxError(ValueError):
    """A pattern PCRE2 itself would refuse to compile."""


@dataclass(frozen=True)
class Translation:
    """A translated pattern, the ``re`` flags it needs, and whether it is in UTF mode
    (``(*UTF)``: it matches characters; otherwise it matches a text's UTF-8 bytes, and its
    pattern encoded in UTF-8 is the same expression over bytes). ``latin1`` (``(*UCP)``
    without ``(*UTF)``): the pattern is already written over those bytes read as Latin-1
    characters, and matches the text's UTF-8 bytes decoded that way."""

    pattern: str
    flags: int
    utf: bool = False
    latin1: bool = False


# Settings allowed before the pattern: (*UTF), (*UCP) and the ones that only tune speed.
_HARMLESS_VERBS = frozenset(
    {
        "LF",
        "NO_AUTO_POSSESS",
        "NO_DOTSTAR_ANCHOR",
        "NO_JIT",
        "NO_START_OPT",
        "BSR_UNICODE",
        "BSR_ANYCRLF",
    }
)
_LIMIT_VERB = re.compile(r"LIMIT_(?:MATCH|DEPTH|HEAP|RECURSION)=\d+")
_LEADING_VERB = re.compile(r"\(\*([A-Z0-9_]+(?:=\d+)?)\)")

_POSIX = {
    "alpha": "A-Za-z",
    "digit": "0-9",
    "alnum": "A-Za-z0-9",
    "space": "\\t\\n\\x0b\\f\\r ",
    "blank": "\\t ",
    "upper": "A-Z",
    "lower": "a-z",
    "xdigit": "0-9A-Fa-f",
    "punct": "!-/:-@\\[-`{-~",
    "word": "A-Za-z0-9_",
    "cntrl": "\\x00-\\x1f\\x7f",
    "graph": "!-~",
    "print": " -~",
    "ascii": "\\x00-\\x7f",
}
_HSPACE = "\\t \\xa0"
_HSPACE_UTF = _HSPACE + "\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000"
_VSPACE = "\\n\\x0b\\f\\r\\x85"
_VSPACE_UTF = _VSPACE + "\\u2028\\u2029"
# Escapes that mean the same to PCRE2 and to re (outside and inside classes).
_SAME_ESCAPES = frozenset("dDwWsSnrtfa")
_UNSUPPORTED_ESCAPES = {
    "p": "Unicode property \\p",
    "P": "Unicode property \\P",
    "X": "extended grapheme \\X",
    "K": "match start reset \\K",
    "C": "single code unit \\C",
}
_FLAG_LETTERS = frozenset("imnsxU")
_WORD = "[A-Za-z0-9_]"
#: ASCII spellings of the class escapes, for (*UTF) patterns compiled without re.ASCII.
_SPELLED = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": _WORD,
    "W": "[^A-Za-z0-9_]",
    "s": "[\\t\\n\\x0b\\f\\r ]",
    "S": "[^\\t\\n\\x0b\\f\\r ]",
    "b": f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))",
    "B": f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))",
}


def _hex(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _latin1_class(member: Callable[[int], bool]) -> str:
    """The code points 0-255 for which ``member`` holds, as ``re`` class text."""
    parts: list[str] = []
    code = 0
    while code < 0x100:
        if not member(code):
            code += 1
            continue
        end = code
        while end + 1 < 0x100 and member(end + 1):
            end += 1
        parts.append(_hex(code) if end == code else f"{_hex(code)}-{_hex(end)}")
        code = end + 1
    return "".join(parts)


def _category(code: int) -> str:
    return unicodedata.category(chr(code))


def _ucp_space(code: int) -> bool:
    # PCRE2's UCP \s: a separator (Z), or a horizontal or vertical space.
    return chr(code) in "\t\n\x0b\f\r \x85\xa0" or _category(code)[0] == "Z"


def _ucp_word(code: int) -> bool:
    # PCRE2 10.42's UCP \w: a letter, a number or the underscore (10.43 added marks).
    return _category(code)[0] in "LN" or code == 0x5F


def _ucp_graph(code: int) -> bool:
    category = _category(code)
    return category[0] not in "ZC" or category == "Cf"


def _ucp_pairs(member: Callable[[int], bool]) -> tuple[str, str]:
    return _latin1_class(member), _latin1_class(lambda code: not member(code))


#: (*UCP) without (*UTF): each class escape's members and non-members among code points 0-255.
_UCP_LATIN1 = {
    "d": _ucp_pairs(lambda code: _category(code) == "Nd"),
    "w": _ucp_pairs(_ucp_word),
    "s": _ucp_pairs(_ucp_space),
}
#: (*UCP) without (*UTF): the POSIX classes PCRE2 replaces by Unicode properties.
_POSIX_UCP_LATIN1 = {
    "alnum": _latin1_class(lambda code: _category(code)[0] in "LN"),
    "alpha": _latin1_class(lambda code: _category(code)[0] == "L"),
    "blank": _latin1_class(lambda code: code in (0x09, 0x20, 0xA0)),
    "cntrl": _latin1_class(lambda code: _category(code) == "Cc"),
    "digit": _UCP_LATIN1["d"][0],
    "lower": _latin1_class(lambda code: _category(code) == "Ll"),
    "space": _UCP_LATIN1["s"][0],
    "upper": _latin1_class(lambda code: _category(code) == "Lu"),
    "word": _UCP_LATIN1["w"][0],
    "graph": _latin1_class(_ucp_graph),
    "print": _latin1_class(lambda code: _ucp_graph(code) or _category(code) == "Zs"),
    "punct": _latin1_class(
        lambda code: _category(code)[0] == "P" or (code < 0x80 and _category(code)[0] == "S")
    ),
}
_UCP_WORD = f"[{_UCP_LATIN1['w'][0]}]"
_SPELLED_UCP_LATIN1 = {
    "d": f"[{_UCP_LATIN1['d'][0]}]",
    "D": f"[{_UCP_LATIN1['d'][1]}]",
    "w": _UCP_WORD,
    "W": f"[{_UCP_LATIN1['w'][1]}]",
    "s": f"[{_UCP_LATIN1['s'][0]}]",
    "S": f"[{_UCP_LATIN1['s'][1]}]",
    "b": f"(?:(?<={_UCP_WORD})(?!{_UCP_WORD})|(?<!{_UCP_WORD})(?={_UCP_WORD}))",
    "B": f"(?:(?<={_UCP_WORD})(?={_UCP_WORD})|(?<!{_UCP_WORD})(?!{_UCP_WORD}))",
}
#: (*UTF)(*UCP): PCRE2's \s is \h or \v (every separator is one); re's adds \x1c-\x1f.
_UCP_SPACE_UTF = _HSPACE_UTF + _VSPACE_UTF
_QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


@dataclass
class _Frame:
    """One open group: its options and the scoped option groups opened inside it."""

    flags: frozenset[str]
    closer: str = ")"
    scoped: list[str] = field(default_factory=list)


class _Translator:
    """One pass over a PCRE2 pattern, writing the ``re`` pattern into ``out``."""

    def __init__(
        self, pattern: str, utf: bool, spelled_classes: bool = False, ucp: bool = False
    ) -> None:
        self.src = pattern
        self.pos = 0
        self.out: list[str] = []
        self.utf = utf
        #: Write \\d, \\w, \\s, \\b as explicit ASCII classes (the pattern is compiled
        #: without re.ASCII so that (?i) folds Unicode letters, as PCRE2's UTF mode does).
        self.spelled = spelled_classes
        self.ucp = ucp
        #: (*UCP) without (*UTF): the classes are spelled over code points 0-255.
        self.latin1 = ucp and not utf
        self.frames = [_Frame(frozenset())]
        self.opened = 0
        self.total_groups = _count_groups(pattern)

    # ---- helpers -----------------------------------------------------------------------

    @property
    def flags(self) -> frozenset[str]:
        return self.frames[-1].flags

    def peek(self, size: int = 1) -> str:
        return self.src[self.pos : self.pos + size]

    def fail(self, message: str) -> PCRE2SyntaxError:
        return PCRE2SyntaxError(f"{message} at offset {self.pos}")

    def char(self, code: int) -> str:
        if code > 0xFF and not self.utf:
            raise self.fail("character code point above 0xff without (*UTF)")
        if code > 0x10FFFF:
            raise self.fail("character code point out of range")
        # Outside ASCII an escape names one code unit: \\xHH keeps that meaning in a pattern
        # over bytes (a literal character would be its UTF-8 bytes).
        if 0x20 <= code < 0x7F:
            return re.escape(chr(code))
        return _hex(code)

    # ---- the walk ----------------------------------------------------------------------

    def run(self) -> str:
        while self.pos < len(self.src):
            self.step()
        if len(self.frames) > 1:
            raise self.fail("missing closing parenthesis")
        self.out.extend(")" for _ in self.frames[0].scoped)
        return "".join(self.out)

    def step(self) -> None:
        char = self.src[self.pos]
        if "x" in self.flags:
            if char in " \t\n\r\x0b\f":
                self.pos += 1
                return
            if char == "#":
                end = self.src.find("\n", self.pos)
                self.pos = len(self.src) if end < 0 else end + 1
                return
        if char == "\\":
            self.escape()
        elif char == "[":
            self.pos += 1
            self.out.append(self.char_class())
        elif char == "(":
            self.open_group()
        elif char == ")":
            self.close_group()
        elif char == "|":
            self.pos += 1
            frame = self.frames[-1]
            self.out.extend(")" for _ in frame.scoped)
            self.out.append("|")
            self.out.extend(frame.scoped)
        elif char in "*+?":
            self.pos += 1
            self.quantifier(char)
        elif char == "{":
            found = _QUANTIFIER.match(self.src, self.pos)
            if found is None:
                self.pos += 1
                self.out.append("\\{")
            else:
                self.pos = found.end()
                self.quantifier(found.group(0))
        elif char in "^$.":
            self.pos += 1
            self.out.append(char)
        else:
            self.pos += 1
            self.out.append(re.escape(char))

    def quantifier(self, base: str) -> None:
        if not self.out or self.out[-1] in ("", "(", "|") or self.out[-1].endswith(("(", "|")):
            raise self.fail("quantifier does not follow a repeatable item")
        mode = self.peek()
        if mode in ("?", "+"):
            self.pos += 1
        else:
            mode = ""
        if "U" in self.flags and mode != "+":
            mode = "" if mode == "?" else "?"
        self.out.append(base + mode)

    # ---- escapes outside classes -------------------------------------------------------

    def escape(self) -> None:
        if self.pos + 1 >= len(self.src):
            raise self.fail("\\ at end of pattern")
        code = self.src[self.pos + 1]
        self.pos += 2
        if self.spelled and code in _SPELLED:
            self.out.append(_SPELLED[code])
        elif self.latin1 and code in _SPELLED_UCP_LATIN1:
            self.out.append(_SPELLED_UCP_LATIN1[code])
        elif self.ucp and code in "sS":
            self.out.append(f"[{'^' if code == 'S' else ''}{_UCP_SPACE_UTF}]")
        elif code in _SAME_ESCAPES or code in "bBA":
            self.out.append("\\" + code)
        elif code == "z":
            self.out.append("\\Z")
        elif code == "Z":
            self.out.append("(?=\\n?\\Z)")
        elif code == "G":
            # Wazuh always matches from offset 0, where \G and \A agree.
            self.out.append("\\A")
        elif code == "h":
            self.out.append(f"[{_HSPACE_UTF if self.utf else _HSPACE}]")
        elif code == "H":
            self.out.append(f"[^{_HSPACE_UTF if self.utf else _HSPACE}]")
        elif code == "v":
            self.out.append(f"[{_VSPACE_UTF if self.utf else _VSPACE}]")
        elif code == "V":
            self.out.append(f"[^{_VSPACE_UTF if self.utf else _VSPACE}]")
        elif code == "R":
            self.out.append(f"(?>\\r\\n|[{_VSPACE_UTF if self.utf else _VSPACE}])")
        elif code == "N" and self.peek() != "{":
            self.out.append("[^\\n]")
        elif code == "Q":
            self.out.append("".join(re.escape(c) for c in self.quoted()))
        elif code == "E":
            pass
        elif code in "kg":
            self.reference(code)
        elif code.isdigit():
            self.digits(code)
        else:
            self.out.append(self.char(self.literal_escape(code)))

    def quoted(self) -> str:
        end = self.src.find("\\E", self.pos)
        text = self.src[self.pos : len(self.src) if end < 0 else end]
        self.pos = len(self.src) if end < 0 else end + 2
        return text

    def literal_escape(self, code: str) -> int:
        """The character an escape stands for (the escape letter is already consumed)."""
        if code in _UNSUPPORTED_ESCAPES:
            raise PCRE2Unsupported(f"{_UNSUPPORTED_ESCAPES[code]} is not supported")
        if code == "e":
            return 0x1B
        if code == "c":
            letter = self.peek()
            if not letter or not letter.isascii():
                raise self.fail("\\c must be followed by an ASCII character")
            self.pos += 1
            return ord(letter.upper()) ^ 0x40
        if code == "o":
            return self.braced(8)
        if code == "x":
            if self.peek() == "{":
                return self.braced(16)
            digits = re.match(r"[0-9A-Fa-f]{0,2}", self.src[self.pos :])
            assert digits is not None
            self.pos += len(digits.group(0))
            return int(digits.group(0) or "0", 16)
        if code == "N":
            found = re.match(r"\{U\+([0-9A-Fa-f]{1,8})\}", self.src[self.pos :])
            if found is None or not self.utf:
                raise PCRE2Unsupported("\\N{name} is not supported (only \\N{U+hh} with (*UTF))")
            self.pos += found.end()
            return int(found.group(1), 16)
        if code.isascii() and code.isalnum():
            raise self.fail(f"unrecognised escape \\{code}")
        return ord(code)

    def braced(self, base: int) -> int:
        end = self.src.find("}", self.pos)
        digits = self.src[self.pos + 1 : end] if self.peek() == "{" and end > 0 else ""
        try:
            value = int(digits, base)
        except ValueError:
            raise self.fail("bad braced character value") from None
        self.pos = end + 1
        return value

    def digits(self, first: str) -> None:
        run = re.match(r"\d*", self.src[self.pos :])
        assert run is not None
        number = first + run.group(0)
        if first != "0" and (int(number) < 10 or int(number) <= self.total_groups):
            self.pos += len(run.group(0))
            self.out.append(f"(?:\\{int(number)})")
            return
        octal = re.match(r"[0-7]{0,2}", self.src[self.pos :])
        assert octal is not None
        if first in "89":
            raise self.fail(f"reference to a missing group \\{number}")
        self.pos += len(octal.group(0))
        self.out.append(self.char(int(first + octal.group(0), 8)))

    def reference(self, code: str) -> None:
        rest = self.src[self.pos :]
        if code == "k":
            found = re.match(r"<([^>]*)>|'([^']*)'|\{([^}]*)\}", rest)
            if found is None:
                raise self.fail("\\k must be followed by a name")
            name = found.group(1) or found.group(2) or found.group(3) or ""
            self.pos += found.end()
            self.named_reference(name)
            return
        if rest.startswith("<") or rest.startswith("'"):
            raise PCRE2Unsupported("subroutine call \\g<...> is not supported")
        found = re.match(r"\{(-?\d+|[A-Za-z_]\w*)\}|(-?\d+)", rest)
        if found is None:
            raise self.fail("\\g must be followed by a number or a name")
        target = found.group(1) or found.group(2)
        self.pos += found.end()
        if not re.fullmatch(r"-?\d+", target):
            self.named_reference(target)
            return
        number = int(target)
        if number < 0:
            number = self.opened + number + 1
        if number <= 0 or number > self.total_groups:
            raise self.fail("reference to a missing group")
        self.out.append(f"(?:\\{number})")

    def named_reference(self, name: str) -> None:
        if not _NAME.fullmatch(name):
            raise self.fail(f"bad group name {name!r}")
        self.out.append(f"(?P={name})")

    # ---- groups ------------------------------------------------------------------------

    def open_group(self) -> None:
        rest = self.src[self.pos :]
        if rest.startswith("(*"):
            verb = re.match(r"\(\*([A-Za-z_]*)", rest)
            assert verb is not None
            if verb.group(1) in ("FAIL", "F") and rest[verb.end() : verb.end() + 1] == ")":
                self.pos += verb.end() + 1
                self.out.append("(?!)")
                return
            raise PCRE2Unsupported(f"verb (*{verb.group(1)}) is not supported here")
        if not rest.startswith("(?"):
            self.pos += 1
            self.push("(?:" if "n" in self.flags else "(", self.flags)
            if "n" not in self.flags:
                self.opened += 1
            return
        body = rest[2:]
        named = re.match(r"(?:P?<|')([A-Za-z_][A-Za-z0-9_]{0,31})[>']", body)
        if named is not None and not body.startswith(("<=", "<!")):
            self.pos += 2 + named.end()
            self.opened += 1
            self.push(f"(?P<{named.group(1)}>", self.flags)
            return
        for prefix in (":", "=", "!", "<=", "<!", ">"):
            if body.startswith(prefix):
                self.pos += 2 + len(prefix)
                self.push("(?" + prefix, self.flags)
                return
        if body.startswith("#"):
            end = self.src.find(")", self.pos)
            if end < 0:
                raise self.fail("missing ) after comment")
            self.pos = end + 1
            return
        if body.startswith("P="):
            found = re.match(r"P=([A-Za-z_]\w*)\)", body)
            if found is None:
                raise self.fail("bad (?P= reference")
            self.pos += 2 + found.end()
            self.named_reference(found.group(1))
            return
        if body.startswith("("):
            self.condition(body)
            return
        if re.match(r"R\)|[+-]?\d|&|P>|C|\|", body):
            raise PCRE2Unsupported(
                f"(?{body[:2]}...: recursion, subroutine calls, callouts and branch reset "
                "are not supported"
            )
        setting = re.match(r"(\^)?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])", body)
        if setting is None:
            raise PCRE2Unsupported(f"group (?{body[:3]}... is not supported")
        self.pos += 2 + setting.end()
        self.option_setting(setting)

    def condition(self, body: str) -> None:
        found = re.match(r"\((?:(\d+)|<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|([A-Za-z_]\w*))\)", body)
        if found is None or found.group(4) in ("R", "DEFINE"):
            raise PCRE2Unsupported("this kind of conditional group is not supported")
        target = found.group(1) or found.group(2) or found.group(3) or found.group(4)
        self.pos += 2 + found.end()
        self.push(f"(?({target})", self.flags)

    def option_setting(self, setting: re.Match[str]) -> None:
        reset, on, off, end = setting.groups()
        on = on or ""
        off = off or ""
        letters = set(on) | set(off)
        unknown = letters - _FLAG_LETTERS
        if unknown or "xx" in on:
            raise PCRE2Unsupported(f"option letters {''.join(sorted(unknown)) or 'xx'}")
        flags = set(self.flags)
        if reset:
            flags -= set("imnsx")
        flags |= set(on)
        flags -= set(off)
        scoped = _scoped_flags(frozenset(flags), self.flags)
        if end == ":":
            self.push(scoped, frozenset(flags))
            return
        frame = self.frames[-1]
        if len(self.frames) == 1 and not self.out:
            # At the very start it covers the whole pattern: re takes it as global flags.
            frame.flags = frozenset(flags)
            python = "".join(sorted(frame.flags & {"i", "m", "s"}))
            if python:
                self.out.append(f"(?{python})")
            return
        # An option setting lasts to the end of its group, later alternatives included.
        frame.flags = frozenset(flags)
        frame.scoped.append(scoped)
        self.out.append(scoped)

    def push(self, opener: str, flags: frozenset[str]) -> None:
        self.out.append(opener)
        self.frames.append(_Frame(flags))

    def close_group(self) -> None:
        if len(self.frames) == 1:
            raise self.fail("unmatched closing parenthesis")
        frame = self.frames.pop()
        self.pos += 1
        self.out.extend(")" for _ in frame.scoped)
        self.out.append(")")

    # ---- character classes -------------------------------------------------------------

    def char_class(self) -> str:
        parts = ["["]
        if self.peek() == "^":
            parts.append("^")
            self.pos += 1
        first = True
        previous_single = False
        while True:
            if self.pos >= len(self.src):
                raise self.fail("missing terminating ] for character class")
            char = self.src[self.pos]
            if char == "]" and not first:
                self.pos += 1
                break
            first = False
            if char == "[":
                posix = re.match(r"\[:(\^?)([a-z]+):\]", self.src[self.pos :])
                if posix is not None:
                    if posix.group(1) or posix.group(2) not in _POSIX:
                        raise PCRE2Unsupported(f"POSIX class {posix.group(0)} is not supported")
                    self.pos += posix.end()
                    parts.append(self.posix_class(posix.group(2)))
                    previous_single = False
                    continue
            if char == "-" and previous_single and self.src[self.pos + 1 : self.pos + 2] != "]":
                self.pos += 1
                end = self.class_item()
                if end is None or len(end) > 1 and not end.startswith("\\"):
                    raise self.fail("invalid range in character class")
                parts.append("-" + end)
                previous_single = False
                continue
            item = self.class_item()
            if item is None:
                continue
            parts.append(item)
            previous_single = _is_single(item)
        return "".join(parts) + "]"

    def class_item(self) -> str | None:
        """One member of a class as ``re`` text (None for an empty \\Q\\E or a lone \\E)."""
        char = self.src[self.pos]
        if char != "\\":
            self.pos += 1
            return _class_char(char)
        if self.pos + 1 >= len(self.src):
            raise self.fail("\\ at end of pattern")
        code = self.src[self.pos + 1]
        self.pos += 2
        if self.spelled and code in "dws":
            return _SPELLED[code][1:-1]
        if self.spelled and code in "DWS":
            raise PCRE2Unsupported(f"\\{code} inside a character class with (*UTF)")
        if self.latin1 and code in "dwsDWS":
            return _UCP_LATIN1[code.lower()][code.isupper()]
        if self.ucp and code == "s":
            return _UCP_SPACE_UTF
        if self.ucp and code == "S":
            raise PCRE2Unsupported("\\S inside a character class with (*UTF)(*UCP)")
        if code in "dDwWsSnrtfa":
            return "\\" + code
        if code == "h":
            return _HSPACE_UTF if self.utf else _HSPACE
        if code == "v":
            return _VSPACE_UTF if self.utf else _VSPACE
        if code in "HVNR":
            raise PCRE2Unsupported(f"\\{code} inside a character class is not supported")
        if code == "b":
            return "\\x08"
        if code == "Q":
            text = self.quoted()
            return "".join(_class_char(c) for c in text) or None
        if code == "E":
            return None
        if code.isdigit():
            octal = re.match(r"[0-7]{0,2}", self.src[self.pos :])
            assert octal is not None
            if code in "89":
                raise self.fail(f"\\{code} is not allowed in a character class")
            self.pos += len(octal.group(0))
            value = int(code + octal.group(0), 8)
            return _class_char(chr(value)) if value < 0x80 else _hex(value)
        code_point = self.literal_escape(code)
        if code_point > 0xFF and not self.utf:
            raise self.fail("character code point above 0xff without (*UTF)")
        return _class_char(chr(code_point)) if code_point < 0x80 else _hex(code_point)

    def posix_class(self, name: str) -> str:
        """The members of ``[:name:]`` as ``re`` class text (Unicode ones under (*UCP))."""
        if self.latin1 and name in ("upper", "lower") and "i" in self.flags:
            # PCRE2 makes them \\p{Lu}/\\p{Ll}, which (?i) leaves alone; re would fold them.
            raise PCRE2Unsupported(f"POSIX class [:{name}:] with (*UCP) and (?i)")
        if self.latin1 and name in _POSIX_UCP_LATIN1:
            return _POSIX_UCP_LATIN1[name]
        if self.ucp and name in _POSIX_UCP_LATIN1:
            raise PCRE2Unsupported(f"POSIX class [:{name}:] with (*UTF)(*UCP)")
        return _POSIX[name]


def _is_single(item: str) -> bool:
    return len(item) == 1 or (item.startswith("\\") and item[1:2] not in "dDwWsS")


def _class_char(char: str) -> str:
    """One literal character inside a class, escaped so that re reads it literally."""
    if char.isalnum() or char == " ":
        return char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return _hex(ord(char))
    return "\\" + char if char.isascii() else char


def _scoped_flags(flags: frozenset[str], before: frozenset[str]) -> str:
    """The ``re`` group that turns the options of ``before`` into those of ``flags``.

    Only ``i``, ``m`` and ``s`` reach ``re``; the others are applied by the translator.
    """
    python = {"i", "m", "s"}
    on = "".join(sorted((flags - before) & python))
    off = "".join(sorted((before - flags) & python))
    if not on and not off:
        return "(?:"
    return f"(?{on}-{off}:" if off else f"(?{on}:"


def class_end(pattern: str, start: int) -> int:
    """The index just after the class opened by the ``[`` at ``start``, or -1 when unclosed."""
    index = start + 1
    if pattern[index : index + 1] == "^":
        index += 1
    if pattern[index : index + 1] == "]":
        index += 1
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
        elif char == "]":
            return index + 1
        elif char == "[" and (posix := re.match(r"\[:\^?[a-z]+:\]", pattern[index:])):
            index += posix.end()
        else:
            index += 1
    return -1


def _count_groups(pattern: str) -> int:
    """Capturing groups in ``pattern`` (to tell a back-reference from an octal escape)."""
    count = 0
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[index + 1 : index + 2] == "]":
                index += 1
        elif char == "(":
            following = pattern[index + 1 : index + 4]
            if not following.startswith(("?", "*")) or following.startswith(("?'", "?P<")):
                count += 1
            elif following.startswith("?<") and not following.startswith(("?<=", "?<!")):
                count += 1
        index += 1
    return count


def translate(pattern: str) -> Translation:
    """Translate one PCRE2 pattern; raises :class:`PCRE2Unsupported` or PCRE2SyntaxError."""
    if len(pattern) > MAX_PATTERN:
        raise PCRE2SyntaxError(f"pattern longer than {MAX_PATTERN} characters")
    utf = False
    ucp = False
    position = 0
    while True:
        verb = _LEADING_VERB.match(pattern, position)
        if verb is None:
            break
        name = verb.group(1)
        if name in ("UTF", "UTF8"):
            utf = True
        elif name == "UCP":
            ucp = True
        elif name not in _HARMLESS_VERBS and not _LIMIT_VERB.fullmatch(name):
            raise PCRE2Unsupported(f"setting (*{name}) is not supported")
        position = verb.end()
    # UTF mode folds case over Unicode while \\d, \\w, \\s, \\b stay ASCII (unless UCP).
    spelled = utf and not ucp
    translator = _Translator(pattern[position:], utf, spelled, ucp)
    translated = translator.run()
    if ucp and not utf:
        # PCRE2 reads the pattern's own characters as code units too: a literal "é" is
        # the two characters of its UTF-8 bytes; (?i) folds them as Unicode letters.
        latin1 = translated.encode("utf-8", "surrogateescape").decode("latin-1")
        return Translation(latin1, 0, utf=False, latin1=True)
    return Translation(translated, 0 if ucp or spelled else re.ASCII, utf)

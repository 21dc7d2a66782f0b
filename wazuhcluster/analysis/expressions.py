"""Wazuh's expression types (osregex, osmatch, pcre2, string) on top of Python ``re``.

* **osmatch**: literal strings, alternatives split on ``|``, each optionally anchored with ``^``
  and/or ``$``; an empty alternative matches anything; a leading ``!`` negates the whole
  expression; case-insensitive.
* **osregex**: OS_Regex's own syntax. ``\\w`` is ``[A-Za-z0-9_@-]``, ``\\d`` digits, ``\\s`` only
  a space, ``\\t`` a tab, ``\\p`` punctuation, ``\\W \\D \\S`` their complements, ``\\.`` any
  character, ``\\$ \\( \\) \\\\ \\| \\<`` literals; ``+`` and ``*`` only quantify an escape; every
  other character is a literal; ``^``/``$`` anchor an alternative; ``|`` separates alternatives
  (never inside a group); groups do not nest; matching is case-insensitive. The engine consumes
  lazily (it moves to the next token as soon as it matches) unless nothing follows, and it
  tries each alternative over the whole text before the next one, which is what we reproduce.
* **pcre2**: a Perl-compatible expression, case-sensitive, ASCII classes, translated
  construct by construct by :mod:`.pcre2_syntax` (what ``re`` cannot do is refused).
* **string**: exact, case-sensitive equality.

Every compiled expression is cached, so a ruleset compiles each distinct pattern once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Protocol

from wazuhcluster.analysis.pcre2_syntax import (
    PCRE2SyntaxError,
    PCRE2Unsupported,
    Translation,
    class_end,
    translate,
)

MAX_PATTERN = 4096

_OSREGEX_CLASSES = {
    "d": "[0-9]",
    "w": "[A-Za-z0-9_@\\-]",
    "s": " ",
    "p": "[!\"#$%&'()*+,\\-.:;<=>?\\[\\]{|}]",
    "W": "[^A-Za-z0-9_@\\-]",
    "D": "[^0-9]",
    "S": "[^ ]",
    ".": ".",
    "t": "\\t",
    "$": "\\$",
    "(": "\\(",
    ")": "\\)",
    "\\": "\\\\",
    "|": "\\|",
    "<": "<",
}


_LAST_LOWERED: tuple[str, str] = ("", "")


def lowered(text: str) -> str:
    """``text.lower()``, remembered for the last text (rules test one log many times)."""
    global _LAST_LOWERED
    last = _LAST_LOWERED
    if last[0] is text:
        return last[1]
    result = text.lower()
    _LAST_LOWERED = (text, result)
    return result


class ExpressionError(ValueError):
    """A pattern that its expression type cannot compile."""


class Expression(Protocol):
    """What rules and decoders need from any expression type."""

    negate: bool

    def matches(self, text: str) -> bool:
        """True when the pattern is found in ``text`` (ignoring ``negate``)."""

    def extract(self, text: str) -> tuple[list[str], int] | None:
        """Return the captured groups and the offset just after the match, or None."""


class _RegexBacked:
    """An expression evaluated by one or more compiled ``re`` patterns tried in order."""

    __slots__ = ("alternatives", "combined", "negate", "source")

    def __init__(
        self,
        source: str,
        alternatives: Sequence[re.Pattern[str]],
        combined: re.Pattern[str],
        negate: bool = False,
    ) -> None:
        self.source = source
        self.alternatives = tuple(alternatives)
        self.combined = combined
        self.negate = negate

    def matches(self, text: str) -> bool:
        """True when the pattern is found in ``text`` (ignoring ``negate``)."""
        return self.combined.search(text) is not None

    def extract(self, text: str) -> tuple[list[str], int] | None:
        """The captured groups and the offset just after the match, or None."""
        for pattern in self.alternatives:
            found = pattern.search(text)
            if found is not None:
                return [g if g is not None else "" for g in found.groups()], found.end()
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source!r}>"


class OSRegex(_RegexBacked):
    """An OS_Regex expression.

    OS_Regex compares lower-cased text with a lower-cased pattern, so we search the
    lower-cased text with a lower-cased, case-sensitive pattern (which lets ``re`` scan for
    literal prefixes quickly) and read the groups from the original text at the same spans.
    ``required`` holds, per alternative, the literal pieces the text must contain for that
    alternative to match; it lets most misses skip the regex engine.
    """

    __slots__ = ("filtered", "keys", "low_alternatives", "low_combined", "required")

    def __init__(
        self,
        source: str,
        alternatives: Sequence[re.Pattern[str]],
        combined: re.Pattern[str],
        negate: bool = False,
        required: tuple[tuple[str, ...], ...] = (),
        low: tuple[tuple[re.Pattern[str], ...], re.Pattern[str]] | None = None,
    ) -> None:
        super().__init__(source, alternatives, combined, negate)
        self.required = required or tuple(() for _ in alternatives)
        self.filtered = all(self.required)
        self.low_alternatives, self.low_combined = low or (self.alternatives, self.combined)
        # One piece per alternative, minimised: if none is present nothing can match.
        keys = {pieces[0] for pieces in self.required if pieces}
        self.keys = (
            tuple(k for k in keys if not any(o != k and o in k for o in keys))
            if self.filtered
            else ()
        )

    def _possible(self, low: str) -> bool:
        for key in self.keys:
            if key in low:
                return True
        return False

    def matches(self, text: str) -> bool:
        """True when the pattern is found in ``text`` (ignoring ``negate``)."""
        low = lowered(text)
        if self.filtered and (
            not self._possible(low)
            or not any(all(piece in low for piece in pieces) for pieces in self.required)
        ):
            return False
        if len(low) == len(text):
            return self.low_combined.search(low) is not None
        return self.combined.search(text) is not None

    def extract(self, text: str) -> tuple[list[str], int] | None:
        """The captured groups and the offset just after the match, or None."""
        low = lowered(text)
        if self.keys and not self._possible(low):
            return None
        same = len(low) == len(text)
        patterns = self.low_alternatives if same else self.alternatives
        subject = low if same else text
        for pattern, pieces in zip(patterns, self.required, strict=True):
            missing = False
            for piece in pieces:
                if piece not in low:
                    missing = True
                    break
            if missing:
                continue
            found = pattern.search(subject)
            if found is not None:
                groups = [text[a:b] if a >= 0 else "" for a, b in found.regs[1:]]
                return groups, found.end()
        return None


class LiteralRegex:
    """An OS_Regex made only of literal text (with optional ``^``/``$``): no regex needed."""

    __slots__ = ("alternatives", "negate", "source")

    def __init__(
        self, source: str, alternatives: Sequence[tuple[bool, bool, str]], negate: bool = False
    ) -> None:
        self.source = source
        self.alternatives = tuple(alternatives)
        self.negate = negate

    def _end(self, lowered: str, begin: bool, end: bool, literal: str) -> int:
        if begin and end:
            return len(lowered) if lowered == literal else -1
        if begin:
            return len(literal) if lowered.startswith(literal) else -1
        if end:
            return len(lowered) if lowered.endswith(literal) and lowered else -1
        index = lowered.find(literal)
        return -1 if index < 0 else index + len(literal)

    def matches(self, text: str) -> bool:
        """True when the pattern is found in ``text`` (ignoring ``negate``)."""
        return self.found_in_lowered(lowered(text))

    def found_in_lowered(self, low: str) -> bool:
        """Whether an alternative occurs in already lower-cased text."""
        for begin, end, literal in self.alternatives:
            if begin:
                if end:
                    if low == literal:
                        return True
                elif low.startswith(literal):
                    return True
            elif end:
                if low and low.endswith(literal):
                    return True
            elif literal in low:
                return True
        return False

    def extract(self, text: str) -> tuple[list[str], int] | None:
        """The captured groups and the offset just after the match, or None."""
        low = lowered(text)
        for begin, end, literal in self.alternatives:
            position = self._end(low, begin, end, literal)
            if position >= 0:
                return [], position
        return None

    def __repr__(self) -> str:
        return f"<LiteralRegex {self.source!r}>"


class PCRE2(_RegexBacked):
    """A PCRE2 expression; ``required`` lists literal pieces any match must contain.

    Without ``(*UTF)`` Wazuh's PCRE2 matches a text's UTF-8 bytes: a text with non-ASCII
    characters is matched as bytes by ``over_bytes`` (the same expression compiled over
    bytes), the groups decoded back and the end offset counted in whole characters.
    """

    __slots__ = ("latin1", "over_bytes", "required")

    def __init__(
        self,
        source: str,
        alternatives: Sequence[re.Pattern[str]],
        combined: re.Pattern[str],
        negate: bool = False,
        required: tuple[str, ...] = (),
        over_bytes: re.Pattern[bytes] | None = None,
        latin1: bool = False,
    ) -> None:
        super().__init__(source, alternatives, combined, negate)
        self.required = required
        self.over_bytes = over_bytes
        #: (*UCP) without (*UTF): ``combined`` is written over the text's UTF-8 bytes read
        #: as Latin-1 characters (so that (?i) and the classes see code points 0-255).
        self.latin1 = latin1

    def matches(self, text: str) -> bool:
        """True when the pattern is found in ``text`` (ignoring ``negate``)."""
        if self.required and not all(piece in text for piece in self.required):
            return False
        if self.over_bytes is not None and not text.isascii():
            return self.over_bytes.search(text.encode("utf-8", "surrogateescape")) is not None
        if self.latin1 and not text.isascii():
            return self.combined.search(_as_latin1(text)) is not None
        return self.combined.search(text) is not None

    def _extract_latin1(self, text: str) -> tuple[list[str], int] | None:
        units = _as_latin1(text)
        found = self.combined.search(units)
        if found is None:
            return None
        groups = [_from_latin1(units[a:b]) if a >= 0 else "" for a, b in _group_spans(found)]
        return groups, len(units[: found.end()].encode("latin-1").decode("utf-8", "ignore"))

    def _extract_bytes(self, pattern: re.Pattern[bytes], text: str) -> tuple[list[str], int] | None:
        data = text.encode("utf-8", "surrogateescape")
        found = pattern.search(data)
        if found is None:
            return None
        groups = [
            data[a:b].decode("utf-8", "replace") if a >= 0 else "" for a, b in _group_spans(found)
        ]
        # A match may end inside a character's bytes: the offset stops before that character.
        return groups, len(data[: found.end()].decode("utf-8", "ignore"))

    def extract(self, text: str) -> tuple[list[str], int] | None:
        """The captured groups and the offset just after the match, or None.

        As ``pcre2_match`` reports them: groups up to the last one that took part in the
        match (later ones are absent, not empty); an earlier group that did not take part
        is an empty string.
        """
        if self.required and not all(piece in text for piece in self.required):
            return None
        if self.over_bytes is not None and not text.isascii():
            return self._extract_bytes(self.over_bytes, text)
        if self.latin1 and not text.isascii():
            return self._extract_latin1(text)
        found = self.combined.search(text)
        if found is None:
            return None
        return [text[a:b] if a >= 0 else "" for a, b in _group_spans(found)], found.end()


def _group_spans(found: re.Match[str] | re.Match[bytes]) -> tuple[tuple[int, int], ...]:
    """The spans of ``found``'s groups up to the last one that took part in the match."""
    spans: tuple[tuple[int, int], ...] = found.regs
    last = len(spans) - 1
    while last > 0 and spans[last][0] < 0:
        last -= 1
    return spans[1 : last + 1]


def _as_latin1(text: str) -> str:
    """``text``'s UTF-8 bytes, one character per byte (code points 0-255)."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _from_latin1(units: str) -> str:
    """The text of bytes read by :func:`_as_latin1` (a cut character becomes U+FFFD)."""
    return units.encode("latin-1").decode("utf-8", "replace")


_PCRE_PLAIN = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-:=,%@/\"'<>!#&;~`"
)


_PCRE_ESCAPE_ARGUMENTS = frozenset("xcogkNpPQE0123456789")


def pcre2_required(pattern: str) -> tuple[str, ...]:
    """Literal pieces every match of a simple PCRE2 pattern contains (case-sensitive).

    Conservative: patterns with alternation, inline flags or \\Q quoting get no filter.
    """
    if "|" in pattern or "(?" in pattern or "\\Q" in pattern:
        return ()
    pieces: list[str] = []
    run: list[str] = []
    depth = 0
    index = 0

    def close() -> None:
        """End the current literal run, keeping it when it is long enough to be useful."""
        if len(run) >= 2:
            pieces.append("".join(run))
        run.clear()

    while index < len(pattern):
        char = pattern[index]
        following = pattern[index + 1 : index + 2]
        if char == "\\":
            if pattern[index + 1 : index + 2] in _PCRE_ESCAPE_ARGUMENTS:
                # Escapes with arguments (\\x41, \\cA, \\o{..}, \\Q..., octal...): no filter.
                return ()
            close()
            index += 2
            continue
        if char == "[":
            close()
            end = class_end(pattern, index)
            if end < 0:
                return ()
            index = end
            continue
        if char in "()":
            close()
            depth += 1 if char == "(" else -1
            index += 1
            continue
        if char == "{":
            close()
            end = pattern.find("}", index)
            index = end + 1 if end > 0 else len(pattern)
            continue
        if depth == 0 and char in _PCRE_PLAIN and following not in ("?", "*", "{"):
            run.append(char)
        else:
            close()
        index += 1
    close()
    return tuple(pieces)


class OSMatch:
    """An OS_Match expression: anchored or free literal alternatives, case-insensitive."""

    __slots__ = (
        "any_empty",
        "contains",
        "exact",
        "inverted",
        "negate",
        "prefixes",
        "source",
        "suffixes",
    )

    def __init__(self, source: str, negate: bool = False) -> None:
        self.source = source
        pattern = source
        self.inverted = pattern.startswith("!")
        if self.inverted:
            pattern = pattern[1:]
        self.negate = negate
        exact: list[str] = []
        prefixes: list[str] = []
        suffixes: list[str] = []
        contains: list[str] = []
        any_empty = False
        for alternative in pattern.lower().split("|"):
            begin = alternative.startswith("^")
            body = alternative[1:] if begin else alternative
            end = alternative.endswith("$") and len(alternative) > 0
            if end:
                body = body[:-1] if body.endswith("$") else body
            if begin and end:
                exact.append(body)
            elif alternative == "":
                any_empty = True
            elif end:
                suffixes.append(body)
            elif begin:
                prefixes.append(body)
            else:
                contains.append(body)
        self.exact = frozenset(exact)
        self.prefixes = tuple(prefixes)
        self.suffixes = tuple(suffixes)
        self.contains = tuple(contains)
        self.any_empty = any_empty

    def matches(self, text: str) -> bool:
        """True when the pattern is found in ``text`` (ignoring ``negate``)."""
        return self.found_in_lowered(lowered(text)) != self.inverted

    def found_in_lowered(self, low: str) -> bool:
        """Whether an alternative is found in already lower-cased text (ignores '!')."""
        if self.any_empty:
            return True
        if low in self.exact:
            return True
        if self.prefixes and low.startswith(self.prefixes):
            return True
        if self.suffixes and low.endswith(self.suffixes):
            return True
        for part in self.contains:
            if part in low:
                return True
        return False

    def extract(self, text: str) -> tuple[list[str], int] | None:
        """The captured groups and the offset just after the match, or None."""
        lowered = text.lower()
        ends = []
        if lowered in self.exact:
            ends.append(len(text))
        for prefix in self.prefixes:
            if lowered.startswith(prefix):
                ends.append(len(prefix))
        for suffix in self.suffixes:
            if lowered.endswith(suffix):
                ends.append(len(text))
        for part in self.contains:
            index = lowered.find(part)
            if index >= 0:
                ends.append(index + len(part))
        if self.any_empty:
            ends.append(0)
        if not ends:
            return None
        return [], min(ends)

    def __repr__(self) -> str:
        return f"<OSMatch {self.source!r}>"


class StringEquals:
    """Exact, case-sensitive equality (Wazuh's ``string`` type, the default for action)."""

    __slots__ = ("negate", "source")

    def __init__(self, source: str, negate: bool = False) -> None:
        self.source = source
        self.negate = negate

    def matches(self, text: str) -> bool:
        """True when the pattern is found in ``text`` (ignoring ``negate``)."""
        return text == self.source

    def extract(self, text: str) -> tuple[list[str], int] | None:
        """The captured groups and the offset just after the match, or None."""
        return ([], len(text)) if text == self.source else None

    def __repr__(self) -> str:
        return f"<StringEquals {self.source!r}>"


def translate_osregex(pattern: str) -> list[str]:
    """Translate an OS_Regex pattern into one Python pattern per ``|`` alternative."""
    return [_osregex_alternative(alternative) for alternative in split_osregex(pattern)]


def _anchors(tokens: list[str]) -> tuple[bool, bool, list[str]]:
    begin = bool(tokens) and tokens[0] == "^"
    if begin:
        tokens = tokens[1:]
    end = bool(tokens) and tokens[-1] == "$"
    if end:
        tokens = tokens[:-1]
    return begin, end, tokens


_ESCAPED_LITERALS = {
    "\\$": "$",
    "\\(": "(",
    "\\)": ")",
    "\\\\": "\\",
    "\\|": "|",
    "\\<": "<",
    "\\t": "\t",
}


def _is_literal(token: str) -> bool:
    return len(token) == 1 and token not in "()" or token in _ESCAPED_LITERALS


def _literal_text(token: str) -> str:
    return _ESCAPED_LITERALS.get(token, token[-1]).lower()


def required_literals(alternatives: list[list[str]]) -> tuple[tuple[str, ...], ...]:
    """Per alternative, the distinct runs of literal characters it needs (lower-case)."""
    found = []
    for tokens in alternatives:
        _, _, body = _anchors(tokens)
        runs: list[str] = []
        run: list[str] = []
        for index, token in enumerate(body):
            quantified = (
                index + 1 < len(body) and body[index + 1] in "+*" and token.startswith("\\")
            )
            quantifier = token in "+*" and index > 0 and body[index - 1].startswith("\\")
            if _is_literal(token) and not quantified and not quantifier:
                run.append(_literal_text(token))
            else:
                if run:
                    runs.append("".join(run))
                run = []
        if run:
            runs.append("".join(run))
        unique = sorted(set(runs), key=len, reverse=True)
        found.append(
            tuple(
                piece
                for piece in unique
                if not any(piece in other for other in unique if other != piece)
            )
        )
    return tuple(found)


def split_osregex(pattern: str) -> list[list[str]]:
    """Tokenise an OS_Regex pattern: one token list per ``|`` alternative."""
    if len(pattern) > MAX_PATTERN:
        raise ExpressionError(f"pattern longer than {MAX_PATTERN} characters")
    alternatives: list[list[str]] = [[]]
    tokens = alternatives[0]
    depth = 0
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if index + 1 >= len(pattern):
                raise ExpressionError("pattern ends with a lone backslash")
            code = pattern[index + 1]
            if code not in _OSREGEX_CLASSES:
                raise ExpressionError(f"unknown escape \\{code}")
            tokens.append("\\" + code)
            index += 2
            if index < len(pattern) and pattern[index] in "+*":
                tokens.append(pattern[index])
                index += 1
            continue
        if char == "(":
            depth += 1
            if depth > 1:
                raise ExpressionError("nested parentheses")
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ExpressionError("unbalanced parentheses")
        elif char == "|":
            if depth:
                raise ExpressionError("'|' inside parentheses")
            tokens = []
            alternatives.append(tokens)
            index += 1
            continue
        tokens.append(char)
        index += 1
    if depth:
        raise ExpressionError("unbalanced parentheses")
    return alternatives


_ASCII = frozenset(chr(code) for code in range(128))
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@-")
_DIGIT = frozenset("0123456789")
# Escape -> (ASCII characters it accepts, whether it accepts non-ASCII characters too).
_CLASS_SETS: dict[str, tuple[frozenset[str], bool]] = {
    "d": (_DIGIT, False),
    "w": (_WORD, False),
    "s": (frozenset(" "), False),
    "p": (frozenset("!\"#$%&'()*+,-.:;<=>?[]{|}"), False),
    "W": (_ASCII - _WORD, True),
    "D": (_ASCII - _DIGIT, True),
    "S": (_ASCII - {" "}, True),
    ".": (_ASCII, True),
    "t": (frozenset("\t"), False),
    "$": (frozenset("$"), False),
    "(": (frozenset("("), False),
    ")": (frozenset(")"), False),
    "\\": (frozenset("\\"), False),
    "|": (frozenset("|"), False),
    "<": (frozenset("<"), False),
}


def _token_set(token: str) -> tuple[frozenset[str], bool]:
    if token.startswith("\\"):
        return _CLASS_SETS[token[1]]
    return frozenset((token.lower(), token.upper())), not token.isascii()


def _next_is_disjoint(tokens: list[str], position: int) -> bool:
    """True when the token after a quantifier can never start with a character of its class.

    Then greedy, lazy and possessive consumption all stop at the same place, so the
    quantifier can be possessive and the regex engine never backtracks into it.
    """
    index = position + 1
    while index < len(tokens) and tokens[index] in "()" and not tokens[index].startswith("\\"):
        index += 1
    if index >= len(tokens) or tokens[index] in "+*":
        return False
    following = tokens[index]
    if index + 1 < len(tokens) and tokens[index + 1] == "*" and following.startswith("\\"):
        return False
    mine, mine_wide = _token_set(tokens[position - 1])
    theirs, theirs_wide = _token_set(following)
    return not (mine & theirs) and not (mine_wide and theirs_wide)


def _osregex_alternative(tokens: list[str], lower: bool = False) -> str:
    begin, end, tokens = _anchors(tokens)
    out = ["^" if begin else ""]
    for position, token in enumerate(tokens):
        if token in "+*" and position and tokens[position - 1].startswith("\\"):
            if _next_is_disjoint(tokens, position):
                out.append(token + "+")
                continue
            lazy = not end and not _only_optional(tokens[position + 1 :])
            out.append(token + ("?" if lazy else ""))
        elif token.startswith("\\"):
            out.append(_OSREGEX_CLASSES[token[1]])
        elif token in "()":
            out.append(token)
        else:
            out.append(re.escape(token.lower() if lower else token))
    if end:
        out.append("\\Z")
    return "".join(out)


def _only_optional(rest: list[str]) -> bool:
    """True when the remaining tokens can only match the empty string."""
    index = 0
    while index < len(rest):
        token = rest[index]
        if token in "()":
            index += 1
        elif token.startswith("\\") and index + 1 < len(rest) and rest[index + 1] == "*":
            index += 2
        else:
            return False
    return True


def translate_pcre2(pattern: str) -> str:
    """The Python ``re`` text of a PCRE2 pattern (see :mod:`.pcre2_syntax`)."""
    return _translate_pcre2(pattern).pattern


def _translate_pcre2(pattern: str) -> Translation:
    try:
        return translate(pattern)
    except PCRE2Unsupported as error:
        raise ExpressionError(f"PCRE2 construct not supported: {error}") from None
    except PCRE2SyntaxError as error:
        raise ExpressionError(f"invalid PCRE2 pattern: {error}") from None


@functools.lru_cache(maxsize=65536)
def _compile_osregex(pattern: str) -> OSRegex:
    split = split_osregex(pattern)
    try:
        normal = _compile_parts([_osregex_alternative(a) for a in split], re.IGNORECASE | re.DOTALL)
        low = _compile_parts([_osregex_alternative(a, lower=True) for a in split], re.DOTALL)
    except re.error as error:
        raise ExpressionError(f"cannot compile: {error}") from None
    return OSRegex(pattern, normal[0], normal[1], False, required_literals(split), low)


def _compile_parts(
    parts: list[str], flags: int
) -> tuple[tuple[re.Pattern[str], ...], re.Pattern[str]]:
    compiled = tuple(re.compile(part, flags) for part in parts)
    if len(compiled) == 1:
        return compiled, compiled[0]
    return compiled, re.compile("|".join(f"(?:{_drop_groups(part)})" for part in parts), flags)


@functools.lru_cache(maxsize=65536)
def _literal_osregex(pattern: str) -> tuple[tuple[bool, bool, str], ...] | None:
    """The alternatives of a pattern made of literal characters only (None otherwise)."""
    out = []
    for tokens in split_osregex(pattern):
        begin, end, body = _anchors(tokens)
        if not body or not all(_is_literal(token) for token in body):
            return None
        out.append((begin, end, "".join(_literal_text(token) for token in body)))
    return tuple(out)


def _drop_groups(part: str) -> str:
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", part)


@functools.lru_cache(maxsize=65536)
def _compile_pcre2(pattern: str) -> tuple[re.Pattern[str], re.Pattern[bytes] | None, bool]:
    translation = _translate_pcre2(pattern)
    try:
        over_text = re.compile(translation.pattern, translation.flags)
        if translation.utf or translation.latin1:
            return over_text, None, translation.latin1
        return (
            over_text,
            re.compile(translation.pattern.encode("utf-8", "surrogateescape"), re.ASCII),
            False,
        )
    except re.error as error:
        if "look-behind requires fixed-width" in str(error):
            # PCRE2 takes alternatives of different fixed lengths in a look-behind; re does not.
            raise ExpressionError(
                "PCRE2 construct not supported: a look-behind whose alternatives differ in length"
            ) from None
        raise ExpressionError(f"invalid PCRE2 pattern: {error}") from None


EXPRESSION_TYPES = ("osregex", "osmatch", "pcre2", "string")


def compile_expression(kind: str, pattern: str, negate: bool = False) -> Expression:
    """Compile ``pattern`` as an expression of ``kind`` (one of :data:`EXPRESSION_TYPES`)."""
    kind = kind.lower()
    if kind == "osregex":
        literal = _literal_osregex(pattern)
        if literal is not None:
            return LiteralRegex(pattern, literal, negate)
        cached = _compile_osregex(pattern)
        return OSRegex(
            pattern,
            cached.alternatives,
            cached.combined,
            negate,
            cached.required,
            (cached.low_alternatives, cached.low_combined),
        )
    if kind == "pcre2":
        regex, over_bytes, latin1 = _compile_pcre2(pattern)
        return PCRE2(pattern, (regex,), regex, negate, pcre2_required(pattern), over_bytes, latin1)
    if kind == "osmatch":
        if len(pattern) > MAX_PATTERN:
            raise ExpressionError(f"pattern longer than {MAX_PATTERN} characters")
        return OSMatch(pattern, negate)
    if kind == "string":
        return StringEquals(pattern, negate)
    raise ExpressionError(f"unknown expression type {kind!r}")


def test(expression: Expression, text: str | None) -> bool:
    """Evaluate ``expression`` against ``text`` honouring ``negate``; a missing text fails."""
    if text is None:
        return False
    return expression.matches(text) != expression.negate

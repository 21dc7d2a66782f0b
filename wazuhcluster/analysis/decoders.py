"""Decoders and the decoding walk (Wazuh's DecodeEvent semantics).

Root decoders live in two ordered lists: those with a ``program_name`` (tried when
pre-decoding found a program name) and those without (tried otherwise). The first root that
matches wins; then the first child whose prematch matches (or the first child without a
prematch) is chosen, and its regex, plus the regexes of the same-named siblings that follow
it, extract the fields. A child is reported under its parent's name unless ``use_own_name``.

To keep a line to a handful of pattern tests, roots are pre-filtered: the candidates for a
program name are cached, and roots without one are indexed by the first character their
anchored prematch can accept.

Wazuh keeps one buffer of captured groups per event: a PCRE2 program name, prematch or regex
fills it when one of its groups took part in the match, any OS_Regex evaluation empties it,
and a regex's ``<order>`` takes what it holds and leaves it empty. So a PCRE2 regex without
groups (or whose groups all stayed out) fills its order with the captures of the PCRE2
program name or prematch before it; :func:`_decode_with` carries that buffer (``held``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from wazuhcluster.analysis.eventinfo import ORDER_STATIC, DecodedBy, EventInfo
from wazuhcluster.analysis.expressions import (
    PCRE2,
    Expression,
    LiteralRegex,
    OSRegex,
    split_osregex,
)

AFTER_PARENT = "after_parent"
AFTER_PREMATCH = "after_prematch"
AFTER_REGEX = "after_regex"

Plugin = Callable[[DecodedBy, EventInfo], None]

# What evaluating a program name or prematch does to the event's captured groups.
KEEPS = 0  # OS_Match, or PCRE2 without groups: the buffer is left as it is
EMPTIES = 1  # OS_Regex: emptied, matched or not (a prematch OS_Regex captures nothing)
FILLS = 2  # PCRE2 with groups: replaced when one of them took part in a match
#: The empty buffer (shared, never changed: the walk only rebinds its ``held``).
_EMPTY: list[str] = []

# Decoders analysisd builds in (FIM, rootcheck, inventory...); rules may name them.
INTERNAL_DECODERS = frozenset(
    {
        "rootcheck",
        "hostinfo_new",
        "hostinfo_modified",
        "syscheck_integrity_changed",
        "syscheck_new_entry",
        "syscheck_deleted",
        "syscheck_registry_key_modified",
        "syscheck_registry_key_added",
        "syscheck_registry_key_deleted",
        "syscheck_registry_value_modified",
        "syscheck_registry_value_added",
        "syscheck_registry_value_deleted",
        "syscollector",
        "ciscat",
        "windows_eventchannel",
        "sca",
    }
)


@attrs.define(eq=False)
class Decoder:
    """One ``<decoder>`` element, compiled."""

    name: str
    source: str = ""
    line: int = 0
    parent: str | None = None
    program_name: Expression | None = None
    prematch: Expression | None = None
    prematch_offset: str | None = None
    regex: Expression | None = None
    regex_offset: str | None = None
    order: tuple[str, ...] = ()
    plugin: Plugin | None = None
    plugin_offset: str | None = None
    type: str = "syslog"
    use_own_name: bool = False
    accumulate: bool = False
    json_null: str = "string"
    json_array: str = "array"
    get_next: bool = False
    fts: tuple[str, ...] = ()
    children: list[Decoder] = attrs.field(factory=list)
    reported_name: str = ""
    reported_parent: str | None = None

    prematch_keys: tuple[str, ...] = ()
    prematch_pieces: tuple[tuple[str, ...], ...] = ()
    prematch_exact: tuple[str, ...] = ()
    regex_keys: tuple[str, ...] = ()
    program_name_effect: int = KEEPS
    prematch_effect: int = KEEPS
    regex_empties: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.reported_name:
            self.reported_name = self.name

    def index(self) -> None:
        """Remember the literal pieces the prematch and regex need (after compiling them)."""
        self.prematch_keys = _keys(self.prematch)
        if isinstance(self.prematch, OSRegex) and self.prematch.filtered:
            self.prematch_pieces = self.prematch.required
        elif isinstance(self.prematch, LiteralRegex):
            self.prematch_pieces = tuple((literal,) for _, _, literal in self.prematch.alternatives)
        elif isinstance(self.prematch, PCRE2) and self.prematch.required:
            self.prematch_exact = self.prematch.required
        self.regex_keys = _keys(self.regex)
        self.program_name_effect = _effect(self.program_name)
        self.prematch_effect = _effect(self.prematch)
        self.regex_empties = isinstance(self.regex, (OSRegex, LiteralRegex))


def _effect(expression: Expression | None) -> int:
    """What matching ``expression`` does to the captures buffer (KEEPS, EMPTIES, FILLS)."""
    if isinstance(expression, (OSRegex, LiteralRegex)):
        return EMPTIES
    if isinstance(expression, PCRE2) and expression.combined.groups:
        return FILLS
    return KEEPS


def _held_after(effect: int, found: tuple[list[str], int] | None, held: list[str]) -> list[str]:
    """The captures buffer after an expression with ``effect`` gave ``found``."""
    if effect == EMPTIES:
        return _EMPTY
    if effect == FILLS and found is not None and found[0]:
        return found[0]
    return held


_CLASS_CHARS = {
    "d": "0123456789",
    "w": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_@-",
    "s": " ",
    "t": "\t",
    "p": "!\"#$%&'()*+,-.:;<=>?[]{|}",
}


def _first_chars(expression: Expression | None) -> frozenset[str] | None:
    """Characters an anchored OS_Regex prematch can start with (None: anything)."""
    if isinstance(expression, LiteralRegex):
        chars: set[str] = set()
        for begin, _, literal in expression.alternatives:
            if not begin or not literal:
                return None
            chars.update((literal[0], literal[0].upper()))
        return frozenset(chars)
    if not isinstance(expression, OSRegex):
        return None
    chars = set()
    for tokens in split_osregex(expression.source):
        if len(tokens) < 2 or tokens[0] != "^":
            return None
        first = tokens[1]
        if len(tokens) > 2 and tokens[2] == "*":
            return None
        if len(first) == 1 and first not in "()":
            chars.update((first.lower(), first.upper()))
        elif first.startswith("\\") and first[1] in _CLASS_CHARS:
            chars.update(_CLASS_CHARS[first[1]])
        elif first.startswith("\\") and first[1] in "$()\\|<":
            chars.add(first[1])
        else:
            return None
    return frozenset(chars)


class DecoderSet:
    """All loaded decoders, ready to decode events."""

    def __init__(self, with_program: list[Decoder], without_program: list[Decoder]) -> None:
        self.with_program = with_program
        self.without_program = without_program
        self.names: set[str] = set(INTERNAL_DECODERS)
        for root in with_program + without_program:
            self.names.add(root.name)
            for child in root.children:
                self.names.add(child.reported_name)
        self._by_program: dict[str, tuple[Decoder, ...]] = {}
        self._starts: dict[str, set[int]] = {}
        self._any_start: set[int] = set()
        for position, root in enumerate(without_program):
            chars = _first_chars(root.prematch)
            if chars is None:
                self._any_start.add(position)
            for char in chars or ():
                self._starts.setdefault(char, set()).add(position)
        self._by_start: dict[str, tuple[Decoder, ...]] = {}
        # Only a PCRE2 program name with groups can leave captures to a later root.
        self._program_captures = any(d.program_name_effect == FILLS for d in with_program)

    def __len__(self) -> int:
        return len(self.with_program) + len(self.without_program)

    def _roots_for_program(self, program: str) -> tuple[Decoder, ...]:
        found = self._by_program.get(program)
        if found is None:
            found = tuple(
                d
                for d in self.with_program
                if d.program_name is not None and d.program_name.matches(program)
            )
            if len(self._by_program) > 8192:
                self._by_program.clear()
            self._by_program[program] = found
        return found

    def _roots_for_start(self, log: str) -> tuple[Decoder, ...]:
        char = log[:1]
        found = self._by_start.get(char)
        if found is None:
            positions = self._starts.get(char, set()) | self._any_start
            found = tuple(d for i, d in enumerate(self.without_program) if i in positions)
            if len(self._by_start) > 4096:
                self._by_start.clear()
            self._by_start[char] = found
        return found

    def decode(self, event: EventInfo) -> None:
        """Find the decoder for ``event`` and extract its fields (sets ``event.decoder``)."""
        if event.program_name is not None:
            roots = self._roots_for_program(event.program_name)
        else:
            roots = self._roots_for_start(event.log)
        low = event.log_lower
        for root in roots:
            # Skip a root unless one prematch alternative has all its literal pieces here.
            if root.prematch_pieces and not _viable(root.prematch_pieces, low):
                continue
            if root.prematch_exact and not _viable((root.prematch_exact,), event.log):
                continue
            held = _EMPTY
            if self._program_captures and event.program_name is not None:
                held = self._held_before(root, event.program_name)
            if _decode_with(root, event, held):
                return

    def _held_before(self, chosen: Decoder, program: str) -> list[str]:
        """The captures the roots Wazuh tries before ``chosen`` leave (each program name
        is matched, and when it matches, the prematch, which failed or ``chosen`` would not
        be tried)."""
        held = _EMPTY
        for root in self.with_program:
            if root is chosen:
                break
            expression = root.program_name
            if expression is None:
                continue
            found = expression.extract(program)
            held = _held_after(root.program_name_effect, found, held)
            if found is not None and root.prematch_effect == EMPTIES:
                held = _EMPTY
        return held


def _viable(pieces: tuple[tuple[str, ...], ...], low: str) -> bool:
    """True when some alternative finds every one of its literal pieces in ``low``."""
    for needed in pieces:
        for piece in needed:
            if piece not in low:
                break
        else:
            return True
    return False


def _absent(keys: tuple[str, ...], low: str) -> bool:
    """True when none of an OS_Regex's key pieces occurs in the (lower-cased) text."""
    if not keys:
        return False
    for key in keys:
        if key in low:
            return False
    return True


def _keys(expression: Expression | None) -> tuple[str, ...]:
    return expression.keys if isinstance(expression, OSRegex) else ()


def _decode_with(root: Decoder, event: EventInfo, held: list[str]) -> bool:
    log = event.log
    after_parent = 0
    if root.program_name_effect and event.program_name is not None:
        assert root.program_name is not None
        if root.program_name_effect == FILLS:
            held = _held_after(FILLS, root.program_name.extract(event.program_name), held)
        else:
            held = _EMPTY
    if root.prematch is not None:
        if _absent(root.prematch_keys, event.log_lower):
            return False
        found = root.prematch.extract(log)
        if found is None:
            return False
        after_parent = found[1]
        if root.prematch_effect:
            held = _held_after(root.prematch_effect, found, held)
    event.decoder = root
    event.log_after_prematch = log[after_parent:]
    event.log_after_parent = log[after_parent:]
    chosen = root
    after_prematch = after_parent
    siblings: list[Decoder] = [root]
    index = 0
    if root.children:
        children = root.children
        chosen_index = -1
        # One slice object for every child: expressions remember its lower-cased copy.
        after_parent_text = event.log_after_parent
        low = event.log_lower
        while index < len(children):
            child = children[index]
            if child.prematch is None:
                chosen_index = index
                break
            if child.prematch_pieces and not _viable(child.prematch_pieces, low):
                found = None
            elif child.prematch_offset == AFTER_PARENT:
                found = child.prematch.extract(after_parent_text)
            else:
                found = child.prematch.extract(log)
            base = after_parent if child.prematch_offset == AFTER_PARENT else 0
            effect = child.prematch_effect
            if effect == EMPTIES:
                held = _EMPTY
            elif effect == FILLS and found is not None and found[0]:
                held = found[0]
            if found is not None:
                after_prematch = base + found[1]
                event.decoder = child
                event.log_after_prematch = log[after_prematch:]
                chosen_index = index
                break
            if child.get_next:
                while index < len(children) and children[index].get_next:
                    index += 1
            index += 1
        if chosen_index < 0:
            return True
        chosen = children[chosen_index]
        siblings = children[chosen_index:]
    _run_regexes(siblings, chosen, event, log, after_parent, after_prematch, held)
    return True


def _run_regexes(
    siblings: list[Decoder],
    chosen: Decoder,
    event: EventInfo,
    log: str,
    after_parent: int,
    after_prematch: int,
    held: list[str],
) -> None:
    """Run the chosen decoder's regex, then those of the same-named siblings after it
    (``held``: the captures the program name and prematches left)."""
    previous_end: int | None = None
    slices: dict[int, str] = {0: log}
    low = event.log_lower
    last = len(siblings) - 1
    position = 0
    decoder = chosen
    while True:
        regex = decoder.regex
        if decoder.plugin is not None:
            decoder.plugin(event.decoder or decoder, event)
        elif regex is not None:
            offset = decoder.regex_offset
            if offset is None:
                start = 0
            elif offset == AFTER_PARENT:
                start = after_parent
            elif offset == AFTER_PREMATCH:
                start = after_prematch
            else:
                start = after_prematch if previous_end is None else previous_end
            found = None
            # A piece missing from the whole log is missing from any part of it.
            possible = True
            keys = decoder.regex_keys
            if keys:
                possible = False
                for key in keys:
                    if key in low:
                        possible = True
                        break
            if possible:
                text = slices.get(start)
                if text is None:
                    text = slices[start] = log[start:]
                found = regex.extract(text)
            if found is None:
                if decoder.regex_empties:
                    held = _EMPTY
                if decoder.get_next and position < last:
                    position += 1
                    decoder = siblings[position]
                    continue
                return
            groups, end = found
            if held:
                # An OS_Regex starts by emptying the buffer; a PCRE2 regex whose groups
                # did not take part leaves it to its order.
                if not groups and not decoder.regex_empties:
                    groups = held
                held = _EMPTY
            previous_end = start + end
            for name, value in zip(decoder.order, groups, strict=False):
                static = ORDER_STATIC.get(name)
                if static is not None:
                    event.static[static] = value
                else:
                    event.add_field(name, value)
        else:
            return
        if decoder.get_next and position < last:
            position += 1
            decoder = siblings[position]
        else:
            return


# ---- JSON_Decoder plugin -------------------------------------------------------------------

_JSON_STATIC = {
    "srcip": "srcip",
    "dstip": "dstip",
    "dstport": "dstport",
    "srcport": "srcport",
    "protocol": "protocol",
    "action": "action",
    "srcuser": "srcuser",
    "dstuser": "dstuser",
    "id": "id",
    "status": "status",
    "url": "url",
    "data": "data",
    "extra_data": "extra_data",
    "systemname": "system_name",
}
_JSON_DECODER = json.JSONDecoder()
MAX_JSON_DEPTH = 64


def _json_scalar(value: Any) -> str | None:
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value) if -(2**31) <= value < 2**31 else f"{float(value):f}"
    if isinstance(value, float):
        if value.is_integer() and -(2**31) <= value < 2**31:
            return str(int(value))
        return f"{value:f}"
    return str(value)


def _json_fill(event: EventInfo, key: str, value: str) -> None:
    static = _JSON_STATIC.get(key)
    if static is not None:
        event.static[static] = value
        return
    if key == "user" and not event.static.get("dstuser"):
        event.static["dstuser"] = value
        return
    event.add_field(key, value)


def _json_walk(
    decoder: DecodedBy, event: EventInfo, obj: dict[str, Any], parent: str | None, depth: int
) -> None:
    if depth > MAX_JSON_DEPTH:
        return
    for name, value in obj.items():
        key = f"{parent}.{name}" if parent else name
        kind = type(value)
        if kind is str:
            # The common case, inlined: a string value.
            if key in _JSON_STATIC or key == "user":
                _json_fill(event, key, value)
            else:
                event.add_field(key, value)
        elif kind is dict:
            _json_walk(decoder, event, value, key, depth + 1)
        elif kind is list:
            if decoder.json_array == "csv":
                text = ",".join(
                    s
                    for s in (
                        _json_scalar(v) if not isinstance(v, (dict, list)) else None for v in value
                    )
                    if s is not None
                )
            else:
                text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
            if text:
                _json_fill(event, key, text)
        elif value is None:
            if decoder.json_null == "string":
                _json_fill(event, key, "null")
        else:
            scalar = _json_scalar(value)
            if scalar is not None:
                _json_fill(event, key, scalar)


def json_plugin(decoder: DecodedBy, event: EventInfo) -> None:
    """Wazuh's JSON_Decoder: flatten a JSON object into fields (``a.b.c`` keys)."""
    if decoder.plugin_offset == AFTER_PARENT:
        text = event.log_after_parent
    elif decoder.plugin_offset == AFTER_PREMATCH:
        text = event.log_after_prematch
    else:
        text = event.log
    stripped = text.lstrip()
    try:
        value, _ = _JSON_DECODER.raw_decode(stripped)
    except (ValueError, RecursionError):
        return
    if isinstance(value, dict):
        _json_walk(decoder, event, value, None, 0)


def json_fields(decoder: DecodedBy, event: EventInfo, obj: dict[str, Any]) -> None:
    """Flatten ``obj`` into ``event``'s fields as the JSON plugin does (for the queue
    decoders that build the JSON themselves)."""
    _json_walk(decoder, event, obj, None, 0)


def _not_implemented(decoder: DecodedBy, event: EventInfo) -> None:
    """Wazuh's other built-in plugins (PF, SonicWall, SymantecWS, OSSECAlert) are not
    reproduced: an event they would decode keeps only its decoder name."""


PLUGINS: dict[str, Plugin] = {
    "JSON_Decoder": json_plugin,
    "PF_Decoder": _not_implemented,
    "SonicWall_Decoder": _not_implemented,
    "SymantecWS_Decoder": _not_implemented,
    "OSSECAlert_Decoder": _not_implemented,
}

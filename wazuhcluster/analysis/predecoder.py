"""Pre-decoding: split a syslog-style header (timestamp, hostname, program name) off a log line.

The header formats recognised are those of Wazuh's analysisd (positions of fixed characters,
not a grammar): classic syslog ``Dec 29 10:00:01``, ``2015 Dec 29 10:00:01``, ISO 8601 with
or without fractions and zone (syslog-ng, rsyslog), ``2015-04-16 21:51:02,805`` (proftpd),
``2021-04-21 10:16:09.404756-0700`` (macOS), then xferlog, snort, suricata, apache error log,
macOS ASL and squid stamps. After a syslog stamp come the hostname and the program name in the
forms ``name:``, ``name[pid]:``, ``name[pid]`` and AIX's ``host|facility:level name:``; an
optional ``[ID n facility.level]`` tag is dropped.
"""

from __future__ import annotations

import attrs

_HOST_CHARS = frozenset("()-./0123456789@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


@attrs.frozen
class PreDecoded:
    """What pre-decoding found: the remaining ``log`` and the header fields (None if absent)."""

    full_log: str
    log: str
    timestamp: str | None = None
    hostname: str | None = None
    program_name: str | None = None


def _is_digit(text: str, index: int) -> bool:
    return index < len(text) and "0" <= text[index] <= "9"


def _at(text: str, index: int) -> str:
    return text[index] if index < len(text) else ""


def _span_valid(text: str, start: int) -> int:
    index = start
    while index < len(text) and text[index] in _HOST_CHARS:
        index += 1
    return index


def _syslog_stamp_length(p: str) -> int:
    """Return how many characters the syslog-family stamp takes (0 when there is none)."""
    size = len(p) + 1
    if (
        size > 17
        and _at(p, 3) == " "
        and _at(p, 6) == " "
        and _at(p, 9) == ":"
        and _at(p, 12) == ":"
        and _at(p, 15) == " "
    ):
        return 16
    if (
        size > 24
        and _at(p, 4) == "-"
        and _at(p, 7) == "-"
        and _at(p, 10) == " "
        and _at(p, 13) == ":"
        and _at(p, 16) == ":"
        and _at(p, 19) == ","
    ):
        return 24
    if (
        size > 33
        and _at(p, 4) == "-"
        and _at(p, 7) == "-"
        and _at(p, 10) == "T"
        and _at(p, 13) == ":"
        and _at(p, 16) == ":"
    ):
        if _at(p, 22) == ":" and _at(p, 25) == " ":
            return 26
        if _at(p, 19) == ".":
            if _at(p, 26) == ":":
                return 30
            if _at(p, 29) == ":":
                return 33
            return 32
    if (
        size > 21
        and _is_digit(p, 0)
        and _at(p, 4) == " "
        and _at(p, 8) == " "
        and _at(p, 11) == " "
        and _at(p, 14) == ":"
        and _at(p, 17) == ":"
        and _at(p, 20) == " "
    ):
        return 21
    if (
        size > 33
        and _is_digit(p, 0)
        and _at(p, 4) == "-"
        and _at(p, 7) == "-"
        and _at(p, 10) == " "
        and _at(p, 13) == ":"
        and _at(p, 16) == ":"
        and _at(p, 19) == "."
        and _at(p, 26) in ("-", "+")
        and _at(p, 31) == " "
    ):
        return 32
    return 0


def predecode(message: str) -> PreDecoded:
    """Pre-decode one log line."""
    text = message
    if len(text) >= 3 and text.startswith("M\u00e4r"):
        text = "Mar" + text[3:]
    stamp = _syslog_stamp_length(text)
    if stamp:
        return _syslog(message, text, stamp)
    return _other_formats(message, text)


def _syslog(full_log: str, p: str, stamp: int) -> PreDecoded:
    timestamp = p[: stamp - 1]
    start = stamp
    if _at(p, start) == " ":
        start += 1
    end = _span_valid(p, start)
    if _at(p, end) == ":" and _at(p, end + 1) == " ":
        return _drop_id_tag(full_log, p, end + 2, timestamp, None, p[start:end])
    if _at(p, end) != " ":
        return PreDecoded(full_log, p[start:], timestamp)
    hostname = p[start:end]
    start = end + 1
    end = _span_valid(p, start)
    program: str | None = p[start:end]
    rest: int | None
    char = _at(p, end)
    if char == ":":
        rest = end + 1
        if _at(p, rest) == " ":
            rest += 1
    elif char == "[" and _is_digit(p, end + 1):
        index = end + 2
        while _is_digit(p, index):
            index += 1
        if _at(p, index) == "]" and _at(p, index + 1) == ":":
            rest = index + 2
            if _at(p, rest) == " ":
                rest += 1
        elif _at(p, index) == "]" and _at(p, index + 1) == " ":
            rest = index + 2
        else:
            rest, program = None, None
    elif char == "|" and _at(p, end + 1).islower():
        rest, program = _aix(p, end + 2)
    else:
        rest, program = None, None
    if rest is None:
        return PreDecoded(full_log, p[start:], timestamp, hostname)
    return _drop_id_tag(full_log, p, rest, timestamp, hostname, program)


def _aix(p: str, index: int) -> tuple[int | None, str | None]:
    while _at(p, index).isalnum():
        index += 1
    if _at(p, index) != ":":
        return None, None
    index += 1
    while _at(p, index).isalnum():
        index += 1
    if _at(p, index) != " ":
        return None, None
    start = index + 1
    end = _span_valid(p, start)
    program = p[start:end]
    if _at(p, end) == ":" and _at(p, end + 1) == " ":
        return end + 2, program
    if _at(p, end) == "[" and _is_digit(p, end + 1):
        index = end + 2
        while _is_digit(p, index):
            index += 1
        if p[index : index + 3] == "]: ":
            return index + 3, program
        return None, program
    return end, program


def _drop_id_tag(
    full_log: str, p: str, rest: int, timestamp: str, hostname: str | None, program: str | None
) -> PreDecoded:
    log = p[rest:]
    if log.startswith("[ID "):
        close = log.find("]", 4)
        if close >= 0:
            log = log[close + 2 :]
    return PreDecoded(full_log, log, timestamp, hostname, program)


def _other_formats(full_log: str, p: str) -> PreDecoded:
    size = len(p) + 1
    if (
        size > 28
        and _at(p, 3) == " "
        and _at(p, 7) == " "
        and _at(p, 10) == " "
        and _at(p, 13) == ":"
        and _at(p, 16) == ":"
        and _at(p, 19) == " "
        and _at(p, 24) == " "
        and _at(p, 26) == " "
    ):
        return PreDecoded(full_log, p[25:], p[:24])
    if (
        size > 24
        and _at(p, 2) == "/"
        and _at(p, 5) == "-"
        and _at(p, 8) == ":"
        and _at(p, 11) == ":"
        and _at(p, 14) == "."
        and _at(p, 21) == " "
    ):
        return PreDecoded(full_log, p[23:], p[:21])
    if (
        size > 28
        and _at(p, 2) == "/"
        and _at(p, 5) == "/"
        and _at(p, 10) == "-"
        and _at(p, 13) == ":"
        and _at(p, 16) == ":"
        and _at(p, 19) == "."
        and _at(p, 26) == " "
    ):
        return PreDecoded(full_log, p[28:], p[:26])
    if (
        size > 27
        and _at(p, 0) == "["
        and _at(p, 4) == " "
        and _at(p, 8) == " "
        and _at(p, 11) == " "
        and _at(p, 14) == ":"
        and _at(p, 17) == ":"
        and _at(p, 20) == " "
        and _at(p, 25) == "]"
    ):
        return PreDecoded(full_log, p[27:], p[1:25])
    if (
        size > 26
        and p.startswith("[T")
        and _at(p, 5) == " "
        and _at(p, 10) == "."
        and _at(p, 13) == "."
        and _at(p, 16) == " "
        and _at(p, 19) == ":"
    ):
        return _asl(full_log, p)
    if (
        size > 32
        and p[0] == "1"
        and _is_digit(p, 1)
        and _is_digit(p, 2)
        and _is_digit(p, 3)
        and _at(p, 10) == "."
        and _is_digit(p, 13)
        and _at(p, 14) == " "
        and (_at(p, 21) == " " or _at(p, 22) == " ")
    ):
        index = 14
        while _at(p, index) == " ":
            index += 1
        return PreDecoded(full_log, p[index:], p[: index - 1].rstrip())
    return PreDecoded(full_log, p)


def _asl(full_log: str, p: str) -> PreDecoded:
    log = p[25:]
    program: str | None = None
    hostname: str | None = None
    message_done = False
    position = log.find("[")
    source = log
    while position >= 0:
        position += 1
        if source.startswith("Sender ", position) and program is None:
            close = source.find("]", position + 7)
            if close < 0:
                break
            program = source[position + 7 : close]
            position = close + 1
        elif source.startswith("Message ", position) and not message_done:
            message_done = True
            close = source.find("]", position + 8)
            if close < 0:
                log = source[position + 8 :]
                break
            log = source[position + 8 : close]
            position = close + 1
        elif source.startswith("Host ", position):
            close = source.find("]", position + 5)
            if close >= 0:
                hostname = source[position + 5 : close]
            break
        position = source.find("[", position)
    return PreDecoded(full_log, log, None, hostname, program)

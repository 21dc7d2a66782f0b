"""One alerts.json (or archives.json) line: a record rendered as compact JSON, UTF-8 as is.

Rendering the alerts took 8 % of an analysis process's time with the standard library's
encoder (9-10 µs for a 1 KB alert); :mod:`orjson` writes the same bytes in about 1.3 µs
(``bench/bench_alert_json.py``). On
what the engine builds (strings, integers, booleans, None, lists and dicts with string keys,
in insertion order) the two agree byte for byte; they differ only in how some floats are
spelt (``1e16`` against ``1e+16``, both valid JSON) and on NaN (orjson writes ``null``, where
:mod:`json` writes ``NaN``, which is not JSON). A record orjson refuses (an integer beyond 64
bits, a key that is not a string, a lone surrogate) is rendered by :mod:`json` instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

#: The fallback's encoders (``json.dumps`` with options builds one per call).
_UTF8 = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ASCII = json.JSONEncoder(separators=(",", ":"))


def json_line(record: Mapping[str, Any]) -> bytes:
    """``record`` as one compact UTF-8 JSON line, without its newline."""
    try:
        return orjson.dumps(record)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        pass
    text = _UTF8.encode(record)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: \u escapes keep the line valid
        return _ASCII.encode(record).encode("ascii")

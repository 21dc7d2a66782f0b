"""AMP argument types shared by the cluster link and the control socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import fail
from twisted.protocols import amp


class Json(amp.Argument):
    """A JSON document in one AMP value (at most 64 KiB once encoded; larger data uses streams)."""

    def toString(self, inObject: Any) -> bytes:  # noqa: N802 - Twisted's name
        """Encode ``inObject`` as compact UTF-8 JSON."""
        return json.dumps(inObject, separators=(",", ":"), sort_keys=True).encode("utf-8")

    def fromString(self, inString: bytes) -> Any:  # noqa: N802 - Twisted's name
        """Decode a JSON value; malformed input raises ValueError, which AMP reports."""
        return json.loads(inString.decode("utf-8"))


#: The error code of a command whose arguments could not be parsed.
BAD_ARGUMENTS = b"BAD_ARGUMENTS"


def refuse_bad_arguments(
    responder: Callable[[amp.AmpBox], Any], on_bad: Callable[[Exception], None]
) -> Callable[[amp.AmpBox], Any]:
    """Wrap a located responder so that arguments AMP cannot parse (bad JSON, a non-UTF-8
    text, a non-number integer, a missing argument) get a declared ``BAD_ARGUMENTS`` error.

    Twisted parses the box before it calls the responder, synchronously, and reports a
    parse failure as an unknown error with a traceback and closes the connection;
    ``on_bad`` gets the exception instead (to log one line) and the connection stays usable.
    Failures of the responder itself are untouched: they come back in its Deferred.
    """

    def guarded(box: amp.AmpBox) -> Any:
        try:
            return responder(box)
        except Exception as error:
            on_bad(error)
            return fail(amp.RemoteAmpError(BAD_ARGUMENTS, f"bad arguments: {describe(error)}"))

    return guarded


def describe(error: Exception) -> str:
    """A short, one-line account of a parse error (its type and first 120 characters)."""
    text = " ".join(str(error).split())[:120]
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind

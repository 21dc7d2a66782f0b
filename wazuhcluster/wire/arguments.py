"""AMP argument types shared by the cluster link and the control socket."""

from __future__ import annotations

import json
from typing import Any

from twisted.protocols import amp


class Json(amp.Argument):
    """A JSON document in one AMP value (at most 64 KiB once encoded; larger data uses streams)."""

    def toString(self, inObject: Any) -> bytes:  # noqa: N802 - Twisted's name
        """Encode ``inObject`` as compact UTF-8 JSON."""
        return json.dumps(inObject, separators=(",", ":"), sort_keys=True).encode("utf-8")

    def fromString(self, inString: bytes) -> Any:  # noqa: N802 - Twisted's name
        """Decode a JSON value; malformed input raises ValueError, which AMP reports."""
        return json.loads(inString.decode("utf-8"))

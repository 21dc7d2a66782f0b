"""The command that asks a node about an agent's stored data (master → worker).

Like Wazuh's distributed API: the master sends the node an agent reports to one request of
:mod:`wazuhcluster.api.agent_data` and gets one page back. The answer is JSON split over as
many AMP values as it needs (:class:`Pieces`), at most :data:`MAX_ANSWER_BYTES` in all: a
node answers a bigger page with an error rather than an unbounded message.
:class:`ForgetAgentData` tells a node that agents it analysed report elsewhere now;
:class:`SendAgentCommand` has it send a command to agents connected there (a scan now).
"""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp

from wazuhcluster.wire.arguments import Json
from wazuhcluster.wire.commands import NotAuthenticated

#: Bytes per AMP value (the protocol's limit is 65,535).
PIECE_BYTES = 60_000
#: Largest answer (about 16 MiB).
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class Pieces(amp.Argument):
    """Bytes of any size up to :data:`MAX_ANSWER_BYTES`: ``name`` holds the number of
    pieces, ``name.<i>`` each piece."""

    def toBox(  # noqa: N802 - Twisted's name
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        """Split the value into pieces."""
        value: bytes = objects[name.decode("ascii")]
        if len(value) > MAX_ANSWER_BYTES:
            raise ValueError(f"an answer of {len(value)} bytes is too big")
        pieces = [value[at : at + PIECE_BYTES] for at in range(0, len(value), PIECE_BYTES)]
        strings[name] = str(len(pieces)).encode("ascii")
        for index, piece in enumerate(pieces):
            strings[name + b"." + str(index).encode("ascii")] = piece

    def fromBox(  # noqa: N802 - Twisted's name
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        """Join the pieces (a bad count raises, which AMP reports)."""
        count = int(strings[name])
        if not 0 <= count <= MAX_ANSWER_BYTES // PIECE_BYTES + 1:
            raise ValueError(f"bad piece count {count}")
        objects[name.decode("ascii")] = b"".join(
            strings[name + b"." + str(index).encode("ascii")] for index in range(count)
        )


class GetAgentData(amp.Command):
    """Master → worker: answer ``request`` (an :mod:`wazuhcluster.api.agent_data` request)
    from the worker's agent databases; ``answer`` is its JSON."""

    arguments = [(b"request", Json())]
    response = [(b"answer", Pieces())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class ForgetAgentData(amp.Command):
    """Master → worker: these agents report to another node now; empty their state here,
    so that it is never served stale should they come back before resynchronising."""

    arguments = [(b"agents", Json())]
    response = [(b"forgotten", amp.Integer())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


#: The commands the manager may send an agent through :class:`SendAgentCommand`
#: (``#!-syscheck restart``: run a FIM and rootcheck scan now, as Wazuh's API asks).
AGENT_COMMANDS = frozenset(("syscheck restart",))
#: Most agents named in one :class:`SendAgentCommand`.
MAX_COMMAND_AGENTS = 100_000


class SendAgentCommand(amp.Command):
    """Master → worker: send ``#!-<instruction>`` (one of :data:`AGENT_COMMANDS`) to these
    agents if they are connected there; ``sent`` lists the ids it reached."""

    arguments = [(b"agents", Json()), (b"instruction", amp.Unicode())]
    response = [(b"sent", Json())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}

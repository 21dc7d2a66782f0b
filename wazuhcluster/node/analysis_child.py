"""One analysis process of the pool: the engine behind AMP on file descriptors 3 and 4.

The parent (:mod:`wazuhcluster.node.analysis_pool`) starts ``python -m
wazuhcluster.node.analysis_child`` with the AMP stream on fds 3 (in) and 4 (out), so stray
output on stdout and stderr never corrupts it and ends up in the parent's log. The child
runs no reactor: it reads its input, hands it to the AMP protocol and answers each command
before reading the next, so the answers come back in the order of the calls.

Commands, all from the parent: :class:`Hello` (where the ruleset is), :class:`Prepare` (load
the ruleset from disk into a pending engine), :class:`Commit` or :class:`Abort` (swap the
pending engine in, or forget it: the parent commits only once every process prepared, so a
reload reaches every process at the same point of the event stream), and :class:`Analyse`
(one batch of events in, their alerts out as ready-made alerts.json lines).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import attrs
from twisted.internet.protocol import FileWrapper
from twisted.protocols import amp

from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.wire.arguments import Json

#: The child's AMP input and output (fds 0-2 stay stdin, stdout and stderr).
CHILD_IN = 3
CHILD_OUT = 4
#: Bytes per AMP value (the protocol's limit is 65,535).
VALUE_LIMIT = 65_000
#: The most values one :class:`BigBytes` may span (about 64 MiB).
MAX_PIECES = 1024
#: The names of the event's fields, in the order a batch carries them.
EVENT_FIELDS = tuple(field.name for field in attrs.fields(Event))
#: Error messages returned per batch (the rest are only counted).
MAX_ERRORS = 5


class BigBytes(amp.Argument):
    """Bytes of any size (up to :data:`MAX_PIECES` values): the value under ``name`` is
    the number of pieces, each piece under ``name.<i>`` (each AMP value stays < 64 KiB)."""

    def toBox(  # noqa: N802 - Twisted's name
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        """Split ``objects[name]`` into pieces of at most :data:`VALUE_LIMIT` bytes."""
        value: bytes = objects[name.decode("ascii")]
        pieces = [value[at : at + VALUE_LIMIT] for at in range(0, len(value), VALUE_LIMIT)]
        if len(pieces) > MAX_PIECES:
            raise ValueError(f"{len(value)} bytes do not fit in one call")
        strings[name] = str(len(pieces)).encode("ascii")
        for index, piece in enumerate(pieces):
            strings[name + b"." + str(index).encode("ascii")] = piece

    def fromBox(  # noqa: N802 - Twisted's name
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        """Join the pieces back (a bad count raises, which AMP reports)."""
        count = int(strings[name])
        if not 0 <= count <= MAX_PIECES:
            raise ValueError(f"bad piece count {count}")
        objects[name.decode("ascii")] = b"".join(
            strings[name + b"." + str(index).encode("ascii")] for index in range(count)
        )


class Hello(amp.Command):
    """Where this process's ruleset is and who writes its alerts; ``lane`` of ``lanes``."""

    arguments = [
        (b"home", amp.Unicode()),
        (b"settings", Json()),
        (b"identity", Json()),
        (b"lane", amp.Integer()),
        (b"lanes", amp.Integer()),
    ]
    response = [(b"pid", amp.Integer())]


class Prepare(amp.Command):
    """Load the ruleset from disk into a pending engine (the current one keeps running)."""

    arguments = []
    response = [
        (b"ok", amp.Boolean()),
        (b"error", amp.Unicode(optional=True)),
        (b"warnings", Json()),
    ]


class Commit(amp.Command):
    """Use the pending engine for every later batch."""

    arguments = []
    response = [(b"ok", amp.Boolean())]


class Abort(amp.Command):
    """Forget the pending engine."""

    arguments = []
    response = []


class NoEngine(Exception):
    """A batch arrived before any ruleset was committed."""


class Analyse(amp.Command):
    """Analyse a batch: ``events`` is JSON ``[field names, [row, ...]]`` (the fields of
    :class:`~wazuhcluster.analysis.engine.Event`); the answer holds the alerts as
    alerts.json lines, and how many events were done, alerted and failed."""

    arguments = [(b"events", BigBytes())]
    response = [
        (b"alerts", BigBytes()),
        (b"processed", amp.Integer()),
        (b"alerted", amp.Integer()),
        (b"failed", amp.Integer()),
        (b"errors", Json()),
    ]
    errors = {NoEngine: b"NO_ENGINE"}


def encode_events(events: list[Event]) -> bytes:
    """A batch of events as :class:`Analyse` carries it (every attrs field, generically)."""
    rows = [[getattr(event, name) for name in EVENT_FIELDS] for event in events]
    return json.dumps([EVENT_FIELDS, rows], separators=(",", ":")).encode("utf-8")


def decode_events(data: bytes) -> list[Event]:
    """The events of an :class:`Analyse` batch."""
    names, rows = json.loads(data)
    return [Event(**dict(zip(names, row, strict=True))) for row in rows]


def settings_to_json(settings: RulesetSettings) -> dict[str, Any]:
    """The ruleset settings as JSON (tuples become lists)."""
    return attrs.asdict(settings)


def settings_from_json(data: dict[str, Any]) -> RulesetSettings:
    """The ruleset settings back from :func:`settings_to_json`."""
    values: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value for key, value in data.items()
    }
    return RulesetSettings(**values)


class AnalysisChild(amp.AMP):
    """The child's side: one engine, its correlation state, and a pending replacement."""

    def __init__(self) -> None:
        super().__init__()
        self.home = ""
        self.settings = RulesetSettings()
        self.identity = Identity()
        self.lane = 0
        self.lanes = 1
        self.engine: Engine | None = None
        self.pending: Engine | None = None
        self.sequence = 0

    def hello(
        self, home: str, settings: dict[str, Any], identity: dict[str, Any], lane: int, lanes: int
    ) -> dict[str, Any]:
        """Remember the ruleset's place and this lane."""
        self.home = home
        self.settings = settings_from_json(settings)
        self.identity = Identity(**identity)
        self.lane, self.lanes = lane, max(1, lanes)
        return {"pid": os.getpid()}

    def prepare(self) -> dict[str, Any]:
        """Load the ruleset; a failure is an answer (the parent keeps the old engines)."""
        try:
            self.pending = load_engine(self.home, self.settings, self.identity)
        except Exception as error:  # any loader failure keeps the current engine
            self.pending = None
            return {"ok": False, "error": str(error) or repr(error), "warnings": []}
        return {"ok": True, "error": None, "warnings": list(self.pending.warnings)[:20]}

    def commit(self) -> dict[str, Any]:
        """Swap the pending engine in (its correlation state starts empty, as on a reload)."""
        if self.pending is None:
            return {"ok": False}
        self.engine, self.pending = self.pending, None
        return {"ok": True}

    def abort(self) -> dict[str, Any]:
        """Drop the pending engine."""
        self.pending = None
        return {}

    def analyse(self, events: bytes) -> dict[str, Any]:
        """Decode, match and render the batch's alerts, in the batch's order."""
        engine = self.engine
        if engine is None:
            raise NoEngine("no ruleset committed")
        lines: list[str] = []
        errors: list[str] = []
        failed = 0
        batch = decode_events(events)
        for event in batch:
            try:
                alert = engine.process(event)
            except Exception as error:  # one bad event must not stop the others
                failed += 1
                if len(errors) < MAX_ERRORS:
                    errors.append(f"agent {event.agent_id}: {error!r}")
                continue
            if alert is not None:
                # Alert ids stay unique across the pool: this lane's own residue class.
                self.sequence += 1
                seconds = str(alert.get("id", "0")).split(".", 1)[0]
                alert["id"] = f"{seconds}.{self.sequence * self.lanes + self.lane}"
                lines.append(json.dumps(alert, ensure_ascii=False, separators=(",", ":")))
        text = "\n".join(lines) + "\n" if lines else ""
        return {
            "alerts": text.encode("utf-8"),
            "processed": len(batch),
            "alerted": len(lines),
            "failed": failed,
            "errors": errors,
        }

    # The responders call the methods by name, so a subclass may override them.
    @Hello.responder
    def _hello(self, **arguments: Any) -> dict[str, Any]:
        return self.hello(**arguments)

    @Prepare.responder
    def _prepare(self) -> dict[str, Any]:
        return self.prepare()

    @Commit.responder
    def _commit(self) -> dict[str, Any]:
        return self.commit()

    @Abort.responder
    def _abort(self) -> dict[str, Any]:
        return self.abort()

    @Analyse.responder
    def _analyse(self, events: bytes) -> dict[str, Any]:
        return self.analyse(events)


def main() -> None:
    """Serve the parent on fds 3 and 4 until it closes our input."""
    # Ctrl-C reaches the whole process group; the parent decides when we stop (it drains).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    output = os.fdopen(CHILD_OUT, "wb")
    protocol = AnalysisChild()
    protocol.makeConnection(FileWrapper(output))
    while True:
        data = os.read(CHILD_IN, 1 << 20)
        if not data:
            break
        protocol.dataReceived(data)
        output.flush()
    output.close()
    sys.exit(0)


if __name__ == "__main__":
    main()

"""One analysis process of the pool: the engine behind AMP on file descriptors 3 and 4.

The parent (:mod:`wazuhcluster.node.analysis_pool`) starts ``python -m
wazuhcluster.node.analysis_child`` with the AMP stream on fds 3 (in) and 4 (out), so stray
output on stdout and stderr never corrupts it and ends up in the parent's log. The child
runs no reactor: it reads its input, hands it to the AMP protocol and answers each command
before reading the next, so the answers come back in the order of the calls.

Commands, all from the parent: :class:`Hello` (where the ruleset is, whether archives are
on), :class:`Prepare` (load the ruleset from disk into a pending engine), :class:`Commit` or
:class:`Abort` (swap the pending engine in, or forget it: the parent commits only once every
process prepared, so a reload reaches every process at the same point of the event stream),
and :class:`Analyse` (one batch of events in; out, their alerts as ready-made alerts.json
lines, with archives on every event's archives.json and archives.log lines, and the engine's
notices for the parent to log). The parent alone writes the files.

What the queue decoders remember per agent (``Engine.agent_state``) lives in the process that
analyses the agent: in memory, or, when :class:`Hello` names a ``state_dir``, in one SQLite
database per agent there (:mod:`wazuhcluster.analysis.state_store`), committed at the end of
a batch at most every :data:`COMMIT_INTERVAL` seconds (and at once when no batch follows), so
it outlives reloads and restarts. The replies the decoders queued for agents
(integrity answers, SCA resend requests) come back with the batch's answer.
"""

from __future__ import annotations

import fcntl
import json
import marshal
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.protocol import FileWrapper
from twisted.protocols import amp

from wazuhcluster.agents.sealed import SealedFrames, SealedReport, open_frames
from wazuhcluster.analysis.agentstate import AgentState, MemoryState
from wazuhcluster.analysis.alert_totals import AlertTally
from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.json_line import json_line
from wazuhcluster.analysis.loader import load_engine
from wazuhcluster.analysis.state_store import SqliteState
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
#: Seconds between two commits of the agents' state databases. A batch touches the
#: databases of most of its agents, and a commit per database per batch cost more than
#: the state writes themselves (100 agents, 150-event batches: a commit per 1.5 events);
#: the batches of this interval share one commit per database, and a process with nothing
#: to read commits at once (see :func:`main`), so readers see the state at most this late.
COMMIT_INTERVAL = 0.5
#: Bytes each pipe to and from the parent may hold (Linux's default is 64 KiB, the
#: unprivileged ceiling /proc/sys/fs/pipe-max-size, 1 MiB by default). A batch's answer
#: (alerts.json lines) is often larger than 64 KiB: with the default, the process waited for
#: the parent's reactor to read the rest before it could take its next batch.
PIPE_BYTES = 1 << 20


class BigBytes(amp.Argument):
    """Bytes of any size (up to :data:`MAX_PIECES` values): the value under ``name`` is
    the number of pieces, each piece under ``name.<i>`` (each AMP value stays < 64 KiB)."""

    def toBox(  # noqa: N802 - Twisted's name
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        """Split ``objects[name]`` into pieces of at most :data:`VALUE_LIMIT` bytes."""
        found: bytes | None = objects.get(name.decode("ascii"))
        if found is None and self.optional:
            return
        value = found or b""
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
        if name not in strings and self.optional:
            objects[name.decode("ascii")] = None
            return
        count = int(strings[name])
        if not 0 <= count <= MAX_PIECES:
            raise ValueError(f"bad piece count {count}")
        objects[name.decode("ascii")] = b"".join(
            strings[name + b"." + str(index).encode("ascii")] for index in range(count)
        )


class Hello(amp.Command):
    """Where this process's ruleset is and who writes its alerts; ``lane`` of ``lanes``;
    ``archives``: also render every event for the archives (``settings`` says which files)."""

    arguments = [
        (b"home", amp.Unicode()),
        (b"settings", Json()),
        (b"identity", Json()),
        (b"lane", amp.Integer()),
        (b"lanes", amp.Integer()),
        (b"archives", amp.Boolean(optional=True)),
        (b"state_dir", amp.Unicode(optional=True)),
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
    """Analyse a batch: ``events`` is ``(field names, [row, ...])`` (:func:`encode_rows`;
    the fields of :class:`~wazuhcluster.analysis.engine.Event`); the answer holds the alerts as
    alerts.json lines, how many events were done, alerted and failed, the ``archived``
    events' archives.json and archives.log lines (empty with archives off), and the
    engine's ``notices`` (things to log once, such as a message of an unknown queue),
    the ``replies`` due to agents (JSON ``[[agent id, message], ...]``, absent when none),
    and the alerts' ``tally`` for the hourly totals (``{"pairs": [[rule id, level,
    times], ...], "syscheck": n, "firewall": n}``, absent when no alert), counted here
    from the alerts themselves so the node does not read its lines again.

    A batch item may be an agent's frames still sealed (:func:`sealed_row`): the child
    opens them, analyses their events in their place, and answers ``sealed``, what opening
    them found (:meth:`~wazuhcluster.agents.sealed.SealedReport.to_json` as JSON bytes,
    in pieces like the alerts: 500 keep-alives' texts are over one AMP value; absent when
    the batch had none) for the node's agent channel."""

    arguments = [(b"events", BigBytes())]
    response = [
        (b"alerts", BigBytes()),
        (b"processed", amp.Integer()),
        (b"alerted", amp.Integer()),
        (b"failed", amp.Integer()),
        (b"errors", Json()),
        (b"archive_json", BigBytes()),
        (b"archive_log", BigBytes()),
        (b"archived", amp.Integer()),
        (b"notices", Json()),
        (b"replies", BigBytes(optional=True)),
        (b"tally", Json(optional=True)),
        (b"sealed", BigBytes(optional=True)),
    ]
    errors = {NoEngine: b"NO_ENGINE"}


#: One event as a batch carries it: its fields' values in :data:`EVENT_FIELDS` order; or
#: an agent's sealed frames (:func:`sealed_row`).
EventRow = tuple[Any, ...]
#: The first value of a batch item that holds an agent's sealed frames.
SEALED = 0


def event_row(event: Event) -> EventRow:
    """``event`` as a row of a batch (every attrs field, generically)."""
    return tuple(getattr(event, name) for name in EVENT_FIELDS)


def encode_rows(rows: list[EventRow]) -> bytes:
    """A batch of event rows as :class:`Analyse` carries it: ``(field names, rows)`` in
    :mod:`marshal`'s format. Parent and child are the same interpreter (the child is
    started with the parent's ``sys.executable``) and the pipe is theirs alone, so the
    format needs no versioning or validation, and it costs a fraction of JSON's encoding
    in the node's one reactor thread."""
    return marshal.dumps((EVENT_FIELDS, rows))


def encode_events(events: list[Event]) -> bytes:
    """A batch of events as :class:`Analyse` carries it."""
    return encode_rows([event_row(event) for event in events])


def sealed_row(group: SealedFrames) -> EventRow:
    """An agent's sealed frames as an item of a batch: :data:`SEALED`, then the group's
    fields (an event row starts with its message, a string)."""
    return (SEALED, *group.as_tuple())


def decode_batch(data: bytes) -> tuple[list[Event], SealedReport | None]:
    """The events of an :class:`Analyse` batch, in order, the sealed frames opened among
    them; and what opening them found (None: the batch had none)."""
    names, rows = marshal.loads(data)
    same = tuple(names) == EVENT_FIELDS  # always, between processes of one interpreter
    events: list[Event] = []
    report: SealedReport | None = None
    for row in rows:
        if row[0] == SEALED:
            group = SealedFrames.from_tuple(row[1:])
            report = report or SealedReport()
            opened = open_frames(group, report)
            events.extend(
                Event(
                    message,
                    location,
                    queue,
                    group.agent_id,
                    group.name,
                    group.registered_ip,
                    group.received,
                    agent_reported_ip=group.reported_ip,
                    agent_labels=group.labels,
                )
                for queue, location, message in opened
            )
        elif same:
            events.append(Event(*row))
        else:
            events.append(Event(**dict(zip(names, row, strict=True))))
    return events, report


def tally_json(tally: AlertTally) -> dict[str, Any]:
    """A batch's alert counts as :class:`Analyse` answers them (see
    :meth:`AlertTally.add`)."""
    pairs, syscheck, firewall = tally.take()
    return {
        "pairs": [[rule_id, level, times] for (rule_id, level), times in pairs.items()],
        "syscheck": syscheck,
        "firewall": firewall,
    }


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
        self.archives = False
        #: What the queue decoders remember, shared by every engine of this process.
        self.agent_state: AgentState = MemoryState()
        #: When the agents' state was last committed, and whether batches wrote since.
        self.committed = 0.0
        self.uncommitted = False
        self.clock = time.monotonic

    def commit_state(self, at_most_every: float = 0.0) -> None:
        """Commit the agents' state, unless it was committed less than ``at_most_every``
        seconds ago (then it stays pending for a later batch or :meth:`commit_due`)."""
        now = self.clock()
        if now - self.committed < at_most_every:
            self.uncommitted = True
            return
        self.agent_state.flush()
        self.committed = now
        self.uncommitted = False

    def commit_due(self) -> float | None:
        """Seconds until the pending state must be committed (None: nothing pending)."""
        if not self.uncommitted:
            return None
        return max(0.0, self.committed + COMMIT_INTERVAL - self.clock())

    def hello(
        self,
        home: str,
        settings: dict[str, Any],
        identity: dict[str, Any],
        lane: int,
        lanes: int,
        archives: bool | None = None,
        state_dir: str | None = None,
    ) -> dict[str, Any]:
        """Remember the ruleset's place, this lane, whether to archive, and where the
        agents' state databases are (in memory without ``state_dir``)."""
        self.home = home
        self.settings = settings_from_json(settings)
        self.identity = Identity(**identity)
        self.lane, self.lanes = lane, max(1, lanes)
        self.archives = bool(archives)
        if state_dir:
            self.agent_state.close()
            self.agent_state = SqliteState(state_dir)
        return {"pid": os.getpid()}

    def prepare(self) -> dict[str, Any]:
        """Load the ruleset; a failure is an answer (the parent keeps the old engines)."""
        try:
            self.pending = load_engine(self.home, self.settings, self.identity)
            self.pending.agent_state = self.agent_state
        except Exception as error:  # any loader failure keeps the current engine
            self.pending = None
            return {"ok": False, "error": str(error) or repr(error), "warnings": []}
        return {"ok": True, "error": None, "warnings": list(self.pending.warnings)[:20]}

    def commit(self) -> dict[str, Any]:
        """Swap the pending engine in: its correlation state starts empty, as on a reload, but
        what agents told the queue decoders is handed over from the engine it replaces."""
        if self.pending is None:
            return {"ok": False}
        if self.engine is not None:
            self.pending.agent_state = self.engine.agent_state
        self.engine, self.pending = self.pending, None
        return {"ok": True}

    def abort(self) -> dict[str, Any]:
        """Drop the pending engine."""
        self.pending = None
        return {}

    def _unique_id(self, record: dict[str, Any]) -> str:
        """An id unique across the pool: this lane's own residue class."""
        self.sequence += 1
        seconds = str(record.get("id", "0")).split(".", 1)[0]
        return f"{seconds}.{self.sequence * self.lanes + self.lane}"

    def analyse(self, events: bytes) -> dict[str, Any]:
        """Decode, match and render the batch's alerts (and archive lines), in the batch's
        order."""
        engine = self.engine
        if engine is None:
            raise NoEngine("no ruleset committed")
        lines: list[bytes] = []
        errors: list[str] = []
        archive_json: list[str] = []
        archive_log: list[str] = []
        archived = 0
        json_out = self.archives and self.settings.logall_json
        plain = self.archives and self.settings.logall
        failed = 0
        tally = AlertTally()
        batch, report = decode_batch(events)
        for event in batch:
            try:
                if self.archives:
                    alert, record = engine.process_archived(event)
                else:
                    alert, record = engine.process(event), None
            except Exception as error:  # one bad event must not stop the others
                failed += 1
                if len(errors) < MAX_ERRORS:
                    errors.append(f"agent {event.agent_id}: {error!r}")
                continue
            first = alert if alert is not None else record.record if record is not None else None
            if first is None:
                continue
            # An event's alert and archive record share one id, unique across the pool.
            unique = self._unique_id(first)
            if alert is not None:
                alert["id"] = unique
                lines.append(json_line(alert))
                tally.count(alert)
            if record is not None:
                record.record["id"] = unique
                archived += 1
                if json_out:
                    archive_json.append(record.json_text())
                if plain:
                    archive_log.append(record.plain_text())
        text = b"\n".join(lines) + b"\n" if lines else b""
        self.commit_state(COMMIT_INTERVAL)
        pairs = engine.agent_state.take_replies()
        replies = json_bytes(pairs) if pairs else None
        return {
            "alerts": text,
            "processed": len(batch),
            "alerted": len(lines),
            "failed": failed,
            "errors": errors,
            "archive_json": "".join(archive_json).encode("utf-8"),
            "archive_log": "".join(archive_log).encode("utf-8"),
            "archived": archived,
            "notices": engine.take_notices(),
            "replies": replies,
            "tally": tally_json(tally) if lines else None,
            "sealed": json_bytes(report.to_json()) if report is not None else None,
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


def json_bytes(value: Any) -> bytes:
    """``value`` as compact JSON, UTF-8."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def widen_pipe(descriptor: int, size: int = PIPE_BYTES) -> int:
    """Let the pipe ``descriptor`` hold up to ``size`` bytes, at most the system's ceiling;
    the size it now has (its old one when it cannot be changed, 0 when it is no pipe)."""
    try:
        ceiling = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        ceiling = size
    try:
        return fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, min(size, ceiling))
    except OSError:  # no pipe, or over the user's quota of pipe memory
        try:
            return fcntl.fcntl(descriptor, fcntl.F_GETPIPE_SZ)
        except OSError:
            return 0


def main() -> None:
    """Serve the parent on fds 3 and 4 until it closes our input."""
    # Ctrl-C reaches the whole process group; the parent decides when we stop (it drains).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for pipe in (CHILD_IN, CHILD_OUT):
        widen_pipe(pipe)
    output = os.fdopen(CHILD_OUT, "wb")
    protocol = AnalysisChild()
    protocol.makeConnection(FileWrapper(output))
    while True:
        due = protocol.commit_due()
        if due is not None and not select.select([CHILD_IN], [], [], due)[0]:
            protocol.commit_state()  # nothing more came in time: commit what is pending
            continue
        data = os.read(CHILD_IN, 1 << 20)
        if not data:
            break
        protocol.dataReceived(data)
        output.flush()
    protocol.agent_state.close()
    output.close()
    sys.exit(0)


if __name__ == "__main__":
    main()

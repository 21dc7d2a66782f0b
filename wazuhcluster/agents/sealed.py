"""Agent frames handed over still sealed, and what opening them found.

Once a TCP connection is authenticated (its first message opened and checked by the
channel), the node's reactor no longer opens the agent's frames itself when an analysis
process can: it hands them over as :class:`SealedFrames`, and the process opens them
(:func:`open_frames`: AES, zlib, MD5, the event's fields) beside the analysis. Decryption and
parsing then run on every analysis core instead of the reactor's one thread, which keeps
only the reading and framing.

What opening the frames of one batch found comes back as a :class:`SealedReport`: the
events per agent and queue letter for the node's counters, and, for the groups that held
more than events, a :class:`SealedOutcome` the channel acts on: control messages to answer
(keep-alives, shutdowns, request answers), malformed events to log, and the error that ends
the connection (bad key, checksum...), after which the agent's later frames in the batch are
discarded, as the closed connection would have discarded them.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field, frozen

from wazuhcluster.agents import control, secure

#: Malformed-event reasons one outcome carries (the rest are only counted).
MAX_REASONS = 5

#: The errors an outcome may name, by class name (nothing else is rebuilt from one).
_ERRORS: dict[str, type[secure.SecureError]] = {
    error.__name__: error
    for error in (
        secure.SecureError,
        secure.BadFormat,
        secure.WrongKey,
        secure.UnsupportedCipher,
        secure.UncompressError,
        secure.MessageTooLarge,
        secure.TooShort,
        secure.ChecksumMismatch,
    )
}

#: One opened event: (queue letter, location, message).
OpenedEvent = tuple[str, str, str]


@frozen
class SealedFrames:
    """Frames one authenticated agent connection sent, not opened yet.

    ``frames`` are whole payloads (``!<id>!#AES:<ciphertext>``, the prefix checked by the
    channel); the other fields are what the node knows of the agent when it reads them, as
    in :class:`~.channel.AgentEvent`.
    """

    agent_id: str
    name: str
    cipher_key: bytes
    registered_ip: str
    reported_ip: str | None
    labels: tuple[tuple[str, str], ...]
    received: float
    #: The connection that read them (its number on this node) and its source address.
    connection: int
    peer_ip: str
    frames: list[bytes]

    def as_tuple(self) -> tuple[Any, ...]:
        """The fields in order, as :mod:`marshal` carries them to an analysis process."""
        return (
            self.agent_id,
            self.name,
            self.cipher_key,
            self.registered_ip,
            self.reported_ip,
            self.labels,
            self.received,
            self.connection,
            self.peer_ip,
            self.frames,
        )

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...] | list[Any]) -> SealedFrames:
        """Rebuild a group from :meth:`as_tuple` (:mod:`marshal` keeps tuples and lists
        as they were)."""
        return cls(*values)


@define
class SealedOutcome:
    """What the channel must act on after opening an agent's frames: control messages to
    answer, malformed events to log, and the frame that could not be opened."""

    agent_id: str
    #: The connection that sent the frames, and its source address (see
    #: :class:`SealedFrames`).
    connection: int = 0
    peer_ip: str = ""
    #: Control messages, in arrival order, as text.
    control: list[str] = field(factory=list)
    #: Events that did not parse (``<queue>:<location>:<message>``): how many, and the
    #: first :data:`MAX_REASONS` reasons.
    malformed: int = 0
    reasons: list[str] = field(factory=list)
    #: The frame that could not be opened (class name of its :class:`~.secure.SecureError`
    #: and the reason), and how many frames came after it, unopened.
    error: tuple[str, str] | None = None
    discarded: int = 0

    def secure_error(self) -> secure.SecureError | None:
        """The error as the channel's own decryption would have raised it."""
        if self.error is None:
            return None
        kind, reason = self.error
        return _ERRORS.get(kind, secure.SecureError)(reason)

    def to_json(self) -> list[Any]:
        """This outcome as JSON values."""
        error = list(self.error) if self.error is not None else None
        return [
            self.agent_id,
            self.connection,
            self.peer_ip,
            self.control,
            self.malformed,
            self.reasons,
            error,
            self.discarded,
        ]

    @classmethod
    def from_json(cls, value: list[Any]) -> SealedOutcome:
        """Rebuild an outcome from :meth:`to_json`."""
        agent_id, connection, peer_ip, texts, malformed, reasons, error, discarded = value
        return cls(
            str(agent_id),
            int(connection),
            str(peer_ip),
            [str(text) for text in texts],
            int(malformed),
            [str(reason) for reason in reasons][:MAX_REASONS],
            (str(error[0]), str(error[1])) if error else None,
            int(discarded),
        )


@define
class SealedReport:
    """What opening the sealed frames of one batch found, for the node: the events per
    agent and queue letter, how many frames were not events (control messages, malformed
    events, frames that could not be opened or came after one), and an outcome per group
    the channel must act on (most groups hold only events and have none)."""

    events: dict[str, dict[str, int]] = field(factory=dict)
    not_events: int = 0
    outcomes: list[SealedOutcome] = field(factory=list)
    #: Agents whose frames could not all be opened in this batch: their later groups are
    #: discarded too, since the channel closes the connection that sent them.
    failed: set[str] = field(factory=set)

    def to_json(self) -> list[Any]:
        """This report as JSON values (the analysis process's answer)."""
        events = {agent_id: counts for agent_id, counts in self.events.items() if counts}
        return [events, self.not_events, [outcome.to_json() for outcome in self.outcomes]]

    @classmethod
    def from_json(cls, value: list[Any]) -> SealedReport:
        """Rebuild a report from :meth:`to_json`."""
        events, not_events, outcomes = value
        return cls(
            {
                str(agent_id): {str(queue): int(count) for queue, count in counts.items()}
                for agent_id, counts in events.items()
            },
            int(not_events),
            [SealedOutcome.from_json(outcome) for outcome in outcomes],
        )


def open_frames(group: SealedFrames, report: SealedReport) -> list[OpenedEvent]:
    """Open ``group``'s frames in order: the events to analyse; what else they held goes
    to ``report``.

    The first frame that cannot be opened ends the group: the rest are counted as
    discarded, since the channel closes the connection that sent it.
    """
    agent_id = group.agent_id
    frames = group.frames
    if agent_id in report.failed:
        report.not_events += len(frames)
        return []
    events: list[OpenedEvent] = []
    outcome: SealedOutcome | None = None
    counts = report.events.get(agent_id)
    if counts is None:
        counts = report.events[agent_id] = {}
    opened = 0
    try:
        for message in secure.open_messages(_ciphertexts(group), group.cipher_key):
            opened += 1
            text = message.decode("utf-8", "replace")
            if message.startswith(control.CONTROL_HEADER_BYTES):
                outcome = outcome or SealedOutcome(agent_id, group.connection, group.peer_ip)
                outcome.control.append(text)
                report.not_events += 1
                continue
            try:
                queue, location, body = control.parse_event(text)
            except control.ControlError as error:
                outcome = outcome or SealedOutcome(agent_id, group.connection, group.peer_ip)
                outcome.malformed += 1
                if len(outcome.reasons) < MAX_REASONS:
                    outcome.reasons.append(str(error))
                report.not_events += 1
                continue
            counts[queue] = counts.get(queue, 0) + 1
            events.append((queue, location, body))
    except secure.SecureError as error:
        outcome = outcome or SealedOutcome(agent_id, group.connection, group.peer_ip)
        outcome.error = (type(error).__name__, error.reason)
        outcome.discarded = len(frames) - opened - 1
        report.not_events += len(frames) - opened
        report.failed.add(agent_id)
    if outcome is not None:
        report.outcomes.append(outcome)
    return events


def _ciphertexts(group: SealedFrames) -> list[bytes]:
    """The ciphertexts of ``group``'s frames (after ``!<id>!#AES:``, which the channel
    checked before handing them over)."""
    skip = len(group.agent_id) + 2 + len(secure.AES_TOKEN)
    return [frame[skip:] for frame in group.frames]

"""The stream protocol on the wire: its AMP commands, their errors and the framing limits.

Payloads larger than one AMP value (64 KiB) travel as a *stream*: chunked, flow-controlled and
checksummed, one way over an existing AMP connection, started by either side::

    sender                                   receiver
    StreamOpen(kind, total_size)      ──►    checks kind, size cap, stream count → stream_id
    StreamChunk(stream_id, offset, data) ──► (≤ 60 KiB each, at most ``window`` unanswered;
                                              one call may carry several, see below)
    ...
    StreamEnd(stream_id, sha256)      ──►    size and SHA-256 checked, consumer finished,
                                             on_complete(kind, stream_id, result) → reply
    StreamCancel(stream_id, reason, sender)  either side, at any time

A receiver that answers StreamOpen with ``parts`` > 1 accepts up to that many chunks in one
StreamChunk call (``data``, ``data1``, ``data2``... each one AMP value of at most 60 KiB, in
order): a sender with a wide window then makes fewer, bigger calls for the same bytes in flight
(the window still counts chunks). A receiver that does not announce it (an older node) gets one
chunk per call, and an older sender never sends more than ``data``.

Small chunks and a bounded window keep every other command (keep-alives, enrollment answers)
flowing between chunks, and bound what either side buffers. The receiver feeds each chunk to a
*consumer* as it arrives (:mod:`~wazuhcluster.wire.stream_consumers`), so its memory stays
bounded too. The receiver cancels a stream that stays idle longer than its timeout; the sender
times out each call.

The other stream modules: :mod:`~wazuhcluster.wire.stream_sender` (the sender and its window),
:mod:`~wazuhcluster.wire.stream_receiver` (the stream kinds a side accepts and the reassembly),
:mod:`~wazuhcluster.wire.stream_sources` (a blocking source read in a thread) and
:mod:`~wazuhcluster.wire.stream_endpoint` (both directions wired into one connection).
"""

from __future__ import annotations

from twisted.protocols import amp

from wazuhcluster.wire.commands import ClusterError, NotAuthenticated

#: Largest chunk sent in one StreamChunk (AMP values are at most 65,535 bytes).
CHUNK_SIZE = 60 * 1024

#: Most chunks one StreamChunk call may carry (this receiver announces it in StreamOpen).
MAX_PARTS = 8

#: AMP names of the chunks after the first in one StreamChunk call.
MORE_PARTS = [f"data{i}" for i in range(1, MAX_PARTS)]

#: Longest reason or reply text carried back (characters).
MAX_TEXT = 4096


class StreamError(ClusterError):
    """Base class of stream failures; ``str()`` is the reason."""


class StreamRefused(StreamError):
    """The receiver refused to open a stream (unknown kind, over the size cap, too many)."""


class StreamUnknown(StreamError):
    """No stream with this id is open on the receiver (finished, expired or never opened)."""


class StreamInvalid(StreamError):
    """The stream broke a rule (offset, size, checksum) or its consumer refused the data."""


class StreamCancelled(StreamError):
    """The stream was cancelled by one side; the message gives who and why."""


class StreamTimeout(StreamError):
    """The receiver gave up on a stream that stayed idle too long."""


_ERRORS: dict[type[Exception], bytes] = {
    StreamRefused: b"STREAM_REFUSED",
    StreamUnknown: b"STREAM_UNKNOWN",
    StreamInvalid: b"STREAM_INVALID",
    StreamCancelled: b"STREAM_CANCELLED",
    StreamTimeout: b"STREAM_TIMEOUT",
}
_FATAL: dict[type[Exception], bytes] = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class StreamOpen(amp.Command):
    """Sender → receiver: announce a stream of ``kind`` and ``total_size`` bytes; get its id."""

    arguments = [(b"kind", amp.Unicode()), (b"total_size", amp.Integer())]
    # ``parts``: the most chunks the receiver takes in one StreamChunk (absent from older nodes).
    response = [(b"stream_id", amp.Unicode()), (b"parts", amp.Integer(optional=True))]
    errors = _ERRORS
    fatalErrors = _FATAL


class StreamChunk(amp.Command):
    """Sender → receiver: ``data`` (≤ 60 KiB) at byte ``offset`` of the stream, followed by
    ``data1``, ``data2``... (≤ 60 KiB each) when the receiver announced ``parts`` > 1."""

    arguments = [
        (b"stream_id", amp.Unicode()),
        (b"offset", amp.Integer()),
        (b"data", amp.String()),
        *[(name.encode("ascii"), amp.String(optional=True)) for name in MORE_PARTS],
    ]
    response = []
    errors = _ERRORS
    fatalErrors = _FATAL


class StreamEnd(amp.Command):
    """Sender → receiver: all bytes sent, with their SHA-256 (hex).

    Answered once the receiver has checked the size and checksum and processed the payload;
    ``reply`` is an optional short text from the receiver's completion callback.
    """

    arguments = [(b"stream_id", amp.Unicode()), (b"sha256", amp.Unicode())]
    response = [(b"reply", amp.Unicode(optional=True))]
    errors = _ERRORS
    fatalErrors = _FATAL


class StreamCancel(amp.Command):
    """Either side: cancel a stream.

    ``sender`` is true when the caller is the stream's sender (the responder drops what it has
    received) and false when the caller is the receiver (the responder stops sending).
    Cancelling an unknown or finished stream is not an error.
    """

    arguments = [
        (b"stream_id", amp.Unicode()),
        (b"reason", amp.Unicode()),
        (b"sender", amp.Boolean()),
    ]
    response = []
    errors = _ERRORS
    fatalErrors = _FATAL


def clip(text: str) -> str:
    """``text``, cut to :data:`MAX_TEXT` characters to travel as a reason or a reply."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."

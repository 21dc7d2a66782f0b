"""Small request/response exchanges must not wait for Nagle's algorithm."""

from __future__ import annotations


def send_without_delay(transport: object) -> None:
    """Turn on TCP_NODELAY for ``transport`` (through TLS and other wrappers) when it is a
    TCP connection.

    AMP calls are small writes answered by small writes; with Nagle's algorithm a second
    small write waits for the peer's delayed ACK (up to 40 ms on Linux) whenever the
    first is still unacknowledged, which capped forwarded enrollments at a few dozen per
    second per link.
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is None:
        return
    try:
        set_no_delay(True)
    except OSError:
        pass  # not a TCP socket after all (e.g. a UNIX socket): nothing to tune

"""Calling AMP commands with a timeout, the one way both roles send requests."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp


def call_with_timeout(
    protocol: amp.AMP,
    command: type[amp.Command],
    timeout: float,
    clock: IReactorTime,
    **arguments: Any,
) -> Deferred[dict[str, Any]]:
    """``callRemote`` that fails with TimeoutError after ``timeout`` seconds.

    Errors raised synchronously by ``callRemote`` (TooLong...) arrive as a failed Deferred.
    """
    result: Deferred[dict[str, Any]] = maybeDeferred(protocol.callRemote, command, **arguments)
    return result.addTimeout(timeout, clock)

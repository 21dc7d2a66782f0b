"""Calling AMP commands with a timeout, the one way both roles send requests."""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp
from twisted.python.failure import Failure

_T = TypeVar("_T")


class CallTimeout(TimeoutError):
    """A request got no answer in time; ``str()`` names the command and the limit (Twisted's
    own TimeoutError reads ``(5.0, 'Deferred')`` in a log line)."""


def limit_time(
    deferred: Deferred[_T], timeout: float, clock: IReactorTime, what: str
) -> Deferred[_T]:
    """Fail ``deferred`` with :class:`CallTimeout` (a TimeoutError) after ``timeout`` seconds."""

    def explain(failure: Failure) -> Failure:
        if failure.check(TimeoutError) and not failure.check(CallTimeout):
            raise CallTimeout(f"no answer to {what} within {timeout:g} s")
        return failure

    return deferred.addTimeout(timeout, clock).addErrback(explain)


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
    return limit_time(result, timeout, clock, command.__name__)

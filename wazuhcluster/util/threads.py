"""Running blocking work (hashing, SQLite, file I/O) off the reactor thread.

Code that blocks takes a ``run_in_thread`` callable instead of calling ``deferToThread``
itself, so tests can pass :func:`run_inline` and stay synchronous and deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThread

T = TypeVar("T")

RunInThread = Callable[..., "Deferred[Any]"]


def run_in_reactor_pool(function: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
    """Run ``function`` in the reactor's thread pool."""
    return deferToThread(function, *args, **kwargs)


def run_inline(function: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
    """Run ``function`` right here (for tests): same contract, no thread."""
    return maybeDeferred(function, *args, **kwargs)

"""One etcd watch over the JSON gateway: a long POST whose answer is a stream of JSON lines.

A :class:`Watch` never errbacks: ``created`` fires with the revision etcd started at (None
when the watch ended first) and ``ended`` with a :class:`WatchEnd` saying why it ended, so
nobody is left with an unhandled failure. A watch that etcd does not confirm within the
client's timeout ends with an :class:`EtcdTimeout`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from wazuhcluster.failover.body import read_lines
from wazuhcluster.failover.kv import (
    EtcdError,
    EtcdProtocolError,
    EtcdTimeout,
    EtcdUnavailable,
    WatchResponse,
    error_from_json,
)

WatchCallback = Callable[[WatchResponse], None]


@frozen
class WatchEnd:
    """Why a watch ended: stopped by us, canceled by etcd (``compact_revision`` when the
    start revision was compacted away), or an ``error`` (stream cut, etcd unreachable)."""

    reason: str
    error: EtcdError | None = None
    compact_revision: int = 0


class Watch:
    """A running watch; :meth:`stop` ends it and closes its connection."""

    def __init__(
        self,
        on_response: WatchCallback,
        endpoint: str,
        clock: IReactorTime,
        timeout: float,
        max_line: int,
    ) -> None:
        self.on_response = on_response
        self.endpoint = endpoint
        self.clock = clock
        self.max_line = max_line
        self.created: Deferred[int | None] = Deferred()
        self.ended: Deferred[WatchEnd] = Deferred()
        self._request: Deferred[Any] | None = None
        self._stream: Deferred[bytes] | None = None
        self._on_failure: Callable[[], None] = lambda: None
        self._creation_timer: IDelayedCall | None = clock.callLater(
            timeout,
            self._finish,
            WatchEnd(
                "not confirmed",
                EtcdTimeout(f"watch not confirmed within {timeout:g} s", endpoint=endpoint),
            ),
        )

    @property
    def active(self) -> bool:
        """True until the watch has ended."""
        return not self.ended.called

    def attach(self, sent: Deferred[IResponse], on_failure: Callable[[], None]) -> None:
        """Follow the request ``sent``; ``on_failure`` runs when it fails (next endpoint)."""
        self._on_failure = on_failure
        self._request = sent
        sent.addCallbacks(self._got_response, self._request_failed)

    def _request_failed(self, failure: Failure) -> None:
        self._request = None
        if self.active:
            self._on_failure()
            self._finish(
                WatchEnd(
                    "request failed",
                    EtcdUnavailable(
                        f"watch request failed: {failure.getErrorMessage()}",
                        endpoint=self.endpoint,
                    ),
                )
            )

    def _got_response(self, response: IResponse) -> None:
        self._request = None
        if not self.active:
            _discard(response)
            return
        if response.code != 200:
            _discard(response)
            self._finish(
                WatchEnd(
                    "refused",
                    EtcdError(f"watch refused with HTTP status {response.code}", 0, self.endpoint),
                )
            )
            return
        stream = self._stream = read_lines(response, self._line, self.max_line)
        stream.addCallbacks(self._stream_ended, self._stream_failed)

    def _line(self, line: bytes) -> None:
        try:
            body = json.loads(line)
        except ValueError:
            raise EtcdProtocolError(
                "watch stream line is not JSON", endpoint=self.endpoint
            ) from None
        if not isinstance(body, dict):
            raise EtcdProtocolError("watch stream line is not an object", endpoint=self.endpoint)
        if isinstance(body.get("error"), dict):
            raise error_from_json(body["error"], self.endpoint)
        response = WatchResponse.from_json(body)
        if response.created and not self.created.called:
            self._cancel_timer()
            self.created.callback(response.revision)
        if response.canceled:
            if response.compact_revision:
                end = WatchEnd(
                    f"start revision compacted (now at {response.compact_revision})",
                    compact_revision=response.compact_revision,
                )
            else:
                end = WatchEnd(f"canceled by etcd: {response.cancel_reason or 'no reason'}")
            self._finish(end)
            return
        if response.events:
            self.on_response(response)

    def _stream_ended(self, _: bytes) -> None:
        self._stream = None
        if self.active:
            self._finish(
                WatchEnd(
                    "stream ended",
                    EtcdUnavailable("etcd closed the watch stream", endpoint=self.endpoint),
                )
            )

    def _stream_failed(self, failure: Failure) -> None:
        self._stream = None
        if not self.active:
            return
        error = failure.value
        if not isinstance(error, EtcdError):
            self._on_failure()
            error = EtcdUnavailable(
                f"watch stream cut: {failure.getErrorMessage()}", endpoint=self.endpoint
            )
        self._finish(WatchEnd("stream failed", error))

    def _cancel_timer(self) -> None:
        if self._creation_timer is not None and self._creation_timer.active():
            self._creation_timer.cancel()
        self._creation_timer = None

    def _finish(self, end: WatchEnd) -> None:
        if not self.active:
            return
        self._cancel_timer()
        if not self.created.called:
            self.created.callback(None)
        self.ended.callback(end)
        for pending in (self._request, self._stream):
            if pending is not None and not pending.called:
                pending.addErrback(lambda _: None)
                pending.cancel()
        self._request = self._stream = None

    def stop(self) -> None:
        """End the watch (``ended`` fires with reason ``stopped``) and close its stream."""
        self._finish(WatchEnd("stopped"))


def _discard(response: IResponse) -> None:
    """Read and drop a body nobody wants, closing its connection."""
    reader = read_lines(response, lambda line: None, 1)
    reader.addErrback(lambda _: None)
    reader.cancel()

"""Questions the manager asks a connected agent (remoted's request mechanism).

The manager sends ``#!-req <counter> <payload>`` (payload ``<component> getconfig <section>``
or ``<component> getstate``); the agent answers ``#!-req <counter> ok {json}`` or
``#!-req <counter> err <text>``. :class:`RequestTable` numbers the questions, matches each
answer to its question by counter (and agent), and fails a question when the agent is not
connected, goes away, or does not answer in time. Defaults follow Wazuh's internal options
(``remoted.request_pool=1024``, ``remoted.response_timeout=60``); an answer is bounded by
Wazuh's ``OS_MAXSTR`` (64 KiB).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from wazuhcluster.agents.control import REQUEST_PREFIX

#: Questions in flight at once (``remoted.request_pool``).
MAX_IN_FLIGHT = 1024
#: Seconds to wait for an agent's answer (``remoted.response_timeout``).
RESPONSE_TIMEOUT = 60.0
#: Largest answer accepted, in bytes (``OS_MAXSTR``).
MAX_ANSWER = 65536
#: What a UDP agent sends before its answer, and the manager after receiving one.
ACK = "ack"
#: Largest payload sent to an agent.
MAX_PAYLOAD = 1024


class RequestError(Exception):
    """A question that got no usable answer; ``str()`` is the reason."""


class AgentNotConnected(RequestError):
    """The agent has no live connection to this node (or lost it while asked)."""


class RequestTimeout(RequestError):
    """The agent did not answer within the time-out."""


class RequestPoolFull(RequestError):
    """Too many questions are waiting for answers."""


class AgentAnswerError(RequestError):
    """The agent answered ``err <text>`` (or something that is not ``ok <json>``)."""


def parse_answer(answer: str) -> Any:
    """The JSON of an ``ok {json}`` answer; :class:`AgentAnswerError` for ``err <text>`` or
    an answer that is neither."""
    status, _, rest = answer.partition(" ")
    if status == "ok":
        try:
            return json.loads(rest)
        except ValueError as error:
            raise AgentAnswerError(f"invalid JSON in the agent's answer: {error}") from None
    if status == "err":
        raise AgentAnswerError(rest.strip() or "error")
    raise AgentAnswerError(f"unexpected answer {answer[:64]!r}")


class _Pending:
    """One question waiting for its answer."""

    def __init__(self, agent_id: str, deferred: Deferred[str], timer: IDelayedCall) -> None:
        self.agent_id = agent_id
        self.deferred = deferred
        self.timer = timer


class RequestTable:
    """Questions in flight, keyed by counter.

    ``send(agent_id, message)`` delivers a message to the agent's live connection and says
    whether it could.
    """

    def __init__(
        self,
        send: Callable[[str, str], bool],
        clock: IReactorTime,
        *,
        timeout: float = RESPONSE_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        self._send = send
        self._clock = clock
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_answer = max_answer
        self._next = 0
        self._pending: dict[str, _Pending] = {}
        #: Answers that matched no question (late, unknown counter or wrong agent).
        self.unmatched = 0

    @property
    def in_flight(self) -> int:
        """How many questions wait for an answer."""
        return len(self._pending)

    def ask(self, agent_id: str, payload: str, timeout: float | None = None) -> Deferred[str]:
        """Send ``payload`` to the agent; the Deferred fires with its answer text
        (``ok {...}`` / ``err ...`` / a state's JSON) or fails with a :class:`RequestError`
        (after ``timeout`` seconds, the table's by default, without an answer)."""
        if not payload or len(payload.encode()) > MAX_PAYLOAD or "\n" in payload:
            raise ValueError("a request payload is one line of at most 1024 bytes")
        if len(self._pending) >= self.max_in_flight:
            raise RequestPoolFull("Request pool is full. Rejecting request.")
        self._next = (self._next + 1) % 0x100000000
        counter = format(self._next, "x")
        if not self._send(agent_id, f"{REQUEST_PREFIX}{counter} {payload}"):
            raise AgentNotConnected(f"Agent {agent_id} is not connected to this node")
        deferred: Deferred[str] = Deferred(lambda _: self._forget(counter))
        wait = self.timeout if timeout is None else min(timeout, self.timeout)
        timer = self._clock.callLater(wait, self._expire, counter)
        self._pending[counter] = _Pending(agent_id, deferred, timer)
        return deferred

    def answer(self, agent_id: str, text: str) -> bool:
        """Handle ``<counter> <answer>`` (what follows ``#!-req ``) from an agent; False when
        it matches no question in flight."""
        counter, _, answer = text.partition(" ")
        pending = self._pending.get(counter)
        if pending is None or pending.agent_id != agent_id:
            self.unmatched += 1
            return False
        if answer == ACK:
            return True  # a UDP agent acknowledges first; the answer follows
        self._forget(counter)
        if len(answer.encode()) > self.max_answer:
            pending.deferred.errback(
                AgentAnswerError(f"answer larger than {self.max_answer} bytes")
            )
        else:
            pending.deferred.callback(answer)
        return True

    def agent_gone(self, agent_id: str) -> None:
        """The agent lost its connection: its questions fail now."""
        for counter, pending in list(self._pending.items()):
            if pending.agent_id == agent_id:
                self._forget(counter)
                pending.deferred.errback(
                    AgentNotConnected(f"Agent {agent_id} disconnected before answering")
                )

    def stop(self) -> None:
        """The channel is stopping: every question in flight fails now."""
        for counter, pending in list(self._pending.items()):
            self._forget(counter)
            pending.deferred.errback(AgentNotConnected("the agent channel stopped"))

    def _expire(self, counter: str) -> None:
        pending = self._pending.pop(counter, None)
        if pending is not None:
            pending.deferred.errback(
                RequestTimeout(f"Response timeout for request counter '{counter}'")
            )

    def _forget(self, counter: str) -> None:
        pending = self._pending.pop(counter, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()

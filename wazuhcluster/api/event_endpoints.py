"""The Events family: ``POST /events`` analyses log lines sent through the API.

As in Wazuh (4.6 on), each line is analysed as if the manager had read it itself: agent
000, location ``API-Webhook``, queue ``1``; an alert it raises lands in the master's
alerts.json. At most 100 events a request, and (Wazuh's own limit) 30 requests a minute
(429 with 6005 beyond). A line longer than analysis takes is a failed item (1012).
"""

from __future__ import annotations

from collections.abc import Callable

from wazuhcluster.api import params as p
from wazuhcluster.api.auth import RequestLimiter
from wazuhcluster.api.context import EndpointContext
from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.api.replies import Reply, add_failure, envelope
from wazuhcluster.api.routes import Call, Route

#: The most events one request carries (Wazuh's MAX_EVENTS_PER_REQUEST).
MAX_EVENTS = 100
#: Requests a minute POST /events takes at most (Wazuh's MAX_REQUESTS_EVENTS_DEFAULT).
MAX_EVENT_REQUESTS = 30
#: The longest queue message analysis takes, header included (Wazuh's, in bytes).
MAX_MESSAGE = 65535
HEADER = "1:API-Webhook:"


class EventEndpoints:
    """``POST /events`` (see module docstring)."""

    def __init__(
        self, context: EndpointContext, clock: Callable[[], float], per_minute: int | None
    ) -> None:
        self.context = context
        budget = MAX_EVENT_REQUESTS if not per_minute else min(per_minute, MAX_EVENT_REQUESTS)
        self.limiter = RequestLimiter(budget, clock)

    async def forward(self, call: Call) -> Reply:
        """POST /events: queue each event for analysis."""
        call.access.require("event:ingest")
        if not self.limiter.allow():
            raise wazuh_error(6005)
        body = p.check_body(call.body, {"events": (list, True, 0)})
        events = body["events"]
        if len(events) > MAX_EVENTS:
            raise ApiError(
                400,
                "Events bulk size exceeded",
                f"The size of the events bulk is exceeding the limit ({MAX_EVENTS})",
            )
        if not all(isinstance(event, str) for event in events):
            raise ApiError(400, "Bad Request", "'events' must be a list of strings")
        failed: dict[int, list[str]] = {}
        accepted = []
        for event in events:
            if len((HEADER + event).encode("utf-8")) > MAX_MESSAGE:
                add_failure(failed, 1012, event[:256])
            else:
                accepted.append(event)
        if accepted:
            self.context.node.ingest_events(accepted)
        msgs = (
            "All events were forwarded to analisysd",
            "Some events were forwarded to analisysd",
            "No events were forwarded to analisysd",
        )
        return Reply(envelope(accepted, failed, *msgs))

    def routes(self) -> list[Route]:
        """The routes of this family."""
        return [
            Route(
                "POST",
                "/events",
                self.forward,
                p.COMMON,
                body="json",
                actions=("event:ingest",),
            )
        ]

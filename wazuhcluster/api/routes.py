"""What a route is: a method and path template, its parameters and its handler.

The resource matches a request to a :class:`Route`, validates it into a :class:`Call`
and awaits the route's handler for a :class:`~wazuhcluster.api.replies.Reply`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from attrs import field, frozen

from wazuhcluster.api import params as p
from wazuhcluster.api.access import Access
from wazuhcluster.api.replies import Reply


@frozen
class Call:
    """One validated request: parameters, path arguments, body and who sent it."""

    params: Mapping[str, Any] = field(factory=dict)
    path: Mapping[str, str] = field(factory=dict)
    body: Any = None
    client_ip: str = ""
    authorization: bytes | None = None
    user: str | None = None
    #: What the caller may do (from their token's roles; nothing when not logged in).
    access: Access = field(factory=Access)
    #: The caller's checked token claims (empty when not logged in).
    claims: Mapping[str, Any] = field(factory=dict)


Handler = Callable[[Call], Awaitable[Reply]]


@frozen
class Route:
    """A method and path template (``/agents/{agent_id}``) with its handler and parameters.

    ``body`` is ``"json"`` or ``"xml"`` for routes that take one; ``required`` names the
    query parameters that must be present; ``authenticated`` is False only for login.
    """

    method: str
    template: str
    handler: Handler
    params: Mapping[str, p.Parser]
    path_params: Mapping[str, p.Parser] = field(factory=dict)
    required: tuple[str, ...] = ()
    body: str | None = None
    authenticated: bool = True
    #: The RBAC actions the route needs (Wazuh's ``x-rbac-actions``; for /security/actions).
    actions: tuple[str, ...] = ()

    @property
    def pattern(self) -> re.Pattern[str]:
        """The template as a regular expression over the decoded path."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(regex + r"\Z")

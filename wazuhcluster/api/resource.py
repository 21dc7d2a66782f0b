"""The HTTP side of the API: a twisted.web resource that routes, bounds and validates.

For each request, in this order: the per-minute request budget (429: requests with a valid
token spend one budget, all others a separate one, so anonymous callers cannot starve
authenticated ones), the route (404 / 405), the body size (413), the token (401), the query
parameters (400 for unknown, malformed or missing ones), the body's content type (406) and
shape (400); only then does the endpoint run. Answers are JSON; errors use Wazuh's problem
shape. :class:`BoundedRequest` keeps a large body from being buffered by the server itself;
:class:`ApiSite` answers a request line or header over the line limit with 431 instead of
hanging up. A valid token (or a successful call with credentials, the login) admits the
connection under the listener's limits (:func:`wazuhcluster.util.limits.admit`).
"""

from __future__ import annotations

import io
import json
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import ITransport
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from wazuhcluster.api.auth import RequestLimiter
from wazuhcluster.api.endpoints import Endpoints
from wazuhcluster.api.errors import (
    PROBLEM_CONTENT_TYPE,
    ApiError,
    bad_request,
    method_not_allowed,
    not_found,
    too_large,
    wazuh_error,
)
from wazuhcluster.api.not_provided import not_provided
from wazuhcluster.api.replies import Reply
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.util.limits import admit
from wazuhcluster.util.logs import ClusterLog

MAX_PATH = 2048
IDLE_TIMEOUT = 60
MAX_QUERY = 256 * 1024
JSON_TYPES = ("application/json",)
XML_TYPES = ("application/xml", "text/xml", "application/octet-stream")


class BoundedRequest(server.Request):
    """A request that keeps at most ``max_body`` bytes of its body in memory.

    Anything beyond is dropped and the request is marked ``body_oversized``; the
    resource then answers 413 without looking at the body.
    """

    max_body = 1024 * 1024
    body_oversized = False
    content: Any

    def gotLength(self, length: int | None) -> None:
        """Always buffer in memory (the bound keeps it small), never in a temp file."""
        self.content = io.BytesIO()
        self._received = 0
        if length is not None and length > self.max_body:
            self.body_oversized = True

    def handleContentChunk(self, data: bytes) -> None:
        """Store a body chunk unless the body is already over the bound."""
        self._received += len(data)
        if self._received > self.max_body:
            self.body_oversized = True
        if not self.body_oversized:
            self.content.write(data)


#: The answer to a request line or header line over :attr:`ApiChannel.MAX_LENGTH` bytes.
LINE_TOO_LONG = json.dumps(
    {"title": "Request Header Fields Too Large", "detail": "A request or header line is too long"}
).encode("ascii")


class ApiChannel(HTTPChannel):
    """HTTP/1.1 that answers an over-long line (twisted.web just closes the connection)."""

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 - Twisted's name
        """Answer 431 and close: the client learns why instead of seeing a reset."""
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Content-Type: " + PROBLEM_CONTENT_TYPE + b"\r\n"
            b"Content-Length: " + str(len(LINE_TOO_LONG)).encode("ascii") + b"\r\n"
            b"Connection: close\r\n\r\n" + LINE_TOO_LONG
        )
        self.loseConnection()


class ApiSite(server.Site):
    """The API's Site: :class:`ApiChannel` connections, HTTP/1.1 only."""

    protocol = ApiChannel  # type: ignore[assignment]

    def acceptableProtocols(self) -> list[bytes]:  # noqa: N802 - Twisted's name
        """Offer only HTTP/1.1 in ALPN (the channel speaks nothing else)."""
        return [b"http/1.1"]


def bounded_site(resource: Resource, max_body: int) -> server.Site:
    """A Site whose requests are :class:`BoundedRequest` with ``max_body``."""

    class Request(BoundedRequest):
        pass

    Request.max_body = max_body
    # Idle connections are closed after a minute (twisted.web's default is 12 hours).
    site = ApiSite(resource, requestFactory=Request, timeout=IDLE_TIMEOUT)
    site.displayTracebacks = False
    return site


class ApiResource(Resource):
    """The whole API as one leaf resource (see module docstring)."""

    isLeaf = True

    def __init__(
        self,
        endpoints: Endpoints,
        limiter: RequestLimiter,
        max_body: int,
        unauthenticated: RequestLimiter | None = None,
    ) -> None:
        super().__init__()
        self.endpoints = endpoints
        self.limiter = limiter
        #: The budget of requests without a valid token (the same one when not given).
        self.unauthenticated = unauthenticated or limiter
        self.max_body = max_body
        self.routes = [(route, route.pattern) for route in endpoints.routes()]
        self.log = ClusterLog("Master", "API")

    def render(self, request: IRequest) -> int:
        """Start handling ``request``; the answer is written when the endpoint finishes.

        Whatever fails on the way, the endpoint or the writing of its answer, the request
        gets an error answer (Wazuh's problem JSON, 500 for what is not an API error) and
        the failure is logged: a request is never left without an answer."""
        # twisted.web's Site hands a server.Request (IRequest does not declare notifyFinish).
        request = cast(server.Request, request)
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        d = ensureDeferred(self._handle(request))
        d.addCallback(self._write, request, finished)
        d.addErrback(self._fail, request, finished)
        d.addErrback(self._unanswered, request)
        return server.NOT_DONE_YET

    # --- dispatch -----------------------------------------------------------------------
    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        methods_seen = False
        for route, pattern in self.routes:
            found = pattern.match(path)
            if found is None:
                continue
            methods_seen = True
            if route.method == method:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
        missing = not_provided(method, path)
        if missing is not None:
            raise missing
        raise method_not_allowed() if methods_seen else not_found()

    def _claims(self, authorization: bytes | None) -> dict[str, Any] | None:
        """The claims of a valid bearer token in ``authorization``, else None."""
        if not authorization or not authorization[:7].lower().startswith(b"bearer"):
            return None
        try:
            return self.endpoints.tokens.bearer(authorization)
        except ApiError:
            return None

    async def _handle(self, request: server.Request) -> Reply:
        authorization = request.getHeader(b"authorization")
        claims = self._claims(authorization)
        budget = self.limiter if claims is not None else self.unauthenticated
        if not budget.allow():
            raise wazuh_error(6001)
        if claims is not None:
            admit(request_transport(request))
        uri = request.uri.decode("ascii", "replace")
        parts = urlsplit(uri)
        path = parts.path if len(parts.path) <= MAX_PATH else ""
        if path != "/" and path.endswith("/"):
            path = path.rstrip("/")
        method = request.method.decode("ascii", "replace").upper()
        route, path_args = self._match(method, path)
        body = self._body(request) if route.body else b""
        call_params = self._query(route, parts.query)
        user: str | None = None
        granted: dict[str, Any] = {}
        if route.authenticated:
            # a missing or bad token raises the 401 here
            granted = claims if claims is not None else self.endpoints.tokens.bearer(authorization)
            user = granted["sub"]
        for name, value in path_args.items():
            path_args[name] = route.path_params.get(name, _keep)(name, value)
        parsed: Any = None
        if route.body == "json":
            _content_type(request, JSON_TYPES)
            parsed = _json(body)
        elif route.body == "xml":
            _content_type(request, XML_TYPES)
            parsed = body
        client = request.getClientAddress()
        call = Call(
            params=call_params,
            path=path_args,
            body=parsed,
            client_ip=str(getattr(client, "host", "")),
            authorization=authorization,
            user=user,
            access=self.endpoints.access(granted),
            claims=granted,
        )
        return await route.handler(call)

    def _body(self, request: server.Request) -> bytes:
        if getattr(request, "body_oversized", False):
            raise too_large(self.max_body, _declared_length(request))
        declared = _declared_length(request)
        if declared is not None and declared > self.max_body:
            raise too_large(self.max_body, declared)
        content = getattr(request, "content", None)
        if content is None:
            return b""
        content.seek(0)
        data: bytes = content.read(self.max_body + 1)
        if len(data) > self.max_body:
            raise too_large(self.max_body, None)
        return data

    def _query(self, route: Route, query: str) -> dict[str, Any]:
        if len(query) > MAX_QUERY:
            raise bad_request(f"the query string is longer than {MAX_QUERY} characters")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=200)
        except ValueError as error:
            raise bad_request(str(error)) from None
        values: dict[str, Any] = {}
        extra = sorted({name for name, _ in pairs if name not in route.params})
        if extra:
            raise bad_request(f"Extra query parameter(s) {', '.join(extra)[:256]} not in spec")
        for name, raw in pairs:
            if raw == "" and name != "q" and name != "search":
                raise bad_request(f"'{name}' has an empty value")
            values[name] = route.params[name](name, raw)
        missing = [name for name in route.required if name not in values]
        if missing:
            raise bad_request(f"Missing query parameter '{missing[0]}'")
        return values

    # --- answers ------------------------------------------------------------------------
    def _send(
        self,
        request: server.Request,
        status: int,
        body: bytes,
        content_type: bytes,
        finished: list[bool],
    ) -> None:
        if finished[0]:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.write(body)
        request.finish()

    def _write(self, reply: Reply, request: server.Request, finished: list[bool]) -> None:
        if reply.status < 400 and request.getHeader(b"authorization"):
            admit(request_transport(request))  # a successful login: the credentials were good
        pretty = _pretty(request)
        if isinstance(reply.body, str):
            body = reply.body.encode("utf-8")
        else:
            body = _dumps(reply.body, pretty)
        self._send(request, reply.status, body, reply.content_type, finished)

    def _fail(self, failure: Failure, request: server.Request, finished: list[bool]) -> None:
        error = failure.value
        if not isinstance(error, ApiError):
            self.log.failure("API call failed", failure)
            error = wazuh_error(1000, type(error).__name__)
        pretty = _pretty(request)
        body = _dumps(error.problem(), pretty)
        self._send(request, error.status, body, PROBLEM_CONTENT_TYPE, finished)

    def _unanswered(self, failure: Failure, request: server.Request) -> None:
        """Even the error answer could not be written (the connection is gone, most often)."""
        self.log.failure("Could not answer an API request", failure)
        transport = request_transport(request)
        if transport is not None:
            transport.loseConnection()


def request_transport(request: IRequest) -> ITransport | None:
    """The transport of the request's connection (None for requests built in tests)."""
    return getattr(getattr(request, "channel", None), "transport", None)


def _pretty(request: server.Request) -> bool:
    """Whether the query string asks for indented JSON (``pretty=true`` in any case).

    Read apart from the route's parameters so an error answer is indented too.
    """
    query = urlsplit((request.uri or b"").decode("ascii", "replace")).query
    if "pretty" not in query or len(query) > MAX_QUERY:
        return False
    try:
        pairs = parse_qsl(query, max_num_fields=200)
    except ValueError:
        return False
    return any(name == "pretty" and value.lower() == "true" for name, value in pairs)


def _keep(name: str, value: str) -> str:
    return value


def _declared_length(request: server.Request) -> int | None:
    header = request.getHeader(b"content-length")
    if header is None:
        return None
    try:
        return int(header)
    except ValueError:
        raise bad_request("invalid Content-Length") from None


def _content_type(request: server.Request, allowed: tuple[str, ...]) -> None:
    header = (request.getHeader(b"content-type") or b"").decode("latin-1")
    media = header.split(";")[0].strip().lower()
    if media not in allowed:
        raise wazuh_error(6002, f"expected {' or '.join(allowed)}, got {media or 'none'}")


def _json(body: bytes) -> Any:
    if not body.strip():
        raise wazuh_error(4001)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad_request("Body request is not a valid JSON") from None


def _dumps(value: Any, pretty: bool) -> bytes:
    text = json.dumps(value, indent=4 if pretty else None, ensure_ascii=False)
    return text.encode("utf-8")


__all__ = ["ApiChannel", "ApiResource", "ApiSite", "BoundedRequest", "bounded_site"]

"""ApiService: the master's HTTPS REST API as a Twisted service.

On start it makes sure HOME/etc/api holds a signing key (created, mode 0600) and a
certificate (self-signed if the operator gave none), then listens with TLS on
``<api><bind_addr>:<port>``. ``listening`` fires with the port once it listens (tests
use port 0 and read the real number from it).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from wazuhcluster.api.auth import LoginThrottle, RequestLimiter, TokenAuthority, load_or_create_key
from wazuhcluster.api.certs import ensure_certificate, server_context
from wazuhcluster.api.endpoints import Endpoints
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.interfaces import IApiNode, IRegistryFeature
from wazuhcluster.api.resource import ApiResource, bounded_site
from wazuhcluster.api.security_store import SecurityStore
from wazuhcluster.api.standby import MasterGate
from wazuhcluster.api.users import UserStore, number_users
from wazuhcluster.config.api_settings import ApiSettings
from wazuhcluster.util.interfaces import IReactorSSLTime
from wazuhcluster.util.limits import LimitedFactory, stop_serving
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import RunInThread, run_in_reactor_pool


def build_site(
    settings: ApiSettings,
    node: IApiNode,
    registry: IRegistryFeature,
    clock: Callable[[], float],
    run_in_thread: RunInThread = run_in_reactor_pool,
    hooks: ApiHooks | None = None,
    hostname: str | None = None,
) -> tuple[Site, ApiResource]:
    """The API's Site and resource over ``node`` and ``registry`` (creates the signing key)."""
    number_users(settings.users_file)
    users = UserStore(settings.users_file)
    key = load_or_create_key(settings.jwt_key_file)
    store = SecurityStore.open(settings.api_dir / "rbac.db", clock(), run_in_thread)
    store.on_changed = hooks.security_changed if hooks is not None else None
    tokens = TokenAuthority(key, users, settings.token_timeout, clock, store, settings.jwt_key_file)
    throttle = LoginThrottle(settings.max_login_attempts, settings.block_time, clock)
    endpoints = Endpoints(
        node, registry, tokens, users, throttle, run_in_thread, hooks, hostname, settings
    )
    limiter = RequestLimiter(settings.max_request_per_minute, clock)
    unauthenticated = RequestLimiter(settings.max_unauthenticated_request_per_minute, clock)
    resource = ApiResource(endpoints, limiter, settings.max_upload_size, unauthenticated)
    root: Resource = resource
    if hooks is not None and hooks.failover is not None:
        root = MasterGate(hooks.failover, settings.port, resource)
    return bounded_site(root, settings.max_upload_size), resource


class ApiService(Service):
    """Serves the REST API over HTTPS while the master runs (see module docstring)."""

    def __init__(
        self,
        settings: ApiSettings,
        node: IApiNode,
        registry: IRegistryFeature,
        reactor: IReactorSSLTime,
        hooks: ApiHooks | None = None,
        run_in_thread: RunInThread = run_in_reactor_pool,
    ) -> None:
        self.settings = settings
        self.node = node
        self.registry = registry
        self.reactor = reactor
        self.hooks = hooks
        self.run_in_thread = run_in_thread
        self.log = ClusterLog("Master", "API")
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] = Deferred()

    def startService(self) -> None:
        """Prepare the key and certificate, then listen."""
        super().startService()
        settings = self.settings
        if ensure_certificate(settings.cert, settings.key):
            self.log.info("Created a self-signed API certificate in {path}", path=settings.cert)
        site, _ = build_site(
            settings,
            self.node,
            self.registry,
            self.reactor.seconds,
            self.run_in_thread,
            self.hooks,
        )
        endpoint = SSL4ServerEndpoint(
            self.reactor,
            settings.port,
            server_context(settings.cert, settings.key),
            interface=settings.bind_addr,
        )
        # A connection is admitted by its first request with a valid token (or a successful
        # login); before that it has the handshake deadline and the pending caps.
        limited = LimitedFactory(
            site,
            self.reactor,
            self.log,
            limits=settings.limits,
            admit_on="protocol",
            credential="authenticated request",
        )
        self._factory = limited
        d = endpoint.listen(limited)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address = port.getHost()
        self.log.info(
            "REST API listening on https://{host}:{port}",
            host=getattr(address, "host", "?"),
            port=getattr(address, "port", "?"),
        )
        self.listening.callback(port)

    def _failed(self, failure: Failure) -> None:
        self.log.error("The REST API could not listen: {error}", error=failure.getErrorMessage())
        self.listening.errback(failure)

    def stopService(self) -> Deferred[None]:
        """Stop listening and close the open connections (no request is read after)."""
        super().stopService()
        port, self.port = self.port, None
        return stop_serving(port, getattr(self, "_factory", None))

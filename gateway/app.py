"""The gateway's composition root: :func:`create_app` builds everything, nothing at import.

Middleware: one pure ASGI layer of ours,
:class:`~gateway.middleware.gateway_layer.GatewayLayer`, runs every per-request concern
(each a plain object in its own module), outermost first:

1. trace context (only while no span is recorded);
2. CORS: preflights answered before anything else; CORS headers on every response, 401/500
   included;
3. the request id, one access log line per request and Prometheus counters by route;
4. the edge guards (:class:`~gateway.middleware.edge.Edge`): concurrency 503, body size
   413, per-IP/global rate limits 429;
5. unhandled errors: a bug becomes a clean 500 that the concerns above still see;
6. the login check: 401 unless public or logged in; then the per-user rate limits.

Request spans come from FastAPI's built-in OpenTelemetry support, which uses the tracer
provider :func:`kit.observability.tracing.configure_tracing` installs. While that provider
records no span (no exporter), FastAPI's telemetry is skipped (by
:meth:`GatewayApp.__call__`, before FastAPI walks the middleware stack) and the layer's
first concern (:class:`~gateway.middleware.trace_context.TraceContexts`) keeps only the
request's trace context (ids for logs and gRPC propagation).

Readiness: the lifespan marks :class:`~gateway.readiness.Readiness` started once every
client is open and stopped when it shuts down; ``/readyz`` follows it, and so does the
drain after SIGTERM (:mod:`gateway.server`).

Live settings: with etcd endpoints, the lifespan runs a :class:`~kit.liveconfig.LiveSettings`
for service ``gateway`` (:func:`kit.liveconfig.live_settings_for`), started before anything
that reads live values and stopped last. :class:`LiveGateway` applies each change: the
rate-limit rules and the concurrency cap (:meth:`Edge.apply_live`), the session check's cache
lifetime, the gRPC channels' tuning (:meth:`ServiceClients.follow`); log level, trace
sampling and feature flags (``app.state.flags``) are read where they are used.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final

import httpx
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from gateway.auth.oauth_state import StateCookies
from gateway.auth.sessions import SessionRevocations
from gateway.auth.tokens import TokenService
from gateway.auth.wechat import WechatOAuth
from gateway.deps import Clients, Runtime
from gateway.errors import install_error_handlers
from gateway.middleware.cors import CorsPolicy
from gateway.middleware.edge import Edge
from gateway.middleware.login import LoginCheck
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.trace_context import TraceContexts, telemetry_excluded
from gateway.readiness import Readiness
from gateway.routes import articles, comments, sms_login, system, users, wechat
from gateway.routes import feed as feed_routes
from gateway.routes import follow as follow_routes
from gateway.routes import pay as pay_routes
from gateway.routes import ranking as ranking_routes
from gateway.routes import reward as reward_routes
from gateway.routes import search as search_routes
from gateway.routes import tags as tag_routes
from gateway.settings import GatewaySettings
from gateway.stubs import ServiceStubs
from kit.config import FeatureFlags
from kit.grpcx.client import ServiceClients
from kit.liveconfig import LiveSettings, live_settings_for
from kit.observability.tracing import records_spans
from kit.redisx import create_redis

logger = logging.getLogger(__name__)

# Routes reachable without an access token. /users/refresh_token checks the refresh token
# itself; the SMS and WeChat routes belong to the login flows.
PUBLIC_PATHS: Final = frozenset(
    {
        "/users/signup",
        "/users/login",
        "/users/refresh_token",
        "/users/login_sms/code/send",
        "/users/login_sms",
        "/oauth2/wechat/authurl",
        "/oauth2/wechat/callback",
        # Reading comments and follower counts needs no identity (GET-only routes).
        "/comments/list",
        "/comments/replies",
        "/comments/count",
        "/follow/counts",
        # Search results are public data (published articles, profiles): no login needed.
        "/search/query",
        # The hot-article ranking is public data too.
        "/articles/ranking",
        # WeChat Pay's notifications: their signature, checked by the payment service, is
        # what authenticates them.
        "/pay/callback",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)


API_DESCRIPTION: Final = """\
Unless a route says otherwise, answers are HTTP 200 with an envelope
`{"code": int, "msg": str, "data": any}`: `code` 0 is success; 4 bad input (`msg` names
the problem: a wrong or expired SMS code, a code requested too often, a WeChat login whose
state does not match, ...); 5 system error; 401002 wrong email or password; 401003 email
already registered. Logged-in routes answer HTTP 401 with an empty body when the access token
(`Authorization: Bearer <x-jwt-token>`) is missing, invalid, expired or revoked.
"""


class LiveGateway:
    """Applies the gateway's live settings to its running parts (see the module docstring).

    Built before the parts exist; :meth:`attach` hands them over once they are open, and
    applies the values in force at once (etcd may hold values other than the environment's).
    """

    def __init__(self, settings: GatewaySettings, edge: Edge) -> None:
        self.current = settings
        self._edge = edge
        self._sessions: SessionRevocations | None = None

    def attach(self, sessions: SessionRevocations) -> None:
        """Follow the live values with ``sessions`` too; apply what is in force now."""
        self._sessions = sessions
        self.apply(self.current)

    def apply(self, settings: GatewaySettings) -> None:
        """Apply ``settings``' live values (the subscriber of :class:`LiveSettings`)."""
        self.current = settings
        self._edge.apply_live(settings.effective_rate_limits, settings.max_active_requests)
        if self._sessions is not None:
            self._sessions.cache_ttl = settings.session_check_cache_ttl

    def changed(self, old: GatewaySettings, new: GatewaySettings) -> None:
        """:meth:`LiveSettings.subscribe` callback."""
        self.apply(new)


class GatewayApp(FastAPI):
    """FastAPI whose OpenAPI schema says what the gateway really answers.

    Validation failures are envelope code 4 at HTTP 200 (gateway.errors), never the 422
    FastAPI documents by default, so those entries are removed. The edge middleware may
    refuse any route but the probes before it runs (body too large, rate limited,
    overloaded), so those answers are added to every other operation.
    """

    edge_exempt_paths: frozenset[str] = frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's app, its request telemetry skipped at once while no span is recorded.

        FastAPI's own exclusion (``telemetry["exclude"]``, :func:`telemetry_excluded`)
        would skip it too, but only after walking the whole middleware stack on every
        request (looking for a legacy OpenTelemetry middleware). Marking the scope as
        FastAPI does for an excluded request (``scope["fastapi.telemetry"] = None``) makes
        FastAPI hand the request straight to Starlette.
        """
        if scope["type"] != "http" or "fastapi.telemetry" in scope or records_spans():
            await super().__call__(scope, receive, send)
            return
        scope["fastapi.telemetry"] = None
        try:
            await super().__call__(scope, receive, send)
        finally:
            scope.pop("fastapi.telemetry", None)

    def openapi(self) -> dict[str, Any]:
        """The schema, without 422 responses, with the edge's refusals."""
        if self.openapi_schema:
            return self.openapi_schema
        schema = super().openapi()
        envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/Ack"}}}
        edge_responses = {
            "413": {"description": "Request body larger than the configured limit."},
            "429": {
                "description": "Rate limited; retry after the `Retry-After` seconds.",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": envelope,
            },
            "503": {"description": "Too many requests in progress.", "content": envelope},
        }
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                if path not in self.edge_exempt_paths:
                    for status, response in edge_responses.items():
                        responses.setdefault(status, response)
        schemas = schema.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        return schema


def create_app(
    settings: GatewaySettings,
    *,
    stubs: ServiceStubs | None = None,
    wechat_transport: httpx.AsyncBaseTransport | None = None,
) -> GatewayApp:
    """Build the gateway.

    Args:
        settings: the process settings.
        stubs: the stubs of every service, to use instead of discovering the services
            (tests: fakes); the caller then owns their channels. Default: discovered in the
            lifespan (:meth:`ServiceStubs.discover`).
        wechat_transport: the HTTP transport to WeChat's API (tests: an in-process
            emulator); default: the network.

    Clients are opened by the app's lifespan, so requests are served only inside it
    (uvicorn runs it; tests enter ``app.router.lifespan_context(app)``).
    """
    # httpx logs every request's full URL at INFO; WeChat's token URL carries the app
    # secret and the person's code, which must never reach the logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    tokens = TokenService(
        access_key=settings.jwt_access_key.get_secret_value(),
        refresh_key=settings.jwt_refresh_key.get_secret_value(),
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
    )
    state_cookies = StateCookies(
        key=settings.wechat_state_key.get_secret_value(),
        ttl=settings.wechat_state_ttl,
        secure=settings.state_cookie_secure,
    )
    runtime = Runtime(settings, tokens, state_cookies)
    routes = RouteTemplates()
    edge = Edge(settings.effective_edge)
    applied = LiveGateway(settings, edge)
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # Started first and stopped last: every part starts on the values in force.
            live: LiveSettings[GatewaySettings] | None = live_settings_for("gateway", settings)
            if live is not None:
                await live.start()
                stack.push_async_callback(live.stop)
                applied.current = live.current
                live.subscribe(applied.changed)
            services = stubs
            if services is None:
                clients = ServiceClients.from_settings(applied.current)
                if live is not None:
                    clients.follow(live)
                stack.push_async_callback(clients.close)
                services = await ServiceStubs.discover(clients)
            redis = create_redis(
                settings.redis_url,
                timeout=settings.redis_timeout_seconds,
                fallback_wait=settings.redis_fallback_wait_seconds,
            )
            stack.push_async_callback(redis.aclose, close_connection_pool=True)
            # Registered after Redis, so the limiters stop before their client closes.
            edge.open(redis)
            stack.push_async_callback(edge.aclose)
            sessions = SessionRevocations(
                redis,
                ttl=settings.refresh_ttl,
                on_error=settings.session_check_on_redis_error,
                cache_ttl=applied.current.session_check_cache_ttl,
                feed=settings.session_revocation_feed,
                feed_max_lag=settings.session_revocation_feed_max_lag_seconds,
                fail_static=settings.session_check_fail_static_seconds,
            )
            # Registered after Redis, so the subscription ends before its client closes.
            sessions.start()
            stack.push_async_callback(sessions.aclose)
            applied.attach(sessions)
            http = httpx.AsyncClient(
                transport=wechat_transport, timeout=settings.wechat_timeout, follow_redirects=False
            )
            stack.push_async_callback(http.aclose)
            wechat_oauth = WechatOAuth(
                http,
                app_id=settings.wechat_app_id,
                app_secret=settings.wechat_app_secret.get_secret_value(),
                authorize_base=settings.wechat_authorize_base,
                api_base=settings.wechat_api_base,
                redirect_uri=settings.wechat_redirect_uri,
            )
            runtime.open(Clients(stubs=services, sessions=sessions, wechat=wechat_oauth))
            stack.callback(runtime.close)
            logger.info(
                "gateway ready",
                extra={"peers": settings.peers, "etcd": settings.etcd_endpoints},
            )
            readiness.mark_started()
            yield
            readiness.mark_stopped()
            logger.info("gateway shutting down")

    # One layer runs every per-request concern, in this order: trace context, CORS
    # (wrapping everything else, so 401/413/429/503 answers carry its headers), request id
    # + access log + metrics (so refusals by the guards are logged and counted), the
    # guards, unhandled errors, the login check, per-user rate limits.
    layer = edge.layer(
        routes,
        cors=CorsPolicy(settings.cors_allow_origins),
        login=LoginCheck(runtime, PUBLIC_PATHS),
        # Only while no span is recorded (FastAPI's telemetry is excluded then): the
        # request's trace context for logs and gRPC calls, without FastAPI's span work.
        trace_contexts=TraceContexts(),
        readiness=readiness,
    )
    app = GatewayApp(
        title="webook gateway",
        description=API_DESCRIPTION,
        version="1.0.0",
        lifespan=lifespan,
        middleware=[layer],
        # Tracing is configured by kit (configure_tracing); FastAPI must not add exporters
        # from OTEL_* variables on its own. One server span per request (parent of the gRPC
        # client spans); FastAPI's operation spans (dependencies, endpoint, serialisation)
        # are off: on GET /articles/pub/:id they doubled the spans per request (3 -> 6) for
        # ~80 µs of CPU (python -m bench.gateway_cpu) and add little to the request span.
        # While the process records no span, TraceContexts stands in for it.
        telemetry={
            "auto_configure": False,
            "operation_spans": False,
            "exclude": telemetry_excluded,
        },
    )
    app.edge_exempt_paths = frozenset(settings.edge.exempt_paths)
    app.state.runtime = runtime
    app.state.live = applied
    app.state.readiness = readiness
    app.state.flags = FeatureFlags(lambda: applied.current)
    install_error_handlers(app)
    # The hottest route on the app's own router, tried right after FastAPI's documentation
    # routes and before every included router (it shares no path with them, so the order
    # changes no answer).
    articles.add_reader_route(app.router)
    app.include_router(users.router)
    app.include_router(articles.router)
    app.include_router(comments.router)
    app.include_router(follow_routes.router)
    app.include_router(search_routes.router)
    app.include_router(ranking_routes.router)
    app.include_router(reward_routes.router)
    app.include_router(pay_routes.router)
    app.include_router(feed_routes.router)
    app.include_router(tag_routes.router)
    app.include_router(sms_login.router)
    app.include_router(wechat.router)
    app.include_router(system.router)
    routes.index(app.routes)
    return app

"""The edge middleware, composed from :class:`~gateway.middleware.edge_settings.EdgeSettings`.

:class:`EdgeMiddleware` builds the ordered middleware lists of any Starlette/FastAPI app
and owns the rate limiters' lifecycle. Three groups, because they belong at three places
of a chain (outermost first)::

    CORS                        (answers preflights; headers on every answer, 429 included)
    *edge.outer                 [tracing,] request id
    access log, metrics         (see every request, the refused ones too, with their id)
    *edge.guards                concurrency (503), body size (413), rate limit ip/global (429)
    unhandled errors, login check
    *edge.after_login           rate limit per user (429): needs the user the login check found
    routes

The guards sit inside the access log and metrics so that 503/413/429 answers are logged
with their request id and counted by route and status, and outside everything else so a
refused request costs no token check, session lookup or route work. An app without a login
check can put ``after_login`` right after ``guards`` (or use :attr:`EdgeMiddleware.all`).

The gateway does not use these lists: it runs the same concerns, as the plain objects
:attr:`EdgeMiddleware.request_ids`, :attr:`~EdgeMiddleware.concurrency`,
:attr:`~EdgeMiddleware.body_limit`, :attr:`~EdgeMiddleware.limits` with
:attr:`~EdgeMiddleware.ip_rules` and :attr:`~EdgeMiddleware.user_rules`, in one layer
(:class:`~gateway.middleware.gateway_layer.GatewayLayer`), in the same order.

Lifecycle: Redis-backed rules need a client; call :meth:`EdgeMiddleware.open` with it when
the app starts (in its lifespan) and ``await`` :meth:`EdgeMiddleware.aclose` when it stops.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from starlette.middleware import Middleware

from gateway.middleware.body_limit import BodyLimit, BodyLimitMiddleware
from gateway.middleware.client_ip import TrustedProxies
from gateway.middleware.concurrency import ConcurrencyLimit, ConcurrencyLimitMiddleware
from gateway.middleware.edge_settings import EdgeSettings, KeyBy
from gateway.middleware.ratelimit import RateLimitMiddleware, RateLimits
from gateway.middleware.request_id import RequestIdMiddleware, RequestIds
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.tracing import TracingMiddleware
from kit.ratelimit import Clock


class EdgeMiddleware:
    """The edge middleware lists and the rate limiters behind them.

    Args:
        settings: the edge settings.
        routes: route templates for span names (only used with ``settings.tracing``).
        clock: monotonic clock of the in-process limiters (tests).
    """

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        routes: RouteTemplates | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """Build the lists; no I/O (Redis comes with :meth:`open`)."""
        self.settings = settings
        self.proxies = TrustedProxies(
            (str(n) for n in settings.trusted_proxies),
            ipv6_prefix_length=settings.ipv6_prefix_length,
        )
        self.limits = RateLimits(
            settings.rate_limits,
            proxies=self.proxies,
            exempt_paths=settings.exempt_paths,
            key_prefix=settings.redis_key_prefix,
            batching=settings.redis_batching,
            retry_interval=settings.backend_retry_interval,
            local_max_keys=settings.local_max_keys,
            clock=clock,
        )
        self.request_ids = RequestIds(
            header=settings.request_id_header, trust_incoming=settings.trust_incoming_request_id
        )
        """The request-id concern, for a layer that runs it with others."""
        self.concurrency = (
            None
            if settings.max_active_requests is None
            else ConcurrencyLimit(settings.max_active_requests, exempt_paths=settings.exempt_paths)
        )
        """The concurrency cap (None: off), for a layer that runs it with others."""
        self.body_limit = (
            None if settings.max_body_bytes is None else BodyLimit(settings.max_body_bytes)
        )
        """The body size limit (None: off), for a layer that runs it with others."""
        ip_keys: tuple[KeyBy, ...] = ("ip", "global")
        user_keys: tuple[KeyBy, ...] = ("user",)
        self.ip_rules = self.limits.rules_for(ip_keys)
        """The rules checked with the guards (per IP and global)."""
        self.user_rules = self.limits.rules_for(user_keys)
        """The rules checked after the login check (per user)."""
        tracing = []
        if settings.tracing:
            tracing.append(Middleware(TracingMiddleware, routes=routes))
        outer = [*tracing]
        outer.append(
            Middleware(
                RequestIdMiddleware,
                header=settings.request_id_header,
                trust_incoming=settings.trust_incoming_request_id,
            )
        )
        guards = []
        if settings.max_active_requests is not None:
            guards.append(
                Middleware(
                    ConcurrencyLimitMiddleware,
                    max_active=settings.max_active_requests,
                    exempt_paths=settings.exempt_paths,
                )
            )
        if settings.max_body_bytes is not None:
            guards.append(Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes))
        if self.ip_rules:
            guards.append(Middleware(RateLimitMiddleware, limits=self.limits, keys=ip_keys))
        after_login = []
        if self.user_rules:
            after_login.append(Middleware(RateLimitMiddleware, limits=self.limits, keys=user_keys))
        self.tracing: list[Middleware] = tracing
        """Tracing, if enabled (the first part of :attr:`outer`)."""
        self.outer: list[Middleware] = outer
        """Request id (and tracing): just inside CORS, outside the access log."""
        self.guards: list[Middleware] = guards
        """Concurrency, body size, ip/global rate limits: inside access log and metrics."""
        self.after_login: list[Middleware] = after_login
        """The per-user rate limit: inside the login check."""

    @property
    def all(self) -> list[Middleware]:
        """Every group in order, for apps with no other middleware between them."""
        return [*self.outer, *self.guards, *self.after_login]

    def open(self, redis: aioredis.Redis) -> None:
        """Use ``redis`` (owned by the caller) for the Redis-backed rate limits."""
        self.limits.open(redis)

    async def aclose(self) -> None:
        """Stop background work (the Redis limiters' batch flushers)."""
        await self.limits.aclose()

"""The edge concerns built from :class:`~gateway.middleware.edge_settings.EdgeSettings`, and
the one middleware that runs them.

:class:`Edge` turns the settings into the plain objects
:class:`~gateway.middleware.gateway_layer.GatewayLayer` runs: the request ids, the
concurrency cap and the body limit (None when off), the rate limits with their two groups of
rules (per IP and global, checked with the guards; per user, checked after the login check).
:meth:`Edge.layer` is the middleware of an app (the gateway's, or any Starlette/FastAPI
app's): the layer with these concerns and the ones the app adds (CORS, the login check,
the trace context), in the layer's fixed order.

Lifecycle: Redis-backed rules need a client; call :meth:`Edge.open` with it when the app
starts (in its lifespan) and ``await`` :meth:`Edge.aclose` when it stops.
"""

from __future__ import annotations

import time
from typing import Final

import redis.asyncio as aioredis
from starlette.middleware import Middleware

from gateway.middleware.body_limit import BodyLimit
from gateway.middleware.client_ip import TrustedProxies
from gateway.middleware.concurrency import ConcurrencyLimit
from gateway.middleware.cors import CorsPolicy
from gateway.middleware.edge_settings import EdgeSettings, KeyBy
from gateway.middleware.gateway_layer import GatewayLayer
from gateway.middleware.login import LoginCheck
from gateway.middleware.ratelimit import RateLimits
from gateway.middleware.request_id import RequestIds
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.trace_context import TraceContexts
from kit.ratelimit import Clock

# The concerns of GatewayLayer that come from the settings (attributes of Edge).
_LAYER_CONCERNS: Final = (
    "request_ids",
    "concurrency",
    "body_limit",
    "limits",
    "ip_rules",
    "user_rules",
)
_IP_KEYS: tuple[KeyBy, ...] = ("ip", "global")
_USER_KEYS: tuple[KeyBy, ...] = ("user",)


class Edge:
    """The edge concerns of one app and the rate limiters behind them.

    Args:
        settings: the edge settings.
        clock: monotonic clock of the in-process limiters (tests).
    """

    def __init__(self, settings: EdgeSettings, *, clock: Clock = time.monotonic) -> None:
        """Build the concerns; no I/O (Redis comes with :meth:`open`)."""
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
        self.concurrency = (
            None
            if settings.max_active_requests is None
            else ConcurrencyLimit(settings.max_active_requests, exempt_paths=settings.exempt_paths)
        )
        """The concurrency cap (None: off)."""
        self.body_limit = (
            None if settings.max_body_bytes is None else BodyLimit(settings.max_body_bytes)
        )
        """The body size limit (None: off)."""
        self.ip_rules = self.limits.rules_for(_IP_KEYS)
        """The rules checked with the guards (per IP and global)."""
        self.user_rules = self.limits.rules_for(_USER_KEYS)
        """The rules checked after the login check (per user)."""

    def layer(
        self,
        routes: RouteTemplates,
        *,
        cors: CorsPolicy | None = None,
        login: LoginCheck | None = None,
        trace_contexts: TraceContexts | None = None,
    ) -> Middleware:
        """The app's middleware: :class:`GatewayLayer` with these concerns and the given ones.

        Args:
            routes: the app's route templates (index them once the routes exist).
            cors: the CORS policy (None: no CORS headers, no preflight answers).
            login: the login check (None: every path is public).
            trace_contexts: the trace context while no span is recorded (None: off).
        """
        own = {name: getattr(self, name) for name in _LAYER_CONCERNS}
        return Middleware(
            GatewayLayer,
            routes=routes,
            cors=cors,
            login=login,
            trace_contexts=trace_contexts,
            **own,
        )

    def open(self, redis: aioredis.Redis) -> None:
        """Use ``redis`` (owned by the caller) for the Redis-backed rate limits."""
        self.limits.open(redis)

    async def aclose(self) -> None:
        """Stop background work (the Redis limiters' batch flushers)."""
        await self.limits.aclose()

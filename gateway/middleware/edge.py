"""The edge concerns built from :class:`~gateway.middleware.edge_settings.EdgeSettings`, and
the one middleware that runs them.

:class:`Edge` turns the settings into the plain objects
:class:`~gateway.middleware.gateway_layer.GatewayLayer` runs: the request ids, the
concurrency cap and the body limit (None when off), the rate limits with their two groups of
rules (per IP and global, checked with the guards; per user, checked after the login check).
:meth:`Edge.layer` is the middleware of an app (the gateway's, or any Starlette/FastAPI
app's): the layer with these concerns and the ones the app adds (CORS, the login check,
the trace context), in the layer's fixed order.

Live settings: :meth:`Edge.apply_live` takes the rate-limit rules and the concurrency cap
that the gateway's configuration centre may change at run time (``GatewaySettings``:
``rate_limits``, ``max_active_requests``) and applies them to the running concerns at once;
every other edge setting is restart-only.

Lifecycle: Redis-backed rules need a client; call :meth:`Edge.open` with it when the app
starts (in its lifespan) and ``await`` :meth:`Edge.aclose` when it stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis
from starlette.middleware import Middleware

from gateway.middleware.body_limit import BodyLimit
from gateway.middleware.client_ip import TrustedProxies
from gateway.middleware.concurrency import ConcurrencyLimit
from gateway.middleware.cors import CorsPolicy
from gateway.middleware.edge_settings import EdgeSettings, KeyBy, RateLimitRule
from gateway.middleware.gateway_layer import GatewayLayer
from gateway.middleware.login import LoginCheck
from gateway.middleware.ratelimit import RateLimits
from gateway.middleware.request_id import RequestIds
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.trace_context import TraceContexts
from gateway.readiness import Readiness
from kit.ratelimit import Clock

logger = logging.getLogger(__name__)

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
        readiness: Readiness | None = None,
    ) -> Middleware:
        """The app's middleware: :class:`GatewayLayer` with these concerns and the given ones.

        Args:
            routes: the app's route templates (index them once the routes exist).
            cors: the CORS policy (None: no CORS headers, no preflight answers).
            login: the login check (None: every path is public).
            trace_contexts: the trace context while no span is recorded (None: off).
            readiness: the process's readiness (answers close their connection while it
                drains; None: never).
        """
        own = {name: getattr(self, name) for name in _LAYER_CONCERNS}
        return Middleware(
            GatewayLayer,
            routes=routes,
            cors=cors,
            login=login,
            trace_contexts=trace_contexts,
            readiness=readiness,
            **own,
        )

    def apply_live(
        self, rate_limits: Sequence[RateLimitRule], max_active_requests: int | None
    ) -> None:
        """Apply the live edge values: the rule table and the concurrency cap.

        ``rate_limits`` replaces the rules (a no-op when equal to those in force);
        ``max_active_requests`` moves the cap of a running concurrency concern (None: back
        to ``settings.max_active_requests``). A cap cannot be switched on live when the
        process started without one: that is logged, and the cap stays off.
        """
        if tuple(rate_limits) != tuple(rule.config for rule in self.limits.rules):
            self.limits.replace(rate_limits)
        cap = max_active_requests or self.settings.max_active_requests
        concurrency = self.concurrency
        if concurrency is None:
            if max_active_requests is not None:
                logger.warning(
                    "the concurrency cap is off in this process (edge.max_active_requests "
                    "null at start); a live max_active_requests needs a restart to apply",
                    extra={"max_active_requests": max_active_requests},
                )
            return
        if cap is not None and cap != concurrency.max_active:
            logger.info(
                "concurrency cap changed",
                extra={"before": concurrency.max_active, "after": cap},
            )
            concurrency.max_active = cap

    def open(self, redis: aioredis.Redis) -> None:
        """Use ``redis`` (owned by the caller) for the Redis-backed rate limits."""
        self.limits.open(redis)

    async def aclose(self) -> None:
        """Stop background work (the Redis limiters' batch flushers)."""
        await self.limits.aclose()

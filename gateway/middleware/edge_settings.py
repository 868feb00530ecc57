"""Settings of the edge concerns: rate-limit rules, policies and request limits.

:class:`EdgeSettings` is a plain pydantic model, meant to be embedded in a process's
settings (``GatewaySettings.edge``), so it can come from one JSON environment variable
(``WEBOOK_GATEWAY_EDGE='{"max_body_bytes": 2097152}'``); every field has a production
default. :data:`DEFAULT_RATE_LIMITS` documents the default rules.
"""

from __future__ import annotations

from typing import Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator, model_validator

from kit.ratelimit import Algorithm, FailurePolicy, Quota

KeyBy = Literal["ip", "user", "global"]
"""What a rule counts per: the client IP, the logged-in user, or the whole cluster."""

Backend = Literal["redis", "local"]
"""Where a rule's state lives: Redis (shared by every replica) or this process."""


class RateLimitRule(BaseModel):
    """One rate limit: a quota per key on a group of routes.

    A request must pass every rule that matches it, checked in order (the first refusal
    stops the checks; rules before it have already counted the request).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    """Names the rule in metrics, logs and Redis keys."""
    paths: tuple[str, ...] = Field(min_length=1)
    """Glob patterns (``fnmatch``: ``*`` also matches ``/``) matched against the whole path."""
    methods: frozenset[str] | None = None
    """HTTP methods the rule applies to; None: all."""
    key: KeyBy
    """``user`` rules apply only to requests with a logged-in user (``state["uid"]``)."""
    algorithm: Algorithm = Algorithm.TOKEN_BUCKET
    limit: int = Field(ge=1)
    """Requests per ``period``."""
    period: float = Field(gt=0)
    """Seconds."""
    burst: int | None = Field(default=None, ge=1)
    """Bucket capacity for the token and leaky buckets (default ``limit``)."""
    backend: Backend = "redis"
    on_backend_error: FailurePolicy = FailurePolicy.LOCAL
    """What the rule does while Redis is unreachable (``redis`` backend only)."""

    @field_validator("methods")
    @classmethod
    def _upper_case(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        return None if value is None else frozenset(m.upper() for m in value)

    @property
    def quota(self) -> Quota:
        """The rule's quota."""
        return Quota(self.limit, self.period, self.burst)


DEFAULT_RATE_LIMITS: Final[tuple[RateLimitRule, ...]] = (
    # Password login and signup: brute force and account farming, per client IP.
    RateLimitRule(
        name="auth_ip",
        paths=("/users/login", "/users/signup"),
        key="ip",
        limit=60,
        period=60,
        burst=20,
    ),
    # Each code costs an SMS: an exact window, never more than 5 a minute per IP.
    RateLimitRule(
        name="sms_code_ip",
        paths=("/users/login_sms/code/send",),
        key="ip",
        algorithm=Algorithm.SLIDING_WINDOW,
        limit=5,
        period=60,
    ),
    # The other public routes of the login flows.
    RateLimitRule(
        name="public_ip",
        paths=("/users/login_sms", "/users/refresh_token", "/oauth2/*"),
        key="ip",
        limit=60,
        period=60,
        burst=20,
    ),
    # Public full-text search: each query costs the search service real work, and one
    # client could otherwise take its capacity from everyone. 2/s sustained per IP with
    # bursts of 30 leaves room for search-as-you-type and paging; a NAT of many readers
    # shares it, hence more than a person needs.
    RateLimitRule(
        name="search_ip",
        paths=("/search/query",),
        key="ip",
        limit=120,
        period=60,
        burst=30,
    ),
    # Logged-in traffic per user: 10/s sustained, bursts of 100 (a page load fans out).
    RateLimitRule(name="user", paths=("*",), key="user", limit=600, period=60, burst=100),
    # The whole cluster's cap, a safety net for the services behind the gateway. Without
    # Redis there is no cluster-wide count, and per-replica caps would need the replica
    # count: it fails open.
    RateLimitRule(
        name="global",
        paths=("*",),
        key="global",
        algorithm=Algorithm.SLIDING_WINDOW_APPROX,
        limit=5000,
        period=1,
        on_backend_error=FailurePolicy.FAIL_OPEN,
    ),
)


class EdgeSettings(BaseModel):
    """Everything the edge concerns are configured with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id_header: str = "X-Request-ID"
    trust_incoming_request_id: bool = True
    """Keep a well-formed incoming request id (set by a front proxy) instead of a new one."""
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    """Networks whose ``X-Forwarded-For`` is believed (ingress, load balancers)."""
    ipv6_prefix_length: int = Field(default=64, ge=1, le=128)
    """IPv6 clients are rate limited per network of this prefix length."""
    max_active_requests: int | None = Field(default=512, ge=1)
    """Concurrent requests per process before answering 503; None: no limit."""
    max_body_bytes: int | None = Field(default=1024 * 1024, ge=0)
    """Largest request body accepted (413 beyond); None: no limit."""
    exempt_paths: tuple[str, ...] = ("/healthz", "/readyz", "/metrics")
    """Exact paths never rate limited nor refused for concurrency (probes, scrapes)."""
    rate_limits: tuple[RateLimitRule, ...] = DEFAULT_RATE_LIMITS
    redis_key_prefix: str = "webook:ratelimit"
    redis_batching: bool = True
    """Coalesce concurrent checks of a rule into shared Redis round trips."""
    backend_retry_interval: float = Field(default=1.0, gt=0)
    """Seconds between attempts to reach Redis while it is failing."""
    local_max_keys: int = Field(default=100_000, ge=1)
    """Most keys an in-process limiter remembers (per rule)."""

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Self:
        names = [rule.name for rule in self.rate_limits]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rate limit rule names must be unique: {duplicates}")
        return self

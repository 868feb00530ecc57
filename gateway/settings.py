"""Gateway settings, read from ``WEBOOK_GATEWAY_*`` environment variables.

The two JWT keys, the WeChat app secret and the key that signs the WeChat ``state`` cookie
have marked development defaults (refused in prod mode by
:class:`kit.config.BaseServiceSettings`); the JWT keys must differ from each other, and every
HS256 key must be at least 32 bytes long. The ``metrics_port`` inherited from the base
class is not used: the gateway serves ``/metrics`` on its main port.

**Live settings** (:func:`kit.liveconfig.live_field`: also settable in etcd under
``/webook/config/<env>/gateway/<field>``, applied within a second without a restart):
``rate_limits`` and ``max_active_requests`` (over the ``edge`` values),
``session_check_cache_ttl``, and, from the base classes, ``client_tuning`` (breaker
thresholds, endpoint weights and ejection of the gRPC channels), ``log_level``,
``trace_sample_ratio``, ``gray_rollouts`` and ``feature_flags``. Every other setting is
restart-only: keys, TTLs of tokens (a change would split the tokens already issued),
addresses, the ``edge`` object itself (request ids, trusted proxies, body limit, Redis key
prefix: read once by the concerns built at start), ``session_revocation_feed`` and the
fail-static window (they shape the session check's caches), ``peer_balancing`` (the policy
a channel is built with).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from gateway.middleware.edge_settings import EdgeSettings, RateLimitRule
from kit.config import ClientSettings, Mode, PeerBalancing, dev_secret
from kit.liveconfig import live_field

# Longer than a readiness probe's detection time (period 2 s x failureThreshold 1) plus the
# endpoint update reaching the proxies, where no preStop delay already covers that.
DEFAULT_DRAIN_SECONDS = 5.0

# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_JWT_KEY_BYTES = 32

SessionCheckFallback = Literal["deny", "allow"]

ARTICLE_READ = "/webook.article.v1.ArticleService/GetPublishedById"
SEARCH = "/webook.search.v1.SearchService/Search"


def _default_peer_balancing() -> dict[str, PeerBalancing]:
    # Article reads go to the replica owning the article id on the hash ring, so each
    # replica's local cache holds its own share of the articles (docs/performance.md).
    # Searches go to the replica owning the reader's affinity key (gateway.routes.search),
    # so one reader's pages come from one index while that replica lives; a search
    # without a key falls back to round robin.
    return {
        "article": PeerBalancing(policy="consistent_hash", hash_methods={ARTICLE_READ: "id"}),
        "search": PeerBalancing(policy="consistent_hash", hash_methods={SEARCH: "affinity_key"}),
    }


class GatewaySettings(ClientSettings):
    """Everything the gateway process is configured with."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_GATEWAY_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # How long a Redis read that has a fallback (a cache, the session check, a rate-limit
    # check) waits in silence before taking it; None: a tenth of the client's timeout.
    redis_fallback_wait_seconds: float | None = Field(default=None, gt=0)
    # The Redis client's socket and connect timeout: a command unanswered this long is taken
    # as a hung Redis (kit.redisx).
    redis_timeout_seconds: float = Field(default=0.5, gt=0)
    jwt_access_key: SecretStr = dev_secret("gateway-jwt-access-key-local-only")
    jwt_refresh_key: SecretStr = dev_secret("gateway-jwt-refresh-key-local-only")
    access_ttl: timedelta = timedelta(minutes=30)
    refresh_ttl: timedelta = timedelta(days=7)
    # Glob patterns matched against the whole Origin header (fnmatch syntax).
    cors_allow_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:*", "http://127.0.0.1:*"]
    )
    # Zone in which times are formatted for clients ("YYYY-MM-DD HH:MM:SS").
    timezone: str = "Asia/Shanghai"
    # What a logged-in request gets when Redis cannot say whether its session was revoked
    # and the session is not known from before the outage (see the next setting).
    session_check_on_redis_error: SessionCheckFallback = "deny"
    # Fail-static: while Redis is unreachable, a session Redis last said was active stays
    # valid this many seconds after that (with the feed: after the revocation feed last
    # vouched for it); revocations seen meanwhile still apply. 0: off, every check
    # during an outage follows session_check_on_redis_error. docs/gateway.md, Revocation.
    session_check_fail_static_seconds: float = Field(default=300.0, ge=0)
    # Seconds a session check's answer is reused in process (default 0: ask Redis on every
    # request, so a logout bites on every replica at once); when set, a
    # session revoked through another gateway process is accepted here at most this long.
    # Live.
    session_check_cache_ttl: float = live_field(0.0, ge=0, le=1)
    # Answer session checks from memory, kept exact by Redis pub/sub: a revocation through
    # any gateway is announced in the same transaction that records it, and drops the
    # session here when it arrives (milliseconds). While the subscription is not confirmed
    # within the last session_revocation_feed_max_lag_seconds, every check asks Redis. When
    # on, session_check_cache_ttl is not used.
    session_revocation_feed: bool = True
    # The bound on staleness if the subscription stalls silently (its pings go unanswered).
    session_revocation_feed_max_lag_seconds: float = Field(default=1.0, gt=0.25)
    # Edge middleware: request ids, rate limits, concurrency and body size (one JSON value).
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    # Live: the rate-limit rules in force, replacing edge.rate_limits as a whole when set
    # (a JSON list of rules, "[]": no rate limiting); None: edge.rate_limits. New rules
    # apply to the next request; a rule left unchanged keeps its counts.
    rate_limits: tuple[RateLimitRule, ...] | None = live_field(None)
    # Live: concurrent requests per process before 503, over edge.max_active_requests
    # (None: that value). Applies only where the cap is on (edge.max_active_requests not
    # null at start).
    max_active_requests: int | None = live_field(None, ge=1)
    # Seconds each gRPC call may take.
    grpc_timeout: float = Field(default=3.0, gt=0)
    # Instance choice per peer (kit.config.PeerBalancing); the default routes article reads
    # by consistent hash of the article id and searches by the reader's affinity key,
    # everything else by weighted round robin.
    peer_balancing: dict[str, PeerBalancing] = Field(default_factory=_default_peer_balancing)
    # Seconds CodeService.Send may take: longer than the sms service's own send timeout
    # (5 s), so a slow provider ends in a queued message rather than in our deadline.
    code_send_timeout: float = Field(default=6.0, gt=0)

    # Seconds the process keeps serving after SIGTERM, not ready (/readyz 503), before it
    # stops accepting connections and lets in-flight requests finish (shutdown_grace): the
    # time for load balancers to stop sending to it (docs/gateway.md, Rollouts). Unset: 5 s,
    # 0 in test mode (test stacks stop gateways all the time; a test of the drain sets it).
    # SIGINT, or a second signal, ends the drain at once.
    shutdown_drain_seconds: float | None = Field(default=None, ge=0, le=300)

    # WeChat scan login (docs/login.md). The bases are WeChat's own hosts in production and
    # the local emulator (devstack.wechat_emulator) under `make run`.
    wechat_app_id: str = "wx-webook-dev"
    wechat_app_secret: SecretStr = dev_secret("wechat-app-secret")
    wechat_authorize_base: str = "https://open.weixin.qq.com"
    wechat_api_base: str = "https://api.weixin.qq.com"
    # Where WeChat sends the browser back; its domain must be registered with WeChat.
    wechat_redirect_uri: str = "http://127.0.0.1:8080/oauth2/wechat/callback"
    # Seconds the code exchange with WeChat's API may take.
    wechat_timeout: float = Field(default=3.0, gt=0)
    # HS256 key of the signed state cookie, and how long a started login stays valid.
    wechat_state_key: SecretStr = dev_secret("gateway-wechat-state-key")
    wechat_state_ttl: timedelta = timedelta(minutes=10)
    # The cookie's Secure attribute; unset: on in prod mode, off in dev and test (plain HTTP).
    wechat_state_cookie_secure: bool | None = None

    @field_validator("access_ttl", "refresh_ttl", "wechat_state_ttl", mode="before")
    @classmethod
    def _seconds_as_ttl(cls, value: object) -> object:
        # Environment variables arrive as strings; "1800" means seconds (ISO 8601 "PT30M"
        # works too).
        if isinstance(value, str) and value.strip().isdigit():
            return timedelta(seconds=int(value))
        return value

    @field_validator("access_ttl", "refresh_ttl", "wechat_state_ttl")
    @classmethod
    def _positive_ttl(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("token lifetimes must be positive")
        return value

    @field_validator("wechat_authorize_base", "wechat_api_base", "wechat_redirect_uri")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ValueError(f"{value!r} must be an absolute http(s) URL without a fragment")
        return value

    @field_validator("wechat_authorize_base", "wechat_api_base")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if urlsplit(value).query:
            raise ValueError(f"{value!r} must be a base URL without a query")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("jwt_access_key", "jwt_refresh_key", "wechat_state_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_JWT_KEY_BYTES:
            raise ValueError(f"HS256 keys must be at least {MIN_JWT_KEY_BYTES} bytes long")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _unique_rule_names(
        cls, value: tuple[RateLimitRule, ...] | None
    ) -> tuple[RateLimitRule, ...] | None:
        if value is not None:
            names = [rule.name for rule in value]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"rate limit rule names must be unique: {duplicates}")
        return value

    @property
    def effective_rate_limits(self) -> tuple[RateLimitRule, ...]:
        """The rules in force: the live ``rate_limits`` when set, else ``edge.rate_limits``."""
        return self.edge.rate_limits if self.rate_limits is None else self.rate_limits

    @property
    def effective_edge(self) -> EdgeSettings:
        """``edge`` with the live ``rate_limits`` and ``max_active_requests`` laid over it."""
        update: dict[str, object] = {"rate_limits": self.effective_rate_limits}
        if self.max_active_requests is not None and self.edge.max_active_requests is not None:
            update["max_active_requests"] = self.max_active_requests
        return self.edge.model_copy(update=update)

    @model_validator(mode="after")
    def _distinct_keys(self) -> Self:
        if self.jwt_access_key.get_secret_value() == self.jwt_refresh_key.get_secret_value():
            raise ValueError("jwt_access_key and jwt_refresh_key must be different")
        if self.refresh_ttl < self.access_ttl:
            raise ValueError("refresh_ttl must not be shorter than access_ttl")
        state_key = self.wechat_state_key.get_secret_value()
        if state_key in (
            self.jwt_access_key.get_secret_value(),
            self.jwt_refresh_key.get_secret_value(),
        ):
            raise ValueError("wechat_state_key must differ from the JWT keys")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)

    @property
    def drain_seconds(self) -> float:
        """The drain after SIGTERM in force (see ``shutdown_drain_seconds``)."""
        if self.shutdown_drain_seconds is not None:
            return self.shutdown_drain_seconds
        return 0.0 if self.mode is Mode.TEST else DEFAULT_DRAIN_SECONDS

    @property
    def state_cookie_secure(self) -> bool:
        """Whether the WeChat state cookie is sent only over HTTPS."""
        if self.wechat_state_cookie_secure is not None:
            return self.wechat_state_cookie_secure
        return self.mode is Mode.PROD

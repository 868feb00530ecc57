"""Settings of the sms process (environment prefix ``WEBOOK_SMS_``).

Nested groups can be set as JSON (``WEBOOK_SMS_HEALTH='{"cooldown_s": 10}'``) or field by field
with ``__`` (``WEBOOK_SMS_HEALTH__COOLDOWN_S=10``); lists and maps (``PROVIDERS``, ``CALLERS``)
are JSON. ``docs/sms.md`` lists every setting.

Live (also settable in etcd, ``webookctl config set sms <field> <json>``, applied by every
sms process within a second, :mod:`kit.liveconfig`): ``provider_weights``, ``health`` and
``retry`` (the failover and retries follow them at once), besides the common ``log_level``
and ``trace_sample_ratio``. A ``health`` change gives every provider fresh detectors (a
cool-down under way keeps its end).

Restart-only, and why: ``providers`` (vendor clients, their HTTP pool and rate limiters are
built at start, and the entries hold secrets, which never go to etcd); ``delivery`` (the
worker's loop and claims are sized at start); ``code``, ``callers`` and the keys (secrets,
or read once by the authenticators); ``database_url``, ``instance_id`` and the ports and
addresses of :class:`kit.config.GrpcServiceSettings`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings, Mode, dev_secret
from kit.liveconfig import live_field

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_COUNTRY = re.compile(r"[A-Z]{2}")
# The weight of a provider that provider_weights does not name.
DEFAULT_PROVIDER_WEIGHT = 1
MAX_PROVIDER_WEIGHT = 1000
ProviderWeight = Annotated[int, Field(ge=0, le=MAX_PROVIDER_WEIGHT)]


class ProviderKind(StrEnum):
    """Which vendor client a provider entry builds."""

    LOCAL = "local"
    TENCENT = "tencent"
    ALIYUN = "aliyun"


class ProviderSettings(BaseModel):
    """One SMS provider account. Vendor fields unused by a kind are ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: ProviderKind
    # Empty: the vendor's public endpoint.
    endpoint: str = ""
    # Empty: ap-guangzhou (Tencent) or cn-hangzhou (Aliyun).
    region: str = ""
    # Tencent SecretId / Aliyun AccessKeyId, and the matching secret.
    access_key_id: str = ""
    access_key_secret: SecretStr = Field(default=SecretStr(""), repr=False)
    # Tencent SmsSdkAppId.
    app_id: str = ""
    sign_name: str = ""
    # Our template id → the vendor's template id.
    templates: dict[str, str] = Field(default_factory=dict)
    # Aliyun: our template id → variable names in argument order (default p1, p2, ...).
    template_params: dict[str, list[str]] = Field(default_factory=dict)
    timeout_s: float = Field(default=3.0, gt=0)
    # Client-side limit shared by all instances (Redis): sends per window; 0 = none.
    rate_limit: int = Field(default=0, ge=0)
    rate_window_s: float = Field(default=1.0, gt=0)
    # Local provider: the file each message is appended to.
    log_file: str = ".run/sms.log"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"provider name {self.name!r} must match {_NAME.pattern}")
        if self.kind is not ProviderKind.LOCAL:
            missing = [
                field
                for field, value in (
                    ("access_key_id", self.access_key_id),
                    ("access_key_secret", self.access_key_secret.get_secret_value()),
                    ("sign_name", self.sign_name),
                    ("app_id", self.app_id if self.kind is ProviderKind.TENCENT else "-"),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"provider {self.name}: {', '.join(missing)} must be set")
        return self


class HealthSettings(BaseModel):
    """Health detection thresholds (see ``providers/health.py``); 0 disables a detector."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consecutive_timeouts: int = Field(default=3, ge=0)
    consecutive_throttles: int = Field(default=3, ge=0)
    latency_baseline: int = Field(default=50, ge=0)
    latency_recent: int = Field(default=10, ge=0)
    latency_rise: float = Field(default=0.2, ge=0)
    latency_floor_s: float = Field(default=0.05, ge=0)
    long_tail_threshold_s: float = Field(default=1.0, gt=0)
    long_tail_ratio: float = Field(default=0.1, ge=0, le=1)
    long_tail_window: int = Field(default=50, ge=0)
    error_rate: float = Field(default=0.5, ge=0, le=1)
    error_window: int = Field(default=20, ge=0)
    min_samples: int = Field(default=10, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


class RetrySettings(BaseModel):
    """Synchronous retries around the failover (exponential backoff, full jitter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_retries: int = Field(default=1, ge=0)
    base_delay_s: float = Field(default=0.1, ge=0)
    max_delay_s: float = Field(default=1.0, ge=0)


class DeliverySettings(BaseModel):
    """The asynchronous delivery worker and the claim on records being sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_enabled: bool = True
    poll_interval_s: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=20, ge=1, le=500)
    concurrency: int = Field(default=4, ge=1)
    # One pass through the provider chain (retries and failover included) gives up after
    # this long; a synchronous send is then queued.
    send_timeout_s: float = Field(default=5.0, gt=0)
    # How long a claim on a record lasts. It must exceed send_timeout_s comfortably, or a
    # slow send could be taken over by another worker and sent twice.
    claim_ttl_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=5.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    queue_gauge_interval_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _claim_outlives_send(self) -> Self:
        if self.claim_ttl_s < 2 * self.send_timeout_s:
            raise ValueError("claim_ttl_s must be at least twice send_timeout_s")
        return self


class CodeSettings(BaseModel):
    """Verification codes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Business → SMS template id of its code message (the template gets the code as its only
    # argument). Only these businesses may ask for codes.
    templates: dict[str, str] = Field(default_factory=lambda: {"login": "login_code"})
    ttl_s: float = Field(default=600.0, gt=0)
    resend_interval_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)


class CallerSettings(BaseModel):
    """A registered SmsService caller: its static token and what it may send."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Empty: this caller authenticates with JWTs only.
    token: SecretStr = Field(default=SecretStr(""), repr=False)
    # Template ids it may send; "*" allows every template.
    templates: list[str] = Field(default_factory=list)
    # May list every caller's send records.
    admin: bool = False

    @model_validator(mode="after")
    def _strong_token(self) -> Self:
        token = self.token.get_secret_value()
        if token and len(token) < 16:
            raise ValueError("a static caller token must have at least 16 characters")
        if "." in token or any(c.isspace() for c in token):
            # Dots would make it look like a JWT; spaces cannot travel in a Bearer header.
            raise ValueError("a static caller token must not contain dots or spaces")
        return self


def _default_providers() -> list[ProviderSettings]:
    """The providers of a process that configures none: the local one (development)."""
    return [ProviderSettings(name="local", kind=ProviderKind.LOCAL)]


class SmsSettings(GrpcServiceSettings):
    """Everything the sms process reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="WEBOOK_SMS_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    database_url: str = "sqlite+aiosqlite:///.run/sms.db"
    # Name of this instance in record claims; empty: host name, pid and a random suffix.
    instance_id: str = ""
    providers: list[ProviderSettings] = Field(default_factory=lambda: _default_providers())
    # Live. Provider name → share of first attempts (smooth weighted round robin over the
    # healthy ones; failover tries the others in turn). Unnamed providers weigh 1; 0 takes a
    # provider out of rotation altogether (no first attempt, no failover), e.g. to drain a
    # vendor. At least one configured provider must weigh more than 0, and names must be
    # configured providers (a process ignores other names only while its providers are the
    # default local one).
    provider_weights: dict[str, ProviderWeight] = live_field(default_factory=dict)
    # Live: health detection thresholds and the synchronous retries.
    health: HealthSettings = live_field(default_factory=HealthSettings)
    retry: RetrySettings = live_field(default_factory=RetrySettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    code: CodeSettings = Field(default_factory=CodeSettings)
    max_numbers: int = Field(default=100, ge=1, le=200)
    # ISO 3166-1 alpha-2 codes of the countries SMS (codes included) may be sent to.
    allowed_countries: list[str] = Field(default_factory=lambda: ["CN"], min_length=1)
    # Messages (one per number) sent per UTC day by all instances together; beyond it every
    # send is refused until 00:00 UTC. It bounds what a flood of sends can cost.
    daily_limit: int = Field(default=10_000, ge=1)
    # Key of the HMAC-SHA256 under which codes are stored in Redis.
    code_hmac_key: SecretStr = dev_secret("code-hmac-key")
    # HS256 key of caller JWTs (at least 32 bytes, RFC 7518), and the audience they must name.
    caller_jwt_key: SecretStr = dev_secret("sms-caller-jwt-signing-key")
    caller_jwt_audience: str = "webook-sms"
    callers: dict[str, CallerSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_sms(self) -> Self:
        if not self.providers:
            raise ValueError("configure at least one SMS provider")
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise ValueError("provider names must be unique")
        unknown = sorted(set(self.provider_weights) - set(names))
        # Over the default providers the names cannot be judged: that is the base webookctl
        # validates a change on, which does not know a deployment's providers. A process
        # configured with its own providers refuses names it does not have.
        if unknown and self.providers != _default_providers():
            raise ValueError(f"provider_weights names providers that are not configured: {unknown}")
        if not any(self.provider_weight(name) > 0 for name in names):
            raise ValueError("provider_weights must leave at least one provider above 0")
        if self.mode is Mode.PROD and any(p.kind is ProviderKind.LOCAL for p in self.providers):
            raise ValueError(
                "the local SMS provider writes messages to a file; configure real providers "
                "(WEBOOK_SMS_PROVIDERS) before running in prod mode"
            )
        if len(self.caller_jwt_key.get_secret_value().encode()) < 32:
            raise ValueError("caller_jwt_key must be at least 32 bytes long")
        bad = [c for c in self.allowed_countries if not _COUNTRY.fullmatch(c)]
        if bad:
            raise ValueError(f"allowed_countries must be ISO 3166-1 alpha-2 codes like CN: {bad}")
        if "code" in self.callers:
            raise ValueError("caller name 'code' is reserved for the in-process code service")
        return self

    def provider_weight(self, name: str) -> int:
        """The weight of provider ``name`` (:data:`DEFAULT_PROVIDER_WEIGHT` if not named)."""
        return self.provider_weights.get(name, DEFAULT_PROVIDER_WEIGHT)

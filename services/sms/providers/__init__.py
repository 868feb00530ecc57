"""SMS providers: the port, vendor clients and the decorators composed around them.

:func:`build_provider_chain` composes, from the settings::

    RetryingProvider(                        retries with backoff + jitter
        FailoverProvider([                   weighted round robin over healthy providers
            RateLimitedProvider(client_1),   client-side limit per provider (Redis)
            client_2, ...                    (no limiter when rate_limit is 0)
        ]))

:meth:`ProviderChain.apply` carries a live change of the weights, health thresholds or
retries into the chain in place (nothing is rebuilt: health states and clients stay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from services.sms.metrics import SmsMetrics
from services.sms.providers.aliyun import DEFAULT_ENDPOINT as ALIYUN_ENDPOINT
from services.sms.providers.aliyun import AliyunConfig, AliyunSmsProvider
from services.sms.providers.failover import FailoverProvider
from services.sms.providers.health import HealthPolicy
from services.sms.providers.local import LocalSmsProvider
from services.sms.providers.port import SmsProvider
from services.sms.providers.ratelimit import RateLimitedProvider, RedisFixedWindowLimiter
from services.sms.providers.retry import RetryingProvider
from services.sms.providers.tencent import DEFAULT_ENDPOINT as TENCENT_ENDPOINT
from services.sms.providers.tencent import TencentConfig, TencentSmsProvider
from services.sms.settings import (
    HealthSettings,
    ProviderKind,
    ProviderSettings,
    RetrySettings,
    SmsSettings,
)


def health_policy(settings: HealthSettings) -> HealthPolicy:
    """The detectors' thresholds from the settings."""
    return HealthPolicy(**settings.model_dump())


def build_client(config: ProviderSettings, http: httpx.AsyncClient) -> SmsProvider:
    """The vendor client one provider entry describes."""
    if config.kind is ProviderKind.LOCAL:
        return LocalSmsProvider(config.name, Path(config.log_file))
    secret = config.access_key_secret.get_secret_value()
    if config.kind is ProviderKind.TENCENT:
        return TencentSmsProvider(
            TencentConfig(
                name=config.name,
                secret_id=config.access_key_id,
                secret_key=secret,
                app_id=config.app_id,
                sign_name=config.sign_name,
                endpoint=config.endpoint or TENCENT_ENDPOINT,
                region=config.region or "ap-guangzhou",
                templates=dict(config.templates),
                timeout_s=config.timeout_s,
            ),
            http,
        )
    return AliyunSmsProvider(
        AliyunConfig(
            name=config.name,
            access_key_id=config.access_key_id,
            access_key_secret=secret,
            sign_name=config.sign_name,
            endpoint=config.endpoint or ALIYUN_ENDPOINT,
            region=config.region or "cn-hangzhou",
            templates=dict(config.templates),
            template_params={k: list(v) for k, v in config.template_params.items()},
            timeout_s=config.timeout_s,
        ),
        http,
    )


@dataclass(frozen=True)
class ProviderChain:
    """The composed provider, its failover layer (for health and availability) and its
    retry layer."""

    provider: SmsProvider
    failover: FailoverProvider
    retrying: RetryingProvider

    def apply(self, old: SmsSettings, new: SmsSettings) -> None:
        """Follow a change of the live settings (subscriber of the sms live settings)."""
        if new.provider_weights != old.provider_weights:
            self.failover.set_weights(new.provider_weights)
        if new.health != old.health:
            self.failover.set_policy(health_policy(new.health))
        if new.retry != old.retry:
            retry = new.retry
            self.retrying.set_policy(
                max_retries=retry.max_retries,
                base_delay_s=retry.base_delay_s,
                max_delay_s=retry.max_delay_s,
            )


def build_provider_chain(
    configs: list[ProviderSettings],
    *,
    health: HealthSettings,
    retry: RetrySettings,
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    metrics: SmsMetrics,
    weights: Mapping[str, int] | None = None,
) -> ProviderChain:
    """Compose vendor clients, rate limiters, failover (``weights``: by provider name, 1 for
    those not named) and retries."""
    members: list[SmsProvider] = []
    for config in configs:
        client = build_client(config, http)
        if config.rate_limit > 0:
            limiter = RedisFixedWindowLimiter(
                redis, f"sms:ratelimit:{config.name}", config.rate_limit, config.rate_window_s
            )
            client = RateLimitedProvider(client, limiter)
        members.append(client)
    failover = FailoverProvider(members, health_policy(health), metrics, weights=weights)
    provider = RetryingProvider(
        failover,
        max_retries=retry.max_retries,
        base_delay_s=retry.base_delay_s,
        max_delay_s=retry.max_delay_s,
    )
    return ProviderChain(provider, failover, provider)

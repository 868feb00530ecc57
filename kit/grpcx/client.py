"""Channels to other services: :class:`ServiceClients`, one per process.

A process's composition root creates one ``ServiceClients`` from its settings and asks it
for a channel per target service; generated stubs use the channel unchanged::

    clients = ServiceClients.from_settings(settings)
    user = user_pb2_grpc.UserServiceStub(await clients.channel("user"))
    ...
    await clients.close()

Each channel is a :class:`kit.balancer.BalancedChannel` — smooth weighted round robin over
the instances of the service, failover of idempotent calls, ejection of failing
endpoints — fed by etcd discovery, or by a static address list when ``peers`` names the
service (or no etcd is configured). Every call is governed (tracing, metrics, deadline
propagation, circuit breaker) by one :class:`kit.governance.UnaryClientPolicy` per service,
shared by all its endpoints so that the breaker judges the service as a whole; it runs
around the balanced call (all its attempts) rather than as grpc.aio interceptors on each
endpoint channel, which costs less and records what the caller saw. Which methods may fail over is
declared in the protos (:mod:`kit.grpcx.idempotency`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import grpc

from kit.balancer import BalancedChannel, BalancerConfig, balanced_channel, static_balanced_channel
from kit.config import ClientSettings
from kit.governance import (
    BreakerConfig,
    DeadlineConfig,
    Fallback,
    GovernanceConfig,
    UnaryClientPolicy,
    aclose_interceptors,
)
from kit.grpcx.idempotency import declared_idempotent
from kit.registry import EtcdRegistry, EtcdRegistryConfig, Registry

logger = logging.getLogger(__name__)


class ServiceClients:
    """Creates, caches and closes one channel per target service."""

    def __init__(
        self,
        *,
        registry: Registry | None,
        peers: Mapping[str, str] | None = None,
        governance: GovernanceConfig | None = None,
        balancer: BalancerConfig | None = None,
        fallbacks: Mapping[str, Fallback] | None = None,
    ) -> None:
        self._registry = registry
        self._peers = dict(peers or {})
        self._governance = governance or GovernanceConfig()
        self._balancer = balancer or BalancerConfig(is_idempotent=declared_idempotent)
        self._fallbacks = dict(fallbacks or {})
        self._channels: dict[str, BalancedChannel] = {}
        self._interceptors: list[object] = []
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: ClientSettings, *, fallbacks: Mapping[str, Fallback] | None = None
    ) -> ServiceClients:
        """Clients configured by a process's settings (etcd when endpoints are set)."""
        registry = (
            EtcdRegistry(
                EtcdRegistryConfig(
                    endpoint=settings.etcd_endpoints[0], prefix=settings.registry_prefix
                )
            )
            if settings.etcd_endpoints
            else None
        )
        governance = GovernanceConfig(
            deadline=DeadlineConfig(default_timeout=settings.client_default_timeout),
            breaker=BreakerConfig(enabled=settings.client_breaker_enabled),
        )
        balancer = BalancerConfig(
            is_idempotent=declared_idempotent, max_attempts=settings.client_max_attempts
        )
        return cls(
            registry=registry,
            peers=settings.peers,
            governance=governance,
            balancer=balancer,
            fallbacks=fallbacks,
        )

    async def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to ``service`` (created on first use, then shared)."""
        async with self._lock:
            existing = self._channels.get(service)
            if existing is not None:
                return existing
            policy = UnaryClientPolicy(service, self._governance, fallbacks=self._fallbacks)
            interceptors = policy.stream_interceptors()
            if service in self._peers:
                addresses = [a.strip() for a in self._peers[service].split(",") if a.strip()]
                created = await static_balanced_channel(
                    service, addresses, self._balancer, interceptors=interceptors, policy=policy
                )
                source = "static"
            elif self._registry is not None:
                created = await balanced_channel(
                    service,
                    self._registry,
                    self._balancer,
                    interceptors=interceptors,
                    policy=policy,
                )
                source = "registry"
            else:
                # Nothing says where the service is: a channel without endpoints, whose calls
                # fail with UNAVAILABLE, so that the rest of the process keeps working.
                created = await static_balanced_channel(
                    service, [], self._balancer, interceptors=interceptors, policy=policy
                )
                source = "none"
                logger.warning(
                    "no registry and no static address for a service; its calls will fail",
                    extra={"target": service},
                )
            self._interceptors += interceptors
            self._channels[service] = created
            logger.info("client channel created", extra={"target": service, "source": source})
            return created

    async def close(self) -> None:
        """Close every channel, the interceptors' background work, and the registry."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        await aclose_interceptors(self._interceptors)
        self._interceptors.clear()
        if self._registry is not None:
            await self._registry.close()

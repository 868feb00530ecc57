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

With TLS on in the settings, every endpoint channel dials over mutual TLS and checks that
the server's certificate names the target service (:mod:`kit.security.tls`); the client
certificate files are watched, and when they change every channel re-opens its endpoint
channels with the new certificate (calls in flight finish on the old ones).

**Live tuning** (:class:`~kit.grpcx.tuning.ClientTuning`, the live ``client_tuning`` setting
of every client process, :class:`kit.config.ClientSettings`): the breaker thresholds, the
ejection tunables and per-endpoint weights of every channel change on live channels
(:meth:`ServiceClients.tune`): the next calls use them, breakers and endpoints keep their
history. A process follows its setting with :meth:`ServiceClients.follow` (its
:class:`~kit.liveconfig.LiveSettings`): the gateway in its lifespan, every service through
:func:`kit.grpcx.process.wire_clients`. Everything else about a channel (peers, policy per
peer, TLS, attempts, timeouts) is read once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from kit.balancer import (
    BalancedChannel,
    BalancerConfig,
    Policy,
    balanced_channel,
    static_balanced_channel,
)
from kit.config import ClientSettings, PeerBalancing
from kit.governance import (
    BreakerConfig,
    DeadlineConfig,
    Fallback,
    GovernanceConfig,
    UnaryClientPolicy,
)
from kit.grpcx.idempotency import declared_idempotent
from kit.grpcx.tuning import ClientTuning as ClientTuning  # re-exported: its home until moved
from kit.liveconfig import LiveSettings
from kit.registry import EtcdRegistry, EtcdRegistryConfig, Registry
from kit.security.tls import ClientTls, TlsFiles, mtls_channel_factory

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
        balancing: Mapping[str, PeerBalancing] | None = None,
        tls: ClientTls | None = None,
        tuning: ClientTuning | None = None,
    ) -> None:
        """Clients over ``registry`` (or the static ``peers``), governed and balanced.

        ``balancer`` is the configuration of every channel; ``balancing`` overrides its
        policy per target service (see :class:`kit.config.PeerBalancing`). With ``tls``,
        channels dial over mutual TLS and follow its certificate changes; ``tls`` is
        watched from the first channel on and stopped by :meth:`close`. ``tuning`` is laid
        over ``governance`` and ``balancer`` (:meth:`tune` changes it on live channels).
        """
        self._registry = registry
        self._peers = dict(peers or {})
        self._governance = governance or GovernanceConfig()
        self._balancer = balancer or BalancerConfig(is_idempotent=declared_idempotent)
        self._balancing = dict(balancing or {})
        self._fallbacks = dict(fallbacks or {})
        self._tuning = tuning or ClientTuning()
        self._channels: dict[str, BalancedChannel] = {}
        self._lock = asyncio.Lock()
        self._tls = tls
        self._unsubscribe_tls = tls.subscribe(self._reopen_channels) if tls else None

    @property
    def tls(self) -> ClientTls | None:
        """The client credentials, when channels use mutual TLS."""
        return self._tls

    @classmethod
    def from_settings(
        cls, settings: ClientSettings, *, fallbacks: Mapping[str, Fallback] | None = None
    ) -> ServiceClients:
        """Clients configured by a process's settings (etcd when endpoints are set, mutual
        TLS when the TLS files are); raises :class:`kit.security.tls.TlsMaterialError` when
        the TLS files cannot be loaded."""
        registry = (
            EtcdRegistry(
                EtcdRegistryConfig(
                    endpoint=settings.etcd_endpoints[0],
                    prefix=settings.registry_prefix,
                    username=settings.etcd_username,
                    password=settings.etcd_password.get_secret_value(),
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
        files = TlsFiles.from_settings(settings)
        tls = ClientTls(files, settings.tls_reload_seconds) if files is not None else None
        return cls(
            registry=registry,
            peers=settings.peers,
            governance=governance,
            balancer=balancer,
            fallbacks=fallbacks,
            balancing=settings.peer_balancing,
            tls=tls,
            tuning=_tuning_of(settings),
        )

    async def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to ``service`` (created on first use, then shared)."""
        async with self._lock:
            existing = self._channels.get(service)
            if existing is not None:
                return existing
            config = self._tuned_config(service)
            policy = UnaryClientPolicy(service, self._tuned_governance(), fallbacks=self._fallbacks)
            factory = None
            if self._tls is not None:
                factory = mtls_channel_factory(service, self._tls, options=config.channel_options)
                self._tls.start()
            if service in self._peers:
                addresses = [a.strip() for a in self._peers[service].split(",") if a.strip()]
                created = await static_balanced_channel(
                    service, addresses, config, policy=policy, channel_factory=factory
                )
                source = "static"
            elif self._registry is not None:
                created = await balanced_channel(
                    service, self._registry, config, policy=policy, channel_factory=factory
                )
                source = "registry"
            else:
                # Nothing says where the service is: a channel without endpoints, whose calls
                # fail with UNAVAILABLE, so that the rest of the process keeps working.
                created = await static_balanced_channel(
                    service, [], config, policy=policy, channel_factory=factory
                )
                source = "none"
                logger.warning(
                    "no registry and no static address for a service; its calls will fail",
                    extra={"target": service},
                )
            weights = self._tuning.endpoint_weights.get(service)
            if weights:
                created.reconfigure(config, weights)
            self._channels[service] = created
            logger.info(
                "client channel created",
                extra={
                    "target": service,
                    "source": source,
                    "policy": config.policy.value,
                    "tls": self._tls is not None,
                },
            )
            return created

    def _config_for(self, service: str) -> BalancerConfig:
        """The balancer configuration of ``service``: the shared one, or its hash policy."""
        balancing = self._balancing.get(service)
        if balancing is None or balancing.policy == Policy.WEIGHTED_ROUND_ROBIN.value:
            return self._balancer
        for method, path in balancing.hash_methods.items():
            check_hash_field(service, method, path)
        return dataclasses.replace(
            self._balancer,
            policy=Policy(balancing.policy),
            hash_methods=dict(balancing.hash_methods),
        )

    @property
    def tuning(self) -> ClientTuning:
        """The live tunables in force."""
        return self._tuning

    def tune(self, tuning: ClientTuning) -> None:
        """Apply ``tuning`` to every channel now and to those created later.

        Each channel's breaker takes the new thresholds (keeping its history), its
        endpoints the new ejection tunables and weights (keeping their health); calls
        already started finish as they began.
        """
        self._tuning = tuning
        governance = self._tuned_governance()
        for service, channel in self._channels.items():
            channel.reconfigure(self._tuned_config(service), tuning.endpoint_weights.get(service))
            policy = channel.policy
            if isinstance(policy, UnaryClientPolicy):
                policy.reconfigure(governance)
        logger.info(
            "client tuning applied",
            extra={"channels": sorted(self._channels), "tuning": tuning.model_dump()},
        )

    def follow(self, live: LiveSettings[Any]) -> None:
        """Apply the ``client_tuning`` of ``live`` now and after each change of it."""
        tuning = _tuning_of(live.current)
        if tuning is not None and tuning != self._tuning:
            self.tune(tuning)

        def changed(old: Any, new: Any) -> None:
            tuning = _tuning_of(new)
            if tuning is not None and tuning != _tuning_of(old):
                self.tune(tuning)

        live.subscribe(changed)

    def _tuned_governance(self) -> GovernanceConfig:
        return dataclasses.replace(
            self._governance, breaker=self._tuning.breaker(self._governance.breaker)
        )

    def _tuned_config(self, service: str) -> BalancerConfig:
        return self._tuning.balancer(self._config_for(service))

    def _reopen_channels(self) -> None:
        """New client credentials: every channel re-opens its endpoint channels."""
        for channel in self._channels.values():
            channel.reopen()

    async def close(self) -> None:
        """Stop watching the TLS files; close every channel and the registry."""
        if self._tls is not None:
            await self._tls.stop()
        if self._unsubscribe_tls is not None:
            self._unsubscribe_tls()
            self._unsubscribe_tls = None
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._registry is not None:
            await self._registry.close()


def _tuning_of(settings: object) -> ClientTuning | None:
    """The ``client_tuning`` of a process's settings, if its settings class has one."""
    tuning = getattr(settings, "client_tuning", None)
    return tuning if isinstance(tuning, ClientTuning) else None


def check_hash_field(service: str, method: str, path: str) -> None:
    """Raise ``ValueError`` unless ``path`` names a scalar field of ``method``'s request.

    ``method`` is a full name (``/package.Service/Method``) of a loaded proto (importing a
    stub module loads it); ``path`` is dotted through message fields (``"user.id"``).
    """
    where = f"peer_balancing[{service!r}]"
    proto_service, _, name = method.lstrip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(f"{proto_service}.{name}")
    except KeyError:
        raise ValueError(f"{where}: {method} is not a method of any loaded proto") from None
    message = descriptor.input_type
    parts = path.split(".")
    for index, part in enumerate(parts):
        field = message.fields_by_name.get(part)
        if field is None:
            raise ValueError(f"{where}: {message.full_name} has no field {part!r} ({method})")
        last = index == len(parts) - 1
        if field.is_repeated or (last and field.message_type is not None):
            raise ValueError(
                f"{where}: {message.full_name}.{part} is not a single scalar value ({method})"
            )
        if not last:
            if field.message_type is None:
                raise ValueError(
                    f"{where}: {message.full_name}.{part} is not a message, so {path!r} "
                    f"cannot go on ({method})"
                )
            message = field.message_type

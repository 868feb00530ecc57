"""The wiring every service process shares, so a composition root holds only its domain.

A service's ``build_runner`` creates a :class:`~kit.grpcx.server.ServiceRunner` and calls:

- :func:`wire_backends`: the SQL engine (the SQLite directory made first), its session
  factory and Redis, both closed by the runner after in-flight calls drained;
- :func:`wire_clients`: the process's channels to other services
  (:class:`~kit.grpcx.client.ServiceClients`), following the live ``client_tuning`` setting
  (breakers, ejection, endpoint weights) and closed after the drain;
- :func:`wire_producer`: a Kafka :class:`~kit.events.EventProducer` started before the
  server accepts calls and flushed after they drained, before the pools close (its
  configuration, :func:`producer_config`, carries the acks, idempotence, replay window and
  topic replication of the settings);
- :func:`consumer_config`: a consumer's configuration from the service's Kafka settings
  (the consumer itself is registered with ``runner.start_after_serving``).

A service that needs nothing but SQL and Redis writes only the function that builds its
servicer from the :class:`Backends` and gets its ``build_runner`` from
:func:`backed_runner`.

:class:`RunnerOptions` types the keyword arguments tests pass through ``build_runner``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypedDict, TypeVar, Unpack

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kit.config import GrpcServiceSettings
from kit.events import ConsumerConfig, EventProducer, KafkaSecurity, ProducerConfig, TopicSpec
from kit.governance import Fallback
from kit.grpcx.client import ServiceClients
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import Registration, ServiceRunner
from kit.outbox import KafkaOutboxPublisher, Outbox, OutboxRelay, RelayConfig
from kit.redisx import create_redis
from kit.sql import create_engine, ensure_sqlite_directory, session_factory


class RunnerOptions(TypedDict, total=False):
    """What ``build_runner(settings, **options)`` passes on to :class:`ServiceRunner`."""

    registration: Registration | None
    interceptors: Sequence[ServerInterceptorBase]


@dataclass(frozen=True)
class Backends:
    """The SQL engine, its session factory and the Redis client of one process."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis

    @classmethod
    def open(cls, settings: GrpcServiceSettings) -> Backends:
        """Pools for ``database_url`` and ``redis_url``; nothing connects until first use."""
        ensure_sqlite_directory(settings.database_url)
        engine = create_engine(settings.database_url, pool=settings.database_pool)
        return cls(
            engine,
            session_factory(engine),
            create_redis(settings.redis_url, fallback_wait=settings.redis_fallback_wait_seconds),
        )

    async def close(self) -> None:
        """Close Redis with its pool (the client does not own a pool it was given), then SQL."""
        await self.redis.aclose(close_connection_pool=True)
        await self.engine.dispose()


def wire_backends(runner: ServiceRunner, settings: GrpcServiceSettings) -> Backends:
    """:meth:`Backends.open`, closed by ``runner`` after the drain.

    Call it first: close hooks run in reverse order, so whatever is registered later (peer
    clients, local caches) closes before the pools it may still use.
    """
    backends = Backends.open(settings)
    runner.on_close(backends.close)
    return backends


def wire_clients(
    runner: ServiceRunner,
    settings: GrpcServiceSettings,
    *,
    fallbacks: Mapping[str, Fallback] | None = None,
) -> ServiceClients:
    """The process's channels to other services (:meth:`ServiceClients.from_settings`),
    closed by ``runner`` after the drain.

    When the process follows etcd (``runner.live``), the channels follow its live
    ``client_tuning``: the values applied at start and every later change reach the
    channels already open and those opened later (:meth:`ServiceClients.follow`), so an
    operator can retune a service's breakers, ejection or endpoint weights without restart.
    Call it after :func:`wire_backends`, so the clients close before the pools.
    """
    clients = ServiceClients.from_settings(settings, fallbacks=fallbacks)
    if runner.live is not None:
        clients.follow(runner.live)
    runner.on_close(clients.close)
    return clients


SettingsT = TypeVar("SettingsT", bound=GrpcServiceSettings)
SettingsT_contra = TypeVar("SettingsT_contra", bound=GrpcServiceSettings, contravariant=True)


class BuildRunner(Protocol[SettingsT_contra]):
    """``build_runner(settings, **options)``: the process, not yet started."""

    def __call__(
        self, settings: SettingsT_contra, /, **options: Unpack[RunnerOptions]
    ) -> ServiceRunner:
        """Build the runner inside a running event loop."""
        ...


def backed_runner(
    service: str, servicer: Callable[[Backends, SettingsT], object]
) -> BuildRunner[SettingsT]:
    """The ``build_runner`` of a service over SQL and Redis alone.

    ``servicer(backends, settings)`` builds the generated-base servicer the runner mounts;
    the pools are opened by :func:`wire_backends` and closed after the drain.
    """

    def build_runner(settings: SettingsT, /, **options: Unpack[RunnerOptions]) -> ServiceRunner:
        runner = ServiceRunner(service, settings, **options)
        runner.mount(servicer(wire_backends(runner, settings), settings))
        return runner

    return build_runner


class KafkaSettings(Protocol):
    """The Kafka settings every publishing or consuming service declares."""

    @property
    def kafka_bootstrap(self) -> str:
        """Brokers, ``host:port[,host:port]``."""

    @property
    def kafka_manage_topics(self) -> bool:
        """Create (and re-create) the topics written or read."""

    @property
    def kafka_topic_partitions(self) -> int:
        """Partitions of the topics created."""

    @property
    def kafka_replication_factor(self) -> int:
        """Copies of each partition of the topics created."""

    @property
    def kafka_min_insync_replicas(self) -> int:
        """``min.insync.replicas`` of the topics created."""

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How the service's Kafka clients authenticate (protocol, SASL login, CA)."""


class ProducerSettings(KafkaSettings, Protocol):
    """The settings a publishing service declares for its producer."""

    @property
    def event_buffer_size(self) -> int:
        """Most events waiting before new ones drop."""

    @property
    def event_flush_timeout_seconds(self) -> float:
        """How long the stop keeps delivering."""

    @property
    def kafka_acks(self) -> Literal["all", "1"]:
        """What the broker waits for before acknowledging."""

    @property
    def kafka_idempotence(self) -> bool:
        """Whether the producer is idempotent."""

    @property
    def kafka_replay_window_seconds(self) -> float:
        """Seconds of acknowledged events kept to resend after a broker lost them (0: off)."""


def wire_producer(
    runner: ServiceRunner,
    settings: ProducerSettings,
    topics: Sequence[TopicSpec],
    *,
    linger_ms: int | None = None,
) -> EventProducer:
    """An event producer for ``topics``, started before serving and stopped (flushing what
    the drained calls emitted) after the drain, before any close hook closes a pool.

    The topics are created with the process's replication (``kafka_replication_factor``,
    ``kafka_min_insync_replicas``), whatever the specs say: how many copies the cluster
    keeps is a property of the deployment, not of the topic's declaration.
    """
    return runner.start_before_serving(
        EventProducer(producer_config(runner.name, settings, topics, linger_ms=linger_ms))
    )


def producer_config(
    service: str,
    settings: ProducerSettings,
    topics: Sequence[TopicSpec],
    *,
    linger_ms: int | None = None,
) -> ProducerConfig:
    """The configuration of ``service``'s producer from its settings (see :func:`wire_producer`)."""
    config = ProducerConfig(
        bootstrap=settings.kafka_bootstrap,
        topics=_replicated(topics, settings),
        manage_topics=settings.kafka_manage_topics,
        buffer_size=settings.event_buffer_size,
        flush_timeout_s=settings.event_flush_timeout_seconds,
        replay_window_s=settings.kafka_replay_window_seconds,
        acks="all" if settings.kafka_acks == "all" else 1,
        enable_idempotence=settings.kafka_idempotence,
        client_id=f"webook-{service}",
        security=settings.kafka_security,
    )
    if linger_ms is not None:
        config = replace(config, linger_ms=linger_ms)
    return config


class OutboxSettings(KafkaSettings, Protocol):
    """What an outbox relay reads: the durability settings and the ``outbox_*`` ones."""

    @property
    def kafka_acks(self) -> Literal["all", "1"]:
        """``all`` or ``1``."""

    @property
    def kafka_idempotence(self) -> bool:
        """Whether the producer is idempotent (resolved from the mode when unset)."""

    @property
    def outbox_poll_interval_seconds(self) -> float:
        """How often an idle relay looks for rows."""

    @property
    def outbox_batch_size(self) -> int:
        """Rows claimed per round."""

    @property
    def outbox_lease_seconds(self) -> float:
        """How long a claim holds before another relay may take the rows."""

    @property
    def outbox_retention_seconds(self) -> float:
        """How long sent rows are kept."""

    @property
    def kafka_replay_window_seconds(self) -> float:
        """Seconds of sent rows published again after the broker lost them (0: off)."""


def wire_outbox_relay(
    runner: ServiceRunner,
    settings: OutboxSettings,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    topics: Sequence[TopicSpec],
) -> OutboxRelay:
    """An :class:`~kit.outbox.OutboxRelay` publishing ``outbox`` with the process's Kafka
    settings (brokers, durability, replication of the topics it creates, credentials),
    started once the runner serves and stopped before the drain."""
    publisher = KafkaOutboxPublisher(
        ProducerConfig(
            bootstrap=settings.kafka_bootstrap,
            topics=_replicated(topics, settings),
            manage_topics=settings.kafka_manage_topics,
            acks="all" if settings.kafka_acks == "all" else 1,
            enable_idempotence=settings.kafka_idempotence,
            client_id=f"webook-{runner.name}",
            security=settings.kafka_security,
        )
    )
    config = RelayConfig(
        poll_interval_s=settings.outbox_poll_interval_seconds,
        batch_size=settings.outbox_batch_size,
        lease_s=settings.outbox_lease_seconds,
        retention_s=settings.outbox_retention_seconds,
        # The same window as the buffered producer's: only a broker known to forget
        # acknowledged records (the local one) gets one.
        replay_window_s=settings.kafka_replay_window_seconds,
    )
    return runner.start_after_serving(OutboxRelay(sessions, outbox, publisher, config))


def _replicated(topics: Sequence[TopicSpec], settings: KafkaSettings) -> tuple[TopicSpec, ...]:
    """``topics`` with the process's replication factor and minimum in-sync replicas."""
    return tuple(
        replace(
            spec,
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
        for spec in topics
    )


class ConsumerSettings(KafkaSettings, Protocol):
    """The settings a consuming service declares for its consumers."""

    @property
    def kafka_session_timeout_ms(self) -> int:
        """Group session timeout."""

    @property
    def kafka_heartbeat_interval_ms(self) -> int:
        """Group heartbeat interval."""

    @property
    def kafka_lag_interval_seconds(self) -> float:
        """How often lag is refreshed and topics re-checked."""


def consumer_config(
    service: str, settings: ConsumerSettings, *, group_id: str, max_batch: int, max_wait_s: float
) -> ConsumerConfig:
    """The configuration of one of ``service``'s consumers (group and batching its own)."""
    return ConsumerConfig(
        bootstrap=settings.kafka_bootstrap,
        group_id=group_id,
        max_batch=max_batch,
        max_wait_s=max_wait_s,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        lag_interval_s=settings.kafka_lag_interval_seconds,
        manage_topics=settings.kafka_manage_topics,
        topic_partitions=settings.kafka_topic_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        topic_min_insync_replicas=settings.kafka_min_insync_replicas,
        client_id=f"webook-{service}",
        security=settings.kafka_security,
    )

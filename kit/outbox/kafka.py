"""The relay's Kafka publisher: one record at a time, acknowledged by the broker.

It reuses the buffered producer's configuration (:class:`kit.events.ProducerConfig`:
brokers, topics to manage, timeouts, client id, security) and pieces (topic creation with
:class:`kit.events.TopicAdmin`, the security options); keys are partitioned by aiokafka's
default partitioner, murmur2, as the buffered producer does, so one key's events land in
one partition whichever path wrote them. Acks and idempotence come from the configuration
(:func:`kit.grpcx.process.wire_outbox_relay` builds it from the service's Kafka settings:
``acks=all`` by default, so a row is marked sent only once the in-sync replicas have it).
After a failure the producer is replaced (dropping stale metadata) and the topics are
re-created if the broker lost them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from kit.events import ProducerConfig, TopicAdmin
from kit.outbox.relay import OutboxRecord

logger = logging.getLogger(__name__)


def _producer(config: ProducerConfig) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=config.bootstrap,
        client_id=f"{config.client_id}-outbox",
        request_timeout_ms=config.request_timeout_ms,
        acks=config.acks,
        enable_idempotence=config.enable_idempotence,
        **config.security.client_options(),
    )


class KafkaOutboxPublisher:
    """:class:`~kit.outbox.relay.OutboxPublisher` on ``aiokafka``; connects lazily."""

    def __init__(
        self,
        config: ProducerConfig,
        *,
        producer_factory: Callable[[ProducerConfig], AIOKafkaProducer] = _producer,
    ) -> None:
        self._config = config
        self._factory = producer_factory
        self._admin = TopicAdmin(
            config.bootstrap,
            request_timeout_ms=config.request_timeout_ms,
            client_id=f"{config.client_id}-outbox-admin",
            security=config.security,
        )
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def publish(self, record: OutboxRecord) -> None:
        """Send ``record`` and wait for the broker's acknowledgement."""
        producer = await self._ready()
        try:
            await producer.send_and_wait(
                record.topic, record.payload, key=record.key, headers=record.headers
            )
        except BaseException:
            await self._discard(producer)
            raise

    async def close(self) -> None:
        """Close the producer and the admin client."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _stop(producer)
        await self._admin.close()

    async def _ready(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                if self._config.manage_topics and self._config.topics:
                    await self._admin.ensure(self._config.topics)
                producer = self._factory(self._config)
                try:
                    await producer.start()
                except BaseException:
                    await _stop(producer)
                    raise
                self._producer = producer
            return self._producer

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        await _stop(producer)


async def _stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()

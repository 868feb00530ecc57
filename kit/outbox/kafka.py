"""The relay's Kafka publisher: records sent together, each acknowledged by the broker.

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
from collections.abc import Callable, Sequence

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

    async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
        """Queue every record on the producer (which batches them per partition), then wait
        for the broker's acknowledgements; per record, ``None`` or the error. After any
        failure the producer is replaced."""
        producer = await self._ready()
        errors: list[Exception | None] = [None] * len(records)
        acks: list[tuple[int, asyncio.Future[object]]] = []
        try:
            for index, record in enumerate(records):
                try:
                    ack = await producer.send(
                        record.topic, record.payload, key=record.key, headers=record.headers
                    )
                except Exception as exc:  # refused before sending (too large, no metadata)
                    errors[index] = exc
                else:
                    acks.append((index, ack))
            results = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
        except BaseException:
            await self._discard(producer)
            raise
        for (index, _), outcome in zip(acks, results, strict=True):
            if isinstance(outcome, BaseException):
                errors[index] = (
                    outcome if isinstance(outcome, Exception) else RuntimeError(repr(outcome))
                )
        if any(error is not None for error in errors):
            await self._discard(producer)
        return errors

    async def close(self) -> None:
        """Close the producer and the admin client."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _stop(producer)
        await self._admin.close()

    async def _ready(self) -> AIOKafkaProducer:
        ready = self._producer
        if ready is not None:  # every publish but the first after a (re)connect
            return ready
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

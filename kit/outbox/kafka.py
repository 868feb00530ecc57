"""The relay's Kafka publisher: records sent together, each acknowledged by the broker.

It reuses the buffered producer's configuration (:class:`kit.events.ProducerConfig`:
brokers, topics to manage, timeouts, client id, security) and pieces (topic creation with
:class:`kit.events.TopicAdmin`, the security options); keys are partitioned by aiokafka's
default partitioner, murmur2, as the buffered producer does, so one key's events land in
one partition whichever path wrote them. Acks and idempotence come from the configuration
(:func:`kit.grpcx.process.wire_outbox_relay` builds it from the service's Kafka settings:
``acks=all`` by default, so a row is marked sent only once the in-sync replicas have it).
After a failure the producer is replaced (dropping stale metadata) and the topics are
re-created if the broker lost them; so they are before a publish that follows
``idle_recheck_s`` without a success, because tansu, restarted meanwhile, acknowledges and
discards writes from a producer holding the old metadata.

It also notices a broker that lost records it had acknowledged (the local broker keeps its
logs in memory): a topic it had published to that had to be created again, a topic whose
partitions changed since it last wrote to it (tansu re-creates a lost topic, with its own
partition count, when any client asks for its metadata), or an acknowledged offset not
above the last one it saw in that partition (offsets only grow, so the log started anew).
:meth:`KafkaOutboxPublisher.lost_acknowledged` reports it to the relay, which publishes its
replay window again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from kit.events import ProducerConfig, TopicAdmin
from kit.events.producer import ack_position
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
        self._high_water: dict[tuple[str, int], int] = {}
        self._partitions: dict[str, frozenset[int]] = {}
        self._loss: str | None = None
        self._stale = False
        self._last_success = time.monotonic()

    async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
        """Queue every record on the producer (which batches them per partition), then wait
        for the broker's acknowledgements; per record, ``None`` or the error. After any
        failure the producer is replaced."""
        producer = await self._ready()
        # Offsets acknowledged before these records were sent: theirs must be higher.
        before = dict(self._high_water)
        errors: list[Exception | None] = [None] * len(records)
        acks: list[tuple[int, asyncio.Future[object]]] = []
        try:
            for topic in {record.topic for record in records}:
                await self._check_partitions(producer, topic)
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
            else:
                self._check_offset(outcome, before)
                self._last_success = time.monotonic()
        if self._stale or any(error is not None for error in errors):
            # After a loss too: tansu acknowledges and discards what a producer holding the
            # lost topics' metadata sends, so the next publish starts from fresh metadata.
            self._stale = False
            await self._discard(producer)
        return errors

    def lost_acknowledged(self) -> str | None:
        """Why the broker lost acknowledged records since the last call, or ``None``."""
        loss, self._loss = self._loss, None
        return loss

    async def _check_partitions(self, producer: AIOKafkaProducer, topic: str) -> None:
        try:
            found = await producer.partitions_for(topic)
        except Exception:  # no metadata: the send fails and says why
            return
        partitions = frozenset(found or ())
        known = self._partitions.get(topic)
        if known is not None and partitions and partitions != known:
            self._note_loss(f"partitions of {topic} changed: {sorted(partitions)}")
        if partitions:
            self._partitions[topic] = partitions

    def _check_offset(self, acknowledged: object, before: dict[tuple[str, int], int]) -> None:
        position = ack_position(acknowledged)
        topic = getattr(acknowledged, "topic", None)
        if position is None or not isinstance(topic, str):
            return
        partition, offset = position
        where = (topic, partition)
        earlier = before.get(where)
        if earlier is not None and offset <= earlier:
            self._note_loss(f"offsets of partition {partition} of {topic} went back")
            before[where] = -1  # the log started anew: its marks start over from here
            self._high_water[where] = offset
            return
        self._high_water[where] = max(offset, self._high_water.get(where, -1))

    def _note_loss(self, why: str) -> None:
        self._stale = True
        if self._loss is None:
            self._loss = why
            logger.warning("the broker lost acknowledged records", extra={"loss": why})

    async def close(self) -> None:
        """Close the producer and the admin client."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _stop(producer)
        await self._admin.close()

    async def _ready(self) -> AIOKafkaProducer:
        ready = self._producer
        idle = time.monotonic() - self._last_success > self._config.idle_recheck_s
        if ready is not None and not idle:  # a busy relay's publishes
            return ready
        async with self._lock:
            if self._config.manage_topics and self._config.topics:
                if await self._topics_lost() and self._producer is not None:
                    stale, self._producer = self._producer, None
                    await _stop(stale)
            if self._producer is None:
                producer = self._factory(self._config)
                try:
                    await producer.start()
                except BaseException:
                    await _stop(producer)
                    raise
                self._producer = producer
            return self._producer

    async def _topics_lost(self) -> bool:
        """Create the configured topics that are missing; whether one had records of ours."""
        created = await self._admin.ensure(self._config.topics)
        self._last_success = time.monotonic()  # checked: the next publishes need not
        lost = created & {topic for topic, _ in self._high_water}
        if not lost:
            return False
        self._note_loss(f"topics {sorted(lost)} had to be created again")
        self._high_water = {
            where: offset for where, offset in self._high_water.items() if where[0] not in lost
        }
        return True

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        await _stop(producer)


async def _stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()

"""Records across a real broker restart (tansu keeps its logs in memory): the relay's replay
window, and a running consumer reading the restarted logs from their start.

The relay test writes rows in a steady stream while the broker is SIGKILLed and started
again empty; a consumer group reads the topic throughout. Every row must reach the
consumer: the ones the broker acknowledged and then lost come back through the relay's
replay window.

In tests/chaos, so ``make chaos`` runs it and ``make test`` leaves it out (up to a minute a
database; tests/chaos/conftest.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from devstack.infra import ManagedProcess
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    EventProducer,
    ProducerConfig,
    TopicHandler,
    TopicSpec,
    ensure_topics,
    protobuf_decoder,
)
from kit.events.tests.support import consumer_config, producer_config, unique
from kit.events.tests.support import eventually as within
from kit.outbox import KafkaOutboxPublisher, OutboxRelay, RelayConfig
from kit.outbox.tests.test_outbox import DEADLINE_S, Db, db, eventually, rows
from webook.events.v1 import events_pb2

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

__all__ = ["db"]  # the fixture, shared with test_outbox.py

# Rows written before, during and after the broker's absence (one every few milliseconds).
ROWS = 600
KEYS = 20


async def test_rows_the_restarted_broker_lost_are_published_again(
    db: Db, kafka_server: ManagedProcess, kafka_bootstrap: str
) -> None:
    topic = f"webook.test.outbox-loss-{uuid.uuid4().hex[:8]}"
    received: set[int] = set()

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleWithdrawn]]) -> None:
        await asyncio.sleep(0.02)  # a batch is often in flight when the broker dies
        received.update(e.payload.article_id for e in batch)

    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, f"loss-{uuid.uuid4().hex[:8]}", topic_partitions=3),
        {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleWithdrawn), collect)},
    )
    publisher = KafkaOutboxPublisher(
        ProducerConfig(bootstrap=kafka_bootstrap, topics=(TopicSpec(topic, 3),))
    )
    relay = OutboxRelay(
        db.sessions,
        db.outbox,
        publisher,
        RelayConfig(
            poll_interval_s=0.05,
            replay_window_s=60.0,
            publish_timeout_s=5.0,
            retry_backoff_max_s=2.0,
        ),
    )

    async def write(first: int, last: int) -> None:
        for n in range(first, last):
            async with db.sessions() as session:
                db.outbox.add(
                    session, topic, n % KEYS, events_pb2.ArticleWithdrawn(article_id=n, at_ms=n)
                )
                await session.commit()
            await asyncio.sleep(0.003)

    consumer.start()
    relay.start()
    try:
        await write(0, ROWS // 3)
        assert await within(lambda: len(received) >= ROWS // 6, DEADLINE_S)
        await asyncio.to_thread(kafka_server.kill)
        await write(ROWS // 3, 2 * ROWS // 3)  # acknowledged to the writers: in the outbox
        await asyncio.to_thread(kafka_server.start)
        await write(2 * ROWS // 3, ROWS)

        async def all_sent() -> bool:
            return all(row.sent_ms is not None for row in await rows(db))

        await eventually(all_sent, "every row is sent")
        assert await within(lambda: len(received) == ROWS, DEADLINE_S), sorted(
            set(range(ROWS)) - received
        )[:50]
    finally:
        await relay.stop()
        await consumer.stop()


async def test_a_running_consumer_reads_a_restarted_log_from_its_start(
    kafka_server: ManagedProcess, kafka_bootstrap: str
) -> None:
    """The broker restarts empty and another client re-creates the topic before the consumer
    notices: the records written to the new log (an outbox relay's replay) all arrive,
    although the consumer's old positions are past their offsets.
    """
    topic, group = unique("relog"), unique("group")
    received: list[int] = []

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        received.extend(e.payload.article_id for e in batch)

    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, group, lag_interval_s=0.5),
        {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleRead), collect)},
    )
    before = EventProducer(producer_config(kafka_bootstrap, topic))
    before.start()
    consumer.start()
    try:
        for i in range(200):
            before.publish(topic, i, events_pb2.ArticleRead(article_id=i))
        assert await before.flush(20)
        assert await within(lambda: len(set(received)) == 200, 40)
        await before.stop()

        kafka_server.kill()
        kafka_server.start()
        await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 2)])
        after = EventProducer(producer_config(kafka_bootstrap, topic, replay_window_s=0))
        after.start()
        try:
            for i in range(1000, 1050):
                after.publish(topic, i, events_pb2.ArticleRead(article_id=i))
            assert await after.flush(30)
        finally:
            await after.stop()
        assert await within(lambda: set(range(1000, 1050)) <= set(received), 40), sorted(
            set(range(1000, 1050)) - set(received)
        )
    finally:
        await consumer.stop()
        await before.stop()

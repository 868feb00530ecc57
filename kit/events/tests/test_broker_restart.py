"""Producer and consumer across a broker restart (tansu keeps topics and offsets in memory).

While the broker is down, publishing never blocks: events are buffered up to the bound and
the excess is dropped and counted. Once the broker is back (empty: its topics and the group's
offsets are gone), the producer re-creates its topics and delivers the buffer, and the
running consumer re-joins and receives it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from devstack.infra import ManagedProcess
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    EventProducer,
    TopicHandler,
    protobuf_decoder,
)
from kit.events.tests.support import (
    consumer_config,
    eventually,
    metric,
    producer_config,
    unique,
)
from webook.events.v1 import events_pb2

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


async def test_buffered_events_are_delivered_after_the_broker_returns(
    kafka_server: ManagedProcess, kafka_bootstrap: str
) -> None:
    topic, group = unique("restart"), unique("group")
    received: list[int] = []

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        received.extend(e.payload.article_id for e in batch)

    producer = EventProducer(producer_config(kafka_bootstrap, topic, buffer_size=50))
    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, group, lag_interval_s=0.5),
        {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleRead), collect)},
    )
    producer.start()
    consumer.start()
    try:
        for i in range(10):
            producer.publish(topic, i, events_pb2.ArticleRead(article_id=i))
        assert await eventually(lambda: len(received) == 10, 20)

        kafka_server.kill()
        try:
            started = time.monotonic()
            accepted = [
                producer.publish(topic, i, events_pb2.ArticleRead(article_id=i))
                for i in range(10, 70)
            ]
            assert time.monotonic() - started < 0.5
            assert accepted.count(True) == 50
            assert metric("webook_kafka_producer_dropped_total", topic=topic) == 10
            assert await eventually(
                lambda: metric("webook_kafka_produced_total", topic=topic, result="error") > 0, 10
            )
            assert producer.pending == 50
        finally:
            kafka_server.start()

        assert await eventually(lambda: len(received) >= 60, 40)
    finally:
        await consumer.stop()
        await producer.stop()
    assert sorted(set(received)) == list(range(60))
    assert producer.pending == 0


async def test_acknowledged_events_the_broker_lost_are_sent_again(
    kafka_server: ManagedProcess, kafka_bootstrap: str
) -> None:
    """Events acknowledged, then lost with the broker's memory before anyone consumed them."""
    topic, group = unique("replay"), unique("group")
    received: list[int] = []

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        received.extend(e.payload.article_id for e in batch)

    producer = EventProducer(producer_config(kafka_bootstrap, topic))
    producer.start()
    try:
        for i in range(20):
            producer.publish(topic, i, events_pb2.ArticleRead(article_id=i))
        assert await producer.flush(20)

        kafka_server.kill()
        kafka_server.start()
        # After the restart the broker knows nothing of the 20 acknowledged events.
        producer.publish(topic, 20, events_pb2.ArticleRead(article_id=20))
        assert await producer.flush(30)
        assert metric("webook_kafka_producer_replayed_total", topic=topic) == 20

        consumer = BatchConsumer(
            consumer_config(kafka_bootstrap, group),
            {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleRead), collect)},
        )
        consumer.start()
        try:
            assert await eventually(lambda: len(set(received)) == 21, 40)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    assert sorted(received) == list(range(21))

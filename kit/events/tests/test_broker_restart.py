"""Producer and consumer across a broker restart (tansu keeps topics and offsets in memory).

While the broker is down, publishing never blocks: events are buffered up to the bound and
the excess is dropped and counted. Once the broker is back (empty: its topics and the group's
offsets are gone), the producer re-creates its topics and delivers the buffer, and the
running consumer re-joins and receives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.infra import ManagedProcess, free_port, kafka_process
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    EventProducer,
    TopicHandler,
    protobuf_decoder,
)
from kit.events.logcheck import LogAnchor, LogChecker
from kit.events.security import KafkaSecurity
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
            # publish() is synchronous: it cannot wait for the broker, only buffer or drop.
            accepted = [
                producer.publish(topic, i, events_pb2.ArticleRead(article_id=i))
                for i in range(10, 70)
            ]
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


async def test_the_log_checker_tells_a_replaced_log_from_the_same_one(tmp_path: Path) -> None:
    broker = kafka_process(free_port(), tmp_path)
    broker.die_with_parent = True
    broker.start()
    bootstrap = next(a for a in broker.argv if a.startswith("--listener-url=")).split("//")[1]
    topic = unique("anchors")
    checker = LogChecker(
        bootstrap, client_id="test", request_timeout_ms=3000, security=KafkaSecurity()
    )

    async def log(count: int) -> dict[TopicPartition, LogAnchor]:
        """Publish ``count`` records with a fresh producer; the last one of each partition."""
        producer = EventProducer(producer_config(bootstrap, topic))
        producer.start()
        try:
            for i in range(count):
                producer.publish(topic, i, events_pb2.ArticleRead(article_id=i))
            assert await producer.flush(30)
        finally:
            await producer.stop()
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await reader.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(2)]
            reader.assign(partitions)
            await reader.seek_to_beginning(*partitions)
            last: dict[TopicPartition, LogAnchor] = {}
            seen = 0
            while seen < count:
                for tp, records in (await reader.getmany(timeout_ms=1000)).items():
                    seen += len(records)
                    last[tp] = LogAnchor.of(records[-1])
            return last
        finally:
            await reader.stop()

    try:
        anchors = await log(20)
        assert len(anchors) == 2
        assert await checker.replaced(anchors) == set()

        broker.kill()
        # Unreachable: nothing can be told, nothing is reported.
        assert await checker.replaced(anchors) == set()
        broker.start()
        await log(4)  # a new log, shorter than the anchors' offsets
        assert await checker.replaced(anchors) == set(anchors)

        broker.kill()
        broker.start()
        renewed = await log(60)  # a new log longer than the old one
        assert await checker.replaced(anchors) == set(anchors)
        assert await checker.replaced(renewed) == set()
    finally:
        await checker.close()
        broker.stop()

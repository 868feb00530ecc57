"""A :class:`BatchConsumer` is caught up once it committed up to the end offsets its
partitions had when it first owned them, against the session's real broker (tansu)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    EventProducer,
    TopicHandler,
    TopicSpec,
    ensure_topics,
    protobuf_decoder,
)
from kit.events.tests.support import consumer_config, eventually, producer_config, unique
from webook.events.v1 import events_pb2

pytestmark = pytest.mark.integration

# Generous: joining a group takes about half the session timeout, and the machine running
# the suite may be busy.
DEADLINE_S = 30.0
PARTITIONS = 2


def read(article_id: int) -> events_pb2.ArticleRead:
    return events_pb2.ArticleRead(article_id=article_id, user_id=7, at_ms=1)


async def publish(bootstrap: str, topic: str, ids: range) -> None:
    producer = EventProducer(producer_config(bootstrap, topic))
    producer.start()
    try:
        for i in ids:
            assert producer.publish(topic, i, read(i))
        assert await producer.flush(10)
    finally:
        await producer.stop()


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The sum of the group's committed offsets, read without joining the group."""
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await client.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        client.assign(tps)
        return sum([await client.committed(tp) or 0 for tp in tps])
    finally:
        await client.stop()


class Gate:
    """A batch handler that applies batches only while open, recording the ids applied."""

    def __init__(self, *, open_: bool = True) -> None:
        self.open = asyncio.Event()
        if open_:
            self.open.set()
        self.ids: list[int] = []

    async def __call__(self, batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        await self.open.wait()
        self.ids.extend(event.payload.article_id for event in batch)


def consumer(bootstrap: str, group: str, topic: str, handler: Gate) -> BatchConsumer:
    return BatchConsumer(
        consumer_config(bootstrap, group, max_batch=20, topic_partitions=PARTITIONS),
        {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleRead), handler)},
    )


async def test_an_empty_topic_is_caught_up_once_assigned(kafka_bootstrap: str) -> None:
    topic, group = unique("caught-empty"), unique("group")
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    empty = consumer(kafka_bootstrap, group, topic, Gate())
    empty.start()
    try:
        assert await empty.wait_caught_up(DEADLINE_S)
        assert empty.assignment
    finally:
        await empty.stop()


async def test_caught_up_when_every_record_published_before_the_start_is_committed(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("caught-backlog"), unique("group")
    await publish(kafka_bootstrap, topic, range(100))
    handler = Gate(open_=False)
    backlog = consumer(kafka_bootstrap, group, topic, handler)
    backlog.start()
    try:
        assert await backlog.wait_assigned(DEADLINE_S)
        # Assigned, the backlog not applied: not caught up, however long it waits.
        assert not await backlog.wait_caught_up(1.0)
        handler.open.set()
        assert await backlog.wait_caught_up(DEADLINE_S)
        # Caught up means applied and committed, not merely fetched.
        assert sorted(handler.ids) == list(range(100))
        assert await committed_total(kafka_bootstrap, group, topic) == 100
        # Records published later are lag, not a loss of the flag.
        handler.open.clear()
        await publish(kafka_bootstrap, topic, range(100, 110))
        await asyncio.sleep(1.0)
        assert backlog.caught_up
        handler.open.set()
        assert await eventually(lambda: len(handler.ids) == 110, DEADLINE_S)
    finally:
        await backlog.stop()


async def test_a_group_that_had_read_everything_is_caught_up_without_new_records(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("caught-resume"), unique("group")
    await publish(kafka_bootstrap, topic, range(30))
    first_handler = Gate()
    first = consumer(kafka_bootstrap, group, topic, first_handler)
    first.start()
    try:
        assert await first.wait_caught_up(DEADLINE_S)
    finally:
        await first.stop()
    # The next member of the group reads nothing (its offsets are at the end), yet is
    # caught up: its committed offsets come from the broker.
    second_handler = Gate()
    second = consumer(kafka_bootstrap, group, topic, second_handler)
    second.start()
    try:
        assert await second.wait_caught_up(DEADLINE_S)
        assert second_handler.ids == []
    finally:
        await second.stop()

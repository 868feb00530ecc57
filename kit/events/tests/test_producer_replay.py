"""The producer's replay window, over a fake broker client that can lose its logs.

The fake stands in for ``aiokafka``'s producer only: it keeps one log per (topic,
partition), acknowledges each record with its offset, and :meth:`FakeBroker.lose` empties
every log as a broker restarted without its data does. What the producer must do then is
in :mod:`kit.events.producer` (replay window); the same loss on the real broker is in
``test_broker_restart.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from aiokafka import AIOKafkaProducer

from kit.events import EventProducer, ProducerConfig
from kit.events.tests.support import eventually, metric, unique
from webook.events.v1 import events_pb2

PARTITIONS = 2


@dataclass(frozen=True)
class Ack:
    """What ``aiokafka``'s ``RecordMetadata`` tells of an acknowledgement."""

    partition: int
    offset: int


@dataclass
class FakeBroker:
    """Logs of records (article ids) per (topic, partition)."""

    logs: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def lose(self) -> None:
        """Every record is gone, as after a restart of a broker that kept them in memory."""
        self.logs.clear()

    def records(self, topic: str) -> list[int]:
        """Every record of ``topic``, all partitions."""
        return sorted(r for (t, _), log in self.logs.items() if t == topic for r in log)


class FakeClient:
    """The part of ``AIOKafkaProducer`` the event producer uses."""

    def __init__(self, broker: FakeBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        """Nothing to connect to."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Ack]:
        """Append to the key's partition and answer with an acknowledged future."""
        partition = int(key) % PARTITIONS
        log = self._broker.logs.setdefault((topic, partition), [])
        log.append(events_pb2.ArticleRead.FromString(value).article_id)
        done: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        done.set_result(Ack(partition, len(log) - 1))
        return done


def _producer(
    broker: FakeBroker, *, replay_window_s: float = 60.0, replay_max_events: int = 10_000
) -> EventProducer:
    config = ProducerConfig(
        bootstrap="unused:9092",
        manage_topics=False,
        replay_window_s=replay_window_s,
        replay_max_events=replay_max_events,
    )

    def factory(_: ProducerConfig) -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, FakeClient(broker))

    return EventProducer(config, producer_factory=factory)


async def _publish(producer: EventProducer, topic: str, ids: range) -> None:
    for article_id in ids:
        assert producer.publish(topic, article_id, events_pb2.ArticleRead(article_id=article_id))
    assert await producer.flush(5)


async def test_events_acknowledged_before_a_loss_are_sent_again() -> None:
    broker, topic = FakeBroker(), unique("replay")
    producer = _producer(broker)
    producer.start()
    try:
        await _publish(producer, topic, range(10))
        broker.lose()
        # One new event per partition: each acknowledgement's offset (0) is below the last
        # one seen there, so both partitions' kept events are sent again.
        await _publish(producer, topic, range(10, 12))
        assert await eventually(lambda: broker.records(topic) == list(range(12)), 5)
    finally:
        await producer.stop()
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 10


async def test_a_loss_on_one_partition_replays_everything_kept() -> None:
    broker, topic, other = FakeBroker(), unique("replay"), unique("other")
    producer = _producer(broker)
    producer.start()
    try:
        await _publish(producer, topic, range(10))
        await _publish(producer, other, range(100, 104))
        del broker.logs[(topic, 1)]  # odd ids of the first topic only
        await _publish(producer, topic, range(11, 12))
        assert await eventually(lambda: set(broker.records(topic)) == set(range(12)) - {10}, 5)
        # Partition 0 and the other topic did not lose anything: they get duplicates, at
        # most once per event kept.
        assert broker.logs[(topic, 0)] == [0, 2, 4, 6, 8, 0, 2, 4, 6, 8]
        assert broker.records(other) == [100, 100, 101, 101, 102, 102, 103, 103]
        # The marks start over: a second loss replays what was acknowledged since the
        # first, the replayed events included, once.
        broker.lose()
        await _publish(producer, topic, range(13, 14))
        assert await eventually(lambda: len(broker.records(topic)) == 12, 5)
        assert broker.records(topic) == sorted([*range(10), 11, 13])
    finally:
        await producer.stop()
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 10 + 11
    assert metric("webook_kafka_producer_replayed_total", topic=other) == 4 + 4


async def test_the_window_bounds_what_is_kept() -> None:
    broker, topic = FakeBroker(), unique("replay")
    producer = _producer(broker, replay_max_events=4)
    producer.start()
    try:
        await _publish(producer, topic, range(10))
        broker.lose()
        await _publish(producer, topic, range(10, 12))
        assert await eventually(lambda: len(broker.records(topic)) == 6, 5)
    finally:
        await producer.stop()
    assert broker.records(topic) == [6, 7, 8, 9, 10, 11]


async def test_replay_can_be_disabled() -> None:
    broker, topic = FakeBroker(), unique("replay")
    producer = _producer(broker, replay_window_s=0)
    producer.start()
    try:
        await _publish(producer, topic, range(6))
        broker.lose()
        await _publish(producer, topic, range(6, 8))
    finally:
        await producer.stop()
    assert broker.records(topic) == [6, 7]
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 0

"""The producer's replay window, over a fake broker client that can lose its logs.

The fake stands in for ``aiokafka``'s producer only: it keeps one log per (topic,
partition), acknowledges each record batch with the offset of its first record, and
:meth:`FakeBroker.lose` empties every log as a broker restarted without its data does. What
the producer must do then is in :mod:`kit.events.producer` (replay window); the same loss
on the real broker is in ``test_broker_restart.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import TracerProvider

from kit.events import EventProducer, ProducerConfig, encode_key
from kit.events.producer import partition_for
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
    partitions: int = PARTITIONS
    batch_capacity: int = 1_000_000
    """Most records a batch takes."""
    batches: list[tuple[str, int, int]] = field(default_factory=list)
    """(topic, partition, records) of every batch sent."""
    headers: list[list[tuple[str, bytes]]] = field(default_factory=list)
    """The headers of every record, in the order they were sent."""

    def lose(self) -> None:
        """Every record is gone, as after a restart of a broker that kept them in memory."""
        self.logs.clear()

    def records(self, topic: str) -> list[int]:
        """Every record of ``topic``, all partitions."""
        return sorted(r for (t, _), log in self.logs.items() if t == topic for r in log)


class FakeBatch:
    """The part of ``aiokafka``'s ``BatchBuilder`` the event producer uses."""

    def __init__(self, capacity: int) -> None:
        self.values: list[bytes] = []
        self.headers: list[list[tuple[str, bytes]]] = []
        self.capacity = capacity
        self.closed = False

    def append(
        self, *, timestamp: int | None, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> object | None:
        """Take the record; None if the batch is full."""
        assert not self.closed
        if len(self.values) >= self.capacity:
            return None
        self.values.append(value)
        self.headers.append(headers)
        return object()

    def close(self) -> None:
        """No more records."""
        self.closed = True


class FakeClient:
    """The part of ``AIOKafkaProducer`` the event producer uses."""

    def __init__(self, broker: FakeBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        """Nothing to connect to."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def partitions_for(self, topic: str) -> set[int]:
        """Every topic has the broker's number of partitions."""
        return set(range(self._broker.partitions))

    def create_batch(self) -> FakeBatch:
        """An empty batch."""
        return FakeBatch(self._broker.batch_capacity)

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Ack]:
        """Append the batch to the partition's log; acknowledged with its base offset."""
        assert batch.closed
        self._broker.batches.append((topic, partition, len(batch.values)))
        self._broker.headers.extend(batch.headers)
        log = self._broker.logs.setdefault((topic, partition), [])
        base = len(log)
        log.extend(events_pb2.ArticleRead.FromString(value).article_id for value in batch.values)
        done: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        done.set_result(Ack(partition, base))
        return done


def placed(article_id: int) -> int:
    """The partition of an article's events."""
    return partition_for(encode_key(article_id), range(PARTITIONS))


def fake_producer(
    broker: FakeBroker,
    *,
    replay_window_s: float = 60.0,
    replay_max_events: int = 10_000,
    linger_ms: int = 5,
    tracer_provider: TracerProvider | None = None,
) -> EventProducer:
    """An event producer whose ``aiokafka`` client is a :class:`FakeClient` of ``broker``."""
    config = ProducerConfig(
        bootstrap="unused:9092",
        manage_topics=False,
        replay_window_s=replay_window_s,
        replay_max_events=replay_max_events,
        linger_ms=linger_ms,
    )

    def factory(_: ProducerConfig) -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, FakeClient(broker))

    return EventProducer(config, producer_factory=factory, tracer_provider=tracer_provider)


async def publish_all(producer: EventProducer, topic: str, ids: range) -> None:
    for article_id in ids:
        assert producer.publish(topic, article_id, events_pb2.ArticleRead(article_id=article_id))
    assert await producer.flush(5)


async def test_events_acknowledged_before_a_loss_are_sent_again() -> None:
    broker, topic = FakeBroker(), unique("replay")
    producer = fake_producer(broker)
    producer.start()
    try:
        await publish_all(producer, topic, range(10))
        broker.lose()
        # The new events' offsets start over below the last ones seen on their partition:
        # every kept event is sent again, those of the other partition included.
        await publish_all(producer, topic, range(10, 12))
        assert await eventually(lambda: broker.records(topic) == list(range(12)), 5)
    finally:
        await producer.stop()
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 10


async def test_a_loss_on_one_partition_replays_everything_kept() -> None:
    broker, topic, other = FakeBroker(), unique("replay"), unique("other")
    on_0 = [i for i in range(10) if placed(i) == 0]
    # New events that show the losses: one on partition 1, then one anywhere.
    shows_1 = next(i for i in range(10, 100) if placed(i) == 1)
    shows_all = shows_1 + 1
    producer = fake_producer(broker)
    producer.start()
    try:
        await publish_all(producer, topic, range(10))
        await publish_all(producer, other, range(100, 104))
        del broker.logs[(topic, 1)]  # the first topic's partition 1 only
        await publish_all(producer, topic, range(shows_1, shows_1 + 1))
        assert await eventually(lambda: set(broker.records(topic)) == {*range(10), shows_1}, 5)
        # Partition 0 and the other topic did not lose anything: they get duplicates, at
        # most once per event kept.
        assert broker.logs[(topic, 0)] == on_0 + on_0
        assert broker.records(other) == [100, 100, 101, 101, 102, 102, 103, 103]
        # The marks start over: a second loss replays what was acknowledged since the
        # first, the replayed events included, once.
        broker.lose()
        await publish_all(producer, topic, range(shows_all, shows_all + 1))
        assert await eventually(lambda: len(broker.records(topic)) == 12, 5)
        assert broker.records(topic) == sorted([*range(10), shows_1, shows_all])
    finally:
        await producer.stop()
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 10 + 11
    assert metric("webook_kafka_producer_replayed_total", topic=other) == 4 + 4


async def test_the_window_bounds_what_is_kept() -> None:
    broker, topic = FakeBroker(), unique("replay")
    producer = fake_producer(broker, replay_max_events=4)
    producer.start()
    try:
        await publish_all(producer, topic, range(10))
        broker.lose()
        await publish_all(producer, topic, range(10, 12))
        assert await eventually(lambda: len(broker.records(topic)) == 6, 5)
    finally:
        await producer.stop()
    assert broker.records(topic) == [6, 7, 8, 9, 10, 11]


async def test_replay_can_be_disabled() -> None:
    broker, topic = FakeBroker(), unique("replay")
    producer = fake_producer(broker, replay_window_s=0)
    producer.start()
    try:
        await publish_all(producer, topic, range(6))
        broker.lose()
        await publish_all(producer, topic, range(6, 8))
    finally:
        await producer.stop()
    assert broker.records(topic) == [6, 7]
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 0


async def test_a_topic_whose_partitions_changed_is_replayed() -> None:
    # tansu re-creates a topic it lost, with its own partition count, when a client asks for
    # its metadata: the new events may land on partitions never written before.
    broker, topic = FakeBroker(), unique("replay")
    producer = fake_producer(broker)
    producer.start()
    try:
        await publish_all(producer, topic, range(6))
        broker.lose()
        broker.partitions = 4
        await publish_all(producer, topic, range(6, 7))
        assert await eventually(lambda: broker.records(topic) == list(range(7)), 5)
    finally:
        await producer.stop()
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 6

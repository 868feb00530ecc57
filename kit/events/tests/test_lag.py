"""The lag exporter (kit.events.lag): lag as the brokers see it, with no consumer running.

Unit tests use an in-memory offset reader; the integration tests read a real broker: the
session's for lag after a consumer stopped, one started here (and killed) for a broker
outage, and ``python -m kit.events.lag`` as the local stack starts it.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from devstack.infra import ManagedProcess, free_port, kafka_process
from devstack.lag import lag_exporter_process
from kit.events import BatchConsumer, ConsumedEvent, TopicHandler, TopicSpec, ensure_topics
from kit.events.lag import KafkaOffsetReader, LagExporter, PartitionLag, measure_lag
from kit.events.tests.support import consumer_config, eventually, metric, unique

EXPORTER_LOGGER = "kit.events.lag.exporter"


def lag_sum(group: str, topic: str) -> float:
    return metric("webook_kafka_group_lag_sum", group=group, topic=topic)


def partition_lag(group: str, topic: str, partition: int) -> float:
    return metric("webook_kafka_group_lag", group=group, topic=topic, partition=str(partition))


def metric_absent(name: str, **labels: str) -> bool:
    return REGISTRY.get_sample_value(name, labels) is None


def failures() -> float:
    return metric("webook_kafka_lag_exporter_scrape_failures_total")


class FakeOffsets:
    """An in-memory broker view; ``down`` makes every call fail like an unreachable broker."""

    def __init__(self) -> None:
        self.layout: dict[str, list[int]] = {}
        self.commits: dict[str, dict[TopicPartition, int]] = {}
        self.beginnings: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}
        self.down = False
        self.closed = 0

    def _check(self) -> None:
        if self.down:
            raise ConnectionRefusedError("broker down")

    async def groups(self) -> list[str]:
        self._check()
        return list(self.commits)

    async def partitions(self) -> dict[str, list[int]]:
        self._check()
        return self.layout

    async def committed(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        self._check()
        return {tp: o for tp, o in self.commits[group].items() if tp in partitions}

    async def watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        self._check()
        return (
            {tp: self.beginnings.get(tp, 0) for tp in partitions},
            {tp: self.ends.get(tp, 0) for tp in partitions},
        )

    async def close(self) -> None:
        self.closed += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_lag_counts_from_the_commit_or_from_the_beginning() -> None:
    assert PartitionLag("g", "t", 0, committed=3, beginning=0, end=10).lag == 7
    assert PartitionLag("g", "t", 0, committed=None, beginning=2, end=10).lag == 8
    # Committed below what retention kept: the consumer restarts at the beginning.
    assert PartitionLag("g", "t", 0, committed=1, beginning=4, end=10).lag == 6
    # A broker that lost its data: never negative.
    assert PartitionLag("g", "t", 0, committed=12, beginning=0, end=5).lag == 0


async def test_measure_covers_every_partition_of_the_topics_a_group_committed_on() -> None:
    offsets = FakeOffsets()
    offsets.layout = {"orders": [0, 1], "audit": [0]}
    offsets.ends = {
        TopicPartition("orders", 0): 10,
        TopicPartition("orders", 1): 4,
        TopicPartition("audit", 0): 50,
    }
    offsets.beginnings = {TopicPartition("orders", 1): 1}
    offsets.commits = {
        "billing": {TopicPartition("orders", 0): 7},
        "other": {TopicPartition("audit", 0): 50},
    }
    lags = await measure_lag(offsets, ["bill"])
    assert [(x.group, x.topic, x.partition, x.lag) for x in lags] == [
        ("billing", "orders", 0, 3),
        ("billing", "orders", 1, 3),  # nothing committed: from its beginning offset (1)
    ]
    assert {x.group for x in await measure_lag(offsets)} == {"billing", "other"}


async def test_failures_are_counted_logged_once_and_the_last_values_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = unique("fake-group")
    offsets = FakeOffsets()
    offsets.layout = {"orders": [0]}
    offsets.ends = {TopicPartition("orders", 0): 9}
    offsets.commits = {group: {TopicPartition("orders", 0): 4}}
    clock = FakeClock()
    exporter = LagExporter(offsets, interval_s=1, group_prefixes=[group], clock=clock)
    caplog.set_level(logging.INFO, logger=EXPORTER_LOGGER)

    assert await exporter.scrape()
    assert lag_sum(group, "orders") == 5
    assert exporter.scrape_age() == 0

    before = failures()
    offsets.down = True
    for _ in range(3):
        clock.now += 10
        assert not await exporter.scrape()
    assert failures() == before + 3
    assert offsets.closed == 3  # every failure reconnects from scratch
    assert exporter.healthy is False
    assert exporter.scrape_age() == 30
    assert lag_sum(group, "orders") == 5

    offsets.down = False
    offsets.ends = {TopicPartition("orders", 0): 12}
    assert await exporter.scrape()
    assert lag_sum(group, "orders") == 8
    assert exporter.scrape_age() == 0

    messages = [r.getMessage() for r in caplog.records if r.name == EXPORTER_LOGGER]
    assert messages == [
        "kafka lag scrape succeeded",
        "kafka lag scrape failed; retrying every interval, lag gauges keep their values",
        "kafka lag scrapes work again",
    ]


async def test_a_group_that_is_gone_stops_being_reported() -> None:
    group, kept = unique("gone"), unique("kept")
    offsets = FakeOffsets()
    offsets.layout = {"orders": [0]}
    offsets.ends = {TopicPartition("orders", 0): 3}
    offsets.commits = {group: {TopicPartition("orders", 0): 1}, kept: {}}
    exporter = LagExporter(offsets, group_prefixes=[group, kept])
    assert await exporter.scrape()
    assert partition_lag(group, "orders", 0) == 2

    del offsets.commits[group]
    assert await exporter.scrape()
    assert metric_absent("webook_kafka_group_lag", group=group, topic="orders", partition="0")
    assert metric_absent("webook_kafka_group_lag_sum", group=group, topic="orders")


async def produce(bootstrap: str, topic: str, count: int, start: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(start, start + count):
            await producer.send_and_wait(topic, str(i).encode(), key=str(i).encode())
    finally:
        await producer.stop()


@pytest.mark.integration
async def test_lag_of_a_group_whose_consumer_stopped(kafka_bootstrap: str) -> None:
    topic, group = unique("lag"), unique("lag-group")
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 2)])
    consumed, total = 4, 10
    await produce(kafka_bootstrap, topic, consumed)

    received: list[bytes] = []

    async def collect(batch: Sequence[ConsumedEvent[bytes]]) -> None:
        received.extend(event.payload for event in batch)

    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, group),
        {topic: TopicHandler(bytes, collect)},
    )
    consumer.start()
    try:
        assert await eventually(lambda: len(received) == consumed, 30)
    finally:
        # A batch being applied is finished and committed before stop() returns.
        await consumer.stop()
    await produce(kafka_bootstrap, topic, total - consumed, start=consumed)

    exporter = LagExporter(KafkaOffsetReader(kafka_bootstrap), group_prefixes=[group])
    try:
        # No consumer of the group runs now: the lag is still there, read from the broker.
        assert await exporter.scrape()
        assert lag_sum(group, topic) == total - consumed
        per_partition = [partition_lag(group, topic, p) for p in (0, 1)]
        assert sum(per_partition) == total - consumed
    finally:
        await exporter.stop()


@pytest.mark.integration
@pytest.mark.chaos
async def test_the_exporter_outlives_its_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = kafka_process(port, tmp_path)
    broker.die_with_parent = True
    broker.start()
    caplog.set_level(logging.INFO, logger=EXPORTER_LOGGER)
    exporter = LagExporter(
        KafkaOffsetReader(bootstrap, request_timeout_ms=2000),
        interval_s=0.2,
        scrape_timeout_s=10,
        group_prefixes=[unique("none")],
    )
    try:
        exporter.start()
        assert await eventually(lambda: exporter.healthy is True, 30)
        before = failures()

        broker.kill()
        assert await eventually(lambda: failures() >= before + 3, 60)
        assert exporter.healthy is False
        assert exporter.running
        assert await eventually(
            lambda: metric("webook_kafka_lag_exporter_scrape_age_seconds") > 1.0, 60
        )

        broker.start()
        assert await eventually(lambda: exporter.healthy is True, 60)
        assert metric("webook_kafka_lag_exporter_scrape_age_seconds") < 60
    finally:
        await exporter.stop()
        broker.stop()
    warnings = [
        r for r in caplog.records if r.name == EXPORTER_LOGGER and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def scrape_metrics(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.integration
async def test_the_exporter_process_serves_lag(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic, group = unique("lag-proc"), unique("lag-proc-group")
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1)])
    await produce(kafka_bootstrap, topic, 5)
    # A commit without consuming: the group is two records in.
    committer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        tp = TopicPartition(topic, 0)
        committer.assign([tp])
        await committer.commit({tp: 2})
    finally:
        await committer.stop()

    port = free_port()
    process: ManagedProcess = lag_exporter_process(
        kafka_bootstrap, port, tmp_path, interval_seconds=0.5, group_prefixes=[group]
    )
    process.die_with_parent = True
    process.start(timeout=60)
    try:
        key = ("webook_kafka_group_lag_sum", frozenset({("group", group), ("topic", topic)}))
        assert await eventually(lambda: scrape_metrics(port).get(key) == 3, 60, interval=0.5)
        samples = scrape_metrics(port)
        assert samples[("webook_kafka_lag_exporter_scrape_failures_total", frozenset())] == 0
        assert ("webook_kafka_lag_exporter_scrape_age_seconds", frozenset()) in samples
    finally:
        process.stop()
    log = (tmp_path / "lag-exporter.log").read_text()
    assert '"msg": "metrics endpoint listening"' in log

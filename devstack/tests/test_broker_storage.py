"""The local broker on object storage loses nothing when it is killed and started again.

A real object store (:mod:`devstack.object_store`) and a real tansu on free ports: records
produced with ``acks=all`` and a consumer group's committed offset are all there after the
broker is SIGKILLed and started again on the same storage, while the memory engine, for
contrast, comes back empty. Every process is stopped at the end, whatever happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devstack.infra import (
    BrokerStorage,
    ManagedProcess,
    free_port,
    kafka_process,
    object_store_process,
)
from kit.events.topics import TopicSpec, ensure_topics

TOPIC = "broker-storage-test"
GROUP = "broker-storage-test-group"
RECORDS = 40
COMMITTED = 25
# Generous: the machine may be busy with other test runs.
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0


@pytest.fixture
def object_store(tmp_path: Path) -> Iterator[BrokerStorage]:
    """A running object store for the broker; stopped after the test."""
    port = free_port()
    store = object_store_process(port, tmp_path)
    store.start(timeout=START_TIMEOUT_S)
    try:
        yield BrokerStorage.object_store(port)
    finally:
        store.stop()


@pytest.fixture
async def broker_on() -> AsyncIterator[list[ManagedProcess]]:
    """Every broker a test starts (append to it); all stopped after the test."""
    started: list[ManagedProcess] = []
    yield started
    for broker in started:
        await asyncio.to_thread(broker.stop)


async def _start(broker: ManagedProcess) -> str:
    await asyncio.to_thread(broker.start, START_TIMEOUT_S)
    url = next(a for a in broker.argv if a.startswith("--listener-url="))
    return url.split("//", 1)[1]


async def _produce(bootstrap: str) -> list[int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,  # tansu grants no producer ids, on any storage
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
    )
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(TOPIC, f"record-{i}".encode(), partition=0)
            for i in range(RECORDS)
        ]
    finally:
        await producer.stop()
    return [meta.offset for meta in sent]


async def _commit(bootstrap: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        await consumer.commit({partition: offset})
        assert await consumer.committed(partition) == offset
    finally:
        await consumer.stop()


async def _read_back(bootstrap: str) -> tuple[int | None, int, list[bytes]]:
    """The group's committed offset, the partition's end offset, and its records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        committed = await consumer.committed(partition)
        consumer.seek(partition, 0)
        end = (await consumer.end_offsets([partition]))[partition]
        values: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CALL_TIMEOUT_S
        while len(values) < end and loop.time() < deadline:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            values += [record.value or b"" for record in batches.get(partition, [])]
    finally:
        await consumer.stop()
    return committed, end, values


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(CALL_TIMEOUT_S * 1000)
    )
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.integration
async def test_a_killed_broker_on_object_storage_keeps_records_and_committed_offsets(
    object_store: BrokerStorage, broker_on: list[ManagedProcess], tmp_path: Path
) -> None:
    assert object_store.persistent
    broker = kafka_process(free_port(), tmp_path, object_store)
    broker_on.append(broker)
    bootstrap = await _start(broker)
    await ensure_topics(bootstrap, [TopicSpec(TOPIC, partitions=1)])
    assert await _produce(bootstrap) == list(range(RECORDS))
    await _commit(bootstrap, COMMITTED)

    await asyncio.to_thread(broker.kill)  # SIGKILL: no chance to flush anything
    assert not broker.alive()
    assert await _start(broker) == bootstrap  # the same port, the same storage

    assert TOPIC in await _topics(bootstrap)
    committed, end, values = await _read_back(bootstrap)
    assert committed == COMMITTED
    # tansu derives the end offset from the batches' modification times in the listing,
    # which devstack.object_store gives to the microsecond.
    assert end == RECORDS
    assert values == [f"record-{i}".encode() for i in range(RECORDS)]


@pytest.mark.integration
async def test_a_killed_broker_on_memory_storage_comes_back_empty(
    broker_on: list[ManagedProcess], tmp_path: Path
) -> None:
    # The contrast that makes the test above mean something, and why the memory broker's
    # producers keep their replay window (devstack.catalog).
    broker = kafka_process(free_port(), tmp_path)
    assert not BrokerStorage.memory().persistent
    broker_on.append(broker)
    bootstrap = await _start(broker)
    await ensure_topics(bootstrap, [TopicSpec(TOPIC, partitions=1)])
    await _produce(bootstrap)

    await asyncio.to_thread(broker.kill)
    await _start(broker)

    assert TOPIC not in await _topics(bootstrap)

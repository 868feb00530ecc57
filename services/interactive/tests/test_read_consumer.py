"""Read events → read counts, on the session's real broker, SQLite and Redis.

Each test uses its own topic (carrying ``ArticleRead`` like ``webook.article.read``) and
consumer group, with the production decoder and batch handler of
:mod:`services.interactive.events`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from clients.tests.articles import FakeTargets
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    EventProducer,
    ProducerConfig,
    TopicHandler,
    TopicSpec,
)
from kit.migrations import upgrade_async
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.interactive.domain import ARTICLE_BIZ
from services.interactive.events import ReadCounter, decode_article_read
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache
from services.interactive.service import InteractiveService
from webook.events.v1 import events_pb2

pytestmark = pytest.mark.integration

ARTICLES = 40
MAX_BATCH = 100


@pytest.fixture
async def service(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InteractiveService]:
    """The interactive service on a fresh SQLite file and a flushed Redis."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'interactive.db'}"
    await upgrade_async("interactive", database_url)
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    cache = CountsCache(redis)
    try:
        yield InteractiveService(
            lambda: SqlUnitOfWork(sessions, cache), targets=FakeTargets(), cached=cache
        )
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()


def consumer(
    bootstrap: str, topic: str, group: str, handler: ReadCounter | CrashAfter
) -> BatchConsumer:
    return BatchConsumer(
        ConsumerConfig(
            bootstrap=bootstrap,
            group_id=group,
            max_batch=MAX_BATCH,
            max_wait_s=0.2,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            retry_backoff_s=0.05,
            topic_partitions=2,
            stop_timeout_s=1.0,
        ),
        {topic: TopicHandler(decode_article_read, handler)},
    )


async def produce(bootstrap: str, topic: str, count: int, *, per_second: float) -> Counter[int]:
    """Publish ``count`` reads spread over the articles at about ``per_second``."""
    producer = EventProducer(
        ProducerConfig(bootstrap=bootstrap, topics=(TopicSpec(topic, 2),), request_timeout_ms=3000)
    )
    producer.start()
    sent: Counter[int] = Counter()
    try:
        for i in range(count):
            article_id = i % ARTICLES + 1
            assert producer.publish(
                topic, article_id, events_pb2.ArticleRead(article_id=article_id, user_id=i)
            )
            sent[article_id] += 1
            if i % 50 == 49:
                await asyncio.sleep(50 / per_second)
        assert await producer.flush(15)
    finally:
        await producer.stop()
    return sent


async def read_counts(service: InteractiveService) -> Counter[int]:
    found = await service.get_by_ids(ARTICLE_BIZ, range(1, ARTICLES + 1))
    return Counter({i: intr.counts.read_cnt for i, intr in found.items() if intr.counts.read_cnt})


async def wait_for_total(service: InteractiveService, total: int, within_s: float) -> Counter[int]:
    """The read counts once they add up to ``total``, or after ``within_s`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    counts = await read_counts(service)
    while sum(counts.values()) < total and loop.time() < deadline:
        await asyncio.sleep(0.1)
        counts = await read_counts(service)
    return counts


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return f"reads-{suffix}", f"counter-{suffix}"


async def test_counts_converge_after_a_restart_in_the_middle_of_a_stream(
    service: InteractiveService, kafka_bootstrap: str
) -> None:
    topic, group = names()
    first = consumer(kafka_bootstrap, topic, group, ReadCounter(service))
    first.start()
    stream = asyncio.create_task(produce(kafka_bootstrap, topic, 3000, per_second=1000))
    try:
        # Let the first member apply part of the stream, then restart it.
        assert sum((await wait_for_total(service, 200, 20)).values()) >= 200
    finally:
        await first.stop()
    assert sum((await read_counts(service)).values()) < 3000
    second = consumer(kafka_bootstrap, topic, group, ReadCounter(service))
    second.start()
    try:
        sent = await stream
        counts = await wait_for_total(service, 3000, 30)
        # Nothing more arrives: a graceful stop commits the batch it applied.
        await asyncio.sleep(0.5)
        counts = await read_counts(service)
    finally:
        await second.stop()
    assert counts == sent


class CrashAfter:
    """Applies batches like :class:`ReadCounter`, but "crashes" after applying batch
    ``crash_at``: it hangs before the offsets are committed, as a killed process would."""

    def __init__(self, service: InteractiveService, crash_at: int) -> None:
        self._counter = ReadCounter(service)
        self._crash_at = crash_at
        self.batches = 0
        self.crashed_batch = 0
        self.crashed = asyncio.Event()

    async def __call__(self, batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        await self._counter(batch)
        self.batches += 1
        if self.batches == self._crash_at:
            self.crashed_batch = len(batch)
            self.crashed.set()
            await asyncio.Event().wait()


async def test_a_crash_between_apply_and_commit_duplicates_at_most_one_batch(
    service: InteractiveService, kafka_bootstrap: str
) -> None:
    topic, group = names()
    sent = await produce(kafka_bootstrap, topic, 1000, per_second=100_000)
    crashing = CrashAfter(service, crash_at=3)
    first = consumer(kafka_bootstrap, topic, group, crashing)
    first.start()
    try:
        await asyncio.wait_for(crashing.crashed.wait(), 20)
    finally:
        await first.stop()  # cancels the hung batch: its offsets are never committed
    second = consumer(kafka_bootstrap, topic, group, ReadCounter(service))
    second.start()
    try:
        counts = await wait_for_total(service, 1000 + crashing.crashed_batch, 30)
        await asyncio.sleep(0.5)
        counts = await read_counts(service)
    finally:
        await second.stop()
    total = sum(counts.values())
    assert 0 < crashing.crashed_batch <= MAX_BATCH
    # At-least-once: every read counted; the uncommitted batch exactly once more.
    assert total == 1000 + crashing.crashed_batch
    assert all(counts[a] >= sent[a] for a in sent)


async def test_undecodable_records_are_skipped(
    service: InteractiveService, kafka_bootstrap: str
) -> None:
    from aiokafka import AIOKafkaProducer

    topic, group = names()
    raw = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await raw.start()
    try:
        for value in (
            events_pb2.ArticleRead(article_id=1).SerializeToString(),
            b"\xff\xff\xff",
            events_pb2.ArticleRead(user_id=9).SerializeToString(),  # no article
            events_pb2.ArticleRead(article_id=1).SerializeToString(),
        ):
            await raw.send_and_wait(topic, value, key=b"1")
    finally:
        await raw.stop()
    reader = consumer(kafka_bootstrap, topic, group, ReadCounter(service))
    reader.start()
    try:
        counts = await wait_for_total(service, 2, 20)
    finally:
        await reader.stop()
    assert counts == Counter({1: 2})
    skipped = REGISTRY.get_sample_value(
        "webook_kafka_consumed_total", {"topic": topic, "group": group, "result": "undecodable"}
    )
    assert skipped == 2

"""Benchmark of read-event consumption: batch mode against per-message mode.

Run ``python -m bench.read_events``. A local broker (tansu) and Redis are started in a
temporary directory; ``EVENTS`` ``ArticleRead`` events over ``ARTICLES`` articles are
published once, then each round lets two fresh consumer groups apply them to fresh SQLite
databases through the interactive service's production handler
(:class:`services.interactive.events.ReadCounter`, cached counts in Redis included):

- **per-message**: batches of one record: one SQL transaction, one cache update and one
  offset commit per event (measured for ``PER_MESSAGE_SECONDS``);
- **batch**: up to 100 records or 1 s per batch: one multi-row upsert, one cache pipeline
  and one offset commit per batch (measured over all events).

Rates count events applied per second from the first applied batch on, so group joins do
not count. The median ratio over the rounds is printed (goal: >= 10); the exit code is 1 if
the goal is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._report import result
from bench._targets import ReadOnlyTargets
from devstack.infra import ManagedProcess, free_port, kafka_process, redis_process
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
from services.interactive.events import ARTICLE_BIZ, ReadCounter, decode_article_read
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache
from services.interactive.service import InteractiveService
from webook.events.v1 import events_pb2

EVENTS = 20_000
ARTICLES = 500
ROUNDS = 3
PER_MESSAGE_SECONDS = 3.0
BATCH_TIMEOUT_SECONDS = 30.0
GOAL = 10.0


@dataclass
class Measured:
    """Events applied and the time from the first applied batch to the last."""

    events: int = 0
    first: float = 0.0
    last: float = 0.0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def rate(self) -> float:
        """Events applied per second."""
        return self.events / (self.last - self.first) if self.last > self.first else 0.0


class TimedCounter:
    """The production handler, timed."""

    def __init__(self, counter: ReadCounter, measured: Measured) -> None:
        self._counter = counter
        self._measured = measured

    async def __call__(self, batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        measured = self._measured
        if not measured.started.is_set():
            measured.first = time.perf_counter()
            measured.started.set()
        await self._counter(batch)
        measured.events += len(batch)
        measured.last = time.perf_counter()
        if measured.events >= EVENTS:
            measured.finished.set()


async def publish(bootstrap: str, topic: str) -> None:
    """Publish the events once; every round's groups read them from the beginning."""
    producer = EventProducer(
        ProducerConfig(bootstrap=bootstrap, topics=(TopicSpec(topic, 3),), buffer_size=EVENTS)
    )
    producer.start()
    for i in range(EVENTS):
        article_id = i % ARTICLES + 1
        producer.publish(topic, article_id, events_pb2.ArticleRead(article_id=article_id))
    if not await producer.flush(60):
        raise RuntimeError("the broker did not take the events")
    await producer.stop()


async def consume(
    bootstrap: str, topic: str, redis_url: str, scratch: Path, *, max_batch: int, seconds: float
) -> Measured:
    """Apply events with batches of up to ``max_batch`` for ``seconds`` or until all applied."""
    database_url = f"sqlite+aiosqlite:///{scratch / uuid.uuid4().hex}.db"
    await upgrade_async("interactive", database_url)
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    cache = CountsCache(redis)
    service = InteractiveService(lambda: SqlUnitOfWork(sessions, cache), targets=ReadOnlyTargets())
    # Cached counts make every batch pay for its cache update, as in production.
    await service.get_by_ids(ARTICLE_BIZ, range(1, min(ARTICLES, 100) + 1))
    measured = Measured()
    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=bootstrap,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            max_batch=max_batch,
            max_wait_s=1.0,
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
            lag_interval_s=60.0,
            manage_topics=False,
        ),
        {topic: TopicHandler(decode_article_read, TimedCounter(ReadCounter(service), measured))},
    )
    consumer.start()
    try:
        await asyncio.wait_for(measured.started.wait(), 30.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(measured.finished.wait(), seconds)
    finally:
        await consumer.stop()
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()
    return measured


async def run(bootstrap: str, redis_url: str, scratch: Path) -> float:
    """All rounds; returns the median ratio."""
    topic = f"bench-reads-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    await publish(bootstrap, topic)
    print(f"published {EVENTS} events in {time.perf_counter() - started:.1f}s")
    ratios = []
    batch_rates: list[float] = []
    single_rates: list[float] = []
    for round_ in range(1, ROUNDS + 1):
        single = await consume(
            bootstrap, topic, redis_url, scratch, max_batch=1, seconds=PER_MESSAGE_SECONDS
        )
        batch = await consume(
            bootstrap, topic, redis_url, scratch, max_batch=100, seconds=BATCH_TIMEOUT_SECONDS
        )
        if batch.events < EVENTS:
            raise RuntimeError(f"batch mode applied only {batch.events} of {EVENTS} events")
        ratio = batch.rate / single.rate
        ratios.append(ratio)
        batch_rates.append(batch.rate)
        single_rates.append(single.rate)
        print(
            f"round {round_}: per-message {single.rate:8.0f} events/s ({single.events} events), "
            f"batch {batch.rate:8.0f} events/s ({batch.events} events), ratio {ratio:5.1f}"
        )
    median = statistics.median(ratios)
    print(f"batch / per-message: {median:.1f} (median of {ROUNDS} rounds; goal >= {GOAL:.0f})")
    result(
        "read events applied, batch vs per message",
        f"{statistics.median(batch_rates):.0f} events/s",
        f"{statistics.median(single_rates):.0f} events/s",
        median,
        f">= {GOAL:.0f}",
        median >= GOAL,
    )
    return median


def main() -> int:
    """Start a broker and Redis, measure, print, stop them."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        kafka_port, redis_port = free_port(), free_port()
        broker: ManagedProcess = kafka_process(kafka_port, scratch)
        redis: ManagedProcess = redis_process(redis_port, scratch)
        with broker, redis:
            ratio = asyncio.run(
                run(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", scratch)
            )
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())

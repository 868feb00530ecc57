"""Reads while the broker is down: served at once, events buffered and delivered later.

The article service runs with a small event buffer. The broker (tansu, memory storage) is
killed: reads keep succeeding without waiting for it, read events are buffered up to the
bound and the excess is dropped and counted. The broker comes back empty (no topics): the
producer re-creates its topics and delivers the buffer, which a consumer then receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from devstack.infra import ManagedProcess, free_port
from kit.config import Mode
from kit.events import BatchConsumer, ConsumedEvent, ConsumerConfig, TopicHandler, protobuf_decoder
from kit.migrations import upgrade_async
from services.article.__main__ import build_runner
from services.article.events import ARTICLE_READS_TOPIC
from services.article.settings import ArticleSettings
from webook.article.v1 import article_pb2
from webook.article.v1.article_pb2_grpc import ArticleServiceStub
from webook.events.v1 import events_pb2

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

BUFFER = 5


def dropped() -> float:
    value = REGISTRY.get_sample_value(
        "webook_kafka_producer_dropped_total", {"topic": ARTICLE_READS_TOPIC}
    )
    return value or 0.0


async def test_reads_succeed_and_events_wait_for_the_broker(
    tmp_path: Path,
    redis_url: str,
    redis_client: object,
    kafka_server: ManagedProcess,
    kafka_bootstrap: str,
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'article.db'}"
    await upgrade_async("article", database_url)
    settings = ArticleSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        peers={"user": f"127.0.0.1:{free_port()}"},
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
        event_buffer_size=BUFFER,
        event_flush_timeout_seconds=5.0,
        event_linger_ms=0,  # one read, one record: the reads fill the buffer one by one
    )
    reader = random.randrange(10**9, 2 * 10**9)
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ArticleServiceStub(channel)
            created = await stub.Publish(
                article_pb2.PublishRequest(author_id=1, title="t", content="<p>x</p>")
            )
            drops = dropped()
            kafka_server.kill()
            try:
                started = time.monotonic()
                for _ in range(BUFFER + 3):
                    answer = await stub.GetPublishedById(
                        article_pb2.GetPublishedByIdRequest(id=created.id, uid=reader)
                    )
                    assert answer.article.title == "t"
                # Nothing waited for the broker.
                assert time.monotonic() - started < 2.0
                # The reads fill the buffer of BUFFER events; the rest are dropped.
                assert dropped() - drops >= 3
            finally:
                kafka_server.start()
            received = await _reads_of(kafka_bootstrap, reader, expected=BUFFER - 1)
    finally:
        await runner.stop()
    assert BUFFER - 1 <= len(received) <= BUFFER
    assert {r.article_id for r in received} == {created.id}


async def _reads_of(bootstrap: str, reader: int, *, expected: int) -> list[events_pb2.ArticleRead]:
    """The ``ArticleRead`` events of ``reader`` on the broker, waiting for ``expected``."""
    seen: list[events_pb2.ArticleRead] = []
    enough = asyncio.Event()

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleReads]]) -> None:
        seen.extend(read for e in batch for read in e.payload.reads if read.user_id == reader)
        if len(seen) >= expected:
            enough.set()

    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=bootstrap,
            group_id=f"outage-{reader}",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            max_wait_s=0.2,
            retry_backoff_max_s=0.5,
        ),
        {ARTICLE_READS_TOPIC: TopicHandler(protobuf_decoder(events_pb2.ArticleReads), collect)},
    )
    consumer.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), 40)
        # Whatever else was buffered arrives with the same delivery.
        await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
    return seen

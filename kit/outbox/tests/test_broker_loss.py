"""The relay's replay window against a real broker restart (tansu keeps its logs in memory).

Rows are written in a steady stream while the broker is SIGKILLed and started again empty;
a consumer group reads the topic throughout. Every row must reach the consumer: the ones
the broker acknowledged and then lost come back through the relay's replay window.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from devstack.infra import ManagedProcess
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ProducerConfig,
    TopicHandler,
    TopicSpec,
    protobuf_decoder,
)
from kit.events.tests.support import consumer_config
from kit.outbox import KafkaOutboxPublisher, OutboxRelay, RelayConfig
from kit.outbox.tests.test_outbox import DEADLINE_S, Db, db, eventually, rows
from webook.events.v1 import events_pb2

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

__all__ = ["db"]  # the fixture, shared with test_outbox.py

# Rows written before, during and after the broker's absence (one every few milliseconds).
ROWS = 600
KEYS = 20


async def test_rows_the_restarted_broker_lost_are_published_again(
    db: Db, kafka_server: ManagedProcess, kafka_bootstrap: str, request: pytest.FixtureRequest
) -> None:
    if "chaos" not in (request.config.option.markexpr or ""):
        # Up to a minute a database: make test's budget; make chaos runs it.
        pytest.skip("run by make chaos (-m chaos)")
    topic = f"webook.test.outbox-loss-{uuid.uuid4().hex[:8]}"
    received: set[int] = set()

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleWithdrawn]]) -> None:
        await asyncio.sleep(0.02)  # a batch is often in flight when the broker dies
        received.update(e.payload.article_id for e in batch)

    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, f"loss-{uuid.uuid4().hex[:8]}", topic_partitions=3),
        {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleWithdrawn), collect)},
    )
    publisher = KafkaOutboxPublisher(
        ProducerConfig(bootstrap=kafka_bootstrap, topics=(TopicSpec(topic, 3),))
    )
    relay = OutboxRelay(
        db.sessions,
        db.outbox,
        publisher,
        RelayConfig(
            poll_interval_s=0.05,
            replay_window_s=60.0,
            publish_timeout_s=5.0,
            retry_backoff_max_s=2.0,
        ),
    )

    async def write(first: int, last: int) -> None:
        for n in range(first, last):
            async with db.sessions() as session:
                db.outbox.add(
                    session, topic, n % KEYS, events_pb2.ArticleWithdrawn(article_id=n, at_ms=n)
                )
                await session.commit()
            await asyncio.sleep(0.003)

    consumer.start()
    relay.start()
    try:
        await write(0, ROWS // 3)
        assert await eventually_true(lambda: len(received) >= ROWS // 6)
        await asyncio.to_thread(kafka_server.kill)
        await write(ROWS // 3, 2 * ROWS // 3)  # acknowledged to the writers: in the outbox
        await asyncio.to_thread(kafka_server.start)
        await write(2 * ROWS // 3, ROWS)

        async def all_sent() -> bool:
            return all(row.sent_ms is not None for row in await rows(db))

        await eventually(all_sent, "every row is sent")
        assert await eventually_true(lambda: len(received) == ROWS), sorted(
            set(range(ROWS)) - received
        )[:50]
    finally:
        await relay.stop()
        await consumer.stop()


async def eventually_true(condition: object) -> bool:
    """Poll the callable ``condition`` until it holds or the test's deadline passes."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True

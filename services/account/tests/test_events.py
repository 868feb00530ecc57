"""Paid-reward events → credits, on the session's real broker and real SQLite/MariaDB.

Each test uses its own topic (carrying ``RewardPaid`` like ``webook.reward.paid``) and
consumer group, with the production decoder and batch handler of
:mod:`services.account.events`. Every record has the same key, so all land in one
partition in order: once the last one is credited, everything before it was handled.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from kit.cache.tests.outage import eventually
from kit.events import BatchConsumer, ConsumerConfig, TopicHandler
from kit.sql import SessionFactory
from services.account.events import RewardCreditor, decode_reward_paid
from services.account.service import AccountService
from services.account.tests.conftest import ledger_rows
from webook.reward.v1 import reward_pb2

pytestmark = pytest.mark.integration

AUTHOR = 42
DAY = 1_796_601_600_000  # 2026-12-07 00:00 UTC
REWARDER = 7


def paid(rid: int, amount: int = 100, *, author: int = AUTHOR, at_ms: int = DAY) -> bytes:
    return reward_pb2.RewardPaid(
        rid=rid,
        biz="article",
        biz_id=500 + rid,
        uid=REWARDER,
        target_uid=author,
        amount_fen=amount,
        at_ms=at_ms,
    ).SerializeToString()


def bad_events(reason: str) -> float:
    return REGISTRY.get_sample_value("webook_account_bad_events_total", {"reason": reason}) or 0.0


async def send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Publish ``values`` in order to one partition of ``topic``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"rewards")
    finally:
        await producer.stop()


@pytest.fixture
async def topic(service: AccountService, kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh topic consumed by the production handler until the end of the test."""
    suffix = uuid.uuid4().hex[:10]
    name = f"rewards-{suffix}"
    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=kafka_bootstrap,
            group_id=f"account-{suffix}",
            max_wait_s=0.2,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            retry_backoff_s=0.05,
            topic_partitions=2,
            stop_timeout_s=5.0,
        ),
        {name: TopicHandler(decode_reward_paid, RewardCreditor(service))},
    )
    consumer.start()
    try:
        yield name
    finally:
        await consumer.stop()


async def test_duplicates_credit_once_and_bad_events_are_skipped_and_counted(
    service: AccountService, sessions: SessionFactory, topic: str, kafka_bootstrap: str
) -> None:
    before = {
        reason: bad_events(reason)
        for reason in ("undecodable", "missing_author", "non_positive_amount", "missing_rid")
    }
    await send(
        kafka_bootstrap,
        topic,
        [
            paid(1, 100),
            *[paid(2, 1000)] * 10,  # one reward delivered ten times
            b"\xff\xff\xff",
            paid(3, -50),
            paid(4, 0),
            paid(5, 100, author=0),
            paid(0, 100),
            paid(7, 10, at_ms=0),  # no payment time: the record's
            paid(6, 1),  # one cent: all the author's
        ],
    )

    async def last_one_credited() -> bool:
        return any(a.biz_key == "reward:6" for a in (await service.account(AUTHOR)).recent)

    await eventually(last_one_credited, "the last reward is credited")
    view = await service.account(AUTHOR)
    assert view.balance_fen == 90 + 900 + 9 + 1
    assert [(a.biz_key, a.at_ms == DAY) for a in view.recent] == [
        ("reward:6", True),
        ("reward:7", False),
        ("reward:2", True),
        ("reward:1", True),
    ]
    assert view.recent[1].at_ms > 0
    assert (await service.account(REWARDER)).balance_fen == 0
    assert await ledger_rows(sessions) == 8
    assert bad_events("undecodable") == before["undecodable"] + 1
    assert bad_events("non_positive_amount") == before["non_positive_amount"] + 2
    assert bad_events("missing_author") == before["missing_author"] + 1
    assert bad_events("missing_rid") == before["missing_rid"] + 1
    skipped = REGISTRY.get_sample_value(
        "webook_kafka_consumed_total",
        {
            "topic": topic,
            "group": f"account-{topic.removeprefix('rewards-')}",
            "result": "undecodable",
        },
    )
    assert skipped == 5

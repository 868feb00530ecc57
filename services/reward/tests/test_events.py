"""Payment status events → reward status, on the session's real broker and a real database.

Each test uses its own topic (carrying ``PaymentStatusChanged`` like
``webook.payment.status_changed``) and consumer group, with the production decoder and
batch handler of :mod:`services.reward.events`. Also: the ``RewardPaid`` payload written to
the outbox is the one its topic declares.
"""

from __future__ import annotations

import uuid

import pytest

from kit.events import (
    BatchConsumer,
    ConsumerConfig,
    EventProducer,
    ProducerConfig,
    TopicHandler,
    TopicSpec,
    declared_topics,
)
from kit.registry.tests.helpers import eventually
from services.reward.domain import RewardStatus
from services.reward.events import (
    REWARD_PAID,
    PaymentStatusHandler,
    RewardEventWriter,
    decode_payment_update,
)
from services.reward.tests.conftest import ARTICLE, RewardStack
from webook.payment.v1 import payment_pb2
from webook.reward.v1 import reward_pb2

pytestmark = pytest.mark.integration

READER = 42
DEADLINE_S = 60.0


def status_changed(
    trade_no: str, amount_fen: int, status: payment_pb2.PaymentStatus.ValueType
) -> payment_pb2.PaymentStatusChanged:
    """A payment event as the payment service writes it."""
    return payment_pb2.PaymentStatusChanged(
        biz_trade_no=trade_no, amount_fen=amount_fen, status=status, at_ms=123
    )


async def test_events_move_rewards_once_whatever_the_duplicates(
    stack: RewardStack, kafka_bootstrap: str
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"payments-{suffix}"
    paid = await stack.service.pre_reward("article", ARTICLE, READER, 100)
    failed = await stack.service.pre_reward("article", ARTICLE, READER, 200)
    last = await stack.service.pre_reward("article", ARTICLE, READER, 300)
    producer = EventProducer(
        ProducerConfig(bootstrap=kafka_bootstrap, topics=(TopicSpec(topic, 1),))
    )
    producer.start()
    try:
        # One partition: the stream is applied in this order.
        for event in (
            status_changed(f"reward-{paid.id}", 100, payment_pb2.PAYMENT_STATUS_SUCCESS),
            status_changed(f"reward-{paid.id}", 100, payment_pb2.PAYMENT_STATUS_SUCCESS),
            status_changed(f"order-{paid.id}", 100, payment_pb2.PAYMENT_STATUS_FAILED),
            status_changed(f"reward-{failed.id}", 200, payment_pb2.PAYMENT_STATUS_FAILED),
            status_changed(f"reward-{failed.id}", 200, payment_pb2.PAYMENT_STATUS_SUCCESS),
            status_changed(f"reward-{paid.id}", 100, payment_pb2.PAYMENT_STATUS_FAILED),
            status_changed(f"reward-{paid.id}", 100, payment_pb2.PAYMENT_STATUS_SUCCESS),
            status_changed(f"reward-{last.id}", 300, payment_pb2.PAYMENT_STATUS_SUCCESS),
        ):
            assert producer.publish(topic, event.biz_trade_no, event)
        assert await producer.flush(30)
    finally:
        await producer.stop()

    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=kafka_bootstrap,
            group_id=f"reward-{suffix}",
            max_batch=3,
            max_wait_s=0.2,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            retry_backoff_s=0.05,
            topic_partitions=1,
            stop_timeout_s=5.0,
        ),
        {topic: TopicHandler(decode_payment_update, PaymentStatusHandler(stack.service))},
    )
    consumer.start()
    try:

        async def last_applied() -> bool:
            reward = await stack.service.get_reward(last.id, READER)
            return reward.status is RewardStatus.PAYED

        await eventually(last_applied, DEADLINE_S, "the last event applied")
    finally:
        await consumer.stop()

    assert (await stack.service.get_reward(paid.id, READER)).status is RewardStatus.PAYED
    assert (await stack.service.get_reward(failed.id, READER)).status is RewardStatus.FAILED
    events = await stack.paid_events()
    assert sorted((e.rid, e.amount_fen, e.at_ms) for e in events) == [
        (paid.id, 100, 123),
        (last.id, 300, 123),
    ]


def test_undecodable_records_are_refused_by_the_decoder() -> None:
    for value in (
        b"\xff\xff\xff",
        payment_pb2.PaymentStatusChanged(amount_fen=1).SerializeToString(),
    ):
        with pytest.raises(ValueError, match="PaymentStatusChanged"):
            decode_payment_update(value)


class _Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, int, object]] = []

    def publish(self, topic: str, key: int, event: object) -> bool:
        self.published.append((topic, key, event))
        return True


def test_reward_paid_is_the_payload_its_topic_declares() -> None:
    from services.reward.domain import Reward

    recorder = _Recorder()
    reward = Reward(
        id=9,
        biz="article",
        biz_id=70,
        uid=42,
        target_uid=7,
        amount_fen=100,
        status=RewardStatus.PAYED,
        code_url="u",
        ctime_ms=1,
        utime_ms=2,
    )
    RewardEventWriter(recorder).reward_paid(reward, at_ms=3)
    [(topic, key, event)] = recorder.published
    declared = {t.name: t.payload.full_name for t in declared_topics(reward_pb2.Topic)}
    assert topic == REWARD_PAID.name
    assert key == 9
    assert isinstance(event, reward_pb2.RewardPaid)
    assert event.DESCRIPTOR.full_name == declared[topic]
    assert (event.uid, event.target_uid, event.amount_fen, event.at_ms) == (42, 7, 100, 3)

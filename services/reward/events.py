"""Events of the reward service: ``RewardPaid`` out, payment status changes in.

Produced, through the outbox (``reward_outbox``, :mod:`kit.outbox`) in the transaction that
makes a reward PAYED, so it is recorded if and only if the reward became paid, once per
reward: ``TOPIC_REWARD_PAID`` (``webook.reward.v1.Topic``), keyed by the reward id. The
relay publishes it at least once; the account service dedupes on the reward id.

Consumed: ``TOPIC_PAYMENT_STATUS_CHANGED`` (``webook.payment.v1.Topic``), keyed by
``biz_trade_no``, so one payment's changes arrive in order. Each event is applied on its
own (:meth:`services.reward.service.RewardService.apply_payment`), in offset order; other
businesses' payments are skipped. A batch whose database write fails is retried whole,
which the forward-only transitions make harmless. Records that are not a
``PaymentStatusChanged`` are skipped and counted (``result="undecodable"``).

Names come from the protos (``docs/events.md``): no topic name is written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from google.protobuf.message import Message

from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    DeclaredTopic,
    TopicHandler,
    TopicSpec,
    declared_topic,
    parse_event,
    topic_name,
)
from services.reward.domain import PaymentUpdate, Reward, reward_id_of
from services.reward.peers import payment_status
from webook.payment.v1 import payment_pb2
from webook.reward.v1 import reward_pb2

REWARD_PAID: Final = declared_topic(reward_pb2.Topic, reward_pb2.TOPIC_REWARD_PAID)
OUTBOX_TOPICS: Final[tuple[DeclaredTopic, ...]] = (REWARD_PAID,)
"""The topics written through the outbox (all of the service's)."""
PAYMENT_STATUS_TOPIC: Final = topic_name(
    payment_pb2.Topic, payment_pb2.TOPIC_PAYMENT_STATUS_CHANGED
)


def outbox_topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the outbox relay writes, with ``partitions`` partitions each."""
    return tuple(TopicSpec(topic.name, partitions) for topic in OUTBOX_TOPICS)


class EventSink(Protocol):
    """Where events go: ``kit.outbox.OutboxSink.publish`` (or a test's recorder)."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class RewardEventWriter:
    """:class:`services.reward.service.RewardEvents` on an :class:`EventSink`."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def reward_paid(self, reward: Reward, *, at_ms: int) -> None:
        """Record ``RewardPaid`` (keyed by the reward id)."""
        self._sink.publish(
            REWARD_PAID.name,
            reward.id,
            reward_pb2.RewardPaid(
                rid=reward.id,
                biz=reward.biz,
                biz_id=reward.biz_id,
                uid=reward.uid,
                target_uid=reward.target_uid,
                amount_fen=reward.amount_fen,
                at_ms=at_ms,
            ),
        )


def decode_payment_update(value: bytes) -> PaymentUpdate:
    """A ``PaymentStatusChanged`` as the domain sees it; ``ValueError`` if it is not one."""
    event = parse_event(payment_pb2.PaymentStatusChanged, value)
    if not event.biz_trade_no:
        raise ValueError(f"PaymentStatusChanged without a biz_trade_no: {event}")
    return PaymentUpdate(
        biz_trade_no=event.biz_trade_no,
        amount_fen=event.amount_fen,
        status=payment_status(event.status),
        at_ms=event.at_ms,
    )


class PaymentApplier(Protocol):
    """What the consumer drives (:class:`services.reward.service.RewardService`)."""

    async def apply_payment(self, update: PaymentUpdate) -> bool:
        """Apply one payment status; whether the reward changed."""
        ...


class PaymentStatusHandler:
    """Batch handler: applies each reward payment's status, in order."""

    def __init__(self, service: PaymentApplier) -> None:
        self._service = service

    async def __call__(self, batch: Sequence[ConsumedEvent[PaymentUpdate]]) -> None:
        """Apply a batch (raises, to have it retried, if a write fails)."""
        for event in batch:
            if reward_id_of(event.payload.biz_trade_no) is not None:
                await self._service.apply_payment(event.payload)


def payment_event_consumer(service: PaymentApplier, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that moves rewards as their payments change."""
    return BatchConsumer(
        config,
        {PAYMENT_STATUS_TOPIC: TopicHandler(decode_payment_update, PaymentStatusHandler(service))},
    )

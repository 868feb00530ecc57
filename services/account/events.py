"""The consumer of paid rewards: each ``webook.reward.paid`` event credits its author.

The reward service publishes ``webook.reward.v1.RewardPaid`` to :data:`REWARD_PAID_TOPIC`
(the name comes from ``webook.reward.v1.Topic``, ``docs/events.md``), keyed by reward id,
through its outbox: at least once. The consumer group :data:`REWARD_CREDIT_GROUP` applies
each event with :meth:`~services.account.service.AccountService.credit_reward`, its own
transaction idempotent on ``reward:<rid>``, so a redelivered batch (a crash between the SQL
commit and the offset commit) or a duplicate event credits nothing more. An event without
its payment time (``at_ms``) is credited at the record's timestamp. Offsets are
committed once the whole batch is applied; a transient failure (the database away) retries
the batch.

A bad event — not a ``RewardPaid``, no reward id, no author, an amount not positive or
absurdly large — can never be credited: it is counted
(``webook_account_bad_events_total{reason}``), logged and skipped by the consumer
(``webook_kafka_consumed_total{result="undecodable"}``), never retried, never crashing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from google.protobuf.message import DecodeError

from kit.events import BatchConsumer, ConsumedEvent, ConsumerConfig, TopicHandler, topic_name
from services.account.domain import RewardCredit, check_reward
from services.account.metrics import BAD_EVENTS
from services.account.service import AccountService
from webook.reward.v1 import reward_pb2

REWARD_PAID_TOPIC: Final = topic_name(reward_pb2.Topic, reward_pb2.TOPIC_REWARD_PAID)
REWARD_CREDIT_GROUP: Final = "account-reward-credit"


class BadRewardEvent(ValueError):
    """A record that can never be credited; ``reason`` is its metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _bad(reason: str, detail: str) -> BadRewardEvent:
    BAD_EVENTS.labels(reason).inc()
    return BadRewardEvent(reason, detail)


def decode_reward_paid(value: bytes | None) -> RewardCredit:
    """The credit a ``RewardPaid`` record asks for; :class:`BadRewardEvent` (counted) when
    the record is not one that can be credited."""
    if value is None:
        raise _bad("undecodable", "record has no value")
    try:
        event = reward_pb2.RewardPaid.FromString(value)
    except DecodeError as exc:
        raise _bad("undecodable", f"not a RewardPaid: {exc}") from exc
    credit = RewardCredit(
        rid=event.rid,
        biz=event.biz,
        biz_id=event.biz_id,
        rewarder=event.uid,
        author=event.target_uid,
        amount_fen=event.amount_fen,
        at_ms=event.at_ms,
    )
    reason = check_reward(credit)
    if reason is not None:
        raise _bad(
            reason, f"rid={event.rid} target_uid={event.target_uid} amount_fen={event.amount_fen}"
        )
    return credit


class RewardCreditor:
    """Batch handler: credits each paid reward, in offset order."""

    def __init__(self, service: AccountService) -> None:
        self._service = service

    async def __call__(self, batch: Sequence[ConsumedEvent[RewardCredit]]) -> None:
        """Apply a batch of paid rewards (each its own idempotent transaction)."""
        for event in batch:
            credit = event.payload
            if credit.at_ms <= 0:
                # No payment time: the record's is the closest the reconciliation can use.
                credit = replace(credit, at_ms=event.timestamp_ms)
            await self._service.credit_reward(credit)


def reward_paid_consumer(service: AccountService, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that credits paid rewards (``config.group_id`` normally
    :data:`REWARD_CREDIT_GROUP`)."""
    return BatchConsumer(
        config, {REWARD_PAID_TOPIC: TopicHandler(decode_reward_paid, RewardCreditor(service))}
    )

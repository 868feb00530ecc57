"""Events the payment service produces: ``PaymentStatusChanged`` when an order's status
moved, keyed by ``biz_trade_no``.

The topic, its broker name and payload are declared in ``webook.payment.v1.Topic``
(``protos/webook/payment/v1/payment.proto``), where consumers read them too. Every event is
written to the ``payment_outbox`` table in the transaction of the change (:mod:`kit.outbox`):
a status change and its event commit together or not at all, and the relay publishes it at
least once (consumers dedupe: a status only moves forward).
"""

from __future__ import annotations

from typing import Final, Protocol

from google.protobuf.message import Message

from kit.events import DeclaredTopic, TopicSpec, declared_topic, topic_name
from services.payment.domain import PaymentStatus
from webook.payment.v1 import payment_pb2

STATUS_CHANGED_TOPIC: Final = topic_name(
    payment_pb2.Topic, payment_pb2.TOPIC_PAYMENT_STATUS_CHANGED
)

OUTBOX_TOPICS: Final[tuple[DeclaredTopic, ...]] = (
    declared_topic(payment_pb2.Topic, payment_pb2.TOPIC_PAYMENT_STATUS_CHANGED),
)
"""The topics written through the outbox: all of them."""


def outbox_topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the outbox relay writes, with ``partitions`` partitions each."""
    return tuple(TopicSpec(topic.name, partitions) for topic in OUTBOX_TOPICS)


class EventSink(Protocol):
    """Where events go: ``kit.outbox.OutboxSink.publish`` bound to the transaction."""

    def publish(self, topic: str, key: str, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class PaymentEvents:
    """``PaymentStatusChanged`` on an :class:`EventSink`."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def status_changed(
        self, biz_trade_no: str, amount_fen: int, status: PaymentStatus, *, at_ms: int
    ) -> None:
        """Record that ``biz_trade_no`` moved to ``status``."""
        self._sink.publish(
            STATUS_CHANGED_TOPIC,
            biz_trade_no,
            payment_pb2.PaymentStatusChanged(
                biz_trade_no=biz_trade_no,
                amount_fen=amount_fen,
                status=payment_pb2.PaymentStatus.ValueType(status),
                at_ms=at_ms,
            ),
        )

"""Events the user service produces (one module per producer).

- ``TOPIC_USER_CHANGED``: ``UserChanged{user_id, nickname, about_me, at_ms}`` when a user
  was created (password signup, first SMS or WeChat login) and after every profile edit,
  with the searchable fields as they are now. Keyed by the user id, so one user's events stay
  in one partition, in order; consumers (the search index) apply the newest state.

The topic, its broker name and payload are declared in ``webook.events.v1.Topic``
(``protos/webook/events/v1/events.proto``), where consumers read them too.

Events are written to the ``user_outbox`` table in the transaction of the change
(:mod:`kit.outbox`) and published by the relay at least once: a crash between the commit and
the broker loses nothing, and a broker outage only delays the search index (see
``docs/events.md``). The search service's ``reindex`` command still rebuilds the index from
:meth:`UserService.list_users <services.user.service.UserService.list_users>` should it ever
need to.
"""

from __future__ import annotations

from typing import Final, Protocol

from google.protobuf.message import Message

from kit.events import DeclaredTopic, TopicSpec, declared_topic
from services.user.domain import User
from webook.events.v1 import events_pb2

OUTBOX_TOPICS: Final[tuple[DeclaredTopic, ...]] = (
    declared_topic(events_pb2.Topic, events_pb2.TOPIC_USER_CHANGED),
)
"""The topics written through the outbox (all of this service's)."""
USER_CHANGED_TOPIC: Final = OUTBOX_TOPICS[0].name


def topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics this service writes, with ``partitions`` partitions each."""
    return (TopicSpec(USER_CHANGED_TOPIC, partitions),)


class EventSink(Protocol):
    """Where events go: ``kit.outbox.OutboxSink.publish`` (or ``EventProducer.publish``)."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class KafkaUserEvents:
    """``UserEvents`` on an :class:`EventSink`."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def user_changed(self, user: User, *, at_ms: int) -> None:
        """Emit ``UserChanged`` with the user's current nickname and about-me."""
        self._sink.publish(
            USER_CHANGED_TOPIC,
            user.id,
            events_pb2.UserChanged(
                user_id=user.id, nickname=user.nickname, about_me=user.about_me, at_ms=at_ms
            ),
        )

"""Events the user service produces (one module per producer).

- ``TOPIC_USER_CHANGED``: ``UserChanged{user_id, nickname, about_me, at_ms}`` when a user
  was created (password signup, first SMS or WeChat login) and after every profile edit,
  with the searchable fields as they are now. Keyed by the user id, so one user's events stay
  in one partition, in order; consumers (the search index) apply the newest state.

The topic, its broker name and payload are declared in ``webook.events.v1.Topic``
(``protos/webook/events/v1/events.proto``), where consumers read them too.

Events go through :class:`kit.events.EventProducer`: publishing never blocks or fails a
request, and a broker outage only costs buffered memory (see ``docs/events.md``). Since a
lost event leaves the search index stale, the search service's ``reindex`` command rebuilds
it from :meth:`UserService.list_users <services.user.service.UserService.list_users>`.
"""

from __future__ import annotations

from typing import Final

from kit.events import EventProducer, TopicSpec, topic_name
from services.user.domain import User
from webook.events.v1 import events_pb2

USER_CHANGED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_USER_CHANGED)


def topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics this service writes, with ``partitions`` partitions each."""
    return (TopicSpec(USER_CHANGED_TOPIC, partitions),)


class KafkaUserEvents:
    """``UserEvents`` on a Kafka producer."""

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer

    def user_changed(self, user: User, *, at_ms: int) -> None:
        """Emit ``UserChanged`` with the user's current nickname and about-me."""
        self._producer.publish(
            USER_CHANGED_TOPIC,
            user.id,
            events_pb2.UserChanged(
                user_id=user.id, nickname=user.nickname, about_me=user.about_me, at_ms=at_ms
            ),
        )

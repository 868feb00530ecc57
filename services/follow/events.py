"""Events of the follow service: ``UserFollowed`` out.

Produced through the outbox (``follow_outbox``, :mod:`kit.outbox`) in the transaction that
makes a relation active, so it is recorded if and only if the follow committed, and only
when the relation really changed (a first follow, or one taken up again after a cancel; a
repeated follow records nothing): ``TOPIC_USER_FOLLOWED`` (``webook.events.v1.Topic``),
keyed by the followee, so one user's new followers stay in one partition, in order. The
relay publishes it at least once; the feed service dedupes on its own event id.

Names come from the protos (``docs/events.md``): no topic name is written here.
"""

from __future__ import annotations

from typing import Final, Protocol

from google.protobuf.message import Message

from kit.events import DeclaredTopic, TopicSpec, declared_topic
from webook.events.v1 import events_pb2

USER_FOLLOWED: Final = declared_topic(events_pb2.Topic, events_pb2.TOPIC_USER_FOLLOWED)
OUTBOX_TOPICS: Final[tuple[DeclaredTopic, ...]] = (USER_FOLLOWED,)
"""The topics written through the outbox (all of the service's)."""


def outbox_topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the outbox relay writes, with ``partitions`` partitions each."""
    return tuple(TopicSpec(topic.name, partitions) for topic in OUTBOX_TOPICS)


class EventSink(Protocol):
    """Where events go: ``kit.outbox.OutboxSink.publish`` (or a test's recorder)."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class FollowEventWriter:
    """The follow service's events on an :class:`EventSink`."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def user_followed(self, follower: int, followee: int, *, at_ms: int) -> None:
        """Record ``UserFollowed`` (keyed by the followee)."""
        self._sink.publish(
            USER_FOLLOWED.name,
            followee,
            events_pb2.UserFollowed(follower=follower, followee=followee, at_ms=at_ms),
        )

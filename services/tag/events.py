"""Events of the tag service: ``TagsChanged`` out through the outbox, and back in to every
replica's cache.

Produced through the outbox (``tag_outbox``, :mod:`kit.outbox`) in the transaction of the
change, so an event is recorded if and only if the change committed:
``TOPIC_TAGS_CHANGED`` (``webook.tag.v1.Topic``), keyed by the user id, so the changes of
one user (and so of one resource: only its owner tags it) keep their order. Each event
carries the full state of what changed: the new tag, or a resource's whole tag set with its
version. The relay publishes at least once; consumers apply a resource's set only when its
version is higher than theirs, which makes repeats and late arrivals harmless.

Consumed by every replica (:func:`cache_event_consumer`, a consumer group of its own per
process), which applies each change to its :class:`~services.tag.cache.TagCache`; its own
changes come back too and change nothing. Records that are not a ``TagsChanged`` are
skipped and counted by the consumer (``result="undecodable"``).

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
)
from services.tag.cache import TagCache
from services.tag.domain import ResourceTags, Tag, sorted_tags
from webook.tag.v1 import tag_pb2

TAGS_CHANGED: Final = declared_topic(tag_pb2.Topic, tag_pb2.TOPIC_TAGS_CHANGED)
OUTBOX_TOPICS: Final[tuple[DeclaredTopic, ...]] = (TAGS_CHANGED,)
"""The topics written through the outbox (all of the service's)."""

Change = Tag | ResourceTags
"""What one ``TagsChanged`` says: a new tag, or a resource's new tag set."""


def outbox_topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the outbox relay writes, with ``partitions`` partitions each."""
    return tuple(TopicSpec(topic.name, partitions) for topic in OUTBOX_TOPICS)


def tag_to_proto(tag: Tag) -> tag_pb2.Tag:
    """The wire form of ``tag``."""
    return tag_pb2.Tag(id=tag.id, uid=tag.uid, name=tag.name, ctime_ms=tag.ctime_ms)


def resource_to_proto(resource: ResourceTags) -> tag_pb2.ResourceTags:
    """The wire form of a resource's tag set."""
    return tag_pb2.ResourceTags(
        biz=resource.biz,
        biz_id=resource.biz_id,
        uid=resource.uid,
        tags=[tag_to_proto(tag) for tag in resource.tags],
        version=resource.version,
        utime_ms=resource.utime_ms,
    )


def _tag(message: tag_pb2.Tag) -> Tag:
    return Tag(id=message.id, uid=message.uid, name=message.name, ctime_ms=message.ctime_ms)


class EventSink(Protocol):
    """Where events go: ``kit.outbox.OutboxSink.publish`` (or a test's recorder)."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class TagEventWriter:
    """:class:`services.tag.service.TagEvents` on an :class:`EventSink`."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def tag_created(self, tag: Tag) -> None:
        """Record ``TagsChanged`` with the new tag (keyed by its owner)."""
        self._sink.publish(
            TAGS_CHANGED.name,
            tag.uid,
            tag_pb2.TagsChanged(uid=tag.uid, tag_created=tag_to_proto(tag)),
        )

    def resource_changed(self, resource: ResourceTags) -> None:
        """Record ``TagsChanged`` with the resource's whole new set (keyed by its owner)."""
        self._sink.publish(
            TAGS_CHANGED.name,
            resource.uid,
            tag_pb2.TagsChanged(uid=resource.uid, resource_tags=resource_to_proto(resource)),
        )


def decode_change(value: bytes) -> Change:
    """What a ``TagsChanged`` record says; ``ValueError`` if it is not one."""
    event = parse_event(tag_pb2.TagsChanged, value)
    which = event.WhichOneof("change")
    if which == "tag_created" and event.tag_created.id > 0:
        return _tag(event.tag_created)
    if which == "resource_tags" and event.resource_tags.version > 0:
        resource = event.resource_tags
        return ResourceTags(
            biz=resource.biz,
            biz_id=resource.biz_id,
            uid=resource.uid,
            tags=sorted_tags([_tag(tag) for tag in resource.tags]),
            version=resource.version,
            utime_ms=resource.utime_ms,
        )
    raise ValueError(f"TagsChanged without a change: {event}")


def apply_change(cache: TagCache, change: Change) -> None:
    """Apply one change to ``cache`` (idempotent)."""
    if isinstance(change, Tag):
        cache.tag_created(change)
    else:
        cache.put_resource(change)


class CacheUpdater:
    """Batch handler: applies every change to this replica's cache, in order."""

    def __init__(self, cache: TagCache) -> None:
        self._cache = cache

    async def __call__(self, batch: Sequence[ConsumedEvent[Change]]) -> None:
        """Apply a batch (in memory: cannot fail)."""
        for event in batch:
            apply_change(self._cache, event.payload)


def cache_event_consumer(cache: TagCache, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that keeps ``cache`` current with every replica's changes."""
    return BatchConsumer(
        config, {TAGS_CHANGED.name: TopicHandler(decode_change, CacheUpdater(cache))}
    )

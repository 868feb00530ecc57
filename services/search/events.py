"""The search index's Kafka sync: article and user events become index changes.

Topics (their names come from ``webook.events.v1.Topic``, or the tag service's own
``webook.tag.v1.Topic``, where the producers read them too; ``docs/events.md``,
``docs/tag.md``), each decoded straight into a domain change by the table :data:`DECODERS`:

===========================  =====================  =========================================
topic                        payload                change
===========================  =====================  =========================================
``TOPIC_ARTICLE_PUBLISHED``  ``ArticlePublished``   upsert of the article at ``utime_ms``
``TOPIC_ARTICLE_WITHDRAWN``  ``ArticleWithdrawn``   removal (tombstone) at ``at_ms``
``TOPIC_USER_CHANGED``       ``UserChanged``        upsert of the user at ``at_ms``
``TOPIC_TAGS_CHANGED``       ``TagsChanged``        an article's ``resource_tags``: retag at
                                                    the set's ``version``; anything else: none
===========================  =====================  =========================================

A ``TagsChanged`` that is not an article's tag set (``tag_created``, another ``biz``) is
valid but means nothing to the index: it decodes to None, and :class:`IndexSync` drops it
and counts it ``webook_search_sync_changes_total{source="kafka",result="skipped"}``, not as
an undecodable record.

The consumer group is ``<prefix>-<index id>`` (:mod:`services.search.storage`): every
index consumes every event. One :class:`BatchConsumer` batch (up to ``sync_batch_size``
records or ``sync_batch_wait_seconds``) is offered to
:meth:`SearchService.apply <services.search.service.SearchService.apply>` topic by topic;
``apply`` returns once the changes are **committed to the index**, and only then does the
consumer commit the offsets. A failed index commit raises, so the consumer retries the
batch with backoff.

**Duplicates and order.** Delivery is at-least-once and the three topics share no order
(one article's publish and withdraw travel on different topics). Both are harmless because
every change carries a version and the index applies a change only if it is newer than what
it holds, a withdrawal winning a tie (``domain.supersedes``; an article's tags by their own
version, ``domain.Retag``): a duplicate or a stale event
is counted ``superseded`` and ignored, and a withdrawn article stays withdrawn until a
*later* publish. Records that do not decode, or describe nothing indexable (no id, no
time), are skipped and counted (``webook_kafka_consumed_total{result="undecodable"}``);
a bad record never stops the consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

from opentelemetry import trace

from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    TopicHandler,
    parse_event,
    topic_name,
)
from services.search import metrics
from services.search.analysis import html_to_text
from services.search.domain import (
    MAX_TIME_MS,
    Change,
    DocKey,
    DocType,
    Removal,
    Retag,
    SyncChange,
    Upsert,
    article_doc,
    tag_set,
    user_doc,
)
from services.search.errors import SearchInvalidArgument
from services.search.service import SearchService
from webook.events.v1 import events_pb2
from webook.tag.v1 import tag_pb2

ARTICLE_PUBLISHED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED)
ARTICLE_WITHDRAWN_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN)
USER_CHANGED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_USER_CHANGED)
TAGS_CHANGED_TOPIC: Final = topic_name(tag_pb2.Topic, tag_pb2.TOPIC_TAGS_CHANGED)
ARTICLE_BIZ: Final = "article"
"""The ``biz`` of an article's tag set at the tag service."""
SYNC_SOURCE: Final = "kafka"


def sync_group(prefix: str, index_id: str) -> str:
    """The consumer group of the index ``index_id``."""
    return f"{prefix}-{index_id}"


def decode_article_published(value: bytes) -> Change:
    """The upsert an ``ArticlePublished`` record describes; ``ValueError`` if none."""
    event = parse_event(events_pb2.ArticlePublished, value)
    version = event.utime_ms or event.at_ms
    if version <= 0:
        raise ValueError(f"ArticlePublished {event.article_id} carries no time")
    try:
        doc = article_doc(
            article_id=event.article_id,
            title=event.title,
            body=html_to_text(event.content),
            author_id=event.author_id,
            author_name=event.author_name,
            utime_ms=version,
        )
    except SearchInvalidArgument as exc:
        raise ValueError(exc.message) from exc
    return Upsert(doc, version)


def decode_article_withdrawn(value: bytes) -> Change:
    """The removal an ``ArticleWithdrawn`` record describes; ``ValueError`` if none."""
    event = parse_event(events_pb2.ArticleWithdrawn, value)
    if event.article_id <= 0:
        raise ValueError(f"ArticleWithdrawn without an article id: {event}")
    if event.at_ms <= 0:
        raise ValueError(f"ArticleWithdrawn {event.article_id} carries no time")
    if event.at_ms > MAX_TIME_MS:
        # Its tombstone would outrank every later publication of the article, forever.
        raise ValueError(f"ArticleWithdrawn {event.article_id} carries a time past 9999")
    return Removal(DocKey(DocType.ARTICLE, event.article_id), event.at_ms)


def decode_user_changed(value: bytes) -> Change:
    """The upsert a ``UserChanged`` record describes; ``ValueError`` if none."""
    event = parse_event(events_pb2.UserChanged, value)
    if event.at_ms <= 0:
        raise ValueError(f"UserChanged {event.user_id} carries no time")
    try:
        doc = user_doc(
            user_id=event.user_id,
            nickname=event.nickname,
            about_me=event.about_me,
            utime_ms=event.at_ms,
        )
    except SearchInvalidArgument as exc:
        raise ValueError(exc.message) from exc
    return Upsert(doc, event.at_ms)


def decode_tags_changed(value: bytes) -> SyncChange | None:
    """The retag an article's ``resource_tags`` record describes; None for a valid record
    that concerns no article (``tag_created``, another ``biz``); ``ValueError`` if the
    record is malformed (no resource id, no version)."""
    event = parse_event(tag_pb2.TagsChanged, value)
    if event.WhichOneof("change") != "resource_tags":
        return None
    return retag_of(event.resource_tags)


def retag_of(resource: tag_pb2.ResourceTags) -> Retag | None:
    """The retag an article's tag set (an event's, or a ``ListTagSets`` entry) describes;
    None for another ``biz``; ``ValueError`` without a resource id or a version."""
    if resource.biz != ARTICLE_BIZ:
        return None
    if resource.biz_id <= 0:
        raise ValueError(f"TagsChanged of an article without an id: {resource.biz_id}")
    try:
        tags = tag_set([tag.name for tag in resource.tags], resource.version)
    except SearchInvalidArgument as exc:
        raise ValueError(f"TagsChanged of article {resource.biz_id}: {exc.message}") from exc
    return Retag(resource.biz_id, tags)


DECODERS: Final[Mapping[str, Callable[[bytes], SyncChange | None]]] = {
    ARTICLE_PUBLISHED_TOPIC: decode_article_published,
    ARTICLE_WITHDRAWN_TOPIC: decode_article_withdrawn,
    USER_CHANGED_TOPIC: decode_user_changed,
    TAGS_CHANGED_TOPIC: decode_tags_changed,
}
"""Topic → decoder into a domain change, or None for a record without one (the event-type
table)."""


class IndexSync:
    """Batch handler: offers a batch's changes to the index and returns once committed."""

    def __init__(self, service: SearchService) -> None:
        self._service = service

    async def __call__(self, batch: Sequence[ConsumedEvent[SyncChange | None]]) -> None:
        """Apply one topic's decoded batch (raises to have it retried); records that
        decoded to no change are counted ``skipped``."""
        changes = [event.payload for event in batch if event.payload is not None]
        if len(changes) < len(batch):
            metrics.SYNC_CHANGES.labels(SYNC_SOURCE, "skipped").inc(len(batch) - len(changes))
        if changes:
            await self._service.apply(changes, source=SYNC_SOURCE)


def sync_consumer(
    service: SearchService,
    config: ConsumerConfig,
    *,
    topics: Mapping[str, str] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> BatchConsumer:
    """The consumer that keeps the index in sync with the article, user and tag events.

    ``topics`` renames topics (their role → the name to read: tests use fresh topics);
    by default the production names above. Each batch runs in a CONSUMER span linked to the
    spans that published its events (:mod:`kit.events.tracing`); the service's
    ``search.sync.apply`` span is its child.
    """
    handler = IndexSync(service)
    names = dict(topics or {})
    return BatchConsumer(
        config,
        {
            names.get(topic, topic): TopicHandler(decode, handler)
            for topic, decode in DECODERS.items()
        },
        tracer_provider=tracer_provider,
    )

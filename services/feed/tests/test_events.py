"""Article events → feed changes through the production decoders and batch handlers,
without a broker: a batch is handed to the handlers as :class:`kit.events.BatchConsumer`
would, and what does not decode is refused by the decoder (the consumer skips and counts
it)."""

from __future__ import annotations

from typing import TypeVar

import pytest

from kit.events import ConsumedEvent
from services.feed.domain import FeedEvent, Model
from services.feed.events import (
    PublishedHandler,
    Withdrawal,
    WithdrawnHandler,
    decode_published,
    decode_withdrawn,
)
from services.feed.tests.conftest import T0, FeedStack
from webook.events.v1 import events_pb2

AUTHOR = 3
T = TypeVar("T")


def consumed(payload: T, offset: int) -> ConsumedEvent[T]:
    """A decoded record as the consumer hands it over."""
    return ConsumedEvent(
        topic="t", partition=0, offset=offset, key=None, timestamp_ms=T0, payload=payload
    )


def test_decoders_refuse_what_is_not_their_event() -> None:
    for garbage in (b"\xff\x00\x01", events_pb2.ArticlePublished(title="t").SerializeToString()):
        with pytest.raises(ValueError, match="ArticlePublished"):
            decode_published(garbage)
    with pytest.raises(ValueError, match="without an article id"):
        decode_withdrawn(events_pb2.ArticleWithdrawn(author_id=3).SerializeToString())
    event = decode_published(
        events_pb2.ArticlePublished(
            article_id=9, author_id=AUTHOR, title="hello", at_ms=T0
        ).SerializeToString()
    )
    assert (event.event_id, event.actor, event.title, event.at_ms) == ("ap-9", AUTHOR, "hello", T0)
    withdrawn = decode_withdrawn(
        events_pb2.ArticleWithdrawn(article_id=9, at_ms=T0 + 1).SerializeToString()
    )
    assert withdrawn == Withdrawal(article_id=9, at_ms=T0 + 1)


@pytest.mark.integration
async def test_handlers_apply_batches_idempotently(stack: FeedStack) -> None:
    stack.followers.follow(70, AUTHOR)
    service = stack.service()
    published = [
        decode_published(
            events_pb2.ArticlePublished(
                article_id=n, author_id=AUTHOR, title=f"t{n}", at_ms=T0 + n
            ).SerializeToString()
        )
        for n in (1, 2, 1)  # a duplicate in the batch
    ]
    batch: list[ConsumedEvent[FeedEvent]] = [
        consumed(event, offset) for offset, event in enumerate(published)
    ]
    await PublishedHandler(service)(batch)
    await PublishedHandler(service)(batch)  # the batch retried whole
    assert [e.event_id for e in await stack.whole_feed(70)] == ["ap-2", "ap-1"]
    assert await stack.inbox_rows() == 2

    withdrawals: list[ConsumedEvent[Withdrawal]] = [
        consumed(Withdrawal(article_id=2, at_ms=T0 + 5), 0)
    ]
    await WithdrawnHandler(service)(withdrawals)
    assert [e.event_id for e in await stack.whole_feed(70)] == ["ap-1"]
    assert await service.article_published(published[0]) is Model.PUSH

"""Article, like and follow events → feed changes through the production decoders and
batch handlers, without a broker: a batch is handed to the handlers as
:class:`kit.events.BatchConsumer` would, and what does not decode is refused by the decoder
(the consumer skips and counts it)."""

from __future__ import annotations

from typing import TypeVar

import pytest

from kit.events import ConsumedEvent
from services.feed.domain import EventKind, FeedEvent, Model
from services.feed.events import (
    FollowedHandler,
    LikedHandler,
    PublishedHandler,
    Withdrawal,
    WithdrawnHandler,
    decode_followed,
    decode_liked,
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


def test_like_and_follow_decoders_refuse_what_is_not_their_event() -> None:
    for garbage in (
        b"\xff\x00\x01",
        events_pb2.ArticleLiked(article_id=9, user_id=5).SerializeToString(),  # no author
        events_pb2.ArticleLiked(article_id=9, author_id=AUTHOR).SerializeToString(),  # no user
    ):
        with pytest.raises(ValueError, match="ArticleLiked"):
            decode_liked(garbage)
    for garbage in (
        b"\xff\x00\x01",
        events_pb2.UserFollowed(follower=5).SerializeToString(),
    ):
        with pytest.raises(ValueError, match="UserFollowed"):
            decode_followed(garbage)

    liked = decode_liked(
        events_pb2.ArticleLiked(
            article_id=9, user_id=5, author_id=AUTHOR, title="hello", at_ms=T0
        ).SerializeToString()
    )
    assert (liked.kind, liked.event_id, liked.actor, liked.recipient) == (
        EventKind.ARTICLE_LIKED,
        "al-5-9",
        5,
        AUTHOR,
    )
    assert (liked.article_id, liked.title, liked.at_ms) == (9, "hello", T0)
    followed = decode_followed(
        events_pb2.UserFollowed(follower=5, followee=AUTHOR, at_ms=T0).SerializeToString()
    )
    assert (followed.kind, followed.event_id, followed.actor, followed.recipient) == (
        EventKind.USER_FOLLOWED,
        "uf-5-3",
        5,
        AUTHOR,
    )


@pytest.mark.integration
async def test_like_and_follow_handlers_deliver_once_to_the_recipient(stack: FeedStack) -> None:
    service = stack.service()
    likes: list[ConsumedEvent[FeedEvent]] = [
        consumed(
            decode_liked(
                events_pb2.ArticleLiked(
                    article_id=9, user_id=fan, author_id=AUTHOR, title="t9", at_ms=T0 + fan
                ).SerializeToString()
            ),
            offset,
        )
        for offset, fan in enumerate((5, 6, 5))  # a duplicate from the producer
    ]
    follows: list[ConsumedEvent[FeedEvent]] = [
        consumed(
            decode_followed(
                events_pb2.UserFollowed(
                    follower=7, followee=AUTHOR, at_ms=T0 + 10
                ).SerializeToString()
            ),
            0,
        )
    ]
    await LikedHandler(service)(likes)
    await LikedHandler(service)(likes)  # the batch retried whole
    await FollowedHandler(service)(follows)
    await FollowedHandler(service)(follows)

    feed = await stack.whole_feed(AUTHOR)
    assert [e.event_id for e in feed] == ["uf-7-3", "al-6-9", "al-5-9"]
    assert await stack.inbox_rows() == 3
    assert await stack.inbox_rows(AUTHOR) == 3

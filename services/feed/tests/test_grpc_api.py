"""The servicer's proto translation: each kind of feed entry and the cursor on the wire."""

from __future__ import annotations

from typing import Any, cast

import pytest

from services.feed.domain import article_liked, article_published, user_followed
from services.feed.grpc_api import Context, FeedServicer, feed_event_message
from services.feed.tests.conftest import T0, FeedStack
from webook.feed.v1 import feed_pb2

pytestmark = pytest.mark.integration


def test_every_kind_has_its_wire_body() -> None:
    published = feed_event_message(article_published(1, 10, "t", T0))
    liked = feed_event_message(article_liked(2, 10, "t", 1, T0))
    followed = feed_event_message(user_followed(2, 1, T0))
    assert published.WhichOneof("body") == "article_published"
    assert published.article_published.article_id == 10
    assert liked.WhichOneof("body") == "article_liked"
    assert liked.article_liked.recipient == 1
    assert followed.WhichOneof("body") == "user_followed"
    assert (followed.event_id, followed.at_ms) == ("uf-2-1", T0)


async def test_get_feed_pages_over_the_wire_types(stack: FeedStack) -> None:
    service = stack.service()
    await service.user_followed(user_followed(2, 1, T0 + 1))
    await service.user_followed(user_followed(3, 1, T0 + 2))
    servicer = FeedServicer(service)
    context = cast(Context, cast(Any, None))

    first = await servicer.GetFeed(feed_pb2.GetFeedRequest(uid=1, limit=1), context)
    assert [e.event_id for e in first.events] == ["uf-3-1"]
    assert first.next_cursor
    second = await servicer.GetFeed(
        feed_pb2.GetFeedRequest(uid=1, cursor=first.next_cursor, limit=1), context
    )
    assert [e.event_id for e in second.events] == ["uf-2-1"]
    assert second.next_cursor == ""

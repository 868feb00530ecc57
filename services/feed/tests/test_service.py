"""The feed use cases on real SQLite and MariaDB, with the follow service in memory.

Covered: push fan-out in batches, pull for a big author, the merged read order and cursor
paging (no duplicates, no gaps, ties on time), a fan-out crashing after N batches and
resumed (nothing lost, nothing written twice), an author crossing the threshold both ways
(every event exactly once in every feed, redeliveries included), withdrawn articles
leaving every feed (also when the withdrawal overtakes the publication), likes and new
followers for their recipient,.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.feed.domain import (
    FeedEvent,
    Model,
    article_liked,
    article_published,
    user_followed,
)
from services.feed.repository import SqlFeedRepository, SqlUnitOfWork
from services.feed.repository.dao import FanoutRow, FeedDAO
from services.feed.tests.conftest import T0, FeedStack

pytestmark = pytest.mark.integration

AUTHOR = 1
BIG = 2
OUTSIDER = 99


def ids(events: Sequence[FeedEvent]) -> list[str]:
    """The event ids of a feed, in order."""
    return [event.event_id for event in events]


def publish(article_id: int, at_ms: int, author: int = AUTHOR) -> FeedEvent:
    """The feed event of ``author`` publishing ``article_id``."""
    return article_published(author, article_id, f"title {article_id}", T0 + at_ms)


async def test_an_ordinary_author_is_pushed_to_every_follower_in_batches(
    stack: FeedStack,
) -> None:
    for fan in (11, 12, 13):
        stack.followers.follow(fan, AUTHOR)
    service = stack.service()

    assert await service.article_published(publish(100, 1)) is Model.PUSH

    for fan in (11, 12, 13):
        assert ids(await stack.whole_feed(fan)) == ["ap-100"]
    assert await stack.whole_feed(OUTSIDER) == []
    assert await stack.inbox_rows() == 3
    assert stack.followers.pages_served == 2  # batches of 2
    # A redelivered publication writes nothing more.
    assert await service.article_published(publish(100, 1)) is Model.PUSH
    assert await stack.inbox_rows() == 3


async def test_a_big_author_is_written_once_and_merged_at_read(stack: FeedStack) -> None:
    for fan in (21, 22, 23, 24):
        stack.followers.follow(fan, BIG)
    service = stack.service()

    assert await service.article_published(publish(200, 1, author=BIG)) is Model.PULL

    assert await stack.inbox_rows() == 0
    for fan in (21, 22, 23, 24):
        page = await service.get_feed(fan, "", 10)
        assert ids(page.events) == ["ap-200"]
        assert page.events[0].title == "title 200"
    assert await stack.whole_feed(OUTSIDER) == []


async def test_merged_pages_are_newest_first_without_duplicates_or_gaps(
    stack: FeedStack,
) -> None:
    reader = 30
    stack.followers.follow(reader, AUTHOR)
    for fan in (31, 32, 33, 34):
        stack.followers.follow(fan, BIG)
    stack.followers.follow(reader, BIG)
    service = stack.service()
    # Interleaved times, with ties on time between the inbox and the outbox.
    for n, at in enumerate((5, 1, 9, 3, 7, 7, 2)):
        await service.article_published(publish(300 + n, at, author=AUTHOR))
        await service.article_published(publish(400 + n, at, author=BIG))
    await service.user_followed(user_followed(OUTSIDER, reader, T0 + 6))

    expected = sorted(
        [(T0 + at, f"ap-{300 + n}") for n, at in enumerate((5, 1, 9, 3, 7, 7, 2))]
        + [(T0 + at, f"ap-{400 + n}") for n, at in enumerate((5, 1, 9, 3, 7, 7, 2))]
        + [(T0 + 6, f"uf-{OUTSIDER}-{reader}")],
        reverse=True,
    )
    for limit in (1, 3, 4, 100):
        assert ids(await stack.whole_feed(reader, limit)) == [e for _, e in expected]
    # A page written at the head meanwhile does not shift the next page.
    first = await service.get_feed(reader, "", 4)
    await service.article_published(publish(399, 50, author=AUTHOR))
    second = await service.get_feed(reader, first.next_cursor, 4)
    assert ids(first.events) + ids(second.events) == [e for _, e in expected][:8]


class FailingInbox(SqlFeedRepository):
    """A repository whose inbox writes fail once ``budget`` batches were written."""

    def __init__(self, dao: FeedDAO, budget: list[int]) -> None:
        super().__init__(dao)
        self._budget = budget

    async def add_to_inboxes(self, owners: Sequence[int], event_id: str, at_ms: int) -> int:
        """Write, or fail like a crashed process once the budget is spent."""
        if self._budget[0] <= 0:
            raise RuntimeError("simulated crash during fan-out")
        self._budget[0] -= 1
        return await super().add_to_inboxes(owners, event_id, at_ms)


class FailingUnitOfWork(SqlUnitOfWork):
    """:class:`SqlUnitOfWork` with a :class:`FailingInbox`."""

    def __init__(self, stack: FeedStack, budget: list[int]) -> None:
        super().__init__(stack.sessions)
        self._budget = budget

    def open_repository(self, session: AsyncSession) -> SqlFeedRepository:
        return FailingInbox(FeedDAO(session), self._budget)


async def test_a_fan_out_crashing_after_n_batches_resumes_losing_and_duplicating_nothing(
    stack: FeedStack,
) -> None:
    fans = list(range(1000, 1009))
    for fan in fans:
        stack.followers.follow(fan, AUTHOR)
    stack.threshold = 100
    budget = [2]  # two batches of 2 commit, the third fails
    crashing = stack.service(lambda: FailingUnitOfWork(stack, budget))

    with pytest.raises(RuntimeError, match="simulated crash"):
        await crashing.article_published(publish(500, 1))
    assert await stack.inbox_rows() == 4
    async with stack.engine.connect() as conn:
        job = (await conn.execute(select(FanoutRow))).one()
    assert (job.batches, job.written, job.done) == (2, 4, 0)

    restarted = stack.service()
    assert await restarted.resume_fanouts() == 5
    assert await restarted.resume_fanouts() == 0
    assert await stack.inbox_rows() == len(fans)
    for fan in fans:
        assert ids(await stack.whole_feed(fan)) == ["ap-500"]
    # The consumer redelivering the publication after the restart changes nothing.
    await restarted.article_published(publish(500, 1))
    assert await stack.inbox_rows() == len(fans)


async def test_crossing_the_threshold_both_ways_keeps_every_event_exactly_once(
    stack: FeedStack,
) -> None:
    fans = (41, 42, 43)
    for fan in fans:
        stack.followers.follow(fan, AUTHOR)
    service = stack.service()
    stack.threshold = 3  # 3 followers: ordinary

    assert await service.article_published(publish(601, 1)) is Model.PUSH
    stack.followers.follow(44, AUTHOR)  # 4 > 3: big
    assert await service.article_published(publish(602, 2)) is Model.PULL
    # The first publication redelivered after the switch keeps its model.
    assert await service.article_published(publish(601, 1)) is Model.PUSH
    stack.threshold = 10  # the operator raises the live threshold: ordinary again
    assert await service.article_published(publish(603, 3)) is Model.PUSH
    stack.threshold = 1  # and lowers it: big again
    assert await service.article_published(publish(604, 4)) is Model.PULL
    assert await service.article_published(publish(603, 3)) is Model.PUSH

    for fan in fans:
        assert ids(await stack.whole_feed(fan, limit=1)) == ["ap-604", "ap-603", "ap-602", "ap-601"]
    assert ids(await stack.whole_feed(44)) == ["ap-604", "ap-603", "ap-602"]
    assert await stack.inbox_rows() == 3 + 4


async def test_a_withdrawn_article_leaves_every_feed(stack: FeedStack) -> None:
    reader = 50
    stack.followers.follow(reader, AUTHOR)
    for fan in (51, 52, 53, 54):
        stack.followers.follow(fan, BIG)
    stack.followers.follow(reader, BIG)
    service = stack.service()
    await service.article_published(publish(700, 1))
    await service.article_published(publish(701, 2, author=BIG))
    await service.article_published(publish(702, 3, author=BIG))
    await service.article_liked(article_liked(reader, 700, "title 700", AUTHOR, T0 + 4))

    assert await service.article_withdrawn(700, T0 + 10) == 2
    assert await service.article_withdrawn(701, T0 + 10) == 1

    assert ids(await stack.whole_feed(reader)) == ["ap-702"]
    assert await stack.whole_feed(AUTHOR) == []
    # A publication redelivered after its withdrawal stays hidden; a like too.
    assert await service.article_published(publish(701, 2, author=BIG)) is None
    assert not await service.article_liked(article_liked(51, 701, "t", BIG, T0 + 5))
    # A withdrawal that overtakes its publication (another topic) hides it as well.
    await service.article_withdrawn(703, T0 + 20)
    assert await service.article_published(publish(703, 15)) is None
    assert ids(await stack.whole_feed(reader)) == ["ap-702"]
    # Published again after the withdrawal: back in the feeds.
    assert await service.article_published(publish(700, 30)) is Model.PUSH
    assert ids(await stack.whole_feed(reader)) == ["ap-702", "ap-700"]


async def test_likes_and_follows_reach_their_recipient_once(stack: FeedStack) -> None:
    service = stack.service()
    assert await service.article_liked(article_liked(61, 800, "t", AUTHOR, T0 + 1))
    assert not await service.article_liked(article_liked(61, 800, "t", AUTHOR, T0 + 1))
    assert await service.user_followed(user_followed(62, AUTHOR, T0 + 2))
    assert not await service.user_followed(user_followed(AUTHOR, AUTHOR, T0 + 3))

    feed = await stack.whole_feed(AUTHOR)
    assert ids(feed) == [f"uf-62-{AUTHOR}", "al-61-800"]
    assert feed[1].recipient == AUTHOR
    assert await stack.whole_feed(61) == []

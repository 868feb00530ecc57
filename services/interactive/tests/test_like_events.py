"""``ArticleLiked`` for a new like of an article only, with its author, after the commit.

The use case over real SQL (SQLite and MariaDB) and Redis, with the article service's author
lookup in memory and the producer replaced by a recorder; then the lookup's adapter
(:class:`services.interactive.peers.PublishedArticleAuthors`) on a stand-in article service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from google.protobuf.message import Message

from clients.article import TargetsUnavailable
from clients.tests.articles import FakeTargets
from devstack.infra import free_port
from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from kit.sql import session_factory
from services.interactive.errors import Reason
from services.interactive.events import ARTICLE_LIKED, KafkaLikeEvents
from services.interactive.peers import PublishedArticleAuthors
from services.interactive.repository import SqlUnitOfWork
from services.interactive.service import InteractiveService
from services.interactive.tests.articles import FakeAuthors, stand_in_authors, title_of
from services.interactive.tests.stack import InteractiveStack
from webook.events.v1 import events_pb2

pytestmark = pytest.mark.integration

ARTICLE = "article"
ARTICLE_ID = 70
AUTHOR = 7
READER = 42


@dataclass
class RecordingSink:
    """What the producer was handed: ``(topic, key, event)`` in order."""

    published: list[tuple[str, int, Message]] = field(default_factory=list)

    def publish(self, topic: str, key: int, event: Message) -> bool:
        self.published.append((topic, key, event))
        return True

    def likes(self) -> list[events_pb2.ArticleLiked]:
        """The ``ArticleLiked`` events, each checked against its topic and key."""
        events = []
        for topic, key, event in self.published:
            assert topic == ARTICLE_LIKED.name
            assert isinstance(event, events_pb2.ArticleLiked)
            assert key == event.article_id
            events.append(event)
        return events


@dataclass
class Liking:
    """The service with its author lookup and event recorder."""

    service: InteractiveService
    authors: FakeAuthors
    sink: RecordingSink


@pytest.fixture
def liking(interactive_stack: InteractiveStack) -> Liking:
    """The production storage wiring, article 70 published by user 7, events recorded."""
    sessions = session_factory(interactive_stack.engine)
    cache = interactive_stack.cache
    authors = FakeAuthors({ARTICLE_ID: AUTHOR})
    sink = RecordingSink()
    service = InteractiveService(
        lambda: SqlUnitOfWork(sessions, cache),
        targets=FakeTargets(),
        cached=cache,
        authors=authors,
        like_events=KafkaLikeEvents(sink),
    )
    return Liking(service=service, authors=authors, sink=sink)


async def test_only_a_new_like_is_announced_to_the_author(liking: Liking) -> None:
    assert await liking.service.like(ARTICLE, ARTICLE_ID, READER)
    [event] = liking.sink.likes()
    assert (event.article_id, event.user_id, event.author_id) == (ARTICLE_ID, READER, AUTHOR)
    assert event.at_ms > 0

    assert not await liking.service.like(ARTICLE, ARTICLE_ID, READER)  # repeated
    assert await liking.service.cancel_like(ARTICLE, ARTICLE_ID, READER)
    await liking.service.collect(ARTICLE, ARTICLE_ID, READER, 0)
    assert len(liking.sink.likes()) == 1

    # Liked again after the cancel: a new like row, so a new event (the feed keys it by
    # user and article, so the author's feed shows it once).
    assert await liking.service.like(ARTICLE, ARTICLE_ID, READER)
    assert [e.user_id for e in liking.sink.likes()] == [READER, READER]


async def test_a_refused_like_announces_nothing(liking: Liking) -> None:
    with pytest.raises(AppError) as missing:
        await liking.service.like(ARTICLE, ARTICLE_ID + 1, READER)
    assert missing.value.reason == Reason.TARGET_NOT_FOUND
    liking.authors.down = True
    with pytest.raises(AppError) as down:
        await liking.service.like(ARTICLE, ARTICLE_ID, READER)
    assert down.value.reason == Reason.TARGET_UNAVAILABLE

    assert liking.sink.published == []
    counts = await liking.service.get(ARTICLE, ARTICLE_ID, READER)
    assert (counts.counts.like_cnt, counts.liked) == (0, False)


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_adapter_names_the_author_and_remembers_published_answers_briefly() -> None:
    published: dict[int, int] = {ARTICLE_ID: AUTHOR}
    asked: list[int] = []

    def author_of(article_id: int) -> int | None:
        asked.append(article_id)
        return published.get(article_id)

    clock = Clock()
    async with stand_in_authors(author_of) as address:
        clients = ServiceClients(registry=None, peers={"article": address})
        authors = PublishedArticleAuthors(clients, ttl_s=5.0, clock=clock)
        try:
            owner = await authors.published_owner(ARTICLE_ID)
            assert owner is not None
            assert (owner.article_id, owner.author_id, owner.title) == (
                ARTICLE_ID,
                AUTHOR,
                title_of(ARTICLE_ID),
            )
            assert await authors.published_owner(ARTICLE_ID) == owner
            assert asked == [ARTICLE_ID]
            # Withdrawn: trusted until the TTL ends, not after; "not published" is not kept.
            del published[ARTICLE_ID]
            clock.now += 5.1
            assert await authors.published_owner(ARTICLE_ID) is None
            published[ARTICLE_ID] = AUTHOR
            assert await authors.published_owner(ARTICLE_ID) == owner
            assert asked == [ARTICLE_ID] * 3
        finally:
            await clients.close()


async def test_an_unreachable_article_service_leaves_the_author_unknown() -> None:
    clients = ServiceClients(registry=None, peers={"article": f"127.0.0.1:{free_port()}"})
    authors = PublishedArticleAuthors(clients, timeout_s=2.0)
    try:
        with pytest.raises(TargetsUnavailable):
            await authors.published_owner(ARTICLE_ID)
    finally:
        await clients.close()

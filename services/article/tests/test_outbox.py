"""Publications and withdrawals are written to ``article_outbox`` in the transaction of the
change (real SQLite and MariaDB): an event exists if and only if its change committed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kit.errors import AppError
from services.article.events import ARTICLE_PUBLISHED_TOPIC, ARTICLE_WITHDRAWN_TOPIC
from services.article.repository.dao import ArticleOutboxRow
from services.article.tests.stack import ArticleStack
from webook.events.v1 import events_pb2

ALICE, BOB = 1, 2


async def outbox(stack: ArticleStack) -> list[tuple[str, str, bytes]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            select(
                ArticleOutboxRow.topic, ArticleOutboxRow.event_key, ArticleOutboxRow.payload
            ).order_by(ArticleOutboxRow.id)
        )
        return [(topic, key, payload) for topic, key, payload in rows]


async def test_publish_and_withdraw_record_their_events_with_the_change(
    article_stack: ArticleStack,
) -> None:
    service = article_stack.service
    article_id = await service.publish(ALICE, 0, "Title", "<p>Body</p>")
    await service.withdraw(ALICE, article_id)
    await service.withdraw(ALICE, article_id)  # repeated: the copy stays withdrawn, recorded again
    (published, withdrawn, again) = await outbox(article_stack)
    assert published[:2] == (ARTICLE_PUBLISHED_TOPIC, str(article_id))
    event = events_pb2.ArticlePublished.FromString(published[2])
    assert (event.article_id, event.title, event.author_name) == (article_id, "Title", "Alice")
    assert withdrawn[:2] == again[:2] == (ARTICLE_WITHDRAWN_TOPIC, str(article_id))
    assert events_pb2.ArticleWithdrawn.FromString(withdrawn[2]).author_id == ALICE
    assert article_stack.events.published == []  # nothing on the buffered path


async def test_a_refused_change_records_no_event(article_stack: ArticleStack) -> None:
    service = article_stack.service
    article_id = await service.save(ALICE, 0, "mine", "")
    with pytest.raises(AppError):
        await service.publish(BOB, article_id, "stolen", "<p>x</p>")
    with pytest.raises(AppError):
        await service.withdraw(BOB, article_id)
    await service.withdraw(ALICE, article_id)  # never published: nothing to report
    assert await outbox(article_stack) == []

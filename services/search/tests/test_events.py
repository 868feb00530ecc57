"""The event table of the sync consumer: which record becomes which index change."""

from __future__ import annotations

import pytest

from services.search.domain import (
    MAX_TAG_CHARS,
    ArticleDoc,
    DocKey,
    DocType,
    Removal,
    Retag,
    TagSet,
    Upsert,
    UserDoc,
)
from services.search.events import (
    ARTICLE_PUBLISHED_TOPIC,
    ARTICLE_WITHDRAWN_TOPIC,
    DECODERS,
    TAGS_CHANGED_TOPIC,
    USER_CHANGED_TOPIC,
    decode_article_published,
    decode_article_withdrawn,
    decode_tags_changed,
    decode_user_changed,
    sync_group,
)
from webook.events.v1 import events_pb2
from webook.tag.v1 import tag_pb2


def test_the_table_covers_the_four_topics() -> None:
    assert set(DECODERS) == {
        ARTICLE_PUBLISHED_TOPIC,
        ARTICLE_WITHDRAWN_TOPIC,
        USER_CHANGED_TOPIC,
        TAGS_CHANGED_TOPIC,
    }
    assert TAGS_CHANGED_TOPIC == "webook.tag.changed"
    assert sync_group("search-indexer", "abc") == "search-indexer-abc"


def resource_tags(*names: str, biz: str = "article", biz_id: int = 5, version: int = 3) -> bytes:
    """A ``TagsChanged`` record of a resource's whole tag set."""
    return tag_pb2.TagsChanged(
        uid=7,
        resource_tags=tag_pb2.ResourceTags(
            biz=biz,
            biz_id=biz_id,
            uid=7,
            tags=[tag_pb2.Tag(id=i + 1, uid=7, name=name) for i, name in enumerate(names)],
            version=version,
            utime_ms=1_000,
        ),
    ).SerializeToString()


def test_an_articles_tag_set_becomes_a_retag_at_its_version() -> None:
    change = decode_tags_changed(resource_tags("微服务", " Go ", "go", "Go", "", "a" * 80))
    assert change == Retag(5, TagSet(("Go", "a" * MAX_TAG_CHARS, "go", "微服务"), 3))
    assert change.key == DocKey(DocType.ARTICLE, 5)


def test_an_empty_tag_set_removes_every_name() -> None:
    assert decode_tags_changed(resource_tags(version=4)) == Retag(5, TagSet((), 4))


def test_tag_events_that_concern_no_article_decode_to_nothing() -> None:
    created = tag_pb2.TagsChanged(uid=7, tag_created=tag_pb2.Tag(id=1, uid=7, name="go"))
    assert decode_tags_changed(created.SerializeToString()) is None
    assert decode_tags_changed(resource_tags("go", biz="video")) is None
    assert decode_tags_changed(tag_pb2.TagsChanged(uid=7).SerializeToString()) is None


def test_a_published_article_becomes_an_upsert_of_its_plain_text_at_its_utime() -> None:
    event = events_pb2.ArticlePublished(
        article_id=5,
        title=" 限流算法 ",
        content="<p>令牌桶 &amp; <b>leaky</b> bucket</p><script>x()</script>",
        author_id=7,
        author_name="Ada",
        utime_ms=1_000,
        at_ms=999,
    )
    change = decode_article_published(event.SerializeToString())
    assert change == Upsert(
        ArticleDoc(
            id=5,
            title="限流算法",
            body="令牌桶 & leaky bucket",
            author_id=7,
            author_name="Ada",
            utime_ms=1_000,
        ),
        1_000,
    )


def test_a_publish_without_utime_falls_back_to_its_event_time() -> None:
    event = events_pb2.ArticlePublished(article_id=5, title="t", at_ms=42)
    change = decode_article_published(event.SerializeToString())
    assert isinstance(change, Upsert)
    assert change.version == 42


def test_withdrawals_and_user_changes() -> None:
    withdrawn = events_pb2.ArticleWithdrawn(article_id=5, author_id=7, at_ms=2_000)
    assert decode_article_withdrawn(withdrawn.SerializeToString()) == Removal(
        DocKey(DocType.ARTICLE, 5), 2_000
    )
    changed = events_pb2.UserChanged(user_id=3, nickname="安妮", about_me="微服务", at_ms=3_000)
    assert decode_user_changed(changed.SerializeToString()) == Upsert(
        UserDoc(id=3, nickname="安妮", about_me="微服务", utime_ms=3_000), 3_000
    )


@pytest.mark.parametrize(
    ("topic", "value"),
    [
        (ARTICLE_PUBLISHED_TOPIC, b"\xff\xff\xff"),
        (
            ARTICLE_PUBLISHED_TOPIC,
            events_pb2.ArticlePublished(title="no id", utime_ms=1).SerializeToString(),
        ),
        (ARTICLE_PUBLISHED_TOPIC, events_pb2.ArticlePublished(article_id=1).SerializeToString()),
        (ARTICLE_WITHDRAWN_TOPIC, events_pb2.ArticleWithdrawn(at_ms=1).SerializeToString()),
        (ARTICLE_WITHDRAWN_TOPIC, events_pb2.ArticleWithdrawn(article_id=1).SerializeToString()),
        (USER_CHANGED_TOPIC, events_pb2.UserChanged(at_ms=1, nickname="x").SerializeToString()),
        (USER_CHANGED_TOPIC, events_pb2.UserChanged(user_id=1).SerializeToString()),
        (USER_CHANGED_TOPIC, b"\x0a\x05"),
        (TAGS_CHANGED_TOPIC, b"\xff\xff\xff"),
        (TAGS_CHANGED_TOPIC, resource_tags("go", biz_id=0)),
        (TAGS_CHANGED_TOPIC, resource_tags("go", version=0)),
    ],
)
def test_records_that_describe_nothing_indexable_are_refused(topic: str, value: bytes) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        DECODERS[topic](value)


def test_a_record_without_value_is_refused() -> None:
    with pytest.raises(ValueError, match="no value"):
        decode_user_changed(None)  # type: ignore[arg-type]

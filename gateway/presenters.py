"""How the services' replies look over HTTP: times, ids and the views of every route.

Routes call the services and hand the replies here, so each format of the API is written
once:

- times: milliseconds since the epoch become ``YYYY-MM-DD HH:MM:SS`` in the server's zone
  (``GatewaySettings.zone``), :func:`format_time`; the text of a second is remembered
  (a bounded cache), since the same articles' times are shown over and over. Any ``int64``
  is shown: a time outside what a date can show in every zone (years 1..9999; a corrupt or
  hostile ``utime`` near 2**63) is clamped to the nearest one shown (:data:`EARLIEST_SECOND`,
  :data:`LATEST_SECOND`) and logged, never a 500 for every page that holds it. The feed's
  and the tags' views (newer routes, for clients that render times in the reader's zone)
  show Unix milliseconds as the services give them (``atMs``, ``ctimeMs``);
- ids: shown as the services give them (``int64``); a list of counts per id answers each
  positive id asked once, in the order asked (:func:`comment_counts`);
- the views (``gateway.schemas``) built from the protobuf messages: a view's field is the
  message's field of the same name in camelCase (``bizId`` shows ``biz_id``, the profile's
  ``AboutMe`` shows ``about_me``), except where a function here says otherwise.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Final

from gateway.schemas.articles import ArticleDetail, ArticleListItem, PublishedArticle
from gateway.schemas.comments import CommentCount, CommentView
from gateway.schemas.feed import FeedItemView, FeedPageView
from gateway.schemas.follow import FollowCountsView, FollowPage, FollowRelationView
from gateway.schemas.search import HitType, SearchHitView, SearchPageView
from gateway.schemas.tags import (
    CreatedTagView,
    ResourceTagsView,
    TaggedResourcePageView,
    TaggedResourceView,
    TagView,
)
from gateway.schemas.users import ProfileView
from webook.search.v1 import search_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from zoneinfo import ZoneInfo

    from google.protobuf.message import Message

    from webook.article.v1 import article_pb2
    from webook.comment.v1 import comment_pb2
    from webook.feed.v1 import feed_pb2
    from webook.follow.v1 import follow_pb2
    from webook.interactive.v1 import interactive_pb2
    from webook.tag.v1 import tag_pb2
    from webook.user.v1 import user_pb2

logger = logging.getLogger(__name__)

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
"""The format of every time shown (four-digit years, also before 1000)."""
# A day inside years 1..9999 at both ends: every zone's offset (at most a day) keeps the
# local date representable.
EARLIEST_SECOND: Final = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
LATEST_SECOND: Final = int(datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC).timestamp())
TIME_CACHE_SIZE: Final = 8192
"""Formatted seconds remembered (each entry ~200 bytes): a page's and the hot articles' times."""
_WORD_START: Final = re.compile(r"(?<!^)([A-Z])")

_HIT_TYPES: Final[dict[int, HitType]] = {
    search_pb2.DOC_TYPE_ARTICLE: "article",
    search_pb2.DOC_TYPE_USER: "user",
}


def format_time(ms: int, zone: ZoneInfo) -> str:
    """Milliseconds since the epoch as ``YYYY-MM-DD HH:MM:SS`` in ``zone``.

    Total over ``int``: a time before :data:`EARLIEST_SECOND` or after
    :data:`LATEST_SECOND` shows as that bound (and is logged: a service stored it).
    """
    # The text shows whole seconds, and ms / 1000 never rounds up into the next second
    # (its fraction is at most .999), so the floor of the second decides it.
    second = ms // 1000
    if not EARLIEST_SECOND <= second <= LATEST_SECOND:
        logger.warning("time out of the displayable range, clamped", extra={"time_ms": ms})
        second = min(max(second, EARLIEST_SECOND), LATEST_SECOND)
    return _second_text(second, zone)


@lru_cache(maxsize=TIME_CACHE_SIZE)
def _second_text(second: int, zone: ZoneInfo) -> str:
    """One second since the epoch as ``YYYY-MM-DD HH:MM:SS`` in ``zone``."""
    local = datetime.fromtimestamp(second, tz=UTC).astimezone(zone)
    # Not strftime: its %Y drops the leading zeros of years before 1000 (glibc).
    return local.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def published_article(
    a: article_pb2.Article, counts: interactive_pb2.Interactive, zone: ZoneInfo
) -> PublishedArticle:
    """A reader's view of a published article with its counts and the reader's flags."""
    return PublishedArticle(
        **_copied(a, "id", "title", "content"),
        **_copied(counts, "readCnt", "likeCnt", "collectCnt", "liked", "collected"),
        author=a.author.name,
        ctime=format_time(a.ctime_ms, zone),
        utime=format_time(a.utime_ms, zone),
    )


def article_list_item(a: article_pb2.Article, zone: ZoneInfo) -> ArticleListItem:
    """One of the author's articles in their list."""
    return ArticleListItem(**_copied(a, "abstract"), **_written(a, zone))


def article_detail(a: article_pb2.Article, zone: ZoneInfo) -> ArticleDetail:
    """The author's view of one of their articles."""
    return ArticleDetail(**_copied(a, "content"), **_written(a, zone))


def _written(a: article_pb2.Article, zone: ZoneInfo) -> dict[str, Any]:
    """What the author's views show of every article besides its text or abstract."""
    fields = _copied(a, "id", "title", "status")
    fields.update(ctime=format_time(a.ctime_ms, zone), utime=format_time(a.utime_ms, zone))
    return fields


def comment_view(comment: comment_pb2.Comment, zone: ZoneInfo) -> CommentView:
    """A comment and its listed replies."""
    return CommentView(
        **_copied(
            comment, "id", "uid", "biz", "bizId", "content", "rootId", "parentId", "replyCnt"
        ),
        ctime=format_time(comment.ctime_ms, zone),
        replies=[comment_view(reply, zone) for reply in comment.children],
    )


def comment_counts(asked: Iterable[int], counts: Mapping[int, int]) -> list[CommentCount]:
    """One count per positive id asked, each id once, in the order asked (0 when absent)."""
    ordered = dict.fromkeys(i for i in asked if i > 0)
    return [CommentCount(bizId=i, count=counts.get(i, 0)) for i in ordered]


def follow_page(
    reply: follow_pb2.GetFolloweeResponse | follow_pb2.GetFollowerResponse, zone: ZoneInfo
) -> FollowPage:
    """A page of follow relations and the cursor of the next one."""
    return FollowPage(
        relations=[
            FollowRelationView(
                follower=r.follower, followee=r.followee, ctime=format_time(r.ctime_ms, zone)
            )
            for r in reply.relations
        ],
        nextCursor=reply.next_cursor,
    )


def follow_counts(uid: int, static: follow_pb2.FollowStatic) -> FollowCountsView:
    """Follower and followee counts of ``uid``."""
    return FollowCountsView(uid=uid, followers=static.followers, followees=static.followees)


def search_hit(hit: search_pb2.Hit, zone: ZoneInfo) -> SearchHitView | None:
    """One search result (None for a type this gateway does not know)."""
    kind = _HIT_TYPES.get(hit.type)
    if kind is None:
        return None
    return SearchHitView(
        **_copied(hit, "id", "title", "titleHighlight", "snippet", "authorId", "authorName"),
        type=kind,
        score=round(hit.score, 4),
        utime=format_time(hit.utime_ms, zone),
    )


def search_page(reply: search_pb2.SearchResponse, zone: ZoneInfo) -> SearchPageView:
    """A page of search results (hits of unknown types left out) and the total."""
    views = [search_hit(hit, zone) for hit in reply.hits]
    return SearchPageView(hits=[v for v in views if v is not None], total=reply.total)


def feed_item(event: feed_pb2.FeedEvent) -> FeedItemView | None:
    """One feed entry (None for an event of a type this gateway does not know).

    The fields an event's type does not have are None: the article of a new follower, the
    recipient of a publication (the reader, implicitly).
    """
    common = _copied(event, "eventId", "atMs")
    body = event.WhichOneof("body")
    if body == "article_published":
        published = event.article_published
        return FeedItemView(
            **common,
            type="article_published",
            **_copied(published, "actor", "articleId", "title"),
            recipient=None,
        )
    if body == "article_liked":
        liked = event.article_liked
        return FeedItemView(
            **common,
            type="article_liked",
            **_copied(liked, "actor", "articleId", "title", "recipient"),
        )
    if body == "user_followed":
        followed = event.user_followed
        return FeedItemView(
            **common,
            type="user_followed",
            **_copied(followed, "actor", "recipient"),
            articleId=None,
            title=None,
        )
    logger.warning("feed event of unknown type left out", extra={"event_id": event.event_id})
    return None


def feed_page(reply: feed_pb2.GetFeedResponse) -> FeedPageView:
    """A page of the feed (entries of unknown types left out) and the next page's cursor."""
    items = [feed_item(event) for event in reply.events]
    return FeedPageView(
        items=[item for item in items if item is not None], nextCursor=reply.next_cursor
    )


def tag_view(tag: tag_pb2.Tag) -> TagView:
    """One tag."""
    return TagView(**_copied(tag, "id", "uid", "name", "ctimeMs"))


def created_tag(reply: tag_pb2.CreateTagResponse) -> CreatedTagView:
    """The tag of a create, and whether it is new."""
    return CreatedTagView(tag=tag_view(reply.tag), created=reply.created)


def resource_tags(resource: tag_pb2.ResourceTags) -> ResourceTagsView:
    """A resource's whole tag set."""
    return ResourceTagsView(
        **_copied(resource, "biz", "bizId", "uid", "version", "utimeMs"),
        tags=[tag_view(tag) for tag in resource.tags],
    )


def tagged_resource_page(reply: tag_pb2.ListResourcesByTagResponse) -> TaggedResourcePageView:
    """A page of the resources under a tag and the next page's cursor."""
    return TaggedResourcePageView(
        resources=[
            TaggedResourceView(**_copied(r, "biz", "bizId", "taggedMs")) for r in reply.resources
        ],
        nextCursor=reply.next_cursor,
    )


def profile_view(user: user_pb2.User) -> ProfileView:
    """The caller's profile with the capitalised keys existing clients read."""
    return ProfileView(**_copied(user, "Email", "Phone", "Nickname", "Birthday", "AboutMe"))


@cache
def _proto_name(api_name: str) -> str:
    """The protobuf field an API field shows: ``bizId`` -> ``biz_id``, ``AboutMe`` ->
    ``about_me``."""
    return _WORD_START.sub(r"_\1", api_name).lower()


def _copied(message: Message, *api_names: str) -> dict[str, Any]:
    """``message``'s fields as the API names them (camelCase of the protobuf names)."""
    return {name: getattr(message, _proto_name(name)) for name in api_names}

"""The article domain: plain dataclasses and the rules of article input.

An article lives in two places. The **author store** holds what the author is working on:
every article, its latest edit and a status (:class:`ArticleStatus`). The **reader store**
holds the copy readers see, written only by publishing and withdrawing. Editing a published
article therefore changes nothing for readers until the author publishes again.

Rules the functions here enforce (each raises
:class:`~services.article.errors.ArticleInvalidArgument` with a stable reason and
``metadata["field"]``):

- **Titles** are plain text (markup removed, whitespace collapsed, see
  :mod:`services.article.content`), at most 256 characters; publishing needs a non-empty one.
- **Content** is at most 200,000 characters as sent and is stored sanitised; publishing needs
  some content left after sanitising.
- **Authors and readers** are user ids; an author id must be positive.
- **Pages** are ``offset >= 0`` and ``1 <= limit <= 100``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from services.article.content import abstract_of, plain_text, sanitize_html
from services.article.errors import ArticleInvalidArgument, Reason

TITLE_MAX_CHARS = 256
CONTENT_MAX_CHARS = 200_000
MAX_PAGE_SIZE = 100
# Ids one PublishedExists request may ask about.
MAX_EXISTS_IDS = 100


class ArticleStatus(IntEnum):
    """Where an article stands (the numbers are the API's)."""

    UNPUBLISHED = 1
    PUBLISHED = 2
    PRIVATE = 3


@dataclass(frozen=True, slots=True)
class Draft:
    """Validated author input: plain-text title, sanitised content and its abstract."""

    title: str
    content: str
    abstract: str


@dataclass(frozen=True, slots=True)
class Article:
    """An article in the author store (what its author sees); times in ms since the epoch."""

    id: int
    author_id: int
    title: str
    content: str
    abstract: str
    status: ArticleStatus
    ctime_ms: int
    utime_ms: int


@dataclass(frozen=True, slots=True)
class ArticleSummary:
    """An entry of an author's list: an article without its content."""

    id: int
    author_id: int
    title: str
    abstract: str
    status: ArticleStatus
    ctime_ms: int
    utime_ms: int


@dataclass(frozen=True, slots=True)
class PublishedArticle:
    """The copy readers see; ``author_name`` is empty when it could not be looked up."""

    id: int
    author_id: int
    title: str
    content: str
    abstract: str
    ctime_ms: int
    utime_ms: int
    author_name: str = ""

    @classmethod
    def of(cls, article: Article, author_name: str = "") -> PublishedArticle:
        """The reader copy of ``article`` as it is now."""
        return cls(
            id=article.id,
            author_id=article.author_id,
            title=article.title,
            content=article.content,
            abstract=article.abstract,
            ctime_ms=article.ctime_ms,
            utime_ms=article.utime_ms,
            author_name=author_name,
        )

    def with_author_name(self, name: str) -> PublishedArticle:
        """This article with ``name`` as its author's name."""
        return dataclasses.replace(self, author_name=name)


@dataclass(frozen=True, slots=True)
class Page:
    """A slice of a newest-first list."""

    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Update times ``start_ms <= utime < end_ms``."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Popularity:
    """How widely an article is likely read: its author's followers and its reads so far."""

    followers: int = 0
    reads: int = 0


PublishedTtlPolicy = Callable[[PublishedArticle, Popularity], int]
"""Seconds a published article stays cached, given how popular it is."""


def tiered_ttl(
    *,
    base_s: int,
    popular_s: int,
    followers_threshold: int,
    reads_threshold: int,
) -> PublishedTtlPolicy:
    """A policy caching popular articles (author followers or reads at a threshold) longer.

    Popular content is read far more often, so a longer lifetime saves more database reads,
    and its authors edit rarely compared with how often it is read.
    """

    def ttl(article: PublishedArticle, popularity: Popularity) -> int:
        if popularity.followers >= followers_threshold or popularity.reads >= reads_threshold:
            return popular_s
        return base_s

    return ttl


def _invalid(reason: Reason, field: str, message: str, **limits: str) -> ArticleInvalidArgument:
    return ArticleInvalidArgument(reason, message, metadata={"field": field, **limits})


def make_draft(title: str, content: str, *, publishing: bool) -> Draft:
    """Validate and clean author input; publishing also needs a title and content."""
    if len(content) > CONTENT_MAX_CHARS:
        raise _invalid(
            Reason.INVALID_CONTENT,
            "content",
            f"content must be at most {CONTENT_MAX_CHARS} characters",
            max_chars=str(CONTENT_MAX_CHARS),
        )
    clean_title = plain_text(title)
    if len(clean_title) > TITLE_MAX_CHARS:
        raise _invalid(
            Reason.INVALID_TITLE,
            "title",
            f"title must be at most {TITLE_MAX_CHARS} characters",
            max_chars=str(TITLE_MAX_CHARS),
        )
    clean_content = sanitize_html(content)
    if publishing and not clean_title:
        raise _invalid(Reason.INVALID_TITLE, "title", "a published article needs a title")
    if publishing and not clean_content.strip():
        raise _invalid(Reason.INVALID_CONTENT, "content", "a published article needs content")
    return Draft(title=clean_title, content=clean_content, abstract=abstract_of(clean_content))


def check_author(author_id: int) -> int:
    """``author_id`` if it can be a user id."""
    if author_id <= 0:
        raise _invalid(Reason.INVALID_AUTHOR, "author_id", "the author must be a signed-in user")
    return author_id


def make_page(offset: int, limit: int) -> Page:
    """A page with ``offset >= 0`` and ``1 <= limit <= 100``."""
    if offset < 0:
        raise _invalid(Reason.INVALID_PAGE, "offset", "offset must not be negative")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise _invalid(
            Reason.INVALID_PAGE,
            "limit",
            f"limit must be between 1 and {MAX_PAGE_SIZE}",
            max_limit=str(MAX_PAGE_SIZE),
        )
    return Page(offset, limit)


def make_window(start_ms: int, end_ms: int) -> TimeWindow:
    """The window ``[start_ms, end_ms)``; both non-negative and ``start_ms < end_ms``."""
    if start_ms < 0 or end_ms <= start_ms:
        raise _invalid(
            Reason.INVALID_TIME_WINDOW,
            "end_time_ms",
            "the time window must satisfy 0 <= start_time_ms < end_time_ms",
        )
    return TimeWindow(start_ms, end_ms)


def exists_ids(ids: Iterable[int]) -> list[int]:
    """Distinct positive ids in first-seen order (ids <= 0 name no article); at most
    :data:`MAX_EXISTS_IDS`."""
    distinct = list(dict.fromkeys(i for i in ids if i > 0))
    if len(distinct) > MAX_EXISTS_IDS:
        raise _invalid(
            Reason.TOO_MANY_IDS,
            "ids",
            f"at most {MAX_EXISTS_IDS} distinct ids per request, got {len(distinct)}",
            max_ids=str(MAX_EXISTS_IDS),
        )
    return distinct

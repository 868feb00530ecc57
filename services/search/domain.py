"""What the search service indexes and answers, as plain data, and the rules of its input.

Two kinds of documents share one index: published articles and users. Each is addressed by
a :class:`DocKey` ``(type, id)`` and carries a **version** (milliseconds): a change is
applied only if it is newer than what the index holds (:func:`supersedes`), so events that
arrive late, twice, or out of order across topics (``ArticlePublished`` and
``ArticleWithdrawn`` travel on different topics, hence in no common order) cannot bring an
old state back. A withdrawn article is kept as a *tombstone* (a :class:`Removal` with its
version) rather than forgotten, and a removal wins a tie with an upsert of the same
version: a withdrawn article never reappears because a stale publish event arrived after
the withdrawal.

An article also carries its **tag names** (:class:`TagSet`), versioned on their own by the
tag service's version of the article's set: the article's events and its tag events come
from different services, so neither version says anything about the other. A
:class:`Retag` replaces the names only if its set is newer than the one held, and keeps the
article's document (a tombstone stays a tombstone); a document change keeps the held names.
Tags of an article the index has never seen wait on a tombstone at version 0 (invisible,
and superseded by any publication, which then takes the names along).

Queries (:func:`parse_request`): 1..:data:`MAX_QUERY_CHARS` characters of free text after
trimming, without control characters or lone surrogates (refused, not stripped: a client
that sends them has a bug worth seeing; :mod:`services.search.query` says what the text
means); pages of 1..:data:`MAX_PAGE_SIZE` hits (0 means :data:`DEFAULT_PAGE_SIZE`) no deeper
than :data:`MAX_RESULT_WINDOW` (deep pages of a relevance ranking are expensive and useless;
Elasticsearch caps them the same way).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from services.search.errors import Reason, SearchInvalidArgument

MAX_QUERY_CHARS: Final = 200
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 50
MAX_RESULT_WINDOW: Final = 1000
MAX_TITLE_CHARS: Final = 512
MAX_BODY_CHARS: Final = 200_000
PUBLISHED_STATUS: Final = 2
MAX_TAGS: Final = 100
"""Tag names kept per article (the tag service allows 20 by default)."""
MAX_TAG_CHARS: Final = 64
"""Characters kept of a tag name (the tag service allows 32)."""
UNPUBLISHED_VERSION: Final = 0
"""The version of the tombstone holding the tags of an article not published yet."""
MAX_TIME_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the latest time a document may carry. A later one is no time
(a corrupt or hostile ``utime`` near 2**63): it would win every version comparison, so
the document could never change again, top every recency boost and show as no date."""
# Refused in a query: the control characters (Unicode category Cc: C0, DEL, C1) but tab,
# line feed and carriage return (whitespace), and lone surrogates (Cs), which no text holds.
REFUSED_CHARACTERS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class DocType(IntEnum):
    """What a document is; the values are those of the proto's ``DocType``."""

    ARTICLE = 1
    USER = 2


@dataclass(frozen=True, slots=True, order=True)
class DocKey:
    """One document's identity in the index."""

    type: DocType
    id: int


@dataclass(frozen=True, slots=True)
class ArticleDoc:
    """A published article as searched: plain-text title and body (HTML already removed)."""

    id: int
    title: str
    body: str
    author_id: int
    author_name: str
    utime_ms: int

    @property
    def key(self) -> DocKey:
        """The document's key."""
        return DocKey(DocType.ARTICLE, self.id)


@dataclass(frozen=True, slots=True)
class UserDoc:
    """A user as searched."""

    id: int
    nickname: str
    about_me: str
    utime_ms: int

    @property
    def key(self) -> DocKey:
        """The document's key."""
        return DocKey(DocType.USER, self.id)


Document = ArticleDoc | UserDoc


@dataclass(frozen=True, slots=True)
class TagSet:
    """An article's tag names (sorted, unique) as of ``version`` of its set at the tag
    service; version 0 with no names: never tagged."""

    names: tuple[str, ...] = ()
    version: int = 0

    def newer_than(self, other: TagSet | None) -> bool:
        """Whether this set must replace ``other`` (a higher version; None is version 0)."""
        return self.version > (other.version if other is not None else 0)


NO_TAGS: Final = TagSet()


@dataclass(frozen=True, slots=True)
class Upsert:
    """Index ``doc`` (replacing whatever the key held) at ``version``.

    ``tags`` is the article's tag set the document carries once applied; None (what every
    sync path offers) keeps the set the key holds (see :class:`Retag`).
    """

    doc: Document
    version: int
    tags: TagSet | None = None

    @property
    def key(self) -> DocKey:
        """The key the change applies to."""
        return self.doc.key


@dataclass(frozen=True, slots=True)
class Removal:
    """Make ``key`` unsearchable at ``version`` (a tombstone keeps the version, and an
    article's tags: ``tags`` as in :class:`Upsert`)."""

    key: DocKey
    version: int
    tags: TagSet | None = None


Change = Upsert | Removal
"""A whole state of one key, as the index stores it."""


@dataclass(frozen=True, slots=True)
class Retag:
    """Replace article ``article_id``'s tag names by ``tags`` if they are newer than the
    held set, keeping whatever the article's document is (live, withdrawn or not seen)."""

    article_id: int
    tags: TagSet

    @property
    def key(self) -> DocKey:
        """The key the change applies to."""
        return DocKey(DocType.ARTICLE, self.article_id)

    @property
    def version(self) -> int:
        """The version of the tag set."""
        return self.tags.version


SyncChange = Change | Retag
"""What the sync paths offer the index: a document's state or an article's tags."""


@dataclass(frozen=True, slots=True)
class Version:
    """What the index holds for a key: its version and whether it is a tombstone."""

    version: int
    removed: bool


def supersedes(change: Change, current: Version | None) -> bool:
    """Whether ``change`` must replace ``current`` (newer wins; a removal wins a tie)."""
    if current is None:
        return True
    if change.version != current.version:
        return change.version > current.version
    return isinstance(change, Removal) and not current.removed


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A validated query: free text, optional type filter, one page."""

    text: str
    type: DocType | None
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result. ``title`` is plain text; the ``*_html`` fields are escaped HTML with
    ``<em>`` around matched terms."""

    key: DocKey
    score: float
    title: str
    title_html: str
    snippet_html: str
    author_id: int
    author_name: str
    utime_ms: int


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of hits and how many documents matched in all."""

    hits: Sequence[SearchHit]
    total: int


def _invalid(reason: Reason, field_name: str, message: str, **limits: str) -> SearchInvalidArgument:
    return SearchInvalidArgument(reason, message, metadata={"field": field_name, **limits})


def _first_control(text: str) -> tuple[int, str] | None:
    """The first of :data:`REFUSED_CHARACTERS` in ``text`` and its position, if any."""
    found = REFUSED_CHARACTERS.search(text)
    return None if found is None else (found.start(), found.group())


def parse_request(text: str, doc_type: int, offset: int, limit: int) -> SearchRequest:
    """A :class:`SearchRequest` from raw input (``doc_type`` 0 = every type)."""
    refused = _first_control(text)
    if refused is not None:
        position, char = refused
        raise _invalid(
            Reason.INVALID_QUERY,
            "query",
            f"the search query contains a control character (U+{ord(char):04X} at position "
            f"{position}); remove it",
        )
    query = text.strip()
    if not query:
        raise _invalid(Reason.INVALID_QUERY, "query", "the search query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise _invalid(
            Reason.INVALID_QUERY,
            "query",
            f"the search query is too long ({len(query)} characters, at most {MAX_QUERY_CHARS})",
            max_chars=str(MAX_QUERY_CHARS),
        )
    if doc_type == 0:
        wanted: DocType | None = None
    elif doc_type in DocType._value2member_map_:
        wanted = DocType(doc_type)
    else:
        raise _invalid(Reason.INVALID_QUERY, "type", f"unknown document type {doc_type}")
    size = limit or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise _invalid(
            Reason.INVALID_PAGE,
            "limit",
            f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}",
            max_limit=str(MAX_PAGE_SIZE),
        )
    if offset < 0 or offset + size > MAX_RESULT_WINDOW:
        raise _invalid(
            Reason.INVALID_PAGE,
            "offset",
            f"offset + limit must stay within the first {MAX_RESULT_WINDOW} results",
            max_window=str(MAX_RESULT_WINDOW),
        )
    return SearchRequest(text=query, type=wanted, offset=offset, limit=size)


def check_time_ms(value: int, field_name: str) -> int:
    """``value`` if it is a time a document may carry (at most :data:`MAX_TIME_MS`)."""
    if value > MAX_TIME_MS:
        raise _invalid(
            Reason.INVALID_DOCUMENT,
            field_name,
            f"{field_name} is out of range ({value}; at most {MAX_TIME_MS}, the end of 9999)",
            max_ms=str(MAX_TIME_MS),
        )
    return value


def article_doc(
    *,
    article_id: int,
    title: str,
    body: str,
    author_id: int,
    author_name: str,
    utime_ms: int,
) -> ArticleDoc:
    """An :class:`ArticleDoc` from already plain text; refuses what cannot be indexed."""
    if article_id <= 0:
        raise _invalid(
            Reason.INVALID_DOCUMENT, "id", f"article id must be positive, got {article_id}"
        )
    check_time_ms(utime_ms, "utime_ms")
    return ArticleDoc(
        id=article_id,
        title=title.strip()[:MAX_TITLE_CHARS],
        body=body[:MAX_BODY_CHARS],
        author_id=max(author_id, 0),
        author_name=author_name.strip()[:MAX_TITLE_CHARS],
        utime_ms=max(utime_ms, 0),
    )


def tag_set(names: Sequence[str], version: int) -> TagSet:
    """A :class:`TagSet` from the tag service's names: trimmed, empty ones dropped, cut to
    :data:`MAX_TAG_CHARS`, unique, sorted, at most :data:`MAX_TAGS`; refuses a version that
    is not positive (every change of a set has one)."""
    if version <= 0:
        raise _invalid(
            Reason.INVALID_DOCUMENT, "version", f"a tag set needs a positive version, got {version}"
        )
    kept = sorted({cut for name in names if (cut := name.strip()[:MAX_TAG_CHARS].strip())})
    return TagSet(names=tuple(kept[:MAX_TAGS]), version=version)


def user_doc(*, user_id: int, nickname: str, about_me: str, utime_ms: int) -> UserDoc:
    """A :class:`UserDoc`; refuses what cannot be indexed."""
    if user_id <= 0:
        raise _invalid(Reason.INVALID_DOCUMENT, "id", f"user id must be positive, got {user_id}")
    check_time_ms(utime_ms, "utime_ms")
    return UserDoc(
        id=user_id,
        nickname=nickname.strip()[:MAX_TITLE_CHARS],
        about_me=about_me[:MAX_BODY_CHARS],
        utime_ms=max(utime_ms, 0),
    )

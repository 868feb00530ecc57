"""Feed events as plain data, their idempotency keys, the read cursor and the page bounds.

An event's id is its idempotency key, derived from what it is about, so a redelivered (or
re-published) source event maps to the same feed entry:

- ``article_published``: ``ap-<article id>`` (a new version of an article does not
  notify the followers again);
- ``article_liked``: ``al-<liker>-<article id>``;
- ``user_followed``: ``uf-<follower>-<followee>``.

The cursor is opaque to clients: URL-safe base64 (no padding) of a versioned JSON object
``{"v": 1, "t": <at_ms>, "e": <event id>}``, the position of the last entry served. Feeds
are ordered by ``(at_ms, event_id)`` descending, and the next page is what lies strictly
below the cursor, so paging neither skips nor repeats an entry, whatever is written
meanwhile at the head.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from services.feed.errors import FeedInvalidArgument, Reason

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
EVENT_ID_LENGTH: Final = 64
TITLE_LENGTH: Final = 256
CURSOR_VERSION: Final = 1
# A cursor is short; refuse anything much longer before decoding it.
_MAX_CURSOR_CHARS: Final = 256


class EventKind(IntEnum):
    """What happened (stored as a small integer)."""

    ARTICLE_PUBLISHED = 1
    ARTICLE_LIKED = 2
    USER_FOLLOWED = 3


class Model(IntEnum):
    """How a published event reaches followers: fanned out into inboxes, or merged at read."""

    PUSH = 1
    PULL = 2


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One feed entry. ``recipient`` is 0 for events that go to the actor's followers;
    ``article_id`` 0 and ``title`` empty for events about no article."""

    event_id: str
    kind: EventKind
    actor: int
    at_ms: int
    article_id: int = 0
    title: str = ""
    recipient: int = 0


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a feed entry sorts: by time, then by event id (both descending in a feed)."""

    at_ms: int
    event_id: str


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of a feed, newest first; ``next_cursor`` empty when it is the last."""

    events: list[FeedEvent]
    next_cursor: str


def article_published(actor: int, article_id: int, title: str, at_ms: int) -> FeedEvent:
    """The feed event of an article's publication."""
    return FeedEvent(
        event_id=f"ap-{article_id}",
        kind=EventKind.ARTICLE_PUBLISHED,
        actor=actor,
        at_ms=at_ms,
        article_id=article_id,
        title=title[:TITLE_LENGTH],
    )


def article_liked(actor: int, article_id: int, title: str, recipient: int, at_ms: int) -> FeedEvent:
    """The feed event of a like, for the article's author."""
    return FeedEvent(
        event_id=f"al-{actor}-{article_id}",
        kind=EventKind.ARTICLE_LIKED,
        actor=actor,
        at_ms=at_ms,
        article_id=article_id,
        title=title[:TITLE_LENGTH],
        recipient=recipient,
    )


def user_followed(actor: int, recipient: int, at_ms: int) -> FeedEvent:
    """The feed event of a new follower, for the followee."""
    return FeedEvent(
        event_id=f"uf-{actor}-{recipient}",
        kind=EventKind.USER_FOLLOWED,
        actor=actor,
        at_ms=at_ms,
        recipient=recipient,
    )


def check_uid(uid: int) -> int:
    """A user id; zero and negative ids are refused."""
    if uid <= 0:
        raise FeedInvalidArgument(
            Reason.INVALID_USER, "uid must be a user id", metadata={"field": "uid"}
        )
    return uid


def check_limit(limit: int) -> int:
    """The page size: 0 means :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`."""
    if limit == 0:
        return DEFAULT_LIMIT
    if not 0 < limit <= MAX_LIMIT:
        raise FeedInvalidArgument(
            Reason.INVALID_LIMIT,
            f"limit must be 1..{MAX_LIMIT}",
            metadata={"field": "limit", "max": str(MAX_LIMIT)},
        )
    return limit


def encode_cursor(position: Position) -> str:
    """The opaque cursor of ``position``."""
    raw = json.dumps(
        {"v": CURSOR_VERSION, "t": position.at_ms, "e": position.event_id},
        separators=(",", ":"),
    ).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _bad_cursor(why: str) -> FeedInvalidArgument:
    return FeedInvalidArgument(
        Reason.INVALID_CURSOR,
        f"cursor is not one GetFeed returned ({why})",
        metadata={"field": "cursor"},
    )


def decode_cursor(cursor: str) -> Position | None:
    """The position ``cursor`` names; ``None`` for the empty cursor (the newest page).

    Raises :class:`FeedInvalidArgument` (``FEED_INVALID_CURSOR``) for anything else.
    """
    if not cursor:
        return None
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise _bad_cursor("too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _bad_cursor("not base64 JSON") from exc
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        raise _bad_cursor("unknown version")
    at_ms, event_id = data.get("t"), data.get("e")
    if (
        not isinstance(at_ms, int)
        or isinstance(at_ms, bool)
        or at_ms < 0
        or not isinstance(event_id, str)
        or not 0 < len(event_id) <= EVENT_ID_LENGTH
    ):
        raise _bad_cursor("malformed position")
    return Position(at_ms=at_ms, event_id=event_id)


@dataclass(frozen=True, slots=True)
class AuthorState:
    """What the feed knows of an author: the follower count at the last publication, the
    ``big`` flag it gave, and whether any of its events is pull."""

    uid: int
    followers: int
    big: bool
    has_pull: bool


@dataclass(frozen=True, slots=True)
class FanoutJob:
    """The fan-out of a push event: the follow service's cursor of the next page of the
    author's followers (0 before the first), ``done`` once the last page was written."""

    event_id: str
    author: int
    cursor: int
    done: bool

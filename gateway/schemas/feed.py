"""Models of ``GET /feed`` (camelCase wire names, as the rest of the API).

A feed entry is one of three events (``FeedItemType``); the fields an event does not have
(the article of a new follower, the recipient of a publication) are ``null``, so the front
end renders every entry from one shape. Times are Unix milliseconds, for relative times
("5 minutes ago") rendered in the reader's own zone. The cursor is opaque: the gateway only
bounds its length, and the feed service refuses one it did not hand out.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, Field

FeedItemType = Literal["article_published", "article_liked", "user_followed"]
"""What happened: an article published by someone the reader follows, a like on one of the
reader's articles, a new follower of the reader."""

MAX_CURSOR_CHARS: Final = 256
"""The longest cursor the feed service accepts (longer ones are refused at the edge)."""


class FeedItemView(BaseModel):
    """One entry of a feed."""

    eventId: str = Field(description="The event's stable id (a repeated event keeps it).")
    type: FeedItemType
    actor: int = Field(description="Who did it: the author, the liker or the new follower.")
    articleId: int | None = Field(
        description="The article published or liked; null for user_followed."
    )
    title: str | None = Field(
        description="The article's title when the event happened; null for user_followed."
    )
    recipient: int | None = Field(
        description="Whose article was liked, or who was followed; null for article_published."
    )
    atMs: int = Field(description="When it happened, Unix milliseconds.")


class FeedPageView(BaseModel):
    """A page of the caller's feed, newest first."""

    items: list[FeedItemView]
    nextCursor: str = Field(
        description="Pass as `cursor` for the next (older) page; empty on the last page."
    )

"""Models of the ``/comments`` routes (camelCase wire names, as the rest of the API).

The gateway checks shapes and bounds; the comment service owns the content rules (trimming,
HTML removal, 1..2000 characters) and answers refusals the gateway passes on as code 4.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field

from gateway.schemas import INT64_MAX, RequestModel

MAX_CONTENT_CHARS: Final = 2000
# Room for surrounding whitespace the service trims before it counts.
_MAX_RAW_CHARS: Final = MAX_CONTENT_CHARS * 2


class CreateCommentRequest(RequestModel):
    """A comment on ``(biz, bizId)``, or a reply to ``parentId``."""

    biz: str = Field(default="article", min_length=1, max_length=32, examples=["article"])
    bizId: int = Field(
        gt=0, le=INT64_MAX, description="Id of the commented object, e.g. the article id."
    )
    content: str = Field(
        max_length=_MAX_RAW_CHARS,
        description="Plain text, 1..2000 characters after trimming; HTML is removed.",
    )
    parentId: int = Field(
        default=0, ge=0, le=INT64_MAX, description="Comment replied to; 0 = top level."
    )


class CreatedComment(BaseModel):
    """The id of a new comment."""

    id: int


class DeleteCommentRequest(RequestModel):
    """A comment of the caller to delete, with all replies below it."""

    id: int = Field(gt=0, le=INT64_MAX)


class CommentView(BaseModel):
    """A comment as listed. ``content`` is HTML-safe text (``<``, ``>``, ``&`` as entities)."""

    id: int
    uid: int
    biz: str
    bizId: int
    content: str
    rootId: int = Field(description="Top-level comment of the thread; 0 for a top-level one.")
    parentId: int
    replyCnt: int = Field(description="Replies in the thread (top-level comments only).")
    ctime: str = Field(description="YYYY-MM-DD HH:MM:SS in the server's zone.")
    replies: list[CommentView] = Field(
        default_factory=list, description="First replies, oldest first (top-level only)."
    )


class CommentCount(BaseModel):
    """How many comments an object has."""

    bizId: int
    count: int

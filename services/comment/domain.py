"""Comments as plain data, and the rules their input must follow.

A comment belongs to a business object ``(biz, biz_id)`` (``"article", 42``); new comments
only on the kinds of :data:`KNOWN_BIZ` (whether the object exists is the service layer's
question to its owner). Top-level
comments have ``root_id == 0`` and ``parent_id == 0``; a reply has the top-level comment of
its thread as ``root_id`` and the comment it answers as ``parent_id``.

Content is plain text: surrounding whitespace is trimmed, 1..:data:`MAX_CONTENT_CHARS`
characters are accepted, control characters other than newline and tab are refused, and
any HTML is removed with ``nh3`` (tags dropped, ``script``/``style`` bodies dropped, ``<``,
``>`` and ``&`` kept as entities). The stored text is therefore safe to insert as HTML;
clients that display text unescape those three entities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import nh3

from services.comment.errors import CommentInvalidArgument, Reason

MAX_CONTENT_CHARS: Final = 2000
MAX_BIZ_CHARS: Final = 32
ARTICLE_BIZ: Final = "article"
KNOWN_BIZ: Final = frozenset({ARTICLE_BIZ})
"""The kinds of object that can be commented on (one owner service each)."""
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100
DEFAULT_REPLIES_PER_COMMENT: Final = 3
MAX_REPLIES_PER_COMMENT: Final = 10
MAX_COUNT_IDS: Final = 100

_BIZ: Final = re.compile(r"[a-z][a-z0-9_]*")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Comment:
    """A stored comment; ``replies`` holds the first replies of a listed top-level one."""

    id: int
    uid: int
    biz: str
    biz_id: int
    content: str
    root_id: int
    parent_id: int
    reply_cnt: int
    ctime_ms: int
    replies: tuple[Comment, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class NewComment:
    """A validated comment to store; ``root_id``/``parent_id`` are 0 for a top-level one."""

    uid: int
    biz: str
    biz_id: int
    content: str
    root_id: int
    parent_id: int


def _invalid(reason: Reason, message: str, field_name: str, **extra: str) -> CommentInvalidArgument:
    return CommentInvalidArgument(reason, message, metadata={"field": field_name, **extra})


def check_target(biz: str, biz_id: int) -> None:
    """Refuse a malformed business object reference."""
    if len(biz) > MAX_BIZ_CHARS or not _BIZ.fullmatch(biz):
        raise _invalid(
            Reason.INVALID_BIZ,
            f"biz must be 1..{MAX_BIZ_CHARS} lower-case letters, digits or underscores",
            "biz",
        )
    if biz_id <= 0:
        raise _invalid(Reason.INVALID_BIZ, "biz_id must be positive", "biz_id")


def check_known_target(biz: str, biz_id: int) -> None:
    """Refuse a malformed reference, or one to a kind of object not in :data:`KNOWN_BIZ`."""
    check_target(biz, biz_id)
    if biz not in KNOWN_BIZ:
        raise _invalid(
            Reason.INVALID_BIZ, f"unknown biz; known: {', '.join(sorted(KNOWN_BIZ))}", "biz"
        )


def check_uid(uid: int) -> None:
    """Refuse a missing author."""
    if uid <= 0:
        raise _invalid(Reason.INVALID_USER, "uid must be positive", "uid")


def clean_content(raw: str) -> str:
    """The stored form of ``raw`` (see the module docstring), or a refusal."""
    text = raw.strip()
    if len(text) > MAX_CONTENT_CHARS:
        raise _invalid(
            Reason.INVALID_CONTENT,
            f"a comment is at most {MAX_CONTENT_CHARS} characters",
            "content",
            max_chars=str(MAX_CONTENT_CHARS),
        )
    if _CONTROL.search(text):
        raise _invalid(
            Reason.INVALID_CONTENT, "a comment cannot contain control characters", "content"
        )
    cleaned = nh3.clean(text, tags=set()).strip()
    if not cleaned:
        raise _invalid(Reason.INVALID_CONTENT, "a comment cannot be empty", "content")
    return cleaned


def page_size(limit: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """``limit`` with 0 meaning ``default``; negative or above ``maximum`` is refused."""
    if limit == 0:
        return default
    if limit < 0 or limit > maximum:
        raise _invalid(Reason.INVALID_PAGE, f"limit must be 1..{maximum}", "limit")
    return limit


def replies_per_comment(value: int) -> int:
    """How many replies to show under each top-level comment (0 = the default)."""
    return page_size(value, default=DEFAULT_REPLIES_PER_COMMENT, maximum=MAX_REPLIES_PER_COMMENT)


def check_cursor(value: int, field_name: str) -> int:
    """A cursor id; negative values are refused."""
    if value < 0:
        raise _invalid(Reason.INVALID_PAGE, f"{field_name} cannot be negative", field_name)
    return value


def normalize_biz_ids(biz_ids: Iterable[int]) -> list[int]:
    """Distinct positive ids in first-seen order (at most :data:`MAX_COUNT_IDS`)."""
    ids = list(dict.fromkeys(i for i in biz_ids if i > 0))
    if len(ids) > MAX_COUNT_IDS:
        raise _invalid(Reason.TOO_MANY_IDS, f"at most {MAX_COUNT_IDS} ids per call", "biz_ids")
    return ids

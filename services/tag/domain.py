"""Tags as plain data and the rules their input must follow.

A tag belongs to one user (``uid``) and has a name unique among that user's tags: the name
is NFC-normalised and trimmed, then must be 1 to 32 characters without control characters
(:func:`tag_name`). A resource (``biz``, ``biz_id``; today only articles) carries a set of
its owner's tags, replaced whole by AttachTags; every change of the set bumps the
resource's ``version``, which orders the copies other replicas and consumers keep.

Listing the resources under a tag pages by an opaque cursor (:func:`encode_cursor`): the
position is the id of the last link seen, so a page never shifts when links are added,
unlike an offset.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from dataclasses import dataclass
from typing import Final

from services.tag.errors import Reason, TagInvalidArgument

ARTICLE_BIZ: Final = "article"
BIZS: Final = frozenset({ARTICLE_BIZ})
NAME_MAX_LENGTH: Final = 32
DEFAULT_PAGE: Final = 20
MAX_PAGE: Final = 100
_CURSOR_PREFIX: Final = "c1."
_MAX_ID: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Tag:
    """Tag ``id`` of user ``uid``."""

    id: int
    uid: int
    name: str
    ctime_ms: int


@dataclass(frozen=True, slots=True)
class ResourceTags:
    """The whole tag set of resource ``(biz, biz_id)`` owned by ``uid``, sorted by name;
    ``version`` 0 means never tagged."""

    biz: str
    biz_id: int
    uid: int
    tags: tuple[Tag, ...]
    version: int
    utime_ms: int


@dataclass(frozen=True, slots=True)
class TaggedResource:
    """A resource under a tag; ``link_id`` is its position in the listing."""

    link_id: int
    biz: str
    biz_id: int
    tagged_ms: int


@dataclass(frozen=True, slots=True)
class TagLimits:
    """How many tags a user may own and a resource may carry."""

    per_user: int
    per_resource: int


def sorted_tags(tags: list[Tag] | tuple[Tag, ...]) -> tuple[Tag, ...]:
    """``tags`` in the order every answer uses: by name, then id."""
    return tuple(sorted(tags, key=lambda tag: (tag.name, tag.id)))


def check_uid(uid: int) -> int:
    """A user id; zero and negative ids are refused."""
    if uid <= 0:
        raise TagInvalidArgument(
            Reason.INVALID_USER, "uid must be a user id", metadata={"field": "uid"}
        )
    return uid


def tag_name(raw: str) -> str:
    """The stored form of a tag name: NFC, trimmed, 1..32 characters, no control characters."""
    name = unicodedata.normalize("NFC", raw).strip()
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise TagInvalidArgument(
            Reason.INVALID_NAME,
            f"name must be 1 to {NAME_MAX_LENGTH} characters",
            metadata={"field": "name", "max": str(NAME_MAX_LENGTH)},
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise TagInvalidArgument(
            Reason.INVALID_NAME,
            "name must not contain control characters or line breaks",
            metadata={"field": "name"},
        )
    return name


def check_biz(biz: str) -> None:
    """Refuse a kind of resource that cannot be tagged."""
    if biz not in BIZS:
        raise TagInvalidArgument(
            Reason.INVALID_BIZ, f"biz must be one of {sorted(BIZS)}", metadata={"field": "biz"}
        )


def check_after_id(after_biz_id: int) -> None:
    """Refuse a listing position that is not 0 or an id."""
    if after_biz_id < 0:
        raise TagInvalidArgument(
            Reason.INVALID_CURSOR,
            "after_biz_id must be 0 or an id",
            metadata={"field": "after_biz_id"},
        )


def check_resource(biz: str, biz_id: int) -> None:
    """Refuse an unknown biz or a resource id that is not an id."""
    check_biz(biz)
    if biz_id <= 0:
        raise TagInvalidArgument(
            Reason.INVALID_BIZ, "biz_id must be an id", metadata={"field": "biz_id"}
        )


def check_tag_id(tag_id: int) -> int:
    """A tag id; zero and negative ids are refused."""
    if tag_id <= 0:
        raise TagInvalidArgument(
            Reason.INVALID_TAGS, "tag_id must be an id", metadata={"field": "tag_id"}
        )
    return tag_id


def tag_set(tag_ids: list[int] | tuple[int, ...], per_resource: int) -> frozenset[int]:
    """The distinct tag ids of an AttachTags request, at most ``per_resource`` of them."""
    for tag_id in tag_ids:
        if tag_id <= 0:
            raise TagInvalidArgument(
                Reason.INVALID_TAGS, "tag_ids must be ids", metadata={"field": "tag_ids"}
            )
    ids = frozenset(tag_ids)
    if len(ids) > per_resource:
        raise TagInvalidArgument(
            Reason.INVALID_TAGS,
            f"a resource carries at most {per_resource} tags",
            metadata={"field": "tag_ids", "max": str(per_resource)},
        )
    return ids


def page_size(limit: int) -> int:
    """A page size: 0 means :data:`DEFAULT_PAGE`, at most :data:`MAX_PAGE`."""
    if limit == 0:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise TagInvalidArgument(
            Reason.INVALID_LIMIT,
            f"limit must be 0 (default {DEFAULT_PAGE}) to {MAX_PAGE}",
            metadata={"field": "limit", "max": str(MAX_PAGE)},
        )
    return limit


def encode_cursor(tag_id: int, link_id: int) -> str:
    """The cursor of the page after link ``link_id`` under tag ``tag_id``."""
    raw = f"{tag_id}:{link_id}".encode("ascii")
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, tag_id: int) -> int | None:
    """The link id a cursor of tag ``tag_id`` continues after; ``None`` for the first page.

    A cursor this service did not hand out, or one of another tag, is refused.
    """
    if not cursor:
        return None
    try:
        if not cursor.startswith(_CURSOR_PREFIX):
            raise ValueError("unknown cursor version")
        body = cursor[len(_CURSOR_PREFIX) :]
        decoded = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        tag_part, link_part = decoded.split(":")
        cursor_tag, link_id = int(tag_part), int(link_part)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise _bad_cursor("cursor is not one this service handed out") from exc
    if cursor_tag != tag_id:
        raise _bad_cursor("cursor belongs to another tag")
    if not 0 < link_id <= _MAX_ID:
        raise _bad_cursor("cursor is not one this service handed out")
    return link_id


def _bad_cursor(message: str) -> TagInvalidArgument:
    return TagInvalidArgument(Reason.INVALID_CURSOR, message, metadata={"field": "cursor"})


@dataclass(frozen=True, slots=True)
class UserSnapshot:
    """What the cache's preload reads of one user: the user's tags, the tag sets of the
    user's resources, and how many SQL rows that took."""

    tags: tuple[Tag, ...]
    resources: tuple[ResourceTags, ...]
    rows: int


class NameTaken(Exception):
    """The user already has a tag of that name (a concurrent CreateTag won the insert)."""

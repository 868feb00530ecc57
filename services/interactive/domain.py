"""The interactive domain: counters and per-user flags of a business object.

A business object is addressed by ``biz`` (its kind, e.g. ``article``: lower-case letters,
digits and ``_``, starting with a letter, at most 32 characters) and ``biz_id`` (positive).
Writes that add (likes, collects, reads) accept only the kinds of :data:`KNOWN_BIZ`; whether
the object itself exists is the service layer's question to the object's owner (articles:
the article service). Counts of an object nobody touched are zero.
Users are positive ids; collections are ``cid >= 0`` (0 is the default collection).
Each rule raises :class:`~services.interactive.errors.InteractiveInvalidArgument` with a
stable reason and ``metadata["field"]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from services.interactive.errors import InteractiveInvalidArgument, Reason

BIZ_MAX_CHARS = 32
ARTICLE_BIZ: Final = "article"
KNOWN_BIZ: Final = frozenset({ARTICLE_BIZ})
"""The kinds of object that can be liked, collected or read (one owner service each)."""
MAX_IDS_PER_BATCH = 100
_BIZ = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True, slots=True)
class Counts:
    """How often an object was read, liked and collected."""

    read_cnt: int = 0
    like_cnt: int = 0
    collect_cnt: int = 0


@dataclass(frozen=True, slots=True)
class Flags:
    """Whether one user liked an object and has it in one of their collections."""

    liked: bool = False
    collected: bool = False


@dataclass(frozen=True, slots=True)
class Interactive:
    """Counts of one object, and whether a given user liked and collected it."""

    biz: str
    biz_id: int
    counts: Counts
    liked: bool = False
    collected: bool = False


@dataclass(frozen=True, slots=True)
class ArticleOwner:
    """Who wrote a published article, and its title: whose feed a like of it goes to, and
    what the entry shows (``title`` empty when the article service did not say)."""

    article_id: int
    author_id: int
    title: str = ""


def _invalid(reason: Reason, field: str, message: str) -> InteractiveInvalidArgument:
    return InteractiveInvalidArgument(reason, message, metadata={"field": field})


def check_biz(biz: str) -> str:
    """``biz`` if it names a kind of object."""
    if not _BIZ.fullmatch(biz):
        raise _invalid(
            Reason.INVALID_BIZ,
            "biz",
            f"biz must be lower-case letters, digits or _ (at most {BIZ_MAX_CHARS}), "
            "starting with a letter",
        )
    return biz


def check_known_biz(biz: str) -> str:
    """``biz`` if it is well formed and one of :data:`KNOWN_BIZ`."""
    if check_biz(biz) not in KNOWN_BIZ:
        raise _invalid(
            Reason.INVALID_BIZ, "biz", f"unknown biz; known: {', '.join(sorted(KNOWN_BIZ))}"
        )
    return biz


def check_biz_id(biz_id: int) -> int:
    """``biz_id`` if it can address an object."""
    if biz_id <= 0:
        raise _invalid(Reason.INVALID_BIZ_ID, "biz_id", "biz_id must be positive")
    return biz_id


def check_user(uid: int) -> int:
    """``uid`` if it can be a signed-in user."""
    if uid <= 0:
        raise _invalid(Reason.INVALID_USER, "uid", "the user must be signed in")
    return uid


def check_collection(cid: int) -> int:
    """``cid`` if it can be a collection (0 is the default one)."""
    if cid < 0:
        raise _invalid(Reason.INVALID_COLLECTION, "cid", "cid must not be negative")
    return cid


def normalize_biz_ids(biz_ids: Iterable[int]) -> list[int]:
    """Distinct positive ids in first-seen order; at most 100."""
    distinct = list(dict.fromkeys(i for i in biz_ids if i > 0))
    if len(distinct) > MAX_IDS_PER_BATCH:
        raise _invalid(
            Reason.TOO_MANY_IDS,
            "biz_ids",
            f"at most {MAX_IDS_PER_BATCH} distinct ids per request, got {len(distinct)}",
        )
    return distinct

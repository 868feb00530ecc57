"""What the ranking service computes and serves: ranked articles and a ranking.

A :class:`Ranking` is the job's whole result (best first) with the wall-clock instant it was
computed; its JSON form (:func:`encode_ranking`, :func:`decode_ranking`) is what Redis
holds, versioned so that a reader of another layout treats it as absent, never crashes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from services.ranking.errors import RankingInvalidArgument, Reason

LAYOUT_VERSION: Final = 1
MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 20


@dataclass(frozen=True, slots=True)
class RankedArticle:
    """One article of the ranking, with what a list shows and its score."""

    id: int
    title: str
    abstract: str
    author_id: int
    author_name: str
    like_cnt: int
    utime_ms: int
    score: float


@dataclass(frozen=True, slots=True)
class Ranking:
    """The top articles, best first, computed at ``computed_at_ms`` (wall clock, ms)."""

    articles: tuple[RankedArticle, ...] = field(default=())
    computed_at_ms: int = 0


EMPTY: Final = Ranking()


def encode_ranking(ranking: Ranking) -> str:
    """The JSON Redis keeps."""
    return json.dumps(
        {
            "v": LAYOUT_VERSION,
            "computed_at_ms": ranking.computed_at_ms,
            "articles": [asdict(a) for a in ranking.articles],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_ranking(raw: bytes | str) -> Ranking | None:
    """The ranking in ``raw``; ``None`` for another layout version or a malformed value."""
    try:
        data: dict[str, Any] = json.loads(raw)
        if data.get("v") != LAYOUT_VERSION:
            return None
        return Ranking(
            articles=tuple(RankedArticle(**item) for item in data["articles"]),
            computed_at_ms=int(data["computed_at_ms"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Page:
    """A validated slice of the ranking."""

    offset: int
    limit: int

    def of(self, ranking: Ranking) -> tuple[RankedArticle, ...]:
        """The articles of this page."""
        return ranking.articles[self.offset : self.offset + self.limit]


def make_page(offset: int, limit: int) -> Page:
    """A page with ``offset >= 0`` and ``1 <= limit <= 100`` (0 means 20)."""
    if offset < 0:
        raise RankingInvalidArgument(
            Reason.INVALID_PAGE, "offset must not be negative", metadata={"field": "offset"}
        )
    if limit == 0:
        limit = DEFAULT_PAGE_SIZE
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise RankingInvalidArgument(
            Reason.INVALID_PAGE,
            f"limit must be between 1 and {MAX_PAGE_SIZE}",
            metadata={"field": "limit", "max_limit": str(MAX_PAGE_SIZE)},
        )
    return Page(offset, limit)

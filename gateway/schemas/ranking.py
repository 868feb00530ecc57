"""Models of ``GET /articles/ranking`` (camelCase wire names, as the rest of the API).

The gateway checks the page bounds (offset 0..1000, limit 1..100) before the ranking
service sees the request; the service keeps at most its top K (default 100) articles, so an
offset past them answers an empty page.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field

MAX_LIMIT: Final = 100
MAX_OFFSET: Final = 1000


class RankedArticleView(BaseModel):
    """One hot article."""

    id: int
    title: str
    abstract: str
    authorId: int
    authorName: str = Field(description="The author's nickname; empty if it was unknown.")
    likeCnt: int = Field(description="Likes when the ranking was computed.")
    utime: str = Field(
        description="Last update of the published version, YYYY-MM-DD HH:MM:SS in the "
        "server's zone; the score decays from it."
    )
    score: float = Field(description="(likes - 1) / (hours since utime + 2)^1.5, at least 0.")


class RankingPageView(BaseModel):
    """A page of the hot-article ranking, best first."""

    articles: list[RankedArticleView]
    total: int = Field(description="Articles in the whole ranking.")
    computedAt: str = Field(
        description="When the ranking was computed, YYYY-MM-DD HH:MM:SS in the server's zone; "
        "empty when there is none (never computed, or lapsed)."
    )
    stale: bool = Field(
        description="True when the ranking is past its expiry and served because the "
        "ranking service's Redis is down."
    )

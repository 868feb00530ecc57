"""Models of the ``/search`` routes (camelCase wire names, as the rest of the API).

The gateway checks shapes and bounds; the search service owns the query rules (1..200
characters after trimming, balanced quotes and parentheses, at most the first 1000 results)
and its refusals come back as code 4 with a message naming the problem.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, Field

SearchType = Literal["all", "article", "user"]
HitType = Literal["article", "user"]

MAX_LIMIT: Final = 50
MAX_OFFSET: Final = 990
# Room for surrounding whitespace the service trims before it counts (200 characters).
MAX_RAW_QUERY_CHARS: Final = 400


class SearchHitView(BaseModel):
    """One result: an article or a user."""

    type: HitType
    id: int = Field(description="The article id or the user id.")
    title: str = Field(description="Plain text: the article's title or the user's nickname.")
    titleHighlight: str = Field(
        description="The title as escaped HTML with <em> around matched words."
    )
    snippet: str = Field(
        description=(
            "Escaped HTML with <em> around matched words: a passage of the article's text or "
            "of the user's about-me (their beginning when nothing matched there)."
        )
    )
    score: float = Field(description="Relevance (BM25 plus a recency boost); higher is better.")
    authorId: int = Field(description="Articles: the author's user id; users: 0.")
    authorName: str = Field(description="Articles: the author's nickname; users: empty.")
    utime: str = Field(
        description="Last update of the indexed version, YYYY-MM-DD HH:MM:SS in the server's zone."
    )


class SearchPageView(BaseModel):
    """A page of results, best first, and how many matched in all."""

    hits: list[SearchHitView]
    total: int = Field(description="Documents matching the query (all pages).")

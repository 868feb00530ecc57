"""Models of the ``/search`` routes (camelCase wire names, as the rest of the API).

The gateway checks shapes and bounds, and refuses a query holding a control character or
a lone surrogate (:func:`check_query_text`, code 4) before any service sees it; the search
service owns the query rules (1..200 characters after trimming, at most 64 terms, at most
the first 1000 results; the query language is plain words and "quoted phrases", everything
else is text) and its refusals come back as code 4 with a message naming the problem.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, Field

SearchType = Literal["all", "article", "user"]
HitType = Literal["article", "user"]

MAX_LIMIT: Final = 50
MAX_OFFSET: Final = 990
# Room for surrounding whitespace the service trims before it counts (200 characters).
MAX_RAW_QUERY_CHARS: Final = 400
# The search service's rule too: the control characters (category Cc: C0, DEL, C1) but
# tab, line feed and carriage return (whitespace), and lone surrogates (Cs).
_REFUSED: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def check_query_text(text: str) -> str:
    """``text`` if it holds no control character nor lone surrogate, else ValueError with a
    message for people (the position and code point of the first one)."""
    found = _REFUSED.search(text)
    if found is not None:
        raise ValueError(
            f"q contains a control character (U+{ord(found.group()):04X} at position "
            f"{found.start()}); remove it"
        )
    return text


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

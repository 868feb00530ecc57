"""In-memory stand-ins for the tag service's peers (:mod:`services.tag.peers`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.tag.errors import Reason, TagUnavailable


@dataclass
class FakeArticleOwners:
    """Published articles by id → author; ``down`` makes every question fail."""

    authors: dict[int, int] = field(default_factory=dict)
    down: bool = False
    asked: list[int] = field(default_factory=list)

    async def author_of(self, article_id: int) -> int | None:
        """The author of ``article_id`` if it is published here."""
        self.asked.append(article_id)
        if self.down:
            raise TagUnavailable(Reason.UNAVAILABLE, "article service down (fake)")
        return self.authors.get(article_id)

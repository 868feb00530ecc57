"""The hot-article score and a bounded top-K, the arithmetic of the ranking job.

Score (the original project's formula, with one documented change)::

    score = max(likes - 1, 0) / (hours_since_update + 2) ** 1.5

- ``likes - 1`` discounts the author's own like; ``+ 2`` keeps a brand-new article from
  dividing by (almost) zero; the exponent 1.5 makes the score decay with age, so that a
  fresh article with a few likes overtakes an old one with many.
- The change: the numerator is clamped at zero. Kept signed, an article without likes scores
  ``-1 / (h + 2) ** 1.5``, which is *higher* the older the article is, so among unliked
  articles the oldest would rank first. Clamped, every unliked article scores 0 and ties
  are broken as below.
- The age is measured from the article's last update as published (the article service's
  ``utime``, what ``ListPub`` windows on), floored at zero against clock skew.

Order: higher score first; equal scores by higher article id (newer) first, so a ranking
is deterministic whatever order the articles arrived in.

:class:`TopK` keeps the best ``k`` of a stream in a min-heap of at most ``k`` entries: each
offer is O(log k), a stream of n costs O(n log k) time and O(k) memory, and nothing sorts
all n (only the k kept are sorted, once, by :meth:`TopK.best`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Final, Generic, TypeVar

MS_PER_HOUR: Final = 3_600_000
GRAVITY: Final = 1.5
AGE_OFFSET_HOURS: Final = 2.0

T = TypeVar("T")


def hot_score(likes: int, age_ms: int) -> float:
    """The score of an article with ``likes`` likes, ``age_ms`` after its last update."""
    hours = max(age_ms, 0) / MS_PER_HOUR
    decay: float = (hours + AGE_OFFSET_HOURS) ** GRAVITY
    return max(likes - 1, 0) / decay


class TopK(Generic[T]):
    """The ``k`` best items offered so far, by ``(score, item_id)``, higher first.

    Items are never compared: the heap orders ``(score, item_id)`` keys, and ``item_id``
    must be unique per item (an article id), which also makes the order total.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self._k = k
        # Min-heap: the root is the worst of the kept, the one a better offer replaces.
        self._heap: list[tuple[float, int, T]] = []
        self.offered = 0

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, score: float, item_id: int, item: T) -> None:
        """Keep ``item`` if it is among the best ``k`` so far (O(log k))."""
        self.offered += 1
        heap = self._heap
        if len(heap) < self._k:
            heapq.heappush(heap, (score, item_id, item))
            return
        root_score, root_id, _ = heap[0]
        if score > root_score or (score == root_score and item_id > root_id):
            heapq.heapreplace(heap, (score, item_id, item))

    def offer_built(self, score: float, item_id: int, build: Callable[[], T]) -> None:
        """:meth:`offer` with the item built only if it is kept: most of a long stream is
        not, and building each one cost the ranking job more than scoring it."""
        self.offered += 1
        heap = self._heap
        if len(heap) < self._k:
            heapq.heappush(heap, (score, item_id, build()))
            return
        root_score, root_id, _ = heap[0]
        if score > root_score or (score == root_score and item_id > root_id):
            heapq.heapreplace(heap, (score, item_id, build()))

    def best(self) -> list[tuple[float, T]]:
        """The kept items with their scores, best first (sorts the k kept, not the n)."""
        ordered = sorted(self._heap, key=lambda entry: (entry[0], entry[1]), reverse=True)
        return [(score, item) for score, _, item in ordered]


def top_k(scored: Iterable[tuple[float, int, T]], k: int) -> list[tuple[float, T]]:
    """The ``k`` best of ``(score, item_id, item)`` triples, best first (see :class:`TopK`)."""
    keeper: TopK[T] = TopK(k)
    for score, item_id, item in scored:
        keeper.offer(score, item_id, item)
    return keeper.best()

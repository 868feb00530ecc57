"""Answers of another service remembered for a while, in process.

A client that asks an owner service the same question often (is this article published?
who wrote it?) may trust a positive answer for a few seconds: :class:`ExpiringMemo` keeps
answers by key for ``ttl_s`` seconds from when the question was asked, at most
``max_entries`` of them, dropping the oldest first. An expired answer is forgotten when it
is next looked up. ``ttl_s`` 0 remembers nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringMemo(Generic[K, V]):
    """Values by key, each trusted until ``ttl_s`` seconds after it was asked for."""

    def __init__(self, *, ttl_s: float, max_entries: int) -> None:
        if ttl_s < 0 or max_entries < 0:
            raise ValueError("ttl_s and max_entries must not be negative")
        self._ttl = ttl_s
        self._max_entries = max_entries
        # Key → (value, when it stops being trusted), oldest first.
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """The value remembered for ``key`` if still trusted at ``now``, else ``None``."""
        remembered = self._entries.get(key)
        if remembered is None:
            return None
        value, until = remembered
        if now < until:
            return value
        del self._entries[key]
        return None

    def put(self, key: K, value: V, asked_at: float) -> None:
        """Remember ``value`` for ``key``, trusted ``ttl_s`` seconds from ``asked_at``."""
        if self._ttl <= 0 or self._max_entries == 0:
            return
        self._entries[key] = (value, asked_at + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

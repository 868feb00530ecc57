"""In-memory stand-in for the feed service's peer (:mod:`services.feed.peers`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.feed.errors import FeedUnavailable, Reason
from services.feed.peers import FollowerPage


@dataclass
class FakeFollowers:
    """Follow relations, newest first per author; ``down`` makes every question fail.

    The cursor is the position of the next follower in the author's list, 1-based
    (0: from the start, and 0 again after the last page), like the follow service's opaque
    relation-id cursor as far as the feed can tell.
    """

    of: dict[int, list[int]] = field(default_factory=dict)
    down: bool = False
    pages_served: int = 0

    def follow(self, follower: int, author: int) -> None:
        """``follower`` starts following ``author`` (newest first)."""
        self.of.setdefault(author, []).insert(0, follower)

    def unfollow(self, follower: int, author: int) -> None:
        """``follower`` stops following ``author``."""
        self.of[author].remove(follower)

    def _check(self) -> None:
        if self.down:
            raise FeedUnavailable(Reason.UNAVAILABLE, "follow service down (fake)")

    async def followers(self, author: int, *, cursor: int, limit: int) -> FollowerPage:
        """A page of ``author``'s followers from ``cursor``."""
        self._check()
        self.pages_served += 1
        everyone = self.of.get(author, [])
        start = max(cursor - 1, 0)
        page = everyone[start : start + limit]
        end = start + len(page)
        return FollowerPage(uids=page, next_cursor=end + 1 if end < len(everyone) else 0)

    async def count(self, author: int) -> int:
        """How many follow ``author``."""
        self._check()
        return len(self.of.get(author, []))

    async def followees(self, reader: int, *, at_most: int) -> list[int]:
        """Who ``reader`` follows."""
        self._check()
        return [author for author, fans in self.of.items() if reader in fans][:at_most]

"""The existence check of benchmarks that only read: nothing there likes, collects or comments.

The interactive and comment services ask the article service whether a target exists before
a write; a benchmark that measures reads gives them :class:`ReadOnlyTargets`, which fails
loudly if a write ever asks.
"""

from __future__ import annotations


class ReadOnlyTargets:
    """``Targets`` of a read-only benchmark: any question is a bug in the benchmark."""

    async def exists(self, biz: str, biz_id: int) -> bool:
        """Never answers: this benchmark writes no like, collect or comment."""
        raise AssertionError(f"a read-only benchmark asked whether {biz}:{biz_id} exists")

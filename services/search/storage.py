"""The service's data directory: the tantivy index and the identity of that index.

::

    <data dir>/
      index/        the tantivy index (segments, meta.json, the writer's lock file)
      index-id      a random id, new whenever ``index/`` is created

The id names the sync consumer group (``search-indexer-<id>``), so the offsets a group
committed always describe the index on disk: an index rebuilt from nothing (a new volume,
a deleted directory) gets a new group, which reads the topics from their beginning instead
of resuming where an index that no longer exists had stopped.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Final

import tantivy

from services.search.errors import Reason, SearchUnavailable
from services.search.index import TantivySearchIndex

logger = logging.getLogger(__name__)

INDEX_DIR: Final = "index"
INDEX_ID_FILE: Final = "index-id"
_LOCK_BUSY: Final = "LockBusy"


class DataDir:
    """A data directory (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def index_path(self) -> Path:
        """Where the tantivy index lives."""
        return self.path / INDEX_DIR

    def open_index(
        self, *, writer_heap_bytes: int, writer_threads: int, recency_boost: float
    ) -> tuple[TantivySearchIndex, str]:
        """Open (or create) the index for reading and writing; returns it and its id.

        Raises :class:`SearchUnavailable` when another process holds the index's writer
        lock (a running service, a reindex) or the directory cannot be used.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            created = not (self.index_path.is_dir() and tantivy.Index.exists(str(self.index_path)))
            index = TantivySearchIndex(
                self.index_path,
                writer_heap_bytes=writer_heap_bytes,
                writer_threads=writer_threads,
                recency_boost=recency_boost,
            )
        except (OSError, ValueError) as exc:
            if _LOCK_BUSY in str(exc):
                message = (
                    f"the search index in {self.index_path} is in use by another process "
                    "(a running search service or reindex); stop it first"
                )
            else:
                message = f"cannot open the search index in {self.index_path}: {exc}"
            raise SearchUnavailable(Reason.INDEX_UNAVAILABLE, message) from exc
        return index, self._index_id(renew=created)

    def _index_id(self, *, renew: bool) -> str:
        id_file = self.path / INDEX_ID_FILE
        if not renew:
            try:
                existing = id_file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                existing = ""
            if existing:
                return existing
        fresh = uuid.uuid4().hex[:16]
        tmp = id_file.with_suffix(".tmp")
        tmp.write_text(fresh + "\n", encoding="utf-8")
        tmp.replace(id_file)
        logger.info("new search index id", extra={"index_id": fresh, "path": str(self.path)})
        return fresh

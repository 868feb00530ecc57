"""The service's data directory: the tantivy index and the identity of that index.

::

    <data dir>/
      index/        the tantivy index (segments, meta.json, the writer's lock file)
      index-id      a random id, new whenever ``index/`` is created or installed
      snapshots/    copies of the committed index served to new replicas
                    (:mod:`services.search.snapshot`; hard links, deleted when they expire)
      incoming/     a peer's snapshot being downloaded by a new replica; moved to
                    ``index/`` once complete, deleted if the download fails

The id names the sync consumer group (``search-indexer-<id>``), so the offsets a group
committed always describe the index on disk: an index rebuilt from nothing (a new volume,
a deleted directory) gets a new group, which reads the topics from their beginning instead
of resuming where an index that no longer exists had stopped. An index copied from a peer
(:meth:`DataDir.install_index`) gets a new id too, and its group starts at the offsets the
peer's group had committed when the copy was taken.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Final

import tantivy

from services.search.errors import Reason, SearchUnavailable
from services.search.index import TantivySearchIndex

logger = logging.getLogger(__name__)

INDEX_DIR: Final = "index"
INDEX_ID_FILE: Final = "index-id"
SNAPSHOTS_DIR: Final = "snapshots"
INCOMING_DIR: Final = "incoming"
_LOCK_BUSY: Final = "LockBusy"


class DataDir:
    """A data directory (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def index_path(self) -> Path:
        """Where the tantivy index lives."""
        return self.path / INDEX_DIR

    @property
    def snapshots_path(self) -> Path:
        """Where the snapshots served to peers are kept."""
        return self.path / SNAPSHOTS_DIR

    @property
    def incoming_path(self) -> Path:
        """Where a peer's snapshot is downloaded before it becomes the index."""
        return self.path / INCOMING_DIR

    def has_index(self) -> bool:
        """Whether ``index/`` holds a tantivy index (its ``meta.json``)."""
        return self.index_path.is_dir() and tantivy.Index.exists(str(self.index_path))

    def discard_incoming(self) -> None:
        """Delete what a download left in ``incoming/`` (a failed or interrupted one)."""
        shutil.rmtree(self.incoming_path, ignore_errors=True)

    def install_index(self, staged: Path, index_id: str) -> None:
        """Make the complete index in ``staged`` (a directory of this data directory, e.g.
        ``incoming/``) the index of this data directory, under id ``index_id``.

        The id is written first: a crash before the rename leaves no index, so the next
        start begins again from nothing (with yet another id). Raises ``FileExistsError``
        when an index is already there (it is never replaced) and ``OSError`` when the
        files cannot be moved.
        """
        if self.has_index():
            raise FileExistsError(f"{self.index_path} already holds an index")
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_index_id(index_id)
        # A directory without meta.json holds at most lock files of an index never created.
        shutil.rmtree(self.index_path, ignore_errors=True)
        staged.rename(self.index_path)
        _fsync_directory(self.path)
        logger.info(
            "search index installed",
            extra={"index_id": index_id, "path": str(self.index_path)},
        )

    def open_index(
        self, *, writer_heap_bytes: int, writer_threads: int, recency_boost: float
    ) -> tuple[TantivySearchIndex, str]:
        """Open (or create) the index for reading and writing; returns it and its id.

        Raises :class:`SearchUnavailable` when another process holds the index's writer
        lock (a running service, a reindex) or the directory cannot be used.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            created = not self.has_index()
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
        fresh = new_index_id()
        self._write_index_id(fresh)
        logger.info("new search index id", extra={"index_id": fresh, "path": str(self.path)})
        return fresh

    def _write_index_id(self, index_id: str) -> None:
        id_file = self.path / INDEX_ID_FILE
        tmp = id_file.with_suffix(".tmp")
        tmp.write_text(index_id + "\n", encoding="utf-8")
        tmp.replace(id_file)


def new_index_id() -> str:
    """A fresh index id (16 hex digits)."""
    return uuid.uuid4().hex[:16]


def _fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable (a power loss must not undo an install)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Use cases of the search service and the ports they need.

- :class:`SearchService` answers queries (:meth:`~SearchService.search`) and takes changes
  from every sync path (Kafka events, the ``SyncService`` RPCs, reindexing) through
  :meth:`~SearchService.apply`.
- :class:`BatchedIndexWriter` is the single way into the index: changes are checked against
  the versions the index (or the pending batch) holds (:func:`~services.search.domain.supersedes`),
  collected, and written as one commit every ``commit_interval_s`` or as soon as
  ``max_batch`` changes wait. :meth:`~BatchedIndexWriter.submit` returns once its changes
  are committed (group commit), so a Kafka batch is acknowledged only after it is durable,
  and an RPC answers OK only for a change a restart will keep.
- **Tombstone filter**: a removal (withdrawn article) hides the article from searches as
  soon as it is accepted, before its commit: searches exclude the keys of pending and
  in-flight removals. So results never include an article once its withdrawal reached the
  service, whatever the commit interval.
- **Author names follow the author**: an article document shows (and is searched by) the
  nickname of the author's *user document* whenever the index holds one, and the name the
  article's own change carried only otherwise. The user document is versioned like any
  other (``UserChanged`` at ``at_ms``), so it is the newest name the index knows, and the
  name an article event carries (looked up by the article service when it published, maybe
  from a cache, maybe before a rename) never overrides it. The writer applies the rule under
  its lock, when it accepts changes (:meth:`BatchedIndexWriter.submit`): an accepted article
  upsert takes the author's current name; an accepted user upsert (a newer ``UserChanged``)
  rewrites every live article of that author whose name differs, at the article's own
  version. Hence a later-arriving older article event is superseded by version or, for an
  article not indexed yet, takes the current name; a replayed older ``UserChanged`` is
  superseded by the user document's version and rewrites nothing; and a user event that
  arrives after a newer article event still renames it. Until an author's user document is
  indexed, articles show the name their events carried.
- **Tags ride along**: an article's tag names (:class:`~services.search.domain.TagSet`) are
  part of its document but versioned on their own. The writer resolves every offer against
  the key's whole held state (pending, else committed: :meth:`SearchIndex.states`): a
  document change that wins by version keeps the held tags; a
  :class:`~services.search.domain.Retag` with a newer set replaces only the names, on a live
  article, a tombstone (still hidden) or, for an article not seen yet, a tombstone at
  version 0 that the publication supersedes and inherits the names of. So neither kind of
  event can undo the other, whatever their order.
- :class:`Reindexer` rebuilds the index from the source services (ports
  :class:`PublishedArticles` and :class:`UserDirectory`): every published article and
  every user is offered at its ``utime`` version, then indexed articles the source no
  longer lists are removed at the version of the rebuild's start (a change that happened
  during the rebuild is newer and wins). Tags are not in the sources it reads: its upserts
  and removals keep the tags the index holds, like every document change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Protocol

from opentelemetry import trace

from services.search import metrics
from services.search.analysis import html_to_text
from services.search.domain import (
    NO_TAGS,
    UNPUBLISHED_VERSION,
    ArticleDoc,
    Change,
    DocKey,
    DocType,
    Removal,
    Retag,
    SearchPage,
    SearchRequest,
    SyncChange,
    TagSet,
    Upsert,
    UserDoc,
    Version,
    article_doc,
    parse_request,
    supersedes,
    user_doc,
)
from services.search.errors import Reason, SearchInvalidArgument, SearchUnavailable

logger = logging.getLogger(__name__)
TRACER_NAME = __name__

Clock = Callable[[], int]
_TYPE_LABEL = {None: "all", DocType.ARTICLE: "article", DocType.USER: "user"}


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class SearchIndex(Protocol):
    """Where documents are stored and matched (the embedded tantivy index by default)."""

    async def write(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` (at most one per key) and commit them together; raise on failure."""
        ...

    async def versions(self, keys: Collection[DocKey]) -> dict[DocKey, Version]:
        """The committed version of each of ``keys`` the index holds."""
        ...

    async def states(self, keys: Collection[DocKey]) -> dict[DocKey, Change]:
        """The committed state of each of ``keys`` the index holds (tags included)."""
        ...

    async def live_ids(self, doc_type: DocType) -> set[int]:
        """Ids of every searchable document of ``doc_type``."""
        ...

    async def live_versions(self, doc_type: DocType) -> dict[int, int]:
        """Id → committed version of every searchable document of ``doc_type``."""
        ...

    async def nicknames(self, user_ids: Collection[int]) -> dict[int, str]:
        """The committed nickname of each of ``user_ids`` the index holds."""
        ...

    async def articles_by(self, author_ids: Collection[int]) -> list[Upsert]:
        """Every committed live article of ``author_ids``, as the upsert that indexed it."""
        ...

    async def search(
        self, request: SearchRequest, *, exclude: Collection[DocKey] = (), now_ms: int
    ) -> SearchPage:
        """A page of live documents matching ``request`` except ``exclude``."""
        ...

    def num_docs(self) -> dict[DocType, int]:
        """Searchable documents per type."""
        ...


class BatchedIndexWriter:
    """Versioned, batched, group-committed writes to a :class:`SearchIndex`.

    :meth:`start` the background committer inside the running loop; :meth:`stop` commits
    what is pending and ends it.
    """

    def __init__(
        self,
        index: SearchIndex,
        *,
        commit_interval_s: float = 0.5,
        max_batch: int = 1000,
        retry_backoff_s: float = 0.5,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._index = index
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._interval = commit_interval_s
        self._max_batch = max_batch
        self._retry_backoff = retry_backoff_s
        self._pending: dict[DocKey, Change] = {}
        self._in_flight: dict[DocKey, Change] = {}
        self._batch_done: asyncio.Future[None] | None = None
        # Held while versions are read and pending changes updated, and while a batch is
        # written: a version read never sees a batch half committed.
        self._lock = asyncio.Lock()
        self._has_pending = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Changes accepted and not yet committed."""
        return len(self._pending) + len(self._in_flight)

    def hidden_keys(self) -> frozenset[DocKey]:
        """Keys of accepted, not yet committed removals: searches must not show them."""
        return frozenset(
            key
            for batch in (self._in_flight, self._pending)
            for key, change in batch.items()
            if isinstance(change, Removal)
        ) - frozenset(k for k, c in self._pending.items() if isinstance(c, Upsert))

    def start(self) -> None:
        """Start committing in the background."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="search-index-committer")

    async def stop(self) -> None:
        """Commit what is pending (one last attempt), then stop."""
        self._stopping = True
        self._full.set()
        self._has_pending.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        if self._pending:
            logger.warning("pending index changes lost at stop", extra={"count": self.pending})
            self._fail_batch(SearchUnavailable(Reason.INDEX_UNAVAILABLE, "the index is stopping"))

    async def submit(self, changes: Sequence[SyncChange]) -> tuple[int, int]:
        """Offer ``changes``; returns ``(applied, superseded)`` once the applied ones are
        committed. Raises :class:`SearchUnavailable` if their commit failed or the writer is
        stopping; the caller may offer them again (stale duplicates are ignored)."""
        if self._stopping:
            raise SearchUnavailable(Reason.INDEX_UNAVAILABLE, "the search index is stopping")
        if not changes:
            return 0, 0
        async with self._lock:
            keys = {change.key for change in changes}
            committed = await self._index.states(keys - self._pending.keys())
            applied = 0
            accepted: set[DocKey] = set()
            for change in changes:
                held = self._pending.get(change.key) or committed.get(change.key)
                resolved = _resolve(change, held)
                if resolved is not None:
                    self._pending[change.key] = resolved
                    accepted.add(change.key)
                    applied += 1
            superseded = len(changes) - applied
            if accepted:
                await self._follow_author_names(accepted)
            if not self._pending:
                return applied, superseded
            done = self._current_batch()
            metrics.PENDING_CHANGES.set(self.pending)
            self._has_pending.set()
            if len(self._pending) >= self._max_batch:
                self._full.set()
        # Waiting for the batch even when every change was superseded by a pending one:
        # that pending change (possibly our own earlier offer) is not durable yet.
        await asyncio.shield(done)
        return applied, superseded

    async def _follow_author_names(self, accepted: set[DocKey]) -> None:
        """Apply the author-name rule (module docstring) to the pending changes of the
        ``accepted`` keys; called under the lock, so the index and the pending batch are the
        whole state."""
        upserts = [c for key in accepted if isinstance(c := self._pending[key], Upsert)]
        users = {c.doc.id: c.doc.nickname for c in upserts if isinstance(c.doc, UserDoc)}
        # Only a nickname that differs from the committed one sends the writer looking for
        # the author's articles (an about-me edit or a reindex's re-offer costs one read).
        committed = await self._index.nicknames(users.keys())
        renamed = {uid: name for uid, name in users.items() if committed.get(uid) != name}
        authors = {
            c.doc.author_id for c in upserts if isinstance(c.doc, ArticleDoc) and c.doc.author_id
        } - users.keys()
        names = dict(users)
        for author_id in list(authors):
            held = self._pending.get(DocKey(DocType.USER, author_id))
            if isinstance(held, Upsert) and isinstance(held.doc, UserDoc):
                names[author_id] = held.doc.nickname
                authors.discard(author_id)
        names.update(await self._index.nicknames(authors))
        # Pending articles just accepted or by an author just changed (an earlier pending
        # rename may have rewritten them), then the renamed authors' committed articles that
        # no pending change replaces.
        articles = [
            (change, change.doc)
            for change in self._pending.values()
            if isinstance(change, Upsert)
            and isinstance(change.doc, ArticleDoc)
            and (change.key in accepted or change.doc.author_id in users)
        ]
        if renamed:
            articles.extend(
                (change, change.doc)
                for change in await self._index.articles_by(renamed.keys())
                if isinstance(change.doc, ArticleDoc) and change.key not in self._pending
            )
        rewritten = 0
        for change, article in articles:
            name = names.get(article.author_id)
            if name is None or name == article.author_name:
                continue
            # Same version and tags: only the shown name follows the author.
            renamed_doc = dataclasses.replace(article, author_name=name)
            self._pending[change.key] = dataclasses.replace(change, doc=renamed_doc)
            if change.key not in accepted:
                rewritten += 1
        if rewritten:
            metrics.AUTHOR_NAME_REWRITES.inc(rewritten)
            logger.info(
                "articles renamed after their author",
                extra={"authors": sorted(renamed), "articles": rewritten},
            )

    def _current_batch(self) -> asyncio.Future[None]:
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        return self._batch_done

    async def _run(self) -> None:
        while True:
            await self._has_pending.wait()
            if not self._pending:
                self._has_pending.clear()
                if self._stopping:
                    return
                continue
            # Group commit: whatever arrives within the interval goes into this batch.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._interval)
            ok = await self._commit()
            if self._stopping:
                # One last attempt only: a failed final batch is reported by stop().
                return
            if not ok:
                await asyncio.sleep(self._retry_backoff)

    async def _commit(self) -> bool:
        async with self._lock:
            batch, self._pending = self._pending, {}
            done, self._batch_done = self._batch_done, None
            self._in_flight = batch
            self._full.clear()
            self._has_pending.clear()
            started = time.perf_counter()
            try:
                with self._tracer.start_as_current_span(
                    "search.index.commit", attributes={"search.batch_size": len(batch)}
                ):
                    await self._index.write(list(batch.values()))
            except Exception as exc:
                metrics.COMMITS.labels("error").inc()
                logger.exception("index commit failed; retrying", extra={"changes": len(batch)})
                # Keep them (removals keep hiding their articles), unless newer ones came.
                for key, change in batch.items():
                    newer = self._pending.get(key)
                    if newer is None or supersedes(change, _version_of(newer)):
                        self._pending[key] = change
                self._in_flight = {}
                self._has_pending.set()
                if done is not None and not done.done():
                    done.set_exception(
                        SearchUnavailable(
                            Reason.INDEX_UNAVAILABLE, f"the search index could not commit: {exc}"
                        )
                    )
                    # Nobody may be waiting; do not let asyncio report the exception.
                    done.exception()
                return False
            finally:
                metrics.PENDING_CHANGES.set(self.pending)
            self._in_flight = {}
            metrics.COMMITS.labels("ok").inc()
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            metrics.COMMIT_BATCH.observe(len(batch))
            metrics.PENDING_CHANGES.set(self.pending)
            self._refresh_counts()
            if done is not None and not done.done():
                done.set_result(None)
            return True

    def _refresh_counts(self) -> None:
        try:
            counts = self._index.num_docs()
        except Exception:
            logger.warning("counting index documents failed", exc_info=True)
            return
        for doc_type, count in counts.items():
            metrics.INDEX_DOCUMENTS.labels(_TYPE_LABEL[doc_type]).set(count)

    def _fail_batch(self, error: Exception) -> None:
        done, self._batch_done = self._batch_done, None
        self._pending = {}
        metrics.PENDING_CHANGES.set(self.pending)
        if done is not None and not done.done():
            done.set_exception(error)
            done.exception()


def _version_of(change: Change) -> Version:
    return Version(change.version, isinstance(change, Removal))


def _resolve(change: SyncChange, held: Change | None) -> Change | None:
    """The key's new whole state once ``change`` is applied to ``held`` (the pending or
    committed state), or None when ``change`` is superseded (service docstring)."""
    if isinstance(change, Retag):
        if not change.tags.newer_than(held.tags if held is not None else None):
            return None
        if held is None:
            # Tags of an article not published yet (or not yet known here): kept, hidden.
            return Removal(change.key, UNPUBLISHED_VERSION, change.tags)
        return dataclasses.replace(held, tags=change.tags)
    if not supersedes(change, _version_of(held) if held is not None else None):
        return None
    if change.key.type is not DocType.ARTICLE:
        return change
    held_tags = held.tags if held is not None else None
    return dataclasses.replace(change, tags=_newer_tags(change.tags, held_tags))


def _newer_tags(offered: TagSet | None, held: TagSet | None) -> TagSet:
    """The newer of two tag sets (None: no set)."""
    if offered is not None and offered.newer_than(held):
        return offered
    return held or offered or NO_TAGS


class SearchService:
    """Queries and index changes."""

    def __init__(
        self,
        index: SearchIndex,
        writer: BatchedIndexWriter,
        *,
        clock: Clock = now_ms,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._index = index
        self._writer = writer
        self._clock = clock
        # The global provider (kit.observability.tracing) unless one is given (tests).
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    async def search(self, text: str, doc_type: int, offset: int, limit: int) -> SearchPage:
        """A page of hits for ``text`` (``doc_type`` 0: articles and users).

        Raises :class:`SearchInvalidArgument` (``SEARCH_INVALID_QUERY`` or
        ``SEARCH_INVALID_PAGE``) for bad input and :class:`SearchUnavailable` when the
        index cannot be read.
        """
        started = time.perf_counter()
        label = _TYPE_LABEL.get(DocType(doc_type) if doc_type in (1, 2) else None, "all")
        try:
            request = parse_request(text, doc_type, offset, limit)
            with self._tracer.start_as_current_span(
                "search.query", attributes={"search.type": label, "search.limit": request.limit}
            ) as span:
                page = await self._index.search(
                    request, exclude=self._writer.hidden_keys(), now_ms=self._clock()
                )
                span.set_attribute("search.total", page.total)
        except SearchInvalidArgument:
            metrics.QUERIES.labels(label, "invalid").inc()
            raise
        except Exception as exc:
            metrics.QUERIES.labels(label, "error").inc()
            if isinstance(exc, SearchUnavailable):
                raise
            raise SearchUnavailable(
                Reason.INDEX_UNAVAILABLE, "the search index cannot be read now"
            ) from exc
        metrics.QUERIES.labels(label, "ok").inc()
        metrics.QUERY_SECONDS.labels(label).observe(time.perf_counter() - started)
        return page

    async def apply(self, changes: Sequence[SyncChange], *, source: str) -> int:
        """Offer ``changes`` to the index; returns how many were newer than what it held.

        Returns once they are committed; raises :class:`SearchUnavailable` if the commit
        failed (offer them again).
        """
        with self._tracer.start_as_current_span(
            "search.sync.apply",
            attributes={"search.source": source, "search.changes": len(changes)},
        ) as span:
            applied, superseded = await self._writer.submit(changes)
            span.set_attribute("search.applied", applied)
        metrics.SYNC_CHANGES.labels(source, "applied").inc(applied)
        metrics.SYNC_CHANGES.labels(source, "superseded").inc(superseded)
        if changes:
            logger.debug(
                "index changes applied",
                extra={"source": source, "applied": applied, "superseded": superseded},
            )
        return applied

    async def put_article(self, doc: ArticleDoc, *, version: int | None = None) -> int:
        """Index a published article (version: its ``utime``, or now when unknown)."""
        return await self.apply(
            [Upsert(doc, version or doc.utime_ms or self._clock())], source="grpc"
        )

    async def put_user(self, doc: UserDoc, *, version: int | None = None) -> int:
        """Index a user (version: its ``utime``, or now when unknown)."""
        return await self.apply(
            [Upsert(doc, version or doc.utime_ms or self._clock())], source="grpc"
        )

    async def input_article(
        self,
        *,
        article_id: int,
        title: str,
        content_html: str,
        author_id: int,
        author_name: str,
        published: bool,
        utime_ms: int,
    ) -> int:
        """Direct input of an article's state (``SyncService.InputArticle``): a published
        article is indexed, any other state removes it; version ``utime_ms`` (now if 0)."""
        if not published:
            return await self.remove_article(article_id, version=utime_ms or None)
        try:
            doc = article_doc(
                article_id=article_id,
                title=title,
                body=html_to_text(content_html),
                author_id=author_id,
                author_name=author_name,
                utime_ms=utime_ms or self._clock(),
            )
        except SearchInvalidArgument:
            metrics.SYNC_CHANGES.labels("grpc", "invalid").inc()
            raise
        return await self.put_article(doc)

    async def input_user(self, *, user_id: int, nickname: str, about_me: str) -> int:
        """Direct input of a user's searchable fields (``SyncService.InputUser``), as of now."""
        try:
            doc = user_doc(
                user_id=user_id, nickname=nickname, about_me=about_me, utime_ms=self._clock()
            )
        except SearchInvalidArgument:
            metrics.SYNC_CHANGES.labels("grpc", "invalid").inc()
            raise
        return await self.put_user(doc)

    async def remove_article(self, article_id: int, *, version: int | None = None) -> int:
        """Remove an article from results (version: now unless given)."""
        if article_id <= 0:
            metrics.SYNC_CHANGES.labels("grpc", "invalid").inc()
            raise SearchInvalidArgument(
                Reason.INVALID_DOCUMENT,
                f"article id must be positive, got {article_id}",
                metadata={"field": "id"},
            )
        key = DocKey(DocType.ARTICLE, article_id)
        return await self.apply([Removal(key, version or self._clock())], source="grpc")


class PublishedArticles(Protocol):
    """The article service, as the reindexer reads it."""

    def published(self, *, before_ms: int) -> AsyncIterator[ArticleDoc]:
        """Every article published (last updated) before ``before_ms``, newest first."""
        ...


class UserDirectory(Protocol):
    """The user service, as the reindexer reads it."""

    def users(self) -> AsyncIterator[UserDoc]:
        """Every user, in id order."""
        ...


class TaggedArticles(Protocol):
    """The tag service, as the reindexer reads it."""

    def tag_sets(self) -> AsyncIterator[Retag]:
        """Every article's current tag set (emptied ones included), each once."""
        ...


class Reindexer:
    """Rebuilds the index from the source services (first deployment, recovery).

    With ``tags`` it also offers every article's tag set: an index rebuilt from nothing then
    has the tags whose events the topic no longer holds (sets are applied by their version,
    so one older than the index's is ignored, as a late event would be).
    """

    def __init__(
        self,
        service: SearchService,
        index: SearchIndex,
        articles: PublishedArticles,
        users: UserDirectory,
        *,
        tags: TaggedArticles | None = None,
        chunk: int = 500,
        clock: Clock = now_ms,
    ) -> None:
        self._service = service
        self._index = index
        self._articles = articles
        self._users = users
        self._tags = tags
        self._chunk = chunk
        self._clock = clock

    async def run(self) -> dict[str, int]:
        """Offer every source document and tag set, sweep articles no longer published;
        returns counts."""
        started = self._clock()
        stale_articles = await self._index.live_ids(DocType.ARTICLE)
        counts = {"articles": 0, "users": 0, "tag_sets": 0, "removed": 0, "applied": 0}
        batch: list[SyncChange] = []

        async def flush() -> None:
            counts["applied"] += await self._service.apply(batch, source="reindex")
            batch.clear()

        async for article in self._articles.published(before_ms=started + 1):
            stale_articles.discard(article.id)
            batch.append(Upsert(article, article.utime_ms))
            counts["articles"] += 1
            if len(batch) >= self._chunk:
                await flush()
        async for user in self._users.users():
            batch.append(Upsert(user, user.utime_ms))
            counts["users"] += 1
            if len(batch) >= self._chunk:
                await flush()
        if self._tags is not None:
            async for retag in self._tags.tag_sets():
                batch.append(retag)
                counts["tag_sets"] += 1
                if len(batch) >= self._chunk:
                    await flush()
        for article_id in sorted(stale_articles):
            batch.append(Removal(DocKey(DocType.ARTICLE, article_id), started))
            counts["removed"] += 1
            if len(batch) >= self._chunk:
                await flush()
        await flush()
        logger.info("reindex finished", extra=counts)
        return counts

"""The embedded index: :class:`TantivySearchIndex` implements the service's ``SearchIndex``.

One tantivy index in a directory holds both document types. Its schema:

================  ==========================  ==============================================
field             kind                        use
================  ==========================  ==============================================
``key``           raw text, stored            ``a:<id>`` / ``u:<id>``: replace and delete by key
``kind``          u64, indexed, fast          the :class:`~services.search.domain.DocType`
``live``          bool, indexed, stored       ``False`` for a tombstone (a withdrawn article)
``version``       i64, stored                 last applied change (ms), see ``domain.supersedes``
``doc_id``        i64, stored                 the article or user id
``utime``         i64, indexed, fast, stored  last update (ms): recency boost and display
``author_id``     i64, indexed, stored        articles: the author (renames find their articles)
``title``         text (unigrams), stored     article title (shown, highlighted)
``body``          text (unigrams), stored     article text (HTML removed)
``author``        text (unigrams), stored     article author's name
``nickname``      text (unigrams), stored     user nickname
``about``         text (unigrams), stored     user about-me
``tags``          text (unigrams), stored     article tag names, one value per tag
``tags_version``  i64, stored                 version of the tag set (``domain.TagSet``)
``<field>_s``     text (Han n-grams)          the searched twin of each text field above
================  ==========================  ==============================================

(:mod:`services.search.analysis` explains the two analyzers.) A tombstone has no searched
text field, so no text can match it (a withdrawn or not yet published article keeps only
its stored ``tags`` and ``tags_version``, which no query searches, so that its tags survive
until it is published again); every search still requires ``live`` (and the requested
``kind``), so that what a search returns never depends on that: see "Queries" below.

**Schema changes.** tantivy refuses to open an index whose schema differs from the one
asked for. The schema has a version (:data:`SCHEMA_VERSION`; :func:`build_schema` builds
each one this code reads: 2 indexed ``author_id``, 3 added the tags). An index written with
an older schema is migrated when it is opened (:func:`migrate_index`): every stored document,
tombstones included, is read back into the change that wrote it and written into a new
index beside the old one, which then takes the old one's place. Every field a change
needs is stored (the searched twins are derived from the stored text), so nothing is lost
and the versions stay as they were (an article of an index without tags has none, at version
0); the writer lock of the old index is held meanwhile, so a process still using it makes
the migration fail instead of losing its writes. A peer's snapshot of an older schema is
installed as it is and migrated the same way (:mod:`services.search.snapshot`).

Every change of a batch deletes the key's previous document and adds the new one (a full
document or a tombstone), then the batch is committed at once and the reader reloaded, so
a search sees either none or all of a batch. tantivy allows one writer per directory (it
holds a lock file); the writer lives as long as this object. Tantivy calls block, so they
run in worker threads: writes in one dedicated thread (they are serialised anyway),
searches in the default pool.

**Ranking**: BM25 over the searched fields with per-field boosts (a match in a title, a tag
name or a nickname counts :data:`FIELD_BOOSTS` times more: a tag is the author's own
one-word summary of the article, as telling as a title word), then a recency re-rank of the best
:data:`RESCORE_WINDOW` (or ``offset + limit`` if more) by relevance, as Elasticsearch's
``rescore`` does: a document updated within the last 7, 30 or 365 days gets
``recency_boost`` times 1, 0.5 or 0.25 added to its score (the bonuses add up), so among
equally relevant documents newer ones come first while a much better match still wins.
Re-ranking a bounded window keeps the query a pure text query, whose cost grows far slower
than the corpus (``python -m bench.search``); range clauses over ``utime`` made every query
scan the whole column. The type filter chooses the searched fields (articles and users have
different ones); a constant-score ``kind`` term clause makes it exact.

**Queries** are built, never parsed: :mod:`services.search.query` reads the user's text
(words, all required, and "quoted phrases"; everything else is just text) into analysed
terms, and :meth:`TantivySearchIndex.build_query` makes term, phrase and boolean query
objects over the searched fields of the requested type, plus the visibility filter: ``live``
is true, ``kind`` is the requested type, and the keys of pending removals are excluded. No
field name, wildcard, range or boost a user types reaches the engine, so no text can search
the ``key``/``live``/``kind`` fields or make the engine fail.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import tantivy

from services.search.analysis import (
    ANALYZER_NAME,
    SEARCH_ANALYZER_NAME,
    SEARCH_SUFFIX,
    excerpt,
    highlight,
    search_analyzer,
    search_text,
    text_analyzer,
)
from services.search.domain import (
    MAX_RESULT_WINDOW,
    NO_TAGS,
    ArticleDoc,
    Change,
    DocKey,
    DocType,
    Removal,
    SearchHit,
    SearchPage,
    SearchRequest,
    TagSet,
    Upsert,
    UserDoc,
    Version,
)
from services.search.errors import Reason, SearchInvalidArgument
from services.search.query import analyse_query, clause_query

logger = logging.getLogger(__name__)

TEXT_FIELDS: Final = ("title", "body", "author", "nickname", "about", "tags")
# The searched twin of each text field (Han text as n-grams, see analysis.search_text).
SEARCHED: Final = {name: name + SEARCH_SUFFIX for name in TEXT_FIELDS}
SEARCHED_FIELDS: Final[dict[DocType | None, tuple[str, ...]]] = {
    None: tuple(SEARCHED.values()),
    DocType.ARTICLE: (
        SEARCHED["title"],
        SEARCHED["body"],
        SEARCHED["author"],
        SEARCHED["tags"],
    ),
    DocType.USER: (SEARCHED["nickname"], SEARCHED["about"]),
}
_BOOSTS: Final = {
    "title": 3.0,
    "tags": 3.0,
    "nickname": 3.0,
    "author": 1.5,
    "body": 1.0,
    "about": 1.0,
}
FIELD_BOOSTS: Final = {
    **_BOOSTS,
    **{SEARCHED[name]: boost for name, boost in _BOOSTS.items()},
}
# Documents re-ranked with the recency bonus per query (more when the page lies deeper).
RESCORE_WINDOW: Final = 50
SNIPPET_CHARS: Final = 160
DAY_MS: Final = 86_400_000
# (window, share of recency_boost) pairs; a document inside several windows gets each bonus.
RECENCY_WINDOWS: Final = ((7 * DAY_MS, 1.0), (30 * DAY_MS, 0.5), (365 * DAY_MS, 0.25))
_KEY_PREFIX: Final = {DocType.ARTICLE: "a", DocType.USER: "u"}
# tantivy's refusal to open an index written with another schema.
_SCHEMA_MISMATCH: Final = "schema does not match"
# Documents read per page while an older index is migrated.
_MIGRATION_PAGE: Final = 10_000


def key_text(key: DocKey) -> str:
    """The stored ``key`` term of a document."""
    return f"{_KEY_PREFIX[key.type]}:{key.id}"


SCHEMA_VERSION: Final = 3
"""The version of the schema this code writes (see "Schema changes" above)."""
READABLE_SCHEMA_VERSIONS: Final = (2, 3)
"""The schema versions :func:`build_schema` builds: indexes (and peers' snapshots) of these
versions are migrated to :data:`SCHEMA_VERSION` when opened."""


def build_schema(version: int = SCHEMA_VERSION) -> tantivy.Schema:
    """The index schema of ``version`` (see the module docstring)."""
    if version not in READABLE_SCHEMA_VERSIONS:
        raise ValueError(f"unknown search index schema version {version}")
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", stored=True, tokenizer_name="raw")
    builder.add_unsigned_field("kind", stored=True, indexed=True, fast=True)
    builder.add_boolean_field("live", stored=True, indexed=True, fast=True)
    builder.add_integer_field("version", stored=True)
    builder.add_integer_field("doc_id", stored=True)
    builder.add_integer_field("utime", stored=True, indexed=True, fast=True)
    builder.add_integer_field("author_id", stored=True, indexed=True)
    if version >= 3:
        builder.add_integer_field("tags_version", stored=True)
    for name in TEXT_FIELDS:
        if name == "tags" and version < 3:
            continue
        builder.add_text_field(name, stored=True, tokenizer_name=ANALYZER_NAME)
        builder.add_text_field(SEARCHED[name], stored=False, tokenizer_name=SEARCH_ANALYZER_NAME)
    return builder.build()


def _count(result: tantivy.SearchResult) -> int:
    # The count is there when asked for (count=True); the type stubs do not declare it.
    return int(getattr(result, "count", None) or 0)


def _first(doc: tantivy.Document, field: str, default: Any) -> Any:
    value = doc.get_first(field)
    return default if value is None else value


def stored_tags(doc: tantivy.Document) -> TagSet:
    """The tag set a stored article document holds (none, at version 0, in an index
    written before tags)."""
    version = int(_first(doc, "tags_version", 0))
    names = tuple(str(name) for name in doc.get_all("tags"))
    return TagSet(names, version) if version or names else NO_TAGS


def stored_change(doc: tantivy.Document) -> Change:
    """The change that wrote a stored document: an upsert of the article or user it holds
    at its version, or the removal a tombstone records (an article's with its tags)."""
    doc_type = DocType(int(_first(doc, "kind", DocType.ARTICLE)))
    doc_id = int(_first(doc, "doc_id", 0))
    version = int(_first(doc, "version", 0))
    tags = stored_tags(doc) if doc_type is DocType.ARTICLE else None
    if not _first(doc, "live", True):
        return Removal(DocKey(doc_type, doc_id), version, tags)
    utime = int(_first(doc, "utime", 0))
    if doc_type is DocType.ARTICLE:
        return Upsert(
            ArticleDoc(
                id=doc_id,
                title=str(_first(doc, "title", "")),
                body=str(_first(doc, "body", "")),
                author_id=int(_first(doc, "author_id", 0)),
                author_name=str(_first(doc, "author", "")),
                utime_ms=utime,
            ),
            version,
            tags,
        )
    return Upsert(
        UserDoc(
            id=doc_id,
            nickname=str(_first(doc, "nickname", "")),
            about_me=str(_first(doc, "about", "")),
            utime_ms=utime,
        ),
        version,
    )


def _register_analyzers(index: tantivy.Index) -> None:
    index.register_tokenizer(ANALYZER_NAME, text_analyzer())
    index.register_tokenizer(SEARCH_ANALYZER_NAME, search_analyzer())


def _stored_changes(index: tantivy.Index) -> Iterator[Change]:
    """Every document of ``index`` (tombstones included) as the change that wrote it."""
    index.reload()
    searcher = index.searcher()
    everything = tantivy.Query.all_query()
    for offset in range(0, searcher.num_docs, _MIGRATION_PAGE):
        page = searcher.search(everything, limit=_MIGRATION_PAGE, offset=offset, count=False)
        for _, address in page.hits:
            yield stored_change(searcher.doc(address))


def migrate_index(
    path: Path, schema: tantivy.Schema, write: Callable[[tantivy.IndexWriter, Change], None]
) -> int:
    """Rewrite the index in ``path`` (an older schema) with ``schema``; returns the documents
    moved. ``write(writer, change)`` adds one change's document to the new index.

    The new index is built in ``<path>.migrating`` and swapped in by two renames (the old
    one goes to ``<path>.replaced`` and is deleted last); :func:`recover_migration` finishes
    or undoes a migration a crash interrupted.
    """
    building = path.with_name(path.name + ".migrating")
    replaced = path.with_name(path.name + ".replaced")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    old = tantivy.Index.open(str(path))
    # Held until the swap: nobody may write the old index while it is copied.
    old_lock = old.writer(heap_size=15_000_000, num_threads=1)
    new = tantivy.Index(schema, path=str(building), reuse=False)
    _register_analyzers(new)
    writer = new.writer(heap_size=64_000_000, num_threads=1)
    moved = 0
    for change in _stored_changes(old):
        write(writer, change)
        moved += 1
    writer.commit()
    writer.wait_merging_threads()
    del writer, new
    old_lock.wait_merging_threads()
    del old_lock, old
    path.rename(replaced)
    building.rename(path)
    shutil.rmtree(replaced, ignore_errors=True)
    return moved


def recover_migration(path: Path) -> None:
    """Clean up after a migration that a crash interrupted: a half-built copy is dropped;
    an old index moved aside but not replaced goes back (it is migrated again)."""
    building = path.with_name(path.name + ".migrating")
    replaced = path.with_name(path.name + ".replaced")
    if replaced.exists():
        if path.is_dir() and tantivy.Index.exists(str(path)):
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
            replaced.rename(path)
    if building.exists():
        shutil.rmtree(building, ignore_errors=True)


class TantivySearchIndex:
    """A tantivy index in ``path`` (created if missing), opened for reading and writing.

    Args:
        path: the index directory.
        writer_heap_bytes: memory the writer buffers before it flushes a segment.
        writer_threads: indexing threads (0: tantivy picks by CPU count).
        recency_boost: score added to documents updated within the last week (see above).
    """

    def __init__(
        self,
        path: Path,
        *,
        writer_heap_bytes: int = 64_000_000,
        writer_threads: int = 1,
        recency_boost: float = 1.0,
    ) -> None:
        recover_migration(path)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._schema = build_schema()
        exists = tantivy.Index.exists(str(path))
        self._index = self._open(path)
        _register_analyzers(self._index)
        self._writer = self._index.writer(heap_size=writer_heap_bytes, num_threads=writer_threads)
        self._recency_boost = recency_boost
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-writer")
        self._closed = False
        self._index.reload()
        logger.info(
            "search index opened",
            extra={"path": str(path), "new_index": not exists, "docs": self.num_docs()},
        )

    def _open(self, path: Path) -> tantivy.Index:
        try:
            return tantivy.Index(self._schema, path=str(path), reuse=True)
        except ValueError as exc:
            if _SCHEMA_MISMATCH not in str(exc):
                raise
        logger.warning("search index has an older schema: migrating it", extra={"path": str(path)})

        def write(writer: tantivy.IndexWriter, change: Change) -> None:
            writer.add_document(self._document(change))

        moved = migrate_index(path, self._schema, write)
        logger.info("search index migrated", extra={"path": str(path), "documents": moved})
        return tantivy.Index(self._schema, path=str(path), reuse=True)

    # -- writing -------------------------------------------------------------------------

    async def write(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` (at most one per key) and commit them as one batch."""
        if changes:
            await asyncio.get_running_loop().run_in_executor(
                self._write_thread, self._write_sync, list(changes)
            )

    def _write_sync(self, changes: list[Change]) -> None:
        writer = self._writer
        try:
            for change in changes:
                writer.delete_documents_by_term("key", key_text(change.key))
                writer.add_document(self._document(change))
            writer.commit()
        except BaseException:
            # Nothing of a failed batch may linger in the writer for the next commit.
            writer.rollback()
            raise
        self._index.reload()

    def _document(self, change: Change) -> tantivy.Document:
        doc = tantivy.Document()
        key = change.key
        doc.add_text("key", key_text(key))
        doc.add_unsigned("kind", int(key.type))
        doc.add_integer("doc_id", key.id)
        doc.add_integer("version", change.version)
        tags = change.tags or NO_TAGS
        if key.type is DocType.ARTICLE:
            doc.add_integer("tags_version", tags.version)
        if isinstance(change, Removal):
            doc.add_boolean("live", False)
            # Kept for a later publication, but not searched (no ``tags_s``).
            for name in tags.names:
                doc.add_text("tags", name)
            return doc
        doc.add_boolean("live", True)
        source = change.doc
        doc.add_integer("utime", source.utime_ms)
        if isinstance(source, ArticleDoc):
            doc.add_integer("author_id", source.author_id)
            texts = {"title": source.title, "body": source.body, "author": source.author_name}
        else:
            texts = {"nickname": source.nickname, "about": source.about_me}
        for name, text in texts.items():
            doc.add_text(name, text)
            doc.add_text(SEARCHED[name], search_text(text))
        for name in tags.names:
            doc.add_text("tags", name)
            doc.add_text(SEARCHED["tags"], search_text(name))
        return doc

    # -- reading -------------------------------------------------------------------------

    async def versions(self, keys: Collection[DocKey]) -> dict[DocKey, Version]:
        """What the committed index holds for ``keys`` (absent keys are missing)."""
        if not keys:
            return {}
        return await asyncio.to_thread(self._versions_sync, list(keys))

    def _versions_sync(self, keys: list[DocKey]) -> dict[DocKey, Version]:
        by_text = {key_text(key): key for key in keys}
        searcher = self._index.searcher()
        query = tantivy.Query.term_set_query(self._schema, "key", list(by_text))
        found: dict[DocKey, Version] = {}
        for _, address in searcher.search(query, limit=len(by_text) * 2, count=False).hits:
            doc = searcher.doc(address)
            key = by_text[_first(doc, "key", "")]
            found[key] = Version(
                version=int(_first(doc, "version", 0)), removed=not _first(doc, "live", True)
            )
        return found

    async def states(self, keys: Collection[DocKey]) -> dict[DocKey, Change]:
        """The committed state of each of ``keys`` the index holds, as the change that
        wrote it (absent keys are missing)."""
        if not keys:
            return {}
        return await asyncio.to_thread(self._states_sync, list(keys))

    def _states_sync(self, keys: list[DocKey]) -> dict[DocKey, Change]:
        by_text = {key_text(key): key for key in keys}
        searcher = self._index.searcher()
        query = tantivy.Query.term_set_query(self._schema, "key", list(by_text))
        found: dict[DocKey, Change] = {}
        for _, address in searcher.search(query, limit=len(by_text) * 2, count=False).hits:
            doc = searcher.doc(address)
            found[by_text[_first(doc, "key", "")]] = stored_change(doc)
        return found

    async def nicknames(self, user_ids: Collection[int]) -> dict[int, str]:
        """The nickname of each of ``user_ids`` the index holds (absent users are missing)."""
        if not user_ids:
            return {}
        keys = [DocKey(DocType.USER, user_id) for user_id in user_ids]
        return await asyncio.to_thread(self._nicknames_sync, keys)

    def _nicknames_sync(self, keys: list[DocKey]) -> dict[int, str]:
        searcher = self._index.searcher()
        query = tantivy.Query.boolean_query(
            [
                (
                    tantivy.Occur.Must,
                    tantivy.Query.term_set_query(
                        self._schema, "key", [key_text(key) for key in keys]
                    ),
                ),
                (tantivy.Occur.Must, self._live_filter()),
            ]
        )
        found: dict[int, str] = {}
        for _, address in searcher.search(query, limit=len(keys) * 2, count=False).hits:
            doc = searcher.doc(address)
            found[int(_first(doc, "doc_id", 0))] = str(_first(doc, "nickname", ""))
        return found

    async def articles_by(self, author_ids: Collection[int]) -> list[Upsert]:
        """Every live article of ``author_ids``, as the upsert that indexed it."""
        if not author_ids:
            return []
        return await asyncio.to_thread(self._articles_by_sync, list(author_ids))

    def _articles_by_sync(self, author_ids: list[int]) -> list[Upsert]:
        searcher = self._index.searcher()
        query = tantivy.Query.boolean_query(
            [
                (
                    tantivy.Occur.Must,
                    tantivy.Query.term_set_query(self._schema, "author_id", author_ids),
                ),
                (tantivy.Occur.Must, self._kind_filter(DocType.ARTICLE)),
                (tantivy.Occur.Must, self._live_filter()),
            ]
        )
        total = _count(searcher.search(query, limit=1, count=True))
        if total == 0:
            return []
        found: list[Upsert] = []
        for _, address in searcher.search(query, limit=total, count=False).hits:
            change = stored_change(searcher.doc(address))
            if isinstance(change, Upsert):
                found.append(change)
        return found

    async def live_versions(self, doc_type: DocType) -> dict[int, int]:
        """Id → version of every searchable document of ``doc_type`` (the sweep compares
        them with the source's)."""
        return await asyncio.to_thread(self._live_versions_sync, doc_type)

    def _live_versions_sync(self, doc_type: DocType) -> dict[int, int]:
        searcher = self._index.searcher()
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, self._kind_filter(doc_type)),
                (tantivy.Occur.Must, self._live_filter()),
            ]
        )
        total = _count(searcher.search(query, limit=1, count=True))
        if total == 0:
            return {}
        versions: dict[int, int] = {}
        for _, address in searcher.search(query, limit=total, count=False).hits:
            doc = searcher.doc(address)
            versions[int(_first(doc, "doc_id", 0))] = int(_first(doc, "version", 0))
        return versions

    def num_segments(self) -> int:
        """Segments searched now: it drops as background merges complete."""
        return int(self._index.searcher().num_segments)

    def num_docs(self) -> dict[DocType, int]:
        """Searchable documents of each type (tombstones excluded)."""
        searcher = self._index.searcher()
        counts: dict[DocType, int] = {}
        for doc_type in DocType:
            query = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, self._kind_filter(doc_type)),
                    (tantivy.Occur.Must, self._live_filter()),
                ]
            )
            counts[doc_type] = _count(searcher.search(query, limit=1, count=True))
        return counts

    async def live_ids(self, doc_type: DocType) -> set[int]:
        """Ids of every searchable document of ``doc_type`` (reindex: what to sweep)."""
        return await asyncio.to_thread(self._live_ids_sync, doc_type)

    def _live_ids_sync(self, doc_type: DocType) -> set[int]:
        searcher = self._index.searcher()
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, self._kind_filter(doc_type)),
                (tantivy.Occur.Must, self._live_filter()),
            ]
        )
        total = _count(searcher.search(query, limit=1, count=True))
        if total == 0:
            return set()
        hits = searcher.search(query, limit=total, count=False).hits
        return {int(_first(searcher.doc(address), "doc_id", 0)) for _, address in hits}

    async def search(
        self, request: SearchRequest, *, exclude: Collection[DocKey] = (), now_ms: int
    ) -> SearchPage:
        """One page of live documents matching ``request``, best first, minus ``exclude``.

        Raises :class:`SearchInvalidArgument` (``SEARCH_INVALID_QUERY``) for a query over
        the limits of :mod:`services.search.query`.
        """
        return await asyncio.to_thread(self._search_sync, request, list(exclude), now_ms)

    def _kind_filter(self, doc_type: DocType) -> tantivy.Query:
        return tantivy.Query.const_score_query(
            tantivy.Query.term_query(self._schema, "kind", int(doc_type)), 0.0
        )

    def _live_filter(self) -> tantivy.Query:
        return tantivy.Query.const_score_query(
            tantivy.Query.term_query(self._schema, "live", True), 0.0
        )

    def build_query(
        self, request: SearchRequest, exclude: Collection[DocKey] = ()
    ) -> tuple[tantivy.Query, tantivy.Query] | None:
        """The engine query for ``request`` and the query that marks highlights, or None
        when the text holds no term (nothing can match).

        Built from the analysed terms (:mod:`services.search.query`), never by parsing the
        user's text; the visibility filter (live documents of the requested type, minus
        ``exclude``) is part of every query and no user text can change it. Raises
        :class:`SearchInvalidArgument` (``SEARCH_INVALID_QUERY``) for a query over the
        limits, or one the engine refuses to build.
        """
        analysed = analyse_query(request.text)
        if not analysed.clauses:
            return None
        fields = {name: FIELD_BOOSTS[name] for name in SEARCHED_FIELDS[request.type]}
        try:
            clauses = [
                (tantivy.Occur.Must, clause_query(self._schema, clause, fields))
                for clause in analysed.clauses
            ]
            clauses.append((tantivy.Occur.Must, self._live_filter()))
            if request.type is not None:
                clauses.append((tantivy.Occur.Must, self._kind_filter(request.type)))
            if exclude:
                hidden = [key_text(key) for key in exclude]
                clauses.append(
                    (
                        tantivy.Occur.MustNot,
                        tantivy.Query.term_set_query(self._schema, "key", hidden),
                    )
                )
            marks = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, field, term))
                    for term in analysed.highlight_terms
                    for field in TEXT_FIELDS
                ]
            )
            return tantivy.Query.boolean_query(clauses), marks
        except ValueError as exc:
            # Defensive: the terms come from our analyzers, but whatever the engine refuses
            # to build from a user's text is that text's fault, not the index's.
            raise SearchInvalidArgument(
                Reason.INVALID_QUERY,
                f"the search query cannot be searched ({exc})",
                metadata={"field": "query"},
            ) from exc

    def recency_bonus(self, utime_ms: int, now_ms: int) -> float:
        """Score added for an update within the :data:`RECENCY_WINDOWS`."""
        return sum(
            self._recency_boost * share
            for window_ms, share in RECENCY_WINDOWS
            if utime_ms >= now_ms - window_ms
        )

    def _search_sync(
        self, request: SearchRequest, exclude: list[DocKey], now_ms: int
    ) -> SearchPage:
        built = self.build_query(request, exclude)
        if built is None:
            return SearchPage(hits=[], total=0)
        query, highlight_query = built
        searcher = self._index.searcher()
        # Rescoring window: the best RESCORE_WINDOW by relevance (more for deeper pages)
        # are re-ranked with the recency bonus; the page is cut from that order.
        window = min(MAX_RESULT_WINDOW, max(RESCORE_WINDOW, request.offset + request.limit))
        result = searcher.search(query, limit=window, count=True)
        ranked = [
            (score + self.recency_bonus(int(_first(doc, "utime", 0)), now_ms), rank, doc)
            for rank, (score, doc) in enumerate(
                (score, searcher.doc(address)) for score, address in result.hits
            )
        ]
        ranked.sort(key=lambda item: (-item[0], item[1]))
        page = ranked[request.offset : request.offset + request.limit]
        generators: dict[str, tantivy.SnippetGenerator] = {}

        def marked(doc: tantivy.Document, field: str, whole: bool) -> str:
            text = str(_first(doc, field, ""))
            if not text:
                return ""
            limit = len(text) if whole else SNIPPET_CHARS
            generator = generators.get(field)
            if generator is None:
                generator = tantivy.SnippetGenerator.create(
                    searcher, highlight_query, self._schema, field
                )
                generators[field] = generator
            generator.set_max_num_chars(len(text.encode("utf-8")) + 1 if whole else SNIPPET_CHARS)
            snippet = generator.snippet_from_doc(doc)
            ranges = [(r.start, r.end) for r in snippet.highlighted()]
            if not ranges:
                return excerpt(text, limit)
            return highlight(snippet.fragment(), ranges)

        hits: list[SearchHit] = []
        for score, _, doc in page:
            doc_type = DocType(int(_first(doc, "kind", DocType.ARTICLE)))
            title_field, text_field = (
                ("title", "body") if doc_type is DocType.ARTICLE else ("nickname", "about")
            )
            hits.append(
                SearchHit(
                    key=DocKey(doc_type, int(_first(doc, "doc_id", 0))),
                    score=float(score),
                    title=str(_first(doc, title_field, "")),
                    title_html=marked(doc, title_field, whole=True),
                    snippet_html=marked(doc, text_field, whole=False),
                    author_id=int(_first(doc, "author_id", 0)),
                    author_name=str(_first(doc, "author", "")),
                    utime_ms=int(_first(doc, "utime", 0)),
                )
            )
        return SearchPage(hits=hits, total=_count(result))

    async def close(self) -> None:
        """Wait for background merges, release the writer's lock and the thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._writer.wait_merging_threads)
        self._write_thread.shutdown(wait=True)
        logger.info("search index closed", extra={"path": str(self.path)})

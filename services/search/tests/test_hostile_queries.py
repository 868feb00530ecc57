"""Hostile queries against the real embedded index: each one answers results or a clean
``SEARCH_INVALID_QUERY``, never an engine error; no text reaches the hidden fields; a
withdrawn article is never returned, whatever the text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import tantivy

from services.search.domain import (
    Change,
    DocKey,
    DocType,
    Removal,
    SearchPage,
    SearchRequest,
    article_doc,
    user_doc,
)
from services.search.errors import Reason, SearchInvalidArgument
from services.search.index import TantivySearchIndex
from services.search.query import MAX_QUERY_TERMS, Clause, analyse_query
from services.search.service import BatchedIndexWriter, SearchService
from services.search.tests.hostile import HOSTILE_QUERIES, hostile_queries

NOW = 1_800_000_000_000
WITHDRAWN = DocKey(DocType.ARTICLE, 1)
# The withdrawn article's text names every hidden field and value a query might try.
WITHDRAWN_TITLE = "live false status 3 key a 1 kind doc_id title withdrawn secret"


class TombstonesKeepTheirText(TantivySearchIndex):
    """An index whose tombstones keep a text field: only the visibility filter can hide
    them, which is what the tests below must prove (the real tombstones have no text)."""

    def _document(self, change: Change) -> tantivy.Document:
        doc = super()._document(change)
        if isinstance(change, Removal):
            doc.add_text("title", WITHDRAWN_TITLE)
            doc.add_text("title_s", WITHDRAWN_TITLE)
        return doc


async def _service(index: TantivySearchIndex) -> tuple[SearchService, BatchedIndexWriter]:
    writer = BatchedIndexWriter(index, commit_interval_s=0.02)
    writer.start()
    svc = SearchService(index, writer, clock=lambda: NOW)
    await svc.put_article(
        article_doc(
            article_id=WITHDRAWN.id,
            title=WITHDRAWN_TITLE,
            body="token bucket 微服务",
            author_id=7,
            author_name="ann",
            utime_ms=NOW - 10,
        )
    )
    await svc.remove_article(WITHDRAWN.id, version=NOW)
    await svc.put_article(
        article_doc(
            article_id=2,
            title="Token bucket title: don't panic",
            body="限流算法 and rate limiting, key a:1",
            author_id=8,
            author_name="bob",
            utime_ms=NOW,
        )
    )
    await svc.put_user(user_doc(user_id=9, nickname="微服务 fan", about_me="live", utime_ms=NOW))
    return svc, writer


@pytest.fixture(params=[TantivySearchIndex, TombstonesKeepTheirText])
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SearchService]:
    """A service holding a withdrawn article, a live one and a user."""
    index = request.param(tmp_path / "index")
    svc, writer = await _service(index)
    yield svc
    await writer.stop()
    await index.close()


async def _outcome(
    svc: SearchService, query: str, doc_type: int = 0
) -> SearchPage | SearchInvalidArgument:
    """The page, or the client error refusing the query (any other error fails the test)."""
    try:
        return await svc.search(query, doc_type, 0, 10)
    except SearchInvalidArgument as refused:
        return refused


async def _keys(svc: SearchService, text: str, doc_type: int = 0) -> list[DocKey]:
    return [hit.key for hit in (await svc.search(text, doc_type, 0, 50)).hits]


@pytest.mark.parametrize(
    "query",
    [
        "live:false",
        "live:true OR live:false",
        "status:3",
        'key:"a:1"',
        "key:a*",
        "kind:1",
        "doc_id:1",
        "doc_id:[0 TO 10]",
        "title:*",
        "*",
        "withdrawn",
        "secret",
        '"withdrawn secret"',
        "title:withdrawn",
        "title_s:secret",
    ],
)
@pytest.mark.parametrize("doc_type", [0, 1])
async def test_a_withdrawn_article_is_never_returned(
    service: SearchService, query: str, doc_type: int
) -> None:
    assert WITHDRAWN not in await _keys(service, query, doc_type)


async def test_the_visibility_filter_is_in_every_built_query(tmp_path: Path) -> None:
    """Without the filter, a tombstone that kept its text would match: the test can fail."""
    index = TombstonesKeepTheirText(tmp_path / "index")
    svc, writer = await _service(index)
    try:
        searcher = index._index.searcher()
        words = tantivy.Query.term_query(index._schema, "title_s", "secret")
        unfiltered = [searcher.doc(a).get_first("doc_id") for _, a in searcher.search(words).hits]
        assert unfiltered == [WITHDRAWN.id]
        for doc_type in (None, DocType.ARTICLE):
            built = index.build_query(SearchRequest("secret", doc_type, 0, 10))
            assert built is not None
            assert searcher.search(built[0], count=True).hits == []
        assert await _keys(svc, "secret") == []
    finally:
        await writer.stop()
        await index.close()


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
async def test_hostile_queries_answer_results_or_invalid_argument(
    service: SearchService, query: str
) -> None:
    outcome = await _outcome(service, query)
    if isinstance(outcome, SearchInvalidArgument):
        assert outcome.reason == Reason.INVALID_QUERY
        assert outcome.message
    else:
        assert WITHDRAWN not in [hit.key for hit in outcome.hits]
        assert outcome.total == len(outcome.hits)


async def test_a_thousand_generated_queries_never_fail_the_engine(tmp_path: Path) -> None:
    index = TombstonesKeepTheirText(tmp_path / "index")
    svc, writer = await _service(index)
    outcomes = {"ok": 0, "invalid": 0}
    try:
        for query in hostile_queries(1000):
            for doc_type in (0, 1, 2):
                outcome = await _outcome(svc, query, doc_type)
                if isinstance(outcome, SearchInvalidArgument):
                    assert outcome.reason == Reason.INVALID_QUERY, query
                    outcomes["invalid"] += 1
                else:
                    assert WITHDRAWN not in [hit.key for hit in outcome.hits], query
                    outcomes["ok"] += 1
        # Ordinary searches still work afterwards.
        assert await _keys(svc, "token bucket") == [DocKey(DocType.ARTICLE, 2)]
    finally:
        await writer.stop()
        await index.close()
    # Both kinds of answer happened: the generator does reach the limits.
    assert outcomes["ok"] > 0
    assert outcomes["invalid"] > 0


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("title:*", [DocKey(DocType.ARTICLE, 2)]),  # the word "title"
        ("don't", [DocKey(DocType.ARTICLE, 2)]),
        ("DON'T PANIC", [DocKey(DocType.ARTICLE, 2)]),
        ("a:1", [DocKey(DocType.ARTICLE, 2)]),  # the phrase "a 1"
        ('"rate limiting"', [DocKey(DocType.ARTICLE, 2)]),
        ('"limiting rate"', []),
        ('"token bucket', [DocKey(DocType.ARTICLE, 2)]),  # a lone quote is punctuation
        ("token^ bucket~", [DocKey(DocType.ARTICLE, 2)]),
        ("token^100", []),  # the phrase "token 100", not a boost
        ("限流算法", [DocKey(DocType.ARTICLE, 2)]),
        ("微服务", [DocKey(DocType.USER, 9)]),
        ("token OR nothing", []),  # OR is a word, and every word must match
        ("+token -bucket", [DocKey(DocType.ARTICLE, 2)]),  # signs are punctuation
        ("tab\tand\nnewline token", []),
        ("{}[]()^~*?:\\/", []),  # no term: nothing matches
    ],
)
async def test_everything_but_words_and_phrases_is_text(
    service: SearchService, query: str, found: list[DocKey]
) -> None:
    assert await _keys(service, query) == found


def test_the_query_language_reads_words_and_phrases_only() -> None:
    def clauses(text: str) -> list[tuple[str, ...]]:
        return [clause.terms for clause in analyse_query(text).clauses]

    assert clauses("title:*") == [("titl",)]
    assert clauses("live:false") == [("live", "fals")]
    assert clauses("don't") == [("don", "t")]
    assert clauses('"rate limiting" buckets') == [("rate", "limit"), ("bucket",)]
    assert clauses('"微服务 grpc" 限流算法实现') == [
        ("微服务",),
        ("grpc",),
        ("限流算法",),
        ("流算法实",),
        ("算法实现",),
    ]
    assert clauses("一致性raft") == [("一致性",), ("raft",)]
    assert clauses("go go go") == [("go",)]
    assert clauses("*** ::: ()") == []
    assert Clause(("a", "b")).is_phrase
    assert not Clause(("a",)).is_phrase
    assert analyse_query("微服务 token").highlight_terms == ("微", "服", "务", "token")


def test_the_number_of_terms_is_bounded() -> None:
    assert analyse_query("w " * MAX_QUERY_TERMS).term_count == 1
    with pytest.raises(SearchInvalidArgument) as caught:
        analyse_query("w " * (MAX_QUERY_TERMS + 1))
    assert caught.value.reason == Reason.INVALID_QUERY
    assert caught.value.message.startswith("the search query has too many terms (65, at most 64)")
    assert caught.value.metadata == {"field": "query", "max_terms": "64"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("nul\x00", "control character (U+0000 at position 3)"),
        ("\x1b[31m", "control character (U+001B at position 0)"),
        ("lone \ud800", "control character (U+D800 at position 5)"),
        ("c1\x85", "control character (U+0085 at position 2)"),
    ],
)
async def test_control_characters_and_lone_surrogates_are_refused(
    service: SearchService, query: str, message: str
) -> None:
    with pytest.raises(SearchInvalidArgument) as caught:
        await service.search(query, 0, 0, 10)
    assert caught.value.reason == Reason.INVALID_QUERY
    assert message in caught.value.message

"""An index written with an older schema (here version 1: ``author_id`` stored, not indexed,
and no tags) is migrated when it is opened: every document, tombstones and versions
included, answers as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import tantivy

from services.search import index as index_module
from services.search.analysis import ANALYZER_NAME, SEARCH_ANALYZER_NAME
from services.search.domain import (
    DocKey,
    DocType,
    Removal,
    Upsert,
    Version,
    article_doc,
    user_doc,
)
from services.search.index import SEARCHED, TantivySearchIndex

NOW = 1_800_000_000_000
# The text fields of that schema.
OLD_TEXT_FIELDS = ("title", "body", "author", "nickname", "about")


def previous_schema() -> tantivy.Schema:
    """The schema before renames needed an author's articles by one term."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", stored=True, tokenizer_name="raw")
    builder.add_unsigned_field("kind", stored=True, indexed=True, fast=True)
    builder.add_boolean_field("live", stored=True, indexed=True, fast=True)
    builder.add_integer_field("version", stored=True)
    builder.add_integer_field("doc_id", stored=True)
    builder.add_integer_field("utime", stored=True, indexed=True, fast=True)
    builder.add_integer_field("author_id", stored=True)
    for name in OLD_TEXT_FIELDS:
        builder.add_text_field(name, stored=True, tokenizer_name=ANALYZER_NAME)
        builder.add_text_field(SEARCHED[name], stored=False, tokenizer_name=SEARCH_ANALYZER_NAME)
    return builder.build()


def entries(directory: Path) -> list[str]:
    """The names in ``directory``, sorted."""
    return sorted(entry.name for entry in directory.iterdir())


async def write_previous_index(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two articles (one withdrawn) and a user, written with the previous schema."""
    with monkeypatch.context() as patched:
        patched.setattr(index_module, "build_schema", previous_schema)
        old = TantivySearchIndex(path)
        await old.write(
            [
                Upsert(
                    article_doc(
                        article_id=1,
                        title="微服务架构",
                        body="服务网格与限流",
                        author_id=7,
                        author_name="安妮",
                        utime_ms=NOW,
                    ),
                    NOW + 1,
                ),
                Removal(DocKey(DocType.ARTICLE, 2), NOW + 2),
                Upsert(user_doc(user_id=7, nickname="安妮", about_me="写代码", utime_ms=NOW), NOW),
            ]
        )
        await old.close()
        del old


async def test_an_index_of_the_previous_schema_is_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index"
    await write_previous_index(path, monkeypatch)
    with pytest.raises(ValueError, match="schema does not match"):
        tantivy.Index(index_module.build_schema(), path=str(path), reuse=True)

    index = TantivySearchIndex(path)
    try:
        keys = [DocKey(DocType.ARTICLE, 1), DocKey(DocType.ARTICLE, 2), DocKey(DocType.USER, 7)]
        assert await index.versions(keys) == {
            keys[0]: Version(NOW + 1, removed=False),
            keys[1]: Version(NOW + 2, removed=True),
            keys[2]: Version(NOW, removed=False),
        }
        (article,) = await index.articles_by([7])
        assert (article.doc, article.version) == (
            article_doc(
                article_id=1,
                title="微服务架构",
                body="服务网格与限流",
                author_id=7,
                author_name="安妮",
                utime_ms=NOW,
            ),
            NOW + 1,
        )
        assert await index.nicknames([7, 8]) == {7: "安妮"}
        assert index.num_docs() == {DocType.ARTICLE: 1, DocType.USER: 1}
    finally:
        await index.close()
    assert entries(tmp_path) == ["index"]


async def test_a_migration_interrupted_after_moving_the_old_index_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index"
    await write_previous_index(path, monkeypatch)
    # A crash between the two renames: the old index moved aside, a half-built copy left.
    path.rename(tmp_path / "index.replaced")
    (tmp_path / "index.migrating").mkdir()
    (tmp_path / "index.migrating" / "junk").write_text("partial")

    index = TantivySearchIndex(path)
    try:
        assert index.num_docs() == {DocType.ARTICLE: 1, DocType.USER: 1}
        assert await index.live_versions(DocType.ARTICLE) == {1: NOW + 1}
    finally:
        await index.close()
    assert entries(tmp_path) == ["index"]

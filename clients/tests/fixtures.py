"""Pytest fixtures of the article service for its peers' tests (a root conftest plugin).

- ``article_address``: the real article service (``python -m services.article``) as a child
  process, once per test module, plaintext, on its own SQLite file and Redis database;
- ``author``: writes articles on it (:class:`~clients.tests.articles.ArticleAuthor`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clients.tests.articles import ArticleAuthor, article_process


@pytest.fixture(scope="module")
def article_address(
    tmp_path_factory: pytest.TempPathFactory, infra_dir: Path, redis_url: str, kafka_bootstrap: str
) -> Iterator[str]:
    """The real article service, once for the module."""
    data_dir = tmp_path_factory.mktemp("article-data")
    with article_process(data_dir, infra_dir, redis_url, kafka_bootstrap) as address:
        yield address


@pytest.fixture
async def author(article_address: str) -> AsyncIterator[ArticleAuthor]:
    """Writes articles on the real article service."""
    async with ArticleAuthor.at(article_address) as writer:
        yield writer

"""Tests of the composition root and settings: the process as ``make run`` starts it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from devstack.infra import ManagedProcess, free_port
from devstack.suite import grpc_serving
from kit.config import Mode
from kit.tests.process_env import process_env
from services.article.settings import ArticleSettings
from webook.article.v1 import article_pb2, article_pb2_grpc


def _env(**settings: str) -> dict[str, str]:
    return process_env("WEBOOK_ARTICLE_", **settings)


def test_settings_read_the_article_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOK_ARTICLE_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("WEBOOK_ARTICLE_KAFKA_BOOTSTRAP", "127.0.0.1:1234")
    monkeypatch.setenv("WEBOOK_ARTICLE_EVENT_BUFFER_SIZE", "7")
    monkeypatch.setenv("WEBOOK_ARTICLE_PEERS", '{"user": "127.0.0.1:1"}')
    settings = ArticleSettings()
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert (settings.kafka_bootstrap, settings.event_buffer_size) == ("127.0.0.1:1234", 7)
    assert settings.peers == {"user": "127.0.0.1:1"}


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("WEBOOK_ARTICLE_"):
            monkeypatch.delenv(key)
    # Mode itself defaults to prod, which needs TLS files; the other defaults are checked here.
    settings = ArticleSettings(mode=Mode.DEV)
    assert settings.database_url == "sqlite+aiosqlite:///.run/article.db"
    assert (settings.published_cache_ttl_seconds, settings.popular_published_cache_ttl_seconds) == (
        600,
        3600,
    )


@pytest.mark.integration
def test_migrate_and_serve_like_make_run(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str
) -> None:
    db = tmp_path / "nested" / "article.db"
    env = _env(
        database_url=f"sqlite+aiosqlite:///{db}",
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        metrics_port="-1",
        mode="test",
        etcd_endpoints="[]",
    )
    migrate = [sys.executable, "-m", "services.article", "migrate"]
    result = subprocess.run(migrate, env=env, capture_output=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"articles", "published_articles", "alembic_version_article"} <= tables

    port = free_port()
    env["WEBOOK_ARTICLE_GRPC_PORT"] = str(port)
    process = ManagedProcess(
        name="article",
        argv=[sys.executable, "-m", "services.article"],
        log_path=tmp_path / "article.log",
        ready=lambda: grpc_serving(f"127.0.0.1:{port}"),
        env=env,
    )
    process.start(timeout=30)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = article_pb2_grpc.ArticleServiceStub(channel)
            created = stub.Publish(
                article_pb2.PublishRequest(author_id=1, title="t", content="<p>x</p>"), timeout=5
            )
            read = stub.GetPublishedById(
                article_pb2.GetPublishedByIdRequest(id=created.id), timeout=5
            )
        assert read.article.title == "t"
    finally:
        process.stop(grace=15)
    assert process.process is not None
    assert process.process.returncode == 0, (tmp_path / "article.log").read_text()

"""Tests of the composition root and settings: the process as ``make run`` starts it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from clients.tests.articles import article_process
from devstack.infra import ManagedProcess, free_port
from devstack.suite import grpc_serving
from kit.config import Mode
from kit.tests.process_env import process_env
from services.interactive.settings import InteractiveSettings
from webook.article.v1 import article_pb2, article_pb2_grpc
from webook.interactive.v1 import interactive_pb2, interactive_pb2_grpc


def _env(**settings: str) -> dict[str, str]:
    return process_env("WEBOOK_INTERACTIVE_", **settings)


def test_settings_read_the_interactive_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOK_INTERACTIVE_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("WEBOOK_INTERACTIVE_READ_BATCH_SIZE", "50")
    monkeypatch.setenv("WEBOOK_INTERACTIVE_READ_CONSUMER_ENABLED", "false")
    settings = InteractiveSettings()
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert (settings.read_batch_size, settings.read_consumer_enabled) == (50, False)


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("WEBOOK_INTERACTIVE_"):
            monkeypatch.delenv(key)
    # Mode itself defaults to prod, which needs TLS files; the other defaults are checked here.
    settings = InteractiveSettings(mode=Mode.DEV)
    assert settings.database_url == "sqlite+aiosqlite:///.run/interactive.db"
    assert (settings.read_batch_size, settings.read_batch_wait_seconds) == (100, 1.0)
    assert settings.read_consumer_group == "interactive-read-counter"
    assert settings.local_cache_enabled is True
    assert (settings.local_counts_entries, settings.local_flags_entries) == (10_000, 50_000)
    assert settings.local_cache_max_age_seconds == 60.0
    assert (settings.article_timeout_seconds, settings.published_cache_ttl_seconds) == (0.5, 5.0)


@pytest.mark.integration
def test_migrate_and_serve_like_make_run(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str
) -> None:
    db = tmp_path / "nested" / "interactive.db"
    env = _env(
        database_url=f"sqlite+aiosqlite:///{db}",
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        metrics_port="-1",
        mode="test",
        etcd_endpoints="[]",
        kafka_session_timeout_ms="2000",
        kafka_heartbeat_interval_ms="500",
        read_consumer_group=f"test-main-{free_port()}",
    )
    migrate = [sys.executable, "-m", "services.interactive", "migrate"]
    result = subprocess.run(migrate, env=env, capture_output=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"interactives", "user_likes", "user_collects", "alembic_version_interactive"} <= tables

    port = free_port()
    env["WEBOOK_INTERACTIVE_GRPC_PORT"] = str(port)
    data_dir = tmp_path / "article-data"
    data_dir.mkdir()
    with article_process(data_dir, tmp_path, redis_url, kafka_bootstrap) as article:
        with grpc.insecure_channel(article) as channel:
            published = article_pb2_grpc.ArticleServiceStub(channel).Publish(
                article_pb2.PublishRequest(author_id=3, title="t", content="<p>c</p>"), timeout=10
            )
        env["WEBOOK_INTERACTIVE_PEERS"] = json.dumps({"article": article})
        process = ManagedProcess(
            name="interactive",
            argv=[sys.executable, "-m", "services.interactive"],
            log_path=tmp_path / "interactive.log",
            ready=lambda: grpc_serving(f"127.0.0.1:{port}"),
            env=env,
        )
        process.start(timeout=30)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = interactive_pb2_grpc.InteractiveServiceStub(channel)
                article_id = published.id
                stub.Like(
                    interactive_pb2.LikeRequest(biz="article", biz_id=article_id, uid=2), timeout=5
                )
                got = stub.Get(
                    interactive_pb2.GetRequest(biz="article", biz_id=article_id, uid=2), timeout=5
                )
            assert (got.intr.like_cnt, got.intr.liked) == (1, True)
        finally:
            process.stop(grace=15)
    assert process.process is not None
    log = (tmp_path / "interactive.log").read_text()
    assert process.process.returncode == 0, log
    assert "kafka partitions assigned" in log

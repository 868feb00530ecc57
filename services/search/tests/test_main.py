"""The process as ``make run`` and Kubernetes start it: settings, ``migrate``, ``serve`` across
a restart, and the offline ``reindex`` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from devstack.infra import ManagedProcess, free_port
from devstack.suite import grpc_serving
from kit.grpcx.cli import parse_command
from kit.tests.process_env import process_env
from services.search.__main__ import COMMANDS, build_runner, migrate, print_reindex
from services.search.settings import DEFAULT_DATA_DIR, SearchSettings, resolve_data_dir
from services.search.tests.sources import serving_sources
from webook.search.v1 import search_pb2, search_pb2_grpc


def _env(**settings: str) -> dict[str, str]:
    return process_env("WEBOOK_SEARCH_", **settings)


def test_settings_read_the_search_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOK_SEARCH_DATA_DIR", "/var/lib/webook/search")
    monkeypatch.setenv("WEBOOK_SEARCH_COMMIT_INTERVAL_SECONDS", "2")
    monkeypatch.setenv("WEBOOK_SEARCH_SYNC_CONSUMER_ENABLED", "false")
    settings = SearchSettings()
    assert resolve_data_dir(settings) == Path("/var/lib/webook/search")
    assert (settings.commit_interval_seconds, settings.sync_consumer_enabled) == (2.0, False)


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("", DEFAULT_DATA_DIR),
        ("sqlite+aiosqlite:////srv/run/search.db", Path("/srv/run/search-index")),
        ("sqlite+aiosqlite:///:memory:", DEFAULT_DATA_DIR),
        ("mysql+asyncmy://root@db:3306/webook", DEFAULT_DATA_DIR),
        ("not a url", DEFAULT_DATA_DIR),
    ],
)
def test_the_data_dir_defaults_beside_a_sqlite_database(
    monkeypatch: pytest.MonkeyPatch, database_url: str, expected: Path
) -> None:
    for key in list(os.environ):
        if key.startswith("WEBOOK_SEARCH_"):
            monkeypatch.delenv(key)
    settings = SearchSettings(database_url=database_url, mode="test")
    assert resolve_data_dir(settings) == expected


def test_the_command_line_has_reindex_and_its_own_migrate() -> None:
    command, _ = parse_command("search", build_runner, ["reindex"], commands=COMMANDS)
    assert command.run is print_reindex
    command, _ = parse_command("search", build_runner, ["migrate"], commands=COMMANDS)
    assert (command.run, command.traced) == (migrate, False)
    command, _ = parse_command("search", build_runner, [], commands=COMMANDS)
    assert command.name == "serve"


def test_migrate_is_a_no_op_that_succeeds(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "search"
    result = subprocess.run(
        [sys.executable, "-m", "services.search", "migrate"],
        env=_env(data_dir=str(data_dir), mode="test"),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert data_dir.is_dir()
    assert list(data_dir.iterdir()) == []
    assert b"nothing to migrate" in result.stdout + result.stderr


def _serve(tmp_path: Path, env: dict[str, str], port: int, name: str) -> ManagedProcess:
    env = {**env, "WEBOOK_SEARCH_GRPC_PORT": str(port)}
    return ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "services.search"],
        log_path=tmp_path / f"{name}.log",
        ready=lambda: grpc_serving(f"127.0.0.1:{port}"),
        env=env,
    )


def _search(port: int, query: str) -> list[tuple[int, int, str]]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = search_pb2_grpc.SearchServiceStub(channel).Search(
            search_pb2.SearchRequest(query=query), timeout=5
        )
    return [(hit.type, hit.id, hit.title_highlight) for hit in answer.hits]


async def _reindex(env: dict[str, str]) -> tuple[int | None, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.search",
        "reindex",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out, err


QUERIES = ("微服务", "限流算法", "token bucket", "安妮")


@pytest.mark.integration
async def test_the_index_survives_a_restart_and_reindex_runs_offline(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # The Kafka path is tested in test_grpc_api (the session's topics carry other tests'
    # articles, which would change these answers); here the input is the SyncService.
    env = _env(
        data_dir=str(data_dir),
        metrics_port="-1",
        mode="test",
        etcd_endpoints="[]",
        sync_consumer_enabled="false",
        reindex_when_empty="false",
    )
    port = free_port()
    first = _serve(tmp_path, env, port, "search-first")
    first.start(timeout=30)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            sync = search_pb2_grpc.SyncServiceStub(channel)
            for article_id, title, content in (
                (1, "微服务架构", "<p>服务发现</p>"),
                (2, "限流算法", "<p>token buckets</p>"),
                (3, "熔断", "<p>微服务的熔断与限流算法</p>"),
            ):
                sync.InputArticle(
                    search_pb2.InputArticleRequest(
                        article=search_pb2.ArticleDoc(
                            id=article_id, title=title, content=content, status=2, utime_ms=1000
                        )
                    ),
                    timeout=5,
                )
            sync.InputUser(
                search_pb2.InputUserRequest(user=search_pb2.UserDoc(id=7, nickname="安妮")),
                timeout=5,
            )
        before = {query: _search(port, query) for query in QUERIES}
        # The running service holds the index: an offline reindex refuses at once, clearly.
        code, out, err = await _reindex(env)
        assert code == 1
        assert b"in use by another process" in err
        assert b"Traceback" not in err + out
    finally:
        first.stop(grace=15)
    assert first.process is not None
    assert first.process.returncode == 0, (tmp_path / "search-first.log").read_text()
    assert all(before.values())
    assert before["微服务"][0][:2] == (search_pb2.DOC_TYPE_ARTICLE, 1)

    second = _serve(tmp_path, env, port, "search-second")
    second.start(timeout=30)
    try:
        after = {query: _search(port, query) for query in QUERIES}
    finally:
        second.stop(grace=15)
    assert after == before

    # Offline rebuild from the sources: article 2 is no longer published, 4 is new.
    async with serving_sources() as sources:
        sources.articles.publish(1, "微服务架构", "<p>服务发现</p>", 1000)
        sources.articles.publish(3, "熔断", "<p>微服务的熔断与限流算法</p>", 1000)
        sources.articles.publish(4, "漏桶限流算法", "<p>leaky bucket</p>", 2000)
        sources.users.add(7, "安妮", "", 1000)
        sources.tags.tag(4, 1, "令牌桶")
        code, out, err = await _reindex({**env, "WEBOOK_SEARCH_PEERS": json.dumps(sources.peers)})
    assert code == 0, err.decode()
    # Applied: article 4, its tags and the removal of 2; the others are already there at
    # their version.
    assert json.loads(out.decode().strip().splitlines()[-1]) == {
        "applied": 3,
        "articles": 3,
        "removed": 1,
        "tag_sets": 1,
        "users": 1,
    }
    third = _serve(tmp_path, env, port, "search-third")
    third.start(timeout=30)
    try:
        rebuilt = sorted(hit[1] for hit in _search(port, "限流算法"))
        tagged = sorted(hit[1] for hit in _search(port, "令牌桶"))
    finally:
        third.stop(grace=15)
    assert rebuilt == [3, 4]
    assert tagged == [4]

"""Fixtures of the ranking service's tests: real peers as processes and the real wiring.

- ``interactive_address``: the real interactive service (``python -m services.interactive``)
  as a child process, once per module, plaintext, on its own SQLite file and Redis database
  4, asking the real article service (``article_address``, clients/tests/fixtures.py)
  whether an article is published;
- ``serve_ranking``: starts ranking processes' runners (``build_runner``) on free ports with
  the given settings, stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from devstack.infra import free_port
from devstack.suite import Infra, migrate, service_process
from kit.config import Mode
from kit.grpcx.server import ServiceRunner
from services.ranking.__main__ import build_runner
from services.ranking.settings import RankingSettings
from webook.ranking.v1.ranking_pb2_grpc import RankingServiceStub

if TYPE_CHECKING:
    from webook.ranking.v1.ranking_pb2_grpc import RankingServiceAsyncStub

ServeRanking = Callable[..., Awaitable["RankingServiceAsyncStub"]]


@pytest.fixture(scope="module")
def interactive_address(
    tmp_path_factory: pytest.TempPathFactory,
    infra_dir: Path,
    redis_url: str,
    kafka_bootstrap: str,
    article_address: str,
) -> Iterator[str]:
    """The real interactive service, once for the module, asking the real article service."""
    data_dir = tmp_path_factory.mktemp("interactive-data")
    infra = Infra(
        redis_url=redis_url.rsplit("/", 1)[0] + "/4",
        etcd_endpoints=[],
        kafka_bootstrap=kafka_bootstrap,
        database_url=f"sqlite+aiosqlite:///{data_dir}",
        mode="test",
        pki=None,
    )
    migrate("interactive", infra, infra_dir)
    port = free_port()
    process = service_process(
        "interactive", infra, port, infra_dir, peers={"article": article_address}
    )
    process.start(timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
async def serve_ranking() -> AsyncIterator[ServeRanking]:
    """``await serve_ranking(**settings)``: a client of a new ranking replica."""
    runners: list[ServiceRunner] = []
    channels: list[grpc.aio.Channel] = []

    async def serve(**overrides: Any) -> RankingServiceAsyncStub:
        settings = RankingSettings(
            mode=Mode.TEST, grpc_port=0, metrics_port=-1, shutdown_grace=1.0, **overrides
        )
        runner = build_runner(settings)
        port = await runner.start()
        runners.append(runner)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return RankingServiceStub(channel)

    try:
        yield serve
    finally:
        for channel in channels:
            await channel.close(None)
        for runner in reversed(runners):
            await runner.stop()

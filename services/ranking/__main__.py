"""Composition root of the ranking service: ``python -m services.ranking [serve]``.

The ranking lives in Redis and in each replica's memory; there is no database. The job
reads the article and interactive services through the process's balanced channels
(:func:`kit.grpcx.process.wire_clients`); the shared process wiring is
:mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_clients
from kit.grpcx.server import ServiceRunner
from kit.redisx import create_redis
from services.ranking.grpc_api import RankingServicer
from services.ranking.job import RankingJob
from services.ranking.memory import LocalRanking, RankingRefresher
from services.ranking.peers import RemoteArticles, RemoteLikes
from services.ranking.settings import RankingSettings
from services.ranking.store import RedisRankingStore


def build_runner(settings: RankingSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The ranking process, not yet started: the memory copy warmed from Redis before
    serving and refreshed every live ``refresh_interval_seconds``; the job on ``RunRanking``
    with the live job settings of the moment."""
    runner = ServiceRunner("ranking", settings, **options)
    redis = create_redis(settings.redis_url, fallback_wait=settings.redis_fallback_wait_seconds)
    runner.on_close(lambda: redis.aclose(close_connection_pool=True))
    clients = wire_clients(runner, settings)
    now = runner.settings_in_force(settings)
    store = RedisRankingStore(redis)
    local = LocalRanking(ttl_ms=lambda: now().ttl_seconds * 1000)
    runner.start_before_serving(
        RankingRefresher(store, local, interval_s=lambda: now().refresh_interval_seconds)
    )
    job = RankingJob(
        RemoteArticles(clients, timeout_s=settings.peer_timeout_seconds),
        RemoteLikes(clients, timeout_s=settings.peer_timeout_seconds),
        store,
        local,
        lambda: now().job_config(),
    )
    runner.mount(RankingServicer(local, job))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("ranking", RankingSettings, build_runner))

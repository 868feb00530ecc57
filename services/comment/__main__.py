"""Composition root of the comment service: ``python -m services.comment [serve|migrate]``.

Comments live in SQL; the first page of each tree is cached in Redis. A new comment needs a
published article: the article service is asked (:mod:`services.comment.peers`).
"""

from __future__ import annotations

from typing import Unpack

from clients.article import PublishedArticleTargets
from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_backends, wire_clients
from kit.grpcx.server import ServiceRunner
from services.comment.grpc_api import CommentServicer
from services.comment.repository import SqlUnitOfWork
from services.comment.repository.cache import FirstPageCache
from services.comment.service import CommentService
from services.comment.settings import CommentSettings


def build_runner(settings: CommentSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The comment process, not yet started; build it inside a running event loop.

    Comment trees over SQL. The first page of each tree is cached in Redis for
    ``first_page_cache_ttl_seconds`` (live: read at each write) and dropped by any write to
    that tree.
    """
    runner = ServiceRunner("comment", settings, **options)
    backends = wire_backends(runner, settings)
    clients = wire_clients(runner, settings)
    targets = PublishedArticleTargets.from_settings(clients, settings)
    now = runner.settings_in_force(settings)
    cache = FirstPageCache(backends.redis, ttl_seconds=lambda: now().first_page_cache_ttl_seconds)
    service = CommentService(lambda: SqlUnitOfWork(backends.sessions, cache), targets=targets)
    runner.mount(CommentServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("comment", CommentSettings, build_runner))

"""Composition root of the comment service: ``python -m services.comment [serve|migrate]``.

Comments live in SQL with the first page of each tree cached in Redis; the command line is
:func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_backends
from kit.grpcx.server import ServiceRunner
from services.comment.grpc_api import CommentServicer
from services.comment.repository import SqlUnitOfWork
from services.comment.repository.cache import FirstPageCache
from services.comment.service import CommentService
from services.comment.settings import CommentSettings


def build_runner(settings: CommentSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The comment process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("comment", settings, **options)
    backends = wire_backends(runner, settings)
    cache = FirstPageCache(backends.redis, ttl_seconds=settings.first_page_cache_ttl_seconds)
    runner.mount(CommentServicer(CommentService(lambda: SqlUnitOfWork(backends.sessions, cache))))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("comment", CommentSettings, build_runner))

"""Composition root of the comment service: ``python -m services.comment [serve|migrate]``.

Comments live in SQL; the first page of each tree is cached in Redis.
"""

from __future__ import annotations

from kit.grpcx.cli import run_service
from kit.grpcx.process import Backends, backed_runner
from services.comment.grpc_api import CommentServicer
from services.comment.repository import SqlUnitOfWork
from services.comment.repository.cache import FirstPageCache
from services.comment.service import CommentService
from services.comment.settings import CommentSettings


def servicer(backends: Backends, settings: CommentSettings) -> CommentServicer:
    """Comment trees over SQL. The first page of each tree is cached in Redis for
    ``first_page_cache_ttl_seconds`` and dropped by any write to that tree."""
    cache = FirstPageCache(backends.redis, ttl_seconds=settings.first_page_cache_ttl_seconds)
    return CommentServicer(CommentService(lambda: SqlUnitOfWork(backends.sessions, cache)))


build_runner = backed_runner("comment", servicer)

if __name__ == "__main__":
    raise SystemExit(run_service("comment", CommentSettings, build_runner))

"""Composition root and command line of the sms process.

``python -m services.sms [serve]``  serve CodeService and SmsService, with the delivery worker
``python -m services.sms migrate``  apply the schema migrations
``python -m services.sms worker``   run only the delivery worker (scale delivery separately)
``python -m services.sms issue-token --caller NAME --templates T1,T2 [--ttl-days N] [--admin]``
                                    print a caller JWT signed with ``WEBOOK_SMS_CALLER_JWT_KEY``

Everything is configured by ``WEBOOK_SMS_*`` environment variables (:mod:`services.sms.settings`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.config import load_settings
from kit.grpcx.server import ServiceRunner
from kit.logging import configure_logging
from kit.migrations import upgrade
from kit.observability.tracing import configure_tracing
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.sms.auth import (
    CallerAuthenticator,
    CallerAuthInterceptor,
    StaticCaller,
    issue_caller_token,
)
from services.sms.code_service import CODE_CALLER, CodeService
from services.sms.domain import Caller, CodeRules
from services.sms.grpc_api import CodeServicer, SmsServicer
from services.sms.metrics import SmsMetrics, default_metrics
from services.sms.providers import ProviderChain, build_provider_chain
from services.sms.repository import RedisCodeStore, SqlUnitOfWork
from services.sms.settings import SmsSettings
from services.sms.sms_service import DeliveryPolicy, SmsService
from services.sms.worker import DeliveryWorker
from webook.code.v1 import code_pb2, code_pb2_grpc
from webook.sms.v1 import sms_pb2, sms_pb2_grpc

logger = logging.getLogger("services.sms")

SERVICE = "sms"


def _instance_id(settings: SmsSettings) -> str:
    if settings.instance_id:
        return settings.instance_id[:64]
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


@dataclass
class SmsApp:
    """Everything one sms process builds, with the resources to close at shutdown."""

    settings: SmsSettings
    engine: AsyncEngine
    redis: aioredis.Redis
    http: httpx.AsyncClient
    metrics: SmsMetrics
    chain: ProviderChain
    sms: SmsService
    codes: CodeService
    worker: DeliveryWorker

    async def close(self) -> None:
        """Release pools and clients."""
        await self.http.aclose()
        await self.redis.aclose(close_connection_pool=True)
        await self.engine.dispose()


def build_app(settings: SmsSettings, *, metrics: SmsMetrics | None = None) -> SmsApp:
    """Build the object graph of the sms service (no I/O happens until it is used)."""
    metrics = metrics or default_metrics()
    _ensure_sqlite_dir(settings.database_url)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    redis = create_redis(settings.redis_url)
    http = httpx.AsyncClient(
        timeout=max(p.timeout_s for p in settings.providers),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
    chain = build_provider_chain(
        settings.providers,
        health=settings.health,
        retry=settings.retry,
        http=http,
        redis=redis,
        metrics=metrics,
    )
    delivery = settings.delivery
    sms = SmsService(
        chain.provider,
        chain.failover.could_send,
        lambda: SqlUnitOfWork(sessions),
        DeliveryPolicy(
            max_numbers=settings.max_numbers,
            send_timeout_s=delivery.send_timeout_s,
            claim_ttl_s=delivery.claim_ttl_s,
            max_attempts=delivery.max_attempts,
            backoff_base_s=delivery.backoff_base_s,
            backoff_max_s=delivery.backoff_max_s,
        ),
        metrics,
        instance_id=_instance_id(settings),
    )
    code = settings.code
    codes = CodeService(
        RedisCodeStore(redis),
        sms,
        rules=CodeRules(
            ttl_s=code.ttl_s,
            resend_interval_s=code.resend_interval_s,
            max_attempts=code.max_attempts,
        ),
        templates=code.templates,
        hmac_key=settings.code_hmac_key.get_secret_value().encode(),
        metrics=metrics,
    )
    worker = DeliveryWorker(
        sms,
        poll_interval_s=delivery.poll_interval_s,
        batch_size=delivery.batch_size,
        concurrency=delivery.concurrency,
        gauge_interval_s=delivery.queue_gauge_interval_s,
    )
    return SmsApp(settings, engine, redis, http, metrics, chain, sms, codes, worker)


def caller_authenticator(settings: SmsSettings) -> CallerAuthenticator:
    """The SmsService caller check configured by ``callers`` and the JWT key."""
    return CallerAuthenticator(
        [
            StaticCaller(
                Caller(name, frozenset(c.templates), admin=c.admin), c.token.get_secret_value()
            )
            for name, c in settings.callers.items()
        ],
        jwt_key=settings.caller_jwt_key.get_secret_value(),
        audience=settings.caller_jwt_audience,
        reserved_names=(CODE_CALLER,),
    )


class SmsRunner(ServiceRunner):
    """The gRPC server of both services; starts the delivery worker once listening."""

    def __init__(self, app: SmsApp) -> None:
        super().__init__(
            SERVICE,
            app.settings,
            interceptors=[CallerAuthInterceptor(caller_authenticator(app.settings))],
        )
        self.app = app

    async def start(self) -> int:
        """Listen and serve; then start the worker (if enabled)."""
        port = await super().start()
        if self.app.settings.delivery.worker_enabled:
            self.app.worker.start()
        return port


def build_runner(settings: SmsSettings, *, metrics: SmsMetrics | None = None) -> SmsRunner:
    """The sms process: both servicers mounted, shutdown hooks registered."""
    app = build_app(settings, metrics=metrics)
    runner = SmsRunner(app)
    runner.add_service(
        code_pb2.DESCRIPTOR.services_by_name["CodeService"].full_name,
        code_pb2_grpc.add_CodeServiceServicer_to_server,
        CodeServicer(app.codes),
    )
    runner.add_service(
        sms_pb2.DESCRIPTOR.services_by_name["SmsService"].full_name,
        sms_pb2_grpc.add_SmsServiceServicer_to_server,
        SmsServicer(app.sms),
    )
    # The worker stops before the drain; the pools it uses close after it.
    runner.on_close(app.close)
    runner.on_shutdown(lambda: app.worker.stop(settings.shutdown_grace))
    return runner


async def _serve(settings: SmsSettings) -> None:
    # grpc.aio, redis and httpx bind to the running loop: build inside it.
    await build_runner(settings).serve()


async def _run_worker_only(settings: SmsSettings) -> None:
    app = build_app(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app.worker.start()
    try:
        await stop.wait()
    finally:
        await app.worker.stop(settings.shutdown_grace)
        await app.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.sms",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve CodeService and SmsService (default)")
    commands.add_parser("migrate", help="apply the schema migrations")
    commands.add_parser("worker", help="run only the asynchronous delivery worker")
    issue = commands.add_parser("issue-token", help="print a caller JWT")
    issue.add_argument("--caller", required=True)
    issue.add_argument("--templates", required=True, help="comma-separated template ids, or *")
    issue.add_argument("--ttl-days", type=float, default=30.0)
    issue.add_argument("--admin", action="store_true")
    return parser


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    settings = load_settings(SmsSettings)
    command = args.command or "serve"
    if command == "issue-token":
        token = issue_caller_token(
            settings.caller_jwt_key.get_secret_value(),
            args.caller,
            [t.strip() for t in args.templates.split(",") if t.strip()],
            ttl_s=args.ttl_days * 86400,
            audience=settings.caller_jwt_audience,
            admin=args.admin,
        )
        sys.stdout.write(token + "\n")
        return 0
    configure_logging(SERVICE, settings.log_level)
    if command == "migrate":
        _ensure_sqlite_dir(settings.database_url)
        upgrade(SERVICE, settings.database_url)
        logger.info("migrations applied")
        return 0
    tracing = configure_tracing(
        SERVICE, settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio
    )
    try:
        if command == "worker":
            asyncio.run(_run_worker_only(settings))
        else:
            asyncio.run(_serve(settings))
    finally:
        with contextlib.suppress(Exception):
            tracing.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

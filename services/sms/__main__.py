"""Composition root and command line of the sms process.

``python -m services.sms [serve]``  serve CodeService and SmsService, with the delivery worker
``python -m services.sms migrate``  apply the schema migrations
``python -m services.sms worker``   run only the delivery worker (scale delivery separately)
``python -m services.sms issue-token --caller NAME --templates T1,T2 [--ttl-days N] [--admin]``
                                    print a caller JWT signed with ``WEBOOK_SMS_CALLER_JWT_KEY``

Everything is configured by ``WEBOOK_SMS_*`` environment variables (:mod:`services.sms.settings`)
and optionally ``--env-file``; the command line is :func:`kit.grpcx.cli.run_service`. With
etcd, ``serve`` and ``worker`` also follow the live settings (provider weights, health
thresholds, retries): the provider chain is changed in place (:meth:`ProviderChain.apply`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import httpx

from kit.config import GrpcServiceSettings
from kit.grpcx.cli import Command, run_service
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.process import Backends
from kit.grpcx.server import Background, Registration, ServiceRunner, run_until_signal
from kit.liveconfig import live_settings_for
from services.sms.auth import (
    CallerAuthenticator,
    CallerAuthInterceptor,
    StaticCaller,
    issue_caller_token,
)
from services.sms.code_service import CODE_CALLER, CodeService
from services.sms.domain import Caller, CodeRules, PhoneRules
from services.sms.grpc_api import CodeServicer, SmsServicer
from services.sms.metrics import SmsMetrics, default_metrics
from services.sms.providers import ProviderChain, build_provider_chain
from services.sms.repository import RedisCodeStore, RedisDailyBudget, SqlUnitOfWork
from services.sms.settings import SmsSettings
from services.sms.sms_service import DeliveryPolicy, SmsService
from services.sms.worker import DeliveryWorker

SERVICE = "sms"


def _instance_id(settings: SmsSettings) -> str:
    if settings.instance_id:
        return settings.instance_id[:64]
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class SmsApp:
    """Everything one sms process builds, with the resources to close at shutdown."""

    settings: SmsSettings
    backends: Backends
    http: httpx.AsyncClient
    metrics: SmsMetrics
    chain: ProviderChain
    sms: SmsService
    codes: CodeService
    worker: DeliveryWorker

    async def close(self) -> None:
        """Release pools and clients."""
        await self.http.aclose()
        await self.backends.close()


def build_app(settings: SmsSettings, *, metrics: SmsMetrics | None = None) -> SmsApp:
    """Build the object graph of the sms service (no I/O happens until it is used)."""
    metrics = metrics or default_metrics()
    backends = Backends.open(settings)
    http = httpx.AsyncClient(
        timeout=max(p.timeout_s for p in settings.providers),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
    chain = build_provider_chain(
        settings.providers,
        health=settings.health,
        retry=settings.retry,
        http=http,
        redis=backends.redis,
        metrics=metrics,
        weights=settings.provider_weights,
    )
    delivery = settings.delivery
    phones = PhoneRules(allowed_countries=frozenset(settings.allowed_countries))
    sms = SmsService(
        chain.provider,
        chain.failover.could_send,
        lambda: SqlUnitOfWork(backends.sessions),
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
        phones=phones,
        budget=RedisDailyBudget(backends.redis, settings.daily_limit),
    )
    code = settings.code
    codes = CodeService(
        RedisCodeStore(backends.redis),
        sms,
        rules=CodeRules(
            ttl_s=code.ttl_s,
            resend_interval_s=code.resend_interval_s,
            max_attempts=code.max_attempts,
        ),
        templates=code.templates,
        hmac_key=settings.code_hmac_key.get_secret_value().encode(),
        metrics=metrics,
        phones=phones,
    )
    worker = DeliveryWorker(
        sms,
        poll_interval_s=delivery.poll_interval_s,
        batch_size=delivery.batch_size,
        concurrency=delivery.concurrency,
        gauge_interval_s=delivery.queue_gauge_interval_s,
    )
    return SmsApp(settings, backends, http, metrics, chain, sms, codes, worker)


def chain_follower(
    chain: ProviderChain,
) -> Callable[[GrpcServiceSettings, GrpcServiceSettings], None]:
    """A subscriber of the process's live settings carrying their changes into ``chain``."""

    def apply(old: GrpcServiceSettings, new: GrpcServiceSettings) -> None:
        # The live settings of an sms process are SmsSettings; the runner types them broadly.
        if isinstance(old, SmsSettings) and isinstance(new, SmsSettings):
            chain.apply(old, new)

    return apply


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


def build_runner(
    settings: SmsSettings,
    *,
    registration: Registration | None = None,
    interceptors: Sequence[ServerInterceptorBase] = (),
    metrics: SmsMetrics | None = None,
) -> ServiceRunner:
    """The sms process, not yet started: both servicers behind the caller check, and the
    delivery worker (if enabled) started once it serves and stopped before the drain."""
    app = build_app(settings, metrics=metrics)
    runner = ServiceRunner(
        SERVICE,
        settings,
        registration=registration,
        interceptors=[*interceptors, CallerAuthInterceptor(caller_authenticator(settings))],
    )
    runner.on_close(app.close)
    if runner.live is not None:
        runner.live.subscribe(chain_follower(app.chain))
    if settings.delivery.worker_enabled:
        stop = partial(app.worker.stop, settings.shutdown_grace)
        runner.start_after_serving(Background(app.worker.start, stop))
    runner.mount(CodeServicer(app.codes))
    runner.mount(SmsServicer(app.sms))
    return runner


async def run_worker(settings: SmsSettings, args: argparse.Namespace) -> None:
    """The ``worker`` command: only the delivery worker, until SIGTERM or SIGINT; it sends
    through the provider chain too, so it follows the live settings like ``serve``."""
    app = build_app(settings)
    live = live_settings_for(SERVICE, settings)
    if live is not None:
        live.subscribe(chain_follower(app.chain))

    async def start() -> None:
        if live is not None:
            await live.start()
        app.worker.start()

    async def stop() -> None:
        try:
            await app.worker.stop(settings.shutdown_grace)
        finally:
            await app.close()
            if live is not None:
                await live.stop()

    await run_until_signal(start, stop)


def issue_token_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``issue-token``."""
    parser.add_argument("--caller", required=True)
    parser.add_argument("--templates", required=True, help="comma-separated template ids, or *")
    parser.add_argument("--ttl-days", type=float, default=30.0)
    parser.add_argument("--admin", action="store_true")


def issue_token(settings: SmsSettings, args: argparse.Namespace) -> None:
    """The ``issue-token`` command: print a caller JWT signed with the configured key."""
    token = issue_caller_token(
        settings.caller_jwt_key.get_secret_value(),
        args.caller,
        [t.strip() for t in args.templates.split(",") if t.strip()],
        ttl_s=args.ttl_days * 86400,
        audience=settings.caller_jwt_audience,
        admin=args.admin,
    )
    sys.stdout.write(token + "\n")


COMMANDS: list[Command[SmsSettings]] = [
    Command("worker", "run only the asynchronous delivery worker", run_worker),
    Command(
        "issue-token",
        "print a caller JWT",
        issue_token,
        issue_token_arguments,
        logs=False,
        traced=False,
    ),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); the exit status."""
    return run_service(
        SERVICE, SmsSettings, build_runner, argv, commands=COMMANDS, description=__doc__
    )


if __name__ == "__main__":
    raise SystemExit(main())

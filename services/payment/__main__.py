"""Composition root of the payment service: ``python -m services.payment [serve|migrate]``.

Orders live in SQL; status changes are written with their ``PaymentStatusChanged`` event to
``payment_outbox`` in one transaction and published by the outbox relay, which runs once the
server serves (:mod:`kit.outbox`). WeChat Pay is called over HTTPS with the merchant key and
its answers and notifications verified with the platform key
(:mod:`services.payment.wechatpay`); the shared wiring is :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

import logging
from typing import Unpack

import httpx

from kit.config import Mode
from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_backends, wire_outbox_relay
from kit.grpcx.server import ServiceRunner
from services.payment.events import outbox_topic_specs
from services.payment.grpc_api import PaymentServicer
from services.payment.repository import SqlUnitOfWork, payment_outbox
from services.payment.service import PaymentService, ReconcileConfig
from services.payment.settings import PaymentSettings
from services.payment.wechatpay import (
    MerchantSigner,
    NotificationReader,
    PlatformVerifier,
    WechatPayClient,
    load_platform_key,
    load_private_key,
)


def build_runner(settings: PaymentSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The payment process, not yet started; build it inside a running event loop.

    Raises ``ValueError`` when the WeChat Pay keys are not configured or cannot be read.
    """
    missing = settings.missing_wechatpay()
    if missing:
        raise ValueError(f"the payment service needs {', '.join(missing)}")
    signer = MerchantSigner(
        settings.wechatpay_mchid,
        settings.wechatpay_merchant_serial,
        load_private_key(settings.wechatpay_merchant_private_key_file),
    )
    runner = ServiceRunner("payment", settings, **options)
    backends = wire_backends(runner, settings)
    now = runner.settings_in_force(settings)
    verifier = PlatformVerifier(
        settings.wechatpay_platform_serial,
        load_platform_key(settings.wechatpay_platform_key_file),
        max_age_s=lambda: now().notification_max_age_seconds,
    )
    # httpx logs every request's URL at INFO; ours carry order numbers only, but stay quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    http = httpx.AsyncClient(timeout=settings.wechatpay_timeout_seconds)
    runner.on_close(http.aclose)
    client = WechatPayClient(
        http,
        base_url=settings.wechatpay_base_url,
        appid=settings.wechatpay_appid,
        notify_url=settings.wechatpay_notify_url,
        signer=signer,
        verifier=verifier,
        refuse_emulator=settings.mode is Mode.PROD,
    )
    notifications = NotificationReader(
        verifier,
        settings.wechatpay_apiv3_key.get_secret_value().encode(),
        settings.wechatpay_mchid,
    )
    outbox = payment_outbox()
    wire_outbox_relay(
        runner,
        settings,
        backends.sessions,
        outbox,
        outbox_topic_specs(settings.kafka_topic_partitions),
    )
    service = PaymentService(
        lambda: SqlUnitOfWork(backends.sessions, outbox),
        client,
        notifications,
        reconcile_config=lambda: ReconcileConfig(
            after_ms=int(now().reconcile_after_seconds * 1000),
            batch_size=now().reconcile_batch_size,
        ),
    )
    runner.mount(PaymentServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("payment", PaymentSettings, build_runner))

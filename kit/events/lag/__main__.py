"""Composition root of the lag exporter: ``python -m kit.events.lag [--env-file FILE]``.

Reads :class:`~kit.events.lag.settings.LagExporterSettings` (``WEBOOK_LAGEXPORTER_*``),
configures JSON logging and tracing, serves ``/metrics`` on ``METRICS_HOST:METRICS_PORT``
and scrapes consumer-group lag from the brokers every ``INTERVAL_SECONDS`` until SIGTERM or
SIGINT (:class:`~kit.events.lag.exporter.LagExporter`). The brokers being away is not a
reason to exit: the exporter keeps serving its metrics and counts failed scrapes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace

from kit.config import load_settings
from kit.events.lag.exporter import KafkaOffsetReader, LagExporter
from kit.events.lag.settings import LagExporterSettings
from kit.grpcx.server import run_until_signal
from kit.logging import configure_logging
from kit.observability.metrics import MetricsEndpoint, serve_metrics
from kit.observability.tracing import configure_tracing

PROCESS = "lag-exporter"


def build_exporter(
    settings: LagExporterSettings, *, tracer_provider: trace.TracerProvider | None = None
) -> LagExporter:
    """The exporter of ``settings``, not started."""
    reader = KafkaOffsetReader(
        settings.kafka_bootstrap,
        security=settings.kafka_security,
        request_timeout_ms=settings.request_timeout_ms,
    )
    return LagExporter(
        reader,
        interval_s=settings.interval_seconds,
        group_prefixes=settings.group_prefixes,
        scrape_timeout_s=settings.scrape_timeout_seconds,
        tracer_provider=tracer_provider,
    )


async def serve(
    settings: LagExporterSettings, *, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """Serve ``/metrics`` and scrape until SIGTERM or SIGINT."""
    exporter = build_exporter(settings, tracer_provider=tracer_provider)
    endpoint: MetricsEndpoint | None = None

    async def start() -> None:
        nonlocal endpoint
        endpoint = serve_metrics(settings.metrics_port, settings.metrics_host)
        exporter.start()

    async def stop() -> None:
        await exporter.stop()
        if endpoint is not None:
            endpoint.close()

    await run_until_signal(start, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m kit.events.lag",
        description="Export the lag of Kafka consumer groups, read from the brokers.",
    )
    parser.add_argument(
        "--env-file", type=Path, help="dotenv file with WEBOOK_LAGEXPORTER_* settings"
    )
    args = parser.parse_args(argv)
    settings = load_settings(LagExporterSettings, env_file=args.env_file)
    configure_logging(PROCESS, settings.log_level)
    if settings.log_level.upper() != "DEBUG":
        # aiokafka logs an error at every connection attempt to a broker that is away,
        # once per scrape; the exporter logs the failure itself, once per state change.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    provider = configure_tracing(
        PROCESS, settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio
    )
    try:
        asyncio.run(serve(settings, tracer_provider=provider))
    finally:
        provider.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

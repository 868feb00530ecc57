"""OpenTelemetry tracing set-up.

Every process installs one ``TracerProvider`` named after its service. When an OTLP endpoint
is configured, spans are exported to it in batches; without one, spans are still created
(trace ids appear in logs and propagate to other services) but not exported.
W3C trace context is the propagation format everywhere.
"""

from __future__ import annotations

import logging

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)


def configure_tracing(service: str, otlp_endpoint: str = "") -> TracerProvider:
    """Install the global tracer provider for ``service``; returns it for shutdown."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"webook-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
        logger.info("exporting traces", extra={"otlp_endpoint": otlp_endpoint})
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    return provider

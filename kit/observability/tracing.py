"""OpenTelemetry tracing set-up.

Every process installs one ``TracerProvider`` named after its service (resource attributes
``service.name=webook-<service>``, ``service.namespace=webook`` and a
``service.instance.id`` unique to the process). When an OTLP endpoint is configured
(``*_OTLP_ENDPOINT``, e.g. ``http://otel-collector:4317``), spans are exported to it over
OTLP/gRPC in batches; without one, spans are still created (trace ids appear in logs and
propagate to other services) but not exported. W3C trace context is the propagation format
everywhere: HTTP headers (gateway), gRPC metadata (``kit.governance.tracing``) and Kafka
record headers (``kit.events.tracing``).

The global provider can be set once per process (an OpenTelemetry rule):
:func:`configure_tracing` in a composition root, :func:`install_span_processor` for code that
needs to see the spans of a process whose provider may already exist (tests).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)

SERVICE_NAMESPACE = "webook"


def service_resource(service: str) -> Resource:
    """The resource of a webook process: its service name, namespace and instance id."""
    return Resource.create(
        {
            "service.name": f"webook-{service}",
            "service.namespace": SERVICE_NAMESPACE,
            # Host name (the pod's in Kubernetes) and pid tell replicas apart; the random
            # part tells restarts apart.
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        }
    )


def otlp_processor(otlp_endpoint: str) -> SpanProcessor:
    """A batching processor exporting to ``otlp_endpoint`` over OTLP/gRPC.

    An ``http://`` endpoint is plaintext (an in-cluster collector); ``https://`` uses TLS.
    """
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(
        endpoint=otlp_endpoint, insecure=otlp_endpoint.startswith("http://")
    )
    logger.info("exporting traces", extra={"otlp_endpoint": otlp_endpoint})
    return BatchSpanProcessor(exporter)


def build_tracer_provider(service: str, otlp_endpoint: str = "") -> TracerProvider:
    """A provider for ``service``, exporting over OTLP/gRPC when ``otlp_endpoint`` is set."""
    provider = TracerProvider(resource=service_resource(service))
    if otlp_endpoint:
        provider.add_span_processor(otlp_processor(otlp_endpoint))
    return provider


def configure_tracing(service: str, otlp_endpoint: str = "") -> TracerProvider:
    """Install the global tracer provider for ``service``; returns it for shutdown.

    If the process already has an SDK provider, that one is kept (OpenTelemetry refuses a
    second) and returned, with the OTLP exporter added when an endpoint is configured.
    """
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        logger.warning(
            "a tracer provider is already installed; keeping it",
            extra={"resource": dict(current.resource.attributes)},
        )
        if otlp_endpoint:
            current.add_span_processor(otlp_processor(otlp_endpoint))
        return current
    provider = build_tracer_provider(service, otlp_endpoint)
    trace.set_tracer_provider(provider)
    return provider


def install_span_processor(processor: SpanProcessor, *, service: str) -> TracerProvider:
    """Send every span of this process to ``processor`` as well; returns the provider.

    Installs a provider for ``service`` (without exporter) if none is installed yet.
    """
    provider = configure_tracing(service)
    provider.add_span_processor(processor)
    return provider

"""OpenTelemetry tracing set-up.

Every process installs one ``TracerProvider`` named after its service (resource attributes
``service.name=webook-<service>``, ``service.namespace=webook`` and a
``service.instance.id`` unique to the process). When an OTLP endpoint is configured
(``*_OTLP_ENDPOINT``, e.g. ``http://otel-collector:4317``), spans are exported to it over
OTLP/gRPC in batches. W3C trace context is the propagation format everywhere: HTTP headers
(gateway), gRPC metadata (``kit.governance.tracing``) and Kafka record headers
(``kit.events.tracing``).

Spans are **recorded only when something consumes them** (:class:`ExportGatedSampler`):

- with no span processor (no OTLP endpoint, no test exporter), every span is a
  non-recording span. It still has a trace id (taken from the caller's context, or new) and
  its own span id, so log lines carry the trace id and the context propagates to other
  services, but no attributes, events or timings are kept: recording spans that nobody
  exports was the largest cost of the governance interceptors on the read path;
- once a span processor is added (:func:`configure_tracing` with an endpoint,
  :func:`install_span_processor`, or ``provider.add_span_processor`` on a provider built
  here), spans are sampled parent-based: a span whose parent was sampled (or not) follows
  it, so a trace is whole or absent across services; a root span is sampled with
  probability ``sample_ratio`` (by trace id, so every process decides alike).

**Unrecorded spans without the SDK** (:class:`UnrecordedSpans`): while an
:class:`ExportAwareTracerProvider` records nothing, the gRPC interceptors build the
non-recording span the SDK would build (same trace id, a new span id from the provider's id
generator, the same flags and trace state) directly, and parse and format the W3C
``traceparent`` themselves (:func:`parse_traceparent`, :func:`format_traceparent`) instead of
going through the propagator and ``Tracer.start_span``: that was a tenth of a cheap gRPC
call's CPU. Anything unusual (a ``tracestate``, a header not in the canonical version-00
form, another propagator, recording on) takes the regular OpenTelemetry path.

The sample ratio is a live setting (docs/configuration.md): :func:`set_trace_sample_ratio`
changes it in a running process (:meth:`ExportGatedSampler.set_ratio`).

The global provider can be set once per process (an OpenTelemetry rule):
:func:`configure_tracing` in a composition root, :func:`install_span_processor` for code that
needs to see the spans of a process whose provider may already exist (tests).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from collections.abc import Sequence
from typing import Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

logger = logging.getLogger(__name__)

SERVICE_NAMESPACE = "webook"


class ExportGatedSampler(Sampler):
    """Drops every span until recording is enabled, then samples parent-based by ratio.

    A dropped span is a non-recording span with a valid context (trace id of its parent or
    a new one, a new span id, the parent's trace state, the *not sampled* flag): enough for
    log correlation and propagation, at a fraction of a recorded span's cost.
    :class:`ExportAwareTracerProvider` enables recording when its first span processor is
    added. Tracers keep a reference to their provider's sampler, so switching here reaches
    the tracers that already exist.

    Args:
        ratio: probability in [0, 1] that a root span is sampled once recording is on.
    """

    def __init__(self, ratio: float = 1.0) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("the trace sample ratio must be within [0, 1]")
        self._ratio = ratio
        self._when_exported: Sampler = ParentBasedTraceIdRatio(ratio)
        self._active: Sampler = ALWAYS_OFF

    @property
    def ratio(self) -> float:
        """The probability that a root span is sampled once recording is on."""
        return self._ratio

    def set_ratio(self, ratio: float) -> None:
        """Sample root spans with probability ``ratio`` from now on.

        One attribute assignment each: a span being started meanwhile uses the old policy
        or the new one, never a mix.
        """
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("the trace sample ratio must be within [0, 1]")
        sampler = ParentBasedTraceIdRatio(ratio)
        recording = self.recording
        self._ratio = ratio
        self._when_exported = sampler
        if recording:
            self._active = sampler

    @property
    def recording(self) -> bool:
        """Whether spans may be recorded (a span processor consumes them)."""
        return self._active is self._when_exported

    def enable_recording(self) -> None:
        """Record (and sample) spans from now on."""
        self._active = self._when_exported

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """The active policy's decision (see the class docstring)."""
        return self._active.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """Names the active policy."""
        return f"ExportGatedSampler{{{self._active.get_description()}}}"


class ExportAwareTracerProvider(TracerProvider):
    """An SDK provider whose spans are recorded only once a span processor is added."""

    def __init__(self, *, resource: Resource, sample_ratio: float = 1.0) -> None:
        self.gate = ExportGatedSampler(sample_ratio)
        super().__init__(sampler=self.gate, resource=resource)

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        """Register ``span_processor`` and start recording spans for it."""
        super().add_span_processor(span_processor)
        self.gate.enable_recording()


def set_trace_sample_ratio(ratio: float, provider: trace.TracerProvider | None = None) -> bool:
    """Sample root spans of ``provider`` (the global one by default) with ``ratio`` from now on.

    ``False`` (and a warning) when the provider was not built here, so its sampler is not
    ours to change.
    """
    current = provider if provider is not None else trace.get_tracer_provider()
    gate = getattr(current, "gate", None)
    if not isinstance(gate, ExportGatedSampler):
        logger.warning(
            "cannot change the trace sample ratio of this tracer provider",
            extra={"provider": type(current).__name__},
        )
        return False
    if gate.ratio != ratio:
        gate.set_ratio(ratio)
        logger.info("trace sample ratio changed", extra={"trace_sample_ratio": ratio})
    return True


def records_spans(provider: trace.TracerProvider | None = None) -> bool:
    """Whether spans of ``provider`` (the global one by default) may be recorded.

    False only for an :class:`ExportAwareTracerProvider` without a span processor: code
    that does extra work for recorded spans alone (attributes, timings) can skip it.
    """
    current = provider if provider is not None else trace.get_tracer_provider()
    gate = getattr(current, "gate", None)
    return not isinstance(gate, ExportGatedSampler) or gate.recording


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


def build_tracer_provider(
    service: str, otlp_endpoint: str = "", *, sample_ratio: float = 1.0
) -> ExportAwareTracerProvider:
    """A provider for ``service``, exporting over OTLP/gRPC when ``otlp_endpoint`` is set.

    Without an endpoint its spans are non-recording until a span processor is added; with
    one, root spans are sampled with probability ``sample_ratio`` and children follow.
    """
    provider = ExportAwareTracerProvider(
        resource=service_resource(service), sample_ratio=sample_ratio
    )
    if otlp_endpoint:
        provider.add_span_processor(otlp_processor(otlp_endpoint))
    return provider


def configure_tracing(
    service: str, otlp_endpoint: str = "", *, sample_ratio: float = 1.0
) -> TracerProvider:
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
    provider = build_tracer_provider(service, otlp_endpoint, sample_ratio=sample_ratio)
    trace.set_tracer_provider(provider)
    return provider


def install_span_processor(processor: SpanProcessor, *, service: str) -> TracerProvider:
    """Send every span of this process to ``processor`` as well; returns the provider.

    Installs a provider for ``service`` (without exporter) if none is installed yet. This is
    how tests record spans: adding the processor turns recording on (every root sampled).
    """
    provider = configure_tracing(service)
    provider.add_span_processor(processor)
    return provider


# W3C Trace Context, version 00: "00-" 32 hex digits "-" 16 hex digits "-" 2 hex digits, in
# lower case. A compiled full match of fixed-width fields is cheaper than slicing and
# checking each field's characters (int(x, 16) alone would accept "+", "_" and upper case).
_TRACEPARENT_V00: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
TRACEPARENT_V00_LENGTH: Final = 55
_INVALID_TRACE_ID: Final = "0" * 32
_INVALID_SPAN_ID: Final = "0" * 16
_UNSAMPLED: Final = TraceFlags(TraceFlags.DEFAULT)
_UNSAMPLED_RANDOM: Final = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)


def parse_traceparent(header: str) -> tuple[int, int, TraceFlags] | None:
    """The trace id, parent span id and flags of a version-00 ``traceparent``; None if invalid.

    Strict W3C Trace Context version 00: exactly ``00-<32 hex>-<16 hex>-<2 hex>``, lower-case
    hex, neither id all zeros. Other versions and the lenient forms OpenTelemetry's
    propagator accepts (surrounding blanks, a future version's extra fields) are not parsed
    here: callers hand any header that is not exactly 55 characters long and starting with
    ``00-`` to the propagator.
    """
    match = _TRACEPARENT_V00.fullmatch(header)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _INVALID_TRACE_ID or span_id == _INVALID_SPAN_ID:
        return None
    return int(trace_id, 16), int(span_id, 16), TraceFlags(int(flags, 16))


def is_canonical_traceparent(header: str) -> bool:
    """Whether :func:`parse_traceparent` decides ``header`` exactly as the propagator would.

    True for 55-character headers of version 00, the form every W3C implementation sends;
    for those the strict parse and OpenTelemetry's agree (valid or not).
    """
    return len(header) == TRACEPARENT_V00_LENGTH and header.startswith("00-")


def format_traceparent(context: SpanContext) -> str:
    """The version-00 ``traceparent`` of ``context`` (as the W3C propagator writes it)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


class UnrecordedSpans:
    """Non-recording spans of an :class:`ExportAwareTracerProvider` that records nothing.

    :meth:`provider` says whether the shortcut applies right now: the provider (``None``: the
    global one, looked up on each call so that a provider installed later is seen) is an
    :class:`ExportAwareTracerProvider` whose sampler drops everything, and the global
    propagator is the W3C one. Then :meth:`span` builds the span ``Tracer.start_span``
    would: the parent's trace id or a new one, a new span id, the *not sampled* flag (plus
    *random trace id* as the SDK sets it), the parent's trace state. The SDK's optional
    internal span metrics (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``) do not count these
    spans.
    """

    __slots__ = ("_provider",)

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider

    def provider(self) -> ExportAwareTracerProvider | None:
        """The provider whose spans :meth:`span` may build now, or None (use the SDK)."""
        current = self._provider if self._provider is not None else trace.get_tracer_provider()
        if (
            type(current) is ExportAwareTracerProvider
            and not current.gate.recording
            # A disabled SDK (OTEL_SDK_DISABLED) hands out no-op tracers instead.
            and not getattr(current, "_disabled", False)
            and type(propagate.get_global_textmap()) is TraceContextTextMapPropagator
        ):
            return current
        return None

    @staticmethod
    def span(
        provider: ExportAwareTracerProvider,
        parent_trace_id: int | None,
        parent_flags: int = 0,
        parent_state: TraceState | None = None,
    ) -> NonRecordingSpan:
        """The unsampled span the SDK would start under a parent (``None``: a new trace)."""
        ids = provider.id_generator
        if parent_trace_id is None:
            trace_id = ids.generate_trace_id()
            random_id = ids.is_trace_id_random()
            parent_state = None
        else:
            trace_id = parent_trace_id
            random_id = bool(parent_flags & TraceFlags.RANDOM_TRACE_ID)
        return NonRecordingSpan(
            SpanContext(
                trace_id,
                ids.generate_span_id(),
                is_remote=False,
                trace_flags=_UNSAMPLED_RANDOM if random_id else _UNSAMPLED,
                trace_state=parent_state,
            )
        )

    @classmethod
    def child(
        cls, provider: ExportAwareTracerProvider, parent: SpanContext | None
    ) -> NonRecordingSpan:
        """The unsampled span the SDK would start under ``parent`` (invalid or None: a root)."""
        if parent is None or not parent.is_valid:
            return cls.span(provider, None)
        return cls.span(provider, parent.trace_id, parent.trace_flags, parent.trace_state)

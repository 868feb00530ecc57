"""W3C trace context carried in Kafka record headers.

The producer injects the context of its publish span into the record's headers with the
global propagator (``traceparent``/``tracestate``), the consumer extracts it and links its
batch span to every producer span, so one trace reaches from the gRPC request that caused
an event to the batch that applied it. When the publish span could not be recorded the
producer starts none and writes the current span's context itself
(:func:`current_trace_headers`); a consumer whose batch span is not recorded reads no
headers at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter

from kit.observability.tracing import format_traceparent, parse_traceparent, records_spans

Headers = Sequence[tuple[str, bytes]]

TRACER_NAME = "kit.events"
# The SDK keeps at most 128 links per span by default; more would be dropped silently.
MAX_LINKS = 128


class _HeaderGetter(Getter[Headers]):
    """Reads text-map keys from Kafka's ``[(key, bytes)]`` headers."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [
            value.decode("utf-8", "replace")
            for name, value in carrier
            if name.lower() == key and value is not None
        ]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _HeaderGetter()


def inject_headers(context: Context | None = None) -> list[tuple[str, bytes]]:
    """Headers carrying ``context`` (the current one by default)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return [(key, value.encode("utf-8")) for key, value in carrier.items()]


def current_trace_headers(span_context: trace.SpanContext | None = None) -> list[tuple[str, bytes]]:
    """``traceparent`` (and ``tracestate``) of ``span_context``, by default the current span's.

    Written directly in the W3C format, without the propagator or a span of our own; no
    headers for an invalid context (no span in progress).
    """
    if span_context is None:
        span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return []
    headers = [("traceparent", format_traceparent(span_context).encode("ascii"))]
    if span_context.trace_state:
        headers.append(("tracestate", span_context.trace_state.to_header().encode("utf-8")))
    return headers


def extract_context(headers: Headers | None) -> Context:
    """The context a producer injected into ``headers`` (empty if none)."""
    return propagate.extract(list(headers or ()), getter=_GETTER)


def producer_links(all_headers: Iterable[Headers | None]) -> list[trace.Link]:
    """Links to the distinct producer spans found in the headers, at most :data:`MAX_LINKS`."""
    return _distinct_links(
        trace.get_current_span(extract_context(headers)).get_span_context()
        for headers in all_headers
    )


def traceparent_links(traceparents: Iterable[str]) -> list[trace.Link]:
    """Links to the distinct producer spans named by version-00 ``traceparent`` values that
    events carry in their payload (a record of many events has one set of headers); empty or
    malformed values are skipped. At most :data:`MAX_LINKS`."""
    contexts = (
        trace.SpanContext(parsed[0], parsed[1], is_remote=True, trace_flags=parsed[2])
        for parsed in map(parse_traceparent, filter(None, traceparents))
        if parsed is not None
    )
    return _distinct_links(contexts)


def _distinct_links(contexts: Iterable[trace.SpanContext]) -> list[trace.Link]:
    links: list[trace.Link] = []
    seen: set[tuple[int, int]] = set()
    for span_context in contexts:
        ident = (span_context.trace_id, span_context.span_id)
        if not span_context.is_valid or ident in seen:
            continue
        seen.add(ident)
        links.append(trace.Link(span_context))
        if len(links) >= MAX_LINKS:
            break
    return links


def publish_trace_headers(
    topic: str, tracer: trace.Tracer, tracer_provider: trace.TracerProvider | None
) -> list[tuple[str, bytes]]:
    """The record headers of an event published now: a PRODUCER span's context.

    The span is started only when it could be recorded. With parent-based sampling (what
    :mod:`kit.observability.tracing` installs, and the SDK's default) it cannot be when its
    parent was not sampled, or when nothing records spans at all; the headers then carry the
    current span's context as it is (nothing if there is none), which is what an unrecorded
    span would have propagated but for its own span id: a consumer still links its batch to
    the request that published the event. Used by the buffered producer and the outbox.
    """
    parent = trace.get_current_span().get_span_context()
    if (parent.is_valid and not parent.trace_flags.sampled) or not records_spans(tracer_provider):
        return current_trace_headers(parent)
    with tracer.start_as_current_span(
        f"{topic} publish",
        kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    ):
        return inject_headers()

"""The shortcut for spans nobody records builds what the SDK and the W3C propagator would.

``parse_traceparent`` is checked against the W3C Trace Context vectors (version 00) and
against OpenTelemetry's propagator on every canonical-length header; ``UnrecordedSpans``
against ``Tracer.start_span`` of the same provider with recording off.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from kit.observability.tracing import (
    ExportAwareTracerProvider,
    UnrecordedSpans,
    build_tracer_provider,
    format_traceparent,
    is_canonical_traceparent,
    parse_traceparent,
)

PROPAGATOR = TraceContextTextMapPropagator()
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"

VALID = [
    (f"00-{TRACE_ID}-{SPAN_ID}-01", 1),  # the spec's example, sampled
    (f"00-{TRACE_ID}-{SPAN_ID}-00", 0),
    (f"00-{TRACE_ID}-{SPAN_ID}-02", 2),  # random trace id (level 2)
    (f"00-{TRACE_ID}-{SPAN_ID}-03", 3),
    (f"00-{TRACE_ID}-{SPAN_ID}-ff", 0xFF),  # unknown flags are kept
    ("00-00000000000000000000000000000001-0000000000000001-01", 1),
]
CANONICAL_INVALID = [
    f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",  # upper-case hex
    f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
    f"00-{TRACE_ID}-{SPAN_ID}-0A",
    f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",  # not hex
    f"00-{TRACE_ID[:-1]}_-{SPAN_ID}-01",  # int(..., 16) would accept these three
    f"00-+{TRACE_ID[1:]}-{SPAN_ID}-01",
    f"00- {TRACE_ID[1:]}-{SPAN_ID}-01",
    f"00-{TRACE_ID}_{SPAN_ID}-01",  # wrong separators
    f"00-{TRACE_ID}-{SPAN_ID}_01",
    f"00-{TRACE_ID[:-1]}-{SPAN_ID}0-01",  # field lengths shifted
]
NOT_CANONICAL = [
    "",
    f"01-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like",  # a future version
    f"01-{TRACE_ID}-{SPAN_ID}-01",
    f"ff-{TRACE_ID}-{SPAN_ID}-01",  # forbidden version
    f"00-{TRACE_ID}-{SPAN_ID}-01-extra",  # version 00 has exactly four fields
    f" 00-{TRACE_ID}-{SPAN_ID}-01",  # blanks the propagator tolerates
    f"00-{TRACE_ID}-{SPAN_ID}-1",
    f"00-{TRACE_ID}-{SPAN_ID}",
]


def propagated(header: str) -> SpanContext | None:
    """What OpenTelemetry's W3C propagator reads from ``header`` (None: no valid parent)."""
    context = trace.get_current_span(PROPAGATOR.extract({"traceparent": [header]}))
    span_context = context.get_span_context()
    return span_context if span_context.is_valid else None


@pytest.mark.parametrize(("header", "flags"), VALID)
def test_valid_version_00_headers_are_parsed_as_the_propagator_reads_them(
    header: str, flags: int
) -> None:
    assert is_canonical_traceparent(header)
    parsed = parse_traceparent(header)
    expected = propagated(header)
    assert parsed is not None
    assert expected is not None
    assert parsed == (expected.trace_id, expected.span_id, flags)
    assert parsed[2] == expected.trace_flags


@pytest.mark.parametrize("header", CANONICAL_INVALID)
def test_invalid_canonical_headers_are_refused_as_the_propagator_refuses_them(
    header: str,
) -> None:
    assert is_canonical_traceparent(header)
    assert parse_traceparent(header) is None
    assert propagated(header) is None


@pytest.mark.parametrize("header", NOT_CANONICAL)
def test_other_forms_are_left_to_the_propagator(header: str) -> None:
    assert not is_canonical_traceparent(header)
    assert parse_traceparent(header) is None


def test_the_header_is_formatted_as_the_propagator_writes_it() -> None:
    for flags in (0, 1, 2, 3):
        context = SpanContext(
            int(TRACE_ID, 16), 0xB7, is_remote=False, trace_flags=TraceFlags(flags)
        )
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, trace.set_span_in_context(NonRecordingSpan(context)))
        assert format_traceparent(context) == carrier["traceparent"]
        assert parse_traceparent(carrier["traceparent"]) == (context.trace_id, 0xB7, flags)


@pytest.fixture
def w3c_propagator() -> Iterator[None]:
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    yield
    propagate.set_global_textmap(previous)


def parent(flags: int, state: TraceState | None = None) -> SpanContext:
    return SpanContext(
        int(TRACE_ID, 16),
        int(SPAN_ID, 16),
        is_remote=True,
        trace_flags=TraceFlags(flags),
        trace_state=state,
    )


@pytest.mark.parametrize(
    "caller",
    [
        None,
        parent(0),
        parent(1),
        parent(2),
        parent(3, TraceState([("vendor", "v1"), ("other", "x")])),
        SpanContext(0, 0, is_remote=True),  # invalid: a root
    ],
)
@pytest.mark.usefixtures("w3c_propagator")
def test_the_span_is_the_one_the_sdk_starts_when_nothing_records(
    caller: SpanContext | None,
) -> None:
    provider = build_tracer_provider("test")
    unrecorded = UnrecordedSpans(provider)
    assert unrecorded.provider() is provider
    context = Context() if caller is None else trace.set_span_in_context(NonRecordingSpan(caller))
    sdk_span = provider.get_tracer("test").start_span("x", context=context)
    span = UnrecordedSpans.child(provider, caller)
    ours, theirs = span.get_span_context(), sdk_span.get_span_context()
    assert not span.is_recording()
    assert not sdk_span.is_recording()
    assert ours.is_valid
    assert not ours.is_remote
    assert ours.trace_flags == theirs.trace_flags
    assert ours.trace_state == theirs.trace_state
    assert ours.span_id not in (theirs.span_id, int(SPAN_ID, 16))
    if caller is not None and caller.is_valid:
        assert ours.trace_id == theirs.trace_id == caller.trace_id
    else:
        assert ours.trace_id != theirs.trace_id  # both new


@pytest.mark.usefixtures("w3c_propagator")
def test_the_shortcut_stops_when_spans_are_recorded_or_another_propagator_is_set() -> None:
    provider = build_tracer_provider("test")
    unrecorded = UnrecordedSpans(provider)
    assert unrecorded.provider() is provider

    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
    assert unrecorded.provider() is None
    propagate.set_global_textmap(TraceContextTextMapPropagator())

    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert unrecorded.provider() is None
    assert UnrecordedSpans(TracerProvider()).provider() is None


def test_without_a_provider_the_global_one_is_looked_up_on_each_call() -> None:
    current = trace.get_tracer_provider()
    expected = (
        current
        if type(current) is ExportAwareTracerProvider
        and not current.gate.recording
        and type(propagate.get_global_textmap()) is TraceContextTextMapPropagator
        else None
    )
    assert UnrecordedSpans().provider() is expected

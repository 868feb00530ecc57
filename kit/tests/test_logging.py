"""kit.logging writes the same JSON lines as its straightforward first version, faster.

:func:`reference_line` is that first version's formatter (before the per-second timestamp,
the C-side scan for extra fields and the direct C encoder), with the rule added since that
fixed fields are never replaced (a colliding field is kept as ``extra_<name>``): every
optimisation must give byte-for-byte the same line for the same record. Lines with terminal
escape sequences are checked against the text written out by hand. Records get their time
from a clock the tests set (``logging``'s own ``time``), so the timestamp cache is tested
across seconds, minutes and years without sleeping.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import sys
import time
import types
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import uvicorn
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import kit.logging
from kit.logging import JsonFormatter, bind, configure_logging, log_context

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00AD6B7169203331  # leading zeros must be kept
# The access-log line's fields, as gateway.middleware.access_log passes them.
ACCESS_EXTRAS: dict[str, Any] = {
    "http_method": "GET",
    "route": "/articles/pub/{id}",
    "path": "/articles/pub/7",
    "status": 200,
    "duration_ms": 1.23,
    "request_id": "0123456789abcdef0123456789abcdef",
    "user_id": None,
}
_REFERENCE_RESERVED = set(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "color_message"}
)
_REFERENCE_FIXED = {"ts", "level", "service", "logger", "msg", "trace_id", "span_id", "exc"}


def reference_line(record: logging.LogRecord, service: str) -> str:
    """The line kit.logging's first JsonFormatter wrote for ``record``."""
    payload: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "service": service,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        payload["trace_id"] = f"{span_context.trace_id:032x}"
        payload["span_id"] = f"{span_context.span_id:016x}"
    for key, value in (log_context.get() or {}).items():
        payload[f"extra_{key}" if key in _REFERENCE_FIXED else key] = value
    for key, value in record.__dict__.items():
        if key not in _REFERENCE_RESERVED and not key.startswith("_"):
            payload[f"extra_{key}" if key in _REFERENCE_FIXED else key] = value
    if record.exc_info:
        payload["exc"] = logging.Formatter().formatException(record.exc_info)
    return json.dumps(payload, default=str, ensure_ascii=False)


class Records(logging.Handler):
    """Keeps every record a logger hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Clock:
    """Stands in for ``logging``'s ``time`` module: records are created at :attr:`now`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def time_ns(self) -> int:  # LogRecord's clock from Python 3.13
        return round(self.now * 1_000_000_000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_700_000_000.25)
    # Only logging's reference (the rest of it, e.g. strftime, still real): kit.logging and
    # everything else keep the real time module.
    real = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    patched = types.SimpleNamespace(**{**real, "time": fake.time, "time_ns": fake.time_ns})
    monkeypatch.setattr(logging, "time", patched)
    return fake


@pytest.fixture
def records() -> Iterator[Records]:
    """Records of the logger ``kit.tests.logging`` (not propagated: no other handler sees them)."""
    logger = logging.getLogger("kit.tests.logging")
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def unbound() -> Iterator[None]:
    """No fields bound in :data:`log_context` before or after the test."""
    token = log_context.set(None)
    yield
    log_context.reset(token)


class Unprintable:
    def __str__(self) -> str:
        return "<unprintable ünïcode>"


def _log_every_kind(logger: logging.Logger) -> None:
    logger.info("%s %s %d", "GET", "/articles/pub/7", 200, extra=ACCESS_EXTRAS)
    logger.info("plain, no arguments")
    logger.warning("percent %% kept, dict args %(a)s", {"a": 1})
    logger.debug('unicode 文章 \u2028 and "quotes" \\ and \x00 control', extra={"名字": "值"})
    logger.error(
        "odd values",
        extra={
            "a_float": 0.1 + 0.2,
            "nan": float("nan"),
            "inf": float("-inf"),
            "big": 2**70,
            "flag": True,
            "nested": {"list": [1, "two", None, {"three": 3.0}], "tuple": (1, 2)},
            "when": datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
            "a_set": {"only"},
            "raw": b"\xff\x00",
            "decimal": Decimal("1.10"),
            "obj": Unprintable(),
            "_private": "never logged",
            "level": "an extra named like a fixed field",
            "service": "is kept under a prefixed name",
        },
    )
    try:
        raise ValueError("boom \u00e9")
    except ValueError:
        logger.exception("failed to %s", "work", extra={"status": 500})
    logger.info("the exception as a value", extra={"error": KeyError("k")})


def test_lines_are_the_reference_lines_for_every_kind_of_record(
    records: Records, unbound: None
) -> None:
    _log_every_kind(logging.getLogger("kit.tests.logging"))
    formatter = JsonFormatter("gateway")

    assert len(records.records) == 7
    for record in records.records:
        assert formatter.format(record) == reference_line(record, "gateway")
    first = json.loads(formatter.format(records.records[0]))
    assert first == {
        "ts": first["ts"],
        "level": "info",
        "service": "gateway",
        "logger": "kit.tests.logging",
        "msg": "GET /articles/pub/7 200",
        **ACCESS_EXTRAS,
    }
    assert list(first) == ["ts", "level", "service", "logger", "msg", *ACCESS_EXTRAS]
    odd = json.loads(formatter.format(records.records[4]))
    assert "_private" not in odd
    assert odd["obj"] == "<unprintable ünïcode>"
    assert (odd["level"], odd["service"]) == ("error", "gateway")
    assert odd["extra_level"] == "an extra named like a fixed field"
    assert odd["extra_service"] == "is kept under a prefixed name"
    failed = json.loads(formatter.format(records.records[5]))
    assert failed["exc"].startswith("Traceback (most recent call last):")
    assert failed["exc"].endswith("ValueError: boom \u00e9")


def test_trace_ids_and_bound_fields_are_the_reference_ones(records: Records, unbound: None) -> None:
    formatter = JsonFormatter("user")
    context = SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=TraceFlags(0))
    logger = logging.getLogger("kit.tests.logging")
    with trace.use_span(NonRecordingSpan(context)):
        bind(request_id="abc-123", user_id=7)
        bind(status="bound, then replaced by the extra")
        bind(service="a bound field named like a fixed one", trace_id="not this line's")
        _log_every_kind(logger)
        lines = [formatter.format(r) for r in records.records]
        assert lines == [reference_line(r, "user") for r in records.records]

    first = json.loads(lines[0])
    assert first["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert first["span_id"] == "00ad6b7169203331"
    assert first["request_id"] == ACCESS_EXTRAS["request_id"]  # the extra wins
    assert json.loads(lines[1])["request_id"] == "abc-123"
    assert json.loads(lines[1])["status"] == "bound, then replaced by the extra"
    assert list(first)[5:7] == ["trace_id", "span_id"]
    assert first["service"] == "user"
    assert first["extra_service"] == "a bound field named like a fixed one"
    assert first["extra_trace_id"] == "not this line's"
    # The odd record's own "service" extra wins over the bound one, under the same prefix.
    assert json.loads(lines[4])["extra_service"] == "is kept under a prefixed name"
    # Outside the span (an invalid span context) the ids are left out, not zeros.
    assert "trace_id" not in json.loads(formatter.format(records.records[0]))


def test_records_other_formatters_saw_first_are_the_reference_lines(
    records: Records, unbound: None
) -> None:
    """pytest's caplog and other handlers add ``message`` / ``asctime`` after the extras."""
    logging.getLogger("kit.tests.logging").info("seen %s", "twice", extra=ACCESS_EXTRAS)
    (record,) = records.records
    logging.Formatter("%(asctime)s %(message)s").format(record)
    record.__dict__["_added_by_a_filter"] = 1
    record.__dict__["added_later"] = [1, 2]

    line = JsonFormatter("gateway").format(record)

    assert line == reference_line(record, "gateway")
    assert "asctime" not in json.loads(line)
    assert json.loads(line)["added_later"] == [1, 2]


def test_a_circular_extra_fails_as_json_dumps_does(records: Records, unbound: None) -> None:
    loop: list[Any] = []
    loop.append(loop)
    logging.getLogger("kit.tests.logging").info("loop", extra={"loop": loop})
    (record,) = records.records
    formatter = JsonFormatter("gateway")

    for _ in range(2):  # and the next line is not refused for the first one's sake
        with pytest.raises(ValueError, match="Circular reference detected"):
            formatter.format(record)
    with pytest.raises(ValueError, match="Circular reference detected"):
        reference_line(record, "gateway")
    shared = [1]
    record.loop = [shared, shared]  # the same list twice is not a cycle
    assert formatter.format(record) == reference_line(record, "gateway")


def test_the_shared_encoder_writes_what_json_dumps_writes() -> None:
    payload = {"ts": "t", "msg": "文章 \u2028", "n": [1, 2.5, None, True], "o": Unprintable()}
    assert kit.logging._encode_line(payload) == json.dumps(payload, default=str, ensure_ascii=False)


@pytest.mark.parametrize(
    ("instants", "stamps"),
    [
        pytest.param(
            [1_700_000_000.25, 1_700_000_000.5, 1_700_000_001 - 2**-10, 1_700_000_001.0],
            [
                "2023-11-14T22:13:20.250Z",
                "2023-11-14T22:13:20.500Z",
                "2023-11-14T22:13:20.999Z",
                "2023-11-14T22:13:21.000Z",
            ],
            id="within a second, then the next",
        ),
        pytest.param(
            [1_700_000_059.875, 1_700_000_060.125, 1_700_000_059.5, 1_700_000_060.0],
            [
                "2023-11-14T22:14:19.875Z",
                "2023-11-14T22:14:20.125Z",
                "2023-11-14T22:14:19.500Z",  # an older record after a newer one
                "2023-11-14T22:14:20.000Z",
            ],
            id="out of order across a second",
        ),
        pytest.param(
            [1_735_689_600 - 2**-10, 1_735_689_600.0, 1_735_689_600 + 2**-10],
            ["2024-12-31T23:59:59.999Z", "2025-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"],
            id="across a year",
        ),
        pytest.param(
            [1_700_000_000.25, 1_700_003_600.25, 1_700_000_000.75],
            [
                "2023-11-14T22:13:20.250Z",
                "2023-11-14T23:13:20.250Z",
                "2023-11-14T22:13:20.750Z",
            ],
            id="an hour apart, same seconds, then back",
        ),
    ],
)
def test_the_timestamp_follows_the_clock_across_seconds(
    clock: Clock, records: Records, unbound: None, instants: list[float], stamps: list[str]
) -> None:
    logger = logging.getLogger("kit.tests.logging")
    formatter = JsonFormatter("gateway")
    lines = []
    for instant in instants:
        clock.now = instant
        logger.info("tick")
        lines.append(formatter.format(records.records[-1]))

    assert [json.loads(line)["ts"] for line in lines] == stamps
    assert lines == [reference_line(r, "gateway") for r in records.records]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    srcfile = logging._srcfile
    access = logging.getLogger("uvicorn.access")
    disabled = access.disabled
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging._srcfile = srcfile
    access.disabled = disabled


def test_configure_logging_writes_reference_lines_to_stderr_without_caller_lookup(
    restored_logging: None, unbound: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("gateway", "info")
    kept = Records()
    logging.getLogger().addHandler(kept)
    logger = logging.getLogger("gateway.access")

    logger.info("%s %s %d", "GET", "/articles/pub/7", 200, extra=ACCESS_EXTRAS)
    logger.debug("below the level")

    (record,) = kept.records
    assert stderr.getvalue() == reference_line(record, "gateway") + "\n"
    # No caller lookup: the line never had file, line or function fields to lose.
    assert (record.lineno, record.funcName) == (0, "(unknown function)")
    assert not {"lineno", "funcName", "pathname", "module"} & json.loads(stderr.getvalue()).keys()
    assert logging.getLogger("uvicorn.access").disabled


@pytest.mark.parametrize(
    ("name", "source"),
    [
        (name, source)
        for name in sorted(kit.logging.FIXED_FIELDS)
        for source in ("extra", "bound", "both")
        # logging itself refuses an extra named msg (a LogRecord attribute).
        if name != "msg" or source == "bound"
    ],
)
def test_no_bound_field_or_extra_replaces_a_fixed_field(
    records: Records, unbound: None, name: str, source: str
) -> None:
    formatter = JsonFormatter("user")
    logger = logging.getLogger("kit.tests.logging")
    context = SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=TraceFlags(0))
    extra = {name: f"extra {name}"} if source in ("extra", "both") else {}
    with trace.use_span(NonRecordingSpan(context)):
        if source in ("bound", "both"):
            bind(**{name: f"bound {name}"}, other="kept as it is")
        try:
            raise RuntimeError("the line's own exception")
        except RuntimeError:
            logger.exception("the line's own message", extra=extra)
        line = json.loads(formatter.format(records.records[-1]))
        assert formatter.format(records.records[-1]) == reference_line(records.records[-1], "user")

    assert {key: line[key] for key in ("level", "service", "logger", "msg")} == {
        "level": "error",
        "service": "user",
        "logger": "kit.tests.logging",
        "msg": "the line's own message",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert (line["trace_id"], line["span_id"]) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")
    assert line["exc"].endswith("RuntimeError: the line's own exception")
    # The caller's value is kept under the prefix, an extra winning over a bound field as it
    # does for any other name.
    assert line[f"extra_{name}"] == (f"extra {name}" if extra else f"bound {name}")
    if source != "extra":
        assert line["other"] == "kept as it is"


ESC = "\x1b"


@pytest.mark.parametrize(
    ("coloured", "plain"),
    [
        pytest.param(f"{ESC}[32mINFO{ESC}[0m: ready", "INFO: ready", id="SGR colour"),
        pytest.param(f"{ESC}[1;38;5;208mbold orange{ESC}[m", "bold orange", id="256 colours"),
        pytest.param(f"{ESC}[2K{ESC}[1Gprogress 50%", "progress 50%", id="cursor and erase"),
        pytest.param(
            f"{ESC}]8;;https://example.invalid/{ESC}\\link{ESC}]8;;{ESC}\\", "link", id="OSC 8"
        ),
        pytest.param(f"{ESC}]0;title\x07text", "text", id="OSC ended by BEL"),
        pytest.param(f"{ESC}(Bcharset {ESC}Mreverse", "charset reverse", id="short escapes"),
        pytest.param(f"lone{ESC}\tescape{ESC}", "lone\tescape", id="lone ESC"),
        pytest.param("文章 [1m] \\u001b kept", "文章 [1m] \\u001b kept", id="no ESC, untouched"),
    ],
)
def test_escape_sequences_are_removed_from_the_message_and_fields(
    records: Records, unbound: None, coloured: str, plain: str
) -> None:
    class Styled:
        def __str__(self) -> str:
            return coloured

    bind(bound=coloured)
    logging.getLogger("kit.tests.logging").warning(
        "%s",
        coloured,
        extra={
            "field": coloured,
            "nested": {coloured: [coloured, (1, coloured)], "n": 1.5},
            "object": Styled(),
            "count": 3,
        },
    )
    line = JsonFormatter("gateway").format(records.records[-1])

    assert "\\u001b" not in line.replace("\\\\u001b", "")
    assert json.loads(line) | {"ts": "t"} == {
        "ts": "t",
        "level": "warning",
        "service": "gateway",
        "logger": "kit.tests.logging",
        "msg": plain,
        "bound": plain,
        "field": plain,
        "nested": {plain: [plain, [1, plain]], "n": 1.5},
        "object": plain,
        "count": 3,
    }


def test_uvicorns_startup_line_has_no_colour_copy(records: Records, unbound: None) -> None:
    """uvicorn logs "Uvicorn running on ..." with a coloured copy under ``color_message``."""
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addHandler(records)
    level = uvicorn_logger.level
    uvicorn_logger.setLevel(logging.INFO)
    try:
        # log_config=None: uvicorn leaves the process's logging alone.
        config = uvicorn.Config(
            "kit.tests.test_logging:app", host="127.0.0.1", port=0, log_config=None
        )
        config.bind_socket().close()
    finally:
        uvicorn_logger.removeHandler(records)
        uvicorn_logger.setLevel(level)

    (record,) = [r for r in records.records if r.getMessage().startswith("Uvicorn running")]
    assert ESC in record.__dict__["color_message"]  # what uvicorn hands every handler
    line = JsonFormatter("gateway").format(record)
    assert "color_message" not in json.loads(line)
    assert "\\u001b" not in line
    assert line == reference_line(record, "gateway")

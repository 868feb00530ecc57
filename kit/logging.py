"""Structured JSON logging.

One JSON object per line on stderr with ``ts``, ``level``, ``logger``, ``msg``, the service
name, the current trace and span ids (from OpenTelemetry) and any per-request fields bound in
:data:`log_context` (request id, user id, ...). Fields passed with ``extra=`` are included.
docs/logging.md is the team's standard for what to log, at which level, under which names.

The fixed fields (:data:`FIXED_FIELDS`) are the line's own: a bound field or an extra with
one of their names never replaces them but is kept as ``extra_<name>`` (an ``extra=`` field
``service`` becomes ``extra_service``), so that every line can be filtered by service, level
and trace whatever a caller passes. Terminal escape sequences (colours, cursor movement:
libraries written for a terminal colour their text) are removed from the message and from
every string field, so that a line holds text, not ``\u001b[31m``; uvicorn's
``color_message`` extra (a coloured copy of ``msg``) is left out.

The gateway writes one line per request, so formatting is kept cheap: the timestamp's
seconds are formatted once per second, extra fields are found by one pass over the record's
attributes in C, and one shared ``JSONEncoder`` encodes every line. Escape sequences are
looked for once, in the encoded line (an ESC character is always written as ``\u001b``);
only a line that has one is built again without them. :func:`configure_logging` also turns
off the caller lookup (``logging._srcfile = None``, the logging HOWTO's optimisation): the
lines carry no file, line or function fields, so the lookup's stack walk bought nothing.

The level is a live setting (docs/configuration.md): :func:`set_log_level` changes it in a
running process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from itertools import filterfalse
from typing import Any

from opentelemetry.trace import get_current_span

log_context: ContextVar[dict[str, Any] | None] = ContextVar("log_context", default=None)

_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
    # uvicorn's coloured copy of the message for its own console formatter, with the
    # %-placeholders unfilled: ``msg`` already says it.
    | {"color_message"}
)
# Bound once: filterfalse calls it from C for each of the record's ~25 attributes.
_is_reserved = _RESERVED.__contains__


# ``json.dumps(obj, default=str, ensure_ascii=False)`` builds a JSONEncoder on every call;
# one shared encoder does the same work (``encode`` keeps no state between calls).
_encode_line = json.JSONEncoder(default=str, ensure_ascii=False).encode

FIXED_FIELDS = frozenset({"ts", "level", "service", "logger", "msg", "trace_id", "span_id", "exc"})
"""The fields the formatter writes itself; bound fields and extras never replace them."""
COLLISION_PREFIX = "extra_"
"""A bound field or extra named like a fixed field is written under this prefix."""
_is_fixed = FIXED_FIELDS.__contains__
# The fixed fields an ``extra=`` can carry (logging itself refuses "msg", a record attribute).
_FIXED_EXTRAS = FIXED_FIELDS - _RESERVED

# ECMA-48 escape sequences: CSI (``ESC [`` parameters, intermediates, final byte: colours,
# cursor moves), OSC (``ESC ]`` ... BEL or ``ESC \``: titles, hyperlinks) and the two- or
# three-byte escapes (``ESC (B``, ``ESC M``). A lone ESC is removed too.
_ANSI_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])?"
)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ANSI_ESCAPE.sub("", text) if "\x1b" in text else text


def _without_escapes(value: Any) -> Any:
    """``value`` with escape sequences removed from every string in it (keys included)."""
    if isinstance(value, str):
        return strip_ansi(value)
    if isinstance(value, dict):
        return {
            strip_ansi(k) if isinstance(k, str) else k: _without_escapes(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_without_escapes(v) for v in value]
    return value


# The slow path's encoder: what ``default=str`` makes of other objects is cleaned too.
_encode_clean_line = json.JSONEncoder(
    default=lambda value: strip_ansi(str(value)), ensure_ascii=False
).encode


def bind(**fields: Any) -> None:
    """Add fields to every log line written in the current context (task)."""
    current = dict(log_context.get() or {})
    current.update(fields)
    log_context.set(current)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        # (first instant of the second, its "YYYY-MM-DDTHH:MM:SS") as one tuple, so that
        # threads sharing the formatter never read one second's start with another's text.
        self._second: tuple[float, str] = (-1.0, "")

    def _timestamp(self, record: logging.LogRecord) -> str:
        """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC); the seconds part is formatted once a second."""
        created = record.created
        # gmtime() floors a float, so every instant of [second, second + 1) prints the same.
        second = created // 1.0
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span_context = get_current_span().get_span_context()
        if span_context.is_valid:
            payload["trace_id"] = f"{span_context.trace_id:032x}"
            payload["span_id"] = f"{span_context.span_id:016x}"
        bound = log_context.get()
        if bound:
            if FIXED_FIELDS.isdisjoint(bound):
                payload.update(bound)
            else:
                for key, value in bound.items():
                    payload[COLLISION_PREFIX + key if _is_fixed(key) else key] = value
        attributes = record.__dict__
        # One check in C (7 lookups in the record's dict) for the usual record; only one with
        # a colliding extra takes the loop that renames.
        if attributes.keys().isdisjoint(_FIXED_EXTRAS):
            for key in filterfalse(_is_reserved, attributes):
                if not key.startswith("_"):
                    payload[key] = attributes[key]
        else:
            for key in filterfalse(_is_reserved, attributes):
                if not key.startswith("_"):
                    payload[COLLISION_PREFIX + key if _is_fixed(key) else key] = attributes[key]
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        line = _encode_line(payload)
        # json writes an ESC character as \u001b: a scan of the line finds any, after a
        # one-character scan (memchr) that most lines, with no backslash at all, stop at. (A
        # literal backslash-u001b in a value matches too; the rebuilt line is then the same.)
        if "\\" in line and "\\u001b" in line:
            line = _encode_clean_line(_without_escapes(payload))
        return line


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route all logging through one JSON handler on stderr.

    Also stops :mod:`logging` from looking up each record's caller (file, line, function):
    no line carries those fields, and the lookup walks the stack on every call.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The logging HOWTO's documented switch ("Optimization"); records then carry
    # pathname "(unknown file)", lineno 0 and funcName "(unknown function)".
    logging._srcfile = None
    # Access logs are written by our own middleware, with trace ids.
    logging.getLogger("uvicorn.access").disabled = True


LOG_LEVELS = frozenset({"CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET"})
"""The level names :mod:`logging` knows."""


def set_log_level(level: str) -> None:
    """Change the level of the process's logging at run time (the root logger's)."""
    name = level.upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    if root.level != logging.getLevelName(name):
        root.setLevel(name)
        logging.getLogger(__name__).info("log level changed", extra={"log_level": name})

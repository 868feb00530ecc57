"""What a command answers, and how it is shown: for people, or as one JSON document.

A command returns an :class:`Outcome`: ``data``, the document ``--json`` prints (plain JSON
types only, the same shape whatever the human text says), and ``text``, the lines a person
reads. :func:`table` lays rows out in aligned columns; :func:`shown` writes a JSON value the
way the configuration centre holds it (``5``, ``"INFO"``, ``{"a": 1}``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """A command's result: the ``--json`` document and the human rendering."""

    data: Any
    text: str


def shown(value: Any) -> str:
    """A JSON value on one line, non-ASCII characters kept."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def document(data: Any) -> str:
    """The ``--json`` output: one JSON document."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, indent=2)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``headers`` in left-aligned columns two spaces apart."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def moment(ms: int) -> str:
    """Unix milliseconds as local date and time, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))

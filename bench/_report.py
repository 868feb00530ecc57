"""The one line every benchmark prints per measure, so ``make bench`` can build one table.

A benchmark module calls :func:`result` once per measure after printing its own detail. The
line starts with :data:`MARKER` followed by a JSON object; ``python -m bench`` scans each
benchmark's output for such lines and prints them all as one table at the end
(:func:`table`). A benchmark
run on its own (``python -m bench.<name>``) shows the same line, which stays readable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

MARKER = "BENCH-RESULT "


@dataclass(frozen=True)
class Result:
    """One row of the ``make bench`` table.

    ``ours`` and ``baseline`` are display strings with their units (``"480 req/s"``);
    ``ratio`` is ours ÷ baseline as the goal reads it; ``goal`` reads like ``">= 0.7"``
    (empty when the row is informative only); ``met`` is None for rows without a goal.
    """

    measure: str
    ours: str
    baseline: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None


def result(
    measure: str,
    ours: str,
    baseline: str = "",
    ratio: float | None = None,
    goal: str = "",
    met: bool | None = None,
) -> Result:
    """Print one result line (see the module docstring) and return it."""
    row = Result(measure, ours, baseline, ratio, goal, met)
    sys.stdout.write(MARKER + json.dumps(asdict(row), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return row


def parse(line: str) -> Result | None:
    """The :class:`Result` on a line of benchmark output, or None for any other line."""
    if not line.startswith(MARKER):
        return None
    try:
        data = json.loads(line[len(MARKER) :])
        return Result(**data)
    except (ValueError, TypeError):
        return None


def table(rows: Sequence[Result]) -> str:
    """The results as one Markdown table (what ``make bench`` ends with, and the docs show)."""
    lines = [
        "| measure | ours | baseline (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.measure} | {row.ours} | {row.baseline} | {ratio} | {row.goal} | {met} |"
        )
    return "\n".join(lines)

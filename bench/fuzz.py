"""Fuzzing the gateway's API from its own schema: 5xx answers and schema violations.

Run ``python -m bench.fuzz [--examples N]``. It starts the whole real stack on free ports
(:func:`bench._workload.running_stack`) and runs :func:`bench._fuzz.fuzz` twice against
the gateway's ``/openapi.json``: anonymous, then as a real signed-in user (Bearer token).
``--examples`` cases per operation and generation mode (positive and negative) in each run.

Rows: generated cases (goal at least ``MIN_CASES``), 5xx answers (goal 0) and distinct
schema violations (goal 0). There is no baseline: the goals are absolute. Every distinct
failure is printed with a ``curl`` command that reproduces it. The exit code is 1 if a goal
is missed. The chaos run (``make chaos``) runs the same fuzzing against its stack.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from bench import _report
from bench._fuzz import FuzzReport, fuzz, signed_in_headers
from bench._workload import running_stack

EXAMPLES = 12
MIN_CASES = 1000


def run(base_url: str, examples: int) -> list[FuzzReport]:
    """The anonymous and the logged-in run, each printed as it ends."""
    reports = []
    for label, sign_in in (
        ("anonymous", None),
        ("logged in", partial(signed_in_headers, base_url)),
    ):
        report = fuzz(base_url, label=label, examples=examples, sign_in=sign_in)
        print("\n".join(report.lines()), flush=True)
        reports.append(report)
    return reports


def report_rows(reports: list[FuzzReport]) -> bool:
    """Print the result rows of ``reports``; True if every goal is met."""
    cases = sum(r.cases for r in reports)
    seconds = sum(r.seconds for r in reports)
    server_errors = sum(r.server_errors for r in reports)
    violations = sum(r.violations for r in reports)
    split = ", ".join(f"{r.label} {r.cases}" for r in reports)
    _report.result(
        "fuzz: generated cases (schemathesis)",
        f"{cases} in {seconds:.0f}s ({split})",
        goal=f">= {MIN_CASES}",
        met=cases >= MIN_CASES,
    )
    _report.result("fuzz: 5xx answers", str(server_errors), goal="= 0", met=server_errors == 0)
    _report.result(
        "fuzz: distinct schema violations", str(violations), goal="= 0", met=violations == 0
    )
    return cases >= MIN_CASES and server_errors == 0 and violations == 0


def main(argv: list[str]) -> int:
    """Start the stack, fuzz it anonymous and logged in, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=int, default=EXAMPLES, help="cases per operation and mode"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        print(f"stack up in {time.monotonic() - started:.1f}s", flush=True)
        ok = report_rows(run(stack.base_url, args.examples))
        dead = stack.dead()
        if dead:
            print(f"processes that died while fuzzing: {dead}")
    print(f"total {time.monotonic() - started:.1f}s")
    return 0 if ok and not dead else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

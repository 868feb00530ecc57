"""``make bench``: run every benchmark under ``bench/``, one after another.

Each benchmark is a module runnable on its own (``python -m bench.<name>``) that measures
its subject and a baseline in the same run and prints their ratio. This runner discovers
them, runs each in a fresh interpreter (so one benchmark's processes and memory do not
affect the next) and streams their output. Every headline figure a benchmark prints as a
:mod:`bench._report` line is collected; the run ends with one table of them all (measure,
ours, baseline measured in the same run, ratio, goal, met) and a line per benchmark with its
exit status and duration. ``python -m bench NAME...`` runs only the named ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench._report import Result, parse, table

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Benchmark module names, sorted."""
    return sorted(
        p.stem
        for p in BENCH_DIR.glob("*.py")
        if not p.stem.startswith("_") and p.stem != "conftest"
    )


def main(argv: list[str]) -> int:
    """Run the selected benchmarks; the exit code is non-zero if any failed."""
    names = argv or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        sys.stderr.write(f"unknown benchmark(s): {', '.join(unknown)}; known: {discover()}\n")
        return 2
    results: list[tuple[str, int, float]] = []
    rows: list[Result] = []
    suite_started = time.monotonic()
    for index, name in enumerate(names, start=1):
        elapsed = time.monotonic() - suite_started
        sys.stdout.write(f"\n=== [{index}/{len(names)}] bench.{name} (at {elapsed:.0f}s) ===\n")
        sys.stdout.flush()
        started = time.monotonic()
        code, found = run_one(name)
        rows += found
        results.append((name, code, time.monotonic() - started))
    sys.stdout.write("\n" + table(rows) + "\n")
    sys.stdout.write("\n=== benchmarks ===\n")
    for name, code, seconds in results:
        sys.stdout.write(
            f"{name:<20} {'ok' if code == 0 else f'FAILED ({code})':<12} {seconds:6.1f}s\n"
        )
    return 0 if all(code == 0 for _, code, _ in results) else 1


def run_one(name: str) -> tuple[int, list[Result]]:
    """Run ``bench.<name>``, streaming its output; its exit code and result rows."""
    found: list[Result] = []
    with subprocess.Popen(
        [sys.executable, "-u", "-m", f"bench.{name}"],
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            row = parse(line)
            if row is not None:
                found.append(row)
    return child.returncode, found


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

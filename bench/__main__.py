"""``make bench``: run every benchmark under ``bench/``, one after another.

Each benchmark is a module runnable on its own (``python -m bench.<name>``) that measures
its subject and a baseline in the same run and prints their ratio. This runner discovers
them, runs each in a fresh interpreter (so one benchmark's processes and memory do not
affect the next), streams their output, and ends with a summary of what passed and failed.
``python -m bench NAME...`` runs only the named ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
    for index, name in enumerate(names, start=1):
        sys.stdout.write(f"\n=== [{index}/{len(names)}] bench.{name} ===\n")
        sys.stdout.flush()
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        results.append((name, code, time.monotonic() - started))
    sys.stdout.write("\n=== summary ===\n")
    for name, code, seconds in results:
        sys.stdout.write(
            f"{name:<20} {'ok' if code == 0 else f'FAILED ({code})':<12} {seconds:6.1f}s\n"
        )
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

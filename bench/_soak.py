"""Soak: the mixed workload for many minutes; memory drift of every process, and errors.

Run ``python -m bench._soak --minutes 10`` (``make soak``). Not part of ``make bench``
(its name starts with ``_``): ten minutes is longer than the whole benchmark run.

It starts the whole real stack (:func:`bench._workload.running_stack`) and runs
:class:`bench._workload.MixedWorkload` with ``--users`` virtual users for ``--minutes``.
The resident set size of every process is sampled every second. After a warm-up (the
first ``WARMUP_FRACTION`` of the run, at least one minute when the run allows) the
**start** RSS of a process is the median of its samples in the following
``EDGE_SECONDS``, and its **end** RSS the median of its last ``EDGE_SECONDS``; medians,
because garbage collection and allocator returns make single samples jump. Drift is
end / start - 1; goal < 10 % for every process. Errors (any answer that is not an
acknowledgement) are counted for the whole run after the warm-up; goal 0. At the end
:meth:`bench._workload.MixedWorkload.verify` checks that nothing acknowledged was lost.
Progress is printed every minute. The exit code is 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench import _report
from bench._workload import MixedWorkload, RssSampler, running_stack

WARMUP_FRACTION = 0.1
EDGE_SECONDS = 30.0
DRIFT_GOAL = 0.10
MIB = 1024 * 1024


def _warmup_seconds(total: float) -> float:
    return min(max(WARMUP_FRACTION * total, 60.0), total / 3)


async def soak(base_url: str, pids: dict[str, int], minutes: float, users: int) -> bool:
    """Run the workload, print progress and the result rows; True if every goal is met."""
    total = minutes * 60
    warmup = _warmup_seconds(total)
    edge = min(EDGE_SECONDS, (total - warmup) / 3)
    sampler = RssSampler(pids, interval_s=1.0)
    sampler.start()
    async with MixedWorkload(base_url, users=users, articles=8, seed=7) as workload:
        run = asyncio.create_task(workload.run())
        began = time.monotonic()
        await asyncio.sleep(warmup)
        workload.reset_stats()
        measured_from = time.monotonic()
        print(f"warm-up of {warmup:.0f}s done; measuring for {total - warmup:.0f}s", flush=True)
        while (left := began + total - time.monotonic()) > 0:
            await asyncio.sleep(min(60.0, left))
            elapsed = time.monotonic() - measured_from
            rss = ", ".join(
                f"{n} {s[-1][1] / MIB:.0f}" for n, s in sorted(sampler.samples.items()) if s
            )
            print(
                f"  {elapsed / 60:5.1f} min: {workload.total_ok / elapsed:6.0f} ops/s, "
                f"{workload.total_errors} errors; RSS MiB: {rss}",
                flush=True,
            )
        workload.stop()
        await run
        ended = time.monotonic()
        await sampler.stop()
        print(f"workload after warm-up, {ended - measured_from:.0f}s:")
        print("\n".join(workload.summary_lines()))
        problems = await workload.verify()
        for problem in problems:
            print(f"  LOST: {problem}")
    start = sampler.median_between(measured_from, measured_from + edge)
    end = sampler.median_between(ended - edge, ended)
    ok = True
    rows = []
    for name in sorted(start.keys() & end.keys()):
        drift = end[name] / start[name] - 1
        met = drift < DRIFT_GOAL
        ok &= met
        row = _report.result(
            f"soak RSS drift {name}",
            f"{end[name] / MIB:.1f} MiB at end",
            f"{start[name] / MIB:.1f} MiB after warm-up",
            end[name] / start[name],
            f"< {1 + DRIFT_GOAL:.2f}",
            met,
        )
        rows.append(row)
    errors = workload.total_errors
    rows.append(
        _report.result(f"soak errors, {minutes:g} min", str(errors), "", None, "= 0", errors == 0)
    )
    rows.append(
        _report.result(
            "soak: acked writes lost, reads uncounted",
            str(len(problems)),
            goal="= 0",
            met=not problems,
        )
    )
    print("\n" + _report.table(rows), flush=True)
    return ok and errors == 0 and not problems


def main(argv: list[str]) -> int:
    """Parse options, start the stack, soak, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    parser.add_argument("--users", type=int, default=16, help="concurrent virtual users")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.users < 2:
        parser.error("--minutes must be positive and --users at least 2")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        print(f"stack up in {time.monotonic() - started:.1f}s: {', '.join(stack.pids())}")
        ok = asyncio.run(soak(stack.base_url, stack.pids(), args.minutes, args.users))
        dead = stack.dead()
        if dead:
            print(f"processes that died during the soak: {dead}")
    print(f"total {time.monotonic() - started:.1f}s")
    return 0 if ok and not dead else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Benchmark of the gateway under a mixed workload, and the peak memory of every process.

Run ``python -m bench.mixed``. It starts the whole real stack on free ports
(:func:`bench._workload.running_stack`: etcd, tansu, Redis, SQLite, every service, the
gateway discovering them through etcd), then runs :class:`bench._workload.MixedWorkload`
with ``CONCURRENCY`` virtual users (sign in, read, like, comment, list comments, follow;
weights in :data:`bench._workload.DEFAULT_MIX`): ``WARMUP_SECONDS`` of warm-up, then a
``MEASURE_SECONDS`` window whose requests per second and p50/p99 latency are reported.

The baseline, measured in the same run at the same concurrency, is the same gateway
process answering its bare ``GET /healthz`` (no middleware work, no gRPC): the HTTP floor
of this machine and load generator. The ratio is informative (a mixed workload of real
writes is not expected to reach it). The goals: zero errors, and after the run every
acknowledged like, follow and comment is found and every acknowledged read counted
(:meth:`bench._workload.MixedWorkload.verify`). The exit code is 1 if one is missed.

The resident set size of every process is sampled every 0.5 s for the whole run; the
peak of each is reported (informative rows).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import _report
from bench._workload import USER_AGENT, MixedWorkload, OperationStats, RssSampler, running_stack

CONCURRENCY = 32
WARMUP_SECONDS = 10.0
MEASURE_SECONDS = 40.0
FLOOR_SECONDS = 10.0
ARTICLES = 8
MIB = 1024 * 1024


async def floor_rate(base_url: str, seconds: float) -> tuple[float, OperationStats]:
    """``CONCURRENCY`` closed-loop callers on ``GET /healthz``: req/s and latencies."""
    stats = OperationStats()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    loop = asyncio.get_running_loop()
    warm_until = loop.time() + 1.0
    stop = warm_until + seconds

    async def caller() -> None:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"User-Agent": USER_AGENT}, limits=limits, timeout=10
        ) as http:
            while loop.time() < stop:
                started = time.perf_counter()
                response = await http.get("/healthz")
                elapsed = (time.perf_counter() - started) * 1000
                if loop.time() < warm_until:
                    continue
                if response.status_code == 200:
                    stats.latencies_ms.append(elapsed)
                else:
                    stats.errors += 1

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return len(stats.latencies_ms) / seconds, stats


async def measure(base_url: str, sampler: RssSampler) -> bool:
    """Floor, then warm-up and measured mixed window, then verification; prints rows."""
    floor, floor_stats = await floor_rate(base_url, FLOOR_SECONDS)
    print(
        f"floor GET /healthz: {floor:.0f} req/s, p50 {floor_stats.percentile(50):.1f} ms, "
        f"p99 {floor_stats.percentile(99):.1f} ms ({CONCURRENCY} connections)"
    )
    async with MixedWorkload(base_url, users=CONCURRENCY, articles=ARTICLES, seed=10) as workload:
        print(f"{CONCURRENCY} virtual users signed up; {ARTICLES} articles published")
        run = asyncio.create_task(workload.run())
        await asyncio.sleep(WARMUP_SECONDS)
        workload.reset_stats()
        for elapsed in range(10, int(MEASURE_SECONDS) + 1, 10):
            await asyncio.sleep(10)
            print(
                f"  ... {elapsed:3d}s measured, {workload.total_ok / elapsed:6.0f} ops/s, "
                f"{workload.total_errors} errors",
                flush=True,
            )
        workload.stop()
        await run
        seconds = workload.seconds
        overall = workload.all_latencies()
        rate = workload.total_ok / seconds
        print(f"mixed workload over {seconds:.1f}s:")
        print("\n".join(workload.summary_lines()))
        problems = await workload.verify()
        for problem in problems:
            print(f"  LOST: {problem}")
        overcount = workload.read_overcount()
        if overcount:
            print(f"  reads counted beyond those attempted (redelivered): {overcount}")
    _report.result(
        f"gateway mixed workload, {CONCURRENCY} users",
        f"{rate:.0f} req/s, p50 {overall.percentile(50):.1f} ms, "
        f"p99 {overall.percentile(99):.1f} ms",
        f"{floor:.0f} req/s GET /healthz",
        rate / floor,
        "",
        None,
    )
    errors = workload.total_errors
    _report.result("mixed workload errors", str(errors), "", None, "= 0", errors == 0)
    lost = len(problems)
    _report.result(
        "mixed workload: acked writes lost, reads uncounted", str(lost), "", None, "= 0", lost == 0
    )
    return errors == 0 and lost == 0


def main(argv: list[str]) -> int:
    """Start the stack, measure, report peak RSS, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        print(f"stack up in {time.monotonic() - started:.1f}s: {', '.join(stack.pids())}")

        async def run() -> bool:
            sampler = RssSampler(stack.pids())
            sampler.start()
            try:
                return await measure(stack.base_url, sampler)
            finally:
                await sampler.stop()
                print("peak RSS per process:")
                for name, peak in sorted(sampler.peak().items()):
                    print(f"  {name:<16} {peak / MIB:7.1f} MiB")
                    _report.result(f"peak RSS {name}", f"{peak / MIB:.0f} MiB")

        ok = asyncio.run(run())
        dead = stack.dead()
        if dead:
            print(f"processes that died during the run: {dead}")
    print(f"total {time.monotonic() - started:.1f}s")
    return 0 if ok and not dead else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

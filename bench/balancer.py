"""Benchmark of the balanced channel: throughput against a plain channel, and pick cost.

Run ``python -m bench.balancer``. One grpc.aio echo server runs in a subprocess; 64
concurrent callers make unary calls for a few seconds through a plain ``grpc.aio`` channel
and through a ``BalancedChannel`` over that single endpoint, in alternating rounds; the
median of the per-round ratios is printed (goal: >= 0.9), with the event loop's CPU time
per call of each. The machine may be shared, so single rounds are noisy: read the medians.
Then the cost of one pick is measured for the smooth weighted round robin and the hash
ring at 3 and 100 endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from bench._report import result
from devstack.infra import ManagedProcess, free_port, port_in_use
from kit.balancer import (
    BalancedChannel,
    BalancerConfig,
    ConsistentHashRing,
    EndpointState,
    SmoothWeightedRoundRobin,
    static_balanced_channel,
)
from kit.registry import ServiceInstance

METHOD = "/bench.Echo/Echo"
CALLERS = 64
ROUNDS = 8
ROUND_SECONDS = 1.0
REPO_ROOT = Path(__file__).resolve().parents[1]


async def serve(port: int) -> None:
    """The echo server (subprocess mode)."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def measure(call: Callable[[], Awaitable[object]], seconds: float) -> tuple[float, float]:
    """Calls per second with ``CALLERS`` concurrent callers, and loop-thread CPU µs per call.

    The CPU figure counts only this thread (the event loop), not grpc's poller thread or the
    server, so it is steady even when other processes compete for the cores.
    """
    done = 0
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    async def caller() -> None:
        nonlocal done
        while loop.time() < stop:
            await call()
            done += 1

    started, cpu_started = loop.time(), time.thread_time()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    cpu = time.thread_time() - cpu_started
    return done / (loop.time() - started), cpu / done * 1e6


async def throughput(addr: str) -> None:
    """Plain channel vs BalancedChannel against the same single server."""
    plain = grpc.aio.insecure_channel(addr)
    balanced: BalancedChannel = await static_balanced_channel(
        "bench", [addr], BalancerConfig(idempotent_methods=frozenset({METHOD}))
    )
    async with plain, balanced:
        await plain.channel_ready()
        await balanced.channel_ready()
        plain_echo = plain.unary_unary(METHOD, None, None)
        balanced_echo = balanced.unary_unary(METHOD, None, None)

        def via_plain() -> Awaitable[object]:
            return plain_echo(b"ping", timeout=5)

        def via_balanced() -> Awaitable[object]:
            return balanced_echo(b"ping", timeout=5)

        await measure(via_plain, 0.5)  # warm-up
        await measure(via_balanced, 0.5)
        ratios: list[float] = []
        plain_rates: list[float] = []
        balanced_rates: list[float] = []
        cpu: dict[str, list[float]] = {"plain": [], "balanced": []}
        for round_no in range(ROUNDS):
            # Alternate which goes first so that drifting background load cancels out.
            if round_no % 2 == 0:
                base, base_cpu = await measure(via_plain, ROUND_SECONDS)
                ours, ours_cpu = await measure(via_balanced, ROUND_SECONDS)
            else:
                ours, ours_cpu = await measure(via_balanced, ROUND_SECONDS)
                base, base_cpu = await measure(via_plain, ROUND_SECONDS)
            ratios.append(ours / base)
            plain_rates.append(base)
            balanced_rates.append(ours)
            cpu["plain"].append(base_cpu)
            cpu["balanced"].append(ours_cpu)
            print(
                f"round {round_no + 1}: plain {base:6.0f} calls/s, balanced {ours:6.0f} calls/s, "
                f"ratio {ours / base:.3f}"
            )
    plain_cpu, ours_cpu = statistics.median(cpu["plain"]), statistics.median(cpu["balanced"])
    print(
        f"client event-loop CPU per call: plain {plain_cpu:.1f} us, balanced {ours_cpu:.1f} us "
        f"(+{ours_cpu - plain_cpu:.1f} us)"
    )
    ratio = statistics.median(ratios)
    print(
        f"throughput ratio BalancedChannel / plain grpc.aio channel ({CALLERS} callers): "
        f"{ratio:.3f} (median of {ROUNDS} rounds; goal >= 0.9)"
    )
    result(
        f"BalancedChannel vs plain grpc.aio channel, {CALLERS} callers",
        f"{statistics.median(balanced_rates):.0f} calls/s",
        f"{statistics.median(plain_rates):.0f} calls/s",
        ratio,
        ">= 0.9",
        ratio >= 0.9,
    )


def pick_cost() -> None:
    """Nanoseconds per pick for both pickers at 3 and 100 endpoints."""
    config = BalancerConfig()
    for size in (3, 100):
        endpoints = [
            EndpointState(ServiceInstance("bench", f"i{n}", f"10.0.0.{n}:80", 1 + n % 3), config)
            for n in range(size)
        ]
        wrr: SmoothWeightedRoundRobin[EndpointState] = SmoothWeightedRoundRobin()
        wrr.set_endpoints(endpoints)
        ring: ConsistentHashRing[EndpointState] = ConsistentHashRing()
        ring.set_endpoints(endpoints)
        keys = [f"user:{n}".encode() for n in range(1000)]
        picks = 300_000 // size + 10_000
        started = time.perf_counter_ns()
        for _ in range(picks):
            wrr.pick()
        wrr_ns = (time.perf_counter_ns() - started) / picks
        started = time.perf_counter_ns()
        for n in range(picks):
            ring.pick(keys[n % 1000])
        ring_ns = (time.perf_counter_ns() - started) / picks
        print(
            f"pick cost at {size:3d} endpoints: smooth WRR {wrr_ns:8.0f} ns/pick, "
            f"consistent hash {ring_ns:6.0f} ns/pick"
        )


def main() -> None:
    """Start the server subprocess, measure, print, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        server = ManagedProcess(
            "bench-echo-server",
            [sys.executable, "-m", "bench.balancer", "--serve", str(port)],
            Path(scratch) / "server.log",
            ready=lambda: port_in_use(port),
            cwd=REPO_ROOT,
        )
        with server:
            asyncio.run(throughput(f"127.0.0.1:{port}"))
    pick_cost()


if __name__ == "__main__":
    main()

"""CPU per request of the in-process gateway on ``GET /articles/pub/:id``, against its floor.

Run ``python -m bench.gateway_cpu`` (about 15 s; ``--profile`` adds a cProfile of the
gateway, ``--requests N`` changes the sample). It starts a throwaway Redis and
:mod:`bench._noop_services` (the no-op article and interactive services) in child
processes, then, in this process:

- measures the floor (:mod:`bench._floor_app`) first, before a tracer provider exists, as
  :mod:`bench.read_path` runs it (its own process, which configures no tracing: FastAPI's
  request telemetry is then off);
- then configures the tracer provider as ``python -m gateway`` does and builds the real
  gateway (:func:`gateway.app.create_app`), rate limits off as in :mod:`bench.read_path`,
  with the article and interactive services given as static ``peers``, so every call goes
  through the real :class:`~kit.balancer.BalancedChannel` and governance client chain; JSON
  logging at INFO (to ``/dev/null``), as ``python -m gateway`` configures it;
- mints an access token with the gateway's :class:`~gateway.auth.tokens.TokenService`;
- calls each ASGI app directly (no HTTP server, no client library: a few µs of driver cost)
  with ``CONCURRENCY`` requests in flight, and divides this process's CPU time (all threads,
  gRPC's included; the services' CPU is theirs) by the requests served.

Both numbers exclude HTTP parsing by uvicorn, which both pay alike, so the difference is
what the gateway adds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message

import bench._floor_app as floor_app
from bench._report import result
from devstack.infra import free_port, port_in_use, redis_process
from gateway.app import create_app
from gateway.middleware.edge_settings import EdgeSettings
from gateway.settings import GatewaySettings
from kit.config import Mode
from kit.logging import configure_logging
from kit.observability.tracing import configure_tracing

CONCURRENCY = 32
DEFAULT_REQUESTS = 3000
WARMUP_REQUESTS = 300
ARTICLE_ID = 7
USER_AGENT = "webook-bench/1.0"


async def _request(app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One GET through ``app``; the response status."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    status = 0
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # disconnect never comes
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def _drive(
    app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]], count: int
) -> tuple[float, float]:
    """``count`` requests, ``CONCURRENCY`` at a time: (CPU µs, wall µs) per request."""
    remaining = count
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            if await _request(app, path, headers) != 200:
                failures += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if failures:
        raise RuntimeError(f"{failures} of {count} requests failed")
    return cpu / count * 1e6, wall / count * 1e6


async def _measure(
    name: str,
    app: ASGIApp,
    lifespan: Callable[[], Any],
    headers: list[tuple[bytes, bytes]],
    requests: int,
    profile: cProfile.Profile | None = None,
) -> float:
    """Warm up, measure, print and return the CPU µs per request of ``app``."""
    path = f"/articles/pub/{ARTICLE_ID}"
    async with lifespan():
        await _drive(app, path, headers, WARMUP_REQUESTS)
        cpu_us, wall_us = await _drive(app, path, headers, requests)
        print(f"{name:<34} {cpu_us:8.0f} µs CPU/request  ({1e6 / wall_us:6.0f} req/s)")
        if profile is not None:
            profile.enable()
            await _drive(app, path, headers, requests)
            profile.disable()
    return cpu_us


def _wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while not port_in_use(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the no-op services did not start on port {port}")
        time.sleep(0.05)


async def _run(redis_url: str, article: str, interactive: str, args: argparse.Namespace) -> None:
    floor = floor_app.create_app(article, interactive)
    floor_us = await _measure(
        "floor (bench._floor_app)",
        floor,
        lambda: floor.router.lifespan_context(floor),
        _headers(""),
        args.requests,
    )
    tracer_provider = configure_tracing("gateway")
    try:
        settings = GatewaySettings(
            mode=Mode.TEST,
            redis_url=redis_url,
            peers={"article": article, "interactive": interactive, "user": article, "sms": article},
            # As bench.read_path runs it: no rate limits (one reader would hit the per-user one).
            edge=EdgeSettings(rate_limits=()),
        )
        gateway = create_app(settings)
        token = gateway.state.runtime.tokens.issue(1, USER_AGENT).access
        profile = cProfile.Profile() if args.profile else None
        gateway_us = await _measure(
            "gateway (create_app, INFO logs)",
            gateway,
            lambda: gateway.router.lifespan_context(gateway),
            _headers(token),
            args.requests,
            profile,
        )
    finally:
        tracer_provider.shutdown()
    print(f"{'gateway - floor':<34} {gateway_us - floor_us:8.0f} µs CPU/request")
    result(
        "gateway CPU per GET /articles/pub/:id, in process, vs floor app",
        f"{gateway_us:.0f} µs",
        f"{floor_us:.0f} µs",
        gateway_us / floor_us,
    )
    if profile is not None:
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())


def _headers(token: str) -> list[tuple[bytes, bytes]]:
    """The request headers: a logged-in reader's (the floor ignores the token)."""
    return [
        (b"host", b"gateway.bench"),
        (b"user-agent", USER_AGENT.encode()),
        (b"authorization", f"Bearer {token}".encode()),
        (b"accept", b"*/*"),
    ]


def main() -> None:
    """Start Redis and the no-op services, then measure floor and gateway."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the gateway")
    parser.add_argument("--top", type=int, default=40, help="rows of the profile")
    args = parser.parse_args()
    # As `python -m gateway` does; the lines go to /dev/null but are formatted and written.
    configure_logging("gateway", "INFO")
    devnull = open(os.devnull, "w")  # lives as long as the process
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    with tempfile.TemporaryDirectory(prefix="gateway-cpu-") as tmp:
        redis_port, article_port, interactive_port = free_port(), free_port(), free_port()
        redis = redis_process(redis_port, Path(tmp))
        redis.start()
        services = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._noop_services",
                "--article-port",
                str(article_port),
                "--interactive-port",
                str(interactive_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(article_port, services)
            _wait_for(interactive_port, services)
            asyncio.run(
                _run(
                    f"redis://127.0.0.1:{redis_port}/0",
                    f"127.0.0.1:{article_port}",
                    f"127.0.0.1:{interactive_port}",
                    args,
                )
            )
        finally:
            services.terminate()
            services.wait(10)
            redis.stop()


if __name__ == "__main__":
    main()

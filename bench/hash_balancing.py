"""Article reads by consistent hash vs round robin: local-cache hit ratio and req/s.

Run ``python -m bench.hash_balancing``. In a temporary directory it starts etcd, the broker
and Redis (:func:`bench.read_path.start_infra`), the user and interactive services, three
article replicas, and two gateways that differ in one setting only: ``hash`` keeps the
default ``peer_balancing`` (``GetPublishedById`` by consistent hash of the article id),
``rr`` sets it to ``{}`` (weighted round robin). Everything finds everything through etcd.

Each article replica keeps at most ``LOCAL_ENTRIES`` reader views in its local cache and
the reader reads ``ARTICLES`` articles at random, twice as many: with the hash each replica
sees only its own third and can keep it all; with round robin every replica sees every
article and holds half of them. That is the case hashing is for (working set larger than
one replica's cache, within all of theirs); with a working set that fits one replica, both
policies end at 100%.

Load: ``wrk`` (:mod:`bench._wrk`) with ``CONNECTIONS`` connections on random article paths,
rr and hash in alternating rounds; each warms up in chunks of ``WARMUP_SECONDS`` until the
hit ratio of two chunks in a row agrees within ``SETTLED`` (the caches start from what the
other policy left), then measures a ``MEASURE_SECONDS`` window. Per window: req/s,
p50/p99, the replicas' local-cache hit ratio (from the ``webook_cache_requests_total``
counters of their ``/metrics``), each replica's share of the lookups, and the article
replicas' CPU per request. Medians of the rounds make two rows: hit ratio hash / rr (goal
>= ``HIT_RATIO_GOAL``) and req/s hash / rr (goal >= ``RATE_GOAL``: hashing must not cost
throughput). The exit code is 1 if a goal is missed.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench._noop_services import CONTENT, TITLE
from bench._report import result
from bench._wrk import Window, load, wrk_binary
from bench.read_path import USER_AGENT, login, pid_of, start_infra, start_process
from devstack.infra import free_port
from devstack.suite import gateway_process, migrate, service_process
from devstack.tls import stack_pki
from services.article.repository.cache import LOCAL_PUBLISHED_CACHE
from services.article.settings import ArticleSettings

REPLICAS = 3
ARTICLES = 300
LOCAL_ENTRIES = 150
CONNECTIONS = 32
ROUNDS = 3
FIRST_WARMUP_SECONDS = 3.0
WARMUP_SECONDS = 2.0
MAX_WARMUP_CHUNKS = 8
SETTLED = 0.03
MEASURE_SECONDS = 5.0
HIT_RATIO_GOAL = 1.5
RATE_GOAL = 0.95
PUBLISHERS = 8
READY_TIMEOUT_S = 60.0
LOCAL_ENTRIES_SETTING = "published_local_cache_entries"


@dataclass
class Gateway:
    """One of the two gateways, the processes its reads cost, and its measured windows."""

    name: str
    url: str
    pids: dict[str, int]
    windows: list[Window] = field(default_factory=list)
    hit_ratios: list[float] = field(default_factory=list)
    shares: list[list[float]] = field(default_factory=list)


@dataclass
class Stack:
    """The running stack: both gateways and the article replicas' metrics addresses."""

    hashed: Gateway
    round_robin: Gateway
    replica_metrics: list[str]


def start_stack(scratch: Path, running: ExitStack) -> Stack:
    """Infrastructure, user, interactive, ``REPLICAS`` article instances, two gateways."""
    if LOCAL_ENTRIES_SETTING not in ArticleSettings.model_fields:
        raise RuntimeError(f"ArticleSettings has no {LOCAL_ENTRIES_SETTING!r} any more")
    # Every gRPC hop over mutual TLS, as in production.
    infra, pids = start_infra(scratch, running, stack_pki(scratch))
    logs = scratch / "logs"
    for service in ("user", "article", "interactive"):
        migrate(service, infra, logs)
    procs = {
        name: service_process(name, infra, free_port(), logs) for name in ("user", "interactive")
    }
    metrics: list[str] = []
    for replica in range(REPLICAS):
        proc = service_process("article", infra, free_port(), logs, replica=replica)
        metrics_port = free_port()
        env = proc.env if proc.env is not None else {}
        env["WEBOOK_ARTICLE_METRICS_PORT"] = str(metrics_port)
        env[f"WEBOOK_ARTICLE_{LOCAL_ENTRIES_SETTING.upper()}"] = str(LOCAL_ENTRIES)
        proc.env = env
        procs[proc.name] = proc
        metrics.append(f"http://127.0.0.1:{metrics_port}/metrics")
    for proc in procs.values():
        start_process(proc, running)
    pids.update({name: pid_of(proc) for name, proc in procs.items()})
    gateways = []
    for name, balancing in (("hash", None), ("rr", "{}")):
        port = free_port()
        proc = gateway_process(infra, port, {}, logs)
        proc.name, proc.log_path = f"gateway-{name}", logs / f"gateway-{name}.log"
        if balancing is not None:
            env = proc.env if proc.env is not None else {}
            env["WEBOOK_GATEWAY_PEER_BALANCING"] = balancing
            proc.env = env
        start_process(proc, running)
        # A read costs its own gateway and every other process but the other gateway.
        gateways.append(
            Gateway(name, f"http://127.0.0.1:{port}", {**pids, "gateway": pid_of(proc)})
        )
    return Stack(gateways[0], gateways[1], metrics)


async def prepare(stack: Stack) -> tuple[list[int], dict[str, str]]:
    """``ARTICLES`` articles published by one user, and the headers of another (the reader)."""
    async with httpx.AsyncClient(
        base_url=stack.hashed.url, headers={"User-Agent": USER_AGENT}, timeout=30
    ) as http:
        author, reader = await login(http), await login(http)
        gate = asyncio.Semaphore(PUBLISHERS)

        async def publish(n: int) -> int:
            async with gate:
                body = {"title": f"{TITLE} #{n}", "content": CONTENT}
                answer = await http.post("/articles/publish", json=body, headers=author)
            article_id = answer.json().get("data")
            if not isinstance(article_id, int) or not article_id:
                raise RuntimeError(f"publish failed: {answer.text}")
            return article_id

        ids = list(await asyncio.gather(*(publish(n) for n in range(ARTICLES))))
    for gateway in (stack.hashed, stack.round_robin):
        await _wait_for_replicas(gateway, ids[0], reader)
    return ids, reader


async def _wait_for_replicas(gateway: Gateway, article_id: int, reader: dict[str, str]) -> None:
    """Read through ``gateway`` until its balancer holds every article replica as healthy."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=gateway.url, headers=reader, timeout=10) as http:
        while True:
            read = await http.get(f"/articles/pub/{article_id}")
            if read.status_code != 200:
                raise RuntimeError(f"{gateway.name}: reading failed: {read.text}")
            text = (await http.get("/metrics")).text
            healthy = _sample(
                text, "webook_balancer_endpoints", {"service": "article", "health": "healthy"}
            )
            if healthy == REPLICAS:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{gateway.name} sees {healthy} article replicas, not {REPLICAS}"
                )
            await asyncio.sleep(0.5)


def _sample(text: str, name: str, labels: Mapping[str, str]) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def cache_lookups(metrics_urls: list[str]) -> list[tuple[float, float]]:
    """(hits, misses) of the local reader-view cache of each article replica, so far."""
    out = []
    for url in metrics_urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        hits = _sample(
            text, "webook_cache_requests_total", {"cache": LOCAL_PUBLISHED_CACHE, "result": "hit"}
        )
        misses = _sample(
            text, "webook_cache_requests_total", {"cache": LOCAL_PUBLISHED_CACHE, "result": "miss"}
        )
        out.append((hits, misses))
    return out


def measure(
    stack: Stack, gateway: Gateway, paths: list[str], reader: dict[str, str], warmup: float
) -> Window:
    """Warm up, then one measured window through ``gateway`` with the cache counters around it."""

    def reads(seconds: float) -> Window:
        return load(
            gateway.url,
            headers=reader,
            processes=gateway.pids,
            connections=CONNECTIONS,
            seconds=seconds,
            warmup=0,
            paths=paths,
        )

    # The replicas' caches hold what the previous policy left: read until the hit ratio
    # settles (two chunks in a row within SETTLED of each other), so that the window
    # measures this policy's steady state however fast the machine serves.
    previous = -1.0
    for _ in range(MAX_WARMUP_CHUNKS):
        before = cache_lookups(stack.replica_metrics)
        reads(warmup)
        ratio, _ = hit_ratio(before, cache_lookups(stack.replica_metrics))
        if abs(ratio - previous) <= SETTLED:
            break
        previous = ratio
    before = cache_lookups(stack.replica_metrics)
    window = reads(MEASURE_SECONDS)
    ratio, shares = hit_ratio(before, cache_lookups(stack.replica_metrics))
    gateway.windows.append(window)
    gateway.hit_ratios.append(ratio)
    gateway.shares.append(shares)
    return window


def hit_ratio(
    before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> tuple[float, list[float]]:
    """Hit ratio of all replicas between two readings, and each replica's share of lookups."""
    hits = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
    lookups = [a[0] + a[1] - b[0] - b[1] for a, b in zip(after, before, strict=True)]
    total = max(sum(lookups), 1)
    return sum(hits) / total, [n / total for n in lookups]


def _median(values: list[float]) -> float:
    return statistics.median(values)


def article_cpu_ms(window: Window) -> float:
    """CPU ms per request of all article replicas together."""
    return sum(
        ms for name, ms in window.cpu_ms_per_request().items() if name.startswith("article-")
    )


def run(stack: Stack, article_ids: list[int], reader: dict[str, str]) -> bool:
    """Alternating rounds; prints every window and the two rows; whether both goals are met."""
    paths = [f"/articles/pub/{article_id}" for article_id in article_ids]
    print(
        f"load: wrk, {CONNECTIONS} connections, {len(paths)} articles at random, "
        f"{REPLICAS} article replicas with {LOCAL_ENTRIES} local entries each; "
        f"warm-up in {WARMUP_SECONDS:.0f}s chunks ({FIRST_WARMUP_SECONDS:.0f}s in round 1) "
        f"until the hit ratio settles, "
        f"{MEASURE_SECONDS:.0f}s measured, {ROUNDS} rounds"
    )
    for round_no in range(ROUNDS):
        warmup = FIRST_WARMUP_SECONDS if round_no == 0 else WARMUP_SECONDS
        pair = (stack.round_robin, stack.hashed)
        for gateway in pair if round_no % 2 == 0 else pair[::-1]:
            window = measure(stack, gateway, paths, reader, warmup)
            shares = ", ".join(f"{share:.0%}" for share in gateway.shares[-1])
            print(
                f"round {round_no + 1}: {gateway.name:<4} {window.rate:7.0f} req/s, "
                f"p50 {window.p50_ms:6.1f} ms, p99 {window.p99_ms:6.1f} ms, "
                f"local hits {gateway.hit_ratios[-1]:6.1%} (replica shares {shares}), "
                f"article CPU {article_cpu_ms(window):.3f} ms/req"
            )
    hashed, rr = stack.hashed, stack.round_robin
    hit = {g.name: _median(g.hit_ratios) for g in (hashed, rr)}
    rate = {g.name: _median([w.rate for w in g.windows]) for g in (hashed, rr)}
    cpu = {g.name: _median([article_cpu_ms(w) for w in g.windows]) for g in (hashed, rr)}
    for g in (rr, hashed):
        print(
            f"{g.name:<4} median {rate[g.name]:7.0f} req/s, local hits {hit[g.name]:6.1%}, "
            f"article replicas' CPU {cpu[g.name]:.3f} ms/req"
        )
    hit_ratio = hit["hash"] / hit["rr"] if hit["rr"] else float("inf")
    rate_ratio = rate["hash"] / rate["rr"]
    result(
        f"article local-cache hit ratio, hash vs round robin ({REPLICAS} replicas, "
        f"{ARTICLES} articles, {LOCAL_ENTRIES} entries each)",
        f"{hit['hash']:.0%}",
        f"{hit['rr']:.0%}",
        hit_ratio,
        f">= {HIT_RATIO_GOAL}",
        hit_ratio >= HIT_RATIO_GOAL,
    )
    result(
        f"GET /articles/pub/:id, hash vs round robin ({REPLICAS} article replicas, wrk)",
        f"{rate['hash']:.0f} req/s",
        f"{rate['rr']:.0f} req/s",
        rate_ratio,
        f">= {RATE_GOAL}",
        rate_ratio >= RATE_GOAL,
    )
    return hit_ratio >= HIT_RATIO_GOAL and rate_ratio >= RATE_GOAL


def main() -> int:
    """Start everything, measure, print, stop everything."""
    wrk_binary()  # before starting anything: without wrk there is nothing to measure
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as running:
        stack = start_stack(Path(tmp), running)
        article_ids, reader = asyncio.run(prepare(stack))
        elapsed = time.monotonic() - started
        print(f"stack up and {len(article_ids)} articles published in {elapsed:.1f}s")
        met = run(stack, article_ids, reader)
    print(f"total {time.monotonic() - started:.1f}s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""The hot-article ranking end to end: users, the scheduler, the ranking service, the gateway.

Real users publish and like articles through the gateway; the operator runs the scheduler's
declared job ``ranking.refresh`` now with ``webookctl jobs run-now`` (over mutual TLS with the
operator's certificate); the scheduler's gRPC executor calls the ranking service's
``RunRanking`` under the run's fencing token, found through etcd; and ``GET
/articles/ranking`` shows the articles in the order their likes give. A like that changes
the order shows after the next run.

A Redis outage: a ranking process of the test's own, on a Redis the test starts and stops
(the stack's Redis is shared by the whole session), with a one-second TTL and not
registered in etcd, behind a gateway of its own that calls it at its address. Once its
Redis is down, its expired copy is still served, flagged ``stale`` and counted in
``webook_ranking_stale_serves_total``.

Other tests of the session publish and like articles too, so only the order of this
test's own articles is asserted, among the whole ranking.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.credentials import write_redis_acl_file
from devstack.infra import ManagedProcess, free_port, redis_process, stop_all
from devstack.suite import gateway_process, service_process
from devstack.tls import OPERATOR
from kit.cache.tests.outage import eventually
from tests.e2e.conftest import USER_AGENT, RunningStack, signed_up
from webook.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from webookctl.tests.run import run

pytestmark = pytest.mark.e2e

RANKING_JOB: Final = "ranking.refresh"
# How long a run or a read may take to show on a loaded two-core machine; a bound, not a
# measurement: every wait below is on a condition.
DEADLINE_S: Final = 90.0
# Likes per article: distinct counts, so that the order is known (equal scores would be
# ordered by article id); at least two each, since the score counts likes minus one.
LIKES: Final = (3, 5, 2)
# The ranking holds the top 100 by default: this test's articles, with likes, are in it.
PAGE: Final = 100


def now_ms() -> int:
    """The wall clock in ms, as the scheduler records its runs."""
    return time.time_ns() // 1_000_000


@dataclasses.dataclass(frozen=True)
class Operator:
    """``webookctl jobs`` as the operator, at the stack's scheduler."""

    tls_flags: tuple[str, ...]
    address: str

    async def jobs(self, *argv: str) -> Any:
        """``webookctl jobs <argv> --json``: the JSON document; fails on a non-zero status."""
        result = await run(*self.tls_flags, "jobs", *argv, "--address", self.address, "--json")
        assert result.status == 0, result.err
        return result.json()

    async def job(self, name: str) -> dict[str, Any]:
        """The job ``name`` as ``jobs list`` shows it."""
        jobs: list[dict[str, Any]] = (await self.jobs("list"))["jobs"]
        found = [j for j in jobs if j["name"] == name]
        assert found, f"no job {name} in the scheduler: {[j['name'] for j in jobs]}"
        return found[0]


@pytest.fixture
def operator(stack: RunningStack) -> Operator:
    """The operator's ``webookctl``, with the certificate the scheduler's admin API accepts."""
    pki = stack.infra.pki
    assert pki is not None, "the e2e stack runs over mutual TLS"
    cert, key = pki.files(OPERATOR)
    (scheduler,) = stack.services["scheduler"]
    assert scheduler.env is not None
    port = scheduler.env["WEBOOK_SCHEDULER_GRPC_PORT"]
    flags = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(pki.ca_file))
    return Operator(flags, f"127.0.0.1:{port}")


async def publish_liked(client: httpx.AsyncClient, likes: Sequence[int], prefix: str) -> list[int]:
    """A new author publishes one article per entry of ``likes``, each liked by that many
    new readers; the article ids."""
    author = await signed_up(client, f"{prefix}-author")
    readers = [await signed_up(client, f"{prefix}-reader") for _ in range(max(likes))]
    ids = []
    for index in range(len(likes)):
        draft = {"title": f"{prefix} {index}", "content": "<p>hot or not</p>"}
        published = (await client.post("/articles/publish", json=draft, headers=author)).json()
        assert published["code"] == 0, published
        ids.append(int(published["data"]))
    for article_id, count in zip(ids, likes, strict=True):
        await like(client, article_id, readers[:count])
    return ids


async def like(
    client: httpx.AsyncClient, article_id: int, readers: Sequence[dict[str, str]]
) -> None:
    """Each of ``readers`` likes ``article_id``."""
    for reader in readers:
        body = {"id": article_id, "like": True}
        answer = (await client.post("/articles/pub/like", json=body, headers=reader)).json()
        assert answer["code"] == 0, answer


async def ranking_page(client: httpx.AsyncClient) -> dict[str, Any]:
    """``GET /articles/ranking`` (public: no login), its ``data``."""
    answer = (await client.get("/articles/ranking", params={"limit": PAGE})).json()
    assert answer["code"] == 0, answer
    data: dict[str, Any] = answer["data"]
    return data


def order_of(page: dict[str, Any], ids: Sequence[int]) -> list[int]:
    """The articles of ``ids`` that ``page`` ranks, in its order."""
    return [int(a["id"]) for a in page["articles"] if int(a["id"]) in ids]


async def run_job_now(operator: Operator, since_ms: int) -> dict[str, Any]:
    """``webookctl jobs run-now ranking.refresh``, then wait for a run started at or after
    ``since_ms`` to end; that run (as ``jobs history`` shows it).

    A run-now sent while a run is in progress is overwritten by that run's release (it sets
    the next cron time): when the job is free again with its next run in the future and no
    such run happened, it is sent again.
    """
    await operator.jobs("run-now", RANKING_JOB)
    ended: list[dict[str, Any]] = []

    async def a_run_ended() -> bool:
        runs = (await operator.jobs("history", RANKING_JOB))["executions"]
        ended[:] = [r for r in runs if r["started_ms"] >= since_ms and r["ended_ms"]]
        if ended:
            return True
        job = await operator.job(RANKING_JOB)
        if not job["holder"] and job["next_run_ms"] > now_ms():
            await operator.jobs("run-now", RANKING_JOB)
        return False

    await eventually(a_run_ended, f"a run of {RANKING_JOB} ends", DEADLINE_S)
    return ended[-1]


# Bounds a hang: the stack may start within the first test, and each wait has DEADLINE_S.
@pytest.mark.timeout(300)
async def test_the_scheduled_job_ranks_articles_by_likes_through_the_gateway(
    client: httpx.AsyncClient, operator: Operator
) -> None:
    job = await operator.job(RANKING_JOB)
    assert job["executor_kind"] == "grpc", job
    assert job["executor_config"]["service"] == "ranking", job
    assert job["executor_config"]["method"] == "webook.ranking.v1.RankingService/RunRanking"

    ids = await publish_liked(client, LIKES, "ranking-e2e")
    expected = [ids[1], ids[0], ids[2]]  # 5, 3 and 2 likes
    ran = await run_job_now(operator, now_ms())
    assert ran["outcome"] == "ok", ran
    assert ran["token"] > 0

    async def ranked(order: list[int]) -> bool:
        return order_of(await ranking_page(client), ids) == order

    await eventually(lambda: ranked(expected), "the ranking shows the liked order", DEADLINE_S)
    page = await ranking_page(client)
    assert page["stale"] is False
    assert page["computedAt"]
    first = next(a for a in page["articles"] if a["id"] == ids[1])
    assert (first["likeCnt"], first["title"]) == (5, "ranking-e2e 1")
    assert first["score"] > 0

    # Four more likes take the least liked article to the top (6 likes) at the next run.
    newcomers = [await signed_up(client, "ranking-e2e-late") for _ in range(4)]
    await like(client, ids[2], newcomers)
    again = await run_job_now(operator, now_ms())
    assert again["outcome"] == "ok", again
    assert again["token"] > ran["token"]
    await eventually(
        lambda: ranked([ids[2], ids[1], ids[0]]), "the new like changes the order", DEADLINE_S
    )


@dataclasses.dataclass(frozen=True)
class OwnRanking:
    """A ranking process on a Redis of its own, and a gateway that calls it."""

    redis: ManagedProcess
    address: str
    metrics_url: str
    gateway_url: str


@pytest.fixture
def own_ranking(stack: RunningStack, tmp_path: Path) -> Iterator[OwnRanking]:
    """A ranking process with a one-second TTL, reading Redis every 0.1 s, on a Redis with
    the stack's users that the test may stop; not registered in etcd (the stack's gateway
    and scheduler never see it), it finds article and interactive there. A gateway of its
    own calls it at its address. Everything is stopped after."""
    credentials = stack.infra.credentials
    assert credentials is not None
    redis_port = free_port()
    redis = redis_process(
        redis_port, tmp_path, acl_file=write_redis_acl_file(tmp_path / "users.acl", credentials)
    )
    infra = dataclasses.replace(
        stack.infra,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        overrides={
            "ranking": {
                "WEBOOK_RANKING_TTL_SECONDS": "1",
                "WEBOOK_RANKING_REFRESH_INTERVAL_SECONDS": "0.1",
                "WEBOOK_RANKING_REGISTER_INSTANCE": "false",
            }
        },
    )
    grpc_port, metrics_port, gateway_port = free_port(), free_port(), free_port()
    ranking = service_process("ranking", infra, grpc_port, stack.log_dir, metrics_port=metrics_port)
    ranking.name = "ranking-own-redis"
    ranking.log_path = stack.log_dir / "ranking-own-redis.log"
    address = f"127.0.0.1:{grpc_port}"
    gateway = gateway_process(stack.infra, gateway_port, {"ranking": address}, stack.log_dir)
    gateway.name = "gateway-own-ranking"
    gateway.log_path = stack.log_dir / "gateway-own-ranking.log"
    started: list[ManagedProcess] = []
    try:
        for proc in (redis, ranking, gateway):
            started.append(proc.start(timeout=60))
        yield OwnRanking(
            redis,
            address,
            f"http://127.0.0.1:{metrics_port}/metrics",
            f"http://127.0.0.1:{gateway_port}",
        )
    finally:
        stop_all(list(reversed(started)))


@pytest.fixture
async def own_client(own_ranking: OwnRanking) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the gateway in front of the test's own ranking process."""
    async with httpx.AsyncClient(
        base_url=own_ranking.gateway_url, headers={"User-Agent": USER_AGENT}, timeout=10
    ) as http:
        yield http


async def stale_serves(metrics_url: str) -> float:
    """The process's ``webook_ranking_stale_serves_total``."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(metrics_url)).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "webook_ranking_stale_serves_total":
                return float(sample.value)
    raise AssertionError("webook_ranking_stale_serves_total is not exported")


@pytest.mark.timeout(300)
async def test_with_redis_down_the_expired_ranking_is_served_stale_and_counted(
    stack: RunningStack,
    client: httpx.AsyncClient,
    own_ranking: OwnRanking,
    own_client: httpx.AsyncClient,
) -> None:
    ids = await publish_liked(client, (4, 2), "ranking-stale")
    # The job as the scheduler calls it (the scheduler's certificate, a fencing token): this
    # process is not in etcd, where the scheduler's executor finds the ranking service.
    async with stack.infra.channel(own_ranking.address, "ranking", as_identity="scheduler") as ch:
        ran = await ranking_pb2_grpc.RankingServiceStub(ch).RunRanking(
            ranking_pb2.RunRankingRequest(fencing_token=1), timeout=DEADLINE_S
        )
    assert ran.ranked >= 2
    assert await stale_serves(own_ranking.metrics_url) == 0
    own_ranking.redis.stop()

    async def served_stale() -> bool:
        page = await ranking_page(own_client)
        return bool(page["stale"]) and order_of(page, ids) == ids

    # Past its TTL, with Redis unreadable: the last ranking, flagged stale, not an empty page.
    await eventually(served_stale, "the expired ranking is served stale", DEADLINE_S)
    assert await stale_serves(own_ranking.metrics_url) >= 1
    # The stack's own ranking, on the session's Redis, is not affected.
    assert (await ranking_page(client))["stale"] is False

"""The ``http`` and ``grpc`` executors against real callees on free loopback ports.

HTTP (:class:`~services.scheduler.tests.callees.HttpCallee`, a real HTTP/1.1 server): what
is sent (method, headers, JSON body), 2xx ok, 409 fenced without retry, 5xx retried then ok
or failed, other 4xx failed without retry, timeouts, connection refused, and retries stopped
once the lease is lost. gRPC (:class:`~services.scheduler.tests.callees.FakeRanking` served
by a real ``ServiceRunner``, reached through ``ServiceClients`` at a static address or
through etcd): the token and job in metadata, a stale token fenced, the service's own
failure and an unreachable service failed, and under mutual TLS the callee's authoriser
admitting the scheduler's certificate only.
Then the scheduler loop on SQLite and MariaDB records remote runs ``ok``/``fenced``/
``failed`` like local ones, and the real process (``build_runner``) runs both kinds.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY

from devstack.infra import free_port
from kit.config import ClientSettings, GrpcServiceSettings, Mode
from kit.grpcx.client import ServiceClients
from kit.grpcx.server import ServiceRunner
from kit.security.pki import Pki, ensure_local_pki
from kit.security.tls import ClientTls, TlsFiles
from services.scheduler.__main__ import build_runner
from services.scheduler.domain import ExecutorKind, Outcome
from services.scheduler.executors import Executor, ExecutorRegistry, RunContext, StaleToken
from services.scheduler.remote import (
    FENCING_TOKEN_HEADER,
    INSTANCE_HEADER,
    JOB_HEADER,
    GrpcExecutor,
    HttpExecutor,
    RemoteCallFailed,
    http_client,
)
from services.scheduler.scheduler import Scheduler
from services.scheduler.service import JobService
from services.scheduler.settings import SchedulerSettings
from services.scheduler.tests.callees import Answer, FakeRanking, HttpCallee, RankingCall
from services.scheduler.tests.conftest import FakeClock, Units
from webook.scheduler.v1 import scheduler_pb2
from webook.scheduler.v1.scheduler_pb2_grpc import SchedulerServiceStub

if TYPE_CHECKING:
    from webook.scheduler.v1.scheduler_pb2_grpc import SchedulerServiceAsyncStub

pytestmark = pytest.mark.integration

# Bounds a hang on a loaded two-core machine; conditions are polled, never slept on.
WAIT_S = 60.0
RUN_RANKING = "webook.ranking.v1.RankingService/RunRanking"


def calls(kind: str, outcome: str) -> float:
    """``webook_scheduler_remote_calls_total{kind,outcome}`` now."""
    sample = REGISTRY.get_sample_value(
        "webook_scheduler_remote_calls_total", {"kind": kind, "outcome": outcome}
    )
    return sample or 0.0


def fencing_rejections() -> float:
    """``webook_scheduler_fencing_rejections_total{stage="executor"}`` now."""
    sample = REGISTRY.get_sample_value(
        "webook_scheduler_fencing_rejections_total", {"stage": "executor"}
    )
    return sample or 0.0


@dataclass
class Holder:
    """Answers ``still_holder()``; counts the questions."""

    holds: bool = True
    asked: int = 0

    async def __call__(self) -> bool:
        self.asked += 1
        return self.holds


def run_context(
    config: Mapping[str, Any], *, token: int = 5, holder: Holder | None = None
) -> RunContext:
    """The context of a run of job ``export`` (id 17) under ``token``."""
    return RunContext(
        job_id=17,
        job_name="export",
        token=token,
        instance="sched-a",
        config=config,
        scheduled_ms=1_700_000_000_000,
        check_holder=holder or Holder(),
    )


@pytest.fixture
async def callee() -> AsyncIterator[HttpCallee]:
    """A real HTTP server on a free port."""
    server = await HttpCallee().start()
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The scheduler's HTTP client."""
    client = http_client()
    yield client
    await client.aclose()


@pytest.fixture
def http_executor(http: httpx.AsyncClient) -> HttpExecutor:
    """The HTTP executor with a short backoff (what is tested is the order, not the delay)."""
    return HttpExecutor(http, backoff_s=0.01)


# HTTP -------------------------------------------------------------------------------------


async def test_http_posts_the_token_job_and_body_and_a_2xx_is_ok(
    callee: HttpCallee, http_executor: HttpExecutor
) -> None:
    ok = calls("http", "ok")
    callee.script = [Answer(204, b"")]
    config = {"url": callee.url("/hooks/export?x=1"), "body": {"table": "users"}}
    await http_executor(run_context(config, token=5))

    (request,) = callee.received
    assert (request.method, request.target) == ("POST", "/hooks/export?x=1")
    assert request.headers[FENCING_TOKEN_HEADER.lower()] == "5"
    assert request.headers[JOB_HEADER.lower()] == "export"
    assert request.headers[INSTANCE_HEADER.lower()] == "sched-a"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "job": "export",
        "job_id": 17,
        "token": 5,
        "scheduled_ms": 1_700_000_000_000,
        "instance": "sched-a",
        "body": {"table": "users"},
    }
    assert calls("http", "ok") == ok + 1

    # Without a body in the config the body's "body" is an empty object.
    await http_executor(run_context({"url": callee.url()}, token=6))
    assert callee.received[1].json()["body"] == {}
    assert callee.received[1].headers[FENCING_TOKEN_HEADER.lower()] == "6"


async def test_http_409_is_a_stale_token_and_is_not_retried(
    callee: HttpCallee, http_executor: HttpExecutor
) -> None:
    fenced = calls("http", "fenced")
    callee.script = [Answer(409, b"token 5 < 9")]
    holder = Holder()
    with pytest.raises(StaleToken) as caught:
        await http_executor(run_context({"url": callee.url(), "retries": 3}, holder=holder))
    assert caught.value.token == 5
    assert "HTTP 409" in str(caught.value)
    assert "token 5 < 9" in str(caught.value)
    assert len(callee.received) == 1
    assert holder.asked == 0
    assert calls("http", "fenced") == fenced + 1


async def test_http_5xx_is_retried_while_still_the_holder(
    callee: HttpCallee, http_executor: HttpExecutor
) -> None:
    server_errors = calls("http", "server_error")
    callee.script = [Answer(500, b"boom"), Answer(503, b"busy"), Answer(200)]
    holder = Holder()
    await http_executor(run_context({"url": callee.url(), "retries": 2}, holder=holder))
    assert len(callee.received) == 3
    # The same run: every attempt carries the same token.
    assert {r.headers[FENCING_TOKEN_HEADER.lower()] for r in callee.received} == {"5"}
    assert holder.asked == 2
    assert calls("http", "server_error") == server_errors + 2


async def test_http_5xx_every_time_fails_after_the_retries(
    callee: HttpCallee, http_executor: HttpExecutor
) -> None:
    callee.script = [Answer(502, b"bad gateway")] * 3
    with pytest.raises(RemoteCallFailed) as caught:
        await http_executor(run_context({"url": callee.url(), "retries": 1}))
    assert len(callee.received) == 2
    assert "HTTP 502: bad gateway (2 attempts)" in str(caught.value)


@pytest.mark.parametrize("status", [400, 404, 422, 302])
async def test_http_other_answers_fail_at_once(
    callee: HttpCallee, http_executor: HttpExecutor, status: int
) -> None:
    refused = calls("http", "refused")
    callee.script = [Answer(status, b"no such hook")]
    with pytest.raises(RemoteCallFailed) as caught:
        await http_executor(run_context({"url": callee.url(), "retries": 5}))
    assert len(callee.received) == 1
    assert f"HTTP {status}: no such hook" in str(caught.value)
    assert calls("http", "refused") == refused + 1


async def test_http_retries_stop_once_the_lease_is_lost(
    callee: HttpCallee, http_executor: HttpExecutor
) -> None:
    callee.script = [Answer(503, b"busy")]
    holder = Holder(holds=False)
    with pytest.raises(StaleToken) as caught:
        await http_executor(run_context({"url": callee.url(), "retries": 5}, holder=holder))
    assert "lease lost" in str(caught.value)
    assert len(callee.received) == 1
    assert holder.asked == 1


async def test_http_a_callee_that_does_not_answer_in_time_is_retried_then_failed(
    callee: HttpCallee, http_executor: HttpExecutor
) -> None:
    timeouts = calls("http", "timeout")
    release = asyncio.Event()
    callee.script = [Answer(hold=release), Answer(hold=release)]
    try:
        with pytest.raises(RemoteCallFailed) as caught:
            await http_executor(run_context({"url": callee.url(), "timeout_s": 2, "retries": 1}))
    finally:
        release.set()
    assert "no answer within 2 s (2 attempts)" in str(caught.value)
    assert len(callee.received) == 2
    assert calls("http", "timeout") == timeouts + 2


async def test_http_connection_refused_is_retried_then_failed(http_executor: HttpExecutor) -> None:
    unreachable = calls("http", "unreachable")
    url = f"http://127.0.0.1:{free_port()}/nobody"
    with pytest.raises(RemoteCallFailed) as caught:
        await http_executor(run_context({"url": url, "retries": 2}))
    assert "ConnectError" in str(caught.value)
    assert "(3 attempts)" in str(caught.value)
    assert calls("http", "unreachable") == unreachable + 3


# gRPC -------------------------------------------------------------------------------------


@dataclass
class Ranking:
    """A fake ranking service behind a real runner."""

    fake: FakeRanking
    runner: ServiceRunner

    @property
    def address(self) -> str:
        """Where it listens."""
        return f"127.0.0.1:{self.runner.port}"


async def serve_ranking(**settings: Any) -> Ranking:
    """A started :class:`FakeRanking` runner with ``settings``."""
    fake = FakeRanking()
    runner = ServiceRunner(
        "ranking",
        GrpcServiceSettings(
            mode=Mode.TEST, grpc_port=0, metrics_port=-1, shutdown_grace=0.5, **settings
        ),
        registration=None,
    )
    runner.mount(fake)
    await runner.start()
    return Ranking(fake, runner)


@pytest.fixture
async def ranking() -> AsyncIterator[Ranking]:
    """The fake ranking service, plaintext."""
    served = await serve_ranking()
    yield served
    await served.runner.stop()


@pytest.fixture
async def clients(ranking: Ranking) -> AsyncIterator[ServiceClients]:
    """Service clients finding ``ranking`` at its address."""
    made = ServiceClients(registry=None, peers={"ranking": ranking.address})
    yield made
    await made.close()


def grpc_config(**extra: Any) -> dict[str, Any]:
    """The config of a job calling RunRanking."""
    return {"service": "ranking", "method": RUN_RANKING, **extra}


async def test_grpc_sends_the_token_and_job_in_metadata(
    ranking: Ranking, clients: ServiceClients
) -> None:
    ok = calls("grpc", "ok")
    executor = GrpcExecutor(clients)
    await executor(run_context(grpc_config(timeout_s=30), token=3))
    await executor(run_context(grpc_config(request={"fencing_token": "4"}), token=4))
    assert ranking.fake.calls == [RankingCall(3, "export", 0), RankingCall(4, "export", 4)]
    assert ranking.fake.highest == 4
    assert calls("grpc", "ok") == ok + 2


async def test_grpc_finds_the_service_through_discovery(etcd_endpoint: str) -> None:
    prefix = f"/test-{uuid.uuid4().hex[:8]}/services"
    served = await serve_ranking(
        etcd_endpoints=[etcd_endpoint],
        registry_prefix=prefix,
        registry_ttl=5,
        deregister_drain_delay=0.1,
    )
    discovered = ServiceClients.from_settings(
        ClientSettings(etcd_endpoints=[etcd_endpoint], registry_prefix=prefix)
    )
    try:
        await GrpcExecutor(discovered)(run_context(grpc_config(timeout_s=30), token=8))
    finally:
        await discovered.close()
        await served.runner.stop()
    assert served.fake.calls == [RankingCall(8, "export", 0)]


async def test_grpc_a_stale_token_is_fenced(ranking: Ranking, clients: ServiceClients) -> None:
    fenced = calls("grpc", "fenced")
    ranking.fake.highest = 9
    with pytest.raises(StaleToken) as caught:
        await GrpcExecutor(clients)(run_context(grpc_config(), token=5))
    assert (caught.value.token, caught.value.highest) == (5, 9)
    assert "fencing token 5 is stale" in str(caught.value)
    assert calls("grpc", "fenced") == fenced + 1


async def test_grpc_the_services_own_failure_fails_the_run(
    ranking: Ranking, clients: ServiceClients
) -> None:
    server_errors = calls("grpc", "server_error")
    ranking.fake.failing = True
    with pytest.raises(RemoteCallFailed) as caught:
        await GrpcExecutor(clients)(run_context(grpc_config()))
    assert "UNAVAILABLE RANKING_JOB_FAILED: a peer is down" in str(caught.value)
    assert len(ranking.fake.calls) == 1  # not retried
    assert calls("grpc", "server_error") == server_errors + 1


async def test_grpc_an_unreachable_service_fails_the_run() -> None:
    unreachable = calls("grpc", "unreachable")
    nowhere = ServiceClients(registry=None, peers={"ranking": f"127.0.0.1:{free_port()}"})
    try:
        with pytest.raises(RemoteCallFailed) as caught:
            await GrpcExecutor(nowhere)(run_context(grpc_config(timeout_s=20)))
    finally:
        await nowhere.close()
    assert f"/{RUN_RANKING} on ranking: UNAVAILABLE" in str(caught.value)
    assert calls("grpc", "unreachable") == unreachable + 1


def tls_of(pki: Pki, name: str) -> dict[str, str]:
    """The TLS settings of workload ``name``."""
    cert, key = pki.files(name)
    return {"tls_cert_file": str(cert), "tls_key_file": str(key), "tls_ca_file": str(pki.ca_file)}


async def test_grpc_under_mutual_tls_only_the_scheduler_may_run_the_job(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path / "pki", ["ranking", "scheduler", "gateway"])
    served = await serve_ranking(**tls_of(pki, "ranking"))
    made: list[ServiceClients] = []

    def clients_as(workload: str) -> ServiceClients:
        cert, key = pki.files(workload)
        tls = ClientTls(TlsFiles(cert, key, pki.ca_file))
        made.append(ServiceClients(registry=None, peers={"ranking": served.address}, tls=tls))
        return made[-1]

    try:
        await GrpcExecutor(clients_as("scheduler"))(run_context(grpc_config(), token=2))
        assert served.fake.calls == [RankingCall(2, "export", 0)]
        # The proto declares RunRanking's callers: the gateway's certificate is refused.
        with pytest.raises(RemoteCallFailed, match="PERMISSION_DENIED"):
            await GrpcExecutor(clients_as("gateway"))(run_context(grpc_config(), token=3))
        assert len(served.fake.calls) == 1
    finally:
        for clients in made:
            await clients.close()
        await served.runner.stop()


# The scheduler loop ---------------------------------------------------------------------


@dataclass
class Loop:
    """The admin service and one scheduler instance, over the test database."""

    service: JobService
    scheduler: Scheduler
    clock: FakeClock

    async def due(self, name: str, kind: ExecutorKind, config: Mapping[str, Any]) -> None:
        """Add a job and move the clock to its first run time."""
        job = await self.service.add(
            name, "* * * * *", executor_kind=kind.value, executor_config=config
        )
        self.clock.now_ms = max(self.clock.now_ms, job.next_run_ms)

    async def history(self, name: str) -> list[tuple[int, Outcome]]:
        """``(token, outcome)`` of the runs of ``name``, newest first."""
        return [(run.token, run.outcome) for run in await self.service.history(name)]


@pytest.fixture
def loop(
    units_factory: Callable[[], Units],
    clock: FakeClock,
    http_executor: HttpExecutor,
    clients: ServiceClients,
) -> Loop:
    """One instance with both remote executors."""
    registry = ExecutorRegistry()
    remote: dict[ExecutorKind, Executor] = {
        ExecutorKind.HTTP: http_executor,
        ExecutorKind.GRPC: GrpcExecutor(clients),
    }
    return Loop(
        JobService(units_factory(), registry, clock=clock),
        Scheduler(units_factory(), registry, instance="s1", clock=clock, remote=remote),
        clock,
    )


async def test_the_loop_records_http_runs_like_local_ones(loop: Loop, callee: HttpCallee) -> None:
    rejected = fencing_rejections()
    await loop.due("export", ExecutorKind.HTTP, {"url": callee.url(), "retries": 0})
    report = await loop.scheduler.tick()
    assert report is not None
    assert (report.token, report.outcome) == (1, Outcome.OK)
    assert callee.received[0].headers[FENCING_TOKEN_HEADER.lower()] == "1"

    callee.script = [Answer(409, b"stale")]
    loop.clock.advance(60_000)
    report = await loop.scheduler.tick()
    assert report is not None
    assert report.outcome is Outcome.FENCED
    assert "StaleToken" in report.error
    assert "HTTP 409" in report.error
    callee.script = [Answer(500, b"boom")]
    loop.clock.advance(60_000)
    report = await loop.scheduler.tick()
    assert report is not None
    assert report.outcome is Outcome.FAILED
    assert "RemoteCallFailed" in report.error
    assert await loop.history("export") == [
        (3, Outcome.FAILED),
        (2, Outcome.FENCED),
        (1, Outcome.OK),
    ]
    assert fencing_rejections() == rejected + 1


async def test_the_loop_records_grpc_runs_like_local_ones(loop: Loop, ranking: Ranking) -> None:
    rejected = fencing_rejections()
    await loop.due("rank", ExecutorKind.GRPC, grpc_config())
    report = await loop.scheduler.tick()
    assert report is not None
    assert (report.token, report.outcome) == (1, Outcome.OK)
    ranking.fake.highest = 50  # another holder's run got in first
    loop.clock.advance(60_000)
    report = await loop.scheduler.tick()
    assert report is not None
    assert report.outcome is Outcome.FENCED
    assert await loop.history("rank") == [(2, Outcome.FENCED), (1, Outcome.OK)]
    assert fencing_rejections() == rejected + 1
    # Released after the fenced run all the same: the lease was still this instance's.
    assert (await loop.service.get("rank")).holder is None


async def test_a_kind_without_its_executor_here_fails_the_run(
    units_factory: Callable[[], Units], clock: FakeClock
) -> None:
    registry = ExecutorRegistry()
    service = JobService(units_factory(), registry, clock=clock)
    scheduler = Scheduler(units_factory(), registry, instance="s1", clock=clock)
    job = await service.add(
        "orphan", "* * * * *", executor_kind="http", executor_config={"url": "http://x.test/"}
    )
    clock.now_ms = job.next_run_ms
    report = await scheduler.tick()
    assert report is not None
    assert report.outcome is Outcome.FAILED
    assert "executor kind 'http' is not supported by this instance" in report.error


# The process ------------------------------------------------------------------------------


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` until it holds; fail after :data:`WAIT_S`."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def process(database_url: str, ranking: Ranking) -> AsyncIterator[SchedulerServiceAsyncStub]:
    """The real scheduler process, ticking every 50 ms, finding ranking at its address."""
    settings = SchedulerSettings(
        mode=Mode.TEST,
        database_url=database_url,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
        instance_id="remote-test",
        tick_seconds=0.05,
        peers={"ranking": ranking.address},
        # Shorter than any call: a job's call is bounded by its own timeout_s alone.
        client_default_timeout=1e-6,
    )
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield SchedulerServiceStub(channel)
    finally:
        await runner.stop()


async def test_the_process_runs_http_and_grpc_jobs(
    process: SchedulerServiceAsyncStub, callee: HttpCallee, ranking: Ranking
) -> None:
    jobs = {
        "hook": ("http", {"url": callee.url(), "body": {"n": 1}}),
        "ranking.refresh": ("grpc", grpc_config(timeout_s=120)),
    }
    for name, (kind, config) in jobs.items():
        request = scheduler_pb2.AddJobRequest(
            name=name, cron="*/5 * * * *", executor_kind=kind, executor_config=json.dumps(config)
        )
        added = (await process.AddJob(request)).job
        assert (added.executor_kind, json.loads(added.executor_config)) == (kind, config)
        await process.RunNow(scheduler_pb2.RunNowRequest(name=name))

    async def both_ran_ok() -> bool:
        for name in jobs:
            reply = await process.ListExecutions(scheduler_pb2.ListExecutionsRequest(name=name))
            runs = list(reply.executions)
            if not runs or runs[0].outcome != scheduler_pb2.OUTCOME_OK:
                return False
        return True

    await until(both_ran_ok, "both jobs to run ok")
    (posted,) = callee.received
    assert posted.json()["body"] == {"n": 1}
    assert posted.headers[INSTANCE_HEADER.lower()] == "remote-test"
    assert ranking.fake.calls == [RankingCall(1, "ranking.refresh", 0)]

"""Sync → async delivery on SQLite and MariaDB: queueing, claiming, workers, idempotency."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.sql import create_engine, session_factory
from services.sms.domain import (
    Caller,
    DeliveryResult,
    NewSendRecord,
    PhoneRules,
    RecordQuery,
    SendCommand,
    SendRecord,
    SendStatus,
)
from services.sms.errors import SmsInvalidArgument, SmsPermissionDenied, SmsReason, SmsRejected
from services.sms.metrics import SmsMetrics
from services.sms.providers import build_client
from services.sms.providers.failover import FailoverProvider
from services.sms.providers.health import HealthPolicy
from services.sms.providers.retry import RetryingProvider
from services.sms.repository.dao import SqlUnitOfWork
from services.sms.sms_service import DeliveryPolicy, SmsService
from services.sms.tests.fakes import (
    FakeAliyun,
    FakeServer,
    FakeTencent,
    aliyun_settings,
    tencent_settings,
)
from services.sms.worker import DeliveryWorker

pytestmark = pytest.mark.integration

APP = Caller("app", frozenset({"login_code", "notice"}))
ADMIN = Caller("ops", frozenset(), admin=True)
DETECTING = HealthPolicy(
    consecutive_timeouts=0,
    consecutive_throttles=0,
    latency_rise=0,
    long_tail_ratio=0,
    error_rate=0.5,
    error_window=4,
    min_samples=2,
    cooldown_s=30,
)
QUIET = HealthPolicy(
    consecutive_timeouts=0,
    consecutive_throttles=0,
    latency_rise=0,
    long_tail_ratio=0,
    error_rate=0,
)


class OffsetClock:
    """A clock plus an offset tests move forward instead of sleeping."""

    def __init__(self, base: Callable[[], float] = time.time) -> None:
        self.base = base
        self.offset = 0.0

    def __call__(self) -> float:
        return self.base() + self.offset


@dataclass
class Instance:
    """One "process": its own engine, provider chain, service and worker."""

    engine: AsyncEngine
    metrics: SmsMetrics
    sms: SmsService
    failover: FailoverProvider
    worker: DeliveryWorker
    clock: OffsetClock
    health_clock: OffsetClock
    uow: Callable[[], SqlUnitOfWork]


@dataclass
class Cluster:
    database_url: str
    http: httpx.AsyncClient
    tencent_endpoint: str
    aliyun_endpoint: str
    instances: list[Instance] = field(default_factory=list)

    def instance(
        self,
        name: str,
        *,
        policy: HealthPolicy = DETECTING,
        delivery: DeliveryPolicy | None = None,
        batch: int = 10,
    ) -> Instance:
        engine = create_engine(self.database_url)
        sessions = session_factory(engine)
        metrics = SmsMetrics(CollectorRegistry())
        health_clock = OffsetClock(time.monotonic)
        failover = FailoverProvider(
            [
                # A generous vendor timeout: a vendor that records a message but answers
                # after the timeout on a loaded machine would be failed over, and the other
                # vendor would send it again (at least once is the contract on timeouts).
                build_client(tencent_settings(self.tencent_endpoint, timeout_s=10), self.http),
                build_client(aliyun_settings(self.aliyun_endpoint, timeout_s=10), self.http),
            ],
            policy,
            metrics,
            clock=health_clock,
        )
        clock = OffsetClock()

        def uow() -> SqlUnitOfWork:
            return SqlUnitOfWork(sessions)

        sms = SmsService(
            RetryingProvider(failover, max_retries=1, base_delay_s=0, max_delay_s=0),
            failover.could_send,
            uow,
            delivery or DeliveryPolicy(max_attempts=10, backoff_base_s=0.02, backoff_max_s=0.05),
            metrics,
            instance_id=name,
            clock=clock,
            phones=PhoneRules(allowed_countries=frozenset({"CN", "GB"})),
        )
        worker = DeliveryWorker(
            sms, poll_interval_s=0.02, batch_size=batch, concurrency=4, gauge_interval_s=0.05
        )
        made = Instance(engine, metrics, sms, failover, worker, clock, health_clock, uow)
        self.instances.append(made)
        return made


@pytest.fixture
async def cluster(
    database_url: str,
    tencent: FakeTencent,
    aliyun: FakeAliyun,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
) -> AsyncIterator[Cluster]:
    async with httpx.AsyncClient() as http:
        made = Cluster(database_url, http, tencent_server.endpoint, aliyun_server.endpoint)
        try:
            yield made
        finally:
            for instance in made.instances:
                await instance.worker.stop(grace_s=5)
                await instance.engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def records(instance: Instance, **filters: Any) -> list[SendRecord]:
    page = await instance.sms.list_records(ADMIN, RecordQuery(limit=100, **filters))
    return page.records


def delivered(tencent: FakeTencent, aliyun: FakeAliyun) -> Counter[str]:
    return Counter(tencent.delivered_args() + aliyun.delivered_args())


def command(
    arg: str, key: str = "", phone: str = "13800138000", valid_for_s: int = 0
) -> SendCommand:
    return SendCommand("login_code", (arg,), (phone,), idempotency_key=key, valid_for_s=valid_for_s)


async def queue_directly(instance: Instance, count: int, *, prefix: str) -> None:
    """Store ``count`` waiting records, as the sync path would after failing."""
    now = int(time.time() * 1000)
    for index in range(count):
        async with instance.uow() as uow:
            record_id = await uow.records.add(
                NewSendRecord(
                    caller="app",
                    tpl_id="login_code",
                    args=(f"{prefix}{index}",),
                    numbers=("13800138000",),
                    idempotency_key="",
                    claimed_by="seed",
                    claim_until_ms=now + 60_000,
                    expire_at_ms=0,
                    now_ms=now,
                )
            )
            await uow.records.finish(
                record_id,
                "seed",
                DeliveryResult(SendStatus.WAITING, "", 1, "queued by test", 0, now, now),
            )
            await uow.commit()


async def test_all_providers_down_queues_and_the_worker_delivers_each_once(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    tencent.mode = aliyun.mode = "error"
    outcomes = [await instance.sms.send(APP, command(f"q{i}", key=f"k{i}")) for i in range(10)]
    assert {o.status for o in outcomes} == {SendStatus.WAITING}
    # Some were queued after failing, later ones without trying: both providers cool down.
    assert not instance.failover.could_send()
    stored = await records(instance)
    assert len(stored) == 10
    assert {r.status for r in stored} == {SendStatus.WAITING}
    assert delivered(tencent, aliyun) == Counter()

    tencent.mode = aliyun.mode = "ok"
    instance.health_clock.offset = DETECTING.cooldown_s
    instance.worker.start()

    async def all_sent() -> bool:
        return all(r.status is SendStatus.SENT for r in await records(instance))

    await eventually(all_sent)
    assert delivered(tencent, aliyun) == Counter(f"q{i}" for i in range(10))
    sent = await records(instance)
    assert all(r.provider in ("tencent", "aliyun") for r in sent)
    async with instance.uow() as uow:
        first = await uow.records.get(sent[0].id)
    assert first is not None
    assert first.args == ()


async def test_two_workers_competing_never_double_send(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    one = cluster.instance("one", batch=5)
    two = cluster.instance("two", batch=5)
    await queue_directly(one, 40, prefix="w")
    tencent.delay_s = aliyun.delay_s = 0.01
    one.worker.start()
    two.worker.start()

    async def drained() -> bool:
        return all(r.status is SendStatus.SENT for r in await records(one))

    def counted() -> float:
        return float(
            sum(i.metrics.async_total.labels("delivered")._value.get() for i in (one, two))
        )

    async def all_counted() -> bool:
        # A worker counts a delivery after committing its outcome: the last ones may be
        # committed (drained) a moment before they are counted.
        return counted() >= 40

    await eventually(drained)
    await eventually(all_counted)
    assert delivered(tencent, aliyun) == Counter(f"w{i}" for i in range(40))
    assert counted() == 40


async def test_only_one_claim_wins(cluster: Cluster) -> None:
    instance = cluster.instance("a")
    await queue_directly(instance, 1, prefix="c")
    [record] = await records(instance)
    now = int(time.time() * 1000)

    async def claim(index: int) -> bool:
        async with instance.uow() as uow:
            won = await uow.records.claim(record.id, f"w{index}", now, now + 60_000)
            await uow.commit()
        return won

    results = await asyncio.gather(*(claim(i) for i in range(10)))
    assert results.count(True) == 1
    # A claim that has not expired cannot be taken.
    assert await instance.sms.deliver_due(10, 2) == 0


async def test_a_crashed_workers_claim_expires_and_is_delivered(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    now = int(time.time() * 1000)
    async with instance.uow() as uow:
        await uow.records.add(
            NewSendRecord(
                caller="app",
                tpl_id="login_code",
                args=("crashed",),
                numbers=("13800138000",),
                idempotency_key="",
                claimed_by="dead-worker/1",
                claim_until_ms=now + 60_000,
                expire_at_ms=0,
                now_ms=now,
            )
        )
        await uow.commit()
    assert await instance.sms.deliver_due(10, 2) == 0
    instance.clock.offset = 61.0
    assert await instance.sms.deliver_due(10, 2) == 1
    assert delivered(tencent, aliyun) == Counter(["crashed"])
    [record] = await records(instance)
    assert record.status is SendStatus.SENT


async def test_retry_cap_marks_the_record_failed(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance(
        "a",
        policy=QUIET,
        delivery=DeliveryPolicy(max_attempts=3, backoff_base_s=0, backoff_max_s=0),
    )
    tencent.mode = aliyun.mode = "error"
    outcome = await instance.sms.send(APP, command("doomed"))
    assert outcome.status is SendStatus.WAITING
    instance.worker.start()

    async def failed() -> bool:
        return [r.status for r in await records(instance)] == [SendStatus.FAILED]

    await eventually(failed)
    [record] = await records(instance)
    assert record.attempts == 3
    assert "isp.SYSTEM_ERROR" in record.last_error or "InternalError" in record.last_error
    assert delivered(tencent, aliyun) == Counter()


async def test_a_queued_message_past_its_validity_is_not_sent(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    tencent.mode = aliyun.mode = "error"
    await instance.sms.send(APP, command("stale", valid_for_s=5))
    tencent.mode = aliyun.mode = "ok"
    instance.clock.offset = 10.0
    instance.health_clock.offset = DETECTING.cooldown_s
    await eventually(lambda: _deliver_once(instance))
    [record] = await records(instance)
    assert record.status is SendStatus.FAILED
    assert "expired" in record.last_error
    assert delivered(tencent, aliyun) == Counter()


async def _deliver_once(instance: Instance) -> bool:
    return await instance.sms.deliver_due(10, 2) > 0


async def test_idempotency_key_sends_once(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    first = await instance.sms.send(APP, command("once", key="order-1"))
    again = await instance.sms.send(APP, command("once", key="order-1"))
    assert first.status is SendStatus.SENT
    assert again.record_id == first.record_id
    assert again.status is SendStatus.SENT
    # Keys are per caller.
    other = Caller("other", frozenset({"login_code"}))
    assert (
        await instance.sms.send(other, command("once", key="order-1"))
    ).record_id != first.record_id

    tencent.delay_s = aliyun.delay_s = 0.05
    outcomes = await asyncio.gather(
        *(instance.sms.send(APP, command("burst", key="order-2")) for _ in range(10)),
        return_exceptions=True,
    )
    ids = {o.record_id for o in outcomes if not isinstance(o, BaseException)}
    assert len(ids) == 1
    assert delivered(tencent, aliyun)["burst"] == 1
    assert delivered(tencent, aliyun)["once"] == 2


async def test_a_send_slower_than_the_budget_is_queued(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a", delivery=DeliveryPolicy(send_timeout_s=0.1))
    tencent.delay_s = aliyun.delay_s = 0.5
    outcome = await instance.sms.send(APP, command("slow"))
    assert outcome.status is SendStatus.WAITING
    [record] = await records(instance)
    assert "within 0.1s" in record.last_error


async def test_numbers_refused_individually_are_noted_masked(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    tencent.mode = "partial"
    outcome = await instance.sms.send(
        APP, SendCommand("login_code", ("p",), ("13800138000", "13900139000"))
    )
    assert outcome.status is SendStatus.SENT
    assert outcome.provider == "tencent"
    [record] = await records(instance)
    assert record.last_error == "refused +86139****9000 LimitExceeded.PhoneNumberDailyLimit"


async def test_a_rejected_message_fails_at_once(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    tencent.mode = aliyun.mode = "reject"
    with pytest.raises(SmsRejected) as rejected:
        await instance.sms.send(APP, command("bad"))
    assert rejected.value.reason == SmsReason.REJECTED
    [record] = await records(instance)
    assert record.status is SendStatus.FAILED
    assert record.attempts == 1
    assert await instance.sms.deliver_due(10, 2) == 0


async def test_list_records_filters_and_pages(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    notice = Caller("notice", frozenset({"notice"}))
    await instance.sms.send(APP, command("a1", phone="13800000001"))
    await instance.sms.send(APP, command("a2", phone="13800000002"))
    await instance.sms.send(
        notice, SendCommand("notice", ("n1",), ("13800000001", "+447400123456"))
    )
    instance.clock.offset = 5.0
    middle = int(time.time() * 1000) + 2500
    tencent.mode = aliyun.mode = "error"
    await instance.sms.send(APP, command("a3", phone="13800000003"))

    assert [r.args for r in await records(instance, phone="13800000001")] == [(), ()]
    assert len(await records(instance, phone="+447400123456")) == 1
    assert [r.caller for r in await records(instance, tpl_id="notice")] == ["notice"]
    waiting = await records(instance, status=SendStatus.WAITING)
    assert [r.numbers for r in waiting] == [("+8613800000003",)]
    assert len(await records(instance, status=SendStatus.SENT)) == 3
    assert len(await records(instance, from_ms=middle)) == 1
    assert len(await records(instance, to_ms=middle)) == 3
    assert len(await records(instance, caller="app")) == 3

    page = await instance.sms.list_records(ADMIN, RecordQuery(limit=3))
    assert len(page.records) == 3
    assert page.next_cursor == page.records[-1].id
    rest = await instance.sms.list_records(ADMIN, RecordQuery(limit=3, cursor=page.next_cursor))
    assert len(rest.records) == 1
    assert rest.next_cursor == 0
    assert [r.id for r in page.records + rest.records] == sorted(
        (r.id for r in page.records + rest.records), reverse=True
    )

    # Non-admin callers see only their own records.
    own = await instance.sms.list_records(notice, RecordQuery())
    assert [r.caller for r in own.records] == ["notice"]
    with pytest.raises(SmsPermissionDenied):
        await instance.sms.list_records(notice, RecordQuery(caller="app"))
    for bad in (RecordQuery(limit=101), RecordQuery(limit=-1), RecordQuery(phone="123")):
        with pytest.raises(SmsInvalidArgument) as invalid:
            await instance.sms.list_records(ADMIN, bad)
        assert invalid.value.reason == SmsReason.INVALID_QUERY
    with pytest.raises(SmsInvalidArgument):
        await instance.sms.list_records(ADMIN, RecordQuery(from_ms=10, to_ms=5))


async def test_queue_gauge_counts_waiting(
    cluster: Cluster, tencent: FakeTencent, aliyun: FakeAliyun
) -> None:
    instance = cluster.instance("a")
    tencent.mode = aliyun.mode = "error"
    for index in range(3):
        await instance.sms.send(APP, command(f"g{index}"))
    await instance.sms.refresh_queue_gauge()
    assert instance.metrics.async_queue.labels("waiting")._value.get() == 3
    # The oldest waiting record's age follows the clock while nothing delivers it.
    instance.clock.offset += 90.0
    await instance.sms.refresh_queue_gauge()
    assert instance.metrics.async_oldest_seconds._value.get() >= 90.0
    tencent.mode = aliyun.mode = "ok"
    instance.health_clock.offset = DETECTING.cooldown_s
    instance.clock.offset += DeliveryPolicy().backoff_max_s  # every retry is due

    async def drained() -> bool:
        await instance.worker.run_once()
        await instance.sms.refresh_queue_gauge()
        return bool(instance.metrics.async_queue.labels("waiting")._value.get() == 0)

    await eventually(drained)
    assert instance.metrics.async_oldest_seconds._value.get() == 0

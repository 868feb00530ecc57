"""The scheduler loop on SQLite and MariaDB: one winner per due job among racing instances,
takeover after lease expiry, stale holders fenced at renewal, release and write, the missed
runs policy, failures and shutdown.

Instances use engines of their own (as separate processes would) and a shared
:class:`FakeClock`; nothing waits on a fixed sleep: tests wait for events the executors set,
with timeouts far above what a loaded machine needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import REGISTRY

from services.scheduler.cron import parse
from services.scheduler.domain import ExecutorKind, Job, Lease, Outcome
from services.scheduler.executors import ExecutorRegistry, FencedStore, RunContext, StaleToken
from services.scheduler.scheduler import Scheduler, SchedulerOptions
from services.scheduler.service import JobService
from services.scheduler.tests.conftest import FakeClock, Units

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
LEASE_MS = 5_000
# Renewals every 20 ms of real time, so a refused renewal is noticed quickly; lease expiry
# follows the fake clock, so real time never makes a lease lapse.
OPTIONS = SchedulerOptions(lease_ms=LEASE_MS, renew_every_s=0.02, tick_s=0.02, stop_grace_s=0.05)
WAIT_S = 60.0


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of the default registry (0 before the first increment)."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class Harness:
    """Schedulers over one database, the admin service and a fenced store, one clock."""

    def __init__(self, units_factory: Callable[[], Units], clock: FakeClock) -> None:
        self.units_factory = units_factory
        self.clock = clock
        self.registry = ExecutorRegistry()
        self.store = FencedStore()
        self.service = JobService(units_factory(), self.registry, clock=clock)

    def scheduler(self, instance: str, options: SchedulerOptions = OPTIONS) -> Scheduler:
        """An instance on an engine of its own."""
        return Scheduler(
            self.units_factory(),
            self.registry,
            instance=instance,
            clock=self.clock,
            options=options,
        )

    async def job(self, name: str, cron: str = "* * * * *", function: str = "write") -> Job:
        """Add a job and move the clock to its first run time."""
        job = await self.service.add(
            name, cron, executor_kind="local", executor_config={"function": function}
        )
        self.clock.now_ms = max(self.clock.now_ms, job.next_run_ms)
        return job


@pytest.fixture
def harness(units_factory: Callable[[], Units], clock: FakeClock) -> Harness:
    """A harness whose ``write`` executor writes its token to the fenced store."""
    h = Harness(units_factory, clock)

    async def write(ctx: RunContext) -> None:
        h.store.write(ctx.job_name, ctx.token, ctx.instance)

    h.registry.register("write", write)
    return h


async def test_only_one_of_several_instances_takes_a_due_job(harness: Harness) -> None:
    names = [f"job-{n}" for n in range(3)]
    for name in names:
        await harness.job(name)
    instances = [harness.scheduler(f"s{n}") for n in range(6)]
    for round_number in range(1, 4):
        leases = await asyncio.gather(*(s.take() for s in instances))
        won = [lease for lease in leases if lease is not None]
        # each due job went to exactly one instance; the others found nothing left
        assert sorted(lease.job.name for lease in won) == names
        assert all(lease.token == round_number for lease in won)
        assert await asyncio.gather(*(s.take() for s in instances)) == [None] * 6
        by_instance = {s.instance: s for s in instances}
        for lease in won:
            assert await by_instance[lease.holder].still_holder(lease)
            next_run = parse(lease.job.cron).next_after_ms(harness.clock())
            assert await by_instance[lease.holder].release(lease, next_run_ms=next_run)
        harness.clock.advance(MINUTE_MS)


async def test_takeover_after_lease_expiry_fences_the_stale_holder(harness: Harness) -> None:
    await harness.job("report")
    a, b = harness.scheduler("a"), harness.scheduler("b")
    takeovers = metric("webook_scheduler_takeovers_total")
    renew_refused = metric("webook_scheduler_fencing_rejections_total", {"stage": "renew"})
    release_refused = metric("webook_scheduler_fencing_rejections_total", {"stage": "release"})

    stale = await a.take()
    assert stale is not None
    assert stale.took_over_from is None
    # a valid lease is not taken over, even at its last millisecond
    harness.clock.advance(LEASE_MS - 1)
    assert await b.take() is None
    harness.clock.advance(1)
    assert await b.take() is None  # lease_until_ms < now is required
    harness.clock.advance(1)
    fresh = await b.take()
    assert fresh is not None
    assert fresh.took_over_from == "a"
    assert fresh.token == stale.token + 1
    assert metric("webook_scheduler_takeovers_total") == takeovers + 1

    # the stale holder wakes up: every step it tries is refused
    assert not await a.still_holder(stale)
    assert await a.renew(stale) is None
    assert not await a.release(stale, next_run_ms=0)
    harness.store.write("report", fresh.token, "b")
    with pytest.raises(StaleToken, match="stale fencing token 1 for 'report'"):
        harness.store.write("report", stale.token, "a")
    assert harness.store.rejected == 1
    assert [w.value for w in harness.store.writes("report")] == ["b"]
    assert (
        metric("webook_scheduler_fencing_rejections_total", {"stage": "renew"}) == renew_refused + 1
    )
    assert (
        metric("webook_scheduler_fencing_rejections_total", {"stage": "release"})
        == release_refused + 1
    )

    # the new holder is unaffected
    assert await b.still_holder(fresh)
    assert await b.renew(fresh) == harness.clock() + LEASE_MS
    assert await b.release(fresh, next_run_ms=harness.clock() + MINUTE_MS)
    job = await harness.service.get("report")
    assert job.holder is None
    assert job.version == fresh.token


async def test_a_run_whose_renewal_is_refused_is_cancelled_and_fenced(harness: Harness) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    answers: list[bool] = []

    async def hang(ctx: RunContext) -> None:
        answers.append(await ctx.still_holder())
        started.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            cancelled.set()

    harness.registry.register("hang", hang)
    await harness.job("stuck", function="hang")
    # a has a clock of its own: while it stands still, a's renewals extend the lease no
    # further, as if a were frozen; b follows the shared clock
    a_clock = FakeClock(harness.clock())
    a = Scheduler(
        harness.units_factory(), harness.registry, instance="a", clock=a_clock, options=OPTIONS
    )
    b = harness.scheduler("b")
    lease = await a.take()
    assert lease is not None
    run = asyncio.create_task(a.run(lease))
    await asyncio.wait_for(started.wait(), WAIT_S)
    assert answers == [True]

    # a's renewals move the lease with a's clock
    a_clock.advance(LEASE_MS)
    harness.clock.advance(LEASE_MS)
    renewed_until = a_clock() + LEASE_MS

    async def renewed() -> bool:
        return (await harness.service.get("stuck")).lease_until_ms >= renewed_until

    await eventually(renewed, "a renewed its lease")
    assert await b.take() is None

    # a stops getting anywhere; its lease expires and b takes over
    harness.clock.advance(LEASE_MS + 1)
    takeover = await b.take()
    assert takeover is not None
    assert takeover.took_over_from == "a"
    # a's next renewal is refused: its run is cancelled and recorded as fenced
    report = await asyncio.wait_for(run, WAIT_S)
    assert cancelled.is_set()
    assert report.outcome is Outcome.FENCED
    assert "lease lost" in report.error
    history = await harness.service.history("stuck")
    assert [(run.token, run.outcome) for run in history] == [(lease.token, Outcome.FENCED)]
    job = await harness.service.get("stuck")
    assert job.holder == "b"
    assert job.version == takeover.token


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Return once ``check()`` holds; fail after :data:`WAIT_S` seconds."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def test_a_late_write_with_a_stale_token_fences_the_run(harness: Harness) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def gated(ctx: RunContext) -> None:
        if ctx.instance == "a":
            started.set()
            await gate.wait()
        harness.store.write(ctx.job_name, ctx.token, ctx.instance)

    harness.registry.register("gated", gated)
    await harness.job("export", function="gated")
    # a's first renewal comes long after this test is over: nothing but the write's own
    # fencing check can stop it
    a = harness.scheduler("a", SchedulerOptions(lease_ms=LEASE_MS, renew_every_s=4.0))
    b = harness.scheduler("b")
    fenced = metric("webook_scheduler_fencing_rejections_total", {"stage": "executor"})
    stale = await a.take()
    assert stale is not None
    run_a = asyncio.create_task(a.run(stale))
    await asyncio.wait_for(started.wait(), WAIT_S)
    harness.clock.advance(LEASE_MS + 1)
    fresh = await b.take()
    assert fresh is not None
    assert (await b.run(fresh)).outcome is Outcome.OK

    # a was paused inside its executor, after the run started; it now writes late
    gate.set()
    report = await asyncio.wait_for(run_a, WAIT_S)
    assert report.outcome is Outcome.FENCED
    assert "StaleToken" in report.error
    assert metric("webook_scheduler_fencing_rejections_total", {"stage": "executor"}) == fenced + 1
    assert [(w.token, w.value) for w in harness.store.writes("export")] == [(fresh.token, "b")]
    outcomes = {run.token: run.outcome for run in await harness.service.history("export")}
    assert outcomes == {stale.token: Outcome.FENCED, fresh.token: Outcome.OK}
    # b's release stands: the job is free and due at the next minute
    job = await harness.service.get("export")
    assert job.holder is None
    assert job.next_run_ms > harness.clock()


async def test_a_run_taken_over_before_it_started_does_not_run(harness: Harness) -> None:
    await harness.job("export")
    a, b = harness.scheduler("a"), harness.scheduler("b")
    stale = await a.take()
    assert stale is not None
    # a's take waited on the database past its lease (the lease counts from before the take
    # was sent): b took the job over meanwhile
    harness.clock.advance(LEASE_MS + 1)
    fresh = await b.take()
    assert fresh is not None
    assert (await b.run(fresh)).outcome is Outcome.OK

    report = await a.run(stale)
    assert report.outcome is Outcome.FENCED
    assert report.error == "lease lost before the run started"
    # the executor never ran: only b's write
    assert [(w.token, w.value) for w in harness.store.writes("export")] == [(fresh.token, "b")]
    job = await harness.service.get("export")
    assert job.holder is None
    assert job.next_run_ms > harness.clock()


async def test_a_lease_worn_down_by_a_slow_take_is_renewed_before_the_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.job("export")
    a = harness.scheduler("a")
    lease = await a.take()
    assert lease is not None
    renewed_at: list[int] = []
    renew = a.renew

    async def spy(lease: Lease) -> int | None:
        renewed_at.append(harness.clock())
        return await renew(lease)

    monkeypatch.setattr(a, "renew", spy)
    # the take's round trip took most of the lease; nobody took the job over
    harness.clock.advance(LEASE_MS - 10)
    report = await a.run(lease)
    assert report.outcome is Outcome.OK
    assert renewed_at[0] == harness.clock()
    assert [(w.token, w.value) for w in harness.store.writes("export")] == [(lease.token, "a")]


async def test_a_run_that_cannot_confirm_its_lease_leaves_the_job_due(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await harness.job("export")
    a = harness.scheduler("a")
    lease = await a.take()
    assert lease is not None
    harness.clock.advance(LEASE_MS - 10)

    async def unreachable(lease: object) -> int | None:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(a, "renew", unreachable)
    report = await a.run(lease)
    assert report.outcome is Outcome.FAILED
    assert "could not be confirmed" in report.error
    assert harness.store.writes("export") == []
    # handed back unchanged: due at once, not skipped to its next cron time
    after = await harness.service.get("export")
    assert after.holder is None
    assert after.next_run_ms == job.next_run_ms


async def test_a_renewal_still_pending_at_the_lease_end_stops_the_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, renewal_sent = asyncio.Event(), asyncio.Event()
    release_renewal, renewal_done = asyncio.Event(), asyncio.Event()

    async def hang(ctx: RunContext) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    harness.registry.register("hang", hang)
    await harness.job("stalled", function="hang")
    a = harness.scheduler("a")
    lease = await a.take()
    assert lease is not None
    renew = a.renew

    async def stalled(lease: Lease) -> int | None:
        # the database answers only once the test says so, long after the lease ended
        renewal_sent.set()
        await release_renewal.wait()
        try:
            return await renew(lease)
        finally:
            renewal_done.set()

    monkeypatch.setattr(a, "renew", stalled)
    run = asyncio.create_task(a.run(lease))
    await asyncio.wait_for(started.wait(), WAIT_S)
    await asyncio.wait_for(renewal_sent.wait(), WAIT_S)
    assert not run.done()
    # the lease ends by a's clock while its renewal is still waiting on the database
    harness.clock.now_ms = lease.lease_until_ms
    report = await asyncio.wait_for(run, WAIT_S)
    assert report.outcome is Outcome.FENCED
    assert report.error == "lease lost: renewal refused or expired"
    # the abandoned renewal was left to finish on its own
    release_renewal.set()
    await asyncio.wait_for(renewal_done.wait(), WAIT_S)


async def test_missed_runs_run_once_then_the_next_future_time(harness: Harness) -> None:
    await harness.job("every5", cron="*/5 * * * *")
    scheduler = harness.scheduler("s")
    ok = metric("webook_scheduler_runs_total", {"outcome": "ok"})
    # every scheduler was down for an hour and a bit: 13 runs were missed
    harness.clock.advance(62 * MINUTE_MS + 30_000)
    assert await scheduler.refresh_gauges() == (1, 1)
    report = await scheduler.tick()
    assert report is not None
    assert report.outcome is Outcome.OK
    assert metric("webook_scheduler_runs_total", {"outcome": "ok"}) == ok + 1
    assert await scheduler.tick() is None
    job = await harness.service.get("every5")
    assert job.next_run_ms == parse("*/5 * * * *").next_after_ms(harness.clock())
    assert job.next_run_ms > harness.clock()
    assert await scheduler.refresh_gauges() == (0, 0)
    assert len(harness.store.writes("every5")) == 1


async def test_failures_are_recorded_and_the_job_moves_on(harness: Harness) -> None:
    async def boom(ctx: RunContext) -> None:
        raise RuntimeError("disk full")

    harness.registry.register("boom", boom)
    await harness.job("fragile", function="boom")
    # an instance whose registry lacks the function fails the run with a clear error
    other = Scheduler(
        harness.units_factory(), ExecutorRegistry(), instance="bare", clock=harness.clock
    )
    report = await other.tick()
    assert report is not None
    assert report.outcome is Outcome.FAILED
    assert "no executor function named 'boom'" in report.error

    harness.clock.advance(MINUTE_MS)
    report = await harness.scheduler("s").tick()
    assert report is not None
    assert report.outcome is Outcome.FAILED
    assert report.error == "RuntimeError: disk full"
    history = await harness.service.history("fragile")
    assert [(run.instance, run.outcome) for run in history] == [
        ("s", Outcome.FAILED),
        ("bare", Outcome.FAILED),
    ]
    assert history[0].error == "RuntimeError: disk full"
    job = await harness.service.get("fragile")
    assert job.holder is None
    assert job.next_run_ms > harness.clock()


async def test_stopping_hands_running_jobs_back(harness: Harness) -> None:
    started = asyncio.Event()

    async def slow(ctx: RunContext) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    harness.registry.register("slow", slow)
    job = await harness.job("long", function="slow")
    stop = asyncio.Event()
    loop = asyncio.create_task(harness.scheduler("s").run_forever(stop))
    await asyncio.wait_for(started.wait(), WAIT_S)
    stop.set()
    await asyncio.wait_for(loop, WAIT_S)

    after = await harness.service.get("long")
    assert after.holder is None
    assert after.next_run_ms == job.next_run_ms  # due again at once, for another instance
    history = await harness.service.history("long")
    assert [(run.outcome, run.error) for run in history] == [
        (Outcome.FAILED, "interrupted: the scheduler is stopping")
    ]
    # another instance takes it right away
    lease = await harness.scheduler("t").take()
    assert lease is not None
    assert lease.token == 2


async def test_run_forever_runs_due_jobs_on_several_instances(harness: Harness) -> None:
    names = [f"tick-{n}" for n in range(4)]
    for name in names:
        await harness.job(name)
    stop = asyncio.Event()
    loops = [asyncio.create_task(harness.scheduler(f"s{n}").run_forever(stop)) for n in range(3)]
    try:
        for round_number in range(1, 4):

            async def all_ran(expected: int = round_number) -> bool:
                return all(harness.store.highest(n) == expected for n in names)

            async def all_released() -> bool:
                jobs = [await harness.service.get(n) for n in names]
                return all(job.holder is None for job in jobs)

            await eventually(all_ran, f"run {round_number} of every job")
            # every release before the clock moves on
            await eventually(all_released, "every job released")
            harness.clock.advance(MINUTE_MS)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), WAIT_S)
    for name in names:
        assert [w.token for w in harness.store.writes(name)] == [1, 2, 3]
        assert harness.store.rejected == 0


def test_options_refuse_a_renewal_period_as_long_as_the_lease() -> None:
    with pytest.raises(ValueError, match="must be shorter than the lease"):
        SchedulerOptions(lease_ms=1000, renew_every_s=1.0)
    with pytest.raises(ValueError, match="positive"):
        SchedulerOptions(tick_s=0)


async def test_a_run_stops_when_its_lease_expires_while_the_database_is_unreachable(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    failed_renewals = 0

    async def hang(ctx: RunContext) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    async def unreachable(lease: object) -> int | None:
        nonlocal failed_renewals
        failed_renewals += 1
        raise ConnectionError("database unreachable")

    harness.registry.register("hang", hang)
    await harness.job("offline", function="hang")
    a = harness.scheduler("a")
    lease = await a.take()
    assert lease is not None
    monkeypatch.setattr(a, "renew", unreachable)
    run = asyncio.create_task(a.run(lease))
    await asyncio.wait_for(started.wait(), WAIT_S)

    async def retried() -> bool:
        return failed_renewals >= 3

    # failed renewals are retried while the lease holds: the run goes on
    await eventually(retried, "renewals retried")
    assert not run.done()
    # once the lease expired by a's clock, a stops: another instance may hold the job now
    harness.clock.now_ms = lease.lease_until_ms
    report = await asyncio.wait_for(run, WAIT_S)
    assert report.outcome is Outcome.FENCED
    assert [run.outcome for run in await harness.service.history("offline")] == [Outcome.FENCED]


async def test_a_takeover_closes_the_run_the_dead_holder_left_running(harness: Harness) -> None:
    job = await harness.job("report")
    a, b = harness.scheduler("a"), harness.scheduler("b")
    stale = await a.take()
    assert stale is not None
    # a starts its run and dies: its record says "running"
    async with harness.units_factory()() as uow:
        await uow.jobs.start_execution(
            job_id=job.id, token=stale.token, instance="a", started_ms=harness.clock()
        )
        await uow.commit()
    harness.clock.advance(LEASE_MS + 1)
    fresh = await b.take()
    assert fresh is not None
    assert fresh.took_over_from == "a"
    report = await b.run(fresh)
    assert report.outcome is Outcome.OK
    history = {run.token: run for run in await harness.service.history("report")}
    assert history[fresh.token].outcome is Outcome.OK
    abandoned = history[stale.token]
    assert abandoned.outcome is Outcome.FAILED
    assert abandoned.error == "abandoned: lease expired, taken over by b"
    assert abandoned.ended_ms is not None


async def test_a_stopping_instance_lets_a_run_finish_within_the_grace(harness: Harness) -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def short(ctx: RunContext) -> None:
        started.set()
        await finish.wait()
        harness.store.write(ctx.job_name, ctx.token, ctx.instance)

    harness.registry.register("short", short)
    await harness.job("brief", function="short")
    stop = asyncio.Event()
    options = SchedulerOptions(
        lease_ms=LEASE_MS, renew_every_s=0.02, tick_s=0.02, stop_grace_s=WAIT_S
    )
    loop = asyncio.create_task(harness.scheduler("s", options).run_forever(stop))
    await asyncio.wait_for(started.wait(), WAIT_S)
    stop.set()
    # the loop waits for the run instead of interrupting it
    await asyncio.sleep(0)
    assert not loop.done()
    finish.set()
    await asyncio.wait_for(loop, WAIT_S)
    (run,) = await harness.service.history("brief")
    assert (run.outcome, run.error) == (Outcome.OK, "")
    assert [w.token for w in harness.store.writes("brief")] == [1]
    assert (await harness.service.get("brief")).holder is None


async def test_an_interrupted_remote_run_is_left_to_its_lease(harness: Harness) -> None:
    # A remote callee may go on with a call its caller abandoned: handing the job back at
    # once would let another instance start it while the first call still runs.
    called = asyncio.Event()

    async def hang(ctx: RunContext) -> None:
        called.set()
        await asyncio.Event().wait()

    job = await harness.service.add(
        "remote",
        "* * * * *",
        executor_kind="http",
        executor_config={"url": "http://127.0.0.1:9/never"},
    )
    harness.clock.now_ms = max(harness.clock.now_ms, job.next_run_ms)
    scheduler = Scheduler(
        harness.units_factory(),
        harness.registry,
        instance="s",
        clock=harness.clock,
        options=OPTIONS,
        remote={ExecutorKind.HTTP: hang},
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(scheduler.run_forever(stop))
    await asyncio.wait_for(called.wait(), WAIT_S)
    stop.set()
    await asyncio.wait_for(loop, WAIT_S)
    after = await harness.service.get("remote")
    assert after.holder == "s"  # not released: the lease runs out unrenewed
    (run,) = await harness.service.history("remote")
    assert run.outcome is Outcome.FAILED
    assert "waits for its lease to expire" in run.error
    assert await harness.scheduler("t").take() is None
    harness.clock.now_ms = after.lease_until_ms + 1
    lease = await harness.scheduler("t").take()
    assert lease is not None
    assert lease.took_over_from == "s"

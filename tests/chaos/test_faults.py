"""Each fault of the chaos list, injected while a mixed workload runs through the gateway.

Every test runs :class:`bench._workload.MixedWorkload` (virtual users signing in, reading,
liking, commenting, listing comments, following) against the session's stack, injects one
fault, removes it, and lets the stack recover. Operations are attributed to the phase in
which they start: ``before`` the fault, ``fault`` (while it lasts), ``recovering`` (a grace
period after it is removed, where writes may still fail while clients reconnect) and
``recovered``. The checks, after each fault:

- no idempotent read (article page, comment list) failed, in any phase;
- nothing failed at all in the ``recovered`` phase;
- every acknowledged like, follow and comment is in the final state, and every
  acknowledged read is eventually counted (:meth:`MixedWorkload.verify`);
- every process of the stack is still alive (the victim itself restarted by the test).

Writes may fail while a fault lasts (the client saw the failure and was not told
otherwise); what must never happen is an acknowledged write that is then missing.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from bench._workload import IDEMPOTENT_READS, MixedWorkload, RunningStack, WorkloadError
from tests.chaos.report import FaultOutcome

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

USERS = 8
ARTICLES = 3
BEFORE_S = 3.0
RECOVERING_S = 8.0
RECOVERED_S = 6.0


async def _stopped_for(
    seconds: float, stop: Callable[[], None], start: Callable[[], object]
) -> None:
    """Run ``stop``, wait ``seconds`` with it stopped, then ``start`` (in a thread: it blocks)."""
    await asyncio.to_thread(stop)
    try:
        await asyncio.sleep(seconds)
    finally:
        await asyncio.to_thread(start)


async def _drive_through(
    stack: RunningStack,
    fault: Callable[[], Awaitable[None]],
    name: str,
    outcomes: list[FaultOutcome],
) -> None:
    """The workload around ``fault``; records its outcome, then asserts every check."""
    started = time.monotonic()
    async with MixedWorkload(stack.base_url, users=USERS, articles=ARTICLES) as workload:
        run = asyncio.create_task(workload.run())
        try:
            with workload.phase("before"):
                await asyncio.sleep(BEFORE_S)
            with workload.phase("fault"):
                await fault()
            with workload.phase("recovering"):
                await asyncio.sleep(RECOVERING_S)
            with workload.phase("recovered"):
                await asyncio.sleep(RECOVERED_S)
        finally:
            workload.stop()
            await run
        report = "\n".join(workload.error_report())
        read_errors = workload.errors_of(IDEMPOTENT_READS)
        errors = workload.errors_by_phase()
        verify_error = ""
        try:
            await workload.verify()
        except (WorkloadError, httpx.HTTPError) as exc:
            # The state could not be read back at all: recorded, then failed below.
            verify_error = f"{type(exc).__name__}: {exc}"
    dead = stack.dead()
    outcome = FaultOutcome(
        fault=name,
        seconds=time.monotonic() - started,
        ops=dict(workload.ops_by_phase),
        errors=dict(errors),
        read_errors=read_errors,
        lost_writes=list(workload.lost_writes),
        uncounted_reads=list(workload.uncounted_reads),
        reads_converged_s=workload.reads_converged_s,
        alive=len(stack.processes()) - len(dead),
        processes=len(stack.processes()),
        dead=dead,
        verify_error=verify_error,
    )
    outcomes.append(outcome)
    assert verify_error == "", f"reading the final state back failed: {verify_error}"
    assert workload.total_ok > 0
    assert read_errors == 0, f"idempotent reads failed:\n{report}"
    assert errors["recovered"] == 0, f"errors after recovery:\n{report}"
    assert workload.lost_writes == []
    assert workload.uncounted_reads == [], (
        "acknowledged reads never counted (after a broker restart: did the producers send "
        "again what the broker acknowledged and lost? docs/reliability.md, 'Found by the "
        "broker fault')"
    )
    assert dead == []


@pytest.mark.timeout(180)
async def test_sigkill_one_of_three_instances(
    chaos_stack: RunningStack, fault_outcomes: list[FaultOutcome]
) -> None:
    victim = chaos_stack.instances["interactive"][1]

    async def fault() -> None:
        victim.signal(signal.SIGKILL)
        # Longer than the registration lease (10 s): the dead instance leaves etcd too.
        await asyncio.sleep(12)
        assert len([p for p in chaos_stack.instances["interactive"] if p.alive()]) == 2
        await asyncio.to_thread(victim.start, 60)

    await _drive_through(chaos_stack, fault, "SIGKILL 1 of 3 interactive", fault_outcomes)


@pytest.mark.timeout(180)
async def test_etcd_stopped_for_30_seconds(
    chaos_stack: RunningStack, fault_outcomes: list[FaultOutcome]
) -> None:
    etcd = chaos_stack.etcd
    await _drive_through(
        chaos_stack,
        lambda: _stopped_for(30, etcd.stop, etcd.start),
        "etcd stopped 30 s",
        fault_outcomes,
    )


@pytest.mark.timeout(180)
async def test_redis_stopped_for_20_seconds(
    chaos_stack: RunningStack, fault_outcomes: list[FaultOutcome]
) -> None:
    redis = chaos_stack.redis
    await _drive_through(
        chaos_stack,
        lambda: _stopped_for(20, redis.stop, redis.start),
        "Redis stopped 20 s",
        fault_outcomes,
    )


@pytest.mark.timeout(240)
async def test_broker_stopped_for_30_seconds_and_restarted(
    chaos_stack: RunningStack, fault_outcomes: list[FaultOutcome]
) -> None:
    kafka = chaos_stack.kafka
    await _drive_through(
        chaos_stack,
        lambda: _stopped_for(30, kafka.stop, kafka.start),
        "broker stopped 30 s, restarted",
        fault_outcomes,
    )


@pytest.mark.timeout(180)
async def test_consumer_restarted_mid_stream(
    chaos_stack: RunningStack, fault_outcomes: list[FaultOutcome]
) -> None:
    consumer = chaos_stack.instances["interactive"][0]

    async def fault() -> None:
        await asyncio.to_thread(consumer.stop)
        await asyncio.to_thread(consumer.start, 60)

    await _drive_through(chaos_stack, fault, "consumer restarted mid-stream", fault_outcomes)

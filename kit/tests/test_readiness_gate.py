"""The readiness gate of :class:`ServiceRunner`: a process with conditions listens and runs
its components at once, but answers NOT_SERVING and stays out of the registry until every
condition is met; then it reports SERVING, registers, and stays so."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit.config import GrpcServiceSettings
from kit.grpcx.server import Background, ServiceRunner
from webook.follow.v1 import follow_pb2, follow_pb2_grpc

# Generous: the machine running the suite may be busy.
DEADLINE_S = 20.0
FOLLOW = follow_pb2.DESCRIPTOR.services_by_name["FollowService"].full_name


class Journal:
    """What happened, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self, event: str) -> None:
        self.events.append(event)


class Registry:
    """A registration that writes to the journal (deregistering only what registered)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.registered = False

    async def register(self, addr: str) -> None:
        self.registered = True
        self.journal("register")

    async def deregister(self) -> None:
        if self.registered:
            self.registered = False
            self.journal("deregister")

    async def close(self) -> None:
        self.journal("registry closed")


class Condition:
    """A readiness condition the test satisfies by hand."""

    def __init__(self, name: str, journal: Journal) -> None:
        self.name = name
        self.journal = journal
        self.met = asyncio.Event()
        self.waiting = asyncio.Event()
        self.cancelled = False

    async def wait(self) -> None:
        self.waiting.set()
        try:
            await self.met.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.journal(f"{self.name} met")


def _runner(journal: Journal) -> ServiceRunner:
    settings = GrpcServiceSettings(grpc_port=0, metrics_port=-1, shutdown_grace=0.5)
    runner = ServiceRunner("gated", settings, registration=Registry(journal))
    servicer: type[follow_pb2_grpc.FollowServiceServicer] = type(
        "Servicer", (follow_pb2_grpc.FollowServiceServicer,), {}
    )
    runner.mount(servicer())

    async def start_consumer() -> None:
        journal("start consumer")

    async def stop_consumer() -> None:
        journal("stop consumer")

    runner.start_after_serving(Background(start_consumer, stop_consumer))
    return runner


async def _status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return int(answer.status)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_without_conditions_the_process_is_ready_once_it_listens() -> None:
    journal = Journal()
    runner = _runner(journal)
    port = await runner.start()
    try:
        assert runner.ready
        assert await _status(port) == await _status(port, FOLLOW) == SERVING
        assert journal.events == ["register", "start consumer"]
    finally:
        await runner.stop()


async def test_a_gated_process_serves_only_once_every_condition_is_met() -> None:
    journal = Journal()
    runner = _runner(journal)
    rebuilt, caught_up = Condition("rebuilt", journal), Condition("caught up", journal)
    runner.ready_when("index rebuilt", rebuilt.wait)
    runner.ready_when("consumer caught up", caught_up.wait)
    port = await runner.start()
    try:
        await asyncio.wait_for(rebuilt.waiting.wait(), DEADLINE_S)
        await asyncio.wait_for(caught_up.waiting.wait(), DEADLINE_S)
        # Listening, its components running, but neither serving nor registered.
        assert not runner.ready
        assert await _status(port) == await _status(port, FOLLOW) == NOT_SERVING
        assert journal.events == ["start consumer"]

        rebuilt.met.set()
        assert not await runner.wait_ready(0.3)
        assert await _status(port) == NOT_SERVING
        assert journal.events == ["start consumer", "rebuilt met"]

        caught_up.met.set()
        assert await runner.wait_ready(DEADLINE_S)
        assert await _status(port) == await _status(port, FOLLOW) == SERVING
        assert journal.events == ["start consumer", "rebuilt met", "caught up met", "register"]
    finally:
        await runner.stop()
    assert journal.events[-3:] == ["deregister", "stop consumer", "registry closed"]


async def test_stopping_before_ready_cancels_the_wait_and_never_registers() -> None:
    journal = Journal()
    runner = _runner(journal)
    never = Condition("never", journal)
    runner.ready_when("never", never.wait)
    await runner.start()
    await asyncio.wait_for(never.waiting.wait(), DEADLINE_S)
    await runner.stop()
    assert never.cancelled
    assert not runner.ready
    assert journal.events == ["start consumer", "stop consumer", "registry closed"]


async def test_a_failing_condition_keeps_the_process_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = Journal()
    runner = _runner(journal)

    async def broken() -> None:
        raise RuntimeError("cannot tell")

    runner.ready_when("broken", broken)
    port = await runner.start()
    try:
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while not any(r.message.startswith("becoming ready failed") for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline, "the failure was not logged"
            await asyncio.sleep(0.05)
        assert not runner.ready
        assert await _status(port) == NOT_SERVING
        assert "register" not in journal.events
    finally:
        await runner.stop()


async def test_a_condition_is_registered_once() -> None:
    runner = _runner(Journal())

    async def rebuilt() -> None:
        await asyncio.sleep(0)

    runner.ready_when("rebuilt", rebuilt)
    with pytest.raises(ValueError, match="already registered"):
        runner.ready_when("rebuilt", rebuilt)

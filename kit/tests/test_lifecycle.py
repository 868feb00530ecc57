"""The lifecycle of :class:`ServiceRunner`'s background components: what starts before and
after serving, what stops before and after the drain, and a start that fails half-way."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit.config import GrpcServiceSettings
from kit.grpcx.server import Background, ServiceRunner


class Journal:
    """What happened, in order, with what the runner looked like at the time."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self, event: str) -> None:
        self.events.append(event)


class SyncStartAsyncStop:
    """A component shaped like the event producer: plain ``start``, ``async`` ``stop``."""

    def __init__(self, name: str, journal: Journal, runner: ServiceRunner) -> None:
        self.name = name
        self.journal = journal
        self.runner = runner

    def start(self) -> None:
        # The port is bound once the server listens, so this tells before from after.
        serving = "serving" if self.runner.port else "not serving"
        self.journal(f"start {self.name} ({serving})")

    async def stop(self) -> None:
        self.journal(f"stop {self.name}")


class Registry:
    """A registration that writes to the journal (deregistering only what registered, as
    :class:`kit.grpcx.registration.RegistryRegistration` does)."""

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


def _runner(journal: Journal) -> ServiceRunner:
    settings = GrpcServiceSettings(grpc_port=0, metrics_port=-1, shutdown_grace=0.5)
    runner = ServiceRunner("lifecycle", settings, registration=Registry(journal))
    drain = runner.server.stop

    async def draining(grace: float | None = None) -> None:
        journal("drain")
        await drain(grace)

    runner.server.stop = draining  # type: ignore[method-assign]  # observe the drain
    return runner


def _component(name: str, journal: Journal, runner: ServiceRunner) -> SyncStartAsyncStop:
    return SyncStartAsyncStop(name, journal, runner)


def _async_steps(name: str, journal: Journal) -> Background:
    async def start() -> None:
        journal(f"start {name}")

    async def stop() -> None:
        journal(f"stop {name}")

    return Background(start, stop)


def _hook(event: str, journal: Journal) -> Callable[[], Coroutine[Any, Any, None]]:
    async def hook() -> None:
        journal(event)

    return hook


async def _serving(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


async def test_components_start_around_serving_and_stop_in_reverse() -> None:
    journal = Journal()
    runner = _runner(journal)
    runner.on_close(_hook("close pools", journal))
    runner.on_close(_hook("close clients", journal))
    runner.on_shutdown(_hook("shutdown hook", journal))
    producer = runner.start_before_serving(_component("producer", journal, runner))
    runner.start_before_serving(_async_steps("writer", journal))
    runner.start_after_serving(_component("consumer", journal, runner))
    runner.start_after_serving(_async_steps("worker", journal))
    assert producer.name == "producer"

    port = await runner.start()
    assert await _serving(port)
    assert journal.events == [
        "start producer (not serving)",
        "start writer",
        "register",
        "start consumer (serving)",
        "start worker",
    ]
    journal.events.clear()
    await runner.stop()
    await runner.stop()  # a second stop does nothing
    assert journal.events == [
        "deregister",
        "stop worker",
        "stop consumer",
        "shutdown hook",
        "drain",
        "registry closed",
        "stop writer",
        "stop producer",
        "close clients",
        "close pools",
    ]


async def test_a_component_failing_before_serving_stops_those_started() -> None:
    journal = Journal()
    runner = _runner(journal)
    runner.on_close(_hook("close pools", journal))
    runner.start_before_serving(_component("producer", journal, runner))

    def refuse() -> None:
        journal("start writer")
        raise RuntimeError("index locked")

    runner.start_before_serving(Background(refuse, _hook("stop writer", journal)))
    runner.start_after_serving(_component("consumer", journal, runner))

    with pytest.raises(RuntimeError, match="index locked"):
        await runner.start()
    assert journal.events == [
        "start producer (not serving)",
        "start writer",
        "drain",
        "registry closed",
        "stop producer",
        "close pools",
    ]
    journal.events.clear()
    await runner.stop()
    assert journal.events == []


async def test_a_component_failing_after_serving_stops_the_service() -> None:
    journal = Journal()
    runner = _runner(journal)
    runner.on_close(_hook("close pools", journal))
    runner.start_before_serving(_component("producer", journal, runner))
    runner.start_after_serving(_component("consumer", journal, runner))

    async def refuse() -> None:
        raise ConnectionError("broker unreachable")

    runner.start_after_serving(Background(refuse, _hook("stop worker", journal)))

    with pytest.raises(ConnectionError, match="broker unreachable"):
        await runner.start()
    assert journal.events == [
        "start producer (not serving)",
        "register",
        "start consumer (serving)",
        "deregister",
        "stop consumer",
        "drain",
        "registry closed",
        "stop producer",
        "close pools",
    ]


async def test_a_failing_stop_is_logged_and_the_rest_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = Journal()
    runner = _runner(journal)
    runner.on_close(_hook("close pools", journal))

    async def fail() -> None:
        journal("stop consumer")
        raise RuntimeError("consumer stuck")

    runner.start_after_serving(Background(_hook("start consumer", journal), fail))
    runner.start_after_serving(_async_steps("worker", journal))
    await runner.start()
    journal.events.clear()
    await runner.stop()
    assert journal.events == [
        "deregister",
        "stop worker",
        "stop consumer",
        "drain",
        "registry closed",
        "close pools",
    ]
    assert any(r.message == "stopping a component failed" for r in caplog.records)


async def test_components_are_found_by_type() -> None:
    journal = Journal()
    runner = _runner(journal)
    consumer = runner.start_after_serving(_component("consumer", journal, runner))
    assert runner.component(SyncStartAsyncStop) is consumer
    with pytest.raises(LookupError, match="no Journal component"):
        runner.component(Journal)


async def test_mount_finds_the_generated_service_of_a_servicer() -> None:
    from webook.follow.v1 import follow_pb2, follow_pb2_grpc

    # A servicer that implements nothing: the generated base answers UNIMPLEMENTED.
    servicer_type: type[Any] = type("Servicer", (follow_pb2_grpc.FollowServiceServicer,), {})
    runner = ServiceRunner("mount-test", GrpcServiceSettings(grpc_port=0, metrics_port=-1))
    runner.mount(servicer_type())
    full_name = follow_pb2.DESCRIPTOR.services_by_name["FollowService"].full_name
    await runner.start()
    try:
        async with grpc.aio.insecure_channel(runner.address) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=full_name), timeout=10
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await runner.stop()


async def test_mount_refuses_an_object_that_is_no_generated_servicer() -> None:
    runner = ServiceRunner("mount-test", GrpcServiceSettings(grpc_port=0, metrics_port=-1))
    with pytest.raises(TypeError, match="generated servicer"):
        runner.mount(object())

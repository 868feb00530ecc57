"""The admin API (``MigratorService``) over a real grpc.aio server, on two real databases and
the session's broker: status (units of work in flight included), mode switches and their
refusals (the two "first" modes only through ``switching``), a full validation started
through the API whose differences the in-process fixer repairs, an incremental validation
that runs until stopped, and the errors' reasons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest

from kit.config import GrpcServiceSettings, Mode
from kit.errors import AppError
from kit.events import EventProducer
from kit.events.tests.support import consumer_config, producer_config, unique
from kit.grpcx.errors import app_error_from_rpc
from kit.grpcx.server import ServiceRunner
from kit.migrator import (
    DifferenceSink,
    Direction,
    DoubleWriter,
    Fixer,
    KafkaDifferenceSink,
    MigratedTable,
    ModeHolder,
    Validation,
    Validator,
    ValidatorConfig,
)
from kit.migrator.admin import STOPPED, HostedFixer, HostedMigration, MigratorAdmin
from kit.migrator.errors import DOMAIN, Reason
from kit.migrator.tests.support import NOTES, Pair, RecordingSink, rows_of
from kit.migrator.tests.test_validation import seed_with_differences
from webook.migrator.v1 import migrator_pb2
from webook.migrator.v1.migrator_pb2_grpc import MigratorServiceStub

if TYPE_CHECKING:
    from webook.migrator.v1.migrator_pb2_grpc import MigratorServiceAsyncStub

pytestmark = pytest.mark.integration

# A loaded two-core machine: bounds a hang only; conditions are polled, never slept on.
WAIT_S = 90.0
FULL = migrator_pb2.VALIDATION_KIND_FULL
INCREMENTAL = migrator_pb2.VALIDATION_KIND_INCREMENTAL


@dataclass
class Served:
    """A runner serving the admin API over one hosted migration, and its client."""

    hosted: HostedMigration
    stub: MigratorServiceAsyncStub


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` until it holds; fail after :data:`WAIT_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def validators(pair: Pair) -> Callable[[MigratedTable, Direction, DifferenceSink], Validator]:
    config = ValidatorConfig(batch_size=7, recheck_delay_s=0, rows_per_second=lambda: 1e9)
    return lambda table, direction, sink: Validator(
        table, pair.sides, direction, sink, pair.checkpoints, config
    )


async def serve(hosted: list[HostedMigration]) -> tuple[ServiceRunner, grpc.aio.Channel]:
    """A runner on a free port mounting the admin API, and a channel to it."""
    settings = GrpcServiceSettings(mode=Mode.TEST, grpc_port=0, metrics_port=-1, shutdown_grace=1.0)
    runner = ServiceRunner("migrator-admin-test", settings, registration=None)
    runner.mount(MigratorAdmin(hosted))
    for migration in hosted:
        runner.on_shutdown(migration.close)
        if migration.fixer is not None:
            runner.start_after_serving(migration.fixer)
    port = await runner.start()
    return runner, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[tuple[EventProducer, str]]:
    topic = unique("webook-test-migrator-admin")
    events = EventProducer(producer_config(kafka_bootstrap, topic))
    events.start()
    yield events, topic
    await events.stop()


@pytest.fixture
async def served(
    pair: Pair, kafka_bootstrap: str, producer: tuple[EventProducer, str]
) -> AsyncIterator[Served]:
    """The notes migration in ``source_first``, its fixer consuming the test topic."""
    events, topic = producer
    fixer = HostedFixer(
        Fixer([NOTES], pair.sides),
        consumer_config(kafka_bootstrap, unique("migrator-admin-fixer")),
        topic=topic,
    )
    hosted = HostedMigration(
        ModeHolder(unique("admin"), "source_first"),
        [NOTES],
        validators(pair),
        KafkaDifferenceSink(events, topic=topic),
        pair.checkpoints,
        fixer=fixer,
        incremental_interval_s=0.1,
    )
    runner, channel = await serve([hosted])
    try:
        assert await fixer.consumer.wait_assigned(WAIT_S)
        yield Served(hosted, MigratorServiceStub(channel))
    finally:
        await channel.close(None)
        await runner.stop()


async def refused(call: Awaitable[object]) -> AppError:
    """The error a call answers (fails the test if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return app_error_from_rpc(info.value)


async def status(stub: MigratorServiceAsyncStub) -> migrator_pb2.StatusResponse:
    return await stub.Status(migrator_pb2.StatusRequest())


def validation(
    answer: migrator_pb2.StatusResponse, kind: migrator_pb2.ValidationKind.ValueType
) -> migrator_pb2.ValidationStatus:
    found = [v for v in answer.validations if v.kind == kind]
    assert len(found) == 1, answer
    return found[0]


async def test_a_full_validation_started_through_the_api_is_reported_and_repaired(
    served: Served, pair: Pair
) -> None:
    expected = await seed_with_differences(pair)
    stub = served.stub
    before = await status(stub)
    assert before.migration == served.hosted.name
    assert list(before.tables) == [NOTES.name]
    assert before.mode == "source_first"
    assert not before.validations
    assert before.fixer.running
    assert before.fixer.fixed == 0

    # No base given: the mode's first side, the source.
    await stub.StartValidation(migrator_pb2.StartValidationRequest(kind=FULL))

    async def full_ended() -> bool:
        return validation(await status(stub), FULL).ended_ms > 0

    await until(full_ended, "the full validation to end")
    run = validation(await status(stub), FULL)
    assert not run.running
    assert run.error == ""
    assert run.base == migrator_pb2.SIDE_SOURCE
    assert run.differences == len(expected)
    assert run.rows_checked >= 50
    assert run.started_ms <= run.ended_ms
    assert run.checkpoint == f"{NOTES.name} key=- passes=1"

    async def repaired() -> bool:
        return (await status(stub)).fixer.fixed >= len(expected)

    await until(repaired, "the fixer to repair every difference")
    assert await rows_of(pair.sides.destination) == await rows_of(pair.sides.source)

    # A second pass finds nothing left; the status shows the latest run only.
    await stub.StartValidation(
        migrator_pb2.StartValidationRequest(kind=FULL, base=migrator_pb2.SIDE_SOURCE)
    )
    await until(full_ended, "the second full validation to end")
    again = validation(await status(stub), FULL)
    assert again.differences == 0
    assert again.error == ""
    assert again.checkpoint == f"{NOTES.name} key=- passes=2"


async def test_an_incremental_validation_runs_until_stopped_and_one_runs_per_kind(
    served: Served, pair: Pair
) -> None:
    await seed_with_differences(pair)
    stub = served.stub
    start = migrator_pb2.StartValidationRequest(kind=INCREMENTAL, base=migrator_pb2.SIDE_SOURCE)
    await stub.StartValidation(start)
    error = await refused(stub.StartValidation(start))
    assert (error.kind, error.reason, error.domain) == (
        "FAILED_PRECONDITION",
        Reason.ALREADY_RUNNING,
        DOMAIN,
    )

    async def passed_twice() -> bool:
        run = served.hosted.run(Validation.INCREMENTAL)
        return run is not None and run.passes >= 2

    await until(passed_twice, "two incremental passes")
    running = validation(await status(stub), INCREMENTAL)
    assert running.running
    assert running.ended_ms == 0
    assert running.rows_checked > 0
    assert running.checkpoint.startswith(f"{NOTES.name} time=")

    await stub.StopValidation(migrator_pb2.StopValidationRequest(kind=INCREMENTAL))
    stopped = validation(await status(stub), INCREMENTAL)
    assert not stopped.running
    assert stopped.ended_ms > 0
    assert stopped.error == STOPPED
    # Stopping what does not run is not an error; a new run may start.
    await stub.StopValidation(migrator_pb2.StopValidationRequest(kind=INCREMENTAL))
    await stub.StartValidation(start)
    assert validation(await status(stub), INCREMENTAL).running


async def test_modes_switch_one_step_at_a_time_and_errors_carry_their_reasons(pair: Pair) -> None:
    notes = HostedMigration(
        ModeHolder(unique("notes")), [NOTES], validators(pair), RecordingSink(), pair.checkpoints
    )
    other = HostedMigration(
        ModeHolder(unique("other")), [NOTES], validators(pair), RecordingSink(), pair.checkpoints
    )
    runner, channel = await serve([notes, other])
    stub: MigratorServiceAsyncStub = MigratorServiceStub(channel)
    try:
        answer = await stub.Status(migrator_pb2.StatusRequest(migration=notes.name))
        assert answer.mode == "source_only"
        assert not answer.fixer.running
        assert not answer.validations

        def set_mode(mode: str, *, force: bool = False) -> Awaitable[migrator_pb2.SetModeResponse]:
            request = migrator_pb2.SetModeRequest(migration=notes.name, mode=mode, force=force)
            return stub.SetMode(request)

        switched = await set_mode("SOURCE_FIRST")
        assert (switched.previous, switched.mode) == ("source_only", "source_first")
        assert notes.mode.current().value == "source_first"
        assert other.mode.current().value == "source_only"  # another migration, untouched

        # The other "first" mode only through the barrier, whose drain Status shows.
        direct = await refused(set_mode("destination_first"))
        assert (direct.kind, direct.reason) == ("FAILED_PRECONDITION", Reason.MODE_REFUSED)
        assert "through switching" in direct.message
        writer = DoubleWriter(pair.sides, notes.mode, [NOTES])
        async with writer.unit_of_work() as uow:
            answer = await stub.Status(migrator_pb2.StatusRequest(migration=notes.name))
            assert (answer.mode, answer.units_in_flight) == ("source_first", 1)
            await set_mode("switching")
            answer = await stub.Status(migrator_pb2.StatusRequest(migration=notes.name))
            assert (answer.mode, answer.units_in_flight) == ("switching", 1)
            assert uow.mode.value == "source_first"
        answer = await stub.Status(migrator_pb2.StatusRequest(migration=notes.name))
        assert (answer.mode, answer.units_in_flight) == ("switching", 0)
        back = await set_mode("source_first")
        assert (back.previous, back.mode) == ("switching", "source_first")

        skipped = await refused(set_mode("destination_only"))
        assert (skipped.kind, skipped.reason, skipped.domain) == (
            "FAILED_PRECONDITION",
            Reason.MODE_REFUSED,
            DOMAIN,
        )
        assert notes.mode.current().value == "source_first"
        forced = await set_mode("destination_only", force=True)
        assert (forced.previous, forced.mode) == ("source_first", "destination_only")
        assert notes.mode.current().value == "destination_only"

        unknown_mode = await refused(set_mode("sideways"))
        assert (unknown_mode.kind, unknown_mode.reason) == (
            "INVALID_ARGUMENT",
            Reason.INVALID_ARGUMENT,
        )
        assert unknown_mode.metadata == {"field": "mode"}

        unknown = await refused(stub.Status(migrator_pb2.StatusRequest(migration="nope")))
        assert (unknown.kind, unknown.reason, unknown.domain) == (
            "NOT_FOUND",
            Reason.UNKNOWN_MIGRATION,
            DOMAIN,
        )
        unnamed = await refused(stub.Status(migrator_pb2.StatusRequest()))
        assert (unnamed.kind, unnamed.metadata) == ("INVALID_ARGUMENT", {"field": "migration"})
        no_kind = await refused(
            stub.StartValidation(migrator_pb2.StartValidationRequest(migration=notes.name))
        )
        assert (no_kind.kind, no_kind.metadata) == ("INVALID_ARGUMENT", {"field": "kind"})
        bad_side = await refused(
            stub.StartValidation(
                migrator_pb2.StartValidationRequest(
                    migration=notes.name,
                    kind=FULL,
                    base=7,  # type: ignore[arg-type]
                )
            )
        )
        assert (bad_side.kind, bad_side.metadata) == ("INVALID_ARGUMENT", {"field": "base"})

        # In destination_only, a validation without a base takes the destination as right.
        await stub.StartValidation(
            migrator_pb2.StartValidationRequest(migration=notes.name, kind=FULL)
        )
        run = notes.run(Validation.FULL)
        assert run is not None
        assert run.direction is Direction.DESTINATION_TO_SOURCE
        assert run.task is not None
        await asyncio.wait_for(asyncio.shield(run.task), WAIT_S)
        assert run.error == ""
        assert run.differences == 0
    finally:
        await channel.close(None)
        await runner.stop()

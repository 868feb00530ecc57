"""``webookctl migrate`` against real processes hosting the migrator's admin API over mTLS.

Two instances of ``interactive`` (two :class:`~kit.grpcx.server.ServiceRunner` in this test's
event loop, each mounting :class:`~kit.migrator.admin.MigratorAdmin` over its own
:class:`~kit.migrator.admin.HostedMigration`) move the migrator tests' notes table between
two SQLite databases; both register in the session's etcd under a prefix of their own and
serve with the ``interactive`` certificate of the PKI a local stack makes. The operator's
certificate is the one the API accepts; a workload's is refused. Differences go to a
recording sink: the fixer and Kafka play no part in what the command does.

What needs no server (the command line argparse refuses, a bad ``--service``, how
answers of several instances are summed up in one line) is checked without one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.tls import OPERATOR, stack_pki
from kit.config import GrpcServiceSettings, Mode
from kit.grpcx.server import ServiceRunner
from kit.migrator import (
    CheckpointStore,
    Direction,
    DoubleWriter,
    MigratedTable,
    ModeHolder,
    Sides,
    Validator,
    ValidatorConfig,
)
from kit.migrator.admin import STOPPED, HostedMigration, MigratorAdmin
from kit.migrator.tests.support import NOTES, Pair, RecordingSink, metadata
from kit.migrator.tests.test_validation import seed_with_differences
from kit.registry.tests.helpers import eventually
from kit.security.pki import Pki
from kit.sql import create_engine, session_factory
from webook.migrator.v1 import migrator_pb2
from webookctl.migrate import Answer, Instance, failure_line, status_data
from webookctl.tests.run import Result, run

integration = pytest.mark.integration

SERVICE = "interactive"
# Bounds a hang on a loaded machine only; conditions are polled, never slept on.
WAIT_S = 90.0
# The differences seed_with_differences leaves for a source-to-destination validation.
SEEDED_DIFFERENCES = 9


@dataclass
class Hosting:
    """One instance: its runner, its migration and the sink its validators publish to."""

    runner: ServiceRunner
    hosted: HostedMigration
    sink: RecordingSink

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.runner.port}"


@dataclass
class MigrationStack:
    """Two instances of one migration, registered in etcd, and how to call them."""

    instances: list[Hosting]
    pki: Pki
    etcd: str
    prefix: str
    migration: str
    sides: Sides

    def tls_flags(self, identity: str = OPERATOR) -> list[str]:
        cert, key = self.pki.files(identity)
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(self.pki.ca_file)]

    async def migrate(self, *argv: str, identity: str = OPERATOR) -> Result:
        """``webookctl migrate argv`` as ``identity``, the instances found through etcd."""
        return await run("--etcd", self.etcd, *self.tls_flags(identity), "migrate", *argv)

    def modes(self) -> list[str]:
        return [i.hosted.mode.current().value for i in self.instances]

    def by_address(self, address: str) -> Hosting:
        (found,) = (i for i in self.instances if i.address == address)
        return found


def _validators(pair: Pair) -> Any:
    config = ValidatorConfig(batch_size=7, recheck_delay_s=0, rows_per_second=lambda: 1e9)

    def make(table: MigratedTable, direction: Direction, sink: Any) -> Validator:
        return Validator(table, pair.sides, direction, sink, pair.checkpoints, config)

    return make


@pytest.fixture
async def migration_stack(
    tmp_path: Path, etcd_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MigrationStack]:
    engines: list[AsyncEngine] = [
        create_engine(f"sqlite+aiosqlite:///{tmp_path / name}.db")
        for name in ("source", "destination")
    ]
    runners: list[ServiceRunner] = []
    try:
        for engine in engines:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        sides = Sides(session_factory(engines[0]), session_factory(engines[1]))
        pair = Pair("sqlite", sides, CheckpointStore(sides.destination))
        await pair.checkpoints.ensure_table()
        await seed_with_differences(pair)
        pki = stack_pki(tmp_path)
        cert, key = pki.files(SERVICE)
        prefix = f"/webookctl-migrate-{uuid.uuid4().hex[:8]}/services"
        monkeypatch.setenv("WEBOOKCTL_REGISTRY_PREFIX", prefix)
        migration = f"notes-{uuid.uuid4().hex[:6]}"
        instances = []
        for _ in range(2):
            settings = GrpcServiceSettings(
                mode=Mode.TEST,
                grpc_port=0,
                metrics_port=-1,
                shutdown_grace=0.5,
                deregister_drain_delay=0,
                etcd_endpoints=[etcd_endpoint],
                registry_prefix=prefix,
                tls_cert_file=str(cert),
                tls_key_file=str(key),
                tls_ca_file=str(pki.ca_file),
            )
            sink = RecordingSink()
            hosted = HostedMigration(
                ModeHolder(migration, "source_first"),
                [NOTES],
                _validators(pair),
                sink,
                pair.checkpoints,
                incremental_interval_s=0.1,
            )
            runner = ServiceRunner(SERVICE, settings)
            runner.mount(MigratorAdmin([hosted]))
            runner.on_shutdown(hosted.close)
            await runner.start()
            runners.append(runner)
            instances.append(Hosting(runner, hosted, sink))
        yield MigrationStack(instances, pki, etcd_endpoint, prefix, migration, sides)
    finally:
        for runner in runners:
            await runner.stop()
        for engine in engines:
            await engine.dispose()


async def _registered(stack: MigrationStack) -> None:
    """Wait until etcd lists both instances (registration is written before start returns;
    this bounds a slow etcd only)."""

    async def both() -> bool:
        listed = await stack.migrate("status", "--json")
        return listed.status == 0 and len(listed.json()["instances"]) == 2

    await eventually(both, WAIT_S, "both instances listed in etcd")


@integration
async def test_status_of_every_instance(migration_stack: MigrationStack) -> None:
    stack = migration_stack
    await _registered(stack)
    shown = await stack.migrate("status", "--json")
    assert shown.status == 0, shown.err
    document = shown.json()
    assert document["service"] == SERVICE
    addresses = {i.address for i in stack.instances}
    assert {i["address"] for i in document["instances"]} == addresses
    for instance in document["instances"]:
        assert instance["instance"]  # the registry's id
        assert instance["status"] == {
            "migration": stack.migration,
            "tables": ["migrator_notes"],
            "mode": "source_first",
            "units_in_flight": 0,
            "validations": [],
            "fixer": {"running": False, "fixed": 0, "skipped": 0},
        }
    text = await stack.migrate("status")
    assert text.status == 0, text.err
    lines = text.out.splitlines()
    heads = [line for line in lines if line.startswith("instance ")]
    assert len(heads) == 2
    assert all(
        f"migration {stack.migration}, mode source_first, 0 units of work in flight" in h
        for h in heads
    )
    assert all(any(a in h for a in addresses) for h in heads)
    assert lines.count("  no validation started here") == 2
    assert "disagree" not in text.out


@integration
async def test_mode_switches_every_instance_and_refuses_a_skipped_step(
    migration_stack: MigrationStack,
) -> None:
    stack = migration_stack
    await _registered(stack)
    skipped = await stack.migrate("mode", "destination_only")
    assert (skipped.status, skipped.out) == (1, "")
    assert skipped.err.startswith(
        f"webookctl: {SERVICE} SetMode: FAILED_PRECONDITION MIGRATOR_MODE_REFUSED: "
    )
    assert "skips a step" in skipped.err
    assert skipped.err.endswith("; --force makes a switch skipping a step\n")
    assert all(i.address in skipped.err for i in stack.instances)
    assert skipped.err.count("\n") == 1
    assert stack.modes() == ["source_first", "source_first"]
    # The other "first" mode: through the barrier.
    direct = await stack.migrate("mode", "destination_first")
    assert direct.status == 1
    assert "MIGRATOR_MODE_REFUSED" in direct.err
    assert direct.err.endswith("; between the two first modes under writes: --via-switching\n")
    assert stack.modes() == ["source_first", "source_first"]

    forced = await stack.migrate("mode", "destination_only", "--force", "--json")
    assert forced.status == 0, forced.err
    document = forced.json()
    assert document["mode"] == "destination_only"
    assert sorted(i["address"] for i in document["instances"]) == sorted(
        i.address for i in stack.instances
    )
    assert {(i["previous"], i["mode"]) for i in document["instances"]} == {
        ("source_first", "destination_only")
    }
    assert (
        "webookctl config set interactive migration_mode=destination_only" in (document["durable"])
    )
    assert stack.modes() == ["destination_only", "destination_only"]

    # One step back, as people read it.
    back = await stack.migrate("mode", "destination_first")
    assert back.status == 0, back.err
    title, header, *rows, hint = back.out.splitlines()
    assert title == f"{SERVICE}: mode destination_first on 2 instance(s)"
    assert header.split() == ["INSTANCE", "ADDRESS", "BEFORE", "NOW"]
    assert [row.split()[2:] for row in rows] == [["destination_only", "destination_first"]] * 2
    assert hint.startswith(
        "these processes hold destination_first until the live mode setting changes"
    )
    assert stack.modes() == ["destination_first", "destination_first"]


@integration
async def test_mode_at_one_address_switches_that_instance_only(
    migration_stack: MigrationStack,
) -> None:
    stack = migration_stack
    one, other = stack.instances
    switched = await stack.migrate("mode", "source_only", "--address", one.address)
    assert switched.status == 0, switched.err
    assert (one.hosted.mode.current().value, other.hosted.mode.current().value) == (
        "source_only",
        "source_first",
    )
    both = ",".join(i.address for i in stack.instances)
    shown = await stack.migrate("status", "--address", both)
    assert shown.status == 0, shown.err
    assert "the instances disagree on the mode (source_first, source_only)" in shown.out


@integration
async def test_status_shows_the_barrier_and_its_drain(migration_stack: MigrationStack) -> None:
    stack = migration_stack
    await _registered(stack)
    one, _ = stack.instances
    writer = DoubleWriter(stack.sides, one.hosted.mode, [NOTES])
    async with writer.unit_of_work():
        switched = await stack.migrate("mode", "switching")
        assert switched.status == 0, switched.err
        busy = await stack.migrate("status")
        assert busy.status == 0, busy.err
        assert f"{one.address}: migration {stack.migration}" in busy.out
        assert "mode switching, 1 units of work in flight" in busy.out
        assert "every instance is switching: 1 units of work still in flight" in busy.out
        document = (await stack.migrate("status", "--json")).json()
        assert sorted(i["status"]["units_in_flight"] for i in document["instances"]) == [0, 1]
    drained = await stack.migrate("status")
    assert "every instance is switching: none has a unit of work in flight" in drained.out


@integration
async def test_via_switching_is_refused_unless_every_instance_is_on_the_way(
    migration_stack: MigrationStack,
) -> None:
    stack = migration_stack
    await _registered(stack)
    one, _ = stack.instances
    assert (await stack.migrate("mode", "source_only", "--address", one.address)).status == 0
    refused = await stack.migrate(
        "mode", "destination_first", "--via-switching", "--why", "test", "--env", "test"
    )
    assert (refused.status, refused.out) == (1, "")
    assert refused.err.startswith(
        f"webookctl: {SERVICE}: --via-switching to destination_first goes from source_first; "
        "the instances are in source_first, source_only ("
    )
    assert refused.err.endswith("; nothing switched\n")
    assert sorted(stack.modes()) == ["source_first", "source_only"]


@integration
async def test_full_validation_started_on_one_instance_and_reported(
    migration_stack: MigrationStack,
) -> None:
    stack = migration_stack
    await _registered(stack)
    started = await stack.migrate("full", "start", "--base", "source", "--json")
    assert started.status == 0, started.err
    document = started.json()
    assert document["migration"] == stack.migration
    first = stack.by_address(document["address"])
    assert document["validation"]["kind"] == "full"
    assert document["validation"]["base"] == "source"
    # The first instance by registry id.
    assert document["instance"] == min((await _ids(stack)).values())

    async def ended() -> bool:
        shown = await stack.migrate("status", "--json", "--address", first.address)
        (instance,) = shown.json()["instances"]
        (validation,) = instance["status"]["validations"]
        return not validation["running"]

    await eventually(ended, WAIT_S, "the full validation to end")
    shown = await stack.migrate("status", "--address", first.address, "--json")
    (validation,) = shown.json()["instances"][0]["status"]["validations"]
    assert validation["error"] == ""
    assert validation["differences"] == SEEDED_DIFFERENCES
    assert validation["rows_checked"] > 0
    assert validation["ended_ms"] >= validation["started_ms"] > 0
    assert validation["checkpoint"].startswith("migrator_notes ")
    assert len(first.sink.published) == SEEDED_DIFFERENCES
    (other,) = (i for i in stack.instances if i is not first)
    assert other.hosted.runs() == []

    text = await stack.migrate("status", "--address", first.address)
    (row,) = [line for line in text.out.splitlines() if line.strip().startswith("full ")]
    assert row.split()[:5] == ["full", "source", "ended", str(validation["rows_checked"]), "9"]

    nothing = await stack.migrate("full", "stop")
    assert nothing.status == 0, nothing.err
    assert nothing.out == f"no full validation runs on the 2 instance(s) of {SERVICE}\n"


@integration
async def test_incremental_validation_runs_until_stopped_and_once_at_a_time(
    migration_stack: MigrationStack,
) -> None:
    stack = migration_stack
    await _registered(stack)
    started = await stack.migrate("incr", "start")
    assert started.status == 0, started.err
    # No --base: the current mode's first side (source_first: the source).
    assert started.out.startswith(f"incremental validation of {stack.migration} started on ")
    assert started.out.rstrip().endswith("(base: source)")
    (running,) = (i for i in stack.instances if i.hosted.runs())

    again = await stack.migrate("incr", "start")
    assert (again.status, again.out) == (1, "")
    running_id = (await _ids(stack))[running.address]
    assert again.err == (
        f"webookctl: the incremental validation of {stack.migration} already runs on "
        f"{running_id} at {running.address}: `webookctl migrate incr stop` first\n"
    )
    assert sum(len(i.hosted.runs()) for i in stack.instances) == 1

    stopped = await stack.migrate("incr", "stop", "--json")
    assert stopped.status == 0, stopped.err
    assert stopped.json()["stopped"] == [{"instance": running_id, "address": running.address}]
    (run_,) = running.hosted.runs()
    assert not run_.running
    assert run_.error == STOPPED
    shown = await stack.migrate("status", "--address", running.address, "--json")
    (validation,) = shown.json()["instances"][0]["status"]["validations"]
    assert (validation["kind"], validation["running"], validation["error"]) == (
        "incremental",
        False,
        "stopped",
    )


@integration
async def test_refusals_exit_1_with_the_reason(migration_stack: MigrationStack) -> None:
    stack = migration_stack
    await _registered(stack)
    unknown = await stack.migrate("status", "--migration", "nope")
    assert (unknown.status, unknown.out) == (1, "")
    assert unknown.err.startswith(
        f"webookctl: {SERVICE} Status: NOT_FOUND MIGRATOR_UNKNOWN_MIGRATION: no migration 'nope'"
    )
    assert unknown.err.count("\n") == 1
    for argv in (["mode", "source_only"], ["full", "start"], ["incr", "stop"]):
        refused = await stack.migrate(*argv, "--migration", "nope")
        assert refused.status == 1, argv
        assert "MIGRATOR_UNKNOWN_MIGRATION" in refused.err
    assert stack.modes() == ["source_first", "source_first"]
    assert all(i.hosted.runs() == [] for i in stack.instances)

    # Nothing registered under another service's name.
    missing = await stack.migrate("status", "--service", "comment")
    assert (missing.status, missing.out) == (1, "")
    assert missing.err.startswith("webookctl: no instance of comment is registered in etcd at ")


@integration
async def test_an_instance_without_the_migration_is_reported(
    migration_stack: MigrationStack,
) -> None:
    stack = migration_stack
    cert, key = stack.pki.files(SERVICE)
    settings = GrpcServiceSettings(
        mode=Mode.TEST,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_ca_file=str(stack.pki.ca_file),
    )
    # An interactive process configured without a migration: no MigratorService.
    plain = ServiceRunner(SERVICE, settings, registration=None)
    port = await plain.start()
    try:
        bare = f"127.0.0.1:{port}"
        hosting = stack.instances[0]
        both = f"{hosting.address},{bare}"
        shown = await stack.migrate("status", "--address", both, "--json")
        assert shown.status == 0, shown.err
        answered, failed = shown.json()["instances"]
        assert answered["status"]["mode"] == "source_first"
        assert failed["address"] == bare
        assert failed["error"].startswith("UNIMPLEMENTED ")
        assert failed["error"].endswith("(that process hosts no migration: none is configured)")
        text = await stack.migrate("status", "--address", both)
        assert f"instance {bare}: failed: UNIMPLEMENTED " in text.out

        alone = await stack.migrate("status", "--address", bare)
        assert (alone.status, alone.out) == (1, "")
        assert alone.err.startswith(f"webookctl: {SERVICE} Status: UNIMPLEMENTED ")

        partly = await stack.migrate("mode", "source_only", "--address", both)
        assert (partly.status, partly.out) == (1, "")
        assert partly.err.startswith(f"webookctl: {SERVICE} SetMode: UNIMPLEMENTED ")
        assert partly.err.endswith(f"; done on 1 of 2 instances: {hosting.address}\n")
        # The instance that answered did switch: the line says so.
        assert hosting.hosted.mode.current().value == "source_only"

        # Whether a validation runs on the bare one cannot be told: nothing is started.
        start = await stack.migrate("full", "start", "--address", both)
        assert (start.status, start.out) == (1, "")
        assert "cannot tell whether a full validation already runs there" in start.err
        assert hosting.hosted.runs() == []
    finally:
        await plain.stop()


@integration
@pytest.mark.parametrize("workload", ["gateway", "interactive"])
async def test_a_workload_certificate_is_refused(
    migration_stack: MigrationStack, workload: str
) -> None:
    stack = migration_stack
    await _registered(stack)
    for argv in (["status"], ["mode", "source_only", "--force"]):
        result = await stack.migrate(*argv, identity=workload)
        assert (result.status, result.out) == (1, "")
        assert "PERMISSION_DENIED" in result.err
        assert "operator certificate" in result.err
    assert stack.modes() == ["source_first", "source_first"]


async def _ids(stack: MigrationStack) -> dict[str, str]:
    """Each instance's registry id, by address."""
    shown = await stack.migrate("status", "--json")
    return {i["address"]: i["instance"] for i in shown.json()["instances"]}


@pytest.mark.parametrize(
    "argv",
    [
        ["migrate"],
        ["migrate", "mode"],
        ["migrate", "mode", "sideways"],
        ["migrate", "full"],
        ["migrate", "full", "start", "--base", "left"],
        ["migrate", "incr", "pause"],
        ["migrate", "status", "--force"],
    ],
)
async def test_argparse_refuses_with_status_2(argv: list[str]) -> None:
    result = await run(*argv)
    assert (result.status, result.out) == (2, "")
    assert result.err.startswith("usage: webookctl")
    assert "error: " in result.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["status", "--service", "Interactive"],
            "--service: not a workload name: 'Interactive' (lower-case letters, digits, '-')",
        ),
        (["mode", "source_first", "--address", " , "], "--address: no HOST:PORT given"),
        (
            ["mode", "destination_only", "--via-switching", "--why", "x"],
            "--via-switching goes to source_first or destination_first, not destination_only",
        ),
        (
            ["mode", "destination_first", "--via-switching"],
            "--via-switching writes the live mode setting: give --why",
        ),
        (
            ["mode", "destination_first", "--via-switching", "--why", "x", "--force"],
            "--via-switching and --force do not go together",
        ),
    ],
)
async def test_usage_errors_exit_2_before_anything_is_sent(argv: list[str], message: str) -> None:
    result = await run("migrate", *argv)
    assert (result.status, result.out) == (2, "")
    assert result.err == f"webookctl: {message}\n"


def test_help_names_every_command() -> None:
    from webookctl.__main__ import build_parser

    parser = build_parser()
    for argv in (["migrate"], ["migrate", "full"], ["migrate", "incr"]):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*argv, "--help"])
        assert exited.value.code == 0


A = Instance("a-1", "10.0.0.1:50051")
B = Instance("b-2", "10.0.0.2:50051")
C = Instance("10.0.0.3:50051", "10.0.0.3:50051")


def test_one_line_for_the_same_error_on_every_instance() -> None:
    refused = "FAILED_PRECONDITION MIGRATOR_MODE_REFUSED: skips a step"
    answers: list[Answer[Any]] = [Answer(A, error=refused), Answer(C, error=refused)]
    assert failure_line("interactive", "SetMode", answers) == (
        f"interactive SetMode: {refused} (on a-1 at 10.0.0.1:50051, 10.0.0.3:50051)"
    )


def test_one_line_for_a_partial_failure_names_what_each_answered() -> None:
    answers: list[Answer[Any]] = [
        Answer(A, value=object()),
        Answer(B, error="UNAVAILABLE UNAVAILABLE: connection refused"),
        Answer(C, error="DEADLINE_EXCEEDED DEADLINE_EXCEEDED: deadline"),
    ]
    assert failure_line("interactive", "SetMode", answers) == (
        "interactive SetMode: b-2 at 10.0.0.2:50051: UNAVAILABLE UNAVAILABLE: connection "
        "refused; 10.0.0.3:50051: DEADLINE_EXCEEDED DEADLINE_EXCEEDED: deadline; done on 1 of "
        "3 instances: a-1 at 10.0.0.1:50051"
    )


def test_status_document_names_kinds_and_sides() -> None:
    answer = migrator_pb2.StatusResponse(
        migration="likes",
        tables=["interactive", "user_like_biz"],
        mode="source_first",
        units_in_flight=2,
        validations=[
            migrator_pb2.ValidationStatus(
                kind=migrator_pb2.VALIDATION_KIND_INCREMENTAL,
                base=migrator_pb2.SIDE_DESTINATION,
                running=True,
                rows_checked=12,
                differences=3,
                checkpoint="interactive time=5 key=[2] passes=1",
                started_ms=1000,
            )
        ],
        fixer=migrator_pb2.FixerStatus(running=True, fixed=3, skipped=1),
    )
    assert status_data(answer) == {
        "migration": "likes",
        "tables": ["interactive", "user_like_biz"],
        "mode": "source_first",
        "units_in_flight": 2,
        "validations": [
            {
                "kind": "incremental",
                "base": "destination",
                "running": True,
                "rows_checked": 12,
                "differences": 3,
                "checkpoint": "interactive time=5 key=[2] passes=1",
                "started_ms": 1000,
                "ended_ms": 0,
                "error": "",
            }
        ],
        "fixer": {"running": True, "fixed": 3, "skipped": 1},
    }

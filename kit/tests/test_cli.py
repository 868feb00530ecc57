"""The shared command line (:mod:`kit.grpcx.cli`): sub-commands, their arguments, the one
path that configures logging and tracing, and the exit status of an expected failure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.errors import AppError
from kit.grpcx import cli
from kit.grpcx.cli import Command, parse_command, run_service
from kit.grpcx.server import ServiceRunner


class DemoSettings(GrpcServiceSettings):
    """A service's settings under its own prefix."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_DEMO_", extra="ignore", frozen=True)


def never_built(settings: DemoSettings) -> ServiceRunner:
    raise AssertionError("serve is not run by these tests")


def _greet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True)
    parser.add_argument("--times", type=int, default=1)


class Recorder:
    """Commands that record what they were given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def greet(self, settings: DemoSettings, args: argparse.Namespace) -> None:
        self.calls.append(("greet", (args.name, args.times)))

    async def ratio(self, settings: DemoSettings, args: argparse.Namespace) -> None:
        self.calls.append(("ratio", settings.trace_sample_ratio))

    def migrate(self, settings: DemoSettings, args: argparse.Namespace) -> None:
        self.calls.append(("migrate", settings.database_url))

    async def fail(self, settings: DemoSettings, args: argparse.Namespace) -> None:
        raise AppError("INDEX_LOCKED", "the index is in use by another process")

    def commands(self) -> list[Command[DemoSettings]]:
        return [
            Command("greet", "say hello", self.greet, _greet_arguments, logs=False, traced=False),
            Command("ratio", "report the sample ratio", self.ratio),
            Command("migrate", "ensure the data directory", self.migrate, traced=False),
            Command("fail", "fail as expected", self.fail),
        ]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Logging and tracing set-ups run by :func:`run_service`, recorded instead of applied
    (they would replace the test process's logging)."""
    seen: list[tuple[str, Any]] = []

    class Provider:
        def shutdown(self) -> None:
            seen.append(("tracing shut down", None))

    def tracing(service: str, endpoint: str, *, sample_ratio: float) -> Provider:
        seen.append(("tracing", (service, sample_ratio)))
        return Provider()

    monkeypatch.setattr(cli, "configure_tracing", tracing)
    monkeypatch.setattr(
        cli, "configure_logging", lambda service, level: seen.append(("logs", service))
    )
    for key in ("WEBOOK_DEMO_TRACE_SAMPLE_RATIO", "WEBOOK_DEMO_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    return seen


def test_serve_is_the_default_and_the_env_file_goes_before_or_after(tmp_path: Path) -> None:
    env_file = tmp_path / "demo.env"
    command, args = parse_command("demo", never_built, [])
    assert (command.name, args.env_file) == ("serve", None)
    for argv in (
        ["--env-file", str(env_file), "migrate"],
        ["migrate", "--env-file", str(env_file)],
    ):
        command, args = parse_command("demo", never_built, argv)
        assert (command.name, args.env_file) == ("migrate", env_file)


def test_commands_add_their_own_arguments_and_replace_the_standard_ones(
    recorder: Recorder,
) -> None:
    commands = recorder.commands()
    command, args = parse_command(
        "demo", never_built, ["greet", "--name", "ann", "--times", "3"], commands=commands
    )
    assert (command.name, args.name, args.times) == ("greet", "ann", 3)
    command, _ = parse_command("demo", never_built, ["migrate"], commands=commands)
    assert command.run == recorder.migrate


@pytest.mark.parametrize(
    "argv", [["bogus"], ["greet"], ["greet", "--name", "ann", "--times", "many"], ["--port", "1"]]
)
def test_a_command_line_that_does_not_parse_exits_2(
    recorder: Recorder, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_command("demo", never_built, argv, commands=recorder.commands())
    assert exited.value.code == 2
    assert "usage: python -m services.demo" in capsys.readouterr().err


def test_every_traced_command_honours_the_sample_ratio(
    recorder: Recorder, configured: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBOOK_DEMO_TRACE_SAMPLE_RATIO", "0.25")
    assert (
        run_service("demo", DemoSettings, never_built, ["ratio"], commands=recorder.commands()) == 0
    )
    assert recorder.calls == [("ratio", 0.25)]
    assert configured == [
        ("logs", "demo"),
        ("tracing", ("demo", 0.25)),
        ("tracing shut down", None),
    ]


def test_a_command_may_leave_logging_and_tracing_alone(
    recorder: Recorder, configured: list[tuple[str, Any]]
) -> None:
    argv = ["greet", "--name", "ann"]
    assert run_service("demo", DemoSettings, never_built, argv, commands=recorder.commands()) == 0
    assert recorder.calls == [("greet", ("ann", 1))]
    assert configured == []


def test_settings_come_from_the_env_file(
    recorder: Recorder, configured: list[tuple[str, Any]], tmp_path: Path
) -> None:
    env_file = tmp_path / "demo.env"
    env_file.write_text("WEBOOK_DEMO_DATABASE_URL=sqlite+aiosqlite:///x.db\n")
    argv = ["migrate", "--env-file", str(env_file)]
    assert run_service("demo", DemoSettings, never_built, argv, commands=recorder.commands()) == 0
    assert recorder.calls == [("migrate", "sqlite+aiosqlite:///x.db")]
    assert configured == [("logs", "demo")]


def test_an_app_error_ends_with_one_line_and_status_1(
    recorder: Recorder, configured: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_service("demo", DemoSettings, never_built, ["fail"], commands=recorder.commands()) == 1
    )
    err = capsys.readouterr().err
    assert err == "demo fail failed: the index is in use by another process\n"
    assert configured[-1] == ("tracing shut down", None)

"""The command line itself: every parser's help, usage errors, settings, the schema registry.

Nothing here needs infrastructure; commands that fail to connect are run against a port
nobody listens on.
"""

from __future__ import annotations

import argparse

import pytest

from devstack.catalog import CATALOG
from devstack.infra import free_port
from gateway.settings import GatewaySettings
from kit.config import BaseServiceSettings, Mode
from webookctl import schemas
from webookctl.__main__ import build_parser, settings_from
from webookctl.config import parse_assignment
from webookctl.errors import UsageError
from webookctl.settings import CtlSettings
from webookctl.tests.run import ctl_env, run, run_process


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path (``("config", "get")``, ...) under ``parser``."""
    found: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _leaves(child, (*path, name))
    return found or [path]


COMMANDS = _leaves(build_parser())


def test_every_group_and_command_is_there() -> None:
    assert set(COMMANDS) == {
        ("config", "get"),
        ("config", "set"),
        ("config", "diff"),
        ("config", "history"),
        ("config", "rollback"),
        ("config", "copy"),
        ("sms", "records"),
        ("sessions", "revoke"),
        ("search", "reindex"),
        ("jobs", "list"),
        ("jobs", "add"),
        ("jobs", "pause"),
        ("jobs", "resume"),
        ("jobs", "run-now"),
        ("jobs", "history"),
        ("migrate", "status"),
        ("migrate", "mode"),
        ("migrate", "full", "start"),
        ("migrate", "full", "stop"),
        ("migrate", "incr", "start"),
        ("migrate", "incr", "stop"),
    }


@pytest.mark.parametrize(
    "path",
    [
        (),
        ("config",),
        ("sms",),
        ("sessions",),
        ("search",),
        ("jobs",),
        ("migrate",),
        ("migrate", "full"),
        ("migrate", "incr"),
        *COMMANDS,
    ],
    ids=str,
)
async def test_help_everywhere(path: tuple[str, ...]) -> None:
    result = await run(*path, "--help")
    assert result.status == 0
    assert result.out.startswith("usage: webookctl")
    assert result.err == ""


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["config"],
        ["nonsense"],
        ["config", "get"],
        ["config", "set", "gateway", "log_level=DEBUG"],  # no --why
        ["config", "history", "gateway", "--limit", "many"],
        ["config", "diff", "gateway"],  # no --to
        ["sessions", "revoke"],
        ["sessions", "revoke", "--user", "1", "--session", "abc"],
        ["sms", "records", "--status", "lost"],
        ["jobs", "add", "nightly"],  # no cron
        ["jobs", "pause"],  # no name
        ["jobs", "history", "nightly", "--limit", "many"],
    ],
    ids=" ".join,
)
async def test_usage_errors_exit_2(argv: list[str]) -> None:
    result = await run(*argv)
    assert result.status == 2
    assert result.out == ""
    assert "usage: webookctl" in result.err


@pytest.mark.parametrize(
    "argv",
    [
        ["config", "get", "gateway"],
        ["config", "set", "gateway", "log_level=DEBUG", "--why", "w"],
        ["config", "history", "gateway"],
        ["config", "copy", "gateway", "--to", "prod", "--why", "w"],
    ],
    ids=" ".join,
)
async def test_config_commands_need_an_environment(argv: list[str]) -> None:
    result = await run(*argv, "--etcd", f"127.0.0.1:{free_port()}")
    assert (result.status, result.out) == (2, "")
    assert result.err == "webookctl: no environment given: pass --env NAME or set WEBOOKCTL_ENV\n"


async def test_an_unknown_service_is_a_usage_error() -> None:
    result = await run("--env", "test", "config", "get", "nosuch")
    assert result.status == 2
    assert "unknown service 'nosuch'" in result.err
    assert "gateway" in result.err


async def test_bad_settings_are_a_usage_error() -> None:
    result = await run("--tls-cert", "a.pem", "sessions", "revoke", "--session", "s")
    assert result.status == 2
    assert "TLS needs all of" in result.err
    assert "Traceback" not in result.err


def test_flags_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOKCTL_ENV", "test")
    monkeypatch.setenv("WEBOOKCTL_ETCD_ENDPOINTS", "etcd-a:2379, etcd-b:2379")
    monkeypatch.setenv("WEBOOKCTL_REDIS_URL", "redis://cache:6379/0")
    args = build_parser().parse_args(["config", "get", "gateway", "--env", "prod"])
    settings = settings_from(args)
    assert settings.env == "prod"
    assert settings.etcd_endpoints == ["etcd-a:2379", "etcd-b:2379"]
    assert settings.redis_url == "redis://cache:6379/0"
    # Before the group or after the command: the same option, neither overwriting the other.
    args = build_parser().parse_args(
        ["--etcd", "x:1,y:2", "config", "get", "gateway", "--redis-url", "redis://r:1/0"]
    )
    settings = settings_from(args)
    assert (settings.env, settings.etcd_endpoints) == ("test", ["x:1", "y:2"])
    assert settings.redis_url == "redis://r:1/0"


def test_settings_take_a_json_list_and_refuse_half_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBOOKCTL_ETCD_ENDPOINTS", '["a:1", "b:2"]')
    assert CtlSettings().etcd_endpoints == ["a:1", "b:2"]
    monkeypatch.setenv("WEBOOKCTL_ETCD_USERNAME", "operator")
    args = build_parser().parse_args(["config", "get", "gateway"])
    with pytest.raises(UsageError, match="go together"):
        settings_from(args)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("log_level=DEBUG", ("log_level", "DEBUG")),
        ("shed_max_in_flight=64", ("shed_max_in_flight", 64)),
        ("ratio=0.25", ("ratio", 0.25)),
        ("flag=true", ("flag", True)),
        ('name="5"', ("name", "5")),
        ('rules={"a": [1, 2]}', ("rules", {"a": [1, 2]})),
        ("text=a=b", ("text", "a=b")),
        ("empty=", ("empty", "")),
        ("nothing=null", ("nothing", None)),
    ],
)
def test_values_are_json_or_plain_strings(text: str, expected: tuple[str, object]) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["no-equals", "=5", " =5"])
def test_an_assignment_needs_a_key(text: str) -> None:
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_assignment(text)


def test_the_schema_registry_covers_every_service_and_the_gateway() -> None:
    registry = schemas.registry()
    assert set(registry) == {"gateway", *(spec.name for spec in CATALOG)}
    assert registry["gateway"] is GatewaySettings
    for spec in CATALOG:
        cls = registry[spec.name]
        assert issubclass(cls, BaseServiceSettings)
        assert cls.__module__ == f"services.{spec.name}.settings"
        assert cls.model_config.get("env_prefix") == spec.env_prefix


def test_the_base_is_the_defaults_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBOOK_GATEWAY_LOG_LEVEL", "ERROR")
    base = schemas.defaults_of(GatewaySettings)
    assert base.mode is Mode.TEST
    assert base.log_level == "INFO"


async def test_the_process_exits_with_the_status_and_one_line() -> None:
    port = free_port()
    result = await run_process(
        "sessions",
        "revoke",
        "--session",
        "s-1",
        env=ctl_env(redis_url=f"redis://127.0.0.1:{port}/0"),
    )
    assert result.status == 1, result.err
    assert result.out == ""
    [line] = result.err.splitlines()
    assert line.startswith(f"webookctl: session store redis://127.0.0.1:{port}/0: ")
    help_result = await run_process("--help")
    assert help_result.status == 0
    assert "config" in help_result.out
    assert "sessions" in help_result.out
    usage = await run_process("config", "get")
    assert usage.status == 2
    assert "Traceback" not in usage.err

"""Settings validation, the command line and the migrations."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import jwt
import pytest
from pydantic import ValidationError
from sqlalchemy import Connection

from kit.grpcx.cli import parse_command
from kit.migrations import schema_drift
from kit.sql import create_engine
from services.sms.__main__ import COMMANDS, build_runner, main, run_worker
from services.sms.repository.dao import Base
from services.sms.settings import CallerSettings, ProviderKind, ProviderSettings, SmsSettings
from services.sms.tests.fakes import tencent_settings

pytestmark = pytest.mark.integration

REAL_SECRETS: dict[str, Any] = {
    # As `openssl rand -hex 32` makes them: prod refuses fewer than 32 random bytes.
    "code_hmac_key": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "caller_jwt_key": "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9",
    "tls_cert_file": "/var/run/webook/tls/tls.crt",
    "tls_key_file": "/var/run/webook/tls/tls.key",
    "tls_ca_file": "/var/run/webook/tls/ca.crt",
}


def test_prod_refuses_development_defaults() -> None:
    with pytest.raises(ValidationError, match="development default"):
        SmsSettings(
            mode="prod",
            providers=[tencent_settings("https://sms.example")],
            **{k: v for k, v in REAL_SECRETS.items() if k.startswith("tls_")},
        )
    with pytest.raises(ValidationError, match="local SMS provider"):
        SmsSettings(mode="prod", **REAL_SECRETS)
    settings = SmsSettings(
        mode="prod", providers=[tencent_settings("https://sms.example")], **REAL_SECRETS
    )
    assert settings.providers[0].kind is ProviderKind.TENCENT
    assert "tencent-test-secret-key" not in repr(settings)


def test_provider_and_caller_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="access_key_id"):
        ProviderSettings(name="t", kind=ProviderKind.TENCENT)
    with pytest.raises(ValidationError, match="must match"):
        ProviderSettings(name="Bad Name", kind=ProviderKind.LOCAL)
    with pytest.raises(ValidationError, match="unique"):
        SmsSettings(
            providers=[
                ProviderSettings(name="x", kind=ProviderKind.LOCAL),
                ProviderSettings(name="x", kind=ProviderKind.LOCAL),
            ]
        )
    with pytest.raises(ValidationError, match="at least 16"):
        CallerSettings(token="short")
    with pytest.raises(ValidationError, match="dots"):
        CallerSettings(token="looks.like.a-jwt-0123456789")
    with pytest.raises(ValidationError, match="32 bytes"):
        SmsSettings(caller_jwt_key="short-key")
    with pytest.raises(ValidationError, match="reserved"):
        SmsSettings(callers={"code": CallerSettings(templates=["*"])})


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOK_SMS_HEALTH__COOLDOWN_S", "12.5")
    monkeypatch.setenv(
        "WEBOOK_SMS_CALLERS",
        '{"crm": {"token": "crm-token-0123456789abcdef", "templates": ["promo"]}}',
    )
    monkeypatch.setenv("WEBOOK_SMS_CODE", '{"templates": {"login": "1234567"}}')
    settings = SmsSettings()
    assert settings.health.cooldown_s == 12.5
    assert settings.callers["crm"].templates == ["promo"]
    assert settings.code.templates == {"login": "1234567"}
    assert settings.database_url == "sqlite+aiosqlite:///.run/sms.db"


def test_issue_token_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBOOK_SMS_CALLER_JWT_KEY", "cli-test-key-0123456789abcdef0123")
    assert main(["issue-token", "--caller", "crm", "--templates", "promo,notice", "--admin"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(
        token, "cli-test-key-0123456789abcdef0123", algorithms=["HS256"], audience="webook-sms"
    )
    assert claims["sub"] == "crm"
    assert claims["tpl"] == ["notice", "promo"]
    assert claims["admin"] is True
    assert claims["exp"] - claims["iat"] == 30 * 86400


def test_the_command_line_has_worker_and_issue_token(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["issue-token", "--caller", "crm", "--templates", "*", "--ttl-days", "2"]
    command, args = parse_command("sms", build_runner, argv, commands=COMMANDS)
    assert command.name == "issue-token"
    assert (args.caller, args.templates, args.ttl_days, args.admin) == ("crm", "*", 2.0, False)
    command, _ = parse_command("sms", build_runner, ["worker"], commands=COMMANDS)
    assert command.run is run_worker
    command, _ = parse_command("sms", build_runner, [], commands=COMMANDS)
    assert command.name == "serve"
    with pytest.raises(SystemExit) as exited:
        main(["issue-token", "--caller", "crm"])
    assert exited.value.code == 2
    assert "--templates" in capsys.readouterr().err


async def test_migrate_command_matches_the_models(sql_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    env["WEBOOK_SMS_MODE"] = "test"  # every process defaults to prod mode
    env["WEBOOK_SMS_DATABASE_URL"] = sql_url
    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.sms",
        "migrate",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await migrate.communicate()
    assert migrate.returncode == 0, output.decode()
    engine = create_engine(sql_url)

    def differences(connection: Connection) -> list[object]:
        return schema_drift(connection, Base.metadata, "sms")

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await engine.dispose()

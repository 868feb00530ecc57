"""Tests of the composition root and settings: the process as ``make run`` starts it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from devstack.infra import ManagedProcess, free_port
from devstack.suite import grpc_serving
from kit.tests.process_env import process_env
from services.user.settings import UserSettings


def _env(**settings: str) -> dict[str, str]:
    return process_env("WEBOOK_USER_", **settings)


def test_settings_read_the_user_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOK_USER_BCRYPT_COST", "12")
    monkeypatch.setenv("WEBOOK_USER_PROFILE_CACHE_TTL_SECONDS", "60")
    monkeypatch.setenv("WEBOOK_USER_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    settings = UserSettings()
    assert (settings.bcrypt_cost, settings.profile_cache_ttl_seconds) == (12, 60)
    assert settings.database_url == "sqlite+aiosqlite:///x.db"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("WEBOOK_USER_"):
            monkeypatch.delenv(key)
    settings = UserSettings(mode="dev")
    assert settings.database_url == "sqlite+aiosqlite:///.run/user.db"
    assert (settings.bcrypt_cost, settings.profile_cache_ttl_seconds) == (10, 900)


@pytest.mark.parametrize(("mode", "cost"), [("prod", 9), ("dev", 3), ("dev", 32)])
def test_settings_refuse_unsafe_bcrypt_cost(mode: str, cost: int) -> None:
    with pytest.raises(ValidationError, match="bcrypt"):
        UserSettings(
            mode=mode,
            bcrypt_cost=cost,
            tls_cert_file="/var/run/webook/tls/tls.crt",
            tls_key_file="/var/run/webook/tls/tls.key",
            tls_ca_file="/var/run/webook/tls/ca.crt",
        )


@pytest.mark.integration
def test_migrate_command_creates_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "user.db"
    result = subprocess.run(
        [sys.executable, "-m", "services.user", "migrate"],
        env=_env(database_url=f"sqlite+aiosqlite:///{db}"),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users", "alembic_version_user"} <= tables


@pytest.mark.integration
def test_serve_command_serves_and_stops_on_sigterm(tmp_path: Path, redis_url: str) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"
    env = _env(database_url=db_url, redis_url=redis_url, metrics_port="-1", mode="test")
    migrate = [sys.executable, "-m", "services.user", "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    env["WEBOOK_USER_GRPC_PORT"] = str(port)
    process = ManagedProcess(
        name="user",
        argv=[sys.executable, "-m", "services.user"],
        log_path=tmp_path / "user.log",
        ready=lambda: grpc_serving(f"127.0.0.1:{port}"),
        env=env,
    )
    process.start(timeout=30)
    try:
        assert process.alive()
    finally:
        process.stop(grace=10)
    assert process.process is not None
    assert process.process.returncode == 0, (tmp_path / "user.log").read_text()

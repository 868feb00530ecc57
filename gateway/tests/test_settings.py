"""Settings: defaults, environment parsing, and refusal of insecure values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError

from gateway.settings import GatewaySettings
from kit.config import Mode

KEY_A = SecretStr("a" * 32)
KEY_B = SecretStr("b" * 32)


def test_defaults() -> None:
    settings = GatewaySettings()

    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.access_ttl == timedelta(minutes=30)
    assert settings.refresh_ttl == timedelta(days=7)
    assert settings.cors_allow_origins == ["http://localhost:*", "http://127.0.0.1:*"]
    assert settings.session_check_on_redis_error == "deny"
    assert settings.jwt_access_key != settings.jwt_refresh_key


def test_prod_mode_refuses_dev_keys() -> None:
    with pytest.raises(ValidationError, match="development default"):
        GatewaySettings(mode=Mode.PROD)


def test_prod_mode_with_real_keys() -> None:
    settings = GatewaySettings(mode=Mode.PROD, jwt_access_key=KEY_A, jwt_refresh_key=KEY_B)

    assert settings.mode is Mode.PROD


def test_keys_must_differ() -> None:
    with pytest.raises(ValidationError, match="must be different"):
        GatewaySettings(jwt_access_key=KEY_A, jwt_refresh_key=KEY_A)


def test_keys_must_be_long_enough() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        GatewaySettings(jwt_access_key=SecretStr("short"), jwt_refresh_key=KEY_B)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOK_GATEWAY_PEERS", '{"user": "127.0.0.1:50051"}')
    monkeypatch.setenv("WEBOOK_GATEWAY_PORT", "9090")
    monkeypatch.setenv("WEBOOK_GATEWAY_ACCESS_TTL", "600")
    monkeypatch.setenv("WEBOOK_GATEWAY_CORS_ALLOW_ORIGINS", '["https://*.webook.example"]')
    monkeypatch.setenv("WEBOOK_GATEWAY_SESSION_CHECK_ON_REDIS_ERROR", "allow")

    settings = GatewaySettings()

    assert settings.peers == {"user": "127.0.0.1:50051"}
    assert settings.port == 9090
    assert settings.access_ttl == timedelta(minutes=10)
    assert settings.cors_allow_origins == ["https://*.webook.example"]
    assert settings.session_check_on_redis_error == "allow"


def test_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        GatewaySettings(timezone="Mars/Olympus")

"""Settings: defaults, environment parsing, and refusal of insecure values."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from gateway.settings import GatewaySettings
from kit.config import Mode

# Keys as `openssl rand -hex 32` makes them: prod refuses fewer than 32 random bytes.
KEY_A = SecretStr("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
KEY_B = SecretStr("60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752")
KEY_C = SecretStr("fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13")
PROD_SECRETS: dict[str, Any] = {
    "jwt_access_key": KEY_A,
    "jwt_refresh_key": KEY_B,
    "wechat_state_key": KEY_C,
    # WeChat's AppSecret: 32 hexadecimal characters.
    "wechat_app_secret": SecretStr("3c59dc048e8850243be8079a5c74d079"),
    # Production mode calls the services over mutual TLS only.
    "tls_cert_file": "/var/run/webook/tls/tls.crt",
    "tls_key_file": "/var/run/webook/tls/tls.key",
    "tls_ca_file": "/var/run/webook/tls/ca.crt",
}


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
    settings = GatewaySettings(mode=Mode.PROD, **PROD_SECRETS)

    assert settings.mode is Mode.PROD


@pytest.mark.parametrize("secret", ["wechat_app_secret", "wechat_state_key"])
def test_prod_mode_refuses_dev_wechat_secrets(secret: str) -> None:
    values = {k: v for k, v in PROD_SECRETS.items() if k != secret}

    with pytest.raises(ValidationError, match=f"{secret} still has its development default"):
        GatewaySettings(mode=Mode.PROD, **values)


def test_state_cookie_is_secure_by_default_only_in_prod() -> None:
    assert GatewaySettings(mode=Mode.PROD, **PROD_SECRETS).state_cookie_secure
    assert not GatewaySettings(mode=Mode.DEV).state_cookie_secure
    assert not GatewaySettings(mode=Mode.TEST).state_cookie_secure
    assert GatewaySettings(mode=Mode.DEV, wechat_state_cookie_secure=True).state_cookie_secure
    prod_over_http = GatewaySettings(
        mode=Mode.PROD, wechat_state_cookie_secure=False, **PROD_SECRETS
    )
    assert not prod_over_http.state_cookie_secure


def test_state_key_must_not_reuse_a_jwt_key() -> None:
    with pytest.raises(ValidationError, match="must differ from the JWT keys"):
        GatewaySettings(jwt_access_key=KEY_A, jwt_refresh_key=KEY_B, wechat_state_key=KEY_A)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("wechat_api_base", "api.weixin.qq.com"),
        ("wechat_authorize_base", "ftp://open.weixin.qq.com"),
        ("wechat_redirect_uri", "http://127.0.0.1:8080/cb#frag"),
        ("wechat_api_base", "https://api.weixin.qq.com/?x=1"),
    ],
)
def test_wechat_urls_are_checked(field: str, value: str) -> None:
    values: dict[str, Any] = {field: value}

    with pytest.raises(ValidationError, match="URL"):
        GatewaySettings(**values)


def test_wechat_bases_lose_their_trailing_slash() -> None:
    settings = GatewaySettings(wechat_api_base="http://127.0.0.1:8090/")

    assert settings.wechat_api_base == "http://127.0.0.1:8090"


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
    monkeypatch.setenv("WEBOOK_GATEWAY_WECHAT_STATE_TTL", "300")
    monkeypatch.setenv("WEBOOK_GATEWAY_WECHAT_API_BASE", "http://127.0.0.1:8090")

    settings = GatewaySettings()

    assert settings.peers == {"user": "127.0.0.1:50051"}
    assert settings.port == 9090
    assert settings.access_ttl == timedelta(minutes=10)
    assert settings.cors_allow_origins == ["https://*.webook.example"]
    assert settings.session_check_on_redis_error == "allow"
    assert settings.wechat_state_ttl == timedelta(minutes=5)
    assert settings.wechat_api_base == "http://127.0.0.1:8090"


def test_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        GatewaySettings(timezone="Mars/Olympus")


@pytest.mark.parametrize(
    "weak",
    [
        "a" * 32,  # long enough, not random
        "password" * 4,  # a repeated word
        "0123456789abcdef",  # random-looking, too short
    ],
)
def test_prod_mode_refuses_weak_keys(weak: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        GatewaySettings(mode=Mode.PROD, **{**PROD_SECRETS, "jwt_access_key": SecretStr(weak)})


def test_mode_defaults_to_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment that forgets MODE gets the prod checks, never the development keys."""
    monkeypatch.delenv("WEBOOK_GATEWAY_MODE", raising=False)
    with pytest.raises(ValidationError, match="development default"):
        GatewaySettings()
    assert GatewaySettings(**PROD_SECRETS).mode is Mode.PROD

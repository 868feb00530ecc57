"""Settings refuse development secrets outside dev/test mode, and TLS settings that are
partial, or missing in prod mode."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from kit.config import (
    BaseServiceSettings,
    ClientSettings,
    GrpcServiceSettings,
    Mode,
    dev_secret,
    load_settings,
)


class _Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WEBOOK_KITTEST_", frozen=True)
    signing_key: SecretStr = dev_secret("signing-key")


def test_dev_secret_accepted_in_dev_mode() -> None:
    settings = load_settings(_Settings, mode=Mode.DEV)
    assert settings.signing_key.get_secret_value().startswith("dev-insecure-")


def test_dev_secret_refused_in_prod_mode() -> None:
    with pytest.raises(ValidationError, match="signing_key still has its development default"):
        load_settings(_Settings, mode=Mode.PROD)


def test_real_secret_accepted_in_prod_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOOK_KITTEST_SIGNING_KEY", "a-real-secret-from-the-environment")
    monkeypatch.setenv("WEBOOK_KITTEST_MODE", "prod")
    settings = load_settings(_Settings)
    assert settings.mode is Mode.PROD
    assert settings.signing_key.get_secret_value() == "a-real-secret-from-the-environment"


def test_secret_not_in_repr() -> None:
    assert "dev-insecure" not in repr(load_settings(_Settings))


TLS_FILES: dict[str, Any] = {
    "tls_cert_file": "user.pem",
    "tls_key_file": "user-key.pem",
    "tls_ca_file": "ca.pem",
}


def test_tls_is_off_by_default_and_on_with_all_three_files() -> None:
    assert not ClientSettings().tls_enabled
    settings = ClientSettings(**TLS_FILES)
    assert settings.tls_enabled
    assert settings.tls_reload_seconds == 30.0


@pytest.mark.parametrize("left_out", sorted(TLS_FILES))
def test_partial_tls_settings_are_refused(left_out: str) -> None:
    partial = {name: value for name, value in TLS_FILES.items() if name != left_out}
    with pytest.raises(ValidationError, match=rf"mutual TLS needs all of .*{left_out} not set"):
        ClientSettings(**partial)


def test_prod_mode_refuses_to_run_without_tls() -> None:
    with pytest.raises(
        ValidationError,
        match=r"prod mode requires mutual TLS .*tls_cert_file, tls_key_file, tls_ca_file",
    ):
        GrpcServiceSettings(mode=Mode.PROD)
    assert GrpcServiceSettings(mode=Mode.PROD, **TLS_FILES).tls_enabled


def test_tls_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TLS_FILES.items():
        monkeypatch.setenv(f"WEBOOK_{name.upper()}", value)
    monkeypatch.setenv("WEBOOK_TLS_RELOAD_SECONDS", "5")
    monkeypatch.setenv("WEBOOK_GRPC_PROBE_PORT", "9091")
    settings = load_settings(GrpcServiceSettings)
    assert settings.tls_enabled
    assert settings.tls_reload_seconds == 5.0
    assert settings.grpc_probe_port == 9091


@pytest.mark.parametrize(
    "bad", [{"tls_reload_seconds": 0}, {"grpc_probe_port": -1}, {"grpc_probe_port": 70000}]
)
def test_tls_numbers_out_of_range_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GrpcServiceSettings(**bad)

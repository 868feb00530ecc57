"""Settings refuse development secrets outside dev/test mode."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from kit.config import BaseServiceSettings, Mode, dev_secret, load_settings


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

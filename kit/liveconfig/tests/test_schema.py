"""Which settings are live and how remote values are validated (no etcd needed)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from kit.config import ClientSettings, GrpcServiceSettings, Mode
from kit.liveconfig import DELETE, ConfigInvalid, live_field, live_fields, validate_changes
from kit.liveconfig.schema import WHOLE_MODEL_KEY, overlay
from kit.liveconfig.tests.demo import DemoSettings


def test_live_fields_are_the_marked_ones() -> None:
    assert live_fields(DemoSettings) == {
        "soft_limit",
        "hard_limit",
        "log_level",
        "trace_sample_ratio",
        "feature_flags",
        "gray_rollouts",
        "client_tuning",
    }
    assert live_fields(GrpcServiceSettings) == {
        "log_level",
        "trace_sample_ratio",
        "feature_flags",
        "gray_rollouts",
        "client_tuning",
        "shed_max_in_flight",
    }


def test_a_secret_cannot_be_live() -> None:
    class Leaky(ClientSettings):
        token: SecretStr = live_field(SecretStr("x"))

    with pytest.raises(TypeError, match="secret"):
        live_fields(Leaky)


def test_config_environment_defaults_to_the_mode() -> None:
    assert DemoSettings(mode=Mode.DEV).config_environment == "dev"
    assert DemoSettings(mode=Mode.TEST).config_environment == "test"
    assert DemoSettings(mode=Mode.TEST, config_environment="staging").config_environment == (
        "staging"
    )
    with pytest.raises(ValueError, match="config_environment"):
        DemoSettings(mode=Mode.TEST, config_environment="a/b")


def test_changes_are_validated_over_the_base_settings() -> None:
    base = DemoSettings(mode=Mode.TEST, hard_limit=30)
    after = validate_changes(DemoSettings, base, {"soft_limit": 5}, {"hard_limit": 40})
    assert after == {"soft_limit": 5, "hard_limit": 40}
    assert validate_changes(DemoSettings, base, after, {"soft_limit": DELETE}) == {"hard_limit": 40}
    # The base's hard limit (30, from the environment) is below the new soft limit.
    with pytest.raises(ConfigInvalid) as refused:
        validate_changes(DemoSettings, base, {}, {"soft_limit": 35})
    assert refused.value.errors == {
        WHOLE_MODEL_KEY: "Value error, soft_limit cannot exceed hard_limit"
    }
    with pytest.raises(ConfigInvalid) as refused:
        validate_changes(DemoSettings, base, {}, {"soft_limit": 0, "log_level": "LOUD"})
    assert set(refused.value.errors) == {"soft_limit", "log_level"}


def test_unknown_and_restart_only_keys_are_refused() -> None:
    base = DemoSettings(mode=Mode.TEST)
    with pytest.raises(ConfigInvalid) as refused:
        validate_changes(DemoSettings, base, {}, {"port": 9000, "nope": 1, "etcd_password": "x"})
    errors = refused.value.errors
    assert errors["nope"] == "unknown setting"
    assert "needs a restart" in errors["port"]
    assert "needs a restart" in errors["etcd_password"]


def test_overlay_keeps_the_base_for_what_is_not_remote() -> None:
    base = DemoSettings(mode=Mode.TEST, hard_limit=30, port=8100)
    applied = overlay(DemoSettings, base, {"soft_limit": 7, "port": 1})
    assert (applied.soft_limit, applied.hard_limit, applied.port) == (7, 30, 8100)
    assert applied.model_config["frozen"]

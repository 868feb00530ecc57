"""Scheduler settings: the renewal must fit in the lease; options follow the settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kit.config import Mode
from services.scheduler.scheduler import SchedulerOptions
from services.scheduler.settings import SchedulerSettings


def test_options_follow_the_settings() -> None:
    settings = SchedulerSettings(
        mode=Mode.TEST,
        lease_seconds=20,
        renew_seconds=5,
        tick_seconds=0.5,
        max_running=4,
        late_after_seconds=90,
        retention_days=7,
    )
    assert settings.scheduler_options() == SchedulerOptions(
        lease_ms=20_000,
        renew_every_s=5,
        tick_s=0.5,
        max_running=4,
        late_after_ms=90_000,
        retention_ms=7 * 24 * 3600 * 1000,
    )


def test_a_renewal_period_as_long_as_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"renew_seconds \(10.0\) must be shorter"):
        SchedulerSettings(mode=Mode.TEST, lease_seconds=10, renew_seconds=10)


def test_instance_id_defaults_to_host_and_pid() -> None:
    assert SchedulerSettings(mode=Mode.TEST, instance_id="pod-7").instance() == "pod-7"
    generated = SchedulerSettings(mode=Mode.TEST).instance()
    assert 0 < len(generated) <= 128
    assert generated.rsplit("-", 1)[1].isdigit()

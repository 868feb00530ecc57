"""Scheduler settings: the renewal must fit in the lease; options follow the settings;
declared jobs are read from JSON, and bad JSON or a bad entry is refused naming it."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from kit.config import Mode
from services.scheduler.scheduler import SchedulerOptions
from services.scheduler.settings import DeclaredJob, SchedulerSettings


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


RANKING_JOB = {
    "name": "ranking.refresh",
    "cron": "*/5 * * * *",
    "executor_kind": "local",
    "executor_config": {"function": "log", "message": "hi"},
}


def jobs_from_env(monkeypatch: pytest.MonkeyPatch, value: str) -> SchedulerSettings:
    """The settings with ``WEBOOK_SCHEDULER_JOBS=value``, as a process reads them."""
    monkeypatch.setenv("WEBOOK_SCHEDULER_JOBS", value)
    return SchedulerSettings(mode=Mode.TEST)


def test_declared_jobs_are_read_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    paused = {"name": "quiet", "cron": "@daily", "executor_kind": "local", "paused": True}
    settings = jobs_from_env(monkeypatch, json.dumps([RANKING_JOB, paused]))
    assert settings.jobs == (
        DeclaredJob(
            name="ranking.refresh",
            cron="*/5 * * * *",
            executor_kind="local",
            executor_config={"function": "log", "message": "hi"},
        ),
        DeclaredJob(name="quiet", cron="@daily", executor_kind="local", paused=True),
    )
    assert settings.jobs[1].executor_config == {}


@pytest.mark.parametrize("value", ["", "  ", "[]"])
def test_no_declared_jobs(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert jobs_from_env(monkeypatch, value).jobs == ()


def test_bad_json_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as caught:
        jobs_from_env(monkeypatch, '[{"name": "x",')
    (error,) = caught.value.errors()
    assert error["loc"] == ("jobs",)
    assert error["msg"].startswith(
        "Value error, WEBOOK_SCHEDULER_JOBS must be a JSON list of job definitions: "
    )


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", "minute field: 61 is out of range 0-59"),
        ({"name": "-x"}, "name", "job name must be 1-128 letters"),
        ({"executor_kind": "shell"}, "executor_kind", "unknown executor kind 'shell'"),
        ({"executor_config": ["function"]}, "executor_config", "valid dictionary"),
        ({"paused": "maybe"}, "paused", "valid boolean"),
        ({"cronn": "* * * * *"}, "cronn", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_entry_names_its_index_field_and_problem(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, object], where: str, message: str
) -> None:
    entries = [RANKING_JOB, {**RANKING_JOB, "name": "second", **change}]
    with pytest.raises(ValidationError) as caught:
        jobs_from_env(monkeypatch, json.dumps(entries))
    (error,) = caught.value.errors()
    assert error["loc"] == ("jobs", 1, where)
    assert message in error["msg"]


@pytest.mark.parametrize("missing", ["name", "cron", "executor_kind"])
def test_an_entry_without_a_required_field_is_refused(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    entry = {k: v for k, v in RANKING_JOB.items() if k != missing}
    with pytest.raises(ValidationError) as caught:
        jobs_from_env(monkeypatch, json.dumps([entry]))
    (error,) = caught.value.errors()
    assert (error["loc"], error["type"]) == (("jobs", 0, missing), "missing")


@pytest.mark.parametrize("value", ['{"name": "x"}', '"ranking.refresh"', "[1]"])
def test_jobs_must_be_a_list_of_objects(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ValidationError):
        jobs_from_env(monkeypatch, value)


def test_a_name_declared_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    twice = [RANKING_JOB, {**RANKING_JOB, "cron": "@hourly"}]
    with pytest.raises(ValidationError, match=r"job 'ranking\.refresh' is declared twice"):
        jobs_from_env(monkeypatch, json.dumps(twice))

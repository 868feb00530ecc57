"""Settings of a scheduler process (environment prefix ``WEBOOK_SCHEDULER_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`: the
admin API's port, TLS, etcd registration) the scheduler reads:

- ``WEBOOK_SCHEDULER_DATABASE_URL``: SQLAlchemy async URL, SQLite file by default (several
  instances need a shared MariaDB/MySQL database);
- ``WEBOOK_SCHEDULER_INSTANCE_ID``: this instance's id in the jobs table (empty: host and
  pid);
- ``WEBOOK_SCHEDULER_LEASE_SECONDS`` (30), ``WEBOOK_SCHEDULER_RENEW_SECONDS`` (10),
  ``WEBOOK_SCHEDULER_TICK_SECONDS`` (1): lease length, renewal period, loop period;
- ``WEBOOK_SCHEDULER_MAX_RUNNING`` (16): runs in progress per instance;
- ``WEBOOK_SCHEDULER_LATE_AFTER_SECONDS`` (60): when a waiting due job counts as late;
- ``WEBOOK_SCHEDULER_RETENTION_DAYS`` (30; 0 keeps everything): execution history kept;
- ``WEBOOK_SCHEDULER_STOP_GRACE_SECONDS`` (10): how long a stopping instance lets its runs
  in progress finish before interrupting them;
- ``WEBOOK_SCHEDULER_JOBS`` (``[]``): declared jobs, a JSON list of :class:`DeclaredJob`
  (``name``, ``cron``, ``executor_kind``, ``executor_config``, optional ``paused``), each
  added at start when no job has its name yet (:mod:`services.scheduler.declared`). Bad
  JSON, an unknown field, a bad name, cron or kind, or a name declared twice stops the
  process at start with the entry's index and what is wrong.

All are restart-only (the loop is built once, at start); ``python -m services.scheduler``
reads them (docs/scheduler.md).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.errors import AppError
from services.scheduler.domain import check_cron, check_executor_kind, check_name
from services.scheduler.scheduler import SchedulerOptions


def _checked(check: Callable[[str], object], value: str) -> str:
    """``value`` if the domain's ``check`` accepts it; its refusal as a ``ValueError``."""
    try:
        check(value)
    except AppError as exc:
        raise ValueError(exc.message) from None
    return value


class DeclaredJob(BaseModel):
    """A job the scheduler's settings declare: added at start unless its name exists.

    The fields of ``AddJob``; the name, cron expression and executor kind are checked here,
    so a bad entry stops the process when the settings are read. What only the job service
    knows (a ``local`` function being registered, a remote executor's config) is checked
    when the job is added, at start too.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    cron: str
    executor_kind: str
    executor_config: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _checked(check_name, value)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return _checked(check_cron, value)

    @field_validator("executor_kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return _checked(check_executor_kind, value)


class SchedulerSettings(GrpcServiceSettings):
    """Validated configuration of a scheduler instance."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_SCHEDULER_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/scheduler.db"
    instance_id: str = Field("", max_length=128)
    lease_seconds: float = Field(30.0, gt=0)
    renew_seconds: float = Field(10.0, gt=0)
    tick_seconds: float = Field(1.0, gt=0)
    max_running: int = Field(16, ge=1)
    late_after_seconds: float = Field(60.0, gt=0)
    retention_days: float = Field(30.0, ge=0)
    stop_grace_seconds: float = Field(10.0, ge=0)
    # Parsed by _parse_jobs rather than by the settings source, so bad JSON gets a clear
    # message naming the setting instead of a parse error of the source.
    jobs: Annotated[tuple[DeclaredJob, ...], NoDecode] = ()

    @field_validator("jobs", mode="before")
    @classmethod
    def _parse_jobs(cls, value: object) -> object:
        if not isinstance(value, str | bytes):
            return value
        if not value.strip():
            return ()
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(
                f"WEBOOK_SCHEDULER_JOBS must be a JSON list of job definitions: {exc}"
            ) from None

    @field_validator("jobs")
    @classmethod
    def _distinct_names(cls, value: tuple[DeclaredJob, ...]) -> tuple[DeclaredJob, ...]:
        seen: set[str] = set()
        for job in value:
            if job.name in seen:
                raise ValueError(f"job {job.name!r} is declared twice")
            seen.add(job.name)
        return value

    @model_validator(mode="after")
    def _renewal_within_lease(self) -> Self:
        if self.renew_seconds >= self.lease_seconds:
            raise ValueError(
                f"renew_seconds ({self.renew_seconds}) must be shorter than lease_seconds "
                f"({self.lease_seconds}), or leases expire between renewals"
            )
        return self

    def instance(self) -> str:
        """The configured instance id, or ``<host>-<pid>``."""
        return self.instance_id or f"{socket.gethostname()[:100]}-{os.getpid()}"

    def scheduler_options(self) -> SchedulerOptions:
        """The loop's options from these settings."""
        return SchedulerOptions(
            lease_ms=int(self.lease_seconds * 1000),
            renew_every_s=self.renew_seconds,
            tick_s=self.tick_seconds,
            max_running=self.max_running,
            late_after_ms=int(self.late_after_seconds * 1000),
            retention_ms=int(self.retention_days * 24 * 3600 * 1000),
            stop_grace_s=self.stop_grace_seconds,
        )

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
- ``WEBOOK_SCHEDULER_RETENTION_DAYS`` (30; 0 keeps everything): execution history kept.

All are restart-only (the loop is built once, at start); ``python -m services.scheduler``
reads them (docs/scheduler.md).
"""

from __future__ import annotations

import os
import socket
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from services.scheduler.scheduler import SchedulerOptions


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
        )

"""Settings of the user service process (environment prefix ``WEBOOK_USER_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``WEBOOK_USER_GRPC_PORT``, ``WEBOOK_USER_REDIS_URL``, ...) the service reads:

- ``WEBOOK_USER_DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``WEBOOK_USER_BCRYPT_COST``: bcrypt work factor for new password hashes (default 10;
  prod mode refuses less than 10, tests use 4);
- ``WEBOOK_USER_PROFILE_CACHE_TTL_SECONDS``: lifetime of cached profiles (default 900;
  live);
- ``WEBOOK_USER_OUTBOX_POLL_INTERVAL_SECONDS`` (0.5) / ``..._OUTBOX_BATCH_SIZE`` (100) /
  ``..._OUTBOX_LEASE_SECONDS`` (30) / ``..._OUTBOX_RETENTION_SECONDS`` (86400): the relay
  publishing ``UserChanged`` events from the ``user_outbox`` table (:mod:`kit.outbox`);
  ``..._KAFKA_MANAGE_TOPICS`` / ``..._KAFKA_TOPIC_PARTITIONS``: create the topic if missing;
- ``WEBOOK_USER_LOGIN_MAX_FAILURES`` (5) wrong passwords within
  ``..._LOGIN_FAILURE_WINDOW_SECONDS`` (900) lock an account's password logins for
  ``..._LOGIN_LOCK_SECONDS`` (60), doubling with each further lock up to
  ``..._LOGIN_MAX_LOCK_SECONDS`` (3600); locks are forgotten
  ``..._LOGIN_LOCK_MEMORY_SECONDS`` (86400) after the last failure or at a successful login.

Live (also settable in etcd, ``webookctl config set user <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): ``profile_cache_ttl_seconds`` (read at each cache write),
besides the common ``log_level`` and ``trace_sample_ratio``. Restart-only: the database URL,
ports and addresses (pools and listeners are opened at start), the Kafka topic and outbox
relay settings (the relay and its producer are built at start), ``bcrypt_cost`` and the
login throttle rules (given to the service and the throttle's Redis scripts when built).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings, Mode
from kit.liveconfig import live_field
from kit.outbox.settings import OutboxRelaySettings
from services.user.domain import LoginThrottleRules

MIN_PROD_BCRYPT_COST = 10


class UserSettings(GrpcServiceSettings, OutboxRelaySettings):
    """Validated configuration of ``python -m services.user``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_USER_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/user.db"
    # bcrypt accepts 4..31; every step doubles the cost of signup and login.
    bcrypt_cost: int = Field(default=10, ge=4, le=31)
    profile_cache_ttl_seconds: int = live_field(900, ge=1)
    kafka_topic_partitions: int = Field(default=3, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_seconds: float = Field(default=900.0, gt=0)
    login_lock_seconds: float = Field(default=60.0, gt=0)
    login_max_lock_seconds: float = Field(default=3600.0, gt=0)
    login_lock_memory_seconds: float = Field(default=86_400.0, gt=0)

    def login_throttle_rules(self) -> LoginThrottleRules:
        """The per-account login throttle these settings describe."""
        return LoginThrottleRules(
            max_failures=self.login_max_failures,
            window_s=self.login_failure_window_seconds,
            lock_s=self.login_lock_seconds,
            max_lock_s=max(self.login_max_lock_seconds, self.login_lock_seconds),
            memory_s=self.login_lock_memory_seconds,
        )

    @model_validator(mode="after")
    def _refuse_weak_bcrypt_in_prod(self) -> Self:
        if self.mode is Mode.PROD and self.bcrypt_cost < MIN_PROD_BCRYPT_COST:
            raise ValueError(
                f"bcrypt_cost {self.bcrypt_cost} is too low for prod mode "
                f"(at least {MIN_PROD_BCRYPT_COST})"
            )
        return self

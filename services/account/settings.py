"""Settings of the account service process (environment prefix ``WEBOOK_ACCOUNT_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``..._GRPC_PORT``, ``..._KAFKA_BOOTSTRAP``, ``..._PEERS``, ...; the service uses SQL and
Kafka, no Redis) the service reads the fields below, each as ``WEBOOK_ACCOUNT_<NAME>``.

Live (also settable in etcd, ``webookctl config set account <field> <json>``, applied within
a second, :mod:`kit.liveconfig`): ``platform_share_percent`` (read at each credit; a
reward's split is written in its ledger rows, so a change never alters a past credit) and
``payment_timeout_seconds`` (read at each reconciliation), besides the common ``log_level``
and ``trace_sample_ratio``. Restart-only: the database URL, ports and addresses, and the
reward consumer's switch, group, batching and Kafka settings (it joins its group at start).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field


class AccountSettings(GrpcServiceSettings):
    """Validated configuration of ``python -m services.account``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_ACCOUNT_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/account.db"
    # The platform's share of each reward, in percent, rounded down in fen.
    platform_share_percent: int = live_field(10, ge=0, le=100)
    # Deadline of the reconciliation's call to the payment service's SumSucceeded.
    payment_timeout_seconds: float = live_field(10.0, gt=0, le=300)
    # The consumer of paid rewards runs inside the service process unless disabled.
    reward_consumer_enabled: bool = True
    reward_consumer_group: str = "account-reward-credit"
    reward_batch_size: int = Field(default=100, ge=1, le=10_000)
    reward_batch_wait_seconds: float = Field(default=1.0, gt=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_lag_interval_seconds: float = Field(default=10.0, gt=0)
    kafka_topic_partitions: int = Field(default=3, ge=1)

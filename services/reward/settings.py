"""Settings of the reward service process (environment prefix ``WEBOOK_REWARD_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``..._GRPC_PORT``, ``..._KAFKA_BOOTSTRAP``, ``..._PEERS``, ...) and the outbox relay's
(:class:`kit.outbox.settings.OutboxRelaySettings`) the service reads, each as
``WEBOOK_REWARD_<NAME>``:

- ``DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``MIN_AMOUNT_FEN`` / ``MAX_AMOUNT_FEN``: the amounts a reward may have (default 1 fen to
  100000 fen, 1000 yuan);
- ``REPAIR_AFTER_SECONDS``: how old an INIT reward must be before GetReward asks the
  payment service about it (default 60);
- ``PEER_TIMEOUT_SECONDS``: deadline of each call to the article and payment services;
- the payment event consumer's group, batching and Kafka group settings.

Live (also settable in etcd, ``webookctl config set reward <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): the amount bounds (read at each PreReward) and
``repair_after_seconds`` (read at each GetReward), besides the common ``log_level`` and
``trace_sample_ratio``. Restart-only: the rest (pools, clients, the consumer and the relay
are built at start).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field
from kit.outbox.settings import OutboxRelaySettings
from services.reward.domain import AmountBounds


class RewardSettings(GrpcServiceSettings, OutboxRelaySettings):
    """Validated configuration of ``python -m services.reward``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_REWARD_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/reward.db"
    min_amount_fen: int = live_field(1, ge=1)
    max_amount_fen: int = live_field(100_000, ge=1)
    repair_after_seconds: float = live_field(60.0, ge=0)
    peer_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # The consumer of payment status changes runs in the service process unless disabled.
    payment_consumer_enabled: bool = True
    payment_consumer_group: str = "reward-payment-status"
    payment_batch_size: int = Field(default=100, ge=1, le=10_000)
    payment_batch_wait_seconds: float = Field(default=0.5, gt=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_lag_interval_seconds: float = Field(default=10.0, gt=0)
    kafka_topic_partitions: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Self:
        if self.min_amount_fen > self.max_amount_fen:
            raise ValueError(
                f"min_amount_fen ({self.min_amount_fen}) exceeds "
                f"max_amount_fen ({self.max_amount_fen})"
            )
        return self

    def amount_bounds(self) -> AmountBounds:
        """The amounts a reward may have."""
        return AmountBounds(min_fen=self.min_amount_fen, max_fen=self.max_amount_fen)

"""Settings of the payment service process (environment prefix ``WEBOOK_PAYMENT_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`) and the
outbox relay's (:class:`kit.outbox.settings.OutboxRelaySettings`) the service reads:

- ``DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``WECHATPAY_MCHID`` / ``WECHATPAY_APPID``: our merchant id and the app orders are for;
- ``WECHATPAY_MERCHANT_SERIAL`` / ``WECHATPAY_MERCHANT_PRIVATE_KEY_FILE``: the serial of our
  merchant API certificate and the PEM file of its private key (signs every request);
- ``WECHATPAY_PLATFORM_KEY_FILE`` / ``WECHATPAY_PLATFORM_SERIAL``: WeChat Pay's platform
  certificate or public key (PEM) and its serial or public key id (verifies answers and
  notifications);
- ``WECHATPAY_APIV3_KEY``: the 32-byte API v3 key that decrypts notifications — a secret,
  read from the environment or the settings file only and never logged; prod mode refuses
  its development default;
- ``WECHATPAY_BASE_URL``: ``https://api.mch.weixin.qq.com`` (prod mode refuses anything but
  https, and the client refuses answers marked by the emulator);
- ``WECHATPAY_NOTIFY_URL``: where WeChat Pay posts notifications (the gateway's
  ``/pay/callback``); ``WECHATPAY_TIMEOUT_SECONDS``: per call;
- ``NOTIFICATION_MAX_AGE_SECONDS`` (live, default 300): how old a signed timestamp may be;
- ``RECONCILE_AFTER_SECONDS`` (live, default 1800) and ``RECONCILE_BATCH_SIZE`` (live,
  default 200): orders still INIT this long after creation are looked up, this many a run.

Restart-only: everything else (keys and clients are built at start).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings, Mode, dev_secret
from kit.liveconfig import live_field
from kit.outbox.settings import OutboxRelaySettings

WECHATPAY_API: str = "https://api.mch.weixin.qq.com"


class PaymentSettings(GrpcServiceSettings, OutboxRelaySettings):
    """Validated configuration of ``python -m services.payment``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_PAYMENT_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/payment.db"
    wechatpay_mchid: str = "1900000001"
    wechatpay_appid: str = "wx-webook-dev"
    wechatpay_merchant_serial: str = ""
    wechatpay_merchant_private_key_file: str = ""
    wechatpay_platform_key_file: str = ""
    wechatpay_platform_serial: str = ""
    # Exactly 32 bytes (AES-256); the development default happens to be 32 too.
    wechatpay_apiv3_key: SecretStr = dev_secret("wechatpay_apiv3_key")
    wechatpay_base_url: str = WECHATPAY_API
    wechatpay_notify_url: str = "http://127.0.0.1:8080/pay/callback"
    wechatpay_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    notification_max_age_seconds: float = live_field(300.0, ge=10, le=3600)
    reconcile_after_seconds: float = live_field(1800.0, ge=0)
    reconcile_batch_size: int = live_field(200, ge=1, le=5000)
    kafka_topic_partitions: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _wechatpay_usable(self) -> Self:
        if len(self.wechatpay_apiv3_key.get_secret_value().encode()) != 32:
            raise ValueError("wechatpay_apiv3_key must be exactly 32 bytes")
        if self.mode is Mode.PROD and not self.wechatpay_base_url.startswith("https://"):
            raise ValueError(
                "prod mode requires an https wechatpay_base_url (WeChat Pay's API, never the "
                "local emulator)"
            )
        return self

    def missing_wechatpay(self) -> list[str]:
        """The WeChat Pay settings the process cannot start without, if unset."""
        required = {
            "wechatpay_merchant_serial": self.wechatpay_merchant_serial,
            "wechatpay_merchant_private_key_file": self.wechatpay_merchant_private_key_file,
            "wechatpay_platform_key_file": self.wechatpay_platform_key_file,
            "wechatpay_platform_serial": self.wechatpay_platform_serial,
        }
        return [name for name, value in required.items() if not value]

"""Settings of the lag exporter process (environment prefix ``WEBOOK_LAGEXPORTER_``).

Besides the settings every process has (:class:`kit.config.BaseServiceSettings`:
``..._MODE``, ``..._LOG_LEVEL``, ``..._METRICS_PORT``/``..._METRICS_HOST``,
``..._OTLP_ENDPOINT``), the exporter reads the brokers' address and credentials under the
same names as the services (``..._KAFKA_BOOTSTRAP``, ``..._KAFKA_SECURITY_PROTOCOL``,
``..._KAFKA_SASL_*``, ``..._KAFKA_SSL_CA_FILE``: :class:`kit.events.KafkaSecurity`) and how
often and what it scrapes.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import BaseServiceSettings
from kit.events.security import KafkaSecurity


class LagExporterSettings(BaseServiceSettings):
    """Validated configuration of ``python -m kit.events.lag``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_LAGEXPORTER_", extra="ignore", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    # As the services (kit.config.GrpcServiceSettings): PLAINTEXT (the local broker), SSL,
    # SASL_PLAINTEXT or SASL_SSL; SASL needs the username and password. The exporter's
    # broker user needs Describe on the topics and on the groups it watches.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), repr=False)
    kafka_ssl_ca_file: str = ""
    # Seconds between two scrapes; Prometheus scrapes the exporter at least this often.
    interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    # A scrape taking longer is abandoned and counted as failed.
    scrape_timeout_seconds: float = Field(default=30.0, gt=0)
    # Timeout of one request to the brokers.
    request_timeout_ms: int = Field(default=10_000, ge=1000)
    # Watch only groups whose names start with one of these (JSON list); empty: every group.
    group_prefixes: list[str] = Field(default_factory=list)

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How the exporter authenticates to the brokers."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value(),
            ca_file=self.kafka_ssl_ca_file,
        )

    @model_validator(mode="after")
    def _kafka_sasl_credentials(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "kafka_sasl_username and kafka_sasl_password"
            )
        return self

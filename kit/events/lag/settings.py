"""Settings of the lag exporter process (environment prefix ``WEBOOK_LAGEXPORTER_``).

Besides the settings every process has (:class:`kit.config.BaseServiceSettings`:
``..._MODE``, ``..._LOG_LEVEL``, ``..._METRICS_PORT``/``..._METRICS_HOST``,
``..._OTLP_ENDPOINT``), the exporter reads the brokers' address and credentials under the
same names as the services (``..._KAFKA_BOOTSTRAP``, ``..._KAFKA_SECURITY_PROTOCOL``,
``..._KAFKA_SASL_*``, ``..._KAFKA_SSL_CA_FILE``: :class:`kit.events.KafkaSecurity`) and how
often and what it scrapes.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import BaseServiceSettings, KafkaConnectionSettings


class LagExporterSettings(BaseServiceSettings, KafkaConnectionSettings):
    """Validated configuration of ``python -m kit.events.lag``.

    The Kafka connection is the services' (:class:`kit.config.KafkaConnectionSettings`); the
    exporter's broker user needs Describe on the topics and on the groups it watches.
    """

    model_config = SettingsConfigDict(env_prefix="WEBOOK_LAGEXPORTER_", extra="ignore", frozen=True)

    # Seconds between two scrapes; Prometheus scrapes the exporter at least this often.
    interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    # A scrape taking longer is abandoned and counted as failed.
    scrape_timeout_seconds: float = Field(default=30.0, gt=0)
    # Timeout of one request to the brokers.
    request_timeout_ms: int = Field(default=10_000, ge=1000)
    # Watch only groups whose names start with one of these (JSON list); empty: every group.
    group_prefixes: list[str] = Field(default_factory=list)

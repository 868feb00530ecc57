"""Settings shared by every process, built on pydantic-settings.

Each process defines a subclass with its own environment prefix (``WEBOOK_USER_``,
``WEBOOK_GATEWAY_``, ...) and reads it once in its composition root with
:func:`load_settings`; nothing else in the code base reads ``os.environ``.

``mode`` defaults to ``prod``: a deployment that forgets to set it gets the strict checks,
never the development conveniences; only the local stack and the tests set ``dev``/``test``
explicitly. Keys that have an insecure development default are declared with
:func:`dev_secret`; in prod each must be set, and be at least :data:`MIN_KEY_BYTES` bytes of
random-looking material (at least :data:`MIN_KEY_DISTINCT` distinct characters, so
``"a" * 32`` or a repeated word is refused; ``openssl rand -hex 32`` passes).

How a client process picks the instance of a peer service is set per peer with
:class:`PeerBalancing` (``peer_balancing``): weighted round robin, or a consistent hash of a
request field for the methods named, so that a key always reaches the same replica.

Mutual TLS on every gRPC hop is configured on :class:`ClientSettings` (so the gateway, a pure
client, has it too): the three ``tls_*_file`` settings, all or none; ``prod`` mode refuses
to run without them (see docs/security.md).

Credentials of the infrastructure (docs/security.md, "Infrastructure credentials"): the etcd
user of the process (``etcd_username``/``etcd_password``, required in ``prod`` mode when etcd
is used) on :class:`ClientSettings`; how Kafka clients authenticate (``kafka_security_*``,
``kafka_sasl_*``, ``kafka_ssl_ca_file``) on :class:`GrpcServiceSettings`. Redis and SQL
credentials travel inside ``redis_url`` and ``database_url``.

Live settings (docs/configuration.md): a field declared with
:func:`kit.liveconfig.live_field` may also be set in etcd, under
``/webook/config/<config_environment>/<service>/<field>``, and a running process applies a
change without restart (defaults < file < environment < remote). Here ``log_level``,
``trace_sample_ratio``, ``gray_rollouts`` (:mod:`kit.gray`), ``feature_flags``,
``client_tuning`` (the outbound channels' breakers, ejection and endpoint weights,
:class:`kit.grpcx.tuning.ClientTuning`) and ``shed_max_in_flight`` (the server's load
shedding bound) are live; every other setting of this module is restart-only.
``config_environment`` (default: the mode's name) and ``config_cache_dir`` (the local copy
used when etcd is unreachable at start) are on :class:`ClientSettings`, next to etcd's.

How durable events are (docs/events.md, "Production settings"): ``kafka_acks``,
``kafka_idempotent_producer``, ``kafka_replication_factor``/``kafka_min_insync_replicas`` of
the topics created, ``kafka_manage_topics`` and ``kafka_replay_window_seconds``, on
:class:`GrpcServiceSettings`; contradictory values are refused when the settings are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kit.events.security import KafkaSecurity
from kit.gray.rollout import Rollout, RolloutName
from kit.grpcx.tuning import ClientTuning
from kit.liveconfig.schema import check_segment, live_field
from kit.logging import LOG_LEVELS
from kit.sql.engine import PoolLimits

DEV_SECRET_PREFIX = "dev-insecure-"
MIN_KEY_BYTES = 32
MIN_KEY_DISTINCT = 10
_KEY_MARK = "webook_key"


class Mode(StrEnum):
    """How the process runs; only ``prod`` refuses development defaults."""

    DEV = "dev"
    TEST = "test"
    PROD = "prod"


def dev_secret(name: str) -> Any:
    """A key: a ``SecretStr`` field whose default is a marked, insecure development value.

    In prod mode it must be set, to at least :data:`MIN_KEY_BYTES` random-looking bytes.
    """
    return Field(
        default=SecretStr(f"{DEV_SECRET_PREFIX}{name}"),
        repr=False,
        json_schema_extra={_KEY_MARK: True},
    )


def key_problem(name: str, value: SecretStr) -> str | None:
    """Why ``value`` is not acceptable as key ``name`` in prod, or ``None`` if it is."""
    secret = value.get_secret_value()
    if secret.startswith(DEV_SECRET_PREFIX):
        return (
            f"{name} still has its development default; set it in the environment "
            "or the settings file before running in prod mode"
        )
    if len(secret.encode()) < MIN_KEY_BYTES or len(set(secret)) < MIN_KEY_DISTINCT:
        return (
            f"{name} must be at least {MIN_KEY_BYTES} bytes of random material "
            f"(e.g. `openssl rand -hex {MIN_KEY_BYTES}`)"
        )
    return None


class BaseServiceSettings(BaseSettings):
    """Settings every process has. Subclasses set ``env_prefix`` in ``model_config``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_", extra="ignore", frozen=True)

    mode: Mode = Mode.PROD
    # Level of the process's logging (live: applied at run time).
    log_level: str = live_field("INFO")
    # Port for the Prometheus /metrics endpoint; 0 picks a free one, -1 disables it.
    metrics_port: int = 0
    # Address /metrics binds to: loopback by default; 0.0.0.0 in a pod, so Prometheus can scrape.
    metrics_host: str = "127.0.0.1"
    # OTLP/gRPC endpoint for traces (e.g. http://otel-collector:4317); empty disables export.
    otlp_endpoint: str = ""
    # Share of traces recorded and exported when an OTLP endpoint is set (parent-based: a
    # trace started elsewhere follows its caller's decision). Without an endpoint spans are
    # never recorded, but trace ids still reach the logs and the other services. Live.
    trace_sample_ratio: float = live_field(1.0, ge=0.0, le=1.0)
    # Seconds in-flight calls get to finish after SIGTERM.
    shutdown_grace: float = 10.0

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            known = ", ".join(sorted(LOG_LEVELS))
            raise ValueError(f"unknown log level {value!r}: one of {known}")
        return level

    @model_validator(mode="after")
    def _refuse_weak_keys_in_prod(self) -> Self:
        if self.mode is not Mode.PROD:
            return self
        for name, field in type(self).model_fields.items():
            extra = field.json_schema_extra
            if not (isinstance(extra, dict) and extra.get(_KEY_MARK)):
                continue
            value = getattr(self, name)
            problem = key_problem(name, value) if isinstance(value, SecretStr) else None
            if problem is not None:
                raise ValueError(problem)
        return self


_FULL_METHOD = re.compile(r"/[A-Za-z_][\w.]*\.[A-Za-z_]\w*/[A-Za-z_]\w*")
_FIELD_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class PeerBalancing(BaseModel):
    """How calls to one peer service choose an instance (one entry of ``peer_balancing``).

    ``policy`` ``weighted_round_robin`` (the default for every peer) or ``consistent_hash``;
    with ``consistent_hash``, ``hash_methods`` maps full method names
    (``/package.Service/Method``) to the dotted request field whose value is the hash key,
    and only those methods are routed by hash: the peer's other methods keep weighted
    round robin. Unknown keys, malformed names and a policy without its methods (or the
    other way round) are refused when the settings are read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["weighted_round_robin", "consistent_hash"] = "weighted_round_robin"
    hash_methods: dict[str, str] = Field(default_factory=dict)

    @field_validator("hash_methods")
    @classmethod
    def _well_formed(cls, value: dict[str, str]) -> dict[str, str]:
        for method, path in value.items():
            if not _FULL_METHOD.fullmatch(method):
                raise ValueError(
                    f"{method!r} is not a full method name like "
                    "'/webook.article.v1.ArticleService/GetPublishedById'"
                )
            if not _FIELD_PATH.fullmatch(path):
                raise ValueError(
                    f"{path!r} (for {method}) is not a dotted request field like 'id' or 'user.id'"
                )
        return value

    @model_validator(mode="after")
    def _methods_match_policy(self) -> Self:
        if self.policy == "consistent_hash" and not self.hash_methods:
            raise ValueError("policy consistent_hash needs hash_methods (method -> request field)")
        if self.policy == "weighted_round_robin" and self.hash_methods:
            raise ValueError("hash_methods are only used with policy consistent_hash")
        return self


TLS_FILE_SETTINGS = ("tls_cert_file", "tls_key_file", "tls_ca_file")


class ClientSettings(BaseServiceSettings):
    """How a process finds and calls other services (gRPC clients)."""

    # etcd client endpoints ("host:port"); empty disables the registry (static peers only).
    etcd_endpoints: list[str] = Field(default_factory=list)
    registry_prefix: str = "/webook/services"
    # Static addresses that override discovery per service ("user" -> "host:port,host:port").
    peers: dict[str, str] = Field(default_factory=dict)
    # Balancing per peer service (PeerBalancing); peers not named use weighted round robin.
    # One JSON object, e.g. {"article": {"policy": "consistent_hash", "hash_methods":
    # {"/webook.article.v1.ArticleService/GetPublishedById": "id"}}}; setting it replaces
    # the process's default as a whole ("{}": round robin everywhere).
    peer_balancing: dict[str, PeerBalancing] = Field(default_factory=dict)
    # Default timeout of an outgoing call when no incoming deadline is shorter.
    client_default_timeout: float = 5.0
    # Attempts per idempotent call across endpoints (first try included).
    client_max_attempts: int = 3
    client_breaker_enabled: bool = True
    # Mutual TLS (kit.security.tls): this workload's certificate (PEM, chain), its private
    # key and the CA certificate it trusts. All three set: TLS on; none: plaintext (refused
    # in prod mode). Rotating the files needs no restart.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # Seconds between two looks of a client at its certificate files (servers look at each
    # new connection).
    tls_reload_seconds: float = Field(default=30.0, gt=0)
    # This process's etcd user (etcd authentication on): both or neither; required in prod
    # mode when etcd_endpoints is set. It may write only under registry_prefix/<its name>/.
    etcd_username: str = ""
    etcd_password: SecretStr = Field(default=SecretStr(""), repr=False)
    # The environment whose live settings this process follows in etcd
    # (/webook/config/<config_environment>/<service>/); empty: the mode's name (prod, test,
    # dev), so a test process never reads production's values.
    config_environment: str = ""
    # Where the last applied live settings are copied, for a start while etcd is unreachable.
    config_cache_dir: Path = Path(".run/config-cache")
    # Gray releases (kit.gray): rollout name -> {"mode": "hash"|"random", "percent": 0..100
    # (steps of 0.01), "allow": [ids always on]}. Live: kit.gray.Gray reads it at every
    # decision. Setting it replaces the whole map; a rollout it does not name runs at the
    # default its code declares (docs/configuration.md, "Gray release").
    gray_rollouts: dict[RolloutName, Rollout] = live_field(default_factory=dict)
    # Feature flags: flag name -> on/off. Live: read at each use through FeatureFlags (a
    # flag it does not name is off). Setting it replaces the whole map.
    feature_flags: dict[str, bool] = live_field(default_factory=dict)
    # Breaker thresholds, ejection tunables and endpoint weights of every outbound gRPC
    # channel (kit.grpcx.tuning.ClientTuning; unset fields keep the process's own). Live:
    # ServiceClients.follow applies a change to the channels in place (the gateway in its
    # lifespan, services through kit.grpcx.process.wire_clients).
    client_tuning: ClientTuning = live_field(default_factory=ClientTuning)

    @model_validator(mode="after")
    def _config_environment_of_the_mode(self) -> Self:
        # The model is frozen: the default is filled in once, here, while it is being built.
        if not self.config_environment:
            object.__setattr__(self, "config_environment", self.mode.value)
        check_segment("config_environment", self.config_environment)
        return self

    @property
    def tls_enabled(self) -> bool:
        """Whether gRPC hops use mutual TLS (all three files set)."""
        return all(getattr(self, name) for name in TLS_FILE_SETTINGS)

    @model_validator(mode="after")
    def _tls_all_or_none(self) -> Self:
        given = [name for name in TLS_FILE_SETTINGS if getattr(self, name)]
        if given and len(given) < len(TLS_FILE_SETTINGS):
            missing = [name for name in TLS_FILE_SETTINGS if name not in given]
            raise ValueError(
                f"mutual TLS needs all of {', '.join(TLS_FILE_SETTINGS)}: "
                f"{', '.join(missing)} not set"
            )
        if not given and self.mode is Mode.PROD:
            raise ValueError(
                f"prod mode requires mutual TLS between services: set "
                f"{', '.join(TLS_FILE_SETTINGS)}"
            )
        return self

    @model_validator(mode="after")
    def _etcd_credentials(self) -> Self:
        has_password = bool(self.etcd_password.get_secret_value())
        if bool(self.etcd_username) != has_password:
            raise ValueError("etcd_username and etcd_password go together: set both or neither")
        if self.mode is Mode.PROD and self.etcd_endpoints and not self.etcd_username:
            raise ValueError(
                "prod mode requires etcd credentials: set etcd_username and etcd_password"
            )
        return self


class KafkaConnectionSettings(BaseModel):
    """Where the brokers are and how Kafka clients authenticate (:class:`kit.events.KafkaSecurity`),
    one mixin for every process that talks to Kafka (services, the lag exporter).

    ``kafka_security_protocol``: PLAINTEXT (the local broker), SSL, SASL_PLAINTEXT or
    SASL_SSL; SASL needs the username and password. ``kafka_ssl_ca_file``: the CA certificate
    (PEM) the brokers' certificates are checked against under SSL and SASL_SSL; empty: the
    system's trust store.
    """

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), repr=False)
    kafka_ssl_ca_file: str = ""

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

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How this process's Kafka clients authenticate, from the ``kafka_*`` settings."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value(),
            ca_file=self.kafka_ssl_ca_file,
        )


class GrpcServiceSettings(ClientSettings, KafkaConnectionSettings):
    """Settings of a gRPC service process."""

    grpc_host: str = "127.0.0.1"
    # 0 binds a free port (the registry tells clients which one).
    grpc_port: int = 0
    # Address other processes should dial; defaults to grpc_host:bound port.
    advertise_host: str = ""
    database_url: str = ""
    # The SQL connection pool of this process on MySQL/MariaDB (kit.sql.PoolLimits): every
    # replica may hold pool_size + max_overflow connections, which the connection budget
    # of docs/persistence.md adds up against the server's max_connections. A checkout that
    # finds the pool exhausted fails after database_pool_timeout_seconds.
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)
    database_pool_timeout_seconds: float = Field(default=30.0, gt=0)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # How long a Redis read that has a fallback (a cache, the session check, a rate-limit
    # check) waits in silence before taking it; None: a tenth of the client's timeout.
    redis_fallback_wait_seconds: float | None = Field(default=None, gt=0)
    # Durability of events (docs/events.md, "Production settings"). What the broker waits
    # for before acknowledging: "all" in-sync replicas, or "1" (the partition leader alone).
    kafka_acks: Literal["all", "1"] = "all"
    # aiokafka's idempotent producer (needs acks "all"). Unset: on in prod mode, off in dev
    # and test mode, whose broker (tansu) refuses to grant producer ids.
    kafka_idempotent_producer: bool | None = None
    # Replication of the topics this process creates: copies of each partition, and the
    # topic's min.insync.replicas (copies written before an acks=all write succeeds).
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_min_insync_replicas: int = Field(default=1, ge=1)
    # Create the topics the process writes or reads (and re-create them when a broker lost
    # them); false when the operator provisions topics and the service user may not create.
    kafka_manage_topics: bool = True
    # Seconds of acknowledged events the producer keeps to send again when the broker shows
    # it lost them (kit.events.producer, "Replay window"). 0, the default: off, as for a
    # replicated cluster; the local stack turns it on, its broker loses data on restart.
    kafka_replay_window_seconds: float = Field(default=0.0, ge=0)
    # Registration in the registry (when etcd_endpoints is not empty).
    register_instance: bool = True
    registry_ttl: int = 10
    instance_weight: int = Field(default=1, ge=1, le=100)
    instance_zone: str = ""
    instance_version: str = "0.1.0"
    # Seconds between deregistration and draining, so clients see the removal first.
    deregister_drain_delay: float = 1.0
    # Load shedding: most calls in flight before RESOURCE_EXHAUSTED (0 disables shedding).
    # Live: the running server's shedder takes a new bound for the next call (calls in
    # flight keep their slot); switching shedding on (from 0) or off (to 0) needs a restart.
    shed_max_in_flight: int = live_field(512, ge=0)
    # A plaintext port for Kubernetes' gRPC probes, which cannot present a client
    # certificate (0: none). The authoriser answers only grpc.health.v1.Health to callers
    # without a certificate, so it serves health checks and nothing else.
    grpc_probe_port: int = Field(default=0, ge=0, le=65535)

    @property
    def database_pool(self) -> PoolLimits:
        """The bounds of this process's SQL pool, for ``create_engine(url, pool=...)``."""
        return PoolLimits(
            size=self.database_pool_size,
            overflow=self.database_max_overflow,
            timeout_s=self.database_pool_timeout_seconds,
        )

    @property
    def kafka_idempotence(self) -> bool:
        """Whether the producer is idempotent: ``kafka_idempotent_producer``, else prod mode."""
        if self.kafka_idempotent_producer is None:
            return self.mode is Mode.PROD
        return self.kafka_idempotent_producer

    @model_validator(mode="after")
    def _kafka_durability(self) -> Self:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"kafka_min_insync_replicas ({self.kafka_min_insync_replicas}) cannot exceed "
                f"kafka_replication_factor ({self.kafka_replication_factor}): every acks=all "
                "write would be refused"
            )
        if self.kafka_idempotence and self.kafka_acks != "all":
            unset = self.kafka_idempotent_producer is None
            raise ValueError(
                "an idempotent Kafka producer requires kafka_acks=all"
                + (" (it is on by default in prod mode)" if unset else "")
                + "; set kafka_acks=all or kafka_idempotent_producer=false"
            )
        return self


class FeatureFlags:
    """``flags.enabled(name)``: whether a feature flag is on in the settings in force.

    ``current`` returns the settings to read at each call (``lambda: live.current`` to
    follow the live settings, or a fixed settings object), so a flag switched in the
    configuration centre applies to the next call without anything to rebuild.
    """

    __slots__ = ("_current",)

    def __init__(self, current: Callable[[], ClientSettings]) -> None:
        self._current = current

    def enabled(self, name: str) -> bool:
        """Whether flag ``name`` is on (a flag not named in ``feature_flags`` is off)."""
        return self._current().feature_flags.get(name, False)


SettingsT = TypeVar("SettingsT", bound=BaseServiceSettings)


def load_settings(
    cls: type[SettingsT], env_file: Path | None = None, **overrides: Any
) -> SettingsT:
    """Build settings from the environment, an optional dotenv file and explicit overrides."""
    if env_file is not None:
        return cls(_env_file=env_file, **overrides)
    return cls(**overrides)

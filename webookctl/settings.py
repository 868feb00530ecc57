"""Where ``webookctl`` connects to, from ``WEBOOKCTL_*`` variables and command-line flags.

Each setting has a variable (``WEBOOKCTL_ETCD_ENDPOINTS``, ...) and most have a flag; a
flag given on the command line wins over the variable. Passwords and tokens are read from
variables only (``WEBOOKCTL_ETCD_PASSWORD``, ``WEBOOKCTL_SMS_TOKEN``), so that they stay out
of shell histories and process listings. ``env`` has no default: every command that touches
configuration must say which environment it means (``--env prod``), since writing to the
wrong one is the mistake an operator's tool must not make easy.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kit.config import TLS_FILE_SETTINGS

ENV_PREFIX = "WEBOOKCTL_"


class CtlSettings(BaseSettings):
    """Connection settings of the operator's command line."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # The environment whose configuration the config commands read and write ("prod").
    env: str = ""
    # etcd client endpoints ("host:port"): the configuration centre and the registry.
    etcd_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:2379"]
    )
    # The operator's etcd user (etcd authentication on): both or neither.
    etcd_username: str = ""
    etcd_password: SecretStr = Field(default=SecretStr(""), repr=False)
    # Where services register, to find an instance to call (kit.config.ClientSettings).
    registry_prefix: str = "/webook/services"
    # The Redis the gateway keeps revoked sessions in, credentials in the URL.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Mutual TLS for gRPC calls: a workload certificate and key, and the CA (all or none).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # Static address(es) of the sms service ("host:port,host:port"); empty: etcd discovery.
    sms_address: str = ""
    # Static address(es) of the scheduler ("host:port,..."); empty: etcd discovery.
    scheduler_address: str = ""
    # The SmsService caller token (an admin caller's static token or JWT).
    sms_token: SecretStr = Field(default=SecretStr(""), repr=False)
    # Level of the log lines on stderr (JSON); the command's own answer is not a log line.
    log_level: str = "ERROR"
    # Seconds a gRPC call may take.
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("etcd_endpoints", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # A flag or a plain variable gives "a:1,b:2"; a JSON list is also accepted.
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        return [part.strip() for part in value.split(",") if part.strip()]

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        given = [name for name in TLS_FILE_SETTINGS if getattr(self, name)]
        if given and len(given) < len(TLS_FILE_SETTINGS):
            raise ValueError(f"TLS needs all of {', '.join(TLS_FILE_SETTINGS)}, or none")
        if bool(self.etcd_username) != bool(self.etcd_password.get_secret_value()):
            raise ValueError(
                "WEBOOKCTL_ETCD_USERNAME and WEBOOKCTL_ETCD_PASSWORD go together: set both or "
                "neither"
            )
        return self

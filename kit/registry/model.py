"""Service instances as stored in the registry: key layout and value encoding.

Key: ``<prefix>/<service>/<instance-id>``, the prefix defaulting to ``/webook/services``.
Value: UTF-8 JSON ``{"addr": "host:port", "weight": 1, "zone": "", "version": ""}``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass

from kit.registry.errors import InvalidInstanceError

DEFAULT_PREFIX = "/webook/services"


@dataclass(frozen=True, slots=True)
class ServiceInstance:
    """One listening server of a service, as announced in the registry.

    ``weight`` (>= 1) is the instance's share of traffic relative to its peers; ``zone`` and
    ``version`` are informational labels (free-form, may be empty).
    """

    service: str
    instance_id: str
    addr: str
    weight: int = 1
    zone: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        for label, value in (("service", self.service), ("instance_id", self.instance_id)):
            if not value or "/" in value:
                raise InvalidInstanceError(f"{label} must be non-empty without '/': {value!r}")
        if not self.addr:
            raise InvalidInstanceError("addr must be non-empty")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 1:
            raise InvalidInstanceError(f"weight must be an integer >= 1, got {self.weight!r}")

    def encode_value(self) -> bytes:
        """The registry value for this instance (JSON, UTF-8)."""
        payload = {
            "addr": self.addr,
            "weight": self.weight,
            "zone": self.zone,
            "version": self.version,
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, service: str, instance_id: str, raw: bytes) -> ServiceInstance:
        """Parse a registry value written by :meth:`encode_value`.

        Raises:
            InvalidInstanceError: the value is not a JSON object with a valid ``addr`` and
                ``weight`` (``weight`` defaults to 1, ``zone``/``version`` to "").
        """
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInstanceError(f"registry value is not JSON: {raw[:80]!r}") from exc
        if not isinstance(payload, dict):
            raise InvalidInstanceError(f"registry value is not a JSON object: {raw[:80]!r}")
        addr, weight = payload.get("addr"), payload.get("weight", 1)
        zone, version = payload.get("zone", ""), payload.get("version", "")
        if not isinstance(addr, str) or not isinstance(zone, str) or not isinstance(version, str):
            raise InvalidInstanceError(f"registry value has fields of the wrong type: {payload!r}")
        return cls(service, instance_id, addr, weight, zone, version)


def service_prefix(prefix: str, service: str) -> str:
    """The key prefix under which ``service``'s instances live (ends with ``/``)."""
    return f"{prefix.rstrip('/')}/{service}/"


def instance_key(prefix: str, instance: ServiceInstance) -> str:
    """The registry key of ``instance``."""
    return service_prefix(prefix, instance.service) + instance.instance_id


def new_instance_id() -> str:
    """A unique, readable instance id: ``<hostname>-<pid>-<6 random hex digits>``."""
    host = socket.gethostname().split(".", 1)[0].replace("/", "-") or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"

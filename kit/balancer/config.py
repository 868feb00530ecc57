"""Configuration of a balanced client channel: policy, failover, health and limits.

The consistent-hash policy takes its key per call from a metadata value or a request field,
for every method of the channel or only for the methods named in ``hash_methods`` (the
others keep weighted round robin): e.g. article reads by article id, so that each replica's
local cache holds its own share of the articles.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc

from kit.governance.breaker import CLIENT_ERROR_CODES


class Policy(enum.StrEnum):
    """How a call chooses its endpoint."""

    WEIGHTED_ROUND_ROBIN = "weighted_round_robin"
    """Smooth weighted round robin (nginx), weights from the registry."""
    CONSISTENT_HASH = "consistent_hash"
    """Hash ring with virtual nodes keyed by a request field or metadata value."""


_DEFAULT_FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
_DEFAULT_FAILURE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL}
)


@dataclass(frozen=True, slots=True)
class BalancerConfig:
    """Tunables of a :class:`~kit.balancer.channel.BalancedChannel`; all have defaults.

    Failover:
        idempotent_methods: full method names (``/pkg.Service/Method``) safe to send twice;
            only these fail over. ``is_idempotent`` is an alternative predicate (either
            matching is enough). Everything else is sent exactly once.
        failover_codes: status codes after which an idempotent unary call is retried on
            another endpoint.
        max_attempts: attempt cap per idempotent unary call (first try included); retries
            also stop when the caller's deadline has passed or every endpoint was tried.

    Endpoint health:
        failure_codes: status codes that count as a failure of the endpoint (other codes
            are the endpoint answering, i.e. a success for its health).
        failure_weight_factor: a failure multiplies the effective weight by this...
        min_weight_ratio: ...but not below ``weight * min_weight_ratio``.
        recovery_step_ratio: a success adds ``weight * recovery_step_ratio`` to the
            effective weight, up to the configured weight.
        eject_after_failures: consecutive failures that eject the endpoint.
        ejection_seconds: first cool-down; it doubles with each consecutive ejection...
        max_ejection_seconds: ...up to this cap.
        probe_weight_ratio: after the single trial call succeeds the endpoint rejoins at
            ``weight * probe_weight_ratio`` and recovers from there.

    Hash policy:
        policy: :class:`Policy` of this client.
        hash_metadata_key: metadata key whose value is the hash key (checked first).
        hash_request_field: dotted attribute path of the request used as the hash key.
            Calls without a key (absent, ``None`` or empty) use weighted round robin.
        hash_methods: full method name -> dotted request field: these methods take their
            hash key from that field (before ``hash_metadata_key``/``hash_request_field``,
            which then apply to the other methods). With ``hash_methods`` alone, only the
            methods named are routed by hash; all others use weighted round robin.
        virtual_nodes: points per endpoint on the hash ring.

    Channels:
        max_in_flight_per_endpoint: calls in flight on one endpoint channel at most
            (grpc.aio starts failing calls with CANCELLED beyond ~1,500); more wait.
        close_grace: seconds in-flight calls get to finish on an endpoint that left.
        channel_options: grpc channel arguments for every endpoint channel.
    """

    policy: Policy = Policy.WEIGHTED_ROUND_ROBIN
    idempotent_methods: frozenset[str] = frozenset()
    is_idempotent: Callable[[str], bool] | None = None
    failover_codes: frozenset[grpc.StatusCode] = _DEFAULT_FAILOVER_CODES
    max_attempts: int = 3
    failure_codes: frozenset[grpc.StatusCode] = _DEFAULT_FAILURE_CODES
    failure_weight_factor: float = 0.5
    min_weight_ratio: float = 0.1
    recovery_step_ratio: float = 0.1
    eject_after_failures: int = 5
    ejection_seconds: float = 5.0
    max_ejection_seconds: float = 60.0
    probe_weight_ratio: float = 0.5
    hash_metadata_key: str | None = None
    hash_request_field: str | None = None
    hash_methods: Mapping[str, str] = field(default_factory=dict, hash=False)
    virtual_nodes: int = 160
    max_in_flight_per_endpoint: int = 1000
    close_grace: float = 5.0
    channel_options: tuple[tuple[str, Any], ...] = ()
    _hash_field_path: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _method_paths: Mapping[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        # Accept plain strings (e.g. from settings files) for the policy.
        object.__setattr__(self, "policy", Policy(self.policy))
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0 < self.failure_weight_factor <= 1:
            raise ValueError("failure_weight_factor must be in (0, 1]")
        for name in ("min_weight_ratio", "recovery_step_ratio", "probe_weight_ratio"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if self.eject_after_failures < 1:
            raise ValueError("eject_after_failures must be >= 1")
        # A client error says nothing about the endpoint, and another endpoint would answer
        # the same: the same rule as the circuit breaker's.
        client_outcomes = (self.failure_codes | self.failover_codes) & CLIENT_ERROR_CODES
        if client_outcomes:
            names = ", ".join(sorted(code.name for code in client_outcomes))
            raise ValueError(
                f"failure_codes and failover_codes must not hold client outcomes: {names}"
            )
        if not 0 < self.ejection_seconds <= self.max_ejection_seconds:
            raise ValueError("need 0 < ejection_seconds <= max_ejection_seconds")
        if self.virtual_nodes < 1 or self.max_in_flight_per_endpoint < 1:
            raise ValueError("virtual_nodes and max_in_flight_per_endpoint must be >= 1")
        if self.close_grace < 0:
            raise ValueError("close_grace must be >= 0")
        if self.policy is Policy.CONSISTENT_HASH and not (
            self.hash_metadata_key or self.hash_request_field or self.hash_methods
        ):
            raise ValueError("the consistent_hash policy needs a hash key source")
        if self.hash_methods and self.policy is not Policy.CONSISTENT_HASH:
            raise ValueError(
                f"hash_methods route calls by hash: set policy to {Policy.CONSISTENT_HASH.value!r}"
                f" (it is {self.policy.value!r})"
            )
        path = field_path(self.hash_request_field) if self.hash_request_field else ()
        object.__setattr__(self, "_hash_field_path", path)
        methods = {method_name(m): field_path(f) for m, f in self.hash_methods.items()}
        object.__setattr__(self, "hash_methods", MappingProxyType(dict(self.hash_methods)))
        object.__setattr__(self, "_method_paths", MappingProxyType(methods))

    def idempotent(self, method: str) -> bool:
        """Whether ``method`` (full name) may be sent more than once."""
        if method in self.idempotent_methods:
            return True
        return self.is_idempotent is not None and self.is_idempotent(method)

    def hashes(self, method: str) -> bool:
        """Whether calls to ``method`` (full name) are routed by hash key."""
        if self.policy is not Policy.CONSISTENT_HASH:
            return False
        return method in self._method_paths or bool(
            self.hash_metadata_key or self.hash_request_field
        )

    def hash_key(
        self,
        request: object,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        method: str | None = None,
    ) -> bytes | None:
        """The hash key of a call (to ``method``, if given), or ``None`` when it has none."""
        if method is not None:
            path = self._method_paths.get(method)
            if path is not None:
                return _field_key(request, path)
        if self.hash_metadata_key and metadata:
            for key, entry in metadata:
                if key == self.hash_metadata_key:
                    return _to_key(entry)
        if self._hash_field_path:
            return _field_key(request, self._hash_field_path)
        return None


_METHOD = re.compile(r"/[A-Za-z_][\w.]*\.[A-Za-z_]\w*/[A-Za-z_]\w*")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def method_name(name: str) -> str:
    """``name`` if it is a full gRPC method name (``/package.Service/Method``), else raises."""
    if not _METHOD.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a full method name like '/webook.user.v1.UserService/Profile'"
        )
    return name


def field_path(dotted: str) -> tuple[str, ...]:
    """The parts of a dotted request field path (``"user.id"``), else raises ``ValueError``."""
    parts = tuple(dotted.split("."))
    if not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(f"{dotted!r} is not a dotted request field path like 'id' or 'user.id'")
    return parts


def _field_key(request: object, path: tuple[str, ...]) -> bytes | None:
    value: object = request
    for part in path:
        value = getattr(value, part, None)
        if value is None:
            return None
    return _to_key(value)


def _to_key(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value or None
    text = str(value)
    return text.encode() if text else None

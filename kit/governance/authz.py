"""Who may call what: each gRPC method's callers, as its proto declares them, enforced.

Every rpc declares the workloads allowed to call it, ``option (webook.contracts.v1.callers)``,
and ``(webook.contracts.v1.acts_for_user)`` when its request names the end user the call acts
for (``protos/webook/contracts/v1/contracts.proto``). Under mutual TLS a caller is the
workload its verified client certificate names (:func:`kit.security.identity.peer_identity`),
and :class:`Authorizer` admits a call only when that workload is declared:

- a method without declared callers, or unknown to the descriptors, is refused (default deny);
- a method that acts for a user admits only the workloads of :data:`USER_ASSERTERS`, whatever
  its callers list says: only the gateway authenticated the end user;
- ``grpc.health.v1.Health`` answers anyone, even without a certificate (the plaintext probe
  port); server reflection answers any authenticated workload.

A refusal is ``PERMISSION_DENIED``, counted in ``webook_grpc_denied_total{service,method,
caller}`` and logged. ``GovernedServerInterceptor(authorizer=...)`` runs the check; it is
installed only when the server runs with TLS. ``python -m kit.governance.authz`` prints the
table of ``docs/security.md`` ("Who may call what") from the descriptors.
"""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from kit.governance._rpc import ServicerContext, parse_method
from kit.security.identity import peer_identity
from webook.contracts.v1 import contracts_pb2

logger = logging.getLogger(__name__)

_peer_identity = peer_identity

USER_ASSERTERS: Final[frozenset[str]] = frozenset({"gateway"})
"""The workloads that may assert an end user: only they call ``acts_for_user`` methods."""

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
"""Health methods: allowed to anyone, with or without a certificate."""
REFLECTION_PREFIX: Final = "/grpc.reflection."
"""Server reflection (``v1alpha`` and ``v1``): allowed to any authenticated workload."""
UNAUTHENTICATED: Final = "unauthenticated"
"""The ``caller`` label of a call that came without a verified workload identity."""

# A refused (method, caller) pair is logged at most this often; the metric counts every one.
LOG_INTERVAL_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """What a method declares about its callers."""

    callers: frozenset[str]
    """The workloads its ``(callers)`` option lists."""
    acts_for_user: bool = False
    """Its ``(acts_for_user)`` option: the request names the end user the call acts for."""

    @property
    def admitted(self) -> frozenset[str]:
        """The workloads actually admitted: acting for a user narrows to :data:`USER_ASSERTERS`."""
        return self.callers & USER_ASSERTERS if self.acts_for_user else self.callers


def method_policy(method: MethodDescriptor) -> MethodPolicy:
    """The policy ``method``'s options declare (no callers when it declares none)."""
    options = method.GetOptions()
    return MethodPolicy(
        callers=frozenset(options.Extensions[contracts_pb2.callers]),
        acts_for_user=bool(options.Extensions[contracts_pb2.acts_for_user]),
    )


def full_method(method: MethodDescriptor) -> str:
    """``/package.Service/Method``, the name a server sees."""
    return f"/{method.containing_service.full_name}/{method.name}"


def declared_policy(services: Iterable[ServiceDescriptor]) -> dict[str, MethodPolicy]:
    """Every method of ``services`` by its full name, with what it declares."""
    return {
        full_method(method): method_policy(method)
        for service in services
        for method in service.methods
    }


class AuthzMetrics:
    """``webook_grpc_denied_total{service,method,caller}``, registered once per registry."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        """Create and register the counter (``registry=None`` registers nowhere, for tests)."""
        self.denied = Counter(
            "webook_grpc_denied_total",
            "RPCs refused with PERMISSION_DENIED because the caller may not call the method.",
            ["service", "method", "caller"],
            registry=registry,
        )


@functools.cache
def default_authz_metrics() -> AuthzMetrics:
    """The process-wide metrics on the default Prometheus registry (created on first use)."""
    return AuthzMetrics(REGISTRY)


class Rule:
    """The decision for one method, computed once: who is admitted and how to refuse.

    ``admitted`` None admits any authenticated workload (reflection); otherwise the set of
    workload names admitted. A call without identity is never admitted.
    """

    __slots__ = ("_authorizer", "admitted", "full", "policy")

    def __init__(
        self,
        authorizer: Authorizer,
        full: str,
        admitted: frozenset[str] | None,
        policy: MethodPolicy | None,
    ) -> None:
        self._authorizer = authorizer
        self.full = full
        self.admitted = admitted
        self.policy = policy

    def admits(self, identity: str | None) -> bool:
        """Whether a call from ``identity`` (None: no verified certificate) may proceed."""
        if identity is None:
            return False
        admitted = self.admitted
        return admitted is None or identity in admitted

    async def check(self, context: ServicerContext) -> None:
        """Return if the caller is admitted; otherwise abort with ``PERMISSION_DENIED``."""
        identity = _peer_identity(context)
        if not self.admits(identity):
            await self.refuse(context, identity)

    async def refuse(self, context: ServicerContext, identity: str | None) -> None:
        """Count, log and abort the call of ``identity`` (always raises)."""
        await self._authorizer.refuse(context, self, identity)

    def why(self, identity: str | None) -> str:
        """Why ``identity`` is refused, for the log (never sent to the caller)."""
        if identity is None:
            return "no verified client certificate"
        policy = self.policy
        if policy is None:
            return "method declares no callers"
        if identity in policy.callers and policy.acts_for_user:
            return "listed, but may not assert an end user"
        return "not a declared caller" if policy.callers else "method declares no callers"


class Authorizer:
    """The per-method caller check of a server (install it only when the server runs TLS).

    Args:
        policy: each method's :class:`MethodPolicy` by full name (:func:`declared_policy` of
            the services a server hosts, or a table of a test's own). None reads each method
            from ``pool``'s descriptors the first time it is called.
        pool: where methods are looked up when ``policy`` is None (the default pool, which
            holds every imported ``_pb2`` module).
        metrics: where refusals are counted (:func:`default_authz_metrics` if None).

    :meth:`rule` is computed once per method and cached; per call the check is reading the
    peer's identity and one set membership.
    """

    def __init__(
        self,
        policy: Mapping[str, MethodPolicy] | None = None,
        *,
        pool: DescriptorPool | None = None,
        metrics: AuthzMetrics | None = None,
    ) -> None:
        self._policy = None if policy is None else dict(policy)
        self._pool = pool
        self.metrics = metrics or default_authz_metrics()
        self._rules: dict[str, Rule | None] = {}
        # (method, caller) -> (when last logged, refusals not logged since).
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}
        if self._policy is not None:
            for full, declared in self._policy.items():
                _warn_if_misdeclared(full, declared)

    @classmethod
    def for_services(
        cls, services: Iterable[str | ServiceDescriptor], *, metrics: AuthzMetrics | None = None
    ) -> Authorizer:
        """The authorizer of a server hosting ``services`` (full names or descriptors).

        Names are resolved in the default descriptor pool; the ``_pb2`` modules must be
        imported (mounting a servicer does). Methods of other services are refused, apart
        from health and reflection.
        """
        pool = descriptor_pool.Default()
        descriptors = [
            pool.FindServiceByName(service) if isinstance(service, str) else service
            for service in services
        ]
        return cls(declared_policy(descriptors), metrics=metrics)

    def rule(self, full: str) -> Rule | None:
        """The rule of ``/package.Service/Method``; None when anyone may call it (health)."""
        try:
            return self._rules[full]
        except KeyError:
            rule = self._rules[full] = self._build(full)
            return rule

    def _build(self, full: str) -> Rule | None:
        if full.startswith(HEALTH_PREFIX):
            return None
        if full.startswith(REFLECTION_PREFIX):
            return Rule(self, full, None, None)
        declared = self._lookup(full)
        if declared is None:
            return Rule(self, full, frozenset(), None)
        return Rule(self, full, declared.admitted, declared)

    def _lookup(self, full: str) -> MethodPolicy | None:
        if self._policy is not None:
            return self._policy.get(full)
        rpc = parse_method(full)
        pool = self._pool or descriptor_pool.Default()
        try:
            method = pool.FindMethodByName(f"{rpc.service}.{rpc.name}")
        except KeyError:
            return None
        declared = method_policy(method)
        _warn_if_misdeclared(full, declared)
        return declared

    async def refuse(self, context: ServicerContext, rule: Rule, identity: str | None) -> None:
        """Count, log and abort the call with ``PERMISSION_DENIED`` (always raises)."""
        caller = identity or UNAUTHENTICATED
        rpc = parse_method(rule.full)
        self.metrics.denied.labels(rpc.service, rpc.name, caller).inc()
        self._log(context, rule, identity, caller)
        if identity is None:
            details = f"{rule.full} requires a verified client certificate"
        else:
            details = f"caller {identity!r} may not call {rule.full}"
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, details)

    def _log(self, context: ServicerContext, rule: Rule, identity: str | None, caller: str) -> None:
        """A warning per refused (method, caller), at most every :data:`LOG_INTERVAL_S`."""
        key = (rule.full, caller)
        now = time.monotonic()
        last, suppressed = self._logged.get(key, (float("-inf"), 0))
        if now - last < LOG_INTERVAL_S:
            self._logged[key] = (last, suppressed + 1)
            return
        self._logged[key] = (now, 0)
        logger.warning(
            "call refused: caller may not call the method",
            extra={
                "method": rule.full,
                "caller": caller,
                "peer": context.peer(),
                "reason": rule.why(identity),
                "suppressed": suppressed,
            },
        )


def _warn_if_misdeclared(full: str, declared: MethodPolicy) -> None:
    """Log the callers an ``acts_for_user`` method lists but that may not assert a user."""
    ignored = declared.callers - declared.admitted
    if ignored:
        logger.warning(
            "declared callers refused: they may not assert an end user",
            extra={"method": full, "callers": sorted(ignored)},
        )


def generated_services(package: str = "webook") -> list[ServiceDescriptor]:
    """Every service of the generated ``_pb2`` modules under ``package``, by full name."""
    root = importlib.import_module(package)
    services: dict[str, ServiceDescriptor] = {}
    for module in pkgutil.walk_packages(root.__path__, f"{package}."):
        if module.name.endswith("_pb2"):
            file = importlib.import_module(module.name).DESCRIPTOR
            for service in file.services_by_name.values():
                services[service.full_name] = service
    return [services[name] for name in sorted(services)]


def _table_rows(services: Iterable[ServiceDescriptor]) -> Iterator[str]:
    for service in services:
        for method in service.methods:
            declared = method_policy(method)
            callers = ", ".join(f"`{name}`" for name in sorted(declared.callers)) or "nobody"
            acts = "yes" if declared.acts_for_user else "no"
            yield f"| `{service.full_name}` | `{method.name}` | {callers} | {acts} |"


def markdown_table(services: Iterable[ServiceDescriptor] | None = None) -> str:
    """The Markdown table of who may call what (every generated service if None)."""
    lines = [
        "| service | method | callers | acts for user |",
        "|---|---|---|---|",
        *_table_rows(generated_services() if services is None else services),
        "| `grpc.health.v1.Health` | all | anyone, even without a certificate | no |",
        "| `grpc.reflection.*` | all | any workload with a certificate | no |",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    """``python -m kit.governance.authz``: print the table for ``docs/security.md``."""
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

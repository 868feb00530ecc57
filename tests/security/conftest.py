"""A real stack for the attacks of tests/security: user, article, comment and search over
mutual TLS, found through etcd, behind the gateway.

The stack registers under a registry prefix of its own, so the fake instances these tests
register in the session's etcd never reach another suite's stack. Each service exposes its
metrics port, so a test can see its denials counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.infra import ManagedProcess, free_port, stop_all
from devstack.suite import Infra, gateway_process, service_process, start_services
from devstack.tls import stack_pki
from kit.security.pki import Pki

SERVICES = ("user", "article", "comment", "search")
REGISTRY_PREFIX = "/webook-security-tests/services"
USER_AGENT = "webook-security/1.0"


@dataclass
class SecureStack:
    """The running stack: where each service listens, and how to reach it."""

    infra: Infra
    pki: Pki
    grpc_ports: dict[str, int]
    metrics_ports: dict[str, int]
    base_url: str
    registry_prefix: str
    processes: dict[str, list[ManagedProcess]]

    def address(self, service: str) -> str:
        """``127.0.0.1:<port>`` of ``service``'s one instance."""
        return f"127.0.0.1:{self.grpc_ports[service]}"

    def metrics(self, service: str) -> str:
        """The Prometheus exposition of ``service`` now."""
        answer = httpx.get(f"http://127.0.0.1:{self.metrics_ports[service]}/metrics", timeout=5)
        answer.raise_for_status()
        return answer.text


@pytest.fixture(scope="session")
def secure_stack(
    tmp_path_factory: pytest.TempPathFactory,
    infra_dir: Path,
    redis_url: str,
    etcd_endpoint: str,
    kafka_bootstrap: str,
) -> Iterator[SecureStack]:
    """The stack, started once for the security tests."""
    state = tmp_path_factory.mktemp("security-stack")
    pki = stack_pki(state)
    infra = Infra(
        redis_url=redis_url.rsplit("/", 1)[0] + "/2",
        etcd_endpoints=[etcd_endpoint],
        kafka_bootstrap=kafka_bootstrap,
        database_url=f"sqlite+aiosqlite:///{state}",
        mode="test",
        extra_env={
            "{PREFIX}BCRYPT_COST": "4",
            "{PREFIX}REGISTRY_PREFIX": REGISTRY_PREFIX,
            "{PREFIX}KAFKA_SESSION_TIMEOUT_MS": "3000",
            "{PREFIX}KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "WEBOOK_GATEWAY_EDGE": json.dumps({"rate_limits": []}),
        },
        pki=pki,
    )
    grpc_ports = {name: free_port() for name in SERVICES}
    metrics_ports = {name: free_port() for name in SERVICES}
    gateway_port = free_port()
    gateway = gateway_process(infra, gateway_port, {}, infra_dir)
    processes = start_services(
        SERVICES,
        infra,
        infra_dir,
        lambda name, replica: service_process(
            name, infra, grpc_ports[name], infra_dir, metrics_port=metrics_ports[name]
        ),
        also=[gateway],
        timeout=120,
    )
    try:
        yield SecureStack(
            infra=infra,
            pki=pki,
            grpc_ports=grpc_ports,
            metrics_ports=metrics_ports,
            base_url=f"http://127.0.0.1:{gateway_port}",
            registry_prefix=REGISTRY_PREFIX,
            processes=processes,
        )
    finally:
        stop_all([gateway, *(p for group in processes.values() for p in group)])

"""A real stack for the attacks of tests/security, run as production runs: user, article,
comment and search over mutual TLS, behind the gateway, each process logging in to etcd
and Redis as itself.

The stack uses the session's etcd with authentication on (``secure_etcd``: its own registry
prefix, one user per workload) and a Redis of its own whose only users are the workloads'
ACL users, so nothing here can reach another suite's stack. Each service exposes its
metrics port, so a test can see its denials counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.credentials import SecureEtcd, acl_redis
from devstack.infra import ManagedProcess, free_port, stop_all
from devstack.suite import Infra, gateway_process, service_process, start_services
from devstack.tls import stack_pki
from kit.security.pki import Pki

# search rebuilds its empty index from article, user and tag (ListTagSets) before serving.
SERVICES = ("user", "article", "comment", "tag", "search")
USER_AGENT = "webook-security/1.0"


@dataclass
class SecureStack:
    """The running stack: where each service listens, and how to reach it."""

    infra: Infra
    pki: Pki
    etcd: SecureEtcd
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
    secure_etcd: SecureEtcd,
    kafka_bootstrap: str,
) -> Iterator[SecureStack]:
    """The stack, started once for the security tests."""
    state = tmp_path_factory.mktemp("security-stack")
    pki = stack_pki(state)
    with acl_redis(state / "redis", secure_etcd.credentials) as redis_url:
        yield from _running(state, pki, secure_etcd, redis_url, infra_dir, kafka_bootstrap)


def _running(
    state: Path,
    pki: Pki,
    secure_etcd: SecureEtcd,
    redis_url: str,
    infra_dir: Path,
    kafka_bootstrap: str,
) -> Iterator[SecureStack]:
    infra = Infra(
        # Without a user: each process gets its own written in (Infra.credentials).
        redis_url=redis_url,
        etcd_endpoints=[secure_etcd.endpoint],
        kafka_bootstrap=kafka_bootstrap,
        database_url=f"sqlite+aiosqlite:///{state}",
        mode="test",
        extra_env={
            "{PREFIX}BCRYPT_COST": "4",
            "{PREFIX}REGISTRY_PREFIX": secure_etcd.registry_prefix,
            "{PREFIX}KAFKA_SESSION_TIMEOUT_MS": "3000",
            "{PREFIX}KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "WEBOOK_GATEWAY_EDGE": json.dumps({"rate_limits": []}),
        },
        pki=pki,
        credentials=secure_etcd.credentials,
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
            etcd=secure_etcd,
            grpc_ports=grpc_ports,
            metrics_ports=metrics_ports,
            base_url=f"http://127.0.0.1:{gateway_port}",
            registry_prefix=secure_etcd.registry_prefix,
            processes=processes,
        )
    finally:
        stop_all([gateway, *(p for group in processes.values() for p in group)])

"""End-to-end fixtures: the real user service and gateway processes on free ports.

The stack uses the session's real Redis, etcd and broker (root conftest) and a SQLite
database in a temporary directory. Logs of every process land in the session's infra dir.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kit.devstack.infra import ManagedProcess, free_port
from kit.devstack.suite import Infra, gateway_process, migrate, service_process

USER_AGENT = "webook-e2e/1.0"


@dataclass
class RunningStack:
    """Addresses and handles of the processes under test."""

    base_url: str
    user: ManagedProcess
    gateway: ManagedProcess
    log_dir: Path


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    infra_dir: Path,
    redis_url: str,
    etcd_endpoint: str,
    kafka_bootstrap: str,
) -> Iterator[RunningStack]:
    """User service + gateway, started once for the e2e session."""
    data_dir = tmp_path_factory.mktemp("e2e-data")
    infra = Infra(
        redis_url=redis_url.rsplit("/", 1)[0] + "/1",
        etcd_endpoints=[etcd_endpoint],
        kafka_bootstrap=kafka_bootstrap,
        database_url=f"sqlite+aiosqlite:///{data_dir}",
        mode="test",
        extra_env={"{PREFIX}BCRYPT_COST": "4"},
    )
    migrate("user", infra, infra_dir)
    user_port, gateway_port = free_port(), free_port()
    user = service_process("user", infra, user_port, infra_dir)
    # No static peers: the gateway finds the user service through etcd.
    gateway = gateway_process(infra, gateway_port, {}, infra_dir)
    user.start(timeout=60)
    try:
        gateway.start(timeout=60)
    except Exception:
        user.stop()
        raise
    yield RunningStack(f"http://127.0.0.1:{gateway_port}", user, gateway, infra_dir)
    gateway.stop()
    user.stop()


@pytest.fixture
async def client(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that behaves like the web front end's (fixed User-Agent)."""
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"User-Agent": USER_AGENT}, timeout=10
    ) as http:
        yield http

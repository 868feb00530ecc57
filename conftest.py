"""Shared pytest fixtures: real infrastructure started on free ports, torn down after.

- ``etcd_endpoint`` / ``kafka_bootstrap`` / ``redis_url``: one process each per test session,
  in a temporary directory, on free loopback ports. Redis runs with ACL users and its
  ``default`` user disabled; ``redis_url`` logs in as its administrator (``admin``), and
  ``redis_credentials`` holds the per-workload users a test can apply
  (``devstack.credentials.apply_redis_acl``).
- ``secure_etcd``: a second etcd, with authentication on (``root`` and one user per workload
  under :data:`SECURE_ETCD_PREFIX`, ``devstack.credentials.bootstrap_etcd``). The shared
  ``etcd_endpoint`` still runs without authentication: the suites that use it connect
  without credentials and will move to ``secure_etcd`` one by one (docs/security.md).
- ``mysql_url``: a fresh database on the MariaDB/MySQL server named by
  ``WEBOOK_TEST_MYSQL_URL`` (default ``mysql+asyncmy://root@127.0.0.1:3306``), created for this
  session and dropped after. If the server is unreachable, tests that need it fail, loudly.
- ``empty_database_url``: parametrised over a fresh SQLite file and the MariaDB database
  (services migrate it and empty their own tables: ``kit.migrations.migrated_and_emptied``).
- ``infra_dir``: the session's scratch directory (logs of every process started).

The infrastructure processes die with the test run even when it is killed (SIGKILL, a CI
timeout): they are started with ``die_with_parent``, so none is left holding a port.

A teardown that hangs ends the run with every thread's stack (``pytest_runtest_teardown``
below): pytest-timeout stops watching a test once it has failed, so a hang in the teardown
of a failed test would otherwise last until the CI job's own limit.

Every process defaults to ``prod`` mode (kit/config.py); the tests run in ``test`` mode,
set here for every settings prefix before any test module is imported (a test of the prod
checks passes ``mode`` itself or clears the variable).
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import TextIO

import pytest
import redis.asyncio as aioredis

from devstack.catalog import CATALOG
from devstack.credentials import (
    SecureEtcd,
    StackCredentials,
    stack_credentials,
    url_with_credential,
    write_redis_acl_file,
)
from devstack.credentials import (
    secure_etcd as start_secure_etcd,
)
from devstack.infra import (
    ManagedProcess,
    etcd_process,
    free_port,
    kafka_process,
    redis_process,
)

# The article service's fixtures for its peers' tests (article_address, author).
pytest_plugins = ["clients.tests.fixtures"]

TEST_MODE_PREFIXES = (
    "WEBOOK_",
    "WEBOOK_GATEWAY_",
    *(entry.env_prefix for entry in CATALOG),
    # Settings classes the kit's own tests define.
    "WEBOOK_DEMO_",
    "WEBOOK_KITTEST_",
)
for _prefix in TEST_MODE_PREFIXES:
    os.environ.setdefault(f"{_prefix}MODE", "test")

# Longer than any test's whole timeout: reached only by a teardown that never ends.
TEARDOWN_LIMIT_S = 900
_terminal: list[TextIO] = []


def pytest_configure(config: pytest.Config) -> None:
    """Keep a copy of the terminal's stderr (output capture is off while configuring)."""
    _terminal.append(os.fdopen(os.dup(2), "w"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``chaos`` (failure injection and whole-stack checks, minutes each) run
    only when asked for: ``make chaos`` (``-m chaos``); ``make test`` leaves them out to keep
    within its budget. CI runs both."""
    if "chaos" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("chaos") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Exit with all stacks on the terminal if this teardown outlasts ``TEARDOWN_LIMIT_S``."""
    faulthandler.dump_traceback_later(TEARDOWN_LIMIT_S, exit=True, file=_terminal[0])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def infra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch directory for this session's infrastructure data and logs."""
    return tmp_path_factory.mktemp("infra")


@pytest.fixture(scope="session")
def etcd_server(infra_dir: Path) -> Iterator[ManagedProcess]:
    """A real etcd for the session (tests that kill it must restart it via this handle)."""
    proc = etcd_process(infra_dir / "etcd-data", free_port(), free_port(), infra_dir)
    proc.die_with_parent = True
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def etcd_endpoint(etcd_server: ManagedProcess) -> str:
    """``host:port`` of the session's etcd client URL."""
    url = next(a for a in etcd_server.argv if a.startswith("--listen-client-urls="))
    return url.split("//", 1)[1]


SECURE_ETCD_PREFIX = "/webook-secure/services"


@pytest.fixture(scope="session")
def secure_etcd(infra_dir: Path) -> Iterator[SecureEtcd]:
    """An etcd of the session with authentication on (``root``, one user per workload)."""
    with start_secure_etcd(infra_dir / "secure-etcd", SECURE_ETCD_PREFIX) as running:
        yield running


@pytest.fixture(scope="session")
def kafka_server(infra_dir: Path) -> Iterator[ManagedProcess]:
    """A real Kafka-protocol broker (tansu, memory storage) for the session."""
    proc = kafka_process(free_port(), infra_dir)
    proc.die_with_parent = True
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: ManagedProcess) -> str:
    """``host:port`` bootstrap address of the session's broker."""
    url = next(a for a in kafka_server.argv if a.startswith("--listener-url="))
    return url.split("//", 1)[1]


@pytest.fixture(scope="session")
def redis_credentials(infra_dir: Path) -> StackCredentials:
    """The session Redis's administrator and per-workload users (``infra_dir``, 0600)."""
    return stack_credentials(infra_dir / "redis-credentials")


@pytest.fixture(scope="session")
def redis_server(infra_dir: Path, redis_credentials: StackCredentials) -> Iterator[ManagedProcess]:
    """A real, throwaway redis-server for the session; ``default`` disabled, ``admin`` on."""
    acl_file = write_redis_acl_file(infra_dir / "redis-users.acl", redis_credentials)
    proc = redis_process(free_port(), infra_dir, acl_file=acl_file)
    proc.die_with_parent = True
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: ManagedProcess, redis_credentials: StackCredentials) -> str:
    """``redis://`` URL of the session's Redis, logged in as its administrator."""
    port = redis_server.argv[redis_server.argv.index("--port") + 1]
    return url_with_credential(f"redis://127.0.0.1:{port}/0", redis_credentials.redis_admin)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on a clean database; flushed before the test."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.integration),
        pytest.param("mysql", marks=[pytest.mark.integration, pytest.mark.mysql]),
    ]
)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs a test twice: on a fresh SQLite file, and on the session's MariaDB database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A database created for this test session on the configured MariaDB/MySQL server."""
    from kit.sql import create_database, drop_database, mysql_test_server

    server = mysql_test_server()
    name = f"webook_test_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(create_database(server, name))
    yield url
    asyncio.run(drop_database(server, name))

"""Infrastructure without credentials refuses, and one workload's credentials stay its own.

- etcd (the session's ``secure_etcd``, authentication on): no login, no read or write; a
  service's user writes only under ``<prefix>/<its name>/`` — the fake user-service
  registration of test_fake_registration.py, made with the comment service's credentials,
  is refused by etcd itself; the gateway only reads.
- Redis (the session's, ``default`` disabled): no login, no command; a service's user
  touches only its own keys.
- MariaDB (``-m mysql``): the per-service users of the manifests' create-databases.sql,
  created under names of this test, each read only its own database.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aetcd
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.credentials import (
    Credential,
    SecureEtcd,
    StackCredentials,
    apply_redis_acl,
    url_with_credential,
)
from kit.registry import EtcdRegistry, EtcdRegistryConfig, ServiceInstance, instance_key
from kit.sql import mysql_test_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CREATE_DATABASES = REPO / "deploy/k8s/overlays/dev/create-databases.sql"


def _client(etcd: SecureEtcd, credential: Credential | None = None) -> aetcd.Client:
    host, _, port = etcd.endpoint.rpartition(":")
    if credential is None:
        return aetcd.Client(host, int(port), timeout=3)
    return aetcd.Client(
        host, int(port), username=credential.username, password=credential.password, timeout=3
    )


# --- etcd ----------------------------------------------------------------------------------


async def test_etcd_without_credentials_refuses_reads_and_writes(secure_etcd: SecureEtcd) -> None:
    key = f"{secure_etcd.registry_prefix}/user/anonymous".encode()
    async with _client(secure_etcd) as anonymous:
        with pytest.raises(aetcd.ClientError, match="user name is empty"):
            await anonymous.get_prefix(secure_etcd.registry_prefix.encode())
        with pytest.raises(aetcd.ClientError, match="user name is empty"):
            await anonymous.put(key, b"{}")
    async with _client(secure_etcd, secure_etcd.credentials.etcd_root) as root:
        assert await root.get(key) is None


async def test_a_wrong_password_is_refused(secure_etcd: SecureEtcd) -> None:
    impostor = Credential("user", "not-the-password")
    with pytest.raises(aetcd.ClientError, match="authentication failed"):
        async with _client(secure_etcd, impostor) as client:
            await client.get(b"x")


async def test_a_service_writes_its_own_prefix_only(secure_etcd: SecureEtcd) -> None:
    prefix = secure_etcd.registry_prefix
    run = uuid.uuid4().hex[:8]
    comment = secure_etcd.credentials.workload("comment")
    async with _client(secure_etcd, comment) as client:
        await client.put(f"{prefix}/comment/own-{run}".encode(), b"{}")
        # Discovery: every service's registrations are readable.
        await client.get_prefix(f"{prefix}/user/".encode())
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await client.put(f"{prefix}/user/fake-{run}".encode(), b"{}")
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await client.delete(f"{prefix}/user/real-{run}".encode())
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await client.put(f"/elsewhere/{run}".encode(), b"{}")
        await client.delete(f"{prefix}/comment/own-{run}".encode())


async def test_the_gateway_only_reads(secure_etcd: SecureEtcd) -> None:
    prefix = secure_etcd.registry_prefix
    async with _client(secure_etcd, secure_etcd.credentials.workload("gateway")) as client:
        await client.get_prefix(f"{prefix}/user/".encode())
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await client.put(f"{prefix}/gateway/x".encode(), b"{}")


async def test_a_fake_registration_with_another_services_credentials_is_refused(
    secure_etcd: SecureEtcd,
) -> None:
    """test_fake_registration.py's intruder, holding the comment service's etcd login."""
    comment = secure_etcd.credentials.workload("comment")
    fake = ServiceInstance("user", f"fake-{uuid.uuid4().hex[:8]}", "127.0.0.1:1", weight=50)
    config = EtcdRegistryConfig(
        endpoint=secure_etcd.endpoint,
        prefix=secure_etcd.registry_prefix,
        username=comment.username,
        password=comment.password,
        register_timeout=1.0,
    )
    async with EtcdRegistry(config) as registry:
        await registry.register(fake)  # returns after register_timeout, retrying in vain
        async with _client(secure_etcd, secure_etcd.credentials.etcd_root) as root:
            assert await root.get(instance_key(secure_etcd.registry_prefix, fake).encode()) is None
        discovery = await registry.discover("user")
        assert fake.instance_id not in {i.instance_id for i in discovery.instances()}


# --- Redis ---------------------------------------------------------------------------------


@pytest.fixture
async def workload_redis(
    redis_url: str, redis_credentials: StackCredentials
) -> AsyncIterator[dict[str, aioredis.Redis]]:
    """Clients of the session Redis logged in as the user and the comment service."""
    await asyncio.to_thread(apply_redis_acl, redis_url, redis_credentials)
    clients = {
        name: aioredis.Redis.from_url(
            url_with_credential(redis_url, redis_credentials.workload(name))
        )
        for name in ("user", "comment")
    }
    yield clients
    for client in clients.values():
        await client.aclose()


async def test_redis_without_credentials_refuses(redis_url: str) -> None:
    anonymous = aioredis.Redis.from_url(re.sub(r"//[^@]*@", "//", redis_url))
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await anonymous.get("webook:user:profile:1")
    finally:
        await anonymous.aclose()


async def test_a_services_redis_user_touches_its_own_keys_only(
    workload_redis: dict[str, aioredis.Redis],
) -> None:
    run = uuid.uuid4().hex[:8]
    user, comment = workload_redis["user"], workload_redis["comment"]
    await user.set(f"webook:user:profile:{run}", "me", ex=60)
    await comment.set(f"webook:comment:first_page:{run}", "page", ex=60)
    with pytest.raises(redis.exceptions.NoPermissionError):
        await comment.get(f"webook:user:profile:{run}")
    with pytest.raises(redis.exceptions.NoPermissionError):
        await user.delete(f"webook:comment:first_page:{run}")
    with pytest.raises(redis.exceptions.NoPermissionError):
        await user.flushdb()
    assert await user.get(f"webook:user:profile:{run}") == b"me"


# --- MariaDB -------------------------------------------------------------------------------


def _renamed_sql(tag: str) -> list[str]:
    """create-databases.sql's statements, with every ``webook_`` name made this run's own."""
    sql = CREATE_DATABASES.read_text()
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
    return [s.replace("webook_", f"webook_{tag}_") for s in statements]


async def _execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
def mysql_users() -> Iterator[tuple[str, str]]:
    """The manifests' databases and users created under this test's names; dropped after."""
    server = mysql_test_server() + "/"
    tag = uuid.uuid4().hex[:6]
    statements = _renamed_sql(tag)
    names = sorted(set(re.findall(rf"webook_{tag}_[a-z]+", " ".join(statements))))
    try:
        asyncio.run(_execute(server, *statements))
        yield server, tag
    finally:
        asyncio.run(
            _execute(
                server,
                *(f"DROP USER IF EXISTS '{name}'@'%'" for name in names),
                *(f"DROP DATABASE IF EXISTS `{name}`" for name in names),
            )
        )


def _password(statements: list[str], user: str) -> str:
    for statement in statements:
        found = re.search(rf"CREATE USER .*'{user}'@'%' IDENTIFIED BY '([^']+)'", statement)
        if found:
            return found.group(1)
    raise AssertionError(f"no CREATE USER for {user}")


@pytest.mark.mysql
async def test_a_services_database_user_reads_its_own_database_only(
    mysql_users: tuple[str, str],
) -> None:
    server, tag = mysql_users
    host = server.split("@", 1)[1].rstrip("/")
    user, other = f"webook_{tag}_user", f"webook_{tag}_comment"
    password = _password(_renamed_sql(tag), user)
    as_user = f"mysql+asyncmy://{user}:{password}@{host}/{user}"

    await _execute(as_user, "CREATE TABLE t (id INT PRIMARY KEY)", "SELECT * FROM t")
    with pytest.raises(DBAPIError, match="denied"):
        await _execute(f"mysql+asyncmy://{user}:{password}@{host}/{other}", "SELECT 1")
    with pytest.raises(DBAPIError, match="denied"):
        await _execute(as_user, f"CREATE TABLE `{other}`.t (id INT PRIMARY KEY)")
    with pytest.raises(DBAPIError, match="denied"):
        await _execute(as_user, "SELECT * FROM mysql.user")

"""The stack's credentials: made once, private, reused, and handed to each process; the
etcd roles of the live settings (each workload reads its own, only the operator writes)."""

from __future__ import annotations

import stat
from pathlib import Path

import aetcd
import pytest

from devstack.credentials import (
    CREDENTIALS_FILE,
    Credential,
    SecureEtcd,
    config_operator_prefixes,
    etcd_grants,
    redis_acl_rules,
    stack_credentials,
    url_with_credential,
)
from devstack.suite import Infra, service_env
from kit.liveconfig import ConfigStore


def test_credentials_are_private_and_reused(tmp_path: Path) -> None:
    first = stack_credentials(tmp_path, ["user", "gateway"])
    path = tmp_path / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = stack_credentials(tmp_path, ["user", "gateway", "comment"])
    assert again.workload("user") == first.workload("user")
    assert again.etcd_root == first.etcd_root
    assert again.workload("comment").password not in {first.workload("user").password}
    assert first.workload("user").password not in repr(first)


def test_each_service_writes_its_own_prefix_and_the_gateway_none() -> None:
    grants = etcd_grants(["user", "gateway"], "/webook/services")
    assert grants["user"].read_prefix == "/webook/services/"
    assert grants["user"].write_prefix == "/webook/services/user/"
    assert grants["gateway"].write_prefix is None


def test_redis_default_user_is_off_and_services_keep_to_their_keys(tmp_path: Path) -> None:
    rules = redis_acl_rules(stack_credentials(tmp_path, ["article"]))
    assert rules["default"].startswith("off ")
    assert "~webook:article:*" in rules["article"]
    assert "&webook:article:*" in rules["article"]
    assert "~*" not in rules["article"]


def test_a_process_gets_its_own_logins(tmp_path: Path) -> None:
    credentials = stack_credentials(tmp_path, ["user", "gateway"])
    infra = Infra(
        redis_url="redis://127.0.0.1:6379/3",
        etcd_endpoints=["127.0.0.1:2379"],
        kafka_bootstrap="127.0.0.1:9092",
        database_url=f"sqlite+aiosqlite:///{tmp_path}",
        pki=None,
        credentials=credentials,
    )
    env = service_env("user", infra, 50051, {})
    user = credentials.workload("user")
    assert env["WEBOOK_USER_ETCD_USERNAME"] == "user"
    assert env["WEBOOK_USER_ETCD_PASSWORD"] == user.password
    assert env["WEBOOK_USER_REDIS_URL"] == url_with_credential(infra.redis_url, user)
    assert env["WEBOOK_USER_REDIS_URL"].startswith("redis://user:")
    assert env["WEBOOK_USER_REDIS_URL"].endswith("@127.0.0.1:6379/3")


def test_url_with_credential_replaces_a_login_and_quotes() -> None:
    url = url_with_credential("redis://admin:x@h:1/0", Credential("a", "p/w@"))
    assert url == "redis://a:p%2Fw%40@h:1/0"


def test_workloads_read_their_own_settings_and_only_the_operator_writes(tmp_path: Path) -> None:
    grants = etcd_grants(["user", "gateway"], "/webook/services", ["test"])
    assert grants["user"].config_prefixes == ("/webook/config/test/user/",)
    assert grants["gateway"].config_prefixes == ("/webook/config/test/gateway/",)
    assert config_operator_prefixes() == ("/webook/config/", "/webook/config-history/")
    credentials = stack_credentials(tmp_path, ["user"])
    assert credentials.config_operator.username == "config-operator"
    assert stack_credentials(tmp_path, ["user"]).config_operator == credentials.config_operator


def _etcd(secure: SecureEtcd, credential: Credential) -> aetcd.Client:
    host, _, port = secure.endpoint.rpartition(":")
    return aetcd.Client(
        host, int(port), username=credential.username, password=credential.password, timeout=5
    )


@pytest.mark.integration
async def test_etcd_roles_guard_the_configuration(secure_etcd: SecureEtcd) -> None:
    """On a real etcd with authentication on (bootstrap_etcd's users and roles)."""
    credentials = secure_etcd.credentials
    env = "test"
    own_key = f"/webook/config/{env}/user/log_level".encode()
    other_key = f"/webook/config/{env}/comment/log_level".encode()
    operator = credentials.config_operator
    async with ConfigStore.connect(
        [secure_etcd.endpoint], username=operator.username, password=operator.password
    ) as store:
        record = await store.set(env, "user", {"log_level": "DEBUG"}, who="t", why="roles")
        await store.set(env, "comment", {"log_level": "DEBUG"}, who="t", why="roles")
        assert (await store.get(env, "user"))[0]["log_level"] == "DEBUG"
    async with _etcd(secure_etcd, credentials.workload("user")) as user:
        assert (await user.get(own_key)) is not None  # reads its own settings
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await user.put(own_key, b'"ERROR"')  # but cannot change them
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await user.get(other_key)  # nor read another service's
        history = f"/webook/config-history/{env}/user/{record.version:020d}".encode()
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await user.put(history, b"{}")
    async with _etcd(secure_etcd, credentials.workload("gateway")) as gateway:
        with pytest.raises(aetcd.ClientError, match="permission denied"):
            await gateway.get(own_key)

"""End-to-end fixtures: every service but search, the WeChat emulators and the gateway.

The services are those of :mod:`devstack.catalog` that exist, started in parallel as
``make run`` starts them (:func:`devstack.suite.start_services`), except search, which
``test_search.py`` runs itself because it stops it and rebuilds its index. As in production,
every process logs in to the infrastructure as itself: the stack has an etcd with
authentication on and a Redis with one ACL user per workload of its own
(:mod:`devstack.credentials`), the session's broker (root conftest), and SQLite databases
in a temporary directory, which also holds the sms service's local SMS log (login codes are
read from it). The gateway discovers the services through etcd and logs in with WeChat
through the emulator. The payment service pays through the WeChat Pay emulator (keys in the
data directory), which posts its notifications to the gateway's ``/pay/callback`` and
retries a failed one after a hundredth of WeChat Pay's pauses. Every gRPC hop runs over
mutual TLS, with a CA and certificates made in the data directory
(:func:`devstack.tls.stack_pki`). Logs of every process land in the session's infra dir.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.credentials import SecureEtcd, acl_redis, secure_etcd
from devstack.infra import ManagedProcess, free_port, private_broker, stop_all
from devstack.suite import (
    PAY_CALLBACK_PATH,
    Infra,
    available_services,
    gateway_process,
    service_process,
    start_services,
    wechat_emulator_process,
    wechatpay_emulator_process,
)
from devstack.tls import stack_pki

USER_AGENT = "webook-e2e/1.0"
PASSWORD = "hello#world123"
REGISTRY_PREFIX = "/webook-e2e/services"
# Short, so that a test can log in twice with one phone; the 60 s default is tested in
# services/sms and, through a fake, in gateway/tests.
SMS_RESEND_INTERVAL_S = 0.5


@dataclass
class RunningStack:
    """Addresses and handles of the processes under test."""

    base_url: str
    user: ManagedProcess
    gateway: ManagedProcess
    log_dir: Path
    sms: ManagedProcess
    wechat: ManagedProcess
    wechat_base: str
    wechatpay: ManagedProcess
    # The WeChat Pay emulator: ``POST {wechatpay_base}/emulator/pay`` pays an order.
    wechatpay_base: str
    # Where the sms service's local provider writes every message (JSON lines).
    sms_log: Path
    # The configuration the processes were started with (to start more of them).
    infra: Infra
    # Every service instance by service name.
    services: dict[str, list[ManagedProcess]]


@pytest.fixture(scope="session")
def e2e_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEtcd]:
    """The stack's etcd, authentication on, its users the workloads'."""
    with secure_etcd(tmp_path_factory.mktemp("e2e-etcd"), REGISTRY_PREFIX) as running:
        yield running


@pytest.fixture(scope="session")
def e2e_redis(tmp_path_factory: pytest.TempPathFactory, e2e_etcd: SecureEtcd) -> Iterator[str]:
    """The stack's Redis, one ACL user per workload; its URL without a user."""
    with acl_redis(tmp_path_factory.mktemp("e2e-redis"), e2e_etcd.credentials) as url:
        yield url


@pytest.fixture(scope="session")
def e2e_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stack's own broker (``devstack.infra.private_broker``): no other test's records."""
    with private_broker(tmp_path_factory.mktemp("e2e-broker")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    infra_dir: Path,
    e2e_etcd: SecureEtcd,
    e2e_redis: str,
    e2e_kafka: str,
) -> Iterator[RunningStack]:
    """Every service that exists, the WeChat emulator and the gateway, once per e2e session."""
    data_dir = tmp_path_factory.mktemp("e2e-data")
    sms_log = data_dir / "sms.log"
    gateway_port, wechat_port, wechatpay_port = free_port(), free_port(), free_port()
    wechatpay_base = f"http://127.0.0.1:{wechatpay_port}"
    infra = Infra(
        redis_url=e2e_redis,
        etcd_endpoints=[e2e_etcd.endpoint],
        kafka_bootstrap=e2e_kafka,
        database_url=f"sqlite+aiosqlite:///{data_dir}",
        mode="test",
        extra_env={
            "{PREFIX}REGISTRY_PREFIX": REGISTRY_PREFIX,
            "{PREFIX}BCRYPT_COST": "4",
            "{PREFIX}CODE__RESEND_INTERVAL_S": str(SMS_RESEND_INTERVAL_S),
            # Short consumer-group timings (the broker takes half the session timeout to
            # form a group), and small read batches so counts show up quickly.
            "{PREFIX}KAFKA_SESSION_TIMEOUT_MS": "3000",
            "{PREFIX}KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "{PREFIX}READ_BATCH_WAIT_SECONDS": "0.2",
            # Every e2e request comes from 127.0.0.1: per-IP limits would throttle the suite.
            # tests/e2e/test_edge.py runs gateways with rate limits of their own.
            "WEBOOK_GATEWAY_EDGE": json.dumps({"rate_limits": []}),
            # An author with two followers is big in tests/e2e/test_feed_tags.py.
            "WEBOOK_FEED_BIG_AUTHOR_FOLLOWERS": "1",
        },
        sms_log_file=str(sms_log),
        pki=stack_pki(data_dir),
        credentials=e2e_etcd.credentials,
        wechatpay_keys_dir=str(data_dir / "wechatpay"),
        wechatpay_base=wechatpay_base,
        pay_notify_url=f"http://127.0.0.1:{gateway_port}{PAY_CALLBACK_PATH}",
    )
    names = [name for name in available_services() if name != "search"]
    wechat_base = f"http://127.0.0.1:{wechat_port}"
    wechat = wechat_emulator_process(wechat_port, infra_dir)
    wechatpay = wechatpay_emulator_process(
        wechatpay_port, data_dir / "wechatpay", infra_dir, retry_scale=0.01
    )
    # No static peers: the gateway finds the services through etcd.
    gateway = gateway_process(infra, gateway_port, {}, infra_dir, wechat_base=wechat_base)
    services = start_services(
        names,
        infra,
        infra_dir,
        lambda name, replica: service_process(name, infra, free_port(), infra_dir),
        also=[wechat, wechatpay, gateway],
        timeout=120,
    )
    try:
        yield RunningStack(
            base_url=f"http://127.0.0.1:{gateway_port}",
            user=services["user"][0],
            gateway=gateway,
            log_dir=infra_dir,
            sms=services["sms"][0],
            wechat=wechat,
            wechat_base=wechat_base,
            wechatpay=wechatpay,
            wechatpay_base=wechatpay_base,
            sms_log=sms_log,
            infra=infra,
            services=services,
        )
    finally:
        stop_all([gateway, wechat, wechatpay, *(p for group in services.values() for p in group)])


@pytest.fixture
async def client(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that behaves like the web front end's (fixed User-Agent)."""
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"User-Agent": USER_AGENT}, timeout=10
    ) as http:
        yield http


@pytest.fixture(scope="module")
def search_process(stack: RunningStack) -> Iterator[ManagedProcess]:
    """A search service in the session's stack (its index in the stack's data directory);
    search is not part of ``stack``, since some tests stop it and rebuild its index."""
    proc = service_process("search", stack.infra, free_port(), stack.log_dir)
    proc.start(timeout=60)
    yield proc
    proc.stop()


async def signed_up(client: httpx.AsyncClient, prefix: str) -> dict[str, str]:
    """Sign up and log in a new user (``<prefix>-<random>@example.com``); its headers."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
    assert (await client.post("/users/signup", json=body)).json()["code"] == 0
    login = await client.post("/users/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.headers['x-jwt-token']}"}


@dataclass(frozen=True)
class User:
    """A signed-up, logged-in user: its id and the headers of its requests."""

    uid: int
    headers: dict[str, str]


async def logged_in(client: httpx.AsyncClient, prefix: str) -> User:
    """Sign up and log in a new user (as :func:`signed_up`); its id (a claim of the access
    token: the payload is signed, not secret) and headers."""
    headers = await signed_up(client, prefix)
    payload = headers["Authorization"].removeprefix("Bearer ").split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return User(int(claims["uid"]), headers)

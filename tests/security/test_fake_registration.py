"""A fake user service registered in etcd never receives a request body.

The intruder here can write to the registry (it holds etcd's root credential; with a
workload's credential etcd refuses the write, see test_infra_credentials) and runs a server
that would take every login, passwords included, and answer with whatever user id it likes.
The gateway's client checks that the server's certificate names the user service and was
issued by the stack's CA, so the handshake fails before any request is sent: the fake's
handlers never run, and logins keep being served by the real user service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from kit.registry import EtcdRegistry, EtcdRegistryConfig, ServiceInstance
from kit.security.pki import cert_pem, create_ca, issue_workload, key_pem
from tests.security.conftest import USER_AGENT, SecureStack

pytestmark = pytest.mark.integration

PASSWORD = "hello#world123"
DEADLINE_S = 60.0
# Logins in a row that must succeed once the fake has been ejected.
STREAK = 5


class Recorder(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in the stubs
    """The intruder's server: takes any method of any service and records the request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        method = details.method

        async def take(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            self.requests.append((method, request))
            # An empty message: the fields of a "successful" answer are all defaults.
            return b""

        return grpc.unary_unary_rpc_method_handler(take)


def _foreign_credentials() -> grpc.ServerCredentials:
    """A certificate naming the user service, from a CA of the intruder's own."""
    ca_cert, ca_key = create_ca(valid_for=dt.timedelta(days=2))
    cert, key = issue_workload("user", ca_cert, ca_key)
    return grpc.ssl_server_credentials([(key_pem(key), cert_pem(cert))])


def _stolen_credentials(stack: SecureStack) -> grpc.ServerCredentials:
    """The stack's own certificate of another workload (a compromised comment pod)."""
    cert_file, key_file = stack.pki.files("comment")
    return grpc.ssl_server_credentials([(key_file.read_bytes(), cert_file.read_bytes())])


@pytest.fixture
async def registry(secure_stack: SecureStack) -> AsyncIterator[EtcdRegistry]:
    root = secure_stack.etcd.credentials.etcd_root
    config = EtcdRegistryConfig(
        endpoint=secure_stack.etcd.endpoint,
        prefix=secure_stack.registry_prefix,
        username=root.username,
        password=root.password,
    )
    async with EtcdRegistry(config) as registry:
        yield registry


async def _login_streak(base_url: str) -> list[int]:
    """Sign up one user, then log in until ``STREAK`` logins in a row succeed."""
    email = f"sec-{uuid.uuid4().hex[:10]}@example.com"
    statuses: list[int] = []
    async with httpx.AsyncClient(
        base_url=base_url, headers={"User-Agent": USER_AGENT}, timeout=15
    ) as http:
        deadline = time.monotonic() + DEADLINE_S
        signed_up = False
        while time.monotonic() < deadline:
            if not signed_up:
                body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
                answer = await http.post("/users/signup", json=body)
                signed_up = answer.status_code == 200 and answer.json().get("code") == 0
                statuses.append(answer.status_code)
                continue
            answer = await http.post("/users/login", json={"email": email, "password": PASSWORD})
            statuses.append(answer.status_code if "x-jwt-token" in answer.headers else -1)
            if statuses[-STREAK:] == [200] * STREAK:
                return statuses
            await asyncio.sleep(0.05)
    raise AssertionError(f"logins never succeeded {STREAK} times in a row: {statuses}")


@pytest.mark.parametrize("credentials", ["foreign-ca", "stolen-certificate"])
async def test_a_fake_user_service_gets_no_request(
    secure_stack: SecureStack, registry: EtcdRegistry, credentials: str
) -> None:
    recorder = Recorder()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((recorder,))
    server_credentials = (
        _foreign_credentials() if credentials == "foreign-ca" else _stolen_credentials(secure_stack)
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials)
    await server.start()
    # Heavier than the real instance, so the balancer would send it most logins.
    fake = ServiceInstance("user", f"fake-{credentials}", f"127.0.0.1:{port}", weight=50)
    try:
        await registry.register(fake)
        await _until_known(secure_stack, fake.addr)
        statuses = await _login_streak(secure_stack.base_url)
        picked = _picks(secure_stack, fake.addr)
    finally:
        await registry.deregister(fake)
        await server.stop(None)
    assert recorder.requests == [], "the fake user service was sent a request"
    assert statuses[-STREAK:] == [200] * STREAK
    # The gateway did pick the fake (it was a real candidate): the handshake failed each time.
    assert picked >= 1


async def _until_known(stack: SecureStack, endpoint: str) -> None:
    """Wait until the gateway's balancer has the endpoint (its weight gauge appears)."""
    wanted = f'webook_balancer_endpoint_effective_weight{{endpoint="{endpoint}",service="user"}}'
    deadline = time.monotonic() + DEADLINE_S
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=5) as http:
        while wanted not in (await http.get("/metrics")).text:
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway never discovered {endpoint}")
            await asyncio.sleep(0.05)


def _picks(stack: SecureStack, endpoint: str) -> float:
    """``webook_balancer_picks_total`` of the user service's ``endpoint`` at the gateway."""
    text = httpx.get(f"{stack.base_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("webook_balancer_picks_total{")
        and 'service="user"' in line
        and f'endpoint="{endpoint}"' in line
    )

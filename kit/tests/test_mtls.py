"""Mutual TLS in the process kit: ServiceRunner serving over TLS (and its plaintext probe
port), ServiceClients dialling over TLS, failing over from servers whose certificate is not
the service's, and re-opening its channels when the client certificate rotates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit.balancer import BalancedChannel, BalancerConfig, Health
from kit.balancer.tests.servers import ReportingUserService
from kit.config import GrpcServiceSettings
from kit.grpcx.client import ServiceClients
from kit.grpcx.idempotency import declared_idempotent
from kit.grpcx.server import ServiceRunner
from kit.registry.tests.helpers import eventually
from kit.security.pki import Pki, ensure_local_pki, load_certificate, reissue
from kit.security.tests.helpers import (
    WHOAMI,
    IdentityService,
    free_port,
    mtls_channel,
    start_tls_server,
    workload_files,
)
from kit.security.tls import ClientTls, TlsMaterialError
from webook.user.v1 import user_pb2, user_pb2_grpc

HEALTH_REQUEST = health_pb2.HealthCheckRequest(service="")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """The local CA with certificates for "user", "article" and "gateway"."""
    return ensure_local_pki(tmp_path / "pki", ["user", "article", "gateway"])


def _tls_settings(pki: Pki, name: str, **extra: Any) -> dict[str, Any]:
    cert, key = pki.files(name)
    return {
        "tls_cert_file": str(cert),
        "tls_key_file": str(key),
        "tls_ca_file": str(pki.ca_file),
        **extra,
    }


@pytest.fixture
async def runner(pki: Pki) -> AsyncIterator[ServiceRunner]:
    """The "user" service runner with mutual TLS and a plaintext probe port, started."""
    settings = GrpcServiceSettings(
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        grpc_probe_port=free_port(),
        **_tls_settings(pki, "user"),
    )
    service = ServiceRunner("user", settings, registration=None)
    await service.start()
    yield service
    await service.stop()


async def _health(
    channel: grpc.aio.Channel,
) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(HEALTH_REQUEST, timeout=10)
        return response.status


async def test_the_runner_serves_health_over_mutual_tls(pki: Pki, runner: ServiceRunner) -> None:
    assert runner.tls
    assert runner.server_tls is not None
    channel = mtls_channel(runner.address, "user", workload_files(pki, "gateway"))
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_the_runner_refuses_plaintext_clients_on_its_service_port(
    runner: ServiceRunner,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _health(grpc.aio.insecure_channel(runner.address))
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_the_probe_port_answers_health_in_plaintext(runner: ServiceRunner) -> None:
    assert runner.probe_port == runner.settings.grpc_probe_port
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runner.probe_port}")
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_a_runner_without_tls_settings_serves_plaintext() -> None:
    settings = GrpcServiceSettings(grpc_port=0, metrics_port=-1, shutdown_grace=0.5)
    plain = ServiceRunner("user", settings, registration=None)
    await plain.start()
    try:
        assert not plain.tls
        assert plain.probe_port == 0
        assert await _health(grpc.aio.insecure_channel(plain.address)) == (
            health_pb2.HealthCheckResponse.SERVING
        )
    finally:
        await plain.stop()


async def test_unusable_certificate_files_fail_the_start(pki: Pki, tmp_path: Path) -> None:
    settings = GrpcServiceSettings(
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        **_tls_settings(pki, "user", tls_key_file=str(tmp_path / "missing-key.pem")),
    )
    service = ServiceRunner("user", settings, registration=None)
    with pytest.raises(TlsMaterialError):
        await service.start()
    assert service.port == 0


async def test_calls_fail_over_from_a_server_that_is_not_the_service(pki: Pki) -> None:
    # "a-impostor" is registered as a user instance but holds article's certificate: the
    # handshake fails, the balancer ejects it, and no request ever reaches its handler.
    impostor, genuine = ReportingUserService("a-impostor"), ReportingUserService("b-user")
    bad, _, bad_addr = await start_tls_server(impostor.handler(), workload_files(pki, "article"))
    good, _, good_addr = await start_tls_server(genuine.handler(), workload_files(pki, "user"))
    clients = ServiceClients(
        registry=None,
        peers={"user": f"{bad_addr},{good_addr}"},
        balancer=BalancerConfig(
            is_idempotent=declared_idempotent, eject_after_failures=2, ejection_seconds=60
        ),
        tls=ClientTls(workload_files(pki, "gateway")),
    )
    try:
        channel = await clients.channel("user")
        stub = user_pb2_grpc.UserServiceStub(channel)
        for i in range(20):
            response = await stub.Profile(user_pb2.ProfileRequest(id=i), timeout=10)
            assert response.user.nickname == "b-user"
        assert isinstance(channel, BalancedChannel)
        endpoints = {e.instance.addr: e for e in channel.endpoints()}
        assert endpoints[bad_addr].health is Health.EJECTED
        assert endpoints[good_addr].health is Health.HEALTHY
    finally:
        await clients.close()
        await bad.stop(None)
        await good.stop(None)
    assert sum(impostor.calls.values()) == 0
    assert genuine.calls["Profile"] == 20


async def test_clients_reopen_their_channels_with_a_rotated_certificate(pki: Pki) -> None:
    identity = IdentityService()
    server, _, addr = await start_tls_server(identity.handler(), workload_files(pki, "user"))
    settings = GrpcServiceSettings(
        peers={"user": addr}, **_tls_settings(pki, "gateway", tls_reload_seconds=0.05)
    )
    clients = ServiceClients.from_settings(settings)
    tls = clients.tls
    assert tls is not None
    try:
        whoami = (await clients.channel("user")).unary_unary(WHOAMI, None, None)
        first = json.loads(await whoami(b"", timeout=10))
        assert first == {
            "peer": "gateway",
            "serial": load_certificate(pki.files("gateway")[0]).serial_number,
        }
        assert tls.watching

        rotated = reissue(pki, "gateway")
        await eventually(lambda: tls.generation == 1, 30, "the client certificate reloaded")

        after = json.loads(await whoami(b"", timeout=10))
        assert after == {"peer": "gateway", "serial": rotated.serial_number}
    finally:
        await clients.close()
        await server.stop(None)
    assert not tls.watching
    assert identity.calls == 2

"""Who may call what, on real ``grpc.aio`` servers over mutual TLS.

A server hosts the real ``webook.user.v1.UserService`` (a fake servicer that records what
ran), the health service and reflection behind :class:`GovernedServerInterceptor` with an
:class:`Authorizer`; clients present certificates of a throw-away CA naming their workload
(``spiffe://webook/<name>``). The server also listens in plaintext, as the probe port does.
Checked: a declared caller is admitted; any other workload, or no certificate, is refused
with PERMISSION_DENIED before the handler and before the rate limiter, counted and logged;
an ``acts_for_user`` method admits only the user asserters whatever its callers list says;
undeclared methods are refused; health answers anyone, reflection any workload.
"""

from __future__ import annotations

import datetime
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from kit.governance import (
    USER_ASSERTERS,
    Authorizer,
    AuthzMetrics,
    GovernanceConfig,
    GovernanceMetrics,
    GovernedServerInterceptor,
    MethodPolicy,
    RateLimit,
    RateLimitConfig,
    SheddingConfig,
    declared_policy,
)
from kit.governance.tests.support import ManualClock, ScriptedUserService
from kit.security.pki import cert_pem, create_ca, issue_workload, key_pem
from webook.user.v1 import user_pb2, user_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]
USER_SERVICE = user_pb2.DESCRIPTOR.services_by_name["UserService"]
SERVICE_NAME = USER_SERVICE.full_name
LIST_USERS = f"/{SERVICE_NAME}/ListUsers"
UPDATE_INFO = f"/{SERVICE_NAME}/UpdateNonSensitiveInfo"
BARE_CALL = "/authz.test.v1.Bare/Call"


class CertificateAuthority:
    """A throw-away CA issuing workload certificates as the mesh's CA does (kit.security.pki)."""

    def __init__(self) -> None:
        self._cert, self._key = create_ca(valid_for=datetime.timedelta(days=1))
        self.pem = cert_pem(self._cert)
        self._issued: dict[str, tuple[bytes, bytes]] = {}

    def issue(self, workload: str) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM) naming ``workload`` by URI and DNS SAN."""
        if workload not in self._issued:
            cert, key = issue_workload(
                workload, self._cert, self._key, valid_for=datetime.timedelta(hours=1)
            )
            self._issued[workload] = (key_pem(key), cert_pem(cert))
        return self._issued[workload]


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


class RecordingUserService(ScriptedUserService):
    """Answers the methods the tests call and records each one that ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[str] = []

    async def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.ListUsersResponse:
        self.ran.append("ListUsers")
        return user_pb2.ListUsersResponse(users=[user_pb2.User(id=1, email="a@b.c")])

    async def UpdateNonSensitiveInfo(
        self,
        request: user_pb2.UpdateNonSensitiveInfoRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> user_pb2.UpdateNonSensitiveInfoResponse:
        self.ran.append("UpdateNonSensitiveInfo")
        return user_pb2.UpdateNonSensitiveInfoResponse()

    async def Login(
        self, request: user_pb2.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.LoginResponse:
        self.ran.append("Login")
        return user_pb2.LoginResponse()


@dataclass
class Running:
    """A started server: its mutual-TLS and plaintext addresses, what ran, what was counted."""

    tls_address: str
    plain_address: str
    servicer: RecordingUserService
    registry: CollectorRegistry
    bare_calls: list[bytes] = field(default_factory=list)

    def denied(self, method: str, caller: str, service: str = SERVICE_NAME) -> float:
        labels = {"service": service, "method": method, "caller": caller}
        return self.registry.get_sample_value("webook_grpc_denied_total", labels) or 0.0

    def handled(self, method: str, code: str) -> float:
        labels = {"service": SERVICE_NAME, "method": method, "code": code}
        return self.registry.get_sample_value("webook_grpc_server_handled_total", labels) or 0.0


MakeAuthorizer = Callable[[AuthzMetrics], Authorizer]


class Serve(Protocol):
    """The ``serve`` fixture: a started server checking callers with ``authorizer``."""

    async def __call__(
        self,
        authorizer: MakeAuthorizer,
        config: GovernanceConfig | None = None,
        clock: ManualClock | None = None,
    ) -> Running: ...


def _raw(data: bytes) -> bytes:
    return data


def bare_pool() -> DescriptorPool:
    """A pool holding only ``authz.test.v1.Bare``, whose ``Call`` declares no callers."""
    file = descriptor_pb2.FileDescriptorProto(
        name="authz_test_bare.proto", package="authz.test.v1", syntax="proto3"
    )
    file.message_type.add(name="Empty")
    service = file.service.add(name="Bare")
    service.method.add(
        name="Call", input_type=".authz.test.v1.Empty", output_type=".authz.test.v1.Empty"
    )
    pool = DescriptorPool()
    pool.Add(file)
    return pool


@pytest.fixture
async def serve(ca: CertificateAuthority) -> AsyncIterator[Serve]:
    """Starts a governed server as workload ``user``; stops it after the test."""
    servers: list[grpc.aio.Server] = []

    async def start(
        authorizer: MakeAuthorizer,
        config: GovernanceConfig | None = None,
        clock: ManualClock | None = None,
    ) -> Running:
        registry = CollectorRegistry()
        governor = GovernedServerInterceptor(
            config or GovernanceConfig(shedding=SheddingConfig(enabled=False), tracing=False),
            metrics=GovernanceMetrics(registry),
            authorizer=authorizer(AuthzMetrics(registry)),
            clock=clock or time.monotonic,
        )
        server = grpc.aio.server(interceptors=[governor])
        servicer = RecordingUserService()
        user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)
        # grpc_health exposes its asyncio servicer as health.aio without re-exporting it.
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # type: ignore[attr-defined]
        reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME), server)
        running = Running("", "", servicer, registry)

        async def bare(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            running.bare_calls.append(request)
            return b""

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "authz.test.v1.Bare", {"Call": grpc.unary_unary_rpc_method_handler(bare)}
                ),
            )
        )
        key, cert = ca.issue("user")
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca.pem, require_client_auth=True
        )
        running.tls_address = f"127.0.0.1:{server.add_secure_port('127.0.0.1:0', credentials)}"
        running.plain_address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        servers.append(server)
        return running

    yield start
    for server in servers:
        await server.stop(None)


Connect = Callable[[str, "str | None"], grpc.aio.Channel]


@pytest.fixture
async def connect(ca: CertificateAuthority) -> AsyncIterator[Connect]:
    """Channels to a server as a workload (its certificate), or in plaintext (None)."""
    channels: list[grpc.aio.Channel] = []

    def open_(address: str, workload: str | None) -> grpc.aio.Channel:
        if workload is None:
            channel = grpc.aio.insecure_channel(address)
        else:
            key, cert = ca.issue(workload)
            channel = grpc.aio.secure_channel(
                address,
                grpc.ssl_channel_credentials(ca.pem, key, cert),
                options=[("grpc.ssl_target_name_override", "user.webook.internal")],
            )
        channels.append(channel)
        return channel

    yield open_
    for channel in channels:
        await channel.close(None)


def declared(metrics: AuthzMetrics) -> Authorizer:
    return Authorizer.for_services([SERVICE_NAME], metrics=metrics)


async def list_users(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError | None:
    try:
        await user_pb2_grpc.UserServiceStub(channel).ListUsers(
            user_pb2.ListUsersRequest(limit=10), timeout=30
        )
    except grpc.aio.AioRpcError as exc:
        return exc
    return None


async def test_the_declared_caller_is_admitted(serve: Serve, connect: Connect) -> None:
    server = await serve(declared)
    reply = await user_pb2_grpc.UserServiceStub(connect(server.tls_address, "search")).ListUsers(
        user_pb2.ListUsersRequest(limit=10), timeout=30
    )
    assert [user.email for user in reply.users] == ["a@b.c"]
    assert server.servicer.ran == ["ListUsers"]
    assert server.denied("ListUsers", "search") == 0


async def test_another_workload_is_refused_before_the_handler(
    serve: Serve, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve(declared)
    with caplog.at_level(logging.WARNING, logger="kit.governance.authz"):
        error = await list_users(connect(server.tls_address, "article"))
    assert error is not None
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    details = error.details() or ""
    assert "'article'" in details
    assert LIST_USERS in details
    assert "search" not in details  # the allowed list is never revealed
    assert server.servicer.ran == []
    assert server.denied("ListUsers", "article") == 1
    # The refusal is a finished call like any other for the server's metrics.
    assert server.handled("ListUsers", "PERMISSION_DENIED") == 1
    [record] = [r for r in caplog.records if r.getMessage().startswith("call refused")]
    assert record.levelno == logging.WARNING
    assert (record.method, record.caller) == (LIST_USERS, "article")  # type: ignore[attr-defined]
    assert "127.0.0.1" in record.peer  # type: ignore[attr-defined]


async def test_a_refused_call_spends_no_rate_limit_token(serve: Serve, connect: Connect) -> None:
    config = GovernanceConfig(
        shedding=SheddingConfig(enabled=False),
        tracing=False,
        rate_limit=RateLimitConfig(per_method={LIST_USERS: RateLimit(rate=1, burst=1)}),
    )
    server = await serve(declared, config, ManualClock())
    for _ in range(3):
        error = await list_users(connect(server.tls_address, "article"))
        assert error is not None
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    search = connect(server.tls_address, "search")
    assert await list_users(search) is None  # the one token is still there
    error = await list_users(search)  # and the limiter is on: the next call is over it
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.servicer.ran == ["ListUsers"]


async def test_only_a_user_asserter_may_act_for_a_user_whatever_the_callers_say(
    serve: Serve, connect: Connect
) -> None:
    # A wrong declaration: article listed on a method that trusts the request's user id.
    policy = declared_policy([USER_SERVICE])
    assert policy[UPDATE_INFO].acts_for_user
    policy[UPDATE_INFO] = MethodPolicy(frozenset({"gateway", "article"}), acts_for_user=True)
    assert "article" not in USER_ASSERTERS
    server = await serve(lambda metrics: Authorizer(policy, metrics=metrics))
    request = user_pb2.UpdateNonSensitiveInfoRequest(id=7, nickname="mallory")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await user_pb2_grpc.UserServiceStub(
            connect(server.tls_address, "article")
        ).UpdateNonSensitiveInfo(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert server.servicer.ran == []
    assert server.denied("UpdateNonSensitiveInfo", "article") == 1

    await user_pb2_grpc.UserServiceStub(
        connect(server.tls_address, "gateway")
    ).UpdateNonSensitiveInfo(request, timeout=30)
    assert server.servicer.ran == ["UpdateNonSensitiveInfo"]


async def test_methods_that_declare_no_callers_are_refused(serve: Serve, connect: Connect) -> None:
    # Looked up lazily in a pool where Bare/Call declares no callers and UserService is unknown.
    server = await serve(lambda metrics: Authorizer(pool=bare_pool(), metrics=metrics))
    channel = connect(server.tls_address, "gateway")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await channel.unary_unary(BARE_CALL, _raw, _raw)(b"", timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert server.bare_calls == []
    assert server.denied("Call", "gateway", service="authz.test.v1.Bare") == 1

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await user_pb2_grpc.UserServiceStub(channel).Login(user_pb2.LoginRequest(), timeout=30)
    assert unknown.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert server.servicer.ran == []


async def test_without_a_certificate_only_health_answers(serve: Serve, connect: Connect) -> None:
    server = await serve(declared)
    plain = connect(server.plain_address, None)
    check = health_pb2.HealthCheckRequest(service="")
    reply = await health_pb2_grpc.HealthStub(plain).Check(check, timeout=30)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    error = await list_users(plain)
    assert error is not None
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "certificate" in (error.details() or "")
    assert server.servicer.ran == []
    assert server.denied("ListUsers", "unauthenticated") == 1


async def test_health_answers_any_workload(serve: Serve, connect: Connect) -> None:
    server = await serve(declared)
    for workload in ("article", "sms", "gateway"):
        reply = await health_pb2_grpc.HealthStub(connect(server.tls_address, workload)).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _list_services(channel: grpc.aio.Channel) -> list[str]:
    """Server reflection's service list (a bidirectional stream) over ``channel``."""
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=30)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    await call.done_writing()
    names: list[str] = []
    async for response in call:
        names += [service.name for service in response.list_services_response.service]
    return names


async def test_reflection_answers_any_workload_with_a_certificate(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(declared)
    assert SERVICE_NAME in await _list_services(connect(server.tls_address, "comment"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _list_services(connect(server.plain_address, None))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert server.denied("ServerReflectionInfo", "unauthenticated", reflection.SERVICE_NAME) == 1


def test_rules_are_computed_once_and_read_from_the_descriptors() -> None:
    lazy = Authorizer(metrics=AuthzMetrics(registry=None))
    rule = lazy.rule(LIST_USERS)
    assert rule is not None
    assert rule is lazy.rule(LIST_USERS)
    assert rule.admits("search")
    assert not rule.admits("article")
    assert not rule.admits(None)
    assert lazy.rule("/grpc.health.v1.Health/Check") is None
    update = lazy.rule(UPDATE_INFO)
    assert update is not None
    assert update.admitted == USER_ASSERTERS
    # Built for the services it hosts, it refuses every other service's methods.
    hosted = Authorizer.for_services([SERVICE_NAME], metrics=AuthzMetrics(registry=None))
    other = hosted.rule("/webook.search.v1.SyncService/InputUser")
    assert other is not None
    assert other.admitted == frozenset()


def test_the_command_prints_the_table_and_nothing_else() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kit.governance.authz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "| service | method | callers | acts for user |"
    assert f"| `{SERVICE_NAME}` | `ListUsers` | `search` | no |" in lines

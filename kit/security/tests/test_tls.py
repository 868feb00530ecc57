"""Mutual TLS over real sockets with certificates from the local CA: who is let in, who is
refused, and certificates rotated under running servers and clients."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from kit.security.pki import (
    Pki,
    ensure_local_pki,
    load_ca,
    load_certificate,
    reissue,
    write_workload,
)
from kit.security.tests.helpers import (
    IdentityService,
    mtls_channel,
    presented_serial,
    start_tls_server,
    whoami,
    workload_files,
)
from kit.security.tls import ClientTls, ServerTls, TlsFiles, TlsMaterialError


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """The local CA with a server ("user") and two clients ("gateway", "search")."""
    return ensure_local_pki(tmp_path / "pki", ["user", "gateway", "search", "article"])


@pytest.fixture
def foreign(tmp_path: Path) -> Pki:
    """Another CA issuing the same names."""
    return ensure_local_pki(tmp_path / "foreign", ["user", "gateway"])


class Served:
    """A running TLS server for the identity service."""

    def __init__(
        self, server: grpc.aio.Server, tls: ServerTls, addr: str, service: IdentityService
    ) -> None:
        self.server, self.tls, self.addr, self.service = server, tls, addr, service


@pytest.fixture
async def user_server(pki: Pki) -> AsyncIterator[Served]:
    """The identity service serving as "user" with mutual TLS."""
    service = IdentityService()
    server, tls, addr = await start_tls_server(service.handler(), workload_files(pki, "user"))
    yield Served(server, tls, addr, service)
    await server.stop(None)


def _metric(name: str, role: str) -> float:
    return REGISTRY.get_sample_value(name, {"role": role}) or 0.0


async def _refused(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await whoami(channel)
    return refused.value


async def test_a_client_with_a_certificate_of_the_ca_is_served_and_known_by_name(
    pki: Pki, user_server: Served
) -> None:
    async with mtls_channel(user_server.addr, "user", workload_files(pki, "gateway")) as channel:
        answer = await whoami(channel)
    assert answer["peer"] == "gateway"
    assert answer["serial"] == load_certificate(pki.files("gateway")[0]).serial_number
    assert user_server.service.calls == 1


async def test_a_client_without_a_certificate_is_refused_before_any_handler(
    pki: Pki, user_server: Served
) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
    channel = grpc.aio.secure_channel(
        user_server.addr,
        credentials,
        options=[("grpc.ssl_target_name_override", "user.webook.internal")],
    )
    assert (await _refused(channel)).code() is grpc.StatusCode.UNAVAILABLE
    plaintext = grpc.aio.insecure_channel(user_server.addr)
    assert (await _refused(plaintext)).code() is grpc.StatusCode.UNAVAILABLE
    assert user_server.service.calls == 0


async def test_a_client_certificate_from_another_ca_is_refused(
    pki: Pki, foreign: Pki, user_server: Served
) -> None:
    # Trusts the right CA for the server, but presents a certificate of another CA.
    cert, key = foreign.files("gateway")
    channel = mtls_channel(user_server.addr, "user", TlsFiles(cert, key, pki.ca_file))
    assert (await _refused(channel)).code() is grpc.StatusCode.UNAVAILABLE
    assert user_server.service.calls == 0


async def test_the_client_refuses_a_server_certificate_naming_another_service(pki: Pki) -> None:
    service = IdentityService()
    server, _, addr = await start_tls_server(service.handler(), workload_files(pki, "article"))
    try:
        channel = mtls_channel(addr, "user", workload_files(pki, "gateway"))
        assert (await _refused(channel)).code() is grpc.StatusCode.UNAVAILABLE
        async with mtls_channel(addr, "article", workload_files(pki, "gateway")) as right:
            assert (await whoami(right))["peer"] == "gateway"
    finally:
        await server.stop(None)
    assert service.calls == 1, "only the call that expected 'article' reached the handler"


async def test_the_client_refuses_a_server_of_another_ca(pki: Pki, foreign: Pki) -> None:
    service = IdentityService()
    cert, key = foreign.files("user")
    # The server trusts our CA for clients, but its own certificate is foreign.
    server, _, addr = await start_tls_server(service.handler(), TlsFiles(cert, key, pki.ca_file))
    try:
        channel = mtls_channel(addr, "user", workload_files(pki, "gateway"))
        assert (await _refused(channel)).code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)
    assert service.calls == 0


async def test_a_server_presents_a_rotated_certificate_without_restart(
    pki: Pki, user_server: Served
) -> None:
    gateway = workload_files(pki, "gateway")
    first = load_certificate(pki.files("user")[0]).serial_number
    assert await presented_serial(user_server.addr, "user", gateway) == first
    reloads = _metric("webook_tls_reloads_total", "server")
    async with mtls_channel(user_server.addr, "user", gateway) as established:
        await whoami(established)

        rotated = reissue(pki, "user")

        assert await presented_serial(user_server.addr, "user", gateway) == rotated.serial_number
        assert user_server.tls.serial == rotated.serial_number
        assert _metric("webook_tls_reloads_total", "server") == reloads + 1
        # The connection made before the rotation carries on.
        assert (await whoami(established))["peer"] == "gateway"
    async with mtls_channel(user_server.addr, "user", gateway) as fresh:
        assert (await whoami(fresh))["peer"] == "gateway"


async def test_a_corrupt_certificate_file_keeps_the_server_on_the_previous_one(
    pki: Pki, user_server: Served
) -> None:
    gateway = workload_files(pki, "gateway")
    serving = load_certificate(pki.files("user")[0]).serial_number
    failures = _metric("webook_tls_reload_failures_total", "server")

    pki.files("user")[0].write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")

    assert await presented_serial(user_server.addr, "user", gateway) == serving
    assert _metric("webook_tls_reload_failures_total", "server") == failures + 1
    async with mtls_channel(user_server.addr, "user", gateway) as channel:
        assert (await whoami(channel))["peer"] == "gateway"
    # The same broken files are reported once, not at every handshake.
    assert _metric("webook_tls_reload_failures_total", "server") == failures + 1

    rotated = reissue(pki, "user")
    assert await presented_serial(user_server.addr, "user", gateway) == rotated.serial_number


async def test_a_new_key_waits_for_its_certificate(pki: Pki, user_server: Served) -> None:
    gateway = workload_files(pki, "gateway")
    serving = load_certificate(pki.files("user")[0]).serial_number
    ca_cert, ca_key = load_ca(pki)
    staged = pki.directory / "staged"
    staged.mkdir()
    rotated = write_workload(staged / "user.pem", staged / "user-key.pem", "user", ca_cert, ca_key)

    # Half-way through a rotation: the new key next to the old certificate.
    (staged / "user-key.pem").replace(pki.files("user")[1])
    assert await presented_serial(user_server.addr, "user", gateway) == serving

    (staged / "user.pem").replace(pki.files("user")[0])
    assert await presented_serial(user_server.addr, "user", gateway) == rotated.serial_number


async def test_client_credentials_follow_their_files(pki: Pki, user_server: Served) -> None:
    tls = ClientTls(workload_files(pki, "gateway"), reload_seconds=30)
    changes: list[int] = []
    tls.subscribe(lambda: changes.append(tls.generation))
    assert not tls.check(), "nothing changed yet"

    rotated = reissue(pki, "gateway")
    assert tls.check()
    assert (tls.generation, changes, tls.serial) == (1, [1], rotated.serial_number)
    channel = grpc.aio.secure_channel(
        user_server.addr,
        tls.credentials,
        options=[("grpc.ssl_target_name_override", "user.webook.internal")],
    )
    async with channel:
        assert (await whoami(channel))["serial"] == rotated.serial_number

    failures = _metric("webook_tls_reload_failures_total", "client")
    pki.files("gateway")[1].write_text("not a key")
    assert not tls.check()
    assert tls.generation == 1
    assert tls.serial == rotated.serial_number
    assert _metric("webook_tls_reload_failures_total", "client") == failures + 1


async def test_the_expiry_gauge_counts_down_to_the_loaded_certificate(pki: Pki) -> None:
    ClientTls(workload_files(pki, "search"))
    left = _metric("webook_tls_certificate_expiry_seconds", "client")
    not_after = load_certificate(pki.files("search")[0]).not_valid_after_utc
    expected = (not_after - dt.datetime.now(dt.UTC)).total_seconds()
    assert expected - 60 < left <= expected + 1


def test_unusable_files_fail_at_start(pki: Pki, tmp_path: Path) -> None:
    missing = TlsFiles(tmp_path / "absent.pem", pki.files("user")[1], pki.ca_file)
    with pytest.raises(TlsMaterialError, match="cannot load"):
        ServerTls(missing)
    mismatched = TlsFiles(pki.files("user")[0], pki.files("gateway")[1], pki.ca_file)
    with pytest.raises(TlsMaterialError, match="is not the key of"):
        ClientTls(mismatched)
    with pytest.raises(ValueError, match="reload_seconds"):
        ClientTls(workload_files(pki, "user"), reload_seconds=0)

"""Mutual TLS in the local stack: its certificates, each process's settings, a real service.

The PKI under a stack's state directory is made once and reused when the stack starts
again (``make run``'s :class:`~devstack.__main__.Stack` included, and it can be turned
off); every process is pointed at its own certificate, which names it; and a real service
process started by devstack refuses a plaintext client and a certificate from another CA,
and answers one that presents a certificate of the stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.__main__ import DevSettings, Stack
from devstack.catalog import SERVICE_NAMES, spec
from devstack.infra import ManagedProcess, free_port
from devstack.suite import (
    GATEWAY_PREFIX,
    Infra,
    gateway_process,
    migrate,
    service_env,
    service_process,
)
from devstack.tls import GATEWAY, PKI_DIR, certificate_identities, stack_pki
from kit.security.identity import dns_name, spiffe_id
from kit.security.pki import ensure_local_pki

# A call that cannot complete its handshake fails within this; generous for a loaded machine.
CALL_TIMEOUT_S = 10.0


def _snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of ``directory``: its modification time (ns) and content."""
    return {
        path.name: (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


def _sans(cert_file: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        sans.get_values_for_type(x509.UniformResourceIdentifier),
        sans.get_values_for_type(x509.DNSName),
    )


def _external_infra(run_dir: Path, **settings: object) -> DevSettings:
    # Infrastructure "configured externally": start_infra starts no process at all.
    return DevSettings(
        run_dir=run_dir,
        redis_url="redis://127.0.0.1:1/0",
        etcd_endpoints=["127.0.0.1:2"],
        kafka_bootstrap="127.0.0.1:3",
        **settings,  # type: ignore[arg-type]
    )


def test_the_stack_pki_is_made_once_and_reused_across_restarts(tmp_path: Path) -> None:
    first = Stack(_external_infra(tmp_path / "run"), {}).start_infra()
    assert first.pki is not None
    assert first.pki.directory == (tmp_path / "run" / PKI_DIR).resolve()
    made = _snapshot(first.pki.directory)
    expected = {"ca.pem", "ca-key.pem"}
    for name in certificate_identities():
        expected |= {f"{name}.pem", f"{name}-key.pem"}
    assert set(made) == expected

    again = Stack(_external_infra(tmp_path / "run"), {}).start_infra()
    assert again.pki == first.pki
    assert _snapshot(again.pki.directory) == made, "a restart must keep the CA and certificates"


def test_make_run_can_run_plaintext_for_debugging(tmp_path: Path) -> None:
    infra = Stack(_external_infra(tmp_path / "run", tls=False), {}).start_infra()
    assert infra.pki is None
    assert not (tmp_path / "run" / PKI_DIR).exists()
    env = service_env("user", infra, 1, {})
    assert not [key for key in env if key.startswith("WEBOOK_USER_TLS_")]


def _infra(tmp_path: Path) -> Infra:
    return Infra(
        redis_url="redis://127.0.0.1:1/0",
        etcd_endpoints=[],
        kafka_bootstrap="127.0.0.1:3",
        database_url=f"sqlite+aiosqlite:///{tmp_path}",
        pki=stack_pki(tmp_path),
    )


def test_every_process_gets_its_own_certificate(tmp_path: Path) -> None:
    infra = _infra(tmp_path)
    assert infra.pki is not None
    environments = {name: service_env(name, infra, 1, {}) for name in SERVICE_NAMES}
    gateway = gateway_process(infra, 1, {}, tmp_path)
    assert gateway.env is not None
    environments[GATEWAY] = gateway.env
    certs = set()
    for name, env in environments.items():
        prefix = GATEWAY_PREFIX if name == GATEWAY else spec(name).env_prefix
        cert, key = Path(env[f"{prefix}TLS_CERT_FILE"]), Path(env[f"{prefix}TLS_KEY_FILE"])
        assert (cert, key) == infra.pki.files(name)
        assert Path(env[f"{prefix}TLS_CA_FILE"]) == infra.pki.ca_file
        assert _sans(cert) == ([spiffe_id(name)], [dns_name(name)]), name
        # No other process's TLS settings leak into this one's environment.
        others = [k for k in env if "_TLS_" in k and not k.startswith(prefix)]
        assert not others, (name, others)
        certs.add(cert)
    assert len(certs) == len(SERVICE_NAMES) + 1


def test_a_developer_override_wins_over_the_stack_certificate(tmp_path: Path) -> None:
    mine = str(tmp_path / "mine.pem")
    infra = dataclasses.replace(
        _infra(tmp_path), overrides={"user": {"WEBOOK_USER_TLS_CERT_FILE": mine}}
    )
    assert service_env("user", infra, 1, {})["WEBOOK_USER_TLS_CERT_FILE"] == mine


def _health(channel: grpc.Channel) -> int:
    answer = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S
    )
    return int(answer.status)


@pytest.fixture
def comment_service(tmp_path: Path, redis_url: str) -> Iterator[tuple[Infra, str]]:
    """A real comment service process started by devstack over mutual TLS."""
    infra = Infra(
        redis_url=redis_url,
        etcd_endpoints=[],  # no registry: the test dials the process directly
        kafka_bootstrap="127.0.0.1:3",
        database_url=f"sqlite+aiosqlite:///{tmp_path}",
        mode="test",
        pki=stack_pki(tmp_path),
    )
    migrate("comment", infra, tmp_path)
    port = free_port()
    process: ManagedProcess = service_process("comment", infra, port, tmp_path)
    # Ready means devstack's own health check (over mutual TLS) saw SERVING.
    process.start(timeout=60)
    try:
        yield infra, f"127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.mark.integration
def test_a_stack_service_refuses_plaintext_and_answers_a_certificate(
    comment_service: tuple[Infra, str], tmp_path: Path
) -> None:
    infra, address = comment_service
    with grpc.insecure_channel(address) as plaintext, pytest.raises(grpc.RpcError) as refused:
        _health(plaintext)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

    # A client that trusts the service but presents a certificate of another CA.
    tls = infra.client_tls("comment")
    assert tls is not None
    cert, key = ensure_local_pki(tmp_path / "foreign", [GATEWAY]).files(GATEWAY)
    stranger = grpc.ssl_channel_credentials(
        root_certificates=tls.pki.ca_file.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    with grpc.secure_channel(address, stranger, options=tls.options()) as channel:
        with pytest.raises(grpc.RpcError) as unknown_ca:
            _health(channel)
    assert unknown_ca.value.code() is grpc.StatusCode.UNAVAILABLE

    with tls.sync_channel(address) as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.integration
async def test_infra_channel_calls_a_stack_service_as_a_given_workload(
    comment_service: tuple[Infra, str],
) -> None:
    infra, address = comment_service
    async with infra.channel(address, "comment", as_identity="article") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING

"""``sms records`` against the real sms service over mutual TLS, found at an address or in etcd.

The service runs in this test's event loop (its composition root, ``build_runner``), on
SQLite and the session's Redis, with the PKI a local stack makes (:func:`devstack.tls.stack_pki`):
the operator's certificate is the one ``ListSendRecords`` accepts; the workloads' (the sms
service's own, the gateway's) are refused.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from devstack.tls import OPERATOR, stack_pki
from kit.grpcx.server import ServiceRunner
from kit.migrations import upgrade_async
from kit.security.identity import dns_name
from kit.security.pki import Pki
from services.sms.__main__ import build_runner
from services.sms.metrics import SmsMetrics
from services.sms.settings import CallerSettings, ProviderKind, ProviderSettings, SmsSettings
from webook.sms.v1 import sms_pb2, sms_pb2_grpc
from webookctl.tests.run import run

pytestmark = pytest.mark.integration

OPS_TOKEN = "ops-static-token-0123456789abcdef"
JWT_KEY = "jwt-test-key-0123456789abcdef0123"
PHONE = "13812345678"


@dataclass(frozen=True)
class SmsStack:
    runner: ServiceRunner
    pki: Pki
    prefix: str

    def tls_flags(self, identity: str) -> list[str]:
        cert, key = self.pki.files(identity)
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(self.pki.ca_file)]

    async def send(self, tpl_id: str) -> None:
        cert, key = self.pki.files("sms")
        credentials = grpc.ssl_channel_credentials(
            self.pki.ca_file.read_bytes(), key.read_bytes(), cert.read_bytes()
        )
        options = [("grpc.ssl_target_name_override", dns_name("sms"))]
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.runner.port}", credentials, options=options
        ) as channel:
            await sms_pb2_grpc.SmsServiceStub(channel).Send(
                sms_pb2.SendRequest(tpl_id=tpl_id, args=["hi"], numbers=[PHONE]),
                metadata=(("authorization", f"Bearer {OPS_TOKEN}"),),
                timeout=30,
            )


@pytest.fixture
async def sms_stack(
    tmp_path: Path, redis_url: str, redis_client: object, etcd_endpoint: str
) -> AsyncIterator[SmsStack]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    await upgrade_async("sms", database_url)
    pki = stack_pki(tmp_path)
    cert, key = pki.files("sms")
    prefix = f"/webookctl-test-{uuid.uuid4().hex[:8]}/services"
    settings = SmsSettings(
        mode="test",
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        database_url=database_url,
        redis_url=redis_url,
        etcd_endpoints=[etcd_endpoint],
        registry_prefix=prefix,
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_ca_file=str(pki.ca_file),
        providers=[
            ProviderSettings(name="local", kind=ProviderKind.LOCAL, log_file=str(tmp_path / "l"))
        ],
        callers={"ops": CallerSettings(token=OPS_TOKEN, templates=["promo", "news"], admin=True)},
        caller_jwt_key=JWT_KEY,
    )
    runner = build_runner(settings, metrics=SmsMetrics(CollectorRegistry()))
    await runner.start()
    try:
        yield SmsStack(runner, pki, prefix)
    finally:
        await runner.stop()


async def test_records_as_json_at_an_address(
    sms_stack: SmsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sms_stack.send("promo")
    await sms_stack.send("news")
    monkeypatch.setenv("WEBOOKCTL_SMS_TOKEN", OPS_TOKEN)
    address = f"127.0.0.1:{sms_stack.runner.port}"
    result = await run(
        "--json", *sms_stack.tls_flags(OPERATOR), "sms", "records", "--address", address
    )
    assert result.status == 0, result.err
    answer = result.json()
    assert answer["next_cursor"] == 0
    assert [r["tpl_id"] for r in answer["records"]] == ["news", "promo"]
    first = answer["records"][0]
    assert set(first) == {
        "id", "caller", "tpl_id", "numbers", "status", "provider", "attempts", "last_error",
        "ctime_ms", "utime_ms", "latency_ms", "idempotency_key",
    }  # fmt: skip
    assert (first["caller"], first["status"], first["provider"]) == ("ops", "sent", "local")
    assert first["numbers"] == ["+86138****5678"]
    assert PHONE not in result.out

    # A filter and a page of one: the cursor says where the next page starts.
    paged = await run(
        "--json", *sms_stack.tls_flags(OPERATOR),
        "sms", "records", "--address", address, "--limit", "1", "--template", "promo",
    )  # fmt: skip
    assert paged.status == 0, paged.err
    assert [r["tpl_id"] for r in paged.json()["records"]] == ["promo"]


async def test_records_found_through_etcd_for_people(
    sms_stack: SmsStack, etcd_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sms_stack.send("promo")
    monkeypatch.setenv("WEBOOKCTL_SMS_TOKEN", OPS_TOKEN)
    monkeypatch.setenv("WEBOOKCTL_REGISTRY_PREFIX", sms_stack.prefix)
    result = await run(
        "--etcd",
        etcd_endpoint,
        *sms_stack.tls_flags(OPERATOR),
        "sms",
        "records",
        "--status",
        "sent",
    )
    assert result.status == 0, result.err
    header, row = result.out.splitlines()
    assert header.split() == [
        "ID", "CREATED", "CALLER", "TEMPLATE", "NUMBERS", "STATUS", "PROVIDER", "TRIES", "LAST",
        "ERROR",
    ]  # fmt: skip
    assert " ops " in row
    assert " promo " in row
    assert "****" in row
    empty = await run(
        "--etcd", etcd_endpoint, *sms_stack.tls_flags(OPERATOR),
        "sms", "records", "--status", "failed",
    )  # fmt: skip
    assert (empty.status, empty.out) == (0, "no send records match\n")


@pytest.mark.parametrize("workload", ["gateway", "sms"])
async def test_a_workload_certificate_is_refused(
    sms_stack: SmsStack, monkeypatch: pytest.MonkeyPatch, workload: str
) -> None:
    # Not even the sms service's own: operators no longer borrow a workload's identity.
    monkeypatch.setenv("WEBOOKCTL_SMS_TOKEN", OPS_TOKEN)
    result = await run(
        *sms_stack.tls_flags(workload),
        "sms", "records", "--address", f"127.0.0.1:{sms_stack.runner.port}",
    )  # fmt: skip
    assert result.status == 1
    assert result.out == ""
    assert result.err.startswith("webookctl: sms ListSendRecords: PERMISSION_DENIED")
    assert "operator certificate" in result.err
    assert result.err.count("\n") == 1


async def test_a_wrong_token_and_no_token(
    sms_stack: SmsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{sms_stack.runner.port}"
    monkeypatch.setenv("WEBOOKCTL_SMS_TOKEN", "not-the-token-0123456789")
    wrong = await run(*sms_stack.tls_flags(OPERATOR), "sms", "records", "--address", address)
    assert wrong.status == 1
    assert "UNAUTHENTICATED" in wrong.err
    monkeypatch.delenv("WEBOOKCTL_SMS_TOKEN")
    missing = await run(*sms_stack.tls_flags(OPERATOR), "sms", "records", "--address", address)
    assert missing.status == 2
    assert "WEBOOKCTL_SMS_TOKEN" in missing.err

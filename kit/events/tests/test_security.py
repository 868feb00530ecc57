"""The Kafka security options reach every aiokafka client, from the service's settings."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kit.config import GrpcServiceSettings
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    KafkaSecurity,
    ProducerConfig,
    TopicHandler,
)
from kit.events import topics as topics_module
from kit.events.producer import _default_factory
from kit.events.topics import TopicAdmin, TopicSpec
from kit.security.pki import cert_pem, create_ca

SCRAM = KafkaSecurity(
    protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="article", password="s3cret"
)


def _assert_scram(client: Any) -> None:
    assert client._security_protocol == "SASL_SSL"
    assert client._sasl_mechanism == "SCRAM-SHA-512"
    assert client._sasl_plain_username == "article"
    assert client._sasl_plain_password == "s3cret"
    assert isinstance(client._ssl_context, ssl.SSLContext)


async def _ignore(events: Sequence[ConsumedEvent[bytes]]) -> None:
    del events


async def test_producer_and_consumer_clients_get_the_options() -> None:
    producer = _default_factory(ProducerConfig(bootstrap="127.0.0.1:1", security=SCRAM))
    try:
        _assert_scram(producer.client)
    finally:
        await producer.stop()
    handlers = {"t": TopicHandler(decode=bytes, handle=_ignore)}
    config = ConsumerConfig(bootstrap="127.0.0.1:1", group_id="g", security=SCRAM)
    consumer = BatchConsumer(config, handlers)._new_consumer()
    try:
        _assert_scram(consumer._client)
    finally:
        await consumer.stop()


async def test_the_topic_admin_gets_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[dict[str, Any]] = []

    class Refused(Exception):
        pass

    class RecordingAdmin:
        def __init__(self, **options: Any) -> None:
            created.append(options)

        async def start(self) -> None:
            raise Refused

        async def close(self) -> None:
            return None

    monkeypatch.setattr(topics_module, "AIOKafkaAdminClient", RecordingAdmin)
    with pytest.raises(Refused):
        await TopicAdmin("127.0.0.1:1", security=SCRAM).ensure([TopicSpec("t", 1)])
    (options,) = created
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_plain_username"] == "article"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_plaintext_by_default_and_no_password_in_repr() -> None:
    assert KafkaSecurity().client_options() == {"security_protocol": "PLAINTEXT"}
    assert "s3cret" not in repr(SCRAM)
    with pytest.raises(ValueError, match="username and password"):
        KafkaSecurity(protocol="SASL_SSL")


def test_settings_become_the_consumers_security(tmp_path: Path) -> None:
    ca_cert, _ = create_ca()
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(cert_pem(ca_cert))
    settings = GrpcServiceSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="search",
        kafka_sasl_password="pw",
        kafka_ssl_ca_file=str(ca_file),
    )
    security = settings.kafka_security
    assert security == KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "search", "pw", str(ca_file))
    context = security.client_options()["ssl_context"]
    assert context.cert_store_stats()["x509_ca"] == 1  # our CA, not the system store
    assert "pw" not in repr(settings)
    with pytest.raises(ValidationError, match="kafka_sasl_username"):
        GrpcServiceSettings(kafka_security_protocol="SASL_SSL")

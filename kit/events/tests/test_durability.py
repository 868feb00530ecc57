"""How durable events are: acks, idempotence, replay and topic replication, from settings.

The ``kafka_*`` durability settings of :class:`~kit.config.GrpcServiceSettings` reach the
``aiokafka`` producer, the topic specs of producers and consumers and the admin client's
CreateTopics request; contradictory values are refused when the settings (or the configs)
are built. Against the session's broker (tansu): the local stack's settings deliver events,
and an idempotent producer is refused, which is why the local stack turns it off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from devstack.catalog import LocalContext, local_settings, spec
from kit.config import GrpcServiceSettings, Mode
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    EventProducer,
    ProducerConfig,
    TopicAdmin,
    TopicHandler,
    TopicSpec,
    protobuf_decoder,
)
from kit.events import topics as topics_module
from kit.events.producer import _default_factory
from kit.events.tests.support import eventually, unique
from kit.grpcx.process import consumer_config, producer_config
from webook.events.v1 import events_pb2

TLS = {"tls_cert_file": "tls.crt", "tls_key_file": "tls.key", "tls_ca_file": "ca.crt"}
# The services of the local stack that publish events.
LOCAL_PRODUCERS = ("user", "article")


class DurableSettings(GrpcServiceSettings):
    """A service that publishes and consumes: what wire_producer and consumer_config read."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_DURABLE_", extra="ignore", frozen=True)

    event_buffer_size: int = 1_000
    event_flush_timeout_seconds: float = 3.0
    kafka_topic_partitions: int = 2
    kafka_session_timeout_ms: int = 2_000
    kafka_heartbeat_interval_ms: int = 500
    kafka_lag_interval_seconds: float = 1.0


def durable(**values: Any) -> DurableSettings:
    """Settings from ``values`` alone (no environment)."""
    return DurableSettings.model_validate(values)


def _local(service: str) -> dict[str, str]:
    """The local stack's own settings of ``service``, as keyword arguments."""
    prefix = spec(service).env_prefix
    return {
        key.removeprefix(prefix).lower(): value
        for key, value in local_settings(service, LocalContext()).items()
    }


async def _ignore(events: Sequence[ConsumedEvent[bytes]]) -> None:
    del events


# -- settings reach aiokafka and the admin client -----------------------------------------


async def test_production_defaults_reach_the_aiokafka_producer() -> None:
    settings = durable(mode=Mode.PROD, **TLS)
    config = producer_config("durable", settings, [TopicSpec("t", 2)])
    assert (config.acks, config.enable_idempotence, config.replay_window_s) == ("all", True, 0)
    producer = _default_factory(config)
    try:
        assert producer._sender._acks == -1  # aiokafka's "all"
        assert producer._txn_manager is not None  # idempotent: it numbers its batches
    finally:
        await producer.stop()


async def test_acks_1_without_idempotence_reaches_the_aiokafka_producer() -> None:
    settings = durable(mode=Mode.TEST, kafka_acks="1", kafka_replay_window_seconds=30)
    config = producer_config("durable", settings, [TopicSpec("t", 2)])
    assert (config.acks, config.enable_idempotence, config.replay_window_s) == (1, False, 30)
    producer = _default_factory(config)
    try:
        assert producer._sender._acks == 1
        assert producer._txn_manager is None
    finally:
        await producer.stop()


async def test_replication_reaches_the_topics_and_the_admin_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = durable(mode=Mode.TEST, kafka_replication_factor=3, kafka_min_insync_replicas=2)
    produced = producer_config("durable", settings, [TopicSpec("a", 4), TopicSpec("b", 2)])
    consumed = consumer_config("durable", settings, group_id="g", max_batch=10, max_wait_s=0.1)
    assert produced.topics == (TopicSpec("a", 4, 3, 2), TopicSpec("b", 2, 3, 2))
    assert consumed.topic_spec("c") == TopicSpec("c", 2, 3, 2)

    requests: list[list[Any]] = []

    class RecordingAdmin:
        def __init__(self, **options: Any) -> None:
            del options

        async def start(self) -> None:
            return None

        async def create_topics(self, topics: list[Any], timeout_ms: int) -> Any:
            requests.append(topics)
            errors = [(topic.name, 0, None) for topic in topics]
            return type("Response", (), {"topic_errors": errors})()

        async def close(self) -> None:
            return None

    monkeypatch.setattr(topics_module, "AIOKafkaAdminClient", RecordingAdmin)
    admin = TopicAdmin("127.0.0.1:1")
    try:
        created = await admin.ensure([*produced.topics, consumed.topic_spec("c")])
    finally:
        await admin.close()
    assert created == {"a", "b", "c"}
    (request,) = requests
    assert {(t.name, t.num_partitions, t.replication_factor) for t in request} == {
        ("a", 4, 3),
        ("b", 2, 3),
        ("c", 2, 3),
    }
    assert all(t.topic_configs == {"min.insync.replicas": "2"} for t in request)


def test_a_topic_without_min_insync_keeps_the_brokers_default() -> None:
    new_topic = TopicSpec("t", 1).new_topic()
    assert (new_topic.replication_factor, new_topic.topic_configs) == (1, {})


# -- validation -----------------------------------------------------------------------------


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MODE": "prod",
        "KAFKA_ACKS": "all",
        "KAFKA_IDEMPOTENT_PRODUCER": "true",
        "KAFKA_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        "KAFKA_MANAGE_TOPICS": "false",
        "KAFKA_REPLAY_WINDOW_SECONDS": "0",
    }.items():
        monkeypatch.setenv(f"WEBOOK_DURABLE_{name}", value)
    settings = DurableSettings(
        tls_cert_file="tls.crt", tls_key_file="tls.key", tls_ca_file="ca.crt"
    )
    assert settings.kafka_acks == "all"
    assert settings.kafka_idempotence
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)
    assert not settings.kafka_manage_topics
    assert not producer_config("durable", settings, []).manage_topics


def test_idempotence_defaults_to_the_mode() -> None:
    assert durable(mode=Mode.PROD, **TLS).kafka_idempotence
    assert not durable(mode=Mode.TEST).kafka_idempotence
    assert not durable(mode=Mode.DEV).kafka_idempotence
    assert durable(mode=Mode.TEST, kafka_idempotent_producer=True).kafka_idempotence
    assert not durable(mode=Mode.PROD, kafka_idempotent_producer=False, **TLS).kafka_idempotence


def test_more_in_sync_replicas_than_copies_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"kafka_min_insync_replicas \(3\) cannot exceed"):
        durable(mode=Mode.TEST, kafka_replication_factor=2, kafka_min_insync_replicas=3)
    with pytest.raises(ValidationError, match="kafka_replication_factor"):
        durable(mode=Mode.TEST, kafka_replication_factor=0)
    with pytest.raises(ValueError, match="min in-sync replicas"):
        TopicSpec("t", 1, replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ValueError, match="min in-sync replicas"):
        TopicSpec("t", 1, replication_factor=2, min_insync_replicas=0)
    with pytest.raises(ValueError, match="min in-sync replicas"):
        ConsumerConfig("127.0.0.1:1", "g", topic_min_insync_replicas=2)


def test_an_idempotent_producer_without_acks_all_is_refused() -> None:
    with pytest.raises(ValidationError, match="requires kafka_acks=all"):
        durable(mode=Mode.TEST, kafka_acks="1", kafka_idempotent_producer=True)
    # On by default in prod mode: the message says so.
    with pytest.raises(ValidationError, match="on by default in prod mode"):
        durable(mode=Mode.PROD, kafka_acks="1", **TLS)
    with pytest.raises(ValidationError, match="kafka_acks"):
        durable(mode=Mode.TEST, kafka_acks="0")
    with pytest.raises(ValueError, match="requires acks='all'"):
        ProducerConfig("127.0.0.1:1", acks=1, enable_idempotence=True)
    with pytest.raises(ValidationError, match="kafka_replay_window_seconds"):
        durable(mode=Mode.TEST, kafka_replay_window_seconds=-1)
    # What the local stack runs: acks=1 is allowed once idempotence is off.
    assert durable(mode=Mode.PROD, kafka_acks="1", kafka_idempotent_producer=False, **TLS)


@pytest.mark.parametrize("service", LOCAL_PRODUCERS)
def test_the_local_stack_turns_idempotence_off_and_the_replay_on(service: str) -> None:
    # Whatever mode the stack runs in: its broker refuses idempotence and loses data.
    settings = durable(mode=Mode.PROD, **TLS, **_local(service))
    config = producer_config(service, settings, [TopicSpec("t", 1)])
    assert not config.enable_idempotence
    assert config.replay_window_s > 0
    assert config.acks == "all"


# -- against the session's broker -----------------------------------------------------------


@pytest.mark.integration
async def test_the_local_settings_deliver_through_the_local_broker(kafka_bootstrap: str) -> None:
    topic, count = unique("durable"), 20
    settings = durable(mode=Mode.TEST, kafka_bootstrap=kafka_bootstrap, **_local("article"))
    config = producer_config("durable", settings, [TopicSpec(topic, 2)])
    # acks=all and a topic created with min.insync.replicas=1, as the local stack runs.
    assert (config.acks, config.topics[0].min_insync_replicas) == ("all", 1)
    received: list[int] = []

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        received.extend(event.payload.article_id for event in batch)

    consumer = BatchConsumer(
        consumer_config(
            "durable", settings, group_id=unique("durable"), max_batch=50, max_wait_s=0.2
        ),
        {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleRead), collect)},
    )
    producer = EventProducer(config)
    producer.start()
    consumer.start()
    try:
        for article in range(count):
            assert producer.publish(topic, article, events_pb2.ArticleRead(article_id=article))
        assert await producer.flush(30.0), "the broker never acknowledged the events"
        assert await eventually(lambda: len(received) >= count, 60.0), received
    finally:
        await consumer.stop()
        await producer.stop()
    assert sorted(received) == list(range(count))


@pytest.mark.integration
async def test_the_local_broker_refuses_idempotent_producers(kafka_bootstrap: str) -> None:
    # Why the local stack sets KAFKA_IDEMPOTENT_PRODUCER=false: tansu answers InitProducerId
    # with an error. When this fails, tansu grants producer ids: drop that local setting.
    config = ProducerConfig(kafka_bootstrap, enable_idempotence=True, request_timeout_ms=5_000)
    producer: AIOKafkaProducer = _default_factory(config)
    try:
        with pytest.raises(KafkaError):
            await asyncio.wait_for(producer.start(), 60.0)
    finally:
        await producer.stop()

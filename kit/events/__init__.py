"""Kafka events: a non-blocking producer, a batch consumer and topic creation.

- :class:`EventProducer` (:mod:`kit.events.producer`): ``publish(topic, key, event)`` never
  blocks or fails the caller; a bounded buffer and a background sender with retry deliver
  protobuf events at least once, with the W3C trace context in the record headers.
- :class:`BatchConsumer` (:mod:`kit.events.consumer`): batches of up to N records or T
  seconds, a handler table from topic to decode + apply, offsets committed only after the
  batch is applied, undecodable records skipped and counted, failed batches retried.
- :class:`TopicAdmin` / :func:`ensure_topics` (:mod:`kit.events.topics`): create topics.
- :class:`KafkaSecurity` (:mod:`kit.events.security`): how every client of a process
  authenticates to the brokers (``SASL_SSL`` with SCRAM in production).
- :func:`topic_name` / :func:`declared_topics` (:mod:`kit.events.contracts`): topic names
  and payloads as the protos declare them, so no producer or consumer writes a name.

Metrics are in :mod:`kit.events.metrics`; usage and guarantees in ``docs/events.md``.
"""

from kit.events.consumer import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    TopicHandler,
    parse_event,
    protobuf_decoder,
)
from kit.events.contracts import (
    DeclaredTopic,
    UndeclaredTopic,
    declared_topic,
    declared_topics,
    topic_name,
)
from kit.events.producer import EventProducer, ProducerConfig, encode_key
from kit.events.security import KafkaSecurity
from kit.events.topics import TopicAdmin, TopicCreationError, TopicSpec, ensure_topics

__all__ = [
    "BatchConsumer",
    "ConsumedEvent",
    "ConsumerConfig",
    "DeclaredTopic",
    "EventProducer",
    "KafkaSecurity",
    "ProducerConfig",
    "TopicAdmin",
    "TopicCreationError",
    "TopicHandler",
    "TopicSpec",
    "UndeclaredTopic",
    "declared_topic",
    "declared_topics",
    "encode_key",
    "ensure_topics",
    "parse_event",
    "protobuf_decoder",
    "topic_name",
]

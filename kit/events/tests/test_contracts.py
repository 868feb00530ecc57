"""Topics and error reasons read from proto declarations (``kit.events.contracts``,
``kit.errors.error_domain`` / ``declared_reasons``).

The declarations come from a proto file built here, in a pool of its own, so the rules are
tested on enums with and without the options and with a payload that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import EnumDescriptor

from kit.errors import declared_reasons, error_domain
from kit.events import (
    UndeclaredTopic,
    declared_topic,
    declared_topics,
    topic_name,
)
from webook.contracts.v1 import contracts_pb2

PACKAGE = "test.contracts.v1"


@dataclass(frozen=True)
class _Enum:
    """What generated code offers: an enum type with its descriptor."""

    DESCRIPTOR: EnumDescriptor


def _topic(name: str, payload: str) -> descriptor_pb2.EnumValueOptions:
    options = descriptor_pb2.EnumValueOptions()
    declared = options.Extensions[contracts_pb2.topic]
    declared.name = name
    declared.payload = payload
    return options


def _pool() -> descriptor_pool.DescriptorPool:
    """A pool holding a test file with a topic enum and an error-reason enum."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in (descriptor_pb2.DESCRIPTOR, contracts_pb2.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(proto)
        pool.Add(proto)
    test_file = descriptor_pb2.FileDescriptorProto(
        name="test/contracts.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=[contracts_pb2.DESCRIPTOR.name],
    )
    test_file.message_type.add(name="Thing")
    test_file.message_type.add(name="Other")
    topics = test_file.enum_type.add(name="Topic")
    topics.value.add(name="TOPIC_UNSPECIFIED", number=0)
    topics.value.add(name="TOPIC_THING", number=1, options=_topic("test.thing.changed", "Thing"))
    topics.value.add(name="TOPIC_OTHER", number=2, options=_topic("test.other.gone", "Other"))
    topics.value.add(name="TOPIC_NO_OPTION", number=3)
    topics.value.add(name="TOPIC_NO_PAYLOAD", number=4, options=_topic("test.x.y", "Missing"))
    topics.value.add(name="TOPIC_NO_NAME", number=5, options=_topic("", "Thing"))
    reasons = test_file.enum_type.add(name="ErrorReason")
    reasons.options.Extensions[contracts_pb2.error_domain] = "test.webook"
    reasons.value.add(name="ERROR_REASON_UNSPECIFIED", number=0)
    reasons.value.add(name="TEST_BROKEN", number=1)
    reasons.value.add(name="TEST_GONE", number=2)
    bare = test_file.enum_type.add(name="Bare")
    bare.value.add(name="BARE_UNSPECIFIED", number=0)
    pool.Add(test_file)
    return pool


@pytest.fixture(scope="module")
def pool() -> descriptor_pool.DescriptorPool:
    return _pool()


def _enum(pool: descriptor_pool.DescriptorPool, name: str) -> _Enum:
    return _Enum(pool.FindEnumTypeByName(f"{PACKAGE}.{name}"))


def test_a_declared_topic_has_its_name_and_payload(pool: descriptor_pool.DescriptorPool) -> None:
    topics = _enum(pool, "Topic")
    thing = declared_topic(topics, 1)
    assert thing.name == "test.thing.changed"
    assert thing.payload.full_name == f"{PACKAGE}.Thing"
    assert topic_name(topics, 2) == "test.other.gone"


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        (0, "TOPIC_UNSPECIFIED declares no topic"),
        (3, "TOPIC_NO_OPTION declares no topic"),
        (4, "no message 'test.contracts.v1.Missing'"),
        (5, "TOPIC_NO_NAME declares no topic name"),
        (99, "has no value 99"),
    ],
)
def test_a_value_without_a_usable_topic_is_refused(
    pool: descriptor_pool.DescriptorPool, number: int, problem: str
) -> None:
    with pytest.raises(UndeclaredTopic, match=problem):
        topic_name(_enum(pool, "Topic"), number)


def test_declared_topics_refuse_an_enum_with_a_broken_value(
    pool: descriptor_pool.DescriptorPool,
) -> None:
    with pytest.raises(UndeclaredTopic, match="TOPIC_NO_OPTION"):
        declared_topics(_enum(pool, "Topic"))


def test_the_events_package_declares_every_payload_once() -> None:
    from webook.events.v1 import events_pb2

    topics = declared_topics(events_pb2.Topic)
    names = [topic.name for topic in topics]
    assert len(names) == len(set(names)) == len(events_pb2.Topic.DESCRIPTOR.values) - 1
    assert all(name.startswith("webook.") for name in names)
    # Each message of the events package is the payload of exactly one topic.
    payloads = sorted(topic.payload.full_name for topic in topics)
    messages = sorted(m.full_name for m in events_pb2.DESCRIPTOR.message_types_by_name.values())
    assert payloads == messages


def test_an_error_reason_enum_declares_its_domain_and_reasons(
    pool: descriptor_pool.DescriptorPool,
) -> None:
    reasons = _enum(pool, "ErrorReason")
    assert error_domain(reasons) == "test.webook"
    assert declared_reasons(reasons) == {"TEST_BROKEN", "TEST_GONE"}


def test_an_enum_without_a_domain_is_refused(pool: descriptor_pool.DescriptorPool) -> None:
    with pytest.raises(ValueError, match="Bare declares no error_domain"):
        error_domain(_enum(pool, "Bare"))
